// SPDX-License-Identifier: GPL-2.0

//! Populating a hole: `migrate_vma_insert_page()` and
//! `migrate_vma_insert_huge_pmd_page()`. A destination folio the driver gave
//! for an unpopulated address (or the zero page) is mapped there as a new
//! anonymous folio: a device-private entry for device memory, a present
//! entry for system memory, at PMD level when the destination is a PMD-sized
//! folio.

use super::slots;
use crate::migrate_core::pfn::PMD_NR;
use crate::page_table::{PMD_ORDER, PMD_SIZE};
use kernel::{bindings, mm::virt::VmaRef};

/// The device-private entry, or the present entry, that maps `page` of the
/// new `folio` in `vma`; `None` for a ZONE_DEVICE type that cannot be
/// mapped.
///
/// # Safety
///
/// `folio` and its `page` are valid and locked.
unsafe fn new_pte(
    vma: &VmaRef,
    folio: *mut bindings::folio,
    page: *mut bindings::page,
) -> Option<bindings::pte_t> {
    // SAFETY: The caller guarantees the folio; these only build values.
    unsafe {
        let write = bindings::folio_migrate_vma_writable(vma.as_ptr());
        if bindings::folio_is_device_private(folio) {
            let pfn = bindings::page_to_pfn(page);
            let entry = if write {
                bindings::make_writable_device_private_entry(pfn)
            } else {
                bindings::make_readable_device_private_entry(pfn)
            };
            return Some(bindings::softleaf_to_pte(entry));
        }
        if bindings::folio_is_zone_device(folio) && !bindings::folio_is_device_coherent(folio) {
            return None;
        }
        Some(bindings::folio_migrate_mk_pte(page, vma.as_ptr()))
    }
}

/// Maps the destination of `dst` at `addr` in `vma`; clears
/// `MIGRATE_PFN_MIGRATE` from `src[0]` (and, for a PMD-sized destination,
/// from every slot of `src`) when it cannot.
///
/// # Safety
///
/// The mmap lock of `vma` is held; `dst` names a locked destination folio
/// the driver allocated, and `src` holds the slot of `addr` followed, for a
/// compound destination, by the other slots of its PMD.
pub(crate) unsafe fn insert_page(vma: &VmaRef, addr: usize, dst: &mut u64, src: &mut [u64]) {
    let page = slots::page(*dst);
    if page.is_null() || src.is_empty() {
        return;
    }
    // SAFETY: The driver gave a valid, locked destination page.
    let folio = unsafe { bindings::page_folio(page) };
    let mm = vma.mm().as_raw();
    // SAFETY: The mmap lock is held, as the walk and the allocations need.
    let ok = unsafe {
        if !bindings::vma_is_anonymous(vma.as_ptr()) {
            false
        } else {
            let pmdp = bindings::folio_migrate_pmd_alloc(mm, addr);
            if pmdp.is_null() {
                false
            } else if bindings::thp_migration_supported() && slots::is_compound(*dst) {
                return insert_huge_pmd(vma, addr, folio, src, pmdp);
            } else {
                insert_pte(vma, addr, folio, page, pmdp)
            }
        }
    };
    if ok {
        // A hole that is now mapped: order 0, MIGRATE_PFN_MIGRATE.
        src[0] = 0;
        slots::set_migrate(&mut src[0]);
    } else {
        slots::clear_migrate(&mut src[0]);
    }
}

/// The 4 KiB case of [`insert_page`]; false when the address cannot take
/// the page.
///
/// # Safety
///
/// As for [`insert_page`]; `pmdp` is the PMD of `addr`.
unsafe fn insert_pte(
    vma: &VmaRef,
    addr: usize,
    folio: *mut bindings::folio,
    page: *mut bindings::page,
    pmdp: *mut bindings::pmd_t,
) -> bool {
    let mm = vma.mm().as_raw();
    // SAFETY: The caller holds the mmap lock; `pmdp` is the PMD of `addr`
    // and `folio` the locked destination.
    unsafe {
        let pmd = bindings::pmdp_get(pmdp);
        if !bindings::pmd_none(pmd) {
            if bindings::pmd_trans_huge(pmd) {
                // Only the huge zero page may be replaced, after a split.
                if !bindings::is_huge_zero_pmd(pmd) {
                    return false;
                }
                bindings::split_huge_pmd(vma.as_ptr(), pmdp, addr);
            } else if bindings::pmd_leaf(pmd) {
                return false;
            }
        }
        if !bindings::folio_migrate_pte_alloc(mm, pmdp)
            || bindings::anon_vma_prepare(vma.as_ptr()) != 0
            || bindings::mem_cgroup_charge(folio, mm, bindings::GFP_KERNEL) != 0
        {
            return false;
        }
        // The barrier in here orders the copy before the PTE store below.
        bindings::__folio_mark_uptodate(folio);
        let Some(entry) = new_pte(vma, folio, page) else {
            return false;
        };
        let mut ptl = core::ptr::null_mut();
        let ptep = bindings::pte_offset_map_lock(mm, pmdp, addr, &mut ptl);
        if ptep.is_null() {
            return false;
        }
        let orig = bindings::ptep_get(ptep);
        let mut flush = false;
        let mut ok = bindings::folio_migrate_may_populate(vma.as_ptr());
        if ok && bindings::pte_present(orig) {
            // Only the zero page may be replaced.
            ok = bindings::is_zero_pfn(bindings::pte_pfn(orig));
            flush = true;
        } else if ok && !bindings::pte_none(orig) {
            ok = false;
        }
        if ok {
            bindings::folio_migrate_add_new_anon(folio, vma.as_ptr(), addr, 1);
            if flush {
                bindings::flush_cache_page(vma.as_ptr(), addr, bindings::pte_pfn(orig));
                bindings::ptep_clear_flush(vma.as_ptr(), addr, ptep);
            }
            bindings::set_pte_at(mm, addr, ptep, entry);
            bindings::update_mmu_cache(vma.as_ptr(), addr, ptep);
        }
        bindings::pte_unmap_unlock(ptep, ptl);
        ok
    }
}

