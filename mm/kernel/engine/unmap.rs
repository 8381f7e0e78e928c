// SPDX-License-Identifier: GPL-2.0

//! Unmap: `migrate_device_unmap()`. Collected folios are isolated from the
//! LRU, unmapped through the rmap where collection could not, and checked
//! for pins, in one pass that takes each lruvec lock once for a run of
//! folios and drains the LRU caches only once it meets a folio to isolate;
//! what cannot migrate is restored and dropped from the arrays.

use super::counters::{Counter, Stats};
use crate::migration::{Collected, SourceSlots, UnmapOutcome, Unmapped};

/// Unmaps the folios collected in `src`; returns the slots, now unmapped,
/// and how many of them will migrate.
pub(crate) fn unmap<'a>(
    src: SourceSlots<'a, Collected>,
    stats: &mut Stats,
) -> (SourceSlots<'a, Unmapped>, usize) {
    let mut unmapped = 0;
    let (src, restored) = src.isolate_and_unmap(|outcome| match outcome {
        // A hole the driver may fill.
        UnmapOutcome::Empty { hole: true } => unmapped += 1,
        UnmapOutcome::Empty { hole: false } => {}
        UnmapOutcome::NotIsolated => stats.inc(Counter::FailIsolate),
        UnmapOutcome::Pinned { rmap_walked } => {
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
    });
    if restored > 0 {
        stats.add(Counter::Restored, restored);
    }
    (src, unmapped)
}
