// SPDX-License-Identifier: GPL-2.0

//! Migrate PFNs: the slots of the `src` and `dst` arrays of `struct migrate_vma`.
//!
//! C header: `include/linux/migrate.h`.
//!
//! # Bit layout (64-bit `unsigned long`)
//!
//! | bits    | meaning                                       | in Linux 7.3 |
//! |---------|-----------------------------------------------|--------------|
//! | 0       | [`MIGRATE_PFN_VALID`]                         | same         |
//! | 1       | [`MIGRATE_PFN_MIGRATE`]                       | same         |
//! | 2       | reserved, 0                                   | unused       |
//! | 3       | [`MIGRATE_PFN_WRITE`]                         | same         |
//! | 4       | [`MIGRATE_PFN_COMPOUND`]: the order is the PMD order | same |
//! | 5       | reserved, 0                                   | unused       |
//! | 6..=55  | PFN ([`MIGRATE_PFN_SHIFT`])                   | PFN from bit 6 up |
//! | 56..=60 | folio order ([`MIGRATE_PFN_ORDER_SHIFT`])     | PFN          |
//! | 61..=63 | reserved, 0                                   | PFN          |
//!
//! The flags and the PFN are where Linux 7.3 has them. The order field, five
//! bits at `BITS_PER_LONG - 8` in the spirit of `HMM_PFN_ORDER_SHIFT` in
//! `include/linux/hmm.h`, holds the order of the folio whose head slot this
//! is, 0 to the PUD order. A PFN never reaches it: `MAX_PHYSMEM_BITS` is at
//! most 52 on x86-64, so a PFN has at most 40 bits and ends at bit 45 once
//! shifted.
//!
//! The one rule for COMPOUND and the order:
//!
//! - what this crate writes: the order in the order field, and
//!   `MIGRATE_PFN_COMPOUND` set exactly when the order is [`PMD_ORDER`]. A 7.3
//!   driver tests COMPOUND and assumes the PMD order, and that stays true; it
//!   never sees a 64 KiB folio as a 2 MiB one. An order-aware driver reads the
//!   order field alone (`migrate_pfn_order()`);
//! - what it reads besides: `MIGRATE_PFN_COMPOUND` with an empty order field,
//!   what a 7.3 driver or 7.3's own collection writes, is the PMD order;
//! - what it refuses: COMPOUND with any other order, or the PMD order without
//!   COMPOUND, since a 7.3 reader would take either for the other size.
//!
//! Because the order field overlaps what 7.3 reads as the top of the PFN,
//! `migrate_pfn_to_page()` must mask it out before `pfn_to_page()`: the C
//! patch that adds the field does that, with `migrate_pfn_to_pfn()` and
//! `migrate_pfn_order()` reading the field by the rule above. Here
//! [`MigratePfn::pfn`] masks it.
//!
//! The order constants are those of x86-64 with 4 KiB pages.

use super::error::Error;

/// `PAGE_SHIFT`: 4 KiB pages.
pub const PAGE_SHIFT: u32 = 12;
/// `PAGE_SIZE`.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// `HPAGE_PMD_ORDER`: the order of a PMD-mapped folio (2 MiB).
pub const PMD_ORDER: u32 = 9;
/// `HPAGE_PMD_NR`: pages in a PMD-mapped folio.
pub const PMD_NR: usize = 1 << PMD_ORDER;
/// `HPAGE_PMD_SIZE`: bytes mapped by a PMD.
pub const PMD_SIZE: u64 = PAGE_SIZE << PMD_ORDER;
/// `HPAGE_PUD_ORDER`: the order of a PUD-mapped folio (1 GiB).
pub const PUD_ORDER: u32 = 18;

/// `MIGRATE_PFN_VALID`: the slot holds a PFN.
pub const MIGRATE_PFN_VALID: u64 = 1 << 0;
/// `MIGRATE_PFN_MIGRATE`: the slot is (still) being migrated.
pub const MIGRATE_PFN_MIGRATE: u64 = 1 << 1;
/// `MIGRATE_PFN_WRITE`: the page was mapped writable.
pub const MIGRATE_PFN_WRITE: u64 = 1 << 3;
/// `MIGRATE_PFN_COMPOUND`: the slot is the head of a folio of the PMD order.
pub const MIGRATE_PFN_COMPOUND: u64 = 1 << 4;
/// `MIGRATE_PFN_SHIFT`: the PFN starts at this bit.
pub const MIGRATE_PFN_SHIFT: u32 = 6;

