// SPDX-License-Identifier: GPL-2.0

//! A PMD under its page-table lock.

use super::entry::{
    decode_pmd, device_private_leaf, is_exclusive_migration_leaf, MigrationKind, PmdEntry, TakenPmd,
};
use super::{PMD_ORDER, PMD_SIZE};
use crate::folio::{Folio, LockedFolio};
use kernel::{
    bindings,
    error::{
        code::{EBUSY, EINVAL},
        Result,
    },
    mm::virt::VmaRef,
    types::NotThreadSafe,
};

/// Reads the PMD that maps `addr` in `vma` without its lock
/// (`pmdp_get_lockless()`), as a hint for which path to take; `None` when no
/// PMD level is allocated. Decide nothing final from it: lock the PMD.
pub fn pmd_peek(vma: &VmaRef, addr: usize) -> Option<PmdEntry> {
    if addr < vma.start() || addr >= vma.end() {
        return None;
    }
    // SAFETY: `vma` proves the mmap or VMA lock is held, so the upper
    // page-table levels cannot be freed under us.
    let pmd = unsafe { bindings::folio_migrate_pmd_offset(vma.mm().as_raw(), addr) };
    if pmd.is_null() {
        return None;
    }
    // SAFETY: `pmd` is a valid PMD of the mm; the read is atomic.
    Some(decode_pmd(unsafe { bindings::pmdp_get_lockless(pmd) }))
}

/// A PMD with its page-table lock held; unlocks on drop.
///
/// # Invariants
///
/// `pmd` points at the PMD mapping `addr` in the mm of `vma`, and `ptl` is
/// its lock, held and owned by this guard. The mmap (or VMA) lock that
/// `&'a VmaRef` witnesses keeps the page tables from being freed.
pub struct PmdGuard<'a> {
    vma: &'a VmaRef,
    addr: usize,
    pmd: *mut bindings::pmd_t,
    ptl: *mut bindings::spinlock_t,
    _nts: NotThreadSafe,
}

impl<'a> PmdGuard<'a> {
    /// Locks the PMD that maps `addr` in `vma`.
    ///
    /// Returns `None` when `addr` is outside `vma` or no PMD level is
    /// allocated for it.
    #[inline]
    pub fn lock(vma: &'a VmaRef, addr: usize) -> Option<Self> {
        if addr < vma.start() || addr >= vma.end() {
            return None;
        }
        let mm = vma.mm().as_raw();
        // SAFETY: `vma` proves the mmap or VMA lock is held, so the upper
        // page-table levels cannot be freed under us.
        let pmd = unsafe { bindings::folio_migrate_pmd_offset(mm, addr) };
        if pmd.is_null() {
            return None;
        }
        // SAFETY: `pmd` is a valid PMD of `mm`.
        let ptl = unsafe { bindings::pmd_lock(mm, pmd) };
        // INVARIANT: We hold the lock of the PMD that maps `addr`.
        Some(Self {
            vma,
            addr: addr & !(PMD_SIZE - 1),
            pmd,
            ptl,
            _nts: NotThreadSafe,
        })
    }

    /// The address of the first byte the PMD maps.
    #[inline]
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The VMA the PMD was looked up in.
    #[inline]
    pub fn vma(&self) -> &'a VmaRef {
        self.vma
    }

    /// The raw PMD pointer, for C calls made under this lock.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::pmd_t {
        self.pmd
    }

    /// Reads the entry.
    #[inline]
    pub fn entry(&self) -> PmdEntry {
        // SAFETY: `pmd` is valid and stable under the lock we hold.
        decode_pmd(unsafe { bindings::pmdp_get(self.pmd) })
    }

    /// The THP a present huge PMD maps, borrowed for as long as the lock
    /// is held (the mapping holds a reference to it).
    pub fn folio(&self) -> Option<&Folio> {
        match self.entry() {
            PmdEntry::Huge { pfn, .. } => {
                // SAFETY: A present huge PMD holds a reference to its
                // folio, and the PMD cannot change while we hold its lock.
                Some(unsafe { Folio::from_pfn(pfn) })
            }
            _ => None,
        }
    }
}

