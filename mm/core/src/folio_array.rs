// SPDX-License-Identifier: GPL-2.0

//! Folio arrays: `src` and `dst` arrays in which a folio fills only its head
//! slot.
//!
//! Slot `i` of an array stands for page `base + i`, where `base` is the page
//! index of slot 0: `start >> PAGE_SHIFT` for the virtual range of
//! `migrate_vma_setup()`, or the first PFN for `migrate_device_range()`. A
//! folio of order `n` takes the `1 << n` slots from its head on; the head
//! holds its [`MigratePfn`] and the other slots, its tails, are 0. This is
//! how Linux 7.3 already fills the array for a PMD-mapped folio
//! (`migrate_vma_collect_huge_pmd()`, `mm/migrate_device.c:210-223`) and for a
//! large device folio (`migrate_device_range()`, `mm/migrate_device.c:1435-1441`).
//!
//! An array is well formed when, read from slot 0 and jumping `1 << order`
//! slots at each non-zero slot:
//!
//! - every non-zero slot met decodes ([`MigratePfn::from_raw`]);
//! - its page index `base + i` is a multiple of `1 << order` (a folio is
//!   naturally aligned in the range, as it is in physical memory);
//! - its folio ends at or before the end of the array;
//! - its tail slots are 0.
//!
//! [`validate`] checks that and reports the first slot that breaks it.
//! [`FolioArray`] and [`FolioArrayMut`] can only be made from a well-formed
//! array, so their iterators need no error path, and [`FolioArrayMut`]'s
//! changes keep the array well formed.

use super::error::Error;
use super::extent::{Extents, NO_FLAGS};
use super::pfn::{MigratePfn, MIGRATE_PFN_ORDER_MAX};

/// Checks that `slots`, whose slot 0 is page `base`, is a well-formed folio
/// array (see the [module documentation](self)), and reports the first slot
/// that is not.
///
/// The errors are [`Error::BadEntry`], [`Error::HeadMisaligned`] and
/// [`Error::HeadPastEnd`] for a head, and [`Error::TailNotEmpty`] for a tail.
pub fn validate(slots: &[u64], base: u64) -> Result<(), Error> {
    let mut i = 0;
    while i < slots.len() {
        let raw = slots[i];
        if raw == 0 {
            i += 1;
            continue;
        }
        let mpfn = MigratePfn::from_raw(raw).map_err(|_| Error::BadEntry { index: i })?;
        let nr = mpfn.nr_pages();
        if !head_aligned(base, i, nr) {
            return Err(Error::HeadMisaligned { index: i });
        }
        if nr > slots.len() - i {
            return Err(Error::HeadPastEnd { index: i });
        }
        if let Some(tail) = slots[i + 1..i + nr].iter().position(|&s| s != 0) {
            return Err(Error::TailNotEmpty {
                index: i + 1 + tail,
            });
        }
        i += nr;
    }
    Ok(())
}

/// Whether slot `index` of an array based at page `base` may be the head of a
/// folio of `nr` pages.
fn head_aligned(base: u64, index: usize, nr: usize) -> bool {
    // `nr` is a power of two of at most 1 << 18; `usize` and `u64` have the
    // same width on the 64-bit architectures this code is built for.
    (base.wrapping_add(index as u64)) & (nr as u64 - 1) == 0
}

/// The folio that covers slot `index` of a well-formed array, as its head
/// index and value; `None` if the slot is 0 and no folio covers it.
fn head_of(slots: &[u64], base: u64, index: usize) -> Option<(usize, MigratePfn)> {
    let raw = *slots.get(index)?;
    if raw != 0 {
        return Some((index, MigratePfn::from_raw_unchecked(raw)));
    }
    // A folio of order `o` that covers `index` has its head at the page index
    // rounded down to `1 << o`: try each order.
    let page = base.wrapping_add(index as u64);
    for order in 1..=MIGRATE_PFN_ORDER_MAX {
        let back = page & ((1u64 << order) - 1);
        let Ok(back) = usize::try_from(back) else {
            break;
        };
        if back > index {
            break;
        }
        let head = index - back;
        let raw = slots[head];
        if raw != 0 {
            let mpfn = MigratePfn::from_raw_unchecked(raw);
            if head + mpfn.nr_pages() > index {
                return Some((head, mpfn));
            }
        }
    }
    None
}

