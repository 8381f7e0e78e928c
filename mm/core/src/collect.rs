// SPDX-License-Identifier: GPL-2.0

//! The collection rules: what the page-table walk of `migrate_vma_collect()`
//! does with each PMD and PTE of the range.
//!
//! C reference: `mm/migrate_device.c` of Linux 7.3, functions
//! `migrate_vma_collect_skip()`, `migrate_vma_collect_hole()`,
//! `migrate_vma_collect_huge_pmd()` and `migrate_vma_collect_pmd()`. Each
//! function here takes what the walk sees (the entry, reduced to the facts the
//! C code tests) and the caller's [`CollectArgs`], and returns a [`Decision`]:
//! skip, collect per 4 KiB page, collect a folio whole, split it first, or walk
//! the PTEs. The walk itself, the locks and the page-table updates are the
//! engine's; the decisions are the same as 7.3's for every case 7.3 handles.
//!
//! The one extension is mTHP. With no accepted order besides the PMD one
//! ([`CollectArgs::orders`] empty) the answers are exactly 7.3's. When the
//! caller accepts order `n`, a PTE-mapped folio of order `n` whose head is
//! mapped at a `1 << n`-page aligned address, whose pages are all mapped in
//! order by the PTEs that follow and that lies inside the range is collected
//! whole: one head slot covering `1 << n` slots. Any other large folio met at a
//! PTE (order not accepted, misaligned, straddling the range, partly mapped) is
//! split first and then collected per page, as 7.3 does
//! (`mm/migrate_device.c:311-330`, `:357-376`).
//!
//! | entry | 7.3 lines | decision |
//! |---|---|---|
//! | hole, VMA not anonymous | 45-46 | [`Decision::Skip`] |
//! | hole, COMPOUND, PMD aligned | 48-62 | [`Decision::CollectWhole`], [`Source::Hole`] |
//! | hole otherwise | 65-70 | [`Decision::CollectSmall`], [`Source::Hole`] |
//! | PMD none | 149-151 | as a hole |
//! | PMD THP without SELECT_SYSTEM | 155-157 | skip |
//! | PMD huge zero page | 161-163 | as a hole |
//! | PMD migration entry (not device-private) | 170-173 | skip |
//! | PMD device-private, flag or owner missing | 170-180 | skip |
//! | PMD page table | 184-186, 260-269 | [`Decision::Retry`] / [`Decision::WalkPtes`] |
//! | PMD folio, COMPOUND, aligned | 189-225 | collect whole, trylock (fail: skip, 190-193) |
//! | PMD folio otherwise | 228-242 | [`Decision::SplitFirst`] (fail: skip) |
//! | PTE none | 285-291 | one hole, or skip if not anonymous |
//! | PTE swap/migration entry | 293-301 | skip |
//! | PTE device-private, flag or owner missing | 305-308 | skip |
//! | PTE large folio | 311-330, 357-376 | split first (fail: skip to end) |
//! | PTE zero page | 338-342 | one hole with SELECT_SYSTEM, else skip (381) |
//! | PTE system page without SELECT_SYSTEM | 344-347 | skip |
//! | PTE device-coherent, flag or owner missing | 348-355 | skip |
//! | PTE without a page or a mapping | 381-384 | skip |
//! | PTE page otherwise | 332-335, 377-378, 410 | [`Decision::CollectSmall`], trylock (479-481) |

use core::ops::BitOr;

use super::error::Error;
use super::fault_lock::LockAction;
use super::pfn::{MigratePfn, MIGRATE_PFN_ORDER_MAX, PAGE_SHIFT, PAGE_SIZE, PMD_ORDER, PMD_SIZE};

/// `MIGRATE_VMA_SELECT_SYSTEM`: collect pages of system memory.
pub const MIGRATE_VMA_SELECT_SYSTEM: u64 = 1 << 0;
/// `MIGRATE_VMA_SELECT_DEVICE_PRIVATE`: collect device-private pages of the
/// caller's `pgmap_owner`.
pub const MIGRATE_VMA_SELECT_DEVICE_PRIVATE: u64 = 1 << 1;
/// `MIGRATE_VMA_SELECT_DEVICE_COHERENT`: collect device-coherent pages of the
/// caller's `pgmap_owner`.
pub const MIGRATE_VMA_SELECT_DEVICE_COHERENT: u64 = 1 << 2;
/// `MIGRATE_VMA_SELECT_COMPOUND`: collect PMD-sized folios and holes whole.
pub const MIGRATE_VMA_SELECT_COMPOUND: u64 = 1 << 3;

/// The `flags` of `struct migrate_vma`: a set of `MIGRATE_VMA_SELECT_*` bits
/// (`enum migrate_vma_direction`, `include/linux/migrate.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SelectFlags(u64);

