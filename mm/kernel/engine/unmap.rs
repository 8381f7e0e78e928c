// SPDX-License-Identifier: GPL-2.0

//! Unmap: `migrate_device_unmap()`. Collected folios are isolated from the
//! LRU, in one pass that takes each lruvec lock once for a run of folios,
//! unmapped through the rmap where collection could not, and checked for
//! pins; what cannot migrate is restored and dropped from the arrays.

use super::counters::{Counter, Stats};
use crate::migration::{self, Collected, Slots, SourceSlots, UnmapOutcome, Unmapped};

/// Unmaps the folios collected in `src`; returns the slots, now unmapped,
/// and how many of them will migrate.
pub(crate) fn unmap<'a>(
    mut src: SourceSlots<'a, Collected>,
    stats: &mut Stats,
) -> (SourceSlots<'a, Unmapped>, usize) {
    migration::lru_add_drain();

    // Heads carry their folio's order. A folio not on an LRU yet may sit
    // in another CPU's LRU cache: drain those once, before isolating.
    let mut drain = false;
    let mut i = 0;
    while i < src.len() {
        let Some(folio) = src.folio(i) else {
            i += 1;
            continue;
        };
        let (order, nr) = (folio.order(), folio.nr_pages());
        drain |= !folio.is_zone_device() && !folio.is_on_lru();
        if nr > 1 && src.set_order(i, order).is_err() {
            kernel::warn_on!(true);
        }
        i += nr;
    }
    if drain {
        migration::lru_add_drain_all();
    }
    let mut src = src.isolate_lru();

    let mut unmapped = 0;
    let mut failed = false;
    let mut i = 0;
    while i < src.len() {
        if src.is_unused(i) {
            i += 1;
            continue;
        }
        let slot = src.get(i);
        if slot.pfn().is_none() {
            if slot.is_migrate() {
                unmapped += 1;
            }
            i += 1;
            continue;
        }
        // The head carries its folio's order since the first pass.
        let nr = slot.nr_pages();
        match src.unmap_folio(i) {
            UnmapOutcome::Empty => {}
            UnmapOutcome::NotIsolated => {
                failed = true;
                stats.inc(Counter::FailIsolate);
            }
            UnmapOutcome::Pinned { rmap_walked } => {
                failed = true;
                if rmap_walked {
                    stats.inc(Counter::RmapUnmaps);
                }
                stats.inc(Counter::FailPinned);
            }
            UnmapOutcome::Unmapped { rmap_walked } => {
                if rmap_walked {
                    stats.inc(Counter::RmapUnmaps);
                }
                unmapped += 1;
            }
        }
        i += nr;
    }

    if failed {
        let restored = src.restore_unmigrated();
        if restored > 0 {
            stats.add(Counter::Restored, restored);
        }
    }
    // SAFETY: Every slot left with a PFN was unmapped by `unmap_folio`;
    // the others were restored just above.
    (unsafe { src.into_unmapped() }, unmapped)
}
