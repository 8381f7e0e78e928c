// SPDX-License-Identifier: GPL-2.0

//! Finalize: `__migrate_device_finalize()`. Migration entries are replaced
//! by mappings of the destination where the migration succeeded, of the
//! source otherwise; every lock and reference the migration held is
//! released.

use super::counters::{Counter, Stats};
use crate::migration::{DestSlots, SourceSlots, Unmapped};

/// Completes the migration of every slot.
pub(crate) fn finalize(src: SourceSlots<'_, Unmapped>, dst: DestSlots<'_>, stats: &mut Stats) {
    let restored = src.finalize(dst);
    if restored > 0 {
        stats.add(Counter::Restored, restored);
    }
}
