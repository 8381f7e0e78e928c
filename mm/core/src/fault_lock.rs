// SPDX-License-Identifier: GPL-2.0

//! Who locks the folio the rules collect or split.
//!
//! A CPU fault on a device-private page calls the driver's `migrate_to_ram()`
//! with the faulting page's folio locked by the fault path, and the driver
//! passes that page to `migrate_vma_setup()` as `fault_page`. From then on
//! the migration works with that folio as locked but never takes or drops its
//! lock: collection does not trylock it, a split does not lock it and moves
//! the lock to whichever folio holds the fault page afterwards, and neither
//! restore nor finalize unlocks it. Every other folio is trylocked when
//! collected (skipped when that fails), locked sleeping only to be split, and
//! unlocked when restored or finalized.
//!
//! The rules say which of these each collected folio gets ([`LockAction`]);
//! the kernel's bindings carry it out (`FaultPage`, `CollectedFolio` and
//! `SplitRef` in the engine object), so the lock is not tracked twice.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_folio_is_never_locked_by_the_engine() {
        assert_eq!(LockAction::for_collect(true), LockAction::Held);
        assert_eq!(LockAction::for_split(true), LockAction::Held);
    }

    #[test]
    fn other_folios_are_trylocked_and_locked_only_to_split() {
        assert_eq!(LockAction::for_collect(false), LockAction::Trylock);
        assert_eq!(LockAction::for_split(false), LockAction::Lock);
    }
}
