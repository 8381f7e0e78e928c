// SPDX-License-Identifier: GPL-2.0

//! Splitting a large source folio during collection: it is mapped by PTEs,
//! or the caller did not ask for compound. (A folio collected whole whose
//! destination is smaller is split by `SourceSlots::split_pmd`.)

use kernel::{bindings, error::Error, prelude::*};

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
