// SPDX-License-Identifier: GPL-2.0

//! `migrate_vma_finalize()` and `migrate_device_finalize()`.

use super::super::counters::{self, Counter, Stats};
use super::super::finalize;
use crate::migration::unmapped_arrays;
use kernel::bindings;

/// The Rust `migrate_vma_finalize()`.
///
/// # Safety
///
/// As for the C function: `migrate` went through a successful setup.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_vma_finalize(migrate: *mut bindings::migrate_vma) {
    let mut stats = Stats::new();
    let start = counters::now_ns();
    // SAFETY: The caller passes a valid `struct migrate_vma`, whose arrays
    // setup and pages left, with the fault path holding the fault folio.
    let (src, dst) = unsafe {
        let m = &*migrate;
        unmapped_arrays(m.src, m.dst, m.npages, m.fault_page)
    };
    finalize::finalize(src, dst, &mut stats);
    stats.time_since(Counter::NsFinalize, start);
}

/// The Rust `migrate_device_finalize()`.
///
/// # Safety
///
/// As for the C function: the arrays hold `npages` slots of a device
/// migration.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_device_finalize(
    src_pfns: *mut usize,
    dst_pfns: *mut usize,
    npages: usize,
) {
    let mut stats = Stats::new();
    let start = counters::now_ns();
    // SAFETY: The caller guarantees the arrays; there is no fault page.
    let (src, dst) = unsafe { unmapped_arrays(src_pfns, dst_pfns, npages, core::ptr::null_mut()) };
    finalize::finalize(src, dst, &mut stats);
    stats.time_since(Counter::NsFinalize, start);
}
