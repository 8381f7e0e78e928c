// SPDX-License-Identifier: GPL-2.0

//! A run of PTEs under the PTE-table lock.

use super::entry::{
    device_private_leaf, is_exclusive_migration_leaf, migration_pte, MigrationKind, PteEntry,
    PteValue, TakenPte,
};
use super::{PAGE_SIZE, PMD_SIZE};
use crate::folio::{Folio, LockedFolio};
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use kernel::{
    bindings,
    error::{code::EINVAL, Result},
    mm::virt::VmaRef,
    types::NotThreadSafe,
};

/// The PTEs of one page table, from `start` to `end`, with the PTE-table
/// lock held; unmaps and unlocks on drop.
///
/// # Invariants
///
/// `ptep` maps `start` in the mm of `vma`, the table covers `start..end`
/// (which does not cross a PMD boundary), and `ptl` is its lock, held and
/// owned by this guard.
pub struct PteRun<'a> {
    vma: &'a VmaRef,
    start: usize,
    end: usize,
    ptep: *mut bindings::pte_t,
    ptl: *mut bindings::spinlock_t,
    _nts: NotThreadSafe,
}

impl<'a> PteRun<'a> {
    /// Maps and locks the PTE table for `start..end` in `vma`.
    ///
    /// The range must be page aligned, inside `vma` and inside one PMD.
    /// Returns `None` when no PTE table maps it (the PMD is none, huge or
    /// a migration entry); a caller then reads the PMD instead.
    pub fn lock(vma: &'a VmaRef, start: usize, end: usize) -> Option<Self> {
        if start >= end
            || start % PAGE_SIZE != 0
            || end % PAGE_SIZE != 0
            || start < vma.start()
            || end > vma.end()
            || (start & !(PMD_SIZE - 1)) != ((end - 1) & !(PMD_SIZE - 1))
        {
            return None;
        }
        let mm = vma.mm().as_raw();
        // SAFETY: `vma` proves the mmap or VMA lock is held.
        let pmd = unsafe { bindings::folio_migrate_pmd_offset(mm, start) };
        if pmd.is_null() {
            return None;
        }
        let mut ptl = core::ptr::null_mut();
        // SAFETY: `pmd` is a valid PMD of `mm`; `pte_offset_map_lock()`
        // rechecks it and fails unless it points at a PTE table.
        let ptep = unsafe { bindings::pte_offset_map_lock(mm, pmd, start, &mut ptl) };
        if ptep.is_null() {
            return None;
        }
        // INVARIANT: We hold the lock of the table that maps `start..end`.
        Some(Self {
            vma,
            start,
            end,
            ptep,
            ptl,
            _nts: NotThreadSafe,
        })
    }

    /// The first address of the run.
    #[inline]
    pub fn start(&self) -> usize {
        self.start
    }

    /// The address after the run.
    #[inline]
    pub fn end(&self) -> usize {
        self.end
    }

