// SPDX-License-Identifier: GPL-2.0

//! Page-table views for device migration: a PMD under its lock
//! ([`PmdGuard`]) and a run of PTEs under the PTE-table lock ([`PteRun`]),
//! each reading entries as typed values ([`PmdEntry`], [`PteEntry`]).
//!
//! # Examples
//!
//! Find how `addr` is mapped, as collection does (the KUnit suite
//! `folio_migrate_bindings` runs the same on a real user mm):
//!
//! ```ignore
//! let mmap = mm.mmap_read_lock();
//! let vma = mmap.vma_lookup(addr).ok_or(EFAULT)?;
//! match PmdGuard::lock(vma, addr).ok_or(EFAULT)?.entry() {
//!     PmdEntry::Huge { .. } => { /* a THP: collect it whole */ }
//!     PmdEntry::Table => {
//!         let run = PteRun::lock(vma, addr, addr + PAGE_SIZE).ok_or(EAGAIN)?;
//!         for (a, entry) in run.iter() {
//!             if let Some(folio) = run.folio(a) {
//!                 pr_info!("{a:#x}: {entry:?}, order {}\n", folio.order());
//!             }
//!         }
//!     }
//!     _ => {}
//! }
//! ```
//!
//! C header: [`include/linux/pgtable.h`](srctree/include/linux/pgtable.h),
//! [`include/linux/leafops.h`](srctree/include/linux/leafops.h)

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

/// Size of a page.
pub const PAGE_SIZE: usize = bindings::PAGE_SIZE;
/// Size of the range one PMD maps.
pub const PMD_SIZE: usize = bindings::PMD_SIZE;
/// Order of a PMD-mapped folio.
pub const PMD_ORDER: u32 = (PMD_SIZE / PAGE_SIZE).trailing_zeros();

// The core restates the page and PMD sizes so that it can be tested on the
// host: keep the two in step.
const _: () = {
    use crate::migrate_core::pfn;
    assert!(pfn::PAGE_SIZE == PAGE_SIZE as u64);
    assert!(pfn::PMD_SIZE == PMD_SIZE as u64);
    assert!(pfn::PMD_ORDER == PMD_ORDER);
};

/// The bits of a present or swap-like entry that migration carries over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EntryBits {
    /// Writable (for a migration or device-private entry: was writable).
    pub write: bool,
    /// Soft-dirty (present entries only).
    pub soft_dirty: bool,
    /// Userfaultfd write-protected (present entries only).
    pub uffd_wp: bool,
}

/// Which migration entry to install, as `migrate_vma_collect_pmd()` and
/// `set_pmd_migration_entry()` choose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationKind {
    /// The mapping was read-only and the folio may be shared.
    Readable,
    /// The mapping was read-only but the anonymous folio is exclusive.
    ReadableExclusive,
    /// The mapping was writable.
    Writable,
}

impl MigrationKind {
    /// The migration entry for `pfn`, young and dirty as the present entry
    /// it replaces was.
    fn leaf(self, pfn: usize, young: bool, dirty: bool) -> bindings::softleaf_t {
        // SAFETY: These only encode a value.
        unsafe {
            let mut e = match self {
                Self::Readable => bindings::make_readable_migration_entry(pfn),
                Self::ReadableExclusive => bindings::make_readable_exclusive_migration_entry(pfn),
                Self::Writable => bindings::make_writable_migration_entry(pfn),
            };
            if young {
                e = bindings::make_migration_entry_young(e);
            }
            if dirty {
                e = bindings::make_migration_entry_dirty(e);
            }
            e
        }
    }
}

/// The device-private entry for `pfn`.
fn device_private_leaf(pfn: usize, write: bool) -> bindings::softleaf_t {
    // SAFETY: These only encode a value.
    unsafe {
        if write {
            bindings::make_writable_device_private_entry(pfn)
        } else {
            bindings::make_readable_device_private_entry(pfn)
        }
    }
}

/// A non-present entry of either level, decoded.
enum Leaf {
    Migration { pfn: usize, write: bool },
    DevicePrivate { pfn: usize, write: bool },
    DeviceExclusive,
    Other,
}