/// The PMD case of [`insert_page`]: maps the PMD-sized `folio` at `addr`
/// with one device-private or present huge PMD. On failure every slot of
/// `src` loses `MIGRATE_PFN_MIGRATE`, as 7.3 does.
///
/// # Safety
///
/// As for [`insert_page`]; `pmdp` is the PMD of `addr`.
unsafe fn insert_huge_pmd(
    vma: &VmaRef,
    addr: usize,
    folio: *mut bindings::folio,
    src: &mut [u64],
    pmdp: *mut bindings::pmd_t,
) {
    let mm = vma.mm().as_raw();
    let abort = |src: &mut [u64]| {
        for s in src.iter_mut().take(PMD_NR) {
            slots::clear_migrate(s);
        }
    };
    // SAFETY: The caller holds the mmap lock; `folio` is the locked
    // PMD-sized destination and `pmdp` the PMD of `addr`.
    unsafe {
        if addr % PMD_SIZE != 0
            || !bindings::thp_vma_suitable_order(vma.as_ptr(), addr, PMD_ORDER as i32)
            || bindings::anon_vma_prepare(vma.as_ptr()) != 0
        {
            return abort(src);
        }
        bindings::folio_set_order(folio, PMD_ORDER);
        bindings::folio_set_large_rmappable(folio);
        let gfp = bindings::vma_thp_gfp_mask(vma.as_ptr());
        if bindings::mem_cgroup_charge(folio, mm, gfp) != 0 {
            bindings::folio_migrate_count_thp_fault(mm, false);
            return abort(src);
        }
        bindings::__folio_mark_uptodate(folio);
        let pgtable = bindings::pte_alloc_one(mm);
        if pgtable.is_null() {
            return abort(src);
        }
        let head = bindings::folio_page(folio, 0);
        let entry = if bindings::folio_is_device_private(folio) {
            let pfn = bindings::page_to_pfn(head);
            let e = if bindings::folio_migrate_vma_writable(vma.as_ptr()) {
                bindings::make_writable_device_private_entry(pfn)
            } else {
                bindings::make_readable_device_private_entry(pfn)
            };
            bindings::softleaf_to_pmd(e)
        } else if bindings::folio_is_zone_device(folio)
            && !bindings::folio_is_device_coherent(folio)
        {
            bindings::pte_free(mm, pgtable);
            return abort(src);
        } else {
            bindings::folio_migrate_mk_pmd(folio, vma.as_ptr())
        };
        let ptl = bindings::pmd_lock(mm, pmdp);
        let pmd = bindings::pmdp_get(pmdp);
        let huge_zero = bindings::is_huge_zero_pmd(pmd);
        if !bindings::folio_migrate_may_populate(vma.as_ptr())
            || (!huge_zero && !bindings::pmd_none(pmd))
        {
            bindings::spin_unlock(ptl);
            bindings::pte_free(mm, pgtable);
            return abort(src);
        }
        bindings::folio_migrate_add_new_anon(folio, vma.as_ptr(), addr, PMD_NR);
        if huge_zero {
            // The zero PMD already has its deposited table.
            bindings::pte_free(mm, pgtable);
            bindings::folio_migrate_zap_huge_zero(vma.as_ptr(), addr, pmdp);
        } else {
            bindings::folio_migrate_deposit(mm, pmdp, pgtable);
        }
        bindings::set_pmd_at(mm, addr, pmdp, entry);
        bindings::update_mmu_cache_pmd(vma.as_ptr(), addr, pmdp);
        bindings::spin_unlock(ptl);
        bindings::folio_migrate_count_thp_fault(mm, true);
    }
}
