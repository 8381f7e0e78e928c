// SPDX-License-Identifier: GPL-2.0

//! `migrate_vma_pages()` and `migrate_device_pages()`.

use super::super::counters::{self, Counter, Stats};
use super::super::pages::{self, VmaMigration};
use crate::migration::unmapped_arrays;
use kernel::{bindings, mm::virt::VmaRef};

/// The Rust `migrate_vma_pages()`.
///
/// # Safety
///
/// As for the C function: `migrate` went through a successful setup, its
/// mmap lock is still held, and `dst` holds the driver's destinations.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_vma_pages(migrate: *mut bindings::migrate_vma) {
    let mut stats = Stats::new();
    let start = counters::now_ns();
    // SAFETY: The caller passes a valid `struct migrate_vma` and holds the
    // mmap lock of its VMA. Setup left `npages` unmapped slots, and the
    // driver its locked destinations; the fault path holds the fault folio.
    let (m, vma, (mut src, dst)) = unsafe {
        let m = &*migrate;
        (
            m,
            VmaRef::from_raw(m.vma),
            unmapped_arrays(m.src, m.dst, m.npages, m.fault_page),
        )
    };
    let vm = VmaMigration {
        owner: m.pgmap_owner,
        vma,
        start: m.start,
        end: m.end,
    };
    pages::migrate_pages(&mut src, &dst, Some(&vm), &mut stats);
    stats.time_since(Counter::NsPages, start);
}

/// The Rust `migrate_device_pages()`.
///
/// # Safety
///
/// As for the C function: the arrays hold `npages` slots collected by
/// `migrate_device_range()` or `_pfns()` and the driver's destinations.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_device_pages(
    src_pfns: *mut usize,
    dst_pfns: *mut usize,
    npages: usize,
) {
    let mut stats = Stats::new();
    let start = counters::now_ns();
    // SAFETY: The caller guarantees the arrays; there is no fault page.
    let (mut src, dst) =
        unsafe { unmapped_arrays(src_pfns, dst_pfns, npages, core::ptr::null_mut()) };
    pages::migrate_pages(&mut src, &dst, None, &mut stats);
    stats.time_since(Counter::NsPages, start);
}
