// SPDX-License-Identifier: GPL-2.0

//! Who locks and unlocks each folio of a migration.
//!
//! # The fault folio
//!
//! A CPU fault on a device-private page calls the driver's `migrate_to_ram()`
//! with the faulting page locked: the fault path takes the lock with a trylock
//! (`do_swap_page()`, `mm/memory.c:4933`; `do_huge_pmd_device_private()`,
//! `mm/huge_memory.c:1501`) and releases it after `migrate_to_ram()` returns
//! (`mm/memory.c:4940`, `mm/huge_memory.c:1505`). When the trylock fails the PTE
//! path sleeps until the folio is unlocked (`mm/memory.c:4944`) and the PMD path
//! returns to refault at once (`mm/huge_memory.c:1507-1509`); either way the
//! fault is retried, so N threads faulting one page cannot all enter
//! `migrate_to_ram()` and livelock each other.
//!
//! The driver passes that page to `migrate_vma_setup()` as `fault_page`, which
//! requires it locked (`mm/migrate_device.c:760`). From then on the migration
//! works with the folio as locked but never takes or drops that lock:
//! collection does not trylock it (`mm/migrate_device.c:190`, `:410`), the split
//! helper does not lock it (`:92-93`), unmap's restore path does not unlock it
//! (`:650`), finalize does not unlock it (`:1332`) and it is never a destination
//! (`:1311`, `:1322`, `:1337`). When a split leaves the fault page in another
//! folio than the one that stays locked, the lock is moved to the folio of the
//! fault page (`:104-120`), since that is the folio the fault path will
//! unlock. [`FaultFolioLock`] checks that sequence.
//!
//! # Every other folio
//!
//! The engine trylocks every other folio it collects (`:190`, `:410`) and skips
//! it when the trylock fails, locks it sleeping only to split it (`:93`), and
//! unlocks it when it restores or finalizes it (`:234`, `:424`, `:651`, `:1333`).
//! [`FolioLock`] checks that.

use super::error::Error;

/// Where a folio's lock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    /// Nobody holds the lock.
    Unlocked,
    /// The fault path holds the lock and `migrate_to_ram()` runs; no migration
    /// has taken the folio yet.
    LockedByFault,
    /// The fault path holds the lock; `migrate_vma_setup()` accepted the folio
    /// as the fault folio and is collecting.
    Collecting,
    /// The fault path holds the lock; the folio was unmapped for migration.
    Unmapped,
    /// The fault path holds the lock; the folio could not be unmapped and was
    /// restored, so it is not migrated.
    Restored,
    /// The fault path holds the lock; `migrate_vma_finalize()` has run.
    Finalized,
    /// The migration engine holds the lock of a folio that is not the fault
    /// folio.
    LockedByEngine,
}

/// A lock operation, as named in an [`Error::LockTransition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOp {
    /// The fault path's trylock.
    FaultTrylock,
    /// `migrate_vma_setup()` taking the fault folio.
    Setup,
    /// A split of the fault folio during collection.
    Split,
    /// The unmap step of `migrate_vma_setup()`.
    Unmap,
    /// `migrate_vma_finalize()`.
    Finalize,
    /// The fault path's unlock after `migrate_to_ram()`.
    FaultUnlock,
    /// The engine locking the folio (trylock or sleeping lock).
    EngineLock,
    /// The engine unlocking the folio.
    EngineUnlock,
}

/// How the engine comes to hold a folio's lock before it works on the folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockAction {
    /// The folio is the fault folio: the fault path holds the lock; take
    /// nothing.
    Held,
    /// `folio_trylock()`; when it fails the folio is not migrated.
    Trylock,
    /// `folio_lock()`, which may sleep: only to split a folio.
    Lock,
}

impl LockAction {
    /// The lock a collection takes on a folio: none on the fault folio, a
    /// trylock on any other (`mm/migrate_device.c:190`, `:410`).
    #[inline]
    pub const fn for_collect(is_fault_folio: bool) -> Self {
        if is_fault_folio {
            Self::Held
        } else {
            Self::Trylock
        }
    }

    /// The lock taken to split a folio found mapped by PTEs: none on the fault
    /// folio, a sleeping lock on any other (`mm/migrate_device.c:92-93`).
    #[inline]
    pub const fn for_split(is_fault_folio: bool) -> Self {
        if is_fault_folio {
            Self::Held
        } else {
            Self::Lock
        }
    }
}

/// What the engine does with a folio's lock when it is done with the folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockAction {
    /// `folio_unlock()`.
    Unlock,
    /// Leave the lock alone: it belongs to the fault path.
    Keep,
}