/// Decodes a software leaf entry taken from a PTE or a PMD.
fn decode_leaf(leaf: bindings::softleaf_t) -> Leaf {
    // SAFETY: The predicates only look at the value.
    unsafe {
        let pfn = bindings::softleaf_to_pfn(leaf);
        if bindings::softleaf_is_migration(leaf) {
            Leaf::Migration {
                pfn,
                write: bindings::softleaf_is_migration_write(leaf),
            }
        } else if bindings::softleaf_is_device_private(leaf) {
            Leaf::DevicePrivate {
                pfn,
                write: bindings::softleaf_is_device_private_write(leaf),
            }
        } else if bindings::softleaf_is_device_exclusive(leaf) {
            Leaf::DeviceExclusive
        } else {
            Leaf::Other
        }
    }
}

/// A PTE value taken out of a page table, to be restored or decoded.
#[derive(Clone, Copy)]
pub struct RawPte(bindings::pte_t);

impl RawPte {
    /// Wraps a PTE value read elsewhere, such as `vmf->orig_pte`.
    #[inline]
    pub fn from_raw(pte: bindings::pte_t) -> Self {
        RawPte(pte)
    }

    /// Whether both values are the same entry (`pte_same()`).
    #[inline]
    pub fn same(&self, other: RawPte) -> bool {
        // SAFETY: This only compares values.
        unsafe { bindings::pte_same(self.0, other.0) }
    }

    /// Decodes the value.
    #[inline]
    pub fn entry(&self) -> PteEntry {
        decode_pte(self.0)
    }

    /// Whether the value maps a page (`pte_present()`).
    #[inline]
    pub fn is_present(&self) -> bool {
        // SAFETY: This only looks at the value.
        unsafe { bindings::pte_present(self.0) }
    }

    /// Whether a present value is dirty (`pte_dirty()`).
    #[inline]
    pub fn is_dirty(&self) -> bool {
        // SAFETY: This only looks at the value.
        self.is_present() && unsafe { bindings::pte_dirty(self.0) }
    }

    /// The migration entry of `kind` for page `pfn` that replaces this
    /// value, present or a device-private entry, carrying its young, dirty,
    /// soft-dirty and uffd-wp bits as `migrate_vma_collect_pmd()` does.
    pub fn to_migration_entry(self, pfn: usize, kind: MigrationKind) -> RawPte {
        let kind = match kind {
            MigrationKind::Readable => 0,
            MigrationKind::ReadableExclusive => 1,
            MigrationKind::Writable => 2,
        };
        // SAFETY: This only encodes a value.
        RawPte(unsafe { bindings::folio_migrate_migration_pte(self.0, pfn, kind) })
    }
}

/// A PMD value taken out of a page table, to be restored.
#[derive(Clone, Copy)]
pub struct RawPmd(bindings::pmd_t);

/// Flushes the TLB entries of `start..end` in `vma` (`flush_tlb_range()`).
#[inline]
pub fn flush_tlb_range(vma: &VmaRef, start: usize, end: usize) {
    // SAFETY: `vma` is valid while borrowed; any range is accepted.
    unsafe { bindings::flush_tlb_range(vma.as_ptr(), start, end) };
}

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

/// What a PMD holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmdEntry {
    /// Nothing is mapped.
    None,
    /// A PTE table: walk it with [`PteRun`].
    Table,
    /// The huge zero page.
    HugeZero,
    /// A PMD-mapped THP whose head page is `pfn`.
    Huge {
        /// Head page frame number.
        pfn: usize,
        /// Permission and tracking bits.
        bits: EntryBits,
    },
    /// A PMD migration entry for the folio at `pfn`.
    Migration {
        /// Head page frame number.
        pfn: usize,
        /// Whether the mapping was writable.
        write: bool,
    },
    /// A device-private PMD entry for the device folio at `pfn`.
    DevicePrivate {
        /// Head page frame number.
        pfn: usize,
        /// Whether the mapping is writable.
        write: bool,
    },
    /// Any other non-present PMD (swap or a marker).
    Other,
}