/// The order field starts at this bit: `BITS_PER_LONG - 8`.
pub const MIGRATE_PFN_ORDER_SHIFT: u32 = u64::BITS - 8;
/// Width of the order field.
pub const MIGRATE_PFN_ORDER_BITS: u32 = 5;
/// The order field in place.
pub const MIGRATE_PFN_ORDER_MASK: u64 =
    ((1 << MIGRATE_PFN_ORDER_BITS) - 1) << MIGRATE_PFN_ORDER_SHIFT;
/// The largest folio order a migrate PFN describes: the PUD order.
pub const MIGRATE_PFN_ORDER_MAX: u32 = PUD_ORDER;
/// The largest PFN a migrate PFN holds without reaching the order field.
pub const MIGRATE_PFN_MAX_PFN: u64 = (1 << (MIGRATE_PFN_ORDER_SHIFT - MIGRATE_PFN_SHIFT)) - 1;
/// The PFN field in place.
pub const MIGRATE_PFN_PFN_MASK: u64 = MIGRATE_PFN_MAX_PFN << MIGRATE_PFN_SHIFT;
/// Bits that no flag or field uses; they must be 0.
pub const MIGRATE_PFN_RESERVED: u64 = (1 << 2)
    | (1 << 5)
    | !(MIGRATE_PFN_ORDER_MASK | MIGRATE_PFN_PFN_MASK | ((1 << MIGRATE_PFN_SHIFT) - 1));
/// All flags of Linux 7.3.
pub const MIGRATE_PFN_FLAGS: u64 =
    MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE | MIGRATE_PFN_COMPOUND;

/// The order bits of a migrate PFN for `order`, per the one encoding of each
/// order (see the [module documentation](self)).
const fn order_bits(order: u32) -> Result<u64, Error> {
    if order > MIGRATE_PFN_ORDER_MAX {
        Err(Error::OrderTooLarge)
    } else {
        // Lossless widening; `u64::from` is not callable in a `const fn`.
        let field = (order as u64) << MIGRATE_PFN_ORDER_SHIFT;
        if order == PMD_ORDER {
            Ok(field | MIGRATE_PFN_COMPOUND)
        } else {
            Ok(field)
        }
    }
}

/// `1 << order` as a page count.
const fn pages(order: u32) -> u64 {
    1 << order
}

/// One slot of a `src` or `dst` array: flags, a PFN and the order of the folio
/// whose head it is.
///
/// The value 0 ([`MigratePfn::EMPTY`]) is an empty slot: a tail slot of a
/// folio, or a page that is not migrated. A slot without
/// [`MIGRATE_PFN_VALID`] but with [`MIGRATE_PFN_MIGRATE`] is a hole that the
/// driver may populate (what `migrate_vma_collect_hole()` stores).
///
/// # Invariants
///
/// The raw value is the one encoding of its flags, PFN and order described in
/// the [module documentation](self): no reserved bit, an order of at most
/// [`MIGRATE_PFN_ORDER_MAX`], a PFN aligned to the order, and no PFN and no
/// [`MIGRATE_PFN_WRITE`] without [`MIGRATE_PFN_VALID`].
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MigratePfn(u64);

impl MigratePfn {
    /// The empty slot, 0.
    pub const EMPTY: Self = Self(0);

    /// A valid slot for the folio of `order` whose head page is `pfn`, with
    /// no other flag: what `migrate_pfn(pfn)` makes, plus the order.
    ///
    /// Fails if `order` is above the PUD order, if `pfn` does not fit, or if
    /// `pfn` is not a multiple of `1 << order`.
    pub const fn new(pfn: u64, order: u32) -> Result<Self, Error> {
        let order_bits = match order_bits(order) {
            Ok(bits) => bits,
            Err(e) => return Err(e),
        };
        if pfn > MIGRATE_PFN_MAX_PFN {
            return Err(Error::PfnTooLarge);
        }
        if pfn & (pages(order) - 1) != 0 {
            return Err(Error::Misaligned);
        }
        // INVARIANT: flags, PFN and order checked above.
        Ok(Self(
            (pfn << MIGRATE_PFN_SHIFT) | order_bits | MIGRATE_PFN_VALID,
        ))
    }