impl UnlockAction {
    /// The unlock when the engine restores, skips after locking, or finalizes
    /// a folio (`mm/migrate_device.c:233-234`, `:423-424`, `:650-651`,
    /// `:1332-1333`).
    #[inline]
    pub const fn for_release(is_fault_folio: bool) -> Self {
        if is_fault_folio {
            Self::Keep
        } else {
            Self::Unlock
        }
    }
}

/// What a split of the fault folio asks of the engine
/// (`mm/migrate_device.c:104-120`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitLock {
    /// The fault page is in the folio that the split left locked: nothing to
    /// do.
    Keep,
    /// The fault page is in another folio: get and lock that folio, then
    /// unlock and put the one the split left locked, so that the fault path
    /// unlocks the folio it holds.
    Transfer,
}

/// The lock of the fault folio across one `migrate_to_ram()` call, checked.
///
/// Each method is one step of the rules in the [module
/// documentation](self); a step that the rules do not allow in the current
/// state returns an error and leaves the state as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultFolioLock {
    state: LockState,
}

impl Default for FaultFolioLock {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultFolioLock {
    /// A fault folio that the fault path has not locked yet.
    pub const fn new() -> Self {
        Self {
            state: LockState::Unlocked,
        }
    }

    /// The current state.
    #[inline]
    pub const fn state(&self) -> LockState {
        self.state
    }

    /// Refuses `op` in the current state.
    const fn refuse(&self, op: LockOp) -> Error {
        Error::LockTransition {
            state: self.state,
            op,
        }
    }

    /// The fault path's trylock on the faulting page, with its outcome.
    ///
    /// Returns whether the fault path goes on to `migrate_to_ram()`; when the
    /// trylock failed it waits for the lock or refaults instead
    /// (`mm/memory.c:4933-4945`, `mm/huge_memory.c:1501-1509`). Only allowed
    /// when unlocked: the fault path never locks a folio twice.
    pub fn fault_trylock(&mut self, acquired: bool) -> Result<bool, Error> {
        if self.state != LockState::Unlocked {
            return Err(self.refuse(LockOp::FaultTrylock));
        }
        if acquired {
            self.state = LockState::LockedByFault;
        }
        Ok(acquired)
    }

    /// `migrate_vma_setup()` taking the folio as its fault folio: it must be
    /// locked by the fault path ([`Error::FaultFolioNotLocked`] otherwise, the
    /// `-EINVAL` of `mm/migrate_device.c:760`), and collection uses that lock
    /// as it is ([`LockAction::Held`]).
    pub fn setup(&mut self) -> Result<LockAction, Error> {
        match self.state {
            LockState::Unlocked => Err(Error::FaultFolioNotLocked),
            LockState::LockedByFault => {
                self.state = LockState::Collecting;
                Ok(LockAction::Held)
            }
            _ => Err(self.refuse(LockOp::Setup)),
        }
    }

    /// A split of the fault folio during collection. `fault_page_moved` says
    /// whether the fault page ended up in another folio than the one the split
    /// left locked; if so the lock moves with it (`mm/migrate_device.c:104-120`).
    ///
    /// Linux 7.3's PMD fallback (`mm/migrate_device.c:232-235`) does not move
    /// the lock, so the fault path then unlocks a folio it does not hold; this
    /// rule is the one of `migrate_vma_split_folio()`, applied to both paths.
    pub fn split(&mut self, fault_page_moved: bool) -> Result<SplitLock, Error> {
        if self.state != LockState::Collecting {
            return Err(self.refuse(LockOp::Split));
        }
        Ok(if fault_page_moved {
            SplitLock::Transfer
        } else {
            SplitLock::Keep
        })
    }

    /// The unmap step of `migrate_vma_setup()` for the fault folio. `kept`
    /// says whether it stays selected for migration; if not, it is restored,
    /// and either way the engine leaves the lock to the fault path
    /// (`mm/migrate_device.c:650`).
    pub fn unmap(&mut self, kept: bool) -> Result<UnlockAction, Error> {
        if self.state != LockState::Collecting {
            return Err(self.refuse(LockOp::Unmap));
        }
        self.state = if kept {
            LockState::Unmapped
        } else {
            LockState::Restored
        };
        Ok(UnlockAction::Keep)
    }

    /// `migrate_vma_finalize()`: the fault folio stays locked
    /// (`mm/migrate_device.c:1332`). Allowed after setup, whether the folio was
    /// unmapped, restored, or never reached unmap (skipped in collection).
    pub fn finalize(&mut self) -> Result<UnlockAction, Error> {
        match self.state {
            LockState::Collecting | LockState::Unmapped | LockState::Restored => {
                self.state = LockState::Finalized;
                Ok(UnlockAction::Keep)
            }
            _ => Err(self.refuse(LockOp::Finalize)),
        }
    }