    /// The number of PTEs in the run.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) / PAGE_SIZE
    }

    /// Whether the run is empty (never, by construction).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// The VMA the run belongs to.
    #[inline]
    pub fn vma(&self) -> &'a VmaRef {
        self.vma
    }

    /// Reads the entry that maps `addr`, or `None` outside the run.
    #[inline]
    pub fn entry(&self, addr: usize) -> Option<PteEntry> {
        self.read(addr).map(|(_, e)| e)
    }

    /// Iterates over `(address, entry)` for every PTE of the run.
    pub fn iter(&self) -> impl Iterator<Item = (usize, PteEntry)> + '_ {
        (self.start..self.end)
            .step_by(PAGE_SIZE)
            .filter_map(move |a| self.entry(a).map(|e| (a, e)))
    }

    /// Reads the entry that maps `addr`, raw and decoded; `None` outside the
    /// run.
    #[inline]
    pub fn read(&self, addr: usize) -> Option<(PteValue, PteEntry)> {
        let raw = self.read_value(addr)?;
        Some((raw, raw.entry()))
    }

    /// Reads the entry that maps `addr`, not decoded, to compare; `None`
    /// outside the run.
    #[inline]
    pub fn read_value(&self, addr: usize) -> Option<PteValue> {
        if addr < self.start || addr >= self.end {
            return None;
        }
        // SAFETY: `addr` is in the run, so the slot is inside the mapped
        // table, and it is stable under the lock we hold.
        Some(PteValue(unsafe {
            bindings::ptep_get(self.ptep.add((addr - self.start) / PAGE_SIZE))
        }))
    }

    /// The page `raw`, the present PTE [`PteRun::read`] returned for
    /// `addr`, maps (`vm_normal_page()`), or null for the zero page and
    /// special mappings.
    #[inline]
    pub(crate) fn normal_page_of(&self, addr: usize, raw: PteValue) -> *mut bindings::page {
        if addr < self.start || addr >= self.end || !raw.is_present() {
            return core::ptr::null_mut();
        }
        // SAFETY: `addr` is in the run, the VMA is the one the table belongs
        // to, and `raw` is present.
        unsafe { bindings::vm_normal_page(self.vma.as_ptr(), addr, raw.0) }
    }

    /// The page a present, normal PTE at `addr` maps (`vm_normal_page()`),
    /// or null for the zero page, special mappings and non-present entries.
    /// The page stays valid while the lock is held.
    fn normal_page(&self, addr: usize) -> *mut bindings::page {
        match self.read(addr) {
            Some((raw, PteEntry::Present { .. })) => self.normal_page_of(addr, raw),
            _ => core::ptr::null_mut(),
        }
    }

    /// The folio a present, normal PTE at `addr` maps, borrowed for as
    /// long as the lock is held. `None` for the zero page, special mappings
    /// and non-present entries.
    pub fn folio(&self, addr: usize) -> Option<&Folio> {
        let page = self.normal_page(addr);
        if page.is_null() {
            return None;
        }
        // SAFETY: The present PTE holds a reference to the folio, and it
        // cannot change while we hold the lock.
        Some(unsafe { Folio::from_page(page) })
    }
}

/// Whether the PTE in `ptep` is a migration entry for page `pfn` made from
/// an exclusive mapping (writable or anon-exclusive).
///
/// # Safety
///
/// `ptep` is a slot of a mapped page table whose lock the caller holds.
#[inline(always)]
unsafe fn holds_exclusive_migration_entry(ptep: *mut bindings::pte_t, pfn: usize) -> bool {
    // SAFETY: The slot is mapped and stable under the lock the caller
    // holds; the conversion only looks at the value.
    let leaf = unsafe { bindings::softleaf_from_pte(bindings::ptep_get(ptep)) };
    is_exclusive_migration_leaf(leaf, pfn)
}

impl<'a> PteRun<'a> {
    /// The index in the run of the `nr` entries from `addr`, if they are
    /// all in it.
    #[inline]
    fn index_of(&self, addr: usize, nr: usize) -> Option<usize> {
        if addr < self.start
            || addr > self.end
            || addr % PAGE_SIZE != 0
            || nr > (self.end - addr) / PAGE_SIZE
        {
            return None;
        }
        Some((addr - self.start) / PAGE_SIZE)
    }

