// SPDX-License-Identifier: GPL-2.0

//! Engine "rust-entry": Alistair Popple's alternative for the
//! device-private CPU fault, from the seed 003 thread.
//!
//! Once its trylock succeeds, the fault path holds the page-table lock and
//! the fault folio's lock: all that `migrate_vma_collect_pmd()` holds when it
//! installs a migration entry. So it installs one itself, in place of the
//! device-private entry, before it calls `migrate_to_ram()`. Collection then
//! takes the entry as a page already unmapped (`Collector::is_fault_entry`),
//! and other CPUs faulting on the page meet a migration entry and sleep in
//! `migration_entry_wait()`, as for any migration, without reaching the
//! driver. If the driver left the entry in place, the fault path puts the
//! device-private entry back afterwards.
//!
//! The early entry is used for a small folio under a PTE and a PMD-order
//! folio under a PMD. A fault under the per-VMA lock installs it only for
//! a pagemap whose driver may be called under that lock
//! (`PGMAP_VMA_LOCKED_FAULTS`); the others go the usual way, which retries
//! them under the mmap lock. A PTE of a large folio takes the [`crate::fault`]
//! path: collection has to split that folio first, which needs it mapped.

use crate::collection::{CollectedFolio, PteMigration};
use crate::engine::counters::{Counter, Stats};
use crate::fault::{
    device_private_fault, huge_pmd_device_private, migrate_to_ram, under_either_lock,
};
use crate::migration::FaultPage;
use crate::page_table::{PmdEntry, PmdGuard, PteEntry, PteRun, PAGE_SIZE, PMD_ORDER};
use crate::vm_fault::{FaultFolio, VmFault, VmFaultReason};
use kernel::bindings;

/// Replaces the device-private PTE of the fault by a migration entry, with
/// the fault folio locked; returns the fault folio, or `None` with nothing
/// changed when the entry changed, the folio is large, contended or pinned.
fn install_pte_entry<'a>(fault: &'a VmFault, stats: &mut Stats) -> Option<FaultFolio<'a>> {
    let addr = fault.address();
    let mut run = PteRun::lock(fault.vma(), addr, addr + PAGE_SIZE)?;
    let (entry, named) = run.read_page(addr)?;
    let (PteEntry::DevicePrivate { .. }, Some((snap, page))) = (entry, named) else {
        return None;
    };
    if !snap.value().same(&fault.orig_pte()) || page.folio().order() != 0 {
        return None;
    }
    // Under the VMA lock, only a pagemap that allows it: the usual path
    // then answers with a retry under the mmap lock.
    if !fault.may_call_driver(page.folio()) {
        return None;
    }
    // The fault path's own lock and reference, not a migration's.
    let PteMigration::Installed { folio, .. } = run.migrate_page(&snap, &FaultPage::NONE) else {
        return None;
    };
    drop(run);
    stats.inc(Counter::FaultEntries);
    Some(fault.hold(folio))
}

/// The PMD version of [`install_pte_entry`] for a PMD-order device folio.
fn install_pmd_entry<'a>(fault: &'a VmFault, stats: &mut Stats) -> Option<FaultFolio<'a>> {
    let mut pmd = PmdGuard::lock(fault.vma(), fault.address())?;
    if !matches!(pmd.entry(), PmdEntry::DevicePrivate { .. }) || !fault.pmd_unchanged(&pmd) {
        return None;
    }
    let folio = pmd.mapped_folio()?;
    if folio.order() != PMD_ORDER || !fault.may_call_driver(folio) {
        return None;
    }
    let folio = CollectedFolio::trylock(folio, &FaultPage::NONE)?;
    pmd.migrate_folio(&folio).ok()?;
    drop(pmd);
    stats.inc(Counter::FaultEntries);
    Some(fault.hold(folio))
}

/// After `migrate_to_ram()`: puts the device-private entry back if the
/// driver left the early migration entry at the fault address (at PMD
/// level if `huge`); dropping `folio` then releases the fault folio.
fn finish(fault: &VmFault, folio: FaultFolio<'_>, huge: bool, stats: &mut Stats) {
    let held = folio.fault_page();
    let Some(pfn) = held.page().map(|p| p.pfn()) else {
        return;
    };
    let (vma, addr) = (fault.vma(), fault.address());
    // The folio stayed locked, so a migration entry for it can only be the
    // one installed above.
    let left = if huge {
        PmdGuard::lock(vma, addr)
            .is_some_and(|g| matches!(g.entry(), PmdEntry::Migration { pfn: p, .. } if p == pfn))
    } else {
        PteRun::lock(vma, addr, addr + PAGE_SIZE).is_some_and(
            |r| matches!(r.entry(addr), Some(PteEntry::Migration { pfn: p, .. }) if p == pfn),
        )
    };
    if left {
        held.remove_migration_entries();
        stats.inc(Counter::FaultEntriesRestored);
    }
}

/// The device-private branch of `do_swap_page()` under engine "rust-entry".
///
/// # Safety
///
/// As for `do_swap_page()`: `vmf` is a fault on a device-private PTE
/// (`vmf->orig_pte`), the PTE is unmapped, and the mmap or VMA lock is held.
#[no_mangle]
pub unsafe extern "C" fn rust_do_device_private_fault_entry(
    vmf: *mut bindings::vm_fault,
) -> VmFaultReason {
    // SAFETY: The caller passes a fault on a device-private PTE.
    unsafe { under_either_lock(vmf, |fault, stats| fault_with_entry(fault, false, stats)) }
}

/// `do_huge_pmd_device_private()` under engine "rust-entry".
///
/// # Safety
///
/// As for `do_huge_pmd_device_private()`: `vmf` is a fault on a
/// device-private PMD entry (`vmf->orig_pmd`), and the mmap or VMA lock is
/// held.
#[no_mangle]
pub unsafe extern "C" fn rust_do_huge_pmd_device_private_entry(
    vmf: *mut bindings::vm_fault,
) -> VmFaultReason {
    // SAFETY: The caller passes a fault on a device-private PMD.
    unsafe { under_either_lock(vmf, |fault, stats| fault_with_entry(fault, true, stats)) }
}

/// A device-private fault, on a PMD when `pmd`, with the early entry: the
/// fault path installs it and calls `migrate_to_ram()`. Falls back to the
/// usual path when the entry changed, or the folio is large, contended or
/// pinned; that path rechecks the entry and waits on a contended folio.
fn fault_with_entry(fault: &VmFault, pmd: bool, stats: &mut Stats) -> VmFaultReason {
    let installed = if pmd {
        install_pmd_entry(fault, stats)
    } else {
        install_pte_entry(fault, stats)
    };
    let Some(folio) = installed else {
        return if pmd {
            huge_pmd_device_private(fault, stats)
        } else {
            device_private_fault(fault, stats)
        };
    };
    let ret = migrate_to_ram(&folio, stats);
    finish(fault, folio, pmd, stats);
    ret
}