/// A well-formed folio array, borrowed.
///
/// # Invariants
///
/// `slots`, with slot 0 at page `base`, passes [`validate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FolioArray<'a> {
    slots: &'a [u64],
    base: u64,
}

impl<'a> FolioArray<'a> {
    /// Borrows `slots` as a folio array whose slot 0 is page 0 (or any page
    /// aligned to the PUD order), after checking it with [`validate`].
    pub fn new(slots: &'a [u64]) -> Result<Self, Error> {
        Self::with_base(slots, 0)
    }

    /// Borrows `slots` as a folio array whose slot 0 is page `base`, after
    /// checking it with [`validate`].
    pub fn with_base(slots: &'a [u64], base: u64) -> Result<Self, Error> {
        validate(slots, base)?;
        // INVARIANT: validated just above.
        Ok(Self { slots, base })
    }

    /// The raw slots.
    #[inline]
    pub fn slots(&self) -> &'a [u64] {
        self.slots
    }

    /// The page index of slot 0.
    #[inline]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The number of slots (pages), `npages` in C.
    #[inline]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the array has no slot.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot at `index` if it is the head of a folio (non-zero), else
    /// `None`.
    pub fn get(&self, index: usize) -> Option<MigratePfn> {
        match self.slots.get(index) {
            Some(&raw) if raw != 0 => Some(MigratePfn::from_raw_unchecked(raw)),
            _ => None,
        }
    }

    /// The folio that covers slot `index`, head or tail, as its head index
    /// and value; `None` for a slot that no folio covers.
    pub fn head_of(&self, index: usize) -> Option<(usize, MigratePfn)> {
        head_of(self.slots, self.base, index)
    }

    /// The folios, in order, as `(head index, value)`; the iterator steps over
    /// each folio's tail slots, `1 << order` at a time.
    pub fn iter(&self) -> Folios<'a> {
        Folios {
            slots: self.slots,
            index: 0,
        }
    }

    /// The number of folios (non-zero slots).
    pub fn folio_count(&self) -> usize {
        self.slots.iter().filter(|&&s| s != 0).count()
    }

    /// Runs of physically contiguous valid folios, each with its first slot,
    /// first PFN and page count (see [`Extents`]).
    pub fn extents(&self) -> Extents<'a> {
        Extents::new(self.iter(), NO_FLAGS)
    }

    /// Like [`extents`](Self::extents), but only over folios whose slot has
    /// every flag of `flags` set, for example `MIGRATE_PFN_MIGRATE` for the
    /// `src` folios a driver copies. A folio without them ends a run.
    pub fn extents_with(&self, flags: u64) -> Extents<'a> {
        Extents::new(self.iter(), flags)
    }
}

impl<'a> IntoIterator for FolioArray<'a> {
    type Item = (usize, MigratePfn);
    type IntoIter = Folios<'a>;

    fn into_iter(self) -> Folios<'a> {
        self.iter()
    }
}

impl<'a> IntoIterator for &FolioArray<'a> {
    type Item = (usize, MigratePfn);
    type IntoIter = Folios<'a>;

    fn into_iter(self) -> Folios<'a> {
        self.iter()
    }
}

/// The folios of a [`FolioArray`]: `(head index, value)` for each non-zero
/// slot, stepping `1 << order` slots at a time.
#[derive(Debug, Clone)]
pub struct Folios<'a> {
    /// A well-formed array.
    slots: &'a [u64],
    /// The next slot to look at: never a tail slot.
    index: usize,
}

impl Iterator for Folios<'_> {
    type Item = (usize, MigratePfn);

    fn next(&mut self) -> Option<(usize, MigratePfn)> {
        while self.index < self.slots.len() {
            let index = self.index;
            let raw = self.slots[index];
            if raw == 0 {
                self.index += 1;
                continue;
            }
            let mpfn = MigratePfn::from_raw_unchecked(raw);
            self.index += mpfn.nr_pages();
            return Some((index, mpfn));
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.slots.len() - self.index.min(self.slots.len())))
    }
}