    /// The fault path's unlock after `migrate_to_ram()` returns
    /// (`mm/memory.c:4940`, `mm/huge_memory.c:1505`). Allowed when no migration
    /// took the folio or once it was finalized: a driver that returns between
    /// setup and finalize leaves migration entries behind.
    pub fn fault_unlock(&mut self) -> Result<(), Error> {
        match self.state {
            LockState::LockedByFault | LockState::Finalized => {
                self.state = LockState::Unlocked;
                Ok(())
            }
            _ => Err(self.refuse(LockOp::FaultUnlock)),
        }
    }

    /// The engine locking the fault folio: never allowed. While the fault
    /// path holds it this would deadlock; otherwise it is not the fault folio
    /// of any migration.
    pub fn engine_lock(&mut self) -> Result<(), Error> {
        Err(self.refuse(LockOp::EngineLock))
    }

    /// The engine unlocking the fault folio: never allowed; only the fault
    /// path unlocks it.
    pub fn engine_unlock(&mut self) -> Result<(), Error> {
        Err(self.refuse(LockOp::EngineUnlock))
    }
}

/// The lock of a folio that is not the fault folio, held by the engine from
/// collection to restore or finalize, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolioLock {
    state: LockState,
}

impl Default for FolioLock {
    fn default() -> Self {
        Self::new()
    }
}

impl FolioLock {
    /// A folio the engine has not locked.
    pub const fn new() -> Self {
        Self {
            state: LockState::Unlocked,
        }
    }

    /// The current state: [`LockState::Unlocked`] or
    /// [`LockState::LockedByEngine`].
    #[inline]
    pub const fn state(&self) -> LockState {
        self.state
    }

    /// Refuses `op` in the current state.
    const fn refuse(&self, op: LockOp) -> Error {
        Error::LockTransition {
            state: self.state,
            op,
        }
    }

    /// `folio_trylock()` at collection, with its outcome; returns whether the
    /// engine holds the lock now. Not allowed while the engine holds it.
    pub fn trylock(&mut self, acquired: bool) -> Result<bool, Error> {
        if self.state != LockState::Unlocked {
            return Err(self.refuse(LockOp::EngineLock));
        }
        if acquired {
            self.state = LockState::LockedByEngine;
        }
        Ok(acquired)
    }

    /// `folio_lock()` to split the folio. Not allowed while the engine holds
    /// it: that would deadlock.
    pub fn lock(&mut self) -> Result<(), Error> {
        if self.state != LockState::Unlocked {
            return Err(self.refuse(LockOp::EngineLock));
        }
        self.state = LockState::LockedByEngine;
        Ok(())
    }

