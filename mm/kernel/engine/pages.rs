// SPDX-License-Identifier: GPL-2.0

//! Pages: `__migrate_device_pages()`. Moves each collected folio's mapping
//! and flags to the destination the driver chose, populates holes, and
//! splits a large source whose destination is a single page.

use super::counters::{Counter, Stats};
use crate::folio::MemoryKind;
use crate::migrate_core::pfn::{MigratePfn, PMD_NR};
use crate::migration::{self, or_warn, DestSlots, MigrateToError, Slots, SourceSlots, Unmapped};
use crate::mmu_notifier::MmuNotifierRange;
use crate::page_table::PAGE_SIZE;
use crate::populate::{insert_page, Inserted};
use kernel::mm::virt::VmaRef;

/// The `struct migrate_vma` of a `migrate_vma_pages()` call; absent for
/// `migrate_device_pages()`.
pub(crate) struct VmaMigration<'a> {
    pub(crate) owner: *mut core::ffi::c_void,
    pub(crate) vma: &'a VmaRef,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// Populates the hole of slots `i..i + nr` with the destinations the
/// driver gave: one PMD for a PMD-sized destination, else a page each.
fn fill_hole(
    m: &VmaMigration<'_>,
    src: &mut SourceSlots<'_, Unmapped>,
    dst: &DestSlots<'_>,
    i: usize,
    stats: &mut Stats,
) -> usize {
    let mut nr = 1;
    let (hole, dest) = (src.get(i), dst.get(i));
    if hole.is_compound() && !dest.is_compound() {
        // A 2 MiB hole the driver fills with small pages.
        nr = PMD_NR;
        src.set_hole(i, or_warn(hole.subpage(0), MigratePfn::EMPTY));
    }
    let addr = m.start + i * PAGE_SIZE;
    for j in i..(i + nr).min(src.len()) {
        let hole = src.get(j).with_migrate();
        src.set_hole(j, hole);
        let Some(folio) = dst.dest(j) else {
            continue;
        };
        match insert_page(m.vma, addr + (j - i) * PAGE_SIZE, &folio) {
            Inserted::Page => {
                // A hole that is now mapped: order 0, MIGRATE_PFN_MIGRATE.
                src.set_hole(j, MigratePfn::EMPTY.with_migrate());
                stats.inc(Counter::Inserted);
            }
            Inserted::HugePmd => stats.inc(Counter::Inserted),
            Inserted::FailedHugePmd => {
                // 7.3 gives up on every slot of the PMD.
                for k in j..(j + PMD_NR).min(src.len()) {
                    src.clear_migrate(k);
                }
            }
            Inserted::Failed => src.clear_migrate(j),
        }
    }
    nr
}

/// Migrates the metadata of every slot that has a destination.
pub(crate) fn migrate_pages(
    src: &mut SourceSlots<'_, Unmapped>,
    dst: &DestSlots<'_>,
    migrate: Option<&VmaMigration<'_>>,
    stats: &mut Stats,
) {
    let npages = src.len().min(dst.len());
    let first_hole = migrate_slots(src, dst, migrate, stats, 0..npages, true);
    // Holes get new mappings: tell secondary MMUs once, from the first hole
    // to the end, as 7.3 does when its walk meets that hole.
    let Some(m) = migrate.filter(|_| first_hole < npages) else {
        return;
    };
    stats.inc(Counter::NotifierRanges);
    let mut range =
        MmuNotifierRange::migrate(m.vma.mm(), m.start + first_hole * PAGE_SIZE, m.end, m.owner);
    let _invalidation = range.invalidate();
    migrate_slots(src, dst, migrate, stats, first_hole..npages, false);
}

/// Migrates the slots of `slots`; with `until_hole`, stops at the first
/// hole to populate and returns its index (the end of `slots` if none).
fn migrate_slots(
    src: &mut SourceSlots<'_, Unmapped>,
    dst: &DestSlots<'_>,
    migrate: Option<&VmaMigration<'_>>,
    stats: &mut Stats,
    slots: core::ops::Range<usize>,
    until_hole: bool,
) -> usize {
    let npages = slots.end;
    let thp_migration = migration::thp_migration_supported();

    let mut i = slots.start;
    while i < npages {
        if src.is_unused(i) {
            // A tail slot, or one collection left empty: nothing to move,
            // whatever the driver wrote there, as in 7.3.
            i += 1;
            continue;
        }
        // Each slot is decoded once.
        let slot = src.get(i);
        let Some(newfolio) = dst.dest(i) else {
            src.clear_migrate(i);
            i += 1;
            continue;
        };
        if !src.has_folio(i) {
            if !slot.is_migrate() {
                i += 1;
                continue;
            }
            // Only `migrate_device_coherent_folio()` comes without a VMA,
            // and it never has holes.
            let Some(m) = migrate else {
                src.clear_migrate(i);
                i += 1;
                continue;
            };
            if until_hole {
                return i;
            }
            i += fill_hole(m, src, dst, i, stats);
            continue;
        }
        let dest_kind = newfolio.memory_kind();

        let mut was_split = false;
        if thp_migration && slot.is_migrate() {
            let (src_order, dst_order) = (slot.order(), newfolio.slot_order());
            if src_order > 0 && dst_order == 0 {
                // The destination is a single page: split the source.
                let split = match migrate {
                    Some(m) => src.split_unmapped(m.vma, i, m.start + i * PAGE_SIZE),
                    None => Err(kernel::error::code::EINVAL),
                };
                if split.is_err() {
                    // The head alone, not migrated, as 7.3 leaves it.
                    src.demote_to_page(i);
                    stats.inc(Counter::FailSplitUnmapped);
                    i += 1;
                    continue;
                }
                stats.inc(Counter::Splits);
                was_split = true;
            } else if dst_order != src_order && dst_order != 0 {
                // A destination of another order: refused, the source
                // stays.
                src.clear_migrate(i);
                stats.inc(Counter::FailDestination);
                i += 1;
                continue;
            }
        }

        let refused = match dest_kind {
            // Device memory of another driver than the one migrating.
            MemoryKind::DevicePrivate { owner } => migrate.is_some_and(|m| owner != m.owner),
            // ZONE_DEVICE memory that is neither device-private nor
            // coherent.
            MemoryKind::OtherZoneDevice => true,
            MemoryKind::System | MemoryKind::DeviceCoherent { .. } => false,
        };
        if refused {
            src.clear_migrate(i);
            stats.inc(Counter::FailDestination);
            i += 1;
            continue;
        }
        match src.migrate_to(i, &newfolio, dest_kind.is_device()) {
            Ok(()) => stats.inc(Counter::Migrated),
            Err(MigrateToError::Mapping) => {
                // Only anonymous memory goes to device memory.
                src.clear_migrate(i);
                stats.inc(Counter::FailMapping);
                i += 1;
                continue;
            }
            Err(MigrateToError::Refused) => {
                src.clear_migrate(i);
                stats.inc(Counter::FailMigrateMapping);
            }
        }
        // Past the folio's tail slots, which are empty (after a split, the
        // folio is the page at `i`).
        i += if was_split { 1 } else { slot.nr_pages() };
    }
    npages
}
