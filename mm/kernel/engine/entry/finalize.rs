// SPDX-License-Identifier: GPL-2.0

//! `migrate_vma_finalize()` and `migrate_device_finalize()`.

use super::super::counters::{self, Counter, Stats};
use super::super::finalize;
use crate::migration::{unmapped_arrays, SlotsMappedAt};
use kernel::{bindings, mm::virt::VmaRef};

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
    let (src, dst, at) = unsafe {
        let m = &*migrate;
        // SAFETY: Setup succeeded, so `m.vma` is the VMA of the range, and
        // the caller holds its mmap lock until finalize returns.
        let at = (!m.vma.is_null()).then(|| SlotsMappedAt::new(VmaRef::from_raw(m.vma), m.start));
        let (src, dst) = unmapped_arrays(m.src, m.dst, m.npages, m.fault_page);
        (src, dst, at)
    };
    finalize::finalize(src, dst, at, &mut stats);
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
    finalize::finalize(src, dst, None, &mut stats);
    stats.time_since(Counter::NsFinalize, start);
}
