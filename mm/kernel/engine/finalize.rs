// SPDX-License-Identifier: GPL-2.0

//! Finalize: `__migrate_device_finalize()`. Migration entries are replaced
//! by mappings of the destination where the migration succeeded, of the
//! source otherwise; every lock and reference the migration held is
//! released.
//!
//! A `migrate_vma` migration knows where its slots are mapped: the entries
//! it installed there are put back by walking the page table, one PTE or
//! PMD lock per PMD, instead of one rmap walk per folio. A folio whose
//! entries may not be its only mappings (shared with a forked child), and
//! every folio of a `migrate_device_*` migration, still goes through the
//! rmap.

use super::counters::{Counter, Stats};
use crate::migration::{DestSlots, SlotsMappedAt, SourceSlots, Unmapped};

/// Completes the migration of every slot; `at` says where a `migrate_vma`
/// migration's slots are mapped.
pub(crate) fn finalize(
    src: SourceSlots<'_, Unmapped>,
    dst: DestSlots<'_>,
    at: Option<SlotsMappedAt<'_>>,
    stats: &mut Stats,
) {
    let done = src.finalize(dst, at);
    stats.add(Counter::Restored, done.restored);
    stats.add(Counter::RmapRestores, done.rmap_walks);
}
