// SPDX-License-Identifier: GPL-2.0

//! The error type of the crate.
//!
//! Every error is a caller's mistake or malformed input: a migrate PFN that
//! cannot be encoded, an array that is not a well-formed folio array, an
//! or an address range that a page-table walk cannot produce. In the kernel
//! the caller maps all of them to `-EINVAL`.

use core::fmt;

/// What went wrong.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A PFN is not aligned to the order of its folio: the head of a folio of
    /// order `n` has a PFN that is a multiple of `1 << n`.
    Misaligned,
    /// An order above [`MIGRATE_PFN_ORDER_MAX`](super::pfn::MIGRATE_PFN_ORDER_MAX)
    /// (the PUD order).
    OrderTooLarge,
    /// A PFN above [`MIGRATE_PFN_MAX_PFN`](super::pfn::MIGRATE_PFN_MAX_PFN): it
    /// would reach the order field.
    PfnTooLarge,
    /// A raw migrate PFN has a bit set that no flag or field uses (bit 2, bit 5
    /// or bits 61..=63).
    ReservedBits,
    /// A raw migrate PFN has `MIGRATE_PFN_COMPOUND` together with an order
    /// other than the PMD order, or the PMD order without
    /// `MIGRATE_PFN_COMPOUND`: a Linux 7.3 driver, which reads COMPOUND alone,
    /// would take the folio for another size.
    CompoundOrder,
    /// A raw migrate PFN without `MIGRATE_PFN_VALID` carries a PFN or
    /// `MIGRATE_PFN_WRITE`.
    PfnWithoutValid,
    /// An index or a count is outside the slots or pages it refers to.
    OutOfRange,
    /// The slot at `index` does not decode as a migrate PFN; decoding
    /// `slots[index]` with [`MigratePfn::from_raw`](super::pfn::MigratePfn::from_raw)
    /// tells why.
    BadEntry {
        /// Index of the slot.
        index: usize,
    },
    /// The slot at `index` is a tail slot of a folio whose head comes earlier,
    /// and it is not 0.
    TailNotEmpty {
        /// Index of the slot.
        index: usize,
    },
    /// The folio whose head is at `index` has more pages than the array has
    /// slots from `index` on.
    HeadPastEnd {
        /// Index of the head slot.
        index: usize,
    },
    /// The head at `index` is not at a page index (array base plus `index`)
    /// that is a multiple of its folio's size.
    HeadMisaligned {
        /// Index of the head slot.
        index: usize,
    },
    /// The slot at `index` belongs to another folio, as a head or as a tail.
    Occupied {
        /// Index of the slot.
        index: usize,
    },
    /// The slot at `index` is not the head of a folio.
    NotAHead {
        /// Index of the slot.
        index: usize,
    },
    /// An address range that a page-table walk does not produce: empty, not
    /// page aligned, or crossing a PMD where it must not.
    BadRange,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Misaligned => f.write_str("PFN not aligned to the folio order"),
            Self::OrderTooLarge => f.write_str("folio order above the PUD order"),
            Self::PfnTooLarge => f.write_str("PFN too large for a migrate PFN"),
            Self::ReservedBits => f.write_str("reserved bits set in a migrate PFN"),
            Self::CompoundOrder => f.write_str("COMPOUND bit and order field disagree"),
            Self::PfnWithoutValid => f.write_str("PFN or WRITE without VALID"),
            Self::OutOfRange => f.write_str("index out of range"),
            Self::BadEntry { index } => write!(f, "slot {index}: not a migrate PFN"),
            Self::TailNotEmpty { index } => write!(f, "slot {index}: tail slot not empty"),
            Self::HeadPastEnd { index } => write!(f, "slot {index}: folio runs past the end"),
            Self::HeadMisaligned { index } => write!(f, "slot {index}: head not aligned"),
            Self::Occupied { index } => write!(f, "slot {index}: belongs to another folio"),
            Self::NotAHead { index } => write!(f, "slot {index}: not a folio head"),
            Self::BadRange => f.write_str("address range not produced by a page walk"),
        }
    }
}
