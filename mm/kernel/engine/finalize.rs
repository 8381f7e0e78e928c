// SPDX-License-Identifier: GPL-2.0

//! Finalize: `__migrate_device_finalize()`. Migration entries are replaced
//! by mappings of the destination where the migration succeeded, of the
//! source otherwise; every lock and reference the migration held is
//! released.

use super::counters::{Counter, Stats};
use super::slots;
use kernel::bindings;

/// Unlocks and releases a destination folio that was not used.
///
/// # Safety
///
/// The driver locked `folio` and gave its reference to the migration.
unsafe fn release(folio: *mut bindings::folio, fault_folio: *mut bindings::folio) {
    kernel::warn_on!(folio == fault_folio);
    // SAFETY: The caller guarantees the lock and the reference.
    unsafe {
        bindings::folio_unlock(folio);
        bindings::folio_put(folio);
    }
}

/// Completes the migration of every slot.
///
/// # Safety
///
/// `src` and `dst` are the arrays of a migration that went through setup
/// (and possibly pages); the folio of a non-null `fault_page` is locked by
/// the fault path.
pub(crate) unsafe fn finalize(
    src: &mut [u64],
    dst: &mut [u64],
    fault_page: *mut bindings::page,
    stats: &mut Stats,
) {
    let fault_folio = if fault_page.is_null() {
        core::ptr::null_mut()
    } else {
        // SAFETY: The fault page is valid while the fault path holds it.
        unsafe { bindings::page_folio(fault_page) }
    };
    for (&s, &d) in src.iter().zip(dst.iter()) {
        let dst_folio = slots::folio(d);
        let src_folio = slots::folio(s);
        if src_folio.is_null() {
            if !dst_folio.is_null() {
                // SAFETY: The driver's destination, unused.
                unsafe { release(dst_folio, fault_folio) };
            }
            continue;
        }
        let mut new = dst_folio;
        if !slots::is_migrate(s) || new.is_null() {
            if !new.is_null() {
                // SAFETY: The driver's destination, unused.
                unsafe { release(new, fault_folio) };
            }
            new = src_folio;
            stats.inc(Counter::Restored);
        }
        // SAFETY: `src_folio` is locked and referenced by the migration and
        // unmapped by its migration entries; `new` is it, or the locked
        // destination that took its place.
        unsafe {
            if !bindings::folio_is_zone_device(new) {
                bindings::folio_add_lru(new);
            }
            bindings::remove_migration_ptes(src_folio, new, 0);
            if src_folio != fault_folio {
                bindings::folio_unlock(src_folio);
            }
            bindings::folio_put(src_folio);
            if new != src_folio {
                release(new, fault_folio);
            }
        }
    }
}