impl SelectFlags {
    /// No flag.
    pub const NONE: Self = Self(0);
    /// [`MIGRATE_VMA_SELECT_SYSTEM`].
    pub const SYSTEM: Self = Self(MIGRATE_VMA_SELECT_SYSTEM);
    /// [`MIGRATE_VMA_SELECT_DEVICE_PRIVATE`].
    pub const DEVICE_PRIVATE: Self = Self(MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
    /// [`MIGRATE_VMA_SELECT_DEVICE_COHERENT`].
    pub const DEVICE_COHERENT: Self = Self(MIGRATE_VMA_SELECT_DEVICE_COHERENT);
    /// [`MIGRATE_VMA_SELECT_COMPOUND`].
    pub const COMPOUND: Self = Self(MIGRATE_VMA_SELECT_COMPOUND);

    /// The flags of a raw `migrate->flags`. Bits that Linux 7.3 does not
    /// define are kept and, as in C, ignored.
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags of both.
    #[inline]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl BitOr for SelectFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// A set of folio orders, bit `n` for order `n`, up to the PUD order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Orders(u32);

impl Orders {
    /// No order.
    pub const NONE: Self = Self(0);

    /// The orders of `bits`; fails with [`Error::OrderTooLarge`] if a bit
    /// above the PUD order is set.
    pub const fn from_bits(bits: u32) -> Result<Self, Error> {
        if bits >> (MIGRATE_PFN_ORDER_MAX + 1) != 0 {
            Err(Error::OrderTooLarge)
        } else {
            Ok(Self(bits))
        }
    }

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// This set with `order` added; fails above the PUD order.
    pub const fn with(self, order: u32) -> Result<Self, Error> {
        if order > MIGRATE_PFN_ORDER_MAX {
            Err(Error::OrderTooLarge)
        } else {
            Ok(Self(self.0 | (1 << order)))
        }
    }

    /// Whether `order` is in the set.
    #[inline]
    pub const fn contains(self, order: u32) -> bool {
        order <= MIGRATE_PFN_ORDER_MAX && self.0 & (1 << order) != 0
    }
}

/// What the walk knows of the migration as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CollectArgs {
    /// `migrate->flags`.
    pub flags: SelectFlags,
    /// Orders of large folios the caller accepts whole besides the PMD order,
    /// which `MIGRATE_VMA_SELECT_COMPOUND` selects. Empty for a Linux 7.3
    /// caller; with an order other than the PMD one, PTE-mapped folios of that
    /// order are collected whole (the mTHP extension).
    pub orders: Orders,
    /// `thp_migration_supported()`: PMD migration entries exist.
    pub thp_migration: bool,
    /// `vma_is_anonymous(vma)`: holes may be populated.
    pub anonymous: bool,
}

impl CollectArgs {
    /// The arguments of a Linux 7.3 caller with `flags`, on an anonymous VMA,
    /// with THP migration supported and no mTHP order.
    pub const fn new(flags: SelectFlags) -> Self {
        Self {
            flags,
            orders: Orders::NONE,
            thp_migration: true,
            anonymous: true,
        }
    }

    /// Whether a folio of `order` may be collected whole: always for a single
    /// page; for the PMD order, with THP migration and either
    /// `MIGRATE_VMA_SELECT_COMPOUND` (as 7.3, `mm/migrate_device.c:196-199`) or
    /// the order in [`orders`](Self::orders); for any other order, when it is
    /// in [`orders`](Self::orders).
    pub const fn accepts(&self, order: u32) -> bool {
        if order == 0 {
            true
        } else if order == PMD_ORDER {
            self.thp_migration
                && (self.flags.contains(SelectFlags::COMPOUND) || self.orders.contains(order))
        } else {
            self.orders.contains(order)
        }
    }
}

/// What a collected slot stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// No page: an unpopulated range, or the zero page. The slot gets
    /// `MIGRATE_PFN_MIGRATE` without a PFN ([`MigratePfn::hole`]) and the
    /// driver may populate it. Nothing to lock.
    Hole,
    /// A mapped folio. The slot gets its PFN with `MIGRATE_PFN_MIGRATE`, and
    /// `MIGRATE_PFN_WRITE` if `write`, once the engine holds the lock as
    /// `lock` says and has replaced the mapping by a migration entry.
    Page {
        /// The mapping was writable (`pmd_write()`, `pte_write()`, or a
        /// writable device-private entry); for a folio collected whole from
        /// PTEs, every one of them was.
        write: bool,
        /// How the engine gets the folio's lock.
        lock: LockAction,
    },
}

/// What the walk does with the entry it looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// `migrate_vma_collect_skip()`: leave `slots` slots 0; nothing there is
    /// migrated.
    Skip {
        /// Slots covered.
        slots: usize,
    },
    /// Collect each of `slots` slots as one 4 KiB page: a hole per slot, or,
    /// for a [`Source::Page`], the one page of the entry (`slots` is 1).
    CollectSmall {
        /// Slots covered.
        slots: usize,
        /// What the slots stand for.
        source: Source,
    },
    /// Collect a folio (or a hole) of `order` whole: its head in the first
    /// slot, 0 in the other `slots - 1`. `slots` is `1 << order`, except for
    /// a hole that spans several PMDs, where 7.3 collects only the first PMD
    /// and leaves the rest empty (`mm/migrate_device.c:52-62`); a walker that
    /// wants one head per PMD asks once per PMD.
    CollectWhole {
        /// Order of the folio.
        order: u32,
        /// Slots covered.
        slots: usize,
        /// What the head slot stands for.
        source: Source,
    },
    /// Split the folio first, holding its lock as `lock` says, then look at
    /// the same entry again; if the lock or the split fails, skip `slots`
    /// slots (the rest of the range).
    SplitFirst {
        /// How the engine gets the folio's lock for the split.
        lock: LockAction,
        /// Slots skipped if the lock or the split fails.
        slots: usize,
    },
    /// The PMD points to a page table: walk its PTEs.
    WalkPtes,
    /// The PMD changed under the walk (`-EAGAIN`): read it again.
    Retry,
}

