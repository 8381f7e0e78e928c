// SPDX-License-Identifier: GPL-2.0

//! The `src` and `dst` arrays of `migrate_vma_*` as the engine reads them.
//!
//! Every read and write goes through [`MigratePfn`], the one codec of
//! migrate PFNs: the engine writes the order of each large folio and sets
//! `MIGRATE_PFN_COMPOUND` exactly for the PMD order, and reads a 7.3
//! driver's COMPOUND slot without an order as the PMD order.
//!
//! The engine's own `src` slots always decode. A `dst` slot is the
//! driver's: one that does not decode (a reserved bit, COMPOUND with
//! another order, a head PFN not aligned to its order) names no
//! destination, so its source stays where it is.

use crate::migrate_core::pfn::{self, MigratePfn};
use kernel::bindings;

// The arrays are `unsigned long`, read here as `u64`.
const _: () = assert!(core::mem::size_of::<usize>() == core::mem::size_of::<u64>());

// The core restates the order field of `include/linux/migrate.h` (the flags
// are checked in `migrate_vma`): keep the two in step.
const _: () = {
    assert!(pfn::MIGRATE_PFN_ORDER_SHIFT == bindings::MIGRATE_PFN_ORDER_SHIFT);
    assert!(pfn::MIGRATE_PFN_ORDER_MASK == bindings::MIGRATE_PFN_ORDER_MASK);
};

/// Borrows `n` slots of a C array.
///
/// # Safety
///
/// `ptr` points at `n` slots that nothing else accesses for `'a`.
#[inline]
pub(crate) unsafe fn slots_mut<'a>(ptr: *mut usize, n: usize) -> &'a mut [u64] {
    if n == 0 {
        return &mut [];
    }
    // SAFETY: The caller guarantees `n` valid, exclusive slots; `usize` and
    // `u64` have the same size and alignment here.
    unsafe { core::slice::from_raw_parts_mut(ptr.cast::<u64>(), n) }
}

/// Decodes a slot; one that does not decode reads as empty.
#[inline]
pub(crate) fn read(raw: u64) -> MigratePfn {
    MigratePfn::from_raw_or_empty(raw)
}

/// The PFN a slot names, or `None` without `MIGRATE_PFN_VALID`
/// (`migrate_pfn_to_pfn()`).
#[inline]
pub(crate) fn pfn(raw: u64) -> Option<usize> {
    // A PFN has at most 50 bits: it fits a 64-bit `usize`.
    read(raw).pfn().map(|pfn| pfn as usize)
}

/// Whether a slot has `MIGRATE_PFN_MIGRATE`.
#[inline]
pub(crate) fn is_migrate(raw: u64) -> bool {
    read(raw).is_migrate()
}

/// Whether a slot heads a folio of the PMD order (`MIGRATE_PFN_COMPOUND`).
#[inline]
pub(crate) fn is_compound(raw: u64) -> bool {
    read(raw).is_compound()
}

/// Clears `MIGRATE_PFN_MIGRATE`: the slot is not migrated.
#[inline]
pub(crate) fn clear_migrate(slot: &mut u64) {
    *slot = read(*slot).without_migrate().raw();
}

/// Sets `MIGRATE_PFN_MIGRATE`.
#[inline]
pub(crate) fn set_migrate(slot: &mut u64) {
    *slot = read(*slot).with_migrate().raw();
}

/// The slot of page `index` of the folio `raw` heads, once that folio is
/// split: order 0, the same flags (`migrate_vma_split_unmapped_folio()`).
#[inline]
pub(crate) fn subpage(raw: u64, index: usize) -> u64 {
    read(raw).subpage(index).unwrap_or(MigratePfn::EMPTY).raw()
}

/// The slot re-encoded as the head of a folio of `order`, or `None` if its
/// PFN is not aligned to that order.
#[inline]
pub(crate) fn with_order(raw: u64, order: u32) -> Option<u64> {
    read(raw).with_order(order).ok().map(MigratePfn::raw)
}

/// The slot of a locked page `pfn` collected for migration: valid and
/// `MIGRATE_PFN_MIGRATE`, order 0; empty if `pfn` does not fit.
#[inline]
pub(crate) fn collected(pfn: usize) -> u64 {
    MigratePfn::new(pfn as u64, 0)
        .map(|m| m.with_migrate().raw())
        .unwrap_or(0)
}

/// The page a slot names, or null (`migrate_pfn_to_page()`).
#[inline]
pub(crate) fn page(raw: u64) -> *mut bindings::page {
    match pfn(raw) {
        // SAFETY: A valid slot names a page with a memmap entry: the engine
        // or the driver put it there.
        Some(pfn) => unsafe { bindings::pfn_to_page(pfn) },
        None => core::ptr::null_mut(),
    }
}

/// The folio of the page a slot names, or null.
#[inline]
pub(crate) fn folio(raw: u64) -> *mut bindings::folio {
    let page = page(raw);
    if page.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `page` is a valid page.
    unsafe { bindings::page_folio(page) }
}
