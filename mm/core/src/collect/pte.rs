// SPDX-License-Identifier: GPL-2.0

//! What the walk does with a PTE.

use super::super::error::Error;
use super::super::fault_lock::LockAction;
use super::super::pfn::{MIGRATE_PFN_ORDER_MAX, PAGE_SIZE};
use super::{is_aligned, pmd_pages, CollectArgs, Decision, SelectFlags, Source};

/// The struct page behind a PTE and its folio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// `folio_order()` of the page's folio.
    pub order: u32,
    /// The page's index in its folio (`folio_page_idx()`).
    pub index: usize,
    /// The folio is the folio of `migrate->fault_page`.
    pub fault_folio: bool,
    /// `page->mapping` is set (`mm/migrate_device.c:381`).
    pub has_mapping: bool,
    /// For the head page of a large folio: the `1 << order` PTEs from this one
    /// map the folio's pages in order, all of the same kind (present, or
    /// device-private), and nothing else maps it or pins it. Only the mTHP
    /// extension reads it.
    pub mapped_whole: bool,
}

impl PageInfo {
    /// A page of a single-page folio, not the fault folio, with a mapping.
    pub const fn small() -> Self {
        Self {
            order: 0,
            index: 0,
            fault_folio: false,
            has_mapping: true,
            mapped_whole: true,
        }
    }

    /// The head page of a folio of `order` that its PTEs map whole, not the
    /// fault folio, with a mapping.
    pub const fn head(order: u32) -> Self {
        Self {
            order,
            index: 0,
            fault_folio: false,
            has_mapping: true,
            mapped_whole: true,
        }
    }
}

/// What kind of memory a present PTE maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageKind {
    /// System memory (not `ZONE_DEVICE`).
    System,
    /// A device-coherent page.
    DeviceCoherent {
        /// Its `pgmap->owner` is `migrate->pgmap_owner`.
        owner_matches: bool,
    },
    /// Another `ZONE_DEVICE` page, which 7.3 neither selects nor filters.
    OtherZoneDevice,
}

/// A PTE as the walk sees it, under the PTE lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PteEntry {
    /// `pte_none()`.
    None,
    /// A non-present entry that is neither device-private nor a migration
    /// entry: a swapped page, a device-exclusive entry, a marker, a poisoned
    /// page.
    Swap,
    /// A migration entry.
    Migration,
    /// A device-private entry.
    DevicePrivate {
        /// The page it points to.
        page: PageInfo,
        /// The folio's `pgmap->owner` is `migrate->pgmap_owner`.
        owner_matches: bool,
        /// A writable device-private entry.
        write: bool,
    },
    /// A present PTE of the zero page (`is_zero_pfn()`).
    Zero,
    /// A present PTE without a struct page (`vm_normal_page()` is `NULL`).
    Special,
    /// A present PTE of a normal page.
    Present {
        /// The page it maps.
        page: PageInfo,
        /// The kind of memory.
        kind: PageKind,
        /// `pte_write()`.
        write: bool,
    },
}

/// One PTE of `migrate_vma_collect_pmd()`'s loop (`mm/migrate_device.c:283-487`)
/// at address `addr`, the range ending at `end` within the same PMD.
///
/// A large folio is collected whole under the mTHP extension (see the [module
/// documentation](self)), else split first; if that split fails, the rest of
/// the range, from `addr` to `end`, is skipped (`mm/migrate_device.c:326`, `:372`).
#[inline(always)]
pub fn migrate_vma_collect_pte(
    args: &CollectArgs,
    pte: &PteEntry,
    addr: u64,
    end: u64,
) -> Result<Decision, Error> {
    let remaining = pmd_pages(addr, end)?;
    let skip = Decision::Skip { slots: 1 };
    let hole = Decision::CollectSmall {
        slots: 1,
        source: Source::Hole,
    };
    let flags = args.flags;
    match *pte {
        PteEntry::None => Ok(if args.anonymous { hole } else { skip }),
        PteEntry::Swap | PteEntry::Migration | PteEntry::Special => Ok(skip),
        PteEntry::Zero => Ok(if flags.contains(SelectFlags::SYSTEM) {
            hole
        } else {
            skip
        }),
        PteEntry::DevicePrivate {
            page,
            owner_matches,
            write,
        } => {
            if !flags.contains(SelectFlags::DEVICE_PRIVATE) || !owner_matches {
                return Ok(skip);
            }
            collect_page(args, &page, write, addr, remaining)
        }
        PteEntry::Present { page, kind, write } => {
            let selected = match kind {
                PageKind::System => flags.contains(SelectFlags::SYSTEM),
                PageKind::DeviceCoherent { owner_matches } => {
                    flags.contains(SelectFlags::DEVICE_COHERENT) && owner_matches
                }
                PageKind::OtherZoneDevice => true,
            };
            if !selected {
                return Ok(skip);
            }
            collect_page(args, &page, write, addr, remaining)
        }
    }
}

/// The part of the PTE loop common to device-private and present pages, from
/// the large-folio test on (`mm/migrate_device.c:311-335`, `:357-410`).
fn collect_page(
    args: &CollectArgs,
    page: &PageInfo,
    write: bool,
    addr: u64,
    remaining: usize,
) -> Result<Decision, Error> {
    if page.order > MIGRATE_PFN_ORDER_MAX {
        return Err(Error::OrderTooLarge);
    }
    let nr: usize = 1 << page.order;
    if page.index >= nr {
        return Err(Error::OutOfRange);
    }
    let source = Source::Page {
        write,
        lock: LockAction::for_collect(page.fault_folio),
    };
    if page.order > 0 {
        let aligned = is_aligned(addr, PAGE_SIZE << page.order);
        // PTE-mapped, even a PMD-order folio is whole only for an mTHP
        // caller: 7.3 splits it whatever the flags.
        if args.orders.contains(page.order)
            && page.index == 0
            && aligned
            && nr <= remaining
            && page.mapped_whole
            && page.has_mapping
        {
            return Ok(Decision::CollectWhole {
                order: page.order,
                slots: nr,
                source,
            });
        }
        return Ok(Decision::SplitFirst {
            lock: LockAction::for_split(page.fault_folio),
            slots: remaining,
        });
    }
    if !page.has_mapping {
        return Ok(Decision::Skip { slots: 1 });
    }
    Ok(Decision::CollectSmall { slots: 1, source })
}
