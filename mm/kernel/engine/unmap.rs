// SPDX-License-Identifier: GPL-2.0

//! Unmap: `migrate_device_unmap()`. Collected folios are isolated from the
//! LRU, in one pass that takes each lruvec lock once for a run of folios,
//! unmapped through the rmap where collection could not, and checked for
//! pins; what cannot migrate is restored and dropped from the arrays.

use super::counters::{Counter, Stats};
use crate::folio::Folio;
use crate::migration::{self, Collected, Slots, SourceSlots, UnmapOutcome, Unmapped};

/// Unmaps the folios collected in `src`; returns the slots, now unmapped,
/// and how many of them will migrate.
pub(crate) fn unmap<'a>(
    src: SourceSlots<'a, Collected>,
    stats: &mut Stats,
) -> (SourceSlots<'a, Unmapped>, usize) {
    migration::lru_add_drain();
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
        // From here on the head carries its folio's order.
        let order = src.folio(i).map_or(0, Folio::order);
        if order > 0 && src.set_order(i, order).is_err() {
            kernel::warn_on!(true);
        }
        let nr = src.get(i).nr_pages();
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
