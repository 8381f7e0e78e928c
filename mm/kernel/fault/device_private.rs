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
//! spin on it. A fault under the per-VMA lock calls the driver if its
//! pagemap says `migrate_to_ram()` can run under that lock
//! (`PGMAP_VMA_LOCKED_FAULTS`), which the Rust engine's migration can;
//! otherwise it is retried under the mmap lock, as 7.3 retries them all.

use crate::engine::counters::{Counter, Stats};
use crate::vm_fault::{DeviceFault, FaultFolio, FaultWait, VmFault, VmFaultReason, VM_FAULT_RETRY};
use kernel::{
    bindings,
    time::{Instant, Monotonic},
};

/// Runs `migrate_to_ram()` for the fault folio.
pub(crate) fn migrate_to_ram(folio: &FaultFolio<'_>, stats: &mut Stats) -> VmFaultReason {
    stats.inc(Counter::MigrateToRam);
    folio.migrate_to_ram()
}

/// Sleeps until the contended fault folio is unlocked.
fn wait_unlocked(wait: FaultWait, stats: &mut Stats) {
    let t0 = Instant::<Monotonic>::now();
    wait.wait();
    let waited = t0.elapsed().as_nanos();
    stats.inc(Counter::FaultWaits);
    stats.max(Counter::FaultWaitMaxNs, waited.max(0) as usize);
}

/// The common tail of both faults: calls `migrate_to_ram()` with the fault
/// folio held, or sleeps until it is unlocked and returns to refault.
fn migrate_or_wait(found: DeviceFault<'_>, stats: &mut Stats) -> VmFaultReason {
    match found {
        DeviceFault::Changed => 0,
        // Dropping `folio` releases it on the folio that holds the fault
        // page now: the driver may have split it.
        DeviceFault::Locked(folio) => migrate_to_ram(&folio, stats),
        DeviceFault::Contended(wait) => {
            wait_unlocked(wait, stats);
            0
        }
        DeviceFault::Retry => {
            stats.inc(Counter::FaultRetries);
            VM_FAULT_RETRY
        }
    }
}

/// The start of the device-private fault entry points, of both engines'
/// paths: counts the fault and runs `handle` under whichever lock the
/// fault holds.
///
/// # Safety
///
/// `vmf` is a valid fault on a device-private entry, under the mmap lock
/// or the VMA lock, with no page-table lock held.
#[inline]
pub(crate) unsafe fn under_either_lock(
    vmf: *mut bindings::vm_fault,
    handle: impl FnOnce(&VmFault, &mut Stats) -> VmFaultReason,
) -> VmFaultReason {
    let mut stats = Stats::new();
    stats.inc(Counter::Faults);
    // SAFETY: The caller passes such a fault.
    handle(unsafe { VmFault::from_raw(vmf) }, &mut stats)
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
) -> VmFaultReason {
    // SAFETY: The caller passes a fault on a device-private PTE.
    unsafe { under_either_lock(vmf, device_private_fault) }
}

/// [`rust_do_device_private_fault`] on the borrowed fault, under the
/// mmap lock or the VMA lock.
pub(crate) fn device_private_fault(fault: &VmFault, stats: &mut Stats) -> VmFaultReason {
    migrate_or_wait(fault.lock_device_private_pte(), stats)
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
) -> VmFaultReason {
    // SAFETY: The caller passes a fault on a device-private PMD.
    unsafe { under_either_lock(vmf, huge_pmd_device_private) }
}

/// [`rust_do_huge_pmd_device_private`] on the borrowed fault, under the
/// mmap lock or the VMA lock.
pub(crate) fn huge_pmd_device_private(fault: &VmFault, stats: &mut Stats) -> VmFaultReason {
    migrate_or_wait(fault.lock_device_private_pmd(), stats)
}
