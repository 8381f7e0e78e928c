// SPDX-License-Identifier: GPL-2.0

//! Pages: `__migrate_device_pages()`. Moves each collected folio's mapping
//! and flags to the destination the driver chose, populates holes, and
//! splits a large source whose destination is a single page.

use super::counters::{Counter, Stats};
use super::insert::insert_page;
use super::slots;
use super::split::split_unmapped;
use crate::migrate_core::pfn::PMD_NR;
use crate::mmu_notifier::MmuNotifierRange;
use crate::page_table::PAGE_SIZE;
use kernel::{bindings, mm::virt::VmaRef};

/// The `struct migrate_vma` of a `migrate_vma_pages()` call; absent for
/// `migrate_device_pages()`.
pub(crate) struct VmaMigration<'a> {
    pub(crate) owner: *mut core::ffi::c_void,
    pub(crate) vma: &'a VmaRef,
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) fault_page: *mut bindings::page,
}

/// Whether slot `i` is a hole to populate with a destination.
#[inline]
fn is_hole_to_fill(src: u64, dst: u64) -> bool {
    slots::pfn(dst).is_some() && slots::pfn(src).is_none() && slots::is_migrate(src)
}

/// Migrates the metadata of every slot that has a destination.
///
/// # Safety
///
/// `src` holds what setup (or `migrate_device_range()`) collected and `dst`
/// the locked destination folios the driver allocated; for a `migrate`, the
/// mmap lock is held.
pub(crate) unsafe fn migrate_pages(
    src: &mut [u64],
    dst: &mut [u64],
    migrate: Option<&VmaMigration<'_>>,
    stats: &mut Stats,
) {
    let npages = src.len().min(dst.len());
    // Holes get new mappings: tell secondary MMUs once, from the first hole
    // to the end, as 7.3 does.
    let first_hole = (0..npages).find(|&i| is_hole_to_fill(src[i], dst[i]));
    let mut range = match (migrate, first_hole) {
        (Some(m), Some(i)) => {
            stats.inc(Counter::NotifierRanges);
            Some(MmuNotifierRange::migrate(
                m.vma.mm(),
                m.start + i * PAGE_SIZE,
                m.end,
                m.owner,
            ))
        }
        _ => None,
    };
    let _invalidation = range.as_mut().map(|r| r.invalidate());
    // SAFETY: Always safe to ask.
    let thp_migration = unsafe { bindings::thp_migration_supported() };

    let mut i = 0;
    while i < npages {
        let mut nr = 1;
        let newpage = slots::page(dst[i]);
        let page = slots::page(src[i]);
        if newpage.is_null() {
            slots::clear_migrate(&mut src[i]);
            i += nr;
            continue;
        }
        if page.is_null() {
            if !slots::is_migrate(src[i]) {
                i += nr;
                continue;
            }
            // Only `migrate_device_coherent_folio()` comes without a VMA,
            // and it never has holes.
            let Some(m) = migrate else {
                slots::clear_migrate(&mut src[i]);
                i += nr;
                continue;
            };
            if slots::is_compound(src[i]) && !slots::is_compound(dst[i]) {
                // A 2 MiB hole the driver fills with small pages.
                nr = PMD_NR;
                src[i] = slots::subpage(src[i], 0);
            }
            let addr = m.start + i * PAGE_SIZE;
            for j in 0..nr.min(npages - i) {
                slots::set_migrate(&mut src[i + j]);
                // SAFETY: The mmap lock is held and `dst` names the
                // driver's locked destination; `src` continues with the
                // rest of the PMD for a compound destination.
                unsafe {
                    insert_page(
                        m.vma,
                        addr + j * PAGE_SIZE,
                        &mut dst[i + j],
                        &mut src[i + j..],
                    )
                };
                if slots::is_migrate(src[i + j]) {
                    stats.inc(Counter::Inserted);
                }
            }
            i += nr;
            continue;
        }

        // SAFETY: Both slots name valid pages that we or the driver hold
        // locked and referenced.
        let (mut folio, mut newfolio) =
            unsafe { (bindings::page_folio(page), bindings::page_folio(newpage)) };

        if thp_migration {
            let migrating = slots::is_migrate(src[i]);
            let src_large = slots::is_compound(src[i]);
            let dst_large = slots::is_compound(dst[i]);
            if migrating && src_large && !dst_large {
                // The destination is a single page: split the source.
                let split = match migrate {
                    // SAFETY: The source was collected whole and unmapped
                    // at `addr`; the mmap lock is held.
                    Some(m) => unsafe {
                        split_unmapped(m.vma, src, i, m.start + i * PAGE_SIZE, folio, m.fault_page)
                    },
                    None => Err(kernel::error::code::EINVAL),
                };
                if split.is_err() {
                    // The head alone, not migrated, as 7.3 leaves it.
                    src[i] = slots::subpage(src[i], 0);
                    slots::clear_migrate(&mut src[i]);
                    stats.inc(Counter::FailSplitUnmapped);
                    i += nr;
                    continue;
                }
                stats.inc(Counter::Splits);
                // SAFETY: The head page is now a folio of its own.
                folio = unsafe { bindings::page_folio(page) };
            } else if migrating && dst_large && !src_large {
                slots::clear_migrate(&mut src[i]);
            }
        }

        // SAFETY: The folios are valid and locked.
        unsafe {
            let mapping = bindings::folio_mapping(folio);
            if bindings::folio_is_device_private(newfolio)
                || bindings::folio_is_device_coherent(newfolio)
            {
                // Only anonymous memory goes to device memory; drop it from
                // the swap cache if it is there.
                if !mapping.is_null()
                    && (!bindings::folio_test_anon(folio) || !bindings::folio_free_swap(folio))
                {
                    slots::clear_migrate(&mut src[i]);
                    stats.inc(Counter::FailMapping);
                    i += nr;
                    continue;
                }
            } else if bindings::folio_is_zone_device(newfolio) {
                slots::clear_migrate(&mut src[i]);
                stats.inc(Counter::FailDestination);
                i += nr;
                continue;
            }
        }

        let extra = i32::from(migrate.is_some_and(|m| m.fault_page == page));
        for j in 0..nr.min(npages - i) {
            if j > 0 {
                folio = slots::folio(src[i + j]);
                newfolio = slots::folio(dst[i + j]);
            }
            // SAFETY: Both folios are locked; the source is unmapped and
            // frozen by its migration entries.
            let r = unsafe {
                // `folio_free_swap()` may have changed the mapping: read it
                // again.
                let mapping = bindings::folio_mapping(folio);
                let r = bindings::folio_migrate_mapping(mapping, newfolio, folio, extra);
                if r == 0 {
                    bindings::folio_migrate_flags(newfolio, folio);
                }
                r
            };
            if r != 0 {
                slots::clear_migrate(&mut src[i + j]);
                stats.inc(Counter::FailMigrateMapping);
            } else {
                stats.inc(Counter::Migrated);
            }
        }
        i += nr;
    }
}
