// SPDX-License-Identifier: GPL-2.0

//! Splitting a large source folio, during collection (it is mapped by PTEs,
//! or the caller did not ask for compound) and after it (the destination is
//! smaller than the source).

use super::slots;
use crate::migrate_core::pfn::PMD_NR;
use kernel::{bindings, error::code::EINVAL, error::Error, mm::virt::VmaRef, prelude::*};

/// `migrate_vma_split_folio()`: splits `folio`, keeping the fault path's
/// lock on whichever folio now holds `fault_page`.
///
/// # Safety
///
/// No page-table lock is held (this sleeps). Unless `folio` holds
/// `fault_page`, the caller holds a reference to `folio`, which this
/// consumes; the folio of a non-null `fault_page` is locked by the fault
/// path.
pub(crate) unsafe fn split_for_migrate(
    folio: *mut bindings::folio,
    fault_page: *mut bindings::page,
) -> Result {
    let folio_of = |page: *mut bindings::page| {
        if page.is_null() {
            core::ptr::null_mut()
        } else {
            // SAFETY: The fault page is valid while the fault path holds it.
            unsafe { bindings::page_folio(page) }
        }
    };
    let fault_folio = folio_of(fault_page);
    if folio != fault_folio {
        // SAFETY: We hold a reference; taking the lock may sleep, which the
        // caller allows.
        unsafe { bindings::folio_lock(folio) };
    }
    // SAFETY: The folio is locked and referenced.
    let ret = unsafe { bindings::split_folio(folio) };
    if ret != 0 {
        if folio != fault_folio {
            // SAFETY: Releases the lock and reference taken for the split.
            unsafe {
                bindings::folio_unlock(folio);
                bindings::folio_put(folio);
            }
        }
        return Err(Error::from_errno(ret));
    }
    // After the split the fault page may be in another, smaller folio: the
    // fault path's lock must end up on that one.
    let new_fault_folio = folio_of(fault_page);
    // SAFETY: `folio` is now the first small folio of the split, still
    // locked and referenced as before; the others were unlocked by the
    // split, so the lock moves by taking the new one.
    unsafe {
        if new_fault_folio.is_null() {
            bindings::folio_unlock(folio);
            bindings::folio_put(folio);
        } else if folio != new_fault_folio {
            if new_fault_folio != fault_folio {
                bindings::folio_get(new_fault_folio);
                bindings::folio_lock(new_fault_folio);
            }
            bindings::folio_unlock(folio);
            bindings::folio_put(folio);
        }
    }
    Ok(())
}

/// `migrate_vma_split_unmapped_folio()`: splits the collected, unmapped
/// PMD-sized `folio` of slot `idx`, mapped at `addr` in `vma`, into pages,
/// and rewrites its slots one per page.
///
/// Unlike 7.3 this also splits the fault folio: `folio_split_unmapped()`
/// allows the caller one reference, and the fault path holds a second one
/// across `migrate_to_ram()`, so a 2 MiB device-private fault whose driver
/// found no 2 MiB page to migrate to could not fall back to 4 KiB pages. The
/// fault path's reference is set aside for the split, the migration's own
/// keeping the folio, and taken again on the folio of `fault_page`, which
/// is the head page (a fault on a PMD names its head page), so it stays
/// with the lock the fault path will release.
///
/// # Safety
///
/// `folio` is the locked source folio of `src[idx]`, collected whole and
/// unmapped by a PMD migration entry at `addr`; the mmap lock is held. A
/// non-null `fault_page` is the migration's fault page, whose folio the
/// fault path holds locked and referenced.
pub(crate) unsafe fn split_unmapped(
    vma: &VmaRef,
    src: &mut [u64],
    idx: usize,
    addr: usize,
    folio: *mut bindings::folio,
    fault_page: *mut bindings::page,
) -> Result {
    if slots::pfn(src[idx]).is_none() || src.len() < idx + PMD_NR {
        return Err(EINVAL);
    }
    // SAFETY: `split_huge_pmd_address()` with `freeze` drops a reference at
    // the end: take it first. The caller guarantees the migration entry.
    unsafe {
        bindings::folio_get(folio);
        bindings::split_huge_pmd_address(vma.as_ptr(), addr, true);
    }
    // The fault path's reference is on `folio` if it heads it.
    let fault_ref = !fault_page.is_null()
        // SAFETY: The caller guarantees a non-null `fault_page`.
        && unsafe { bindings::folio_page(folio, 0) } == fault_page;
    if fault_ref {
        // SAFETY: The migration holds its own reference to the folio.
        unsafe { bindings::folio_put(folio) };
    }
    // SAFETY: The folio is locked, unmapped and referenced.
    let ret = unsafe { bindings::folio_split_unmapped(folio, 0) };
    if fault_ref {
        // SAFETY: `fault_page` heads the folio it now belongs to, which
        // the migration holds.
        unsafe { bindings::folio_get(bindings::page_folio(fault_page)) };
    }
    if ret != 0 {
        return Err(Error::from_errno(ret));
    }
    let head = src[idx];
    for (i, slot) in src[idx..idx + PMD_NR].iter_mut().enumerate() {
        *slot = slots::subpage(head, i);
    }
    Ok(())
}
