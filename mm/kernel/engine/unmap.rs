// SPDX-License-Identifier: GPL-2.0

//! Unmap: `migrate_device_unmap()`. Collected folios are isolated from the
//! LRU, unmapped through the rmap where collection could not, and checked
//! for pins; what cannot migrate is restored and dropped from the arrays.

use super::counters::{Counter, Stats};
use crate::migration::{self, Collected, Slots, SourceSlots, UnmapOutcome, Unmapped};

/// Unmaps the folios collected in `src`; returns the slots, now unmapped,
/// and how many of them will migrate.
pub(crate) fn unmap<'a>(
    mut src: SourceSlots<'a, Collected>,
    stats: &mut Stats,
) -> (SourceSlots<'a, Unmapped>, usize) {
    let mut allow_drain = true;
    let mut unmapped = 0;
    let mut failed = false;

    migration::lru_add_drain();

    let mut i = 0;
    while i < src.len() {
        let slot = src.get(i);
        let Some(folio) = src.folio(i) else {
            if slot.is_migrate() {
                unmapped += 1;
            }
            i += 1;
            continue;
        };
        let (order, nr) = (folio.order(), folio.nr_pages());
        if allow_drain && !folio.is_zone_device() && !folio.is_on_lru() {
            // Drain the other CPUs' LRU caches, once.
            migration::lru_add_drain_all();
            allow_drain = false;
        }
        // The head carries the folio's order.
        if nr > 1 && src.set_order(i, order).is_err() {
            kernel::warn_on!(true);
        }
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
