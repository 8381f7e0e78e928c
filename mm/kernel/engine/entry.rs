// SPDX-License-Identifier: GPL-2.0

//! The entry points of the Rust engine: the C functions of
//! `mm/migrate_device.c` call these while debugfs `migrate_device/engine`
//! selects a Rust engine. Each checks its arguments, borrows the arrays and
//! runs the phases.

use super::counters::{Counter, Stats};
use super::pages::VmaMigration;
use super::{collect, device, finalize, pages, unmap};
use crate::migrate_core::collect::{CollectArgs, Orders, SelectFlags};
use crate::migration::{self, Collected, DestSlots, DevicePfns, FaultPage, SourceSlots, Unmapped};
use crate::page_table::PAGE_SIZE;
use kernel::{
    bindings,
    error::{code::EINVAL, Result},
    mm::virt::VmaRef,
};

/// `migrate_vma_setup()`.
///
/// # Safety
///
/// `args` is the caller's `struct migrate_vma`, with the mmap lock of its
/// VMA held; its `src` and `dst` arrays hold one slot per page of
/// `start..end`.
unsafe fn migrate_vma_setup(args: &mut bindings::migrate_vma, stats: &mut Stats) -> Result {
    let nr_pages = (args.end as isize - args.start as isize) >> bindings::PAGE_SHIFT;
    args.start &= !(PAGE_SIZE - 1);
    args.end &= !(PAGE_SIZE - 1);
    if args.vma.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: The caller holds the mmap lock of the VMA.
    let vma = unsafe { VmaRef::from_raw(args.vma) };
    if migration::vma_unsupported(vma) {
        return Err(EINVAL);
    }
    // The arrays hold `nr_pages` slots; an unaligned range that would
    // collect more is refused rather than overrun them.
    if nr_pages <= 0 || (args.end - args.start) / PAGE_SIZE != nr_pages as usize {
        return Err(EINVAL);
    }
    if args.start < vma.start() || args.start >= vma.end() {
        return Err(EINVAL);
    }
    if args.end <= vma.start() || args.end > vma.end() {
        return Err(EINVAL);
    }
    if args.src.is_null() || args.dst.is_null() {
        return Err(EINVAL);
    }
    // SAFETY: The caller passes a valid fault page or null; its folio must
    // be locked by the fault path (checked next, before any use), which
    // holds it for the whole migration.
    let fault = unsafe { FaultPage::new(args.fault_page) };
    if fault
        .folio()
        .is_some_and(|folio| !folio.is_device_private() || !folio.is_locked())
    {
        return Err(EINVAL);
    }

    let npages = nr_pages as usize;
    // SAFETY: The caller guarantees `npages` slots in each array.
    let (src, dst) = unsafe {
        (
            migration::slots_mut(args.src, npages),
            migration::slots_mut(args.dst, npages),
        )
    };
    src.fill(0);
    let anonymous = crate::populate::vma_is_anonymous(vma);
    let rules = CollectArgs {
        flags: SelectFlags::from_bits(args.flags as u64),
        orders: Orders::NONE,
        thp_migration: migration::thp_migration_supported(),
        anonymous,
    };

    let mut range = crate::mmu_notifier::MmuNotifierRange::migrate(
        vma.mm(),
        args.start,
        args.end,
        args.pgmap_owner,
    );
    stats.inc(Counter::NotifierRanges);
    let mut collector = collect::Collector {
        vma,
        rules,
        owner: args.pgmap_owner,
        fault,
        src,
        dst,
        npages: 0,
        cpages: 0,
        stats,
    };
    {
        let _invalidation = range.invalidate();
        collector.walk(args.start, args.end);
    }
    let (collected, cpages) = (collector.npages, collector.cpages);
    args.npages = collected;
    args.cpages = cpages;
    args.end = args.start + collected * PAGE_SIZE;
    if cpages != 0 {
        // SAFETY: The caller guarantees the slots; collection locked and
        // referenced every folio it stored, isolating none, and the fault
        // path holds the fault folio.
        let src = unsafe { SourceSlots::<Collected>::from_raw(args.src, collected, fault) };
        args.cpages = unmap::unmap(src, stats).1;
    }
    Ok(())
}