/// An effect that the engine could not carry out for a [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// `folio_trylock()` failed.
    Trylock,
    /// `split_folio()` failed.
    Split,
    /// `set_pmd_migration_entry()` failed for a PMD collected whole.
    PmdMigrationEntry,
    /// A PTE could not be replaced by a migration entry (the anon-exclusive
    /// page could not be shared, `mm/migrate_device.c:421-427`).
    Unmap,
}

impl Decision {
    /// The slots this decision writes; `None` when it writes none yet (split,
    /// PTE walk, retry).
    pub const fn slots(&self) -> Option<usize> {
        match *self {
            Self::Skip { slots }
            | Self::CollectSmall { slots, .. }
            | Self::CollectWhole { slots, .. } => Some(slots),
            Self::SplitFirst { .. } | Self::WalkPtes | Self::Retry => None,
        }
    }

    /// How much this decision adds to `migrate->cpages`: one per hole slot,
    /// one per folio collected. For a [`Source::Page`] it counts once the
    /// lock and the unmap succeeded (`mm/migrate_device.c:433`).
    pub const fn collected(&self) -> usize {
        match *self {
            Self::CollectSmall {
                slots,
                source: Source::Hole,
            } => slots,
            Self::CollectSmall { .. } | Self::CollectWhole { .. } => 1,
            Self::Skip { .. } | Self::SplitFirst { .. } | Self::WalkPtes | Self::Retry => 0,
        }
    }

    /// What to do instead when `failure` happened while carrying out this
    /// decision; `None` when that failure cannot happen for it.
    ///
    /// - a failed trylock skips what would have been collected or split
    ///   (`mm/migrate_device.c:190-193`, `:479-481`);
    /// - a failed split skips the rest of the range (`:236-237`, `:322-326`,
    ///   `:368-372`);
    /// - a failed PMD migration entry falls back to splitting with the lock
    ///   already held (`:215-221`, `:228`);
    /// - a failed unmap skips the page or folio (`:421-427`).
    pub const fn on_failure(&self, failure: Failure) -> Option<Decision> {
        match (*self, failure) {
            (
                Self::CollectSmall {
                    slots,
                    source:
                        Source::Page {
                            lock: LockAction::Trylock,
                            ..
                        },
                }
                | Self::CollectWhole {
                    slots,
                    source:
                        Source::Page {
                            lock: LockAction::Trylock,
                            ..
                        },
                    ..
                }
                | Self::SplitFirst {
                    lock: LockAction::Trylock,
                    slots,
                },
                Failure::Trylock,
            )
            | (Self::SplitFirst { slots, .. }, Failure::Split)
            | (
                Self::CollectSmall {
                    slots,
                    source: Source::Page { .. },
                }
                | Self::CollectWhole {
                    slots,
                    source: Source::Page { .. },
                    ..
                },
                Failure::Unmap,
            ) => Some(Self::Skip { slots }),
            (
                Self::CollectWhole {
                    order: PMD_ORDER,
                    slots,
                    source: Source::Page { lock, .. },
                },
                Failure::PmdMigrationEntry,
            ) => Some(Self::SplitFirst { lock, slots }),
            _ => None,
        }
    }

    /// Writes the `src` slots of this decision to the start of `out`, as
    /// `migrate_vma_collect_*()` store them: 0 for skipped slots and tails,
    /// [`MigratePfn::hole`] for holes, and for a page the slot of `pfn` (the
    /// PFN of the page, or of the folio's head page) with
    /// `MIGRATE_PFN_MIGRATE` and, if the mapping was writable,
    /// `MIGRATE_PFN_WRITE` (`mm/migrate_device.c:210-212`, `:332-335`,
    /// `:377-378`). `pfn` is ignored for skips and holes.
    ///
    /// Returns the number of slots written: 0 for a decision that writes none.
    /// Fails if `out` is too short or `pfn` does not make a valid slot.
    pub fn fill(&self, out: &mut [u64], pfn: u64) -> Result<usize, Error> {
        let Some(slots) = self.slots() else {
            return Ok(0);
        };
        let out = out.get_mut(..slots).ok_or(Error::OutOfRange)?;
        let (order, head) = match *self {
            Self::CollectSmall {
                source: Source::Hole,
                ..
            } => {
                out.fill(MigratePfn::hole(0)?.raw());
                return Ok(slots);
            }
            Self::CollectSmall {
                source: Source::Page { write, .. },
                ..
            } => (0, page_slot(pfn, 0, write)?),
            Self::CollectWhole {
                order,
                source: Source::Hole,
                ..
            } => (order, MigratePfn::hole(order)?),
            Self::CollectWhole {
                order,
                source: Source::Page { write, .. },
                ..
            } => (order, page_slot(pfn, order, write)?),
            _ => (0, MigratePfn::EMPTY),
        };
        // A page fills exactly one slot; a folio at least its own.
        let too_few = slots < head.nr_pages();
        let page_spread = order == 0 && head.is_valid() && slots != 1;
        if too_few || page_spread {
            return Err(Error::OutOfRange);
        }
        out.fill(0);
        out[0] = head.raw();
        Ok(slots)
    }
}

