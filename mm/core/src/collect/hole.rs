// SPDX-License-Identifier: GPL-2.0

//! Ranges without a page table entry to look at: skipped or holes.

use super::super::error::Error;
use super::super::pfn::{PMD_ORDER, PMD_SIZE};
use super::{is_aligned, pages, CollectArgs, Decision, Source};

/// `migrate_vma_collect_skip()` (`mm/migrate_device.c:21-34`): every slot of
/// `[start, end)` is left 0.
pub fn migrate_vma_collect_skip(start: u64, end: u64) -> Result<Decision, Error> {
    Ok(Decision::Skip {
        slots: pages(start, end)?,
    })
}

/// `migrate_vma_collect_hole()` (`mm/migrate_device.c:36-73`): an unpopulated
/// range `[start, end)`, which may span several PMDs.
///
/// Skipped unless the VMA is anonymous; collected as one PMD-order hole when
/// the caller accepts the PMD order and the range is PMD aligned; else as one
/// hole per page.
pub fn migrate_vma_collect_hole(
    args: &CollectArgs,
    start: u64,
    end: u64,
) -> Result<Decision, Error> {
    let slots = pages(start, end)?;
    if !args.anonymous {
        return Ok(Decision::Skip { slots });
    }
    if args.accepts(PMD_ORDER) && is_aligned(start, PMD_SIZE) && is_aligned(end, PMD_SIZE) {
        return Ok(Decision::CollectWhole {
            order: PMD_ORDER,
            slots,
            source: Source::Hole,
        });
    }
    Ok(Decision::CollectSmall {
        slots,
        source: Source::Hole,
    })
}