    /// Puts back the `nr` entries from `addr` as mappings of the pages of
    /// `new`, with each entry's permissions and bits, and adds them to the
    /// rmap (`remove_migration_pte_locked()`), as an rmap walk of
    /// `remove_migration_ptes()` would for these entries, if they are
    /// migration entries for the pages from `pfn` on, each made from an
    /// exclusive mapping (writable or anon-exclusive), so that no other
    /// page table maps those pages. Returns whether they were put back;
    /// when one is not such an entry, or not in the run, nothing changes.
    /// The entries put back take over the caller's reference to `new`,
    /// with one more taken for each but the first in one go, rather than
    /// one taken for each and the caller's dropped.
    ///
    /// # Safety
    ///
    /// A migration entry for page `pfn + k` in slot `k` was installed by a
    /// migration of that page's folio, and `new` is that folio or its
    /// destination: locked, of at least `nr` pages, and ready to be mapped
    /// (its mapping and flags moved). The caller owns a reference to `new`,
    /// which it gives up when this returns `true`.
    #[inline(always)]
    pub unsafe fn restore_exclusive_migration_entries(
        &mut self,
        addr: usize,
        pfn: usize,
        new: &Folio,
        nr: usize,
    ) -> bool {
        let Some(first) = self.index_of(addr, nr) else {
            return false;
        };
        // SAFETY: The `nr` slots from `first` are in the mapped table.
        let ptep = unsafe { self.ptep.add(first) };
        // SAFETY: Slot `k` from `ptep` is in the mapped table.
        if !(0..nr).all(|k| unsafe { holds_exclusive_migration_entry(ptep.add(k), pfn + k) }) {
            return false;
        }
        if nr > 1 {
            // SAFETY: The caller owns a reference to `new`, so it is live;
            // the entries below take these over with the caller's.
            unsafe { bindings::folio_ref_add(new.as_raw(), (nr - 1) as i32) };
        }
        for k in 0..nr {
            // SAFETY: We hold the PTE lock, slot `k` from `ptep` is in the
            // mapped table and maps `addr + k * PAGE_SIZE`; it holds the
            // migration entry for page `k` of the folio just checked, and
            // the caller guarantees it and `new`; the entry takes one of
            // the references held for it above.
            unsafe {
                bindings::remove_migration_pte_locked(
                    new.as_raw(),
                    self.vma.as_ptr(),
                    addr + k * PAGE_SIZE,
                    ptep.add(k),
                    k,
                )
            };
        }
        true
    }

    /// [`PteRun::restore_exclusive_migration_entries`] for the one entry of
    /// a small folio, the common case, without the loops: the entry takes
    /// over the caller's reference.
    ///
    /// # Safety
    ///
    /// As for [`PteRun::restore_exclusive_migration_entries`], with `nr`
    /// 1.
    #[inline(always)]
    pub unsafe fn restore_exclusive_migration_entry(
        &mut self,
        addr: usize,
        pfn: usize,
        new: &Folio,
    ) -> bool {
        let Ok(ptep) = self.slot(addr) else {
            return false;
        };
        // SAFETY: `ptep` is the slot of `addr` in the mapped table.
        if !unsafe { holds_exclusive_migration_entry(ptep, pfn) } {
            return false;
        }
        // SAFETY: We hold the PTE lock, and `ptep` maps `addr`; it holds
        // the migration entry for the folio's page just checked, and the
        // caller guarantees it and `new`, and gives its reference to the
        // entry.
        unsafe {
            bindings::remove_migration_pte_locked(new.as_raw(), self.vma.as_ptr(), addr, ptep, 0)
        };
        true
    }

    /// The slot that maps `addr`; it stays valid while the lock is held.
    pub(crate) fn slot(&self, addr: usize) -> Result<*mut bindings::pte_t> {
        let k = self.index_of(addr, 1).ok_or(EINVAL)?;
        // SAFETY: `addr` is in the run, so the slot is in the mapped table.
        Ok(unsafe { self.ptep.add(k) })
    }

    /// The entry just cleared at `addr`.
    fn taken(&self, addr: usize, pte: bindings::pte_t) -> TakenPte {
        // INVARIANT: the caller cleared `pte` from the slot of `addr`.
        TakenPte {
            pte,
            mm: self.vma.mm().as_raw(),
            addr,
        }
    }

    /// Clears the PTE at `addr` and flushes its TLB entry
    /// (`ptep_clear_flush()`); returns the entry taken out.
    pub fn clear_flush(&mut self, addr: usize) -> Result<TakenPte> {
        let ptep = self.slot(addr)?;
        // SAFETY: `ptep` is the slot of `addr`, just found.
        Ok(unsafe { self.take_at(ptep, addr, true) })
    }