/// The Rust `migrate_vma_setup()`.
///
/// # Safety
///
/// As for the C function: `args` is valid, the mmap lock of `args->vma` is
/// held, and the arrays hold a slot per page of the range.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_vma_setup(args: *mut bindings::migrate_vma) -> i32 {
    let mut stats = Stats::new();
    // SAFETY: The caller passes a valid `struct migrate_vma`.
    let ret = unsafe { migrate_vma_setup(&mut *args, &mut stats) };
    match ret {
        Ok(()) => 0,
        Err(e) => {
            stats.inc(Counter::FailArgs);
            e.to_errno()
        }
    }
}

/// The Rust `migrate_vma_pages()`.
///
/// # Safety
///
/// As for the C function: `migrate` went through a successful setup, its
/// mmap lock is still held, and `dst` holds the driver's destinations.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_vma_pages(migrate: *mut bindings::migrate_vma) {
    let mut stats = Stats::new();
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
}

/// The views of the arrays of a migration past unmap.
///
/// # Safety
///
/// `src` holds `npages` slots that went through setup's unmap (or
/// `migrate_device_range()`'s), `dst` the driver's locked destinations,
/// and the fault path holds the folio of a non-null `fault_page`; nothing
/// else accesses the arrays for `'a`.
unsafe fn unmapped_arrays<'a>(
    src: *mut usize,
    dst: *mut usize,
    npages: usize,
    fault_page: *mut bindings::page,
) -> (SourceSlots<'a, Unmapped>, DestSlots<'a>) {
    // SAFETY: The caller guarantees the arrays and the fault folio.
    unsafe {
        (
            SourceSlots::from_raw(src, npages, FaultPage::new(fault_page)),
            DestSlots::from_raw(dst, npages),
        )
    }
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
    // SAFETY: The caller guarantees the arrays; there is no fault page.
    let (mut src, dst) =
        unsafe { unmapped_arrays(src_pfns, dst_pfns, npages, core::ptr::null_mut()) };
    pages::migrate_pages(&mut src, &dst, None, &mut stats);
}

/// The Rust `migrate_vma_finalize()`.
///
/// # Safety
///
/// As for the C function: `migrate` went through a successful setup.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_vma_finalize(migrate: *mut bindings::migrate_vma) {
    let mut stats = Stats::new();
    // SAFETY: The caller passes a valid `struct migrate_vma`, whose arrays
    // setup and pages left, with the fault path holding the fault folio.
    let (src, dst) = unsafe {
        let m = &*migrate;
        unmapped_arrays(m.src, m.dst, m.npages, m.fault_page)
    };
    finalize::finalize(src, dst, &mut stats);
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
    // SAFETY: The caller guarantees the arrays; there is no fault page.
    let (src, dst) = unsafe { unmapped_arrays(src_pfns, dst_pfns, npages, core::ptr::null_mut()) };
    finalize::finalize(src, dst, &mut stats);
}

/// Locks the device folios of `pfns` into `src_pfns` and unmaps them.
///
/// # Safety
///
/// `src_pfns` holds `npages` slots nothing else accesses, and every PFN
/// `pfns` names has a memmap entry.
unsafe fn migrate_device_pfns(src_pfns: *mut usize, npages: usize, pfns: DevicePfns) -> i32 {
    let mut stats = Stats::new();
    // SAFETY: The caller guarantees the array and the PFNs.
    let src = unsafe {
        SourceSlots::lock_device_pfns(src_pfns, npages, pfns, |found| {
            device::count(&mut stats, found)
        })
    };
    device::unmap_pfns(src, &mut stats);
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
