// SPDX-License-Identifier: GPL-2.0

//! The device-private CPU fault: the device-private branch of
//! `do_swap_page()` (a PTE) and `do_huge_pmd_device_private()` (a PMD).
//!
//! Under the page-table lock the entry is checked unchanged and the fault
//! folio trylocked and referenced; the lock is dropped and the driver's
//! `migrate_to_ram()` runs with the folio locked, which `migrate_vma_setup()`
//! accepts as its `fault_page`. When the trylock fails the fault sleeps
//! until the folio is unlocked and then returns to refault, at both levels:
//! 7.3 returns at once at PMD level, so N threads faulting one device THP
//! spin on it. Under the per-VMA lock the fault is retried under the mmap
//! lock, as 7.3 does: `migrate_to_ram()` implementations are not ready to
//! run under it.

use crate::engine::counters::{Counter, Stats};
use kernel::bindings;

/// `VM_FAULT_RETRY`.
const VM_FAULT_RETRY: bindings::vm_fault_t = bindings::vm_fault_reason_VM_FAULT_RETRY;

/// Runs `migrate_to_ram()` for the fault folio of `vmf->page`, locked and
/// referenced by the caller.
///
/// # Safety
///
/// `vmf` is the fault; no page-table lock is held.
pub(crate) unsafe fn migrate_to_ram(
    vmf: *mut bindings::vm_fault,
    stats: &mut Stats,
) -> bindings::vm_fault_t {
    stats.inc(Counter::MigrateToRam);
    // SAFETY: The caller guarantees the fault and the folio lock.
    unsafe { bindings::folio_migrate_call_migrate_to_ram(vmf) }
}

/// Sleeps until the folio of `entry` is unlocked; releases `ptl`.
///
/// # Safety
///
/// `ptl` is held and protects the entry that names the folio.
pub(crate) unsafe fn wait_unlocked(
    entry: bindings::softleaf_t,
    ptl: *mut bindings::spinlock_t,
    stats: &mut Stats,
) {
    // SAFETY: Reading the clock is always allowed.
    let t0 = unsafe { bindings::ktime_get() };
    // SAFETY: The caller holds `ptl`, which keeps the folio alive until
    // the waiter is queued; the call releases it.
    unsafe { bindings::softleaf_entry_wait_on_locked(entry, ptl) };
    // SAFETY: As above.
    let waited = unsafe { bindings::ktime_get() } - t0;
    stats.inc(Counter::FaultWaits);
    stats.max(Counter::FaultWaitMaxNs, waited.max(0) as usize);
}

/// The common tail of both faults, entered with the checked entry `entry`
/// of `vmf->page` under `ptl`, and for a PTE with `pte` mapped (null for a
/// PMD): trylock and reference the fault folio, drop the lock, call
/// `migrate_to_ram()` and release the folio; or, when the folio is
/// locked, sleep until it is not and return to refault.
///
/// # Safety
///
/// `ptl` is held over `entry`, which names `vmf->page`; `pte` is null or
/// the mapped PTE under `ptl`. Both are released.
unsafe fn migrate_or_wait(
    vmf: *mut bindings::vm_fault,
    entry: bindings::softleaf_t,
    pte: *mut bindings::pte_t,
    ptl: *mut bindings::spinlock_t,
    stats: &mut Stats,
) -> bindings::vm_fault_t {
    // SAFETY: The caller guarantees the fault, the entry and the locks.
    unsafe {
        let page = (*vmf).page;
        let folio = bindings::page_folio(page);
        if bindings::folio_trylock(folio) {
            // The reference keeps the folio while the PTL is dropped.
            bindings::folio_get(folio);
            if pte.is_null() {
                bindings::spin_unlock(ptl);
            } else {
                bindings::pte_unmap_unlock(pte, ptl);
            }
            let ret = migrate_to_ram(vmf, stats);
            // The driver may have split the folio: the lock and the
            // reference moved with the fault page (migrate_vma_setup()'s
            // rule), so release them on the folio that holds it now.
            let folio = bindings::page_folio(page);
            bindings::folio_unlock(folio);
            bindings::folio_put(folio);
            ret
        } else {
            if !pte.is_null() {
                bindings::pte_unmap(pte);
            }
            wait_unlocked(entry, ptl, stats);
            0
        }
    }
}

/// Answers a fault taken under the per-VMA lock: retry under the mmap lock.
///
/// # Safety
///
/// `vmf` is a fault taken under the VMA lock, which this releases.
unsafe fn retry_locked(
    vmf: *mut bindings::vm_fault,
    stats: &mut Stats,
) -> Option<bindings::vm_fault_t> {
    // SAFETY: The caller passes a valid fault.
    let (flags, vma) = unsafe { ((*vmf).flags, (*vmf).__bindgen_anon_1.vma) };
    if flags & bindings::fault_flag_FAULT_FLAG_VMA_LOCK == 0 {
        return None;
    }
    // SAFETY: The fault holds the VMA read lock.
    unsafe { bindings::vma_end_read(vma) };
    stats.inc(Counter::FaultRetries);
    Some(VM_FAULT_RETRY)
}