    /// Clears the PTE at `addr` without flushing the TLB
    /// (`ptep_get_and_clear()`); returns the old entry. The caller flushes
    /// the range before dropping the lock.
    pub fn get_and_clear(&mut self, addr: usize) -> Result<TakenPte> {
        let ptep = self.slot(addr)?;
        // SAFETY: `ptep` is the slot of `addr`, just found.
        Ok(unsafe { self.take_at(ptep, addr, false) })
    }

    /// Clears the PTE in `ptep`, flushing its TLB entry if `flush`
    /// (`ptep_clear_flush()`, else `ptep_get_and_clear()`); returns the
    /// entry taken out.
    ///
    /// # Safety
    ///
    /// `ptep` is the slot of `addr` in this run ([`PteRun::slot`]).
    #[inline(always)]
    unsafe fn take_at(&mut self, ptep: *mut bindings::pte_t, addr: usize, flush: bool) -> TakenPte {
        // SAFETY: The slot is in the table whose lock we hold, by the
        // caller's guarantee.
        let pte = unsafe {
            if flush {
                bindings::ptep_clear_flush(self.vma.as_ptr(), addr, ptep)
            } else {
                bindings::ptep_get_and_clear(self.vma.mm().as_raw(), addr, ptep)
            }
        };
        self.taken(addr, pte)
    }

    /// Takes the PTE at `addr` out, flushing its TLB entry if `flush`
    /// (`ptep_clear_flush()`, else `ptep_get_and_clear()`), and stores in
    /// its place the entry `replace` gives back: the one taken out, or one
    /// made from it for the same slot. The slot is found once for both.
    /// Fails with `EINVAL`, with nothing changed, when `addr` is not in the
    /// run; returns what `replace` says besides.
    #[inline(always)]
    pub fn take_and_replace<R>(
        &mut self,
        addr: usize,
        flush: bool,
        replace: impl FnOnce(TakenPte) -> (TakenPte, R),
    ) -> Result<R> {
        let ptep = self.slot(addr)?;
        let mm = self.vma.mm().as_raw();
        // SAFETY: `ptep` is the slot of `addr`, just found.
        let (back, ret) = replace(unsafe { self.take_at(ptep, addr, flush) });
        if core::ptr::eq(back.mm, mm) && back.addr == addr {
            // SAFETY: By the invariant of `TakenPte`, the value may be
            // stored in the slot of `addr` in this mm, which is `ptep`; the
            // slot was cleared above.
            unsafe { bindings::set_pte_at(mm, addr, ptep, back.pte) };
        } else {
            // Another slot's entry: never given by a caller that builds on
            // the entry it was handed. It goes back to its own slot if it
            // can; the slot of `addr` stays empty.
            kernel::warn_on!(true);
            let _ = self.restore(back);
        }
        Ok(ret)
    }

    /// Puts `pte` back where it was taken from (`set_pte_at()`). Fails
    /// with `EINVAL`, dropping it, if that slot is not in this run of the
    /// same mm.
    pub fn restore(&mut self, pte: TakenPte) -> Result {
        if !core::ptr::eq(pte.mm, self.vma.mm().as_raw()) {
            return Err(EINVAL);
        }
        // SAFETY: By the invariant of `TakenPte`, the value was cleared from
        // this slot and nothing else holds it.
        unsafe { self.set_raw(pte.addr, pte.pte) }
    }

    /// Stores `pte` at `addr` (`set_pte_at()`).
    ///
    /// # Safety
    ///
    /// `pte` is an entry that may be stored there: the one taken from the
    /// slot, or a new entry whose mapping the caller accounts for.
    unsafe fn set_raw(&mut self, addr: usize, pte: bindings::pte_t) -> Result {
        let ptep = self.slot(addr)?;
        // SAFETY: The slot is in the table whose lock we hold.
        unsafe { bindings::set_pte_at(self.vma.mm().as_raw(), addr, ptep, pte) };
        Ok(())
    }

