// SPDX-License-Identifier: GPL-2.0

//! Page-table views for device migration: a PMD under its lock
//! ([`PmdGuard`]) and a run of PTEs under the PTE-table lock ([`PteRun`]),
//! each reading entries as typed values ([`PmdEntry`], [`PteEntry`]).
//!
//! C header: [`include/linux/pgtable.h`](srctree/include/linux/pgtable.h),
//! [`include/linux/leafops.h`](srctree/include/linux/leafops.h)

use crate::folio::Folio;
use kernel::{bindings, mm::virt::VmaRef, types::NotThreadSafe};

/// Size of a page.
pub const PAGE_SIZE: usize = bindings::PAGE_SIZE;
/// Size of the range one PMD maps.
pub const PMD_SIZE: usize = bindings::PMD_SIZE;
/// Order of a PMD-mapped folio.
pub const PMD_ORDER: u32 = (PMD_SIZE / PAGE_SIZE).trailing_zeros();

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
    pub fn entry(&self) -> PmdEntry {
        // SAFETY: `pmd` is valid and stable under the lock we hold.
        let pmd = unsafe { bindings::pmdp_get(self.pmd) };
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
            let leaf = bindings::softleaf_from_pmd(pmd);
            let pfn = bindings::softleaf_to_pfn(leaf);
            if bindings::softleaf_is_migration(leaf) {
                PmdEntry::Migration {
                    pfn,
                    write: bindings::softleaf_is_migration_write(leaf),
                }
            } else if bindings::softleaf_is_device_private(leaf) {
                PmdEntry::DevicePrivate {
                    pfn,
                    write: bindings::softleaf_is_device_private_write(leaf),
                }
            } else {
                PmdEntry::Other
            }
        }
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
    pub fn entry(&self, addr: usize) -> Option<PteEntry> {
        if addr < self.start || addr >= self.end {
            return None;
        }
        // SAFETY: `addr` is in the run, so the slot is inside the mapped
        // table, and it is stable under the lock we hold.
        let pte = unsafe { bindings::ptep_get(self.ptep.add((addr - self.start) / PAGE_SIZE)) };
        Some(decode_pte(pte))
    }

    /// Iterates over `(address, entry)` for every PTE of the run.
    pub fn iter(&self) -> impl Iterator<Item = (usize, PteEntry)> + '_ {
        (self.start..self.end)
            .step_by(PAGE_SIZE)
            .filter_map(move |a| self.entry(a).map(|e| (a, e)))
    }

    /// The folio a present, normal PTE at `addr` maps, borrowed for as
    /// long as the lock is held. `None` for the zero page, special mappings
    /// and non-present entries.
    pub fn folio(&self, addr: usize) -> Option<&Folio> {
        if !matches!(self.entry(addr)?, PteEntry::Present { .. }) {
            return None;
        }
        // SAFETY: `addr` is in the run and the VMA is the one the table
        // belongs to; `vm_normal_page()` filters out special mappings.
        let page = unsafe {
            let ptep = self.ptep.add((addr - self.start) / PAGE_SIZE);
            bindings::vm_normal_page(self.vma.as_ptr(), addr, bindings::ptep_get(ptep))
        };
        if page.is_null() {
            return None;
        }
        // SAFETY: The present PTE holds a reference to the folio, and it
        // cannot change while we hold the lock.
        Some(unsafe { Folio::from_page(page) })
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

/// Decodes a PTE value.
fn decode_pte(pte: bindings::pte_t) -> PteEntry {
    // SAFETY: The predicates only look at the value.
    unsafe {
        if bindings::pte_none(pte) {
            return PteEntry::None;
        }
        if bindings::pte_present(pte) {
            let pfn = bindings::pte_pfn(pte);
            if bindings::is_zero_pfn(pfn) {
                return PteEntry::Zero;
            }
            return PteEntry::Present {
                pfn,
                bits: EntryBits {
                    write: bindings::pte_write(pte),
                    soft_dirty: bindings::pte_soft_dirty(pte),
                    uffd_wp: bindings::pte_uffd(pte),
                },
            };
        }
        let leaf = bindings::softleaf_from_pte(pte);
        let pfn = bindings::softleaf_to_pfn(leaf);
        if bindings::softleaf_is_migration(leaf) {
            PteEntry::Migration {
                pfn,
                write: bindings::softleaf_is_migration_write(leaf),
            }
        } else if bindings::softleaf_is_device_private(leaf) {
            PteEntry::DevicePrivate {
                pfn,
                write: bindings::softleaf_is_device_private_write(leaf),
            }
        } else if bindings::softleaf_is_device_exclusive(leaf) {
            PteEntry::DeviceExclusive { pfn }
        } else {
            PteEntry::Other
        }
    }
}