/// The start of every device-private fault entry point: counts the fault,
/// answers one taken under the per-VMA lock with a retry, and runs `handle`
/// on the others, which hold the mmap lock.
///
/// # Safety
///
/// `vmf` is a valid fault, under the mmap lock or the VMA lock.
#[inline]
pub(crate) unsafe fn under_mmap_lock(
    vmf: *mut bindings::vm_fault,
    handle: impl FnOnce(&mut Stats) -> bindings::vm_fault_t,
) -> bindings::vm_fault_t {
    let mut stats = Stats::new();
    stats.inc(Counter::Faults);
    // SAFETY: The caller passes a valid fault.
    if let Some(ret) = unsafe { retry_locked(vmf, &mut stats) } {
        return ret;
    }
    handle(&mut stats)
}

/// The device-private branch of `do_swap_page()`.
///
/// # Safety
///
/// As for `do_swap_page()`: `vmf` is a fault on a device-private PTE
/// (`vmf->orig_pte`), the PTE is unmapped, and the mmap or VMA lock is held.
#[no_mangle]
pub unsafe extern "C" fn rust_do_device_private_fault(
    vmf: *mut bindings::vm_fault,
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes a fault on a device-private PTE; `handle`
    // runs under the mmap lock.
    unsafe { under_mmap_lock(vmf, |stats| device_private_fault(vmf, stats)) }
}

/// [`rust_do_device_private_fault`] once the fault is known to hold the
/// mmap lock.
///
/// # Safety
///
/// As for [`rust_do_device_private_fault`], under the mmap lock.
pub(crate) unsafe fn device_private_fault(
    vmf: *mut bindings::vm_fault,
    stats: &mut Stats,
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes a valid fault on a device-private PTE whose
    // PMD stays allocated under the mmap lock.
    unsafe {
        let f = &mut *vmf;
        let vma = f.__bindgen_anon_1.vma;
        let orig = f.__bindgen_anon_2.orig_pte;
        let entry = bindings::softleaf_from_pte(orig);
        f.page = bindings::pfn_to_page(bindings::softleaf_to_pfn(entry));
        f.pte = bindings::pte_offset_map_lock(
            (*vma).vm_mm,
            f.pmd,
            f.__bindgen_anon_1.address,
            &mut f.ptl,
        );
        if f.pte.is_null() {
            return 0;
        }
        if !bindings::pte_same(bindings::ptep_get(f.pte), orig) {
            bindings::pte_unmap_unlock(f.pte, f.ptl);
            return 0;
        }
        migrate_or_wait(vmf, entry, f.pte, f.ptl, stats)
    }
}

/// `do_huge_pmd_device_private()`, which waits on a contended fault folio
/// instead of returning to refault at once.
///
/// # Safety
///
/// As for `do_huge_pmd_device_private()`: `vmf` is a fault on a
/// device-private PMD entry (`vmf->orig_pmd`), and the mmap or VMA lock is
/// held.
#[no_mangle]
pub unsafe extern "C" fn rust_do_huge_pmd_device_private(
    vmf: *mut bindings::vm_fault,
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes a fault on a device-private PMD; `handle`
    // runs under the mmap lock.
    unsafe { under_mmap_lock(vmf, |stats| huge_pmd_device_private(vmf, stats)) }
}

/// [`rust_do_huge_pmd_device_private`] once the fault is known to hold the
/// mmap lock.
///
/// # Safety
///
/// As for [`rust_do_huge_pmd_device_private`], under the mmap lock.
pub(crate) unsafe fn huge_pmd_device_private(
    vmf: *mut bindings::vm_fault,
    stats: &mut Stats,
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes a valid fault on a device-private PMD.
    unsafe {
        let f = &mut *vmf;
        let vma = f.__bindgen_anon_1.vma;
        let ptl = bindings::pmd_lock((*vma).vm_mm, f.pmd);
        let orig = f.__bindgen_anon_2.orig_pmd;
        if !bindings::pmd_same(bindings::pmdp_get(f.pmd), orig) {
            bindings::spin_unlock(ptl);
            return 0;
        }
        let entry = bindings::softleaf_from_pmd(orig);
        f.page = bindings::pfn_to_page(bindings::softleaf_to_pfn(entry));
        f.pte = core::ptr::null_mut();
        migrate_or_wait(vmf, entry, core::ptr::null_mut(), ptl, stats)
    }
}
