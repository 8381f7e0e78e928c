// SPDX-License-Identifier: GPL-2.0

//! `migrate_vma_setup()`: collection, then unmap.

use super::super::counters::{self, Counter, Stats};
use super::super::{collect, unmap};
use crate::collection::PteBatch;
use crate::migrate_core::collect::{CollectArgs, SelectFlags};
use crate::migration::{self, Collected, FaultPage, SourceSlots};
use crate::page_table::{PAGE_SIZE, PTRS_PER_PTE};
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
    // A CPU fault migrates one page: spare it the memset() call.
    match &mut *src {
        [slot] => *slot = 0,
        slots => slots.fill(0),
    }
    let anonymous = crate::populate::vma_is_anonymous(vma);
    let rules = CollectArgs::from_flags(
        SelectFlags::from_bits(args.flags as u64),
        migration::thp_migration_supported(),
        anonymous,
    );

    let start = counters::now_ns();
    // Room for the folios of one page table, allocated when the walk first
    // meets one.
    let mut batch = PteBatch::new(npages.min(PTRS_PER_PTE));
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
        collector.walk(args.start, args.end, &mut batch);
    }
    let (collected, cpages) = (collector.npages, collector.cpages);
    args.npages = collected;
    args.cpages = cpages;
    args.end = args.start + collected * PAGE_SIZE;
    stats.time_since(Counter::NsCollect, start);
    if cpages != 0 {
        let start = counters::now_ns();
        // SAFETY: The caller guarantees the slots; collection locked and
        // referenced every folio it stored, isolating none, and the fault
        // path holds the fault folio.
        let src = unsafe { SourceSlots::<Collected>::from_raw(args.src, collected, fault) };
        args.cpages = unmap::unmap(src, stats).1;
        stats.time_since(Counter::NsUnmap, start);
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
