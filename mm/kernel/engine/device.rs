// SPDX-License-Identifier: GPL-2.0

//! Eviction by device PFN: `migrate_device_range()` and
//! `migrate_device_pfns()`. The driver names device pages instead of
//! virtual addresses; each in-use folio is locked and then unmapped
//! wherever it is mapped.

use super::counters::{Counter, Stats};
use super::slots;
use super::unmap::unmap;
use kernel::bindings;

/// `migrate_device_pfn_lock()`: takes a reference to the folio headed at
/// `pfn` and locks it; the slot to collect, or 0 if it is free, a tail, or
/// contended.
///
/// # Safety
///
/// `pfn` has a memmap entry.
unsafe fn pfn_lock(pfn: usize, stats: &mut Stats) -> u64 {
    // SAFETY: The caller guarantees the memmap entry; only a non-tail page
    // with a non-zero count is taken.
    let folio = unsafe { bindings::folio_get_nontail_page(bindings::pfn_to_page(pfn)) };
    if folio.is_null() {
        return 0;
    }
    // SAFETY: We hold a reference.
    if !unsafe { bindings::folio_trylock(folio) } {
        // SAFETY: Drops the reference just taken.
        unsafe { bindings::folio_put(folio) };
        stats.inc(Counter::FailTrylock);
        return 0;
    }
    slots::collected(pfn)
}

/// Collects the device folios of `pfn_at(i)` for `i` in `0..src.len()`,
/// then unmaps them. `pfn_at` reads a PFN before its slot is overwritten.
///
/// # Safety
///
/// Every PFN given has a memmap entry.
pub(crate) unsafe fn collect_pfns(
    src: &mut [u64],
    mut pfn_at: impl FnMut(&[u64], usize) -> usize,
    stats: &mut Stats,
) {
    let npages = src.len();
    let mut i = 0;
    while i < npages {
        let pfn = pfn_at(src, i);
        // SAFETY: The caller guarantees the memmap entry.
        let folio = unsafe { bindings::page_folio(bindings::pfn_to_page(pfn)) };
        // SAFETY: As above.
        src[i] = unsafe { pfn_lock(pfn, stats) };
        // SAFETY: As above; 7.3 reads the order the same way.
        let order = unsafe { bindings::folio_order(folio) };
        let nr = 1usize << order;
        if nr > npages - i {
            // The folio runs past the range: leave it and the rest alone.
            if slots::is_migrate(src[i]) {
                // SAFETY: Releases what `pfn_lock` took.
                unsafe {
                    bindings::folio_unlock(folio);
                    bindings::folio_put(folio);
                }
            }
            src[i..].fill(0);
            break;
        }
        if nr > 1 {
            // A folio's head PFN is aligned to its order.
            src[i] = slots::with_order(src[i], order).unwrap_or(src[i]);
            src[i + 1..i + nr].fill(0);
            if slots::is_migrate(src[i]) {
                stats.folio(order);
            }
        } else if slots::is_migrate(src[i]) {
            stats.folio(0);
        }
        i += nr;
    }
    // SAFETY: Every valid slot is a folio we locked and reference.
    unsafe { unmap(src, core::ptr::null_mut(), stats) };
}
