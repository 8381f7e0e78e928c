// SPDX-License-Identifier: GPL-2.0

//! `migrate_device_range()` and `migrate_device_pfns()`: eviction.

use super::super::counters::{self, Counter, Stats};
use super::super::device;
use crate::migration::{DevicePfns, SourceSlots};

/// Locks the device folios of `pfns` into `src_pfns` and unmaps them.
///
/// # Safety
///
/// `src_pfns` holds `npages` slots nothing else accesses, and every PFN
/// `pfns` names has a memmap entry.
unsafe fn migrate_device_pfns(src_pfns: *mut usize, npages: usize, pfns: DevicePfns) -> i32 {
    let mut stats = Stats::new();
    let start = counters::now_ns();
    // SAFETY: The caller guarantees the array and the PFNs.
    let src = unsafe {
        SourceSlots::lock_device_pfns(src_pfns, npages, pfns, |found| {
            device::count(&mut stats, found)
        })
    };
    stats.time_since(Counter::NsCollect, start);
    let start = counters::now_ns();
    device::unmap_pfns(src, &mut stats);
    stats.time_since(Counter::NsUnmap, start);
    0
}

/// The Rust `migrate_device_range()`.
///
/// # Safety
///
/// As for the C function: `start..start + npages` are device PFNs with a
/// memmap, and `src_pfns` holds `npages` slots.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_device_range(
    src_pfns: *mut usize,
    start: usize,
    npages: usize,
) -> i32 {
    // SAFETY: The caller guarantees the array and the PFNs.
    unsafe { migrate_device_pfns(src_pfns, npages, DevicePfns::Range { start }) }
}

/// The Rust `migrate_device_pfns()`.
///
/// # Safety
///
/// As for the C function: `src_pfns` holds `npages` device PFNs with a
/// memmap, which it is overwritten with their slots.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_device_pfns(src_pfns: *mut usize, npages: usize) -> i32 {
    // SAFETY: The caller guarantees the array and the PFNs.
    unsafe { migrate_device_pfns(src_pfns, npages, DevicePfns::InArray) }
}