    /// A hole of `order`: [`MIGRATE_PFN_MIGRATE`] without a PFN, which the
    /// driver may populate with a new folio of that order.
    ///
    /// For order 0 and the PMD order this is what `migrate_vma_collect_hole()`
    /// stores for an unpopulated page (`MIGRATE_PFN_MIGRATE`) or PMD
    /// (`MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND`), with the order field
    /// filled.
    pub const fn hole(order: u32) -> Result<Self, Error> {
        match order_bits(order) {
            // INVARIANT: no PFN, no WRITE, a valid order.
            Ok(bits) => Ok(Self(bits | MIGRATE_PFN_MIGRATE)),
            Err(e) => Err(e),
        }
    }

    /// Decodes a raw slot value, checking every rule of the encoding.
    ///
    /// 0 decodes as [`MigratePfn::EMPTY`]. A value with
    /// [`MIGRATE_PFN_COMPOUND`] and an empty order field decodes as a folio of
    /// [`PMD_ORDER`], as Linux 7.3 means it; the value is kept as it is.
    #[inline]
    pub const fn from_raw(raw: u64) -> Result<Self, Error> {
        // A single page or an empty slot, which every phase decodes for
        // each 4 KiB page: no order to check, and any PFN is aligned.
        if raw & (MIGRATE_PFN_RESERVED | MIGRATE_PFN_COMPOUND | MIGRATE_PFN_ORDER_MASK) == 0
            && (raw & MIGRATE_PFN_VALID != 0
                || raw & (MIGRATE_PFN_PFN_MASK | MIGRATE_PFN_WRITE) == 0)
        {
            // INVARIANT: every rule of the encoding holds for such a value.
            return Ok(Self(raw));
        }
        Self::from_raw_any(raw)
    }

    /// [`MigratePfn::from_raw`] for any value, one rule after the other.
    const fn from_raw_any(raw: u64) -> Result<Self, Error> {
        if raw & MIGRATE_PFN_RESERVED != 0 {
            return Err(Error::ReservedBits);
        }
        let field = ((raw & MIGRATE_PFN_ORDER_MASK) >> MIGRATE_PFN_ORDER_SHIFT) as u32;
        let order = if raw & MIGRATE_PFN_COMPOUND != 0 {
            if field != 0 && field != PMD_ORDER {
                return Err(Error::CompoundOrder);
            }
            PMD_ORDER
        } else if field == PMD_ORDER {
            return Err(Error::CompoundOrder);
        } else if field > MIGRATE_PFN_ORDER_MAX {
            return Err(Error::OrderTooLarge);
        } else {
            field
        };
        let pfn = (raw & MIGRATE_PFN_PFN_MASK) >> MIGRATE_PFN_SHIFT;
        if raw & MIGRATE_PFN_VALID == 0 {
            if pfn != 0 || raw & MIGRATE_PFN_WRITE != 0 {
                return Err(Error::PfnWithoutValid);
            }
        } else if pfn & (pages(order) - 1) != 0 {
            return Err(Error::Misaligned);
        }
        // INVARIANT: every rule of the encoding checked above.
        Ok(Self(raw))
    }

    /// Decodes a raw slot that a driver may have written, such as a `dst`
    /// slot: one that does not decode names nothing and reads as
    /// [`MigratePfn::EMPTY`], so that its source is left where it is.
    #[inline]
    pub const fn from_raw_or_empty(raw: u64) -> Self {
        match Self::from_raw(raw) {
            Ok(m) => m,
            Err(_) => Self::EMPTY,
        }
    }

    /// The PFN a raw slot hands over, whether or not the slot decodes:
    /// `migrate_pfn_to_pfn()` of a slot with [`MIGRATE_PFN_VALID`]. A driver
    /// locks and references the folio of that page before it writes a `dst`
    /// slot, so a slot refused for a bad order or alignment still names what
    /// the migration must give back; a `src` slot holds its folio whatever
    /// flags a driver cleared in it.
    #[inline]
    pub const fn handed_over_pfn(raw: u64) -> Option<u64> {
        if raw & MIGRATE_PFN_VALID == 0 {
            None
        } else {
            Some((raw & MIGRATE_PFN_PFN_MASK) >> MIGRATE_PFN_SHIFT)
        }
    }

    /// Whether a raw slot has [`MIGRATE_PFN_MIGRATE`], whether or not it
    /// decodes: what a driver left of the flag in a `src` slot, read as
    /// 7.3 reads it.
    #[inline]
    pub const fn handed_over_migrate(raw: u64) -> bool {
        raw & MIGRATE_PFN_MIGRATE != 0
    }