/// What a PTE holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteEntry {
    /// Nothing is mapped.
    None,
    /// The shared zero page.
    Zero,
    /// A present page `pfn`.
    Present {
        /// Page frame number.
        pfn: usize,
        /// Permission and tracking bits.
        bits: EntryBits,
    },
    /// A migration entry for the page `pfn`.
    Migration {
        /// Page frame number.
        pfn: usize,
        /// Whether the mapping was writable.
        write: bool,
    },
    /// A device-private entry for the device page `pfn`.
    DevicePrivate {
        /// Page frame number.
        pfn: usize,
        /// Whether the mapping is writable.
        write: bool,
    },
    /// A device-exclusive entry for the page `pfn`.
    DeviceExclusive {
        /// Page frame number.
        pfn: usize,
    },
    /// Any other non-present PTE (swap or a marker).
    Other,
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
                Some(unsafe { Folio::from_raw(bindings::pfn_folio(pfn)) })
            }
            _ => None,
        }
    }
}

impl PmdGuard<'_> {
    /// Clears a huge PMD and flushes its TLB entries
    /// (`pmdp_huge_clear_flush()`); returns the old value.
    ///
    /// Fails with `EINVAL` unless the PMD maps a THP.
    pub fn clear_flush(&mut self) -> Result<RawPmd> {
        if !matches!(self.entry(), PmdEntry::Huge { .. }) {
            return Err(EINVAL);
        }
        // SAFETY: The PMD maps a THP and we hold its lock.
        let old =
            unsafe { bindings::pmdp_huge_clear_flush(self.vma.as_ptr(), self.addr, self.pmd) };
        Ok(RawPmd(old))
    }

    /// Stores `pmd` (`set_pmd_at()`), typically one [`PmdGuard::clear_flush`]
    /// returned.
    pub fn set(&mut self, pmd: RawPmd) {
        // SAFETY: We hold the PMD lock; the value came from this PMD or
        // from a constructor of this module.
        unsafe { bindings::set_pmd_at(self.vma.mm().as_raw(), self.addr, self.pmd, pmd.0) };
    }

    /// Replaces the huge PMD that maps `folio` by a PMD migration entry,
    /// carrying its young, dirty, soft-dirty and uffd-wp bits; returns the
    /// old value.
    ///
    /// Only the page table changes: the caller handles the rmap and the
    /// reference, as `set_pmd_migration_entry()` does. Fails with `EINVAL`
    /// unless the PMD maps exactly `folio`.
    pub fn install_migration_entry(
        &mut self,
        folio: &LockedFolio<'_>,
        kind: MigrationKind,
    ) -> Result<RawPmd> {
        match self.entry() {
            PmdEntry::Huge { pfn, .. } if pfn == folio.pfn() && folio.order() == PMD_ORDER => {}
            _ => return Err(EINVAL),
        }
        let old = self.clear_flush()?;
        // SAFETY: These only encode values.
        let new = unsafe {
            let e = kind.leaf(
                folio.pfn(),
                bindings::pmd_young(old.0),
                bindings::pmd_dirty(old.0),
            );
            let mut pmd = bindings::softleaf_to_pmd(e);
            if bindings::pmd_soft_dirty(old.0) {
                pmd = bindings::pmd_swp_mksoft_dirty(pmd);
            }
            if bindings::pmd_uffd(old.0) {
                pmd = bindings::pmd_swp_mkuffd(pmd);
            }
            pmd
        };
        self.set(RawPmd(new));
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

    /// Stores a device-private PMD entry for `folio`, a PMD-order
    /// device-private folio, as `migrate_vma_pages()` does for a 2 MiB
    /// device destination; returns the old value.
    ///
    /// The PMD must be empty or hold a migration or device-private entry;
    /// its soft-dirty and uffd-wp bits are not carried over. Only the page
    /// table changes: the caller handles the rmap and the reference. Fails
    /// with `EINVAL` otherwise.
    pub fn install_device_private_entry(
        &mut self,
        folio: &LockedFolio<'_>,
        write: bool,
    ) -> Result<RawPmd> {
        if !folio.is_device_private() || folio.order() != PMD_ORDER {
            return Err(EINVAL);
        }
        match self.entry() {
            PmdEntry::None | PmdEntry::Migration { .. } | PmdEntry::DevicePrivate { .. } => {}
            _ => return Err(EINVAL),
        }
        // SAFETY: We hold the PMD lock; the entry is not present, so no
        // TLB entry can cache it.
        let old = RawPmd(unsafe { bindings::pmdp_get(self.pmd) });
        // SAFETY: This only encodes a value.
        let new = unsafe { bindings::softleaf_to_pmd(device_private_leaf(folio.pfn(), write)) };
        self.set(RawPmd(new));
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
    pub fn read(&self, addr: usize) -> Option<(RawPte, PteEntry)> {
        if addr < self.start || addr >= self.end {
            return None;
        }
        // SAFETY: `addr` is in the run, so the slot is inside the mapped
        // table, and it is stable under the lock we hold.
        let raw =
            RawPte(unsafe { bindings::ptep_get(self.ptep.add((addr - self.start) / PAGE_SIZE)) });
        Some((raw, raw.entry()))
    }

    /// The page `raw`, the present PTE [`PteRun::read`] returned for
    /// `addr`, maps (`vm_normal_page()`), or null for the zero page and
    /// special mappings.
    pub fn normal_page_of(&self, addr: usize, raw: RawPte) -> *mut bindings::page {
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
    pub fn normal_page(&self, addr: usize) -> *mut bindings::page {
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

impl PteRun<'_> {
    /// The slot that maps `addr`.
    fn slot(&self, addr: usize) -> Result<*mut bindings::pte_t> {
        if addr < self.start || addr >= self.end || addr % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `addr` is in the run, so the slot is in the mapped table.
        Ok(unsafe { self.ptep.add((addr - self.start) / PAGE_SIZE) })
    }

    /// Clears the PTE at `addr` and flushes its TLB entry
    /// (`ptep_clear_flush()`); returns the old value.
    pub fn clear_flush(&mut self, addr: usize) -> Result<RawPte> {
        let ptep = self.slot(addr)?;
        // SAFETY: The slot is in the table whose lock we hold.
        Ok(RawPte(unsafe {
            bindings::ptep_clear_flush(self.vma.as_ptr(), addr, ptep)
        }))
    }

    /// Clears the PTE at `addr` without flushing the TLB
    /// (`ptep_get_and_clear()`); returns the old value. The caller flushes
    /// the range before dropping the lock.
    pub fn get_and_clear(&mut self, addr: usize) -> Result<RawPte> {
        let ptep = self.slot(addr)?;
        // SAFETY: The slot is in the table whose lock we hold.
        Ok(RawPte(unsafe {
            bindings::ptep_get_and_clear(self.vma.mm().as_raw(), addr, ptep)
        }))
    }

    /// Stores `pte` at `addr` (`set_pte_at()`), typically one
    /// [`PteRun::clear_flush`] returned.
    pub fn set(&mut self, addr: usize, pte: RawPte) -> Result {
        let ptep = self.slot(addr)?;
        // SAFETY: The slot is in the table whose lock we hold.
        unsafe { bindings::set_pte_at(self.vma.mm().as_raw(), addr, ptep, pte.0) };
        Ok(())
    }

    /// Replaces the present PTE at `addr`, which must map a page of
    /// `folio`, by a migration entry carrying its young, dirty, soft-dirty
    /// and uffd-wp bits, as `migrate_vma_collect_pmd()` does; returns the
    /// old value.
    ///
    /// Only the page table changes: the caller handles the rmap and the
    /// reference. Fails with `EINVAL` for any other entry.
    pub fn install_migration_entry(
        &mut self,
        addr: usize,
        folio: &LockedFolio<'_>,
        kind: MigrationKind,
    ) -> Result<RawPte> {
        let pfn = match self.entry(addr).ok_or(EINVAL)? {
            PteEntry::Present { pfn, .. }
                if pfn >= folio.pfn() && pfn < folio.pfn() + folio.nr_pages() =>
            {
                pfn
            }
            _ => return Err(EINVAL),
        };
        let old = self.clear_flush(addr)?;
        self.set(addr, old.to_migration_entry(pfn, kind))?;
        Ok(old)
    }

    /// Stores a device-private entry for the device page `pfn` of `folio`
    /// at `addr`, as `migrate_vma_pages()` does when the destination is
    /// device-private; returns the old value.
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
    ) -> Result<RawPte> {
        if !folio.is_device_private() || pfn < folio.pfn() || pfn >= folio.pfn() + folio.nr_pages()
        {
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
            if !bindings::pte_none(old.0) {
                if bindings::pte_swp_soft_dirty(old.0) {
                    pte = bindings::pte_swp_mksoft_dirty(pte);
                }
                if bindings::pte_swp_uffd(old.0) {
                    pte = bindings::pte_swp_mkuffd(pte);
                }
            }
            pte
        };
        self.set(addr, RawPte(new))?;
        Ok(old)
    }

    /// Runs `f` with lazy MMU mode on, so that a batch of PTE updates can
    /// be flushed together (`lazy_mmu_mode_enable()`/`_disable()`).
    pub fn with_lazy_mmu<R>(&mut self, f: impl FnOnce(&mut Self) -> R) -> R {
        // SAFETY: We hold the PTE lock, as lazy MMU mode requires; the
        // mode is left before returning.
        unsafe { bindings::lazy_mmu_mode_enable() };
        let r = f(self);
        // SAFETY: Matches the enable above.
        unsafe { bindings::lazy_mmu_mode_disable() };
        r
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

/// Decodes a PMD value.
fn decode_pmd(pmd: bindings::pmd_t) -> PmdEntry {
    // SAFETY: The predicates only look at the value.
    unsafe {
        if bindings::pmd_none(pmd) {
            return PmdEntry::None;
        }
        if bindings::pmd_present(pmd) {
            if !bindings::pmd_trans_huge(pmd) {
                return PmdEntry::Table;
            }
            if bindings::is_huge_zero_pmd(pmd) {
                return PmdEntry::HugeZero;
            }
            return PmdEntry::Huge {
                pfn: bindings::pmd_pfn(pmd),
                bits: EntryBits {
                    write: bindings::pmd_write(pmd),
                    soft_dirty: bindings::pmd_soft_dirty(pmd),
                    uffd_wp: bindings::pmd_uffd(pmd),
                },
            };
        }
        match decode_leaf(bindings::softleaf_from_pmd(pmd)) {
            Leaf::Migration { pfn, write } => PmdEntry::Migration { pfn, write },
            Leaf::DevicePrivate { pfn, write } => PmdEntry::DevicePrivate { pfn, write },
            // Device-exclusive entries exist at PTE level only.
            Leaf::DeviceExclusive | Leaf::Other => PmdEntry::Other,
        }
    }
}

// The bits of `folio_migrate_pte_decode()` (rust/helpers/folio_migrate.c).
const PTE_NONE: u32 = 1 << 0;
const PTE_PRESENT: u32 = 1 << 1;
const PTE_ZERO: u32 = 1 << 2;
const PTE_WRITE: u32 = 1 << 3;
const PTE_SOFT_DIRTY: u32 = 1 << 4;
const PTE_UFFD: u32 = 1 << 5;
const PTE_MIGRATION: u32 = 1 << 6;
const PTE_DEVICE_PRIVATE: u32 = 1 << 7;
const PTE_DEVICE_EXCLUSIVE: u32 = 1 << 8;

/// Decodes a PTE value, in one helper call: collection decodes every PTE
/// of the range, and the helpers are not inlined into Rust.
fn decode_pte(pte: bindings::pte_t) -> PteEntry {
    let mut pfn = 0;
    // SAFETY: This only looks at the value and writes `pfn`.
    let bits = unsafe { bindings::folio_migrate_pte_decode(pte, &mut pfn) };
    let write = bits & PTE_WRITE != 0;
    if bits & PTE_NONE != 0 {
        PteEntry::None
    } else if bits & PTE_ZERO != 0 {
        PteEntry::Zero
    } else if bits & PTE_PRESENT != 0 {
        PteEntry::Present {
            pfn,
            bits: EntryBits {
                write,
                soft_dirty: bits & PTE_SOFT_DIRTY != 0,
                uffd_wp: bits & PTE_UFFD != 0,
            },
        }
    } else if bits & PTE_MIGRATION != 0 {
        PteEntry::Migration { pfn, write }
    } else if bits & PTE_DEVICE_PRIVATE != 0 {
        PteEntry::DevicePrivate { pfn, write }
    } else if bits & PTE_DEVICE_EXCLUSIVE != 0 {
        PteEntry::DeviceExclusive { pfn }
    } else {
        PteEntry::Other
    }
}