/// The collected slot of a page or folio.
fn page_slot(pfn: u64, order: u32, write: bool) -> Result<MigratePfn, Error> {
    let m = MigratePfn::new(pfn, order)?.with_migrate();
    if write {
        m.with_write()
    } else {
        Ok(m)
    }
}

/// `IS_ALIGNED(x, size)` for a power-of-two `size`.
#[inline]
const fn is_aligned(x: u64, size: u64) -> bool {
    x & (size - 1) == 0
}

/// The number of pages from `start` to `end`, after checking that the range
/// is non-empty and page aligned.
fn pages(start: u64, end: u64) -> Result<usize, Error> {
    if start >= end || !is_aligned(start, PAGE_SIZE) || !is_aligned(end, PAGE_SIZE) {
        return Err(Error::BadRange);
    }
    usize::try_from((end - start) >> PAGE_SHIFT).map_err(|_| Error::BadRange)
}

/// Like [`pages`], and also checks that the range lies within one PMD.
fn pmd_pages(start: u64, end: u64) -> Result<usize, Error> {
    let n = pages(start, end)?;
    if start & !(PMD_SIZE - 1) != (end - 1) & !(PMD_SIZE - 1) {
        return Err(Error::BadRange);
    }
    Ok(n)
}

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
    /// device-private). Only the mTHP extension reads it.
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
        if args.accepts(page.order)
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

#[cfg(test)]
mod tests {
    use super::super::pfn::{
        MIGRATE_PFN_COMPOUND, MIGRATE_PFN_MIGRATE, MIGRATE_PFN_VALID, MIGRATE_PFN_WRITE,
    };
    use super::*;

    /// A PMD-aligned address.
    const A: u64 = 0x7f00_0000_0000;
    const PMD_END: u64 = A + PMD_SIZE;

    fn args(flags: SelectFlags) -> CollectArgs {
        CollectArgs::new(flags)
    }

    fn sys() -> CollectArgs {
        args(SelectFlags::SYSTEM)
    }

    fn sys_thp() -> CollectArgs {
        args(SelectFlags::SYSTEM | SelectFlags::COMPOUND)
    }

    fn dev_thp() -> CollectArgs {
        args(SelectFlags::DEVICE_PRIVATE | SelectFlags::COMPOUND)
    }

    const TRYLOCK_PAGE: Source = Source::Page {
        write: true,
        lock: LockAction::Trylock,
    };

    fn thp(write: bool) -> PmdEntry {
        PmdEntry::TransHuge {
            huge_zero: false,
            write,
            fault_folio: false,
        }
    }

    fn present(page: PageInfo) -> PteEntry {
        PteEntry::Present {
            page,
            kind: PageKind::System,
            write: true,
        }
    }

    // ---- migrate_vma_collect_skip / migrate_vma_collect_hole ----

    #[test]
    fn skip_covers_the_range_c28() {
        // mm/migrate_device.c:28-31 (migrate_vma_collect_skip)
        assert_eq!(
            migrate_vma_collect_skip(A, A + 3 * PAGE_SIZE),
            Ok(Decision::Skip { slots: 3 })
        );
    }

    #[test]
    fn hole_in_file_vma_is_skipped_c45() {
        // mm/migrate_device.c:45-46 (migrate_vma_collect_hole)
        let mut a = sys_thp();
        a.anonymous = false;
        assert_eq!(
            migrate_vma_collect_hole(&a, A, PMD_END),
            Ok(Decision::Skip { slots: 512 })
        );
    }