    /// `folio_unlock()` at restore, finalize, or after a split or a failed
    /// unmap. Only allowed while the engine holds it.
    pub fn unlock(&mut self) -> Result<(), Error> {
        if self.state != LockState::LockedByEngine {
            return Err(self.refuse(LockOp::EngineUnlock));
        }
        self.state = LockState::Unlocked;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn locked_by_fault() -> FaultFolioLock {
        let mut l = FaultFolioLock::new();
        assert_eq!(l.fault_trylock(true), Ok(true));
        l
    }

    fn collecting() -> FaultFolioLock {
        let mut l = locked_by_fault();
        assert_eq!(l.setup(), Ok(LockAction::Held));
        l
    }

    #[test]
    fn fault_trylock_success_and_failure() {
        // mm/memory.c:4933-4944 (do_swap_page), mm/huge_memory.c:1501-1509
        let mut l = FaultFolioLock::default();
        assert_eq!(l.fault_trylock(false), Ok(false));
        assert_eq!(l.state(), LockState::Unlocked);
        assert_eq!(l.fault_trylock(true), Ok(true));
        assert_eq!(l.state(), LockState::LockedByFault);
        assert_eq!(
            l.fault_trylock(true),
            Err(Error::LockTransition {
                state: LockState::LockedByFault,
                op: LockOp::FaultTrylock
            })
        );
    }

    #[test]
    fn setup_requires_the_fault_lock() {
        // mm/migrate_device.c:760 (migrate_vma_setup: -EINVAL if not locked)
        let mut l = FaultFolioLock::new();
        assert_eq!(l.setup(), Err(Error::FaultFolioNotLocked));
        let mut l = locked_by_fault();
        assert_eq!(l.setup(), Ok(LockAction::Held));
        assert_eq!(l.state(), LockState::Collecting);
        assert!(matches!(
            l.setup(),
            Err(Error::LockTransition {
                op: LockOp::Setup,
                ..
            })
        ));
    }

    #[test]
    fn full_migration_leaves_the_lock_to_the_fault_path() {
        let mut l = collecting();
        assert_eq!(l.unmap(true), Ok(UnlockAction::Keep));
        assert_eq!(l.state(), LockState::Unmapped);
        assert_eq!(l.finalize(), Ok(UnlockAction::Keep));
        assert_eq!(l.state(), LockState::Finalized);
        assert_eq!(l.fault_unlock(), Ok(()));
        assert_eq!(l.state(), LockState::Unlocked);
    }

    #[test]
    fn restore_keeps_the_lock() {
        // mm/migrate_device.c:650 (migrate_device_unmap restore loop)
        let mut l = collecting();
        assert_eq!(l.unmap(false), Ok(UnlockAction::Keep));
        assert_eq!(l.state(), LockState::Restored);
        assert_eq!(l.finalize(), Ok(UnlockAction::Keep));
        assert_eq!(l.fault_unlock(), Ok(()));
    }

    #[test]
    fn finalize_without_unmap() {
        // The fault folio was skipped in collection: no unmap step for it.
        let mut l = collecting();
        assert_eq!(l.finalize(), Ok(UnlockAction::Keep));
        assert!(matches!(
            l.finalize(),
            Err(Error::LockTransition {
                state: LockState::Finalized,
                op: LockOp::Finalize
            })
        ));
        assert!(matches!(
            l.unmap(true),
            Err(Error::LockTransition {
                op: LockOp::Unmap,
                ..
            })
        ));
    }

    #[test]
    fn fault_unlock_without_migration() {
        // The driver did not call migrate_vma_setup() at all.
        let mut l = locked_by_fault();
        assert_eq!(l.fault_unlock(), Ok(()));
        assert!(matches!(
            l.fault_unlock(),
            Err(Error::LockTransition {
                state: LockState::Unlocked,
                op: LockOp::FaultUnlock
            })
        ));
    }

    #[test]
    fn fault_unlock_before_finalize_is_refused() {
        let mut l = collecting();
        assert!(l.fault_unlock().is_err());
        l.unmap(true).unwrap();
        assert!(l.fault_unlock().is_err());
        assert_eq!(l.state(), LockState::Unmapped);
    }

    #[test]
    fn engine_never_locks_or_unlocks_the_fault_folio() {
        // mm/migrate_device.c:190, :410 (no trylock), :1332 (no unlock)
        let mut l = collecting();
        assert_eq!(
            l.engine_lock(),
            Err(Error::LockTransition {
                state: LockState::Collecting,
                op: LockOp::EngineLock
            })
        );
        assert_eq!(
            l.engine_unlock(),
            Err(Error::LockTransition {
                state: LockState::Collecting,
                op: LockOp::EngineUnlock
            })
        );
        l.finalize().unwrap();
        assert!(l.engine_unlock().is_err());
        assert_eq!(l.state(), LockState::Finalized);
    }

    #[test]
    fn split_moves_the_lock_with_the_fault_page() {
        // mm/migrate_device.c:104-120 (migrate_vma_split_folio)
        let mut l = collecting();
        assert_eq!(l.split(false), Ok(SplitLock::Keep));
        assert_eq!(l.split(true), Ok(SplitLock::Transfer));
        assert_eq!(l.state(), LockState::Collecting);
        let mut l = locked_by_fault();
        assert!(matches!(
            l.split(true),
            Err(Error::LockTransition {
                op: LockOp::Split,
                ..
            })
        ));
    }

    #[test]
    fn lock_actions_follow_the_fault_folio() {
        assert_eq!(LockAction::for_collect(true), LockAction::Held);
        assert_eq!(LockAction::for_collect(false), LockAction::Trylock);
        assert_eq!(LockAction::for_split(true), LockAction::Held);
        assert_eq!(LockAction::for_split(false), LockAction::Lock);
        assert_eq!(UnlockAction::for_release(true), UnlockAction::Keep);
        assert_eq!(UnlockAction::for_release(false), UnlockAction::Unlock);
    }

    #[test]
    fn other_folios_are_trylocked_and_unlocked_by_the_engine() {
        let mut f = FolioLock::default();
        assert_eq!(f.trylock(false), Ok(false));
        assert_eq!(f.state(), LockState::Unlocked);
        assert_eq!(f.trylock(true), Ok(true));
        assert_eq!(f.state(), LockState::LockedByEngine);
        assert!(f.trylock(true).is_err());
        assert!(f.lock().is_err());
        assert_eq!(f.unlock(), Ok(()));
        assert_eq!(
            f.unlock(),
            Err(Error::LockTransition {
                state: LockState::Unlocked,
                op: LockOp::EngineUnlock
            })
        );
        assert_eq!(f.lock(), Ok(()));
        assert_eq!(f.unlock(), Ok(()));
    }
}
