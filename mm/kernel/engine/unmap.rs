// SPDX-License-Identifier: GPL-2.0

//! Unmap: `migrate_device_unmap()`. Collected folios are isolated from the
//! LRU, unmapped through the rmap where collection could not, and checked
//! for pins; what cannot migrate is restored and dropped from the arrays.

use super::counters::{Counter, Stats};
use super::slots;
use kernel::bindings;

/// Whether the only references to the folio of `page` are its mappings and
/// the migration's (`migrate_vma_check_page()`).
///
/// # Safety
///
/// `page` is a valid page whose folio the caller holds locked.
unsafe fn check_page(page: *mut bindings::page, fault_page: *mut bindings::page) -> bool {
    // SAFETY: The caller guarantees `page`.
    let folio = unsafe { bindings::page_folio(page) };
    // One extra reference for the caller's (LRU isolation or collection),
    // and one more when it is the fault page.
    let mut extra = 1 + i32::from(page == fault_page);
    // SAFETY: The folio is valid and locked.
    unsafe {
        if bindings::folio_is_zone_device(folio) {
            extra += 1;
        }
        if !bindings::folio_mapping(folio).is_null() {
            extra += 1 + i32::from(bindings::folio_has_private(folio));
        }
        bindings::folio_ref_count(folio) - extra <= bindings::folio_mapcount(folio)
    }
}

/// Unmaps the folios collected in `src`; returns how many slots will
/// migrate.
///
/// # Safety
///
/// Each valid slot of `src` names a folio that collection (or
/// `migrate_device_range()`) locked and holds a reference to, except the
/// folio of `fault_page`, which the fault path holds locked.
pub(crate) unsafe fn unmap(
    src: &mut [u64],
    fault_page: *mut bindings::page,
    stats: &mut Stats,
) -> usize {
    let fault_folio = if fault_page.is_null() {
        core::ptr::null_mut()
    } else {
        // SAFETY: The fault page is valid while the fault path holds it.
        unsafe { bindings::page_folio(fault_page) }
    };
    let mut restore = 0;
    let mut allow_drain = true;
    let mut unmapped = 0;

    // SAFETY: Always allowed in process context.
    unsafe { bindings::lru_add_drain() };

    let mut i = 0;
    while i < src.len() {
        let page = slots::page(src[i]);
        if page.is_null() {
            if slots::is_migrate(src[i]) {
                unmapped += 1;
            }
            i += 1;
            continue;
        }
        // SAFETY: The slot names a locked, referenced folio.
        let folio = unsafe { bindings::page_folio(page) };
        // SAFETY: As above.
        let order = unsafe { bindings::folio_order(folio) };
        let nr = 1usize << order;
        if nr > 1 {
            // The head carries the folio's order.
            match slots::with_order(src[i], order) {
                Some(head) => src[i] = head,
                None => {
                    kernel::warn_on!(true);
                }
            }
        }
        // SAFETY: As above; ZONE_DEVICE folios are not on the LRU.
        let zone_device = unsafe { bindings::folio_is_zone_device(folio) };
        if !zone_device {
            // SAFETY: As above.
            if allow_drain && !unsafe { bindings::folio_test_lru(folio) } {
                // Drain the other CPUs' LRU caches, once.
                // SAFETY: Process context, no locks held but folio locks.
                unsafe { bindings::lru_add_drain_all() };
                allow_drain = false;
            }
            // SAFETY: We hold a reference, as isolation needs.
            if !unsafe { bindings::folio_isolate_lru(folio) } {
                slots::clear_migrate(&mut src[i]);
                restore += 1;
                stats.inc(Counter::FailIsolate);
                i += nr;
                continue;
            }
            // Isolation took its own reference: drop collection's.
            // SAFETY: We own that reference.
            unsafe { bindings::folio_put(folio) };
        }

        // SAFETY: The folio is locked and isolated.
        unsafe {
            if bindings::folio_mapped(folio) {
                bindings::try_to_migrate(folio, 0);
                stats.inc(Counter::RmapUnmaps);
            }
        }
        // SAFETY: As above.
        if unsafe { bindings::folio_mapped(folio) || !check_page(page, fault_page) } {
            if !zone_device {
                // SAFETY: Puts the isolated folio back, with the reference
                // the slot keeps until the restore below.
                unsafe {
                    bindings::folio_get(folio);
                    bindings::folio_putback_lru(folio);
                }
            }
            slots::clear_migrate(&mut src[i]);
            restore += 1;
            stats.inc(Counter::FailPinned);
            i += nr;
            continue;
        }
        unmapped += 1;
        i += nr;
    }

    for slot in src.iter_mut() {
        if restore == 0 {
            break;
        }
        let page = slots::page(*slot);
        if page.is_null() || slots::is_migrate(*slot) {
            continue;
        }
        // SAFETY: The slot names a folio we hold locked and referenced.
        unsafe {
            let folio = bindings::page_folio(page);
            bindings::remove_migration_ptes(folio, folio, 0);
            if folio != fault_folio {
                bindings::folio_unlock(folio);
            }
            bindings::folio_put(folio);
        }
        *slot = 0;
        stats.inc(Counter::Restored);
        restore -= 1;
    }
    unmapped
}