    /// Wraps a raw value that is known to decode, such as a slot of an array
    /// that was validated when it was borrowed.
    pub(super) const fn from_raw_unchecked(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw slot value, to store in a `src` or `dst` array.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// Whether this is the empty slot, 0.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether [`MIGRATE_PFN_VALID`] is set: the slot holds a PFN.
    #[inline]
    pub const fn is_valid(self) -> bool {
        self.0 & MIGRATE_PFN_VALID != 0
    }

    /// Whether [`MIGRATE_PFN_MIGRATE`] is set.
    #[inline]
    pub const fn is_migrate(self) -> bool {
        self.0 & MIGRATE_PFN_MIGRATE != 0
    }

    /// Whether [`MIGRATE_PFN_WRITE`] is set.
    #[inline]
    pub const fn is_write(self) -> bool {
        self.0 & MIGRATE_PFN_WRITE != 0
    }

    /// Whether [`MIGRATE_PFN_COMPOUND`] is set, that is whether the order is
    /// [`PMD_ORDER`].
    #[inline]
    pub const fn is_compound(self) -> bool {
        self.0 & MIGRATE_PFN_COMPOUND != 0
    }

    /// The flags of Linux 7.3 ([`MIGRATE_PFN_FLAGS`]) that are set.
    #[inline]
    pub const fn flags(self) -> u64 {
        self.0 & MIGRATE_PFN_FLAGS
    }

    /// The PFN of the head page, with the order field masked out, or `None`
    /// without [`MIGRATE_PFN_VALID`] (where `migrate_pfn_to_page()` returns
    /// `NULL`).
    #[inline]
    pub const fn pfn(self) -> Option<u64> {
        if self.is_valid() {
            Some((self.0 & MIGRATE_PFN_PFN_MASK) >> MIGRATE_PFN_SHIFT)
        } else {
            None
        }
    }

    /// The order of the folio: 0 for a single page.
    #[inline]
    pub const fn order(self) -> u32 {
        // The invariant leaves COMPOUND with the PMD order or an empty field.
        if self.is_compound() {
            PMD_ORDER
        } else {
            ((self.0 & MIGRATE_PFN_ORDER_MASK) >> MIGRATE_PFN_ORDER_SHIFT) as u32
        }
    }

    /// The number of pages, and so of array slots, the folio covers:
    /// `1 << order`.
    #[inline]
    pub const fn nr_pages(self) -> usize {
        1 << self.order()
    }

    /// The same slot with [`MIGRATE_PFN_MIGRATE`] set.
    #[inline]
    pub const fn with_migrate(self) -> Self {
        // INVARIANT: MIGRATE is allowed with or without VALID.
        Self(self.0 | MIGRATE_PFN_MIGRATE)
    }

    /// The same slot with [`MIGRATE_PFN_MIGRATE`] clear, as the engine leaves
    /// a slot it did not migrate.
    #[inline]
    pub const fn without_migrate(self) -> Self {
        // INVARIANT: clearing a flag keeps every rule.
        Self(self.0 & !MIGRATE_PFN_MIGRATE)
    }

    /// The same slot with [`MIGRATE_PFN_WRITE`] set; fails without
    /// [`MIGRATE_PFN_VALID`].
    #[inline]
    pub const fn with_write(self) -> Result<Self, Error> {
        if self.is_valid() {
            // INVARIANT: WRITE is allowed with VALID.
            Ok(Self(self.0 | MIGRATE_PFN_WRITE))
        } else {
            Err(Error::PfnWithoutValid)
        }
    }

    /// The same slot with [`MIGRATE_PFN_WRITE`] clear.
    #[inline]
    pub const fn without_write(self) -> Self {
        // INVARIANT: clearing a flag keeps every rule.
        Self(self.0 & !MIGRATE_PFN_WRITE)
    }

    /// The same slot as the head of a folio of `order`: flags and PFN kept,
    /// the order field and [`MIGRATE_PFN_COMPOUND`] set by the one rule.
    ///
    /// Fails if `order` is above the PUD order or the PFN is not a multiple
    /// of `1 << order`.
    pub const fn with_order(self, order: u32) -> Result<Self, Error> {
        let bits = match order_bits(order) {
            Ok(bits) => bits,
            Err(e) => return Err(e),
        };
        let pfn = (self.0 & MIGRATE_PFN_PFN_MASK) >> MIGRATE_PFN_SHIFT;
        if pfn & (pages(order) - 1) != 0 {
            return Err(Error::Misaligned);
        }
        // INVARIANT: the order's one encoding, an aligned PFN, flags kept.
        Ok(Self(
            (self.0 & !(MIGRATE_PFN_ORDER_MASK | MIGRATE_PFN_COMPOUND)) | bits,
        ))
    }

    /// The order-0 slot for page `index` of this folio once it is split: the
    /// same flags, the PFN advanced by `index`, no order.
    ///
    /// This is what `migrate_vma_split_unmapped_folio()` writes into the tail
    /// slots (`mm/migrate_device.c:930-934`). For a hole, each page is a hole.
    /// Fails if `index` is not below [`nr_pages`](Self::nr_pages).
    pub const fn subpage(self, index: usize) -> Result<Self, Error> {
        if index >= self.nr_pages() {
            return Err(Error::OutOfRange);
        }
        let flags = self.0 & (MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE);
        let pfn = (self.0 & MIGRATE_PFN_PFN_MASK) >> MIGRATE_PFN_SHIFT;
        let pfn = if self.is_valid() {
            // `index` < 1 << 18, so it widens losslessly and the sum stays
            // inside the folio, below the maximum PFN.
            pfn + index as u64
        } else {
            0
        };
        // INVARIANT: order 0, a PFN only with VALID, no reserved bit.
        Ok(Self((pfn << MIGRATE_PFN_SHIFT) | flags))
    }
}

impl TryFrom<u64> for MigratePfn {
    type Error = Error;

