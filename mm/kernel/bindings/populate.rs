// SPDX-License-Identifier: GPL-2.0

//! Populating a hole with a destination: `migrate_vma_insert_page()` and
//! `migrate_vma_insert_huge_pmd_page()`. A destination folio the driver gave
//! for an unpopulated address (or the zero page) is mapped there as a new
//! anonymous folio: a device-private entry for device memory, a present
//! entry for system memory, at PMD level when the destination is a
//! PMD-sized folio.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use crate::migrate_core::pfn::PMD_NR;
use crate::migration::{thp_migration_supported, DestFolio};
use crate::page_table::{PMD_ORDER, PMD_SIZE};
use kernel::{bindings, mm::virt::VmaRef};

/// What [`insert_page`] mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// One page, by a PTE.
    Page,
    /// A PMD-sized folio, by one huge PMD.
    HugePmd,
    /// Nothing: the address cannot take the destination page.
    Failed,
    /// Nothing: the address cannot take the PMD-sized destination.
    FailedHugePmd,
}

/// The device-private entry of `pfn` in `vma`, writable if `vma` is.
///
/// # Safety
///
/// `pfn` is a device-private page.
unsafe fn device_private_entry(vma: &VmaRef, pfn: usize) -> bindings::softleaf_t {
    // SAFETY: These only build a value from a device-private PFN.
    unsafe {
        if bindings::folio_migrate_vma_writable(vma.as_ptr()) {
            bindings::make_writable_device_private_entry(pfn)
        } else {
            bindings::make_readable_device_private_entry(pfn)
        }
    }
}

/// Whether `vma` maps anonymous memory (`vma_is_anonymous()`).
#[inline]
pub fn vma_is_anonymous(vma: &VmaRef) -> bool {
    // SAFETY: `vma` is valid while borrowed.
    unsafe { bindings::vma_is_anonymous(vma.as_ptr()) }
}

/// Maps the destination `folio` at `addr` in `vma`, a hole: one page, or
/// one PMD for a PMD-sized destination when THP migration is built in.
pub fn insert_page(vma: &VmaRef, addr: usize, folio: &DestFolio<'_>) -> Inserted {
    let huge = thp_migration_supported() && folio.is_compound();
    let failed = match huge {
        true => Inserted::FailedHugePmd,
        false => Inserted::Failed,
    };
    if !vma_is_anonymous(vma) {
        return failed;
    }
    let mm = vma.mm().as_raw();
    // SAFETY: The mmap lock is held while `vma` is borrowed, as the
    // allocation needs.
    let pmdp = unsafe { bindings::folio_migrate_pmd_alloc(mm, addr) };
    if pmdp.is_null() {
        return failed;
    }
    // SAFETY: `pmdp` is the PMD of `addr`, allocated above under the mmap
    // lock; `folio` is the locked destination.
    let ok = unsafe {
        if huge {
            insert_huge_pmd(vma, addr, folio, pmdp)
        } else {
            insert_pte(vma, addr, folio, pmdp)
        }
    };
    match ok {
        false => failed,
        true if folio.is_compound() => Inserted::HugePmd,
        true => Inserted::Page,
    }
}

/// The 4 KiB case of [`insert_page`]; false when the address cannot take
/// the page.
///
/// # Safety
///
/// The mmap lock of `vma` is held; `pmdp` is the PMD of `addr`.
unsafe fn insert_pte(
    vma: &VmaRef,
    addr: usize,
    folio: &DestFolio<'_>,
    pmdp: *mut bindings::pmd_t,
) -> bool {
    let mm = vma.mm().as_raw();
    let raw = folio.as_raw();
    let page = folio.head_page();
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
            || bindings::mem_cgroup_charge(raw, mm, bindings::GFP_KERNEL) != 0
        {
            return false;
        }
        // The barrier in here orders the copy before the PTE store below.
        bindings::__folio_mark_uptodate(raw);
        let entry = if folio.is_device_private() {
            bindings::softleaf_to_pte(device_private_entry(vma, bindings::page_to_pfn(page)))
        } else if folio.is_zone_device() && !folio.is_device_coherent() {
            return false;
        } else {
            bindings::folio_migrate_mk_pte(page, vma.as_ptr())
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
            bindings::folio_migrate_add_new_anon(raw, vma.as_ptr(), addr, 1);
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
/// with one device-private or present huge PMD.
///
/// # Safety
///
/// The mmap lock of `vma` is held; `pmdp` is the PMD of `addr`.
unsafe fn insert_huge_pmd(
    vma: &VmaRef,
    addr: usize,
    folio: &DestFolio<'_>,
    pmdp: *mut bindings::pmd_t,
) -> bool {
    let mm = vma.mm().as_raw();
    let raw = folio.as_raw();
    if addr % PMD_SIZE != 0 || folio.nr_pages() != PMD_NR && folio.order() != 0 {
        return false;
    }
    // SAFETY: The caller holds the mmap lock; `folio` is the locked
    // PMD-sized destination and `pmdp` the PMD of `addr`.
    unsafe {
        if !bindings::thp_vma_suitable_order(vma.as_ptr(), addr, PMD_ORDER as i32)
            || bindings::anon_vma_prepare(vma.as_ptr()) != 0
        {
            return false;
        }
        bindings::folio_set_order(raw, PMD_ORDER);
        bindings::folio_set_large_rmappable(raw);
        let gfp = bindings::vma_thp_gfp_mask(vma.as_ptr());
        if bindings::mem_cgroup_charge(raw, mm, gfp) != 0 {
            bindings::folio_migrate_count_thp_fault(mm, false);
            return false;
        }
        bindings::__folio_mark_uptodate(raw);
        let pgtable = bindings::pte_alloc_one(mm);
        if pgtable.is_null() {
            return false;
        }
        let entry = if folio.is_device_private() {
            let pfn = bindings::page_to_pfn(folio.head_page());
            bindings::softleaf_to_pmd(device_private_entry(vma, pfn))
        } else if folio.is_zone_device() && !folio.is_device_coherent() {
            bindings::pte_free(mm, pgtable);
            return false;
        } else {
            bindings::folio_migrate_mk_pmd(raw, vma.as_ptr())
        };
        let ptl = bindings::pmd_lock(mm, pmdp);
        let pmd = bindings::pmdp_get(pmdp);
        let huge_zero = bindings::is_huge_zero_pmd(pmd);
        if !bindings::folio_migrate_may_populate(vma.as_ptr())
            || (!huge_zero && !bindings::pmd_none(pmd))
        {
            bindings::spin_unlock(ptl);
            bindings::pte_free(mm, pgtable);
            return false;
        }
        bindings::folio_migrate_add_new_anon(raw, vma.as_ptr(), addr, PMD_NR);
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
    true
}