    #[test]
    fn aligned_hole_with_compound_is_one_pmd_hole_c48() {
        // mm/migrate_device.c:48-62 (migrate_vma_collect_hole)
        let d = migrate_vma_collect_hole(&sys_thp(), A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: Source::Hole
            }
        );
        assert_eq!(d.collected(), 1);
        let mut out = [u64::MAX; 512];
        assert_eq!(d.fill(&mut out, 0), Ok(512));
        assert_eq!(
            out[0],
            MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND | (9 << 56)
        );
        assert!(out[1..].iter().all(|&s| s == 0));
    }

    #[test]
    fn multi_pmd_hole_collects_the_first_pmd_only_c62() {
        // mm/migrate_device.c:52-62: one COMPOUND head, the rest skipped.
        let d = migrate_vma_collect_hole(&sys_thp(), A, A + 2 * PMD_SIZE).unwrap();
        assert_eq!(
            d,
            Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 1024,
                source: Source::Hole
            }
        );
    }

    #[test]
    fn hole_without_compound_is_per_page_c65() {
        // mm/migrate_device.c:65-70 (migrate_vma_collect_hole)
        let d = migrate_vma_collect_hole(&sys(), A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectSmall {
                slots: 512,
                source: Source::Hole
            }
        );
        assert_eq!(d.collected(), 512);
        let mut out = [0u64; 512];
        assert_eq!(d.fill(&mut out, 0), Ok(512));
        assert!(out.iter().all(|&s| s == MIGRATE_PFN_MIGRATE));
    }

    #[test]
    fn unaligned_hole_with_compound_is_per_page_c50() {
        // mm/migrate_device.c:50-51 (IS_ALIGNED checks fail) -> :65
        let d = migrate_vma_collect_hole(&sys_thp(), A + PAGE_SIZE, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectSmall {
                slots: 511,
                source: Source::Hole
            }
        );
    }

    #[test]
    fn hole_without_thp_migration_is_per_page_c48() {
        // mm/migrate_device.c:48 (thp_migration_supported())
        let mut a = sys_thp();
        a.thp_migration = false;
        assert!(matches!(
            migrate_vma_collect_hole(&a, A, PMD_END),
            Ok(Decision::CollectSmall { slots: 512, .. })
        ));
    }

    // ---- migrate_vma_collect_huge_pmd ----

    #[test]
    fn pmd_none_is_a_hole_c149() {
        // mm/migrate_device.c:149-151
        assert_eq!(
            migrate_vma_collect_huge_pmd(&sys_thp(), &PmdEntry::None, A, PMD_END),
            migrate_vma_collect_hole(&sys_thp(), A, PMD_END)
        );
    }

    #[test]
    fn pmd_thp_without_select_system_is_skipped_c155() {
        // mm/migrate_device.c:155-157
        assert_eq!(
            migrate_vma_collect_huge_pmd(&dev_thp(), &thp(true), A, PMD_END),
            Ok(Decision::Skip { slots: 512 })
        );
    }

    #[test]
    fn pmd_huge_zero_is_a_hole_c161() {
        // mm/migrate_device.c:161-163
        let zero = PmdEntry::TransHuge {
            huge_zero: true,
            write: false,
            fault_folio: false,
        };
        assert_eq!(
            migrate_vma_collect_huge_pmd(&sys_thp(), &zero, A, PMD_END),
            Ok(Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: Source::Hole
            })
        );
    }

    #[test]
    fn pmd_thp_aligned_with_compound_is_collected_whole_c196() {
        // mm/migrate_device.c:196-225, slot value :210-212
        let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: TRYLOCK_PAGE
            }
        );
        let mut out = [1u64; 512];
        assert_eq!(d.fill(&mut out, 0x4200), Ok(512));
        assert_eq!(
            out[0],
            (0x4200 << 6)
                | (9 << 56)
                | MIGRATE_PFN_VALID
                | MIGRATE_PFN_MIGRATE
                | MIGRATE_PFN_WRITE
                | MIGRATE_PFN_COMPOUND
        );
        assert!(out[1..].iter().all(|&s| s == 0));
        // The head PFN of a PMD folio is PMD aligned.
        assert_eq!(d.fill(&mut out, 0x4201), Err(Error::Misaligned));
    }

    #[test]
    fn pmd_thp_read_only_has_no_write_c165() {
        // mm/migrate_device.c:165-166 (pmd_write)
        let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(false), A, PMD_END).unwrap();
        let mut out = [0u64; 512];
        d.fill(&mut out, 0x200).unwrap();
        assert_eq!(out[0] & MIGRATE_PFN_WRITE, 0);
    }

    #[test]
    fn pmd_trylock_failure_skips_the_range_c190() {
        // mm/migrate_device.c:190-193
        let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END).unwrap();
        assert_eq!(
            d.on_failure(Failure::Trylock),
            Some(Decision::Skip { slots: 512 })
        );
    }

    #[test]
    fn pmd_fault_folio_is_not_trylocked_c190() {
        // mm/migrate_device.c:190 (folio != fault_folio && ...)
        let e = PmdEntry::DevicePrivate {
            owner_matches: true,
            write: true,
            fault_folio: true,
        };
        let d = migrate_vma_collect_huge_pmd(&dev_thp(), &e, A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: Source::Page {
                    write: true,
                    lock: LockAction::Held
                }
            }
        );
        assert_eq!(d.on_failure(Failure::Trylock), None);
    }

    #[test]
    fn pmd_migration_entry_failure_falls_back_to_split_c215() {
        // mm/migrate_device.c:215-221 -> fallback :228
        let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END).unwrap();
        assert_eq!(
            d.on_failure(Failure::PmdMigrationEntry),
            Some(Decision::SplitFirst {
                lock: LockAction::Trylock,
                slots: 512
            })
        );
    }

    #[test]
    fn pmd_thp_without_compound_is_split_c228() {
        // mm/migrate_device.c:196-199 fail -> fallback :228-242
        let d = migrate_vma_collect_huge_pmd(&sys(), &thp(true), A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::SplitFirst {
                lock: LockAction::Trylock,
                slots: 512
            }
        );
        // mm/migrate_device.c:236-237: a failed split skips the range.
        assert_eq!(
            d.on_failure(Failure::Split),
            Some(Decision::Skip { slots: 512 })
        );
        assert_eq!(d.slots(), None);
        assert_eq!(d.fill(&mut [], 0), Ok(0));
    }

    #[test]
    fn pmd_thp_partial_range_is_split_c198() {
        // mm/migrate_device.c:198-199 (IS_ALIGNED(start/end, HPAGE_PMD_SIZE))
        let d =
            migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A + PAGE_SIZE, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::SplitFirst {
                lock: LockAction::Trylock,
                slots: 511
            }
        );
    }

    #[test]
    fn pmd_without_thp_migration_is_split_c196() {
        // mm/migrate_device.c:196 (thp_migration_supported())
        let mut a = sys_thp();
        a.thp_migration = false;
        assert!(matches!(
            migrate_vma_collect_huge_pmd(&a, &thp(true), A, PMD_END),
            Ok(Decision::SplitFirst { .. })
        ));
    }

    #[test]
    fn pmd_migration_entry_is_skipped_c170() {
        // mm/migrate_device.c:170-173 (!softleaf_is_device_private)
        assert_eq!(
            migrate_vma_collect_huge_pmd(&sys_thp(), &PmdEntry::Migration, A, PMD_END),
            Ok(Decision::Skip { slots: 512 })
        );
    }

    #[test]
    fn pmd_device_private_needs_the_flag_c171() {
        // mm/migrate_device.c:170-173 (!MIGRATE_VMA_SELECT_DEVICE_PRIVATE)
        let e = PmdEntry::DevicePrivate {
            owner_matches: true,
            write: false,
            fault_folio: false,
        };
        assert_eq!(
            migrate_vma_collect_huge_pmd(&sys_thp(), &e, A, PMD_END),
            Ok(Decision::Skip { slots: 512 })
        );
    }

    #[test]
    fn pmd_device_private_foreign_owner_is_skipped_c177() {
        // mm/migrate_device.c:177-180
        let e = PmdEntry::DevicePrivate {
            owner_matches: false,
            write: false,
            fault_folio: false,
        };
        assert_eq!(
            migrate_vma_collect_huge_pmd(&dev_thp(), &e, A, PMD_END),
            Ok(Decision::Skip { slots: 512 })
        );
    }

    #[test]
    fn pmd_device_private_owned_is_collected_whole_c182() {
        // mm/migrate_device.c:176-183, :196-225
        let e = PmdEntry::DevicePrivate {
            owner_matches: true,
            write: false,
            fault_folio: false,
        };
        assert_eq!(
            migrate_vma_collect_huge_pmd(&dev_thp(), &e, A, PMD_END),
            Ok(Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: Source::Page {
                    write: false,
                    lock: LockAction::Trylock
                }
            })
        );
    }

    #[test]
    fn pmd_table_under_huge_pmd_is_retry_c184() {
        // mm/migrate_device.c:184-186 (-EAGAIN), :263-264 (goto again)
        assert_eq!(
            migrate_vma_collect_huge_pmd(&sys_thp(), &PmdEntry::Table, A, PMD_END),
            Ok(Decision::Retry)
        );
    }

    #[test]
    fn collect_pmd_walks_page_tables_c260() {
        // mm/migrate_device.c:260-269 (migrate_vma_collect_pmd)
        assert_eq!(
            migrate_vma_collect_pmd(&sys_thp(), &PmdEntry::Table, A, PMD_END),
            Ok(Decision::WalkPtes)
        );
        assert_eq!(
            migrate_vma_collect_pmd(&sys_thp(), &thp(true), A, PMD_END),
            migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END)
        );
    }

    #[test]
    fn pmd_ranges_must_stay_in_one_pmd() {
        assert_eq!(
            migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, A + 2 * PMD_SIZE),
            Err(Error::BadRange)
        );
        assert_eq!(
            migrate_vma_collect_pmd(&sys_thp(), &PmdEntry::Table, A, A),
            Err(Error::BadRange)
        );
        assert_eq!(migrate_vma_collect_skip(A, A + 1), Err(Error::BadRange));
    }

    // ---- migrate_vma_collect_pmd, PTE loop ----

    #[test]
    fn pte_none_is_a_hole_in_anonymous_vma_c285() {
        // mm/migrate_device.c:285-291
        let d = migrate_vma_collect_pte(&sys(), &PteEntry::None, A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectSmall {
                slots: 1,
                source: Source::Hole
            }
        );
        assert_eq!(d.collected(), 1);
        let mut a = sys();
        a.anonymous = false;
        assert_eq!(
            migrate_vma_collect_pte(&a, &PteEntry::None, A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
    }

    #[test]
    fn pte_swap_and_migration_entries_are_skipped_c300() {
        // mm/migrate_device.c:299-301
        for e in [PteEntry::Swap, PteEntry::Migration] {
            assert_eq!(
                migrate_vma_collect_pte(&sys(), &e, A, PMD_END),
                Ok(Decision::Skip { slots: 1 })
            );
        }
    }

    #[test]
    fn pte_device_private_needs_flag_and_owner_c305() {
        // mm/migrate_device.c:305-308
        let e = |owner_matches| PteEntry::DevicePrivate {
            page: PageInfo::small(),
            owner_matches,
            write: false,
        };
        let dp = args(SelectFlags::DEVICE_PRIVATE);
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &e(true), A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
        assert_eq!(
            migrate_vma_collect_pte(&dp, &e(false), A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
        // mm/migrate_device.c:332-335
        assert_eq!(
            migrate_vma_collect_pte(&dp, &e(true), A, PMD_END),
            Ok(Decision::CollectSmall {
                slots: 1,
                source: Source::Page {
                    write: false,
                    lock: LockAction::Trylock
                }
            })
        );
    }

    #[test]
    fn pte_device_private_large_folio_is_split_c311() {
        // mm/migrate_device.c:311-330 (7.3 caller: no mTHP order accepted)
        let e = PteEntry::DevicePrivate {
            page: PageInfo::head(4),
            owner_matches: true,
            write: true,
        };
        let d = migrate_vma_collect_pte(&dev_thp(), &e, A + 16 * PAGE_SIZE, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::SplitFirst {
                lock: LockAction::Lock,
                slots: 496
            }
        );
        // mm/migrate_device.c:322-326: a failed split skips to the end.
        assert_eq!(
            d.on_failure(Failure::Split),
            Some(Decision::Skip { slots: 496 })
        );
        // The sleeping lock of the split cannot fail as a trylock.
        assert_eq!(d.on_failure(Failure::Trylock), None);
    }

    #[test]
    fn pte_zero_page_is_a_hole_with_select_system_c338() {
        // mm/migrate_device.c:338-342
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &PteEntry::Zero, A, PMD_END),
            Ok(Decision::CollectSmall {
                slots: 1,
                source: Source::Hole
            })
        );
        // Without SELECT_SYSTEM vm_normal_page() is NULL: skipped at :381.
        assert_eq!(
            migrate_vma_collect_pte(&dev_thp(), &PteEntry::Zero, A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
    }

    #[test]
    fn pte_system_page_without_select_system_is_skipped_c345() {
        // mm/migrate_device.c:344-347
        assert_eq!(
            migrate_vma_collect_pte(&dev_thp(), &present(PageInfo::small()), A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
    }

    #[test]
    fn pte_device_coherent_needs_flag_and_owner_c348() {
        // mm/migrate_device.c:348-355
        let e = |owner_matches| PteEntry::Present {
            page: PageInfo::small(),
            kind: PageKind::DeviceCoherent { owner_matches },
            write: false,
        };
        let coh = args(SelectFlags::DEVICE_COHERENT);
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &e(true), A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
        assert_eq!(
            migrate_vma_collect_pte(&coh, &e(false), A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
        assert!(matches!(
            migrate_vma_collect_pte(&coh, &e(true), A, PMD_END),
            Ok(Decision::CollectSmall { slots: 1, .. })
        ));
    }

    #[test]
    fn pte_other_zone_device_page_is_not_filtered_c345() {
        // mm/migrate_device.c:345-355: neither branch filters it.
        let e = PteEntry::Present {
            page: PageInfo::small(),
            kind: PageKind::OtherZoneDevice,
            write: false,
        };
        assert!(matches!(
            migrate_vma_collect_pte(&args(SelectFlags::NONE), &e, A, PMD_END),
            Ok(Decision::CollectSmall { slots: 1, .. })
        ));
    }

    #[test]
    fn pte_system_large_folio_is_split_c357() {
        // mm/migrate_device.c:357-376 (7.3 caller)
        let d =
            migrate_vma_collect_pte(&sys_thp(), &present(PageInfo::head(4)), A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::SplitFirst {
                lock: LockAction::Lock,
                slots: 512
            }
        );
    }

    #[test]
    fn pte_fault_folio_split_takes_no_lock_c92() {
        // mm/migrate_device.c:92-93 (migrate_vma_split_folio)
        let mut page = PageInfo::head(2);
        page.fault_folio = true;
        let e = PteEntry::DevicePrivate {
            page,
            owner_matches: true,
            write: false,
        };
        assert_eq!(
            migrate_vma_collect_pte(&dev_thp(), &e, A, PMD_END),
            Ok(Decision::SplitFirst {
                lock: LockAction::Held,
                slots: 512
            })
        );
    }

    #[test]
    fn pte_without_page_or_mapping_is_skipped_c381() {
        // mm/migrate_device.c:381-384
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &PteEntry::Special, A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
        let mut page = PageInfo::small();
        page.has_mapping = false;
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &present(page), A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
    }

    #[test]
    fn pte_small_page_is_collected_c377() {
        // mm/migrate_device.c:377-378, :410
        let d = migrate_vma_collect_pte(&sys(), &present(PageInfo::small()), A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectSmall {
                slots: 1,
                source: TRYLOCK_PAGE
            }
        );
        let mut out = [0u64; 1];
        assert_eq!(d.fill(&mut out, 0x1234), Ok(1));
        assert_eq!(
            out[0],
            (0x1234 << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE
        );
        // mm/migrate_device.c:479-481: a failed trylock leaves the slot 0.
        assert_eq!(
            d.on_failure(Failure::Trylock),
            Some(Decision::Skip { slots: 1 })
        );
        // mm/migrate_device.c:421-427: a failed unmap too.
        assert_eq!(
            d.on_failure(Failure::Unmap),
            Some(Decision::Skip { slots: 1 })
        );
        assert_eq!(d.on_failure(Failure::Split), None);
        assert_eq!(d.on_failure(Failure::PmdMigrationEntry), None);
    }

    #[test]
    fn pte_fault_folio_is_not_trylocked_c410() {
        // mm/migrate_device.c:410 (fault_folio == folio || folio_trylock)
        let mut page = PageInfo::small();
        page.fault_folio = true;
        let e = PteEntry::DevicePrivate {
            page,
            owner_matches: true,
            write: true,
        };
        let d = migrate_vma_collect_pte(&dev_thp(), &e, A, PMD_END).unwrap();
        assert_eq!(
            d,
            Decision::CollectSmall {
                slots: 1,
                source: Source::Page {
                    write: true,
                    lock: LockAction::Held
                }
            }
        );
        assert_eq!(d.on_failure(Failure::Trylock), None);
    }

    // ---- mTHP extension ----

    fn mthp_args(order: u32) -> CollectArgs {
        let mut a = sys();
        a.orders = Orders::NONE.with(order).unwrap();
        a
    }

    #[test]
    fn mthp_accepted_and_aligned_is_collected_whole() {
        let d = migrate_vma_collect_pte(
            &mthp_args(4),
            &present(PageInfo::head(4)),
            A + 16 * PAGE_SIZE,
            PMD_END,
        )
        .unwrap();
        assert_eq!(
            d,
            Decision::CollectWhole {
                order: 4,
                slots: 16,
                source: TRYLOCK_PAGE
            }
        );
        let mut out = [9u64; 16];
        assert_eq!(d.fill(&mut out, 0x80), Ok(16));
        let head = MigratePfn::from_raw(out[0]).unwrap();
        assert_eq!((head.pfn(), head.order()), (Some(0x80), 4));
        assert!(out[1..].iter().all(|&s| s == 0));
        assert_eq!(
            d.on_failure(Failure::Trylock),
            Some(Decision::Skip { slots: 16 })
        );
        assert_eq!(
            d.on_failure(Failure::Unmap),
            Some(Decision::Skip { slots: 16 })
        );
        assert_eq!(d.on_failure(Failure::PmdMigrationEntry), None);
    }

    #[test]
    fn mthp_device_private_accepted_is_collected_whole() {
        let mut a = mthp_args(3);
        a.flags = SelectFlags::DEVICE_PRIVATE;
        let e = PteEntry::DevicePrivate {
            page: PageInfo::head(3),
            owner_matches: true,
            write: false,
        };
        assert!(matches!(
            migrate_vma_collect_pte(&a, &e, A, PMD_END),
            Ok(Decision::CollectWhole {
                order: 3,
                slots: 8,
                ..
            })
        ));
    }

    #[test]
    fn mthp_not_whole_falls_back_to_split() {
        let a = mthp_args(4);
        let at = |page: PageInfo, addr: u64, end: u64| {
            migrate_vma_collect_pte(&a, &present(page), addr, end).unwrap()
        };
        let split = |slots| Decision::SplitFirst {
            lock: LockAction::Lock,
            slots,
        };
        // Order not accepted.
        assert_eq!(at(PageInfo::head(3), A, PMD_END), split(512));
        // Misaligned address.
        assert_eq!(at(PageInfo::head(4), A + PAGE_SIZE, PMD_END), split(511));
        // Not the head page (the folio starts before the range).
        let mut tail = PageInfo::head(4);
        tail.index = 3;
        assert_eq!(at(tail, A, PMD_END), split(512));
        // Runs past the end of the range.
        assert_eq!(at(PageInfo::head(4), A, A + 8 * PAGE_SIZE), split(8));
        // Not mapped whole by the PTEs.
        let mut partial = PageInfo::head(4);
        partial.mapped_whole = false;
        assert_eq!(at(partial, A, PMD_END), split(512));
        // No mapping.
        let mut unmapped = PageInfo::head(4);
        unmapped.has_mapping = false;
        assert_eq!(at(unmapped, A, PMD_END), split(512));
    }

    #[test]
    fn pte_mapped_pmd_order_folio_needs_compound_or_order() {
        // A PMD-order folio mapped by PTEs: 7.3 splits it (:357-376); with
        // COMPOUND accepted it is collected whole.
        assert!(matches!(
            migrate_vma_collect_pte(&sys(), &present(PageInfo::head(9)), A, PMD_END),
            Ok(Decision::SplitFirst { .. })
        ));
        assert!(matches!(
            migrate_vma_collect_pte(&sys_thp(), &present(PageInfo::head(9)), A, PMD_END),
            Ok(Decision::CollectWhole {
                order: 9,
                slots: 512,
                ..
            })
        ));
    }

    #[test]
    fn bad_page_info_is_an_error() {
        let mut page = PageInfo::head(2);
        page.index = 4;
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &present(page), A, PMD_END),
            Err(Error::OutOfRange)
        );
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &present(PageInfo::head(19)), A, PMD_END),
            Err(Error::OrderTooLarge)
        );
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &PteEntry::None, A + PAGE_SIZE, A),
            Err(Error::BadRange)
        );
    }

    #[test]
    fn orders_and_flags() {
        assert_eq!(Orders::from_bits(1 << 19), Err(Error::OrderTooLarge));
        assert_eq!(Orders::NONE.with(19), Err(Error::OrderTooLarge));
        let o = Orders::from_bits(0b1_0000).unwrap();
        assert!(o.contains(4) && !o.contains(5) && !o.contains(40));
        assert_eq!(o.bits(), 16);
        let f = SelectFlags::from_bits(0b1011);
        assert!(f.contains(SelectFlags::SYSTEM | SelectFlags::COMPOUND));
        assert!(!f.contains(SelectFlags::DEVICE_COHERENT));
        assert_eq!(f.bits(), 0b1011);
        let a = args(SelectFlags::SYSTEM);
        assert!(a.accepts(0) && !a.accepts(PMD_ORDER) && !a.accepts(4));
        let mut b = a;
        b.orders = Orders::NONE.with(PMD_ORDER).unwrap();
        assert!(b.accepts(PMD_ORDER));
    }

    #[test]
    fn fill_checks_its_output() {
        let d = Decision::Skip { slots: 4 };
        let mut out = [5u64; 3];
        assert_eq!(d.fill(&mut out, 0), Err(Error::OutOfRange));
        let mut out = [5u64; 6];
        assert_eq!(d.fill(&mut out, 0), Ok(4));
        assert_eq!(out, [0, 0, 0, 0, 5, 5]);
        assert_eq!(Decision::WalkPtes.collected(), 0);
        assert_eq!(Decision::Retry.slots(), None);
    }
}