    /// Replaces the present PTE at `addr`, which must map a page of
    /// `folio`, by a migration entry carrying its young, dirty, soft-dirty
    /// and uffd-wp bits, as `migrate_vma_collect_pmd()` does; returns the
    /// entry taken out, which [`PteRun::restore`] puts back.
    ///
    /// Only the page table changes: the caller handles the rmap and the
    /// reference. Fails with `EINVAL` for any other entry.
    pub fn install_migration_entry(
        &mut self,
        addr: usize,
        folio: &LockedFolio<'_>,
        kind: MigrationKind,
    ) -> Result<TakenPte> {
        match self.entry(addr).ok_or(EINVAL)? {
            PteEntry::Present { pfn, .. } if folio.contains_pfn(pfn) => {}
            _ => return Err(EINVAL),
        }
        let old = self.clear_flush(addr)?;
        let Some(new) = migration_pte(old.value(), kind) else {
            // Not reached: a present entry always has a migration entry.
            self.restore(old)?;
            return Err(EINVAL);
        };
        // SAFETY: The migration entry for a page of the locked folio, which
        // stands for the entry taken out; the caller handles the rmap and
        // the reference, as documented.
        unsafe { self.set_raw(addr, new)? };
        Ok(old)
    }

    /// Replaces the present or device-private PTE at `addr`, which must
    /// name a page of `folio`, by the migration entry
    /// `migrate_vma_collect_pmd()` makes for it: writable if the entry was,
    /// else readable, and exclusive if `exclusive`, with its young, dirty,
    /// soft-dirty and uffd-wp bits. Returns the entry taken out, which
    /// [`PteRun::restore`] puts back.
    ///
    /// The TLB is not flushed: the caller flushes a present entry's before
    /// the lock is dropped, and handles the rmap and the reference. Fails
    /// with `EINVAL` for any other entry, changing nothing.
    #[inline]
    pub fn replace_by_migration_entry(
        &mut self,
        addr: usize,
        folio: &LockedFolio<'_>,
        exclusive: bool,
    ) -> Result<TakenPte> {
        let (pfn, write) = match self.entry(addr).ok_or(EINVAL)? {
            PteEntry::Present { pfn, bits } => (pfn, bits.write),
            PteEntry::DevicePrivate { pfn, write } => (pfn, write),
            _ => return Err(EINVAL),
        };
        if !folio.contains_pfn(pfn) {
            return Err(EINVAL);
        }
        // SAFETY: The entry just decoded is present or device-private, names
        // page `pfn` of the locked folio and is writable if `write`; the
        // caller handles the rmap and the reference, as documented.
        unsafe { self.replace_by_migration_entry_of_page(addr, pfn, write, exclusive) }
    }

    /// [`PteRun::replace_by_migration_entry`] for an entry the caller has
    /// decoded already under this lock: the migration entry for page `pfn`,
    /// writable if `write`, replaces it without a second decode, the slot
    /// found once.
    ///
    /// # Safety
    ///
    /// The entry at `addr` is a present or device-private entry that names
    /// page `pfn` of a folio the caller holds locked, writable exactly if
    /// `write`; the caller handles the rmap and the reference.
    #[inline]
    pub(crate) unsafe fn replace_by_migration_entry_of_page(
        &mut self,
        addr: usize,
        pfn: usize,
        write: bool,
        exclusive: bool,
    ) -> Result<TakenPte> {
        let kind = MigrationKind::of(write, exclusive);
        self.take_and_replace(addr, false, |old| {
            // SAFETY: The entry taken out names page `pfn`, by the caller's
            // guarantee.
            (unsafe { old.migration_entry_of_page(kind, pfn) }, old)
        })
    }