impl PmdGuard<'_> {
    /// Clears a huge PMD and flushes its TLB entries
    /// (`pmdp_huge_clear_flush()`); returns the entry taken out.
    ///
    /// Fails with `EINVAL` unless the PMD maps a THP.
    pub fn clear_flush(&mut self) -> Result<TakenPmd> {
        if !matches!(self.entry(), PmdEntry::Huge { .. }) {
            return Err(EINVAL);
        }
        // SAFETY: The PMD maps a THP and we hold its lock.
        let pmd =
            unsafe { bindings::pmdp_huge_clear_flush(self.vma.as_ptr(), self.addr, self.pmd) };
        Ok(self.taken(pmd))
    }

    /// The entry just cleared from this PMD.
    fn taken(&self, pmd: bindings::pmd_t) -> TakenPmd {
        // INVARIANT: the caller cleared `pmd` from this PMD.
        TakenPmd {
            pmd,
            mm: self.vma.mm().as_raw(),
            addr: self.addr,
        }
    }

    /// Puts `pmd` back where it was taken from (`set_pmd_at()`). Fails with
    /// `EINVAL`, dropping it, if it was taken from another PMD.
    pub fn restore(&mut self, pmd: TakenPmd) -> Result {
        if !core::ptr::eq(pmd.mm, self.vma.mm().as_raw()) || pmd.addr != self.addr {
            return Err(EINVAL);
        }
        // SAFETY: By the invariant of `TakenPmd`, the value was cleared from
        // this PMD and nothing else holds it.
        unsafe { self.set_raw(pmd.pmd) };
        Ok(())
    }

    /// Stores `pmd` (`set_pmd_at()`).
    ///
    /// # Safety
    ///
    /// `pmd` is an entry that may be stored here: the one taken from this
    /// PMD, or a new entry whose mapping the caller accounts for.
    unsafe fn set_raw(&mut self, pmd: bindings::pmd_t) {
        // SAFETY: We hold the PMD lock.
        unsafe { bindings::set_pmd_at(self.vma.mm().as_raw(), self.addr, self.pmd, pmd) };
    }

    /// Replaces the huge PMD that maps `folio` by a PMD migration entry,
    /// carrying its young, dirty, soft-dirty and uffd-wp bits; returns the
    /// entry taken out, which [`PmdGuard::restore`] puts back.
    ///
    /// Only the page table changes: the caller handles the rmap and the
    /// reference, as `set_pmd_migration_entry()` does. Fails with `EINVAL`
    /// unless the PMD maps exactly `folio`.
    pub fn install_migration_entry(
        &mut self,
        folio: &LockedFolio<'_>,
        kind: MigrationKind,
    ) -> Result<TakenPmd> {
        match self.entry() {
            PmdEntry::Huge { pfn, .. } if pfn == folio.pfn() && folio.order() == PMD_ORDER => {}
            _ => return Err(EINVAL),
        }
        let old = self.clear_flush()?;
        // SAFETY: These only encode values.
        let new = unsafe {
            let e = kind.leaf(
                folio.pfn(),
                bindings::pmd_young(old.pmd),
                bindings::pmd_dirty(old.pmd),
            );
            let mut pmd = bindings::softleaf_to_pmd(e);
            if bindings::pmd_soft_dirty(old.pmd) {
                pmd = bindings::pmd_swp_mksoft_dirty(pmd);
            }
            if bindings::pmd_uffd(old.pmd) {
                pmd = bindings::pmd_swp_mkuffd(pmd);
            }
            pmd
        };
        // SAFETY: The migration entry for the locked folio the PMD mapped;
        // the caller handles the rmap and the reference, as documented.
        unsafe { self.set_raw(new) };
        Ok(old)
    }

    /// Replaces the huge PMD or device-private PMD entry that maps the
    /// locked PMD-order `folio` by a PMD migration entry with
    /// `set_pmd_migration_entry()`, which also removes the folio's PMD rmap
    /// and the mapping's reference, as `migrate_vma_collect_huge_pmd()`
    /// needs; the caller must hold its own reference.
    ///
    /// Fails with `EINVAL` unless the PMD maps exactly `folio`, and with
    /// `EBUSY` when the anon-exclusive folio could not be shared (it is
    /// pinned); the PMD is then left as it was.
    pub fn set_pmd_migration_entry(&mut self, folio: &LockedFolio<'_>) -> Result {
        match self.entry() {
            PmdEntry::Huge { pfn, .. } | PmdEntry::DevicePrivate { pfn, .. }
                if pfn == folio.pfn() && folio.order() == PMD_ORDER => {}
            _ => return Err(EINVAL),
        }
        // SAFETY: We hold the PMD lock and the folio lock; the PMD maps the
        // folio's head page at `addr`.
        let ret = unsafe {
            bindings::folio_migrate_set_pmd_migration_entry(
                self.vma.as_ptr(),
                self.addr,
                self.pmd,
                self.ptl,
                folio.head_page(),
            )
        };
        if ret != 0 {
            return Err(EBUSY);
        }
        Ok(())
    }

    /// Replaces the PMD migration entry by a mapping of `new`, with the
    /// entry's permissions and bits, and adds it to the rmap
    /// (`remove_migration_pmd()`), as an rmap walk of
    /// `remove_migration_ptes()` would for this PMD, if it is a migration
    /// entry for the folio whose head page is `pfn`, made from an exclusive
    /// mapping (writable or anon-exclusive), so that no other page table
    /// maps that folio. A readable entry may have siblings in other page
    /// tables (a forked child's). Returns whether it was put back; when the
    /// PMD holds anything else, nothing changes.
    ///
    /// # Safety
    ///
    /// A migration entry for `pfn` in this PMD was installed by a migration
    /// of that PMD-order folio, and `new` is that folio or its destination:
    /// locked, PMD-order, and ready to be mapped (its mapping and flags
    /// moved).
    pub unsafe fn restore_exclusive_migration_entry(&mut self, pfn: usize, new: &Folio) -> bool {
        // SAFETY: `pmd` is valid and stable under the lock we hold.
        let leaf = unsafe { bindings::softleaf_from_pmd(bindings::pmdp_get(self.pmd)) };
        if !is_exclusive_migration_leaf(leaf, pfn) {
            return false;
        }
        // SAFETY: We hold the PMD lock; it holds the migration entry for the
        // folio just checked, and the caller guarantees it and `new`.
        unsafe {
            bindings::folio_migrate_remove_migration_pmd(
                new.as_raw(),
                self.vma.as_ptr(),
                self.addr,
                self.pmd,
            )
        };
        true
    }

    /// Stores a device-private PMD entry for `folio`, a PMD-order
    /// device-private folio, as `migrate_vma_pages()` does for a 2 MiB
    /// device destination; returns the entry taken out.
    ///
    /// The PMD must be empty or hold a migration or device-private entry;
    /// its soft-dirty and uffd-wp bits are not carried over. Only the page
    /// table changes: the caller handles the rmap and the reference. Fails
    /// with `EINVAL` otherwise.
    pub fn install_device_private_entry(
        &mut self,
        folio: &LockedFolio<'_>,
        write: bool,
    ) -> Result<TakenPmd> {
        if !folio.is_device_private() || folio.order() != PMD_ORDER {
            return Err(EINVAL);
        }
        match self.entry() {
            PmdEntry::None | PmdEntry::Migration { .. } | PmdEntry::DevicePrivate { .. } => {}
            _ => return Err(EINVAL),
        }
        // SAFETY: We hold the PMD lock; the entry is not present, so no
        // TLB entry can cache it.
        let old = self.taken(unsafe { bindings::pmdp_get(self.pmd) });
        // SAFETY: This only encodes a value.
        let new = unsafe { bindings::softleaf_to_pmd(device_private_leaf(folio.pfn(), write)) };
        // SAFETY: A device-private entry for the locked device folio; the
        // caller handles its rmap and reference, as documented.
        unsafe { self.set_raw(new) };
        Ok(old)
    }
}

impl Drop for PmdGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: We own the lock by the type invariant.
        unsafe { bindings::spin_unlock(self.ptl) };
    }
}