impl core::iter::FusedIterator for Folios<'_> {}

/// A well-formed folio array, borrowed mutably; every change keeps it well
/// formed.
///
/// # Invariants
///
/// `slots`, with slot 0 at page `base`, passes [`validate`].
#[derive(Debug)]
pub struct FolioArrayMut<'a> {
    slots: &'a mut [u64],
    base: u64,
}

impl<'a> FolioArrayMut<'a> {
    /// Borrows `slots` as a folio array whose slot 0 is page 0, after checking
    /// it with [`validate`].
    pub fn new(slots: &'a mut [u64]) -> Result<Self, Error> {
        Self::with_base(slots, 0)
    }

    /// Borrows `slots` as a folio array whose slot 0 is page `base`, after
    /// checking it with [`validate`].
    pub fn with_base(slots: &'a mut [u64], base: u64) -> Result<Self, Error> {
        validate(slots, base)?;
        // INVARIANT: validated just above.
        Ok(Self { slots, base })
    }

    /// Borrows `slots`, all set to 0 first: an empty array (what
    /// `migrate_vma_setup()` does to `src`, `mm/migrate_device.c:763`).
    pub fn zeroed(slots: &'a mut [u64], base: u64) -> Self {
        slots.fill(0);
        // INVARIANT: an array of zeros is well formed.
        Self { slots, base }
    }

