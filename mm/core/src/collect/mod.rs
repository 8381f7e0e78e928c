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
//! The one extension is mTHP. With no accepted order
//! ([`CollectArgs::orders`] empty, as for a caller without
//! [`MIGRATE_VMA_SELECT_MTHP`]) the answers are exactly 7.3's. When the
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
/// `MIGRATE_VMA_SELECT_MTHP`: collect PTE-mapped large folios of any order
/// whole, each in one head slot that carries its order. New with this
/// series; Linux 7.3 ignores the bit.
pub const MIGRATE_VMA_SELECT_MTHP: u64 = 1 << 4;

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
    /// [`MIGRATE_VMA_SELECT_MTHP`].
    pub const MTHP: Self = Self(MIGRATE_VMA_SELECT_MTHP);

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
    /// Every order of a large folio that PTEs can map, 1 to the PMD order:
    /// what [`MIGRATE_VMA_SELECT_MTHP`] asks for.
    pub const PTE_MAPPED: Self = Self(((1 << (PMD_ORDER + 1)) - 1) & !1);

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
    /// Orders of PTE-mapped large folios the caller accepts whole (the mTHP
    /// extension); a PMD-mapped folio needs `MIGRATE_VMA_SELECT_COMPOUND` or
    /// the PMD order here. Empty for a Linux 7.3 caller, which gets every
    /// PTE-mapped large folio split, even with COMPOUND.
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

    /// The arguments of a caller with `flags`: [`MIGRATE_VMA_SELECT_MTHP`]
    /// accepts every [`Orders::PTE_MAPPED`] order, else none is accepted
    /// besides what COMPOUND selects.
    pub const fn from_flags(flags: SelectFlags, thp_migration: bool, anonymous: bool) -> Self {
        Self {
            flags,
            orders: if flags.contains(SelectFlags::MTHP) {
                Orders::PTE_MAPPED
            } else {
                Orders::NONE
            },
            thp_migration,
            anonymous,
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
    #[inline(always)]
    pub fn fill(&self, out: &mut [u64], pfn: u64) -> Result<usize, Error> {
        // Most decisions collect a page: one slot, none of the checks below.
        if let Self::CollectSmall {
            slots: 1,
            source: Source::Page { write, .. },
        } = *self
        {
            let slot = out.first_mut().ok_or(Error::OutOfRange)?;
            *slot = page_slot(pfn, 0, write)?.raw();
            return Ok(1);
        }
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
        // Tail slots stay 0; a page has none, and no memset() call.
        if let [first, tails @ ..] = out {
            *first = head.raw();
            if !tails.is_empty() {
                tails.fill(0);
            }
        }
        Ok(slots)
    }
}

/// The collected slot of a page or folio.
#[inline]
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

mod hole;
mod pmd;
mod pte;
#[cfg(test)]
mod tests;

pub use hole::{migrate_vma_collect_hole, migrate_vma_collect_skip};
pub use pmd::{migrate_vma_collect_huge_pmd, migrate_vma_collect_pmd, PmdEntry};
pub use pte::{migrate_vma_collect_pte, PageInfo, PageKind, PteEntry};
