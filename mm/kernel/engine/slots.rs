// SPDX-License-Identifier: GPL-2.0

//! The `src` and `dst` arrays of `migrate_vma_*` as the engine reads them.
//!
//! The engine writes slots through [`migrate_core`](crate::migrate_core)
//! (`Decision::fill`, `MigratePfn`); drivers write `dst` slots by hand, with
//! or without an order, so reading is lenient: a slot names a page when it
//! has `MIGRATE_PFN_VALID`, whatever else it carries.

use crate::migrate_core::pfn::{
    MIGRATE_PFN_COMPOUND, MIGRATE_PFN_MIGRATE, MIGRATE_PFN_ORDER_MASK, MIGRATE_PFN_SHIFT,
    MIGRATE_PFN_VALID,
};
use kernel::bindings;

/// `MIGRATE_PFN_MIGRATE`.
pub(crate) const MIGRATE: u64 = MIGRATE_PFN_MIGRATE;
/// `MIGRATE_PFN_COMPOUND`.
pub(crate) const COMPOUND: u64 = MIGRATE_PFN_COMPOUND;
/// The order field.
pub(crate) const ORDER_MASK: u64 = MIGRATE_PFN_ORDER_MASK;

// The arrays are `unsigned long`, read here as `u64`.
const _: () = assert!(core::mem::size_of::<usize>() == core::mem::size_of::<u64>());

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

/// The PFN a slot names, or `None` without `MIGRATE_PFN_VALID`
/// (`migrate_pfn_to_pfn()`).
#[inline]
pub(crate) fn pfn(slot: u64) -> Option<usize> {
    if slot & MIGRATE_PFN_VALID == 0 {
        return None;
    }
    Some(((slot & !MIGRATE_PFN_ORDER_MASK) >> MIGRATE_PFN_SHIFT) as usize)
}

/// The page a slot names, or null (`migrate_pfn_to_page()`).
#[inline]
pub(crate) fn page(slot: u64) -> *mut bindings::page {
    match pfn(slot) {
        // SAFETY: A valid slot names a page with a memmap entry: the engine
        // or the driver put it there.
        Some(pfn) => unsafe { bindings::pfn_to_page(pfn) },
        None => core::ptr::null_mut(),
    }
}

/// The folio of the page a slot names, or null.
#[inline]
pub(crate) fn folio(slot: u64) -> *mut bindings::folio {
    let page = page(slot);
    if page.is_null() {
        return core::ptr::null_mut();
    }
    // SAFETY: `page` is a valid page.
    unsafe { bindings::page_folio(page) }
}

/// The slot of page `pfn` with `flags` (`migrate_pfn(pfn) | flags`).
#[inline]
pub(crate) fn make(pfn: usize, flags: u64) -> u64 {
    ((pfn as u64) << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID | flags
}

/// The slot with its compound bit and order cleared.
#[inline]
pub(crate) fn without_compound(slot: u64) -> u64 {
    slot & !(MIGRATE_PFN_COMPOUND | MIGRATE_PFN_ORDER_MASK)
}

/// The low flag bits of a slot (everything below the PFN).
#[inline]
pub(crate) fn flags(slot: u64) -> u64 {
    slot & ((1 << MIGRATE_PFN_SHIFT) - 1)
}