    /// A shared view of the array, for reading and iterating.
    pub fn as_array(&self) -> FolioArray<'_> {
        // INVARIANT: `self.slots` is well formed.
        FolioArray {
            slots: self.slots,
            base: self.base,
        }
    }

    /// Stores `mpfn` as the head of a folio at `index`, or, for
    /// [`MigratePfn::EMPTY`], clears the slot.
    ///
    /// The slot must be 0 or a head (replacing a folio by another), must be
    /// aligned to the new folio's size, and every other slot the new folio
    /// covers must be 0.
    pub fn set(&mut self, index: usize, mpfn: MigratePfn) -> Result<(), Error> {
        if index >= self.slots.len() {
            return Err(Error::OutOfRange);
        }
        if let Some((head, _)) = head_of(self.slots, self.base, index) {
            if head != index {
                return Err(Error::Occupied { index });
            }
        }
        let nr = mpfn.nr_pages();
        if !head_aligned(self.base, index, nr) {
            return Err(Error::HeadMisaligned { index });
        }
        if nr > self.slots.len() - index {
            return Err(Error::HeadPastEnd { index });
        }
        if let Some(tail) = self.slots[index + 1..index + nr]
            .iter()
            .position(|&s| s != 0)
        {
            return Err(Error::Occupied {
                index: index + 1 + tail,
            });
        }
        // INVARIANT: aligned, inside the array, over empty slots; the old head
        // at `index`, if any, covered only slots that are now tails or empty.
        self.slots[index] = mpfn.raw();
        Ok(())
    }

    /// Clears the head at `index`, leaving all its slots 0, and returns what
    /// it held. A slot that is 0 stays 0; a tail slot is refused.
    pub fn clear(&mut self, index: usize) -> Result<MigratePfn, Error> {
        match head_of(self.slots, self.base, index) {
            None if index < self.slots.len() => Ok(MigratePfn::EMPTY),
            None => Err(Error::OutOfRange),
            Some((head, _)) if head != index => Err(Error::NotAHead { index }),
            Some((_, mpfn)) => {
                // INVARIANT: an empty slot never breaks an array.
                self.slots[index] = 0;
                Ok(mpfn)
            }
        }
    }

    /// Replaces the head at `index` by `f(head)`, which must keep the order
    /// (to change the order, [`clear`](Self::clear) and [`set`](Self::set)).
    pub fn update(
        &mut self,
        index: usize,
        f: impl FnOnce(MigratePfn) -> MigratePfn,
    ) -> Result<MigratePfn, Error> {
        let old = match self.slots.get(index) {
            None => return Err(Error::OutOfRange),
            Some(0) => return Err(Error::NotAHead { index }),
            Some(&raw) => MigratePfn::from_raw_unchecked(raw),
        };
        let new = f(old);
        if new.is_empty() || new.order() != old.order() {
            return Err(Error::Occupied { index });
        }
        // INVARIANT: same order at the same place, so the same slots.
        self.slots[index] = new.raw();
        Ok(new)
    }

    /// Splits the folio whose head is at `index` into order-0 slots, one per
    /// page, as `migrate_vma_split_unmapped_folio()` does
    /// (`mm/migrate_device.c:930-934`; see [`MigratePfn::subpage`]).
    pub fn split(&mut self, index: usize) -> Result<(), Error> {
        let head = match self.slots.get(index) {
            None => return Err(Error::OutOfRange),
            Some(0) => return Err(Error::NotAHead { index }),
            Some(&raw) => MigratePfn::from_raw_unchecked(raw),
        };
        for (i, slot) in self.slots[index..index + head.nr_pages()]
            .iter_mut()
            .enumerate()
        {
            // INVARIANT: order-0 slots are always aligned and fit.
            *slot = head.subpage(i)?.raw();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(pfn: u64, order: u32) -> u64 {
        MigratePfn::new(pfn, order).unwrap().raw()
    }

    #[test]
    fn empty_and_zero_arrays_are_well_formed() {
        assert_eq!(validate(&[], 0), Ok(()));
        assert_eq!(validate(&[0; 16], 3), Ok(()));
        assert_eq!(FolioArray::new(&[0; 4]).unwrap().iter().count(), 0);
    }

    #[test]
    fn iterates_heads_and_steps_over_tails() {
        let mut s = [0u64; 16];
        s[0] = v(0x100, 2);
        s[4] = v(0x7, 0);
        s[8] = v(0x208, 3);
        let a = FolioArray::new(&s).unwrap();
        let got: std::vec::Vec<_> = a.iter().map(|(i, m)| (i, m.pfn(), m.order())).collect();
        assert_eq!(
            got,
            [(0, Some(0x100), 2), (4, Some(0x7), 0), (8, Some(0x208), 3)]
        );
        assert_eq!(a.folio_count(), 3);
        assert_eq!(a.head_of(2).map(|(h, _)| h), Some(0));
        assert_eq!(a.head_of(5), None);
        assert_eq!(a.head_of(15).map(|(h, _)| h), Some(8));
        assert_eq!(a.head_of(16), None);
        assert_eq!(a.get(1), None);
        assert_eq!((&a).into_iter().count(), 3);
    }

    #[test]
    fn reports_non_zero_tail() {
        let mut s = [0u64; 8];
        s[0] = v(0x100, 2);
        s[3] = v(0x5, 0);
        assert_eq!(validate(&s, 0), Err(Error::TailNotEmpty { index: 3 }));
    }

    #[test]
    fn reports_head_past_end() {
        let mut s = [0u64; 6];
        s[4] = v(0x100, 2);
        assert_eq!(validate(&s, 0), Err(Error::HeadPastEnd { index: 4 }));
    }

    #[test]
    fn reports_misaligned_head() {
        let mut s = [0u64; 8];
        s[2] = v(0x100, 2);
        assert_eq!(validate(&s, 0), Err(Error::HeadMisaligned { index: 2 }));
        // The same slot is aligned when the array starts two pages earlier.
        assert_eq!(validate(&s, 2), Ok(()));
    }

    #[test]
    fn reports_bad_entry_first() {
        let mut s = [0u64; 8];
        s[1] = 1 << 2;
        s[4] = v(0x100, 2);
        s[5] = 1;
        assert_eq!(validate(&s, 0), Err(Error::BadEntry { index: 1 }));
        s[1] = 0;
        assert_eq!(validate(&s, 0), Err(Error::TailNotEmpty { index: 5 }));
    }

    #[test]
    fn set_keeps_the_array_well_formed() {
        let mut s = [0u64; 16];
        let mut a = FolioArrayMut::new(&mut s).unwrap();
        let m8 = MigratePfn::new(0x108, 3).unwrap();
        assert_eq!(a.set(8, m8), Ok(()));
        assert_eq!(
            a.set(12, MigratePfn::new(1, 0).unwrap()),
            Err(Error::Occupied { index: 12 })
        );
        assert_eq!(
            a.set(4, MigratePfn::new(0x100, 3).unwrap()),
            Err(Error::HeadMisaligned { index: 4 })
        );
        assert_eq!(
            a.set(0, MigratePfn::new(0, 4).unwrap()),
            Err(Error::Occupied { index: 8 })
        );
        assert_eq!(a.set(16, MigratePfn::EMPTY), Err(Error::OutOfRange));
        // Replacing a head by a smaller folio.
        assert_eq!(a.set(8, MigratePfn::new(0x108, 1).unwrap()), Ok(()));
        assert_eq!(a.set(12, MigratePfn::new(1, 0).unwrap()), Ok(()));
        assert_eq!(a.clear(9), Err(Error::NotAHead { index: 9 }));
        assert_eq!(a.clear(8).unwrap().pfn(), Some(0x108));
        assert_eq!(a.clear(8), Ok(MigratePfn::EMPTY));
        let mut t = [0u64; 4];
        let mut b = FolioArrayMut::new(&mut t).unwrap();
        assert_eq!(
            b.set(0, MigratePfn::new(0, 3).unwrap()),
            Err(Error::HeadPastEnd { index: 0 })
        );
        assert_eq!(validate(a.as_array().slots(), 0), Ok(()));
    }

    #[test]
    fn update_keeps_the_order() {
        let mut s = [0u64; 4];
        s[0] = v(0x40, 2);
        let mut a = FolioArrayMut::new(&mut s).unwrap();
        let m = a.update(0, MigratePfn::with_migrate).unwrap();
        assert!(m.is_migrate());
        assert_eq!(
            a.update(0, |_| MigratePfn::new(0x40, 1).unwrap()),
            Err(Error::Occupied { index: 0 })
        );
        assert_eq!(a.update(1, |m| m), Err(Error::NotAHead { index: 1 }));
        assert_eq!(a.update(4, |m| m), Err(Error::OutOfRange));
    }

    #[test]
    fn split_writes_one_slot_per_page() {
        // mm/migrate_device.c:930-934 (migrate_vma_split_unmapped_folio)
        let mut s = [0u64; 8];
        s[0] = MigratePfn::new(0x40, 3).unwrap().with_migrate().raw();
        let mut a = FolioArrayMut::new(&mut s).unwrap();
        a.split(0).unwrap();
        assert_eq!(a.split(8), Err(Error::OutOfRange));
        for (i, &raw) in a.as_array().slots().iter().enumerate() {
            let m = MigratePfn::from_raw(raw).unwrap();
            assert_eq!(m.pfn(), Some(0x40 + i as u64));
            assert_eq!(m.order(), 0);
            assert!(m.is_migrate());
        }
    }

    #[test]
    fn zeroed_clears_everything() {
        let mut s = [7u64; 4];
        let a = FolioArrayMut::zeroed(&mut s, 0);
        assert_eq!(a.as_array().iter().count(), 0);
    }

    #[test]
    fn base_offsets_head_lookup() {
        // Slot 0 is page 6: an order-1 head at slot 0 and an order-3 head at slot 2.
        let mut s = [0u64; 10];
        s[0] = v(0x2, 1);
        s[2] = v(0x8, 3);
        let a = FolioArray::with_base(&s, 6).unwrap();
        assert_eq!(a.base(), 6);
        assert_eq!(a.head_of(1).map(|(h, _)| h), Some(0));
        assert_eq!(a.head_of(9).map(|(h, _)| h), Some(2));
        assert_eq!(FolioArray::new(&s), Err(Error::HeadMisaligned { index: 2 }));
    }
}
