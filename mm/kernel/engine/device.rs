// SPDX-License-Identifier: GPL-2.0

//! Eviction by device PFN: `migrate_device_range()` and
//! `migrate_device_pfns()`. The driver names device pages instead of
//! virtual addresses; each in-use folio is locked and then unmapped
//! wherever it is mapped.

use super::counters::{Counter, Stats};
use super::unmap::unmap;
use crate::migration::{Collected, DevicePfn, SourceSlots, Unmapped};

/// Counts what locking a device PFN found.
pub(crate) fn count(stats: &mut Stats, found: DevicePfn) {
    match found {
        DevicePfn::Locked { order } => stats.folio(order),
        DevicePfn::Contended => stats.inc(Counter::FailTrylock),
        DevicePfn::Free => {}
    }
}

/// Unmaps the device folios collected by PFN.
pub(crate) fn unmap_pfns<'a>(
    src: SourceSlots<'a, Collected>,
    stats: &mut Stats,
) -> SourceSlots<'a, Unmapped> {
    unmap(src, stats).0
}