    fn try_from(raw: u64) -> Result<Self, Error> {
        Self::from_raw(raw)
    }
}

impl From<MigratePfn> for u64 {
    fn from(mpfn: MigratePfn) -> u64 {
        mpfn.raw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_bits_unchanged() {
        // include/linux/migrate.h:138-142
        assert_eq!(MIGRATE_PFN_VALID, 1);
        assert_eq!(MIGRATE_PFN_MIGRATE, 2);
        assert_eq!(MIGRATE_PFN_WRITE, 8);
        assert_eq!(MIGRATE_PFN_COMPOUND, 16);
        assert_eq!(MIGRATE_PFN_SHIFT, 6);
        assert_eq!(MIGRATE_PFN_ORDER_SHIFT, 56);
        assert_eq!(MIGRATE_PFN_ORDER_MASK, 0x1f << 56);
        assert_eq!(MIGRATE_PFN_MAX_PFN, (1 << 50) - 1);
        assert_eq!(MIGRATE_PFN_RESERVED, 0xe000_0000_0000_0024);
        // Every bit is exactly one of: flag, reserved, PFN, order.
        assert_eq!(
            MIGRATE_PFN_FLAGS
                ^ MIGRATE_PFN_RESERVED
                ^ MIGRATE_PFN_PFN_MASK
                ^ MIGRATE_PFN_ORDER_MASK,
            u64::MAX
        );
    }

    #[test]
    fn order0_is_migrate_pfn_of_7_3() {
        // include/linux/migrate.h:151-154 (migrate_pfn)
        let m = MigratePfn::new(0x1234, 0).unwrap();
        assert_eq!(m.raw(), (0x1234 << 6) | 1);
        assert_eq!(m.pfn(), Some(0x1234));
        assert_eq!(m.order(), 0);
        assert_eq!(m.nr_pages(), 1);
    }

    #[test]
    fn pmd_order_is_compound_of_7_3() {
        // mm/migrate_device.c:210-212 (migrate_vma_collect_huge_pmd)
        let m = MigratePfn::new(0x200, PMD_ORDER).unwrap().with_migrate();
        assert_eq!(
            m.raw(),
            (0x200 << 6)
                | (9 << 56)
                | MIGRATE_PFN_VALID
                | MIGRATE_PFN_MIGRATE
                | MIGRATE_PFN_COMPOUND
        );
        assert!(m.is_compound());
        assert_eq!(m.nr_pages(), PMD_NR);
    }

    #[test]
    fn upstream_compound_without_order_decodes_as_pmd() {
        // What a 7.3 driver writes for a 2 MiB destination, and what 7.3's
        // migrate_vma_nr_pages() reads as HPAGE_PMD_NR pages.
        let raw = (0x400 << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_COMPOUND;
        let m = MigratePfn::from_raw(raw).unwrap();
        assert_eq!(m.order(), PMD_ORDER);
        assert_eq!(m.pfn(), Some(0x400));
        assert_eq!(m.raw(), raw);
    }

    #[test]
    fn mthp_order_in_field() {
        let m = MigratePfn::new(0x40, 4).unwrap();
        assert_eq!(m.raw(), (0x40 << 6) | (4 << 56) | 1);
        assert!(!m.is_compound());
        assert_eq!(m.order(), 4);
        assert_eq!(m.pfn(), Some(0x40));
        let pud = MigratePfn::new(1 << 18, PUD_ORDER).unwrap();
        assert_eq!(pud.order(), PUD_ORDER);
        assert_eq!(pud.nr_pages(), 1 << 18);
    }

    #[test]
    fn misaligned_pfn_is_an_error() {
        assert_eq!(MigratePfn::new(0x201, PMD_ORDER), Err(Error::Misaligned));
        assert_eq!(MigratePfn::new(0x8, 4), Err(Error::Misaligned));
        assert!(MigratePfn::new(0x10, 4).is_ok());
    }

    #[test]
    fn a_refused_slot_still_names_its_page() {
        let head = MigratePfn::new(0x200, 4).unwrap().raw();
        assert_eq!(MigratePfn::handed_over_pfn(head), Some(0x200));
        // The second page of an order-4 folio, with the order: misaligned.
        let bad = head + (1 << MIGRATE_PFN_SHIFT);
        assert_eq!(MigratePfn::from_raw(bad), Err(Error::Misaligned));
        assert_eq!(MigratePfn::from_raw_or_empty(bad), MigratePfn::EMPTY);
        assert_eq!(MigratePfn::handed_over_pfn(bad), Some(0x201));
        assert_eq!(
            MigratePfn::handed_over_pfn(MigratePfn::hole(4).unwrap().raw()),
            None
        );
        assert_eq!(MigratePfn::handed_over_pfn(0), None);
        assert!(MigratePfn::handed_over_migrate(bad | MIGRATE_PFN_MIGRATE));
        assert!(!MigratePfn::handed_over_migrate(head));
    }

    #[test]
    fn order_above_pud_is_an_error() {
        assert_eq!(MigratePfn::new(0, PUD_ORDER + 1), Err(Error::OrderTooLarge));
        assert_eq!(MigratePfn::hole(31), Err(Error::OrderTooLarge));
        // An order field of 19..=31 in a raw value.
        assert_eq!(
            MigratePfn::from_raw((19 << 56) | 1),
            Err(Error::OrderTooLarge)
        );
    }

    #[test]
    fn pfn_too_large_is_an_error() {
        assert_eq!(
            MigratePfn::new(MIGRATE_PFN_MAX_PFN + 1, 0),
            Err(Error::PfnTooLarge)
        );
        let m = MigratePfn::new(MIGRATE_PFN_MAX_PFN, 0).unwrap();
        assert_eq!(m.pfn(), Some(MIGRATE_PFN_MAX_PFN));
        assert_eq!(m.order(), 0);
    }

    #[test]
    fn raw_decoding_errors() {
        assert_eq!(MigratePfn::from_raw(1 << 2), Err(Error::ReservedBits));
        assert_eq!(MigratePfn::from_raw(1 << 5), Err(Error::ReservedBits));
        assert_eq!(MigratePfn::from_raw(1 << 63), Err(Error::ReservedBits));
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_COMPOUND | (4 << 56)),
            Err(Error::CompoundOrder)
        );
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_VALID | (9 << 56)),
            Err(Error::CompoundOrder)
        );
        // The one encoding of the PMD order decodes to itself.
        let pmd = MigratePfn::new(0x600, PMD_ORDER).unwrap();
        assert_eq!(MigratePfn::from_raw(pmd.raw()), Ok(pmd));
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_MIGRATE | (5 << 6)),
            Err(Error::PfnWithoutValid)
        );
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE),
            Err(Error::PfnWithoutValid)
        );
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_VALID | (3 << 6) | (2 << 56)),
            Err(Error::Misaligned)
        );
        assert_eq!(u64::from(MigratePfn::try_from(0).unwrap()), 0);
        // A slot that does not decode names nothing.
        assert_eq!(MigratePfn::from_raw_or_empty(1 << 63), MigratePfn::EMPTY);
        let pmd = MigratePfn::new(0x600, PMD_ORDER).unwrap();
        assert_eq!(MigratePfn::from_raw_or_empty(pmd.raw()), pmd);
    }

    #[test]
    fn holes_are_what_collect_hole_stores() {
        // migrate_vma_collect_hole(), one page.
        assert_eq!(MigratePfn::hole(0).unwrap().raw(), MIGRATE_PFN_MIGRATE);
        // migrate_vma_collect_hole(), one PMD: 7.3's bits plus the order.
        assert_eq!(
            MigratePfn::hole(PMD_ORDER).unwrap().raw(),
            MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND | (9 << 56)
        );
        let h = MigratePfn::hole(3).unwrap();
        assert_eq!(h.pfn(), None);
        assert_eq!(h.order(), 3);
        assert_eq!(h.with_write(), Err(Error::PfnWithoutValid));
    }

    #[test]
    fn flag_helpers() {
        let m = MigratePfn::new(0x20, 5).unwrap();
        let w = m.with_migrate().with_write().unwrap();
        assert!(w.is_migrate() && w.is_write() && w.is_valid());
        assert_eq!(
            w.flags(),
            MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE
        );
        assert_eq!(w.without_migrate().without_write(), m);
        assert!(MigratePfn::EMPTY.is_empty());
        assert_eq!(MigratePfn::EMPTY.pfn(), None);
    }

    #[test]
    fn with_order_reencodes_the_head() {
        let m = MigratePfn::new(0x400, 0).unwrap().with_migrate();
        let pmd = m.with_order(PMD_ORDER).unwrap();
        assert_eq!(
            pmd,
            MigratePfn::new(0x400, PMD_ORDER).unwrap().with_migrate()
        );
        let mthp = pmd.with_order(4).unwrap();
        assert!(!mthp.is_compound());
        assert_eq!(mthp.order(), 4);
        assert_eq!(mthp.with_order(0).unwrap(), m);
        assert_eq!(
            MigratePfn::new(0x410, 0).unwrap().with_order(PMD_ORDER),
            Err(Error::Misaligned)
        );
        assert_eq!(m.with_order(PUD_ORDER + 1), Err(Error::OrderTooLarge));
        let hole = MigratePfn::hole(0).unwrap().with_order(PMD_ORDER).unwrap();
        assert_eq!(hole, MigratePfn::hole(PMD_ORDER).unwrap());
    }

    #[test]
    fn subpages_match_split_unmapped_folio() {
        // mm/migrate_device.c:930-934 (migrate_vma_split_unmapped_folio)
        let head = MigratePfn::new(0x400, PMD_ORDER)
            .unwrap()
            .with_migrate()
            .with_write()
            .unwrap();
        let flags = head.raw() & !MIGRATE_PFN_COMPOUND & ((1 << MIGRATE_PFN_SHIFT) - 1);
        for i in [0usize, 1, 255, 511] {
            let expect = ((0x400 + i as u64) << MIGRATE_PFN_SHIFT) | flags;
            assert_eq!(head.subpage(i).unwrap().raw(), expect);
        }
        assert_eq!(head.subpage(512), Err(Error::OutOfRange));
        // mm/migrate_device.c:1154-1166: a split hole is a hole per page.
        let hole = MigratePfn::hole(PMD_ORDER).unwrap();
        assert_eq!(hole.subpage(7).unwrap(), MigratePfn::hole(0).unwrap());
    }

    #[test]
    fn single_page_shortcut_decodes_as_every_rule_does() {
        // Every combination of the flag and reserved bits and of the order
        // field, over PFNs that are and are not aligned to the order.
        let pfns = [0u64, 1, 0x1ff, 0x200, 0x12345, MIGRATE_PFN_MAX_PFN];
        for low in 0..1u64 << MIGRATE_PFN_SHIFT {
            for high in 0..1u64 << (u64::BITS - MIGRATE_PFN_ORDER_SHIFT) {
                for &pfn in &pfns {
                    let raw = low | (pfn << MIGRATE_PFN_SHIFT) | (high << MIGRATE_PFN_ORDER_SHIFT);
                    assert_eq!(
                        MigratePfn::from_raw(raw),
                        MigratePfn::from_raw_any(raw),
                        "{raw:#x}"
                    );
                }
            }
        }
    }
}