    /// Stores a device-private entry for the device page `pfn` of `folio`
    /// at `addr`, as `migrate_vma_pages()` does when the destination is
    /// device-private; returns the entry taken out.
    ///
    /// The slot must be empty or hold a migration or device-private entry
    /// (whose soft-dirty and uffd-wp bits are kept). Only the page table
    /// changes: the caller handles the rmap and the reference. Fails with
    /// `EINVAL` when `folio` is not device-private, `pfn` is not one of
    /// its pages, or the slot holds anything else.
    pub fn install_device_private_entry(
        &mut self,
        addr: usize,
        folio: &LockedFolio<'_>,
        pfn: usize,
        write: bool,
    ) -> Result<TakenPte> {
        if !folio.is_device_private() || !folio.contains_pfn(pfn) {
            return Err(EINVAL);
        }
        match self.entry(addr).ok_or(EINVAL)? {
            PteEntry::None | PteEntry::Migration { .. } | PteEntry::DevicePrivate { .. } => {}
            _ => return Err(EINVAL),
        }
        let old = self.clear_flush(addr)?;
        // SAFETY: These only encode values.
        let new = unsafe {
            let mut pte = bindings::softleaf_to_pte(device_private_leaf(pfn, write));
            if !bindings::pte_none(old.pte) {
                if bindings::pte_swp_soft_dirty(old.pte) {
                    pte = bindings::pte_swp_mksoft_dirty(pte);
                }
                if bindings::pte_swp_uffd(old.pte) {
                    pte = bindings::pte_swp_mkuffd(pte);
                }
            }
            pte
        };
        // SAFETY: A device-private entry for a page of the locked device
        // folio; the caller handles its rmap and reference, as documented.
        unsafe { self.set_raw(addr, new)? };
        Ok(old)
    }

    /// Turns lazy MMU mode on (`lazy_mmu_mode_enable()`), so that a batch
    /// of PTE updates can be flushed together; the mode ends when the
    /// returned run is dropped or left, before the PTE lock is released.
    #[inline]
    pub fn into_lazy_mmu(self) -> LazyPteRun<'a> {
        // SAFETY: We hold the PTE lock, as lazy MMU mode requires; the
        // returned guard leaves the mode before it drops the lock.
        unsafe { bindings::lazy_mmu_mode_enable() };
        // INVARIANT: The mode was just entered.
        LazyPteRun {
            run: ManuallyDrop::new(self),
        }
    }
}

/// A [`PteRun`] in lazy MMU mode; it derefs to the run.
///
/// # Invariants
///
/// Lazy MMU mode is on, entered by [`PteRun::into_lazy_mmu`] while the
/// run's lock was held; `run` is dropped only after the mode is left.
pub struct LazyPteRun<'a> {
    run: ManuallyDrop<PteRun<'a>>,
}

impl<'a> LazyPteRun<'a> {
    /// Leaves lazy MMU mode (`lazy_mmu_mode_disable()`) and gives the run
    /// back, still locked.
    #[inline]
    pub fn leave(self) -> PteRun<'a> {
        let mut this = ManuallyDrop::new(self);
        // SAFETY: Lazy MMU mode is on by the type invariant; `this` is not
        // dropped, so it is left once.
        unsafe { bindings::lazy_mmu_mode_disable() };
        // SAFETY: `this` is never used or dropped again, so the run moves
        // out of it exactly once.
        unsafe { ManuallyDrop::take(&mut this.run) }
    }
}

impl<'a> Deref for LazyPteRun<'a> {
    type Target = PteRun<'a>;

    #[inline]
    fn deref(&self) -> &PteRun<'a> {
        &self.run
    }
}

impl DerefMut for LazyPteRun<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.run
    }
}

impl Drop for LazyPteRun<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: Lazy MMU mode is on by the type invariant, and the PTE
        // lock is still held: leave the mode first.
        unsafe { bindings::lazy_mmu_mode_disable() };
        // SAFETY: `run` is not used again.
        unsafe { ManuallyDrop::drop(&mut self.run) };
    }
}

impl Drop for PteRun<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: `ptep` and `ptl` come from `pte_offset_map_lock()` and we
        // own the lock by the type invariant.
        unsafe { bindings::pte_unmap_unlock(self.ptep, self.ptl) };
    }
}
