// SPDX-License-Identifier: GPL-2.0

//! What the walk does with a PMD.

use super::super::error::Error;
use super::super::fault_lock::LockAction;
use super::super::pfn::{PMD_ORDER, PMD_SIZE};
use super::hole::migrate_vma_collect_hole;
use super::{is_aligned, pmd_pages, CollectArgs, Decision, SelectFlags, Source};

/// A PMD as the walk sees it, under the PMD lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmdEntry {
    /// `pmd_none()`.
    None,
    /// Present and pointing to a page table of PTEs.
    Table,
    /// `pmd_trans_huge()`: a PMD-mapped folio of system (or device-coherent)
    /// memory.
    TransHuge {
        /// The folio is the huge zero folio (`is_huge_zero_folio()`).
        huge_zero: bool,
        /// `pmd_write()`.
        write: bool,
        /// The folio is the folio of `migrate->fault_page`.
        fault_folio: bool,
    },
    /// A device-private PMD entry.
    DevicePrivate {
        /// The folio's `pgmap->owner` is `migrate->pgmap_owner`.
        owner_matches: bool,
        /// A writable device-private entry.
        write: bool,
        /// The folio is the folio of `migrate->fault_page`.
        fault_folio: bool,
    },
    /// Any other non-present PMD: a PMD migration entry.
    Migration,
}

/// `migrate_vma_collect_huge_pmd()` (`mm/migrate_device.c:137-243`): a PMD
/// that is not a page table, for the range `[start, end)` within it.
///
/// After a successful [`Decision::SplitFirst`], the walk reads the PMD again
/// and asks [`migrate_vma_collect_pmd`]: a hole if it became none, the PTEs
/// otherwise (`mm/migrate_device.c:238-242`).
pub fn migrate_vma_collect_huge_pmd(
    args: &CollectArgs,
    pmd: &PmdEntry,
    start: u64,
    end: u64,
) -> Result<Decision, Error> {
    let slots = pmd_pages(start, end)?;
    let skip = Decision::Skip { slots };
    let (write, fault_folio) = match *pmd {
        PmdEntry::None => return migrate_vma_collect_hole(args, start, end),
        PmdEntry::Table => return Ok(Decision::Retry),
        PmdEntry::Migration => return Ok(skip),
        PmdEntry::TransHuge {
            huge_zero,
            write,
            fault_folio,
        } => {
            if !args.flags.contains(SelectFlags::SYSTEM) {
                return Ok(skip);
            }
            if huge_zero {
                return migrate_vma_collect_hole(args, start, end);
            }
            (write, fault_folio)
        }
        PmdEntry::DevicePrivate {
            owner_matches,
            write,
            fault_folio,
        } => {
            if !args.flags.contains(SelectFlags::DEVICE_PRIVATE) || !owner_matches {
                return Ok(skip);
            }
            (write, fault_folio)
        }
    };
    let lock = LockAction::for_collect(fault_folio);
    if args.accepts(PMD_ORDER) && is_aligned(start, PMD_SIZE) && is_aligned(end, PMD_SIZE) {
        Ok(Decision::CollectWhole {
            order: PMD_ORDER,
            slots,
            source: Source::Page { write, lock },
        })
    } else {
        Ok(Decision::SplitFirst { lock, slots })
    }
}

/// `migrate_vma_collect_pmd()` at the PMD level (`mm/migrate_device.c:259-269`):
/// a page table is walked PTE by PTE, anything else goes to
/// [`migrate_vma_collect_huge_pmd`].
pub fn migrate_vma_collect_pmd(
    args: &CollectArgs,
    pmd: &PmdEntry,
    start: u64,
    end: u64,
) -> Result<Decision, Error> {
    match pmd {
        PmdEntry::Table => {
            pmd_pages(start, end)?;
            Ok(Decision::WalkPtes)
        }
        _ => migrate_vma_collect_huge_pmd(args, pmd, start, end),
    }
}
