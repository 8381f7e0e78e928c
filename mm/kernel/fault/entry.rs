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
//! folio under a PMD. A PTE of a large folio takes the [`crate::fault`]
//! path: collection has to split that folio first, which needs it mapped.

use crate::engine::collect::{unmap_pte, PteSource};
use crate::engine::counters::{Counter, Stats};
use crate::fault::{
    device_private_fault, huge_pmd_device_private, migrate_to_ram, under_mmap_lock,
};
use crate::folio::{Folio, LockedFolio};
use crate::migrate_core::fault_lock::LockAction;
use crate::page_table::{PmdEntry, PmdGuard, PteEntry, PteRun, PteValue, PAGE_SIZE, PMD_ORDER};
use kernel::{bindings, mm::virt::VmaRef};

/// Replaces the device-private PTE of the fault by a migration entry, with
/// the fault folio locked; returns the fault page, or `None` with nothing
/// changed when the entry changed, the folio is large, contended or pinned.
/// The mapping's reference to the folio stays with the fault path.
///
/// # Safety
///
/// `vmf` is a fault on a device-private PTE, under the mmap lock.
unsafe fn install_pte_entry(
    vmf: *mut bindings::vm_fault,
    stats: &mut Stats,
) -> Option<*mut bindings::page> {
    // SAFETY: The caller passes a valid fault.
    let f = unsafe { &mut *vmf };
    // SAFETY: The fault holds the mmap lock, which keeps the VMA.
    let vma = unsafe { VmaRef::from_raw(f.__bindgen_anon_1.vma) };
    // SAFETY: Reading a field of the fault.
    let (addr, orig) = unsafe { (f.__bindgen_anon_1.address, f.__bindgen_anon_2.orig_pte) };
    let mut run = PteRun::lock(vma, addr, addr + PAGE_SIZE)?;
    let (raw, entry) = run.read(addr)?;
    let PteEntry::DevicePrivate { pfn, write } = entry else {
        return None;
    };
    if !raw.same(&PteValue::from_raw(orig)) {
        return None;
    }
    // SAFETY: A device-private entry names a page with a memmap entry.
    let page = unsafe { bindings::pfn_to_page(pfn) };
    // SAFETY: The entry holds a reference to the folio, stable under the
    // PTE lock we hold.
    let folio = unsafe { Folio::from_page(page) };
    // SAFETY: A trylock does not sleep.
    if folio.order() != 0 || !unsafe { bindings::folio_trylock(folio.as_raw()) } {
        return None;
    }
    let src = PteSource {
        page,
        pfn,
        present: false,
        write,
        lock: LockAction::Held,
    };
    if unmap_pte(vma, &mut run, addr, src, stats).is_none() {
        // SAFETY: We took the lock above.
        unsafe { bindings::folio_unlock(folio.as_raw()) };
        return None;
    }
    stats.inc(Counter::FaultEntries);
    f.page = page;
    Some(page)
}

/// The PMD version of [`install_pte_entry`] for a PMD-order device folio.
///
/// # Safety
///
/// `vmf` is a fault on a device-private PMD, under the mmap lock.
unsafe fn install_pmd_entry(
    vmf: *mut bindings::vm_fault,
    stats: &mut Stats,
) -> Option<*mut bindings::page> {
    // SAFETY: The caller passes a valid fault.
    let f = unsafe { &mut *vmf };
    // SAFETY: The fault holds the mmap lock, which keeps the VMA.
    let vma = unsafe { VmaRef::from_raw(f.__bindgen_anon_1.vma) };
    // SAFETY: Reading a field of the fault.
    let (addr, orig) = unsafe { (f.__bindgen_anon_1.address, f.__bindgen_anon_2.orig_pmd) };
    let mut pmd = PmdGuard::lock(vma, addr)?;
    let PmdEntry::DevicePrivate { pfn, .. } = pmd.entry() else {
        return None;
    };
    // SAFETY: We hold the lock of this PMD.
    if !unsafe { bindings::pmd_same(bindings::pmdp_get(pmd.as_raw()), orig) } {
        return None;
    }
    // SAFETY: A device-private entry names a page with a memmap entry.
    let page = unsafe { bindings::pfn_to_page(pfn) };
    // SAFETY: The entry holds a reference to the folio, stable under the
    // PMD lock we hold.
    let folio = unsafe { Folio::from_page(page) };
    // SAFETY: A trylock does not sleep.
    if folio.order() != PMD_ORDER || !unsafe { bindings::folio_trylock(folio.as_raw()) } {
        return None;
    }
    // `set_pmd_migration_entry()` drops the mapping's reference: take the
    // fault path's own first.
    // SAFETY: The folio is alive, as above.
    unsafe { bindings::folio_get(folio.as_raw()) };
    // SAFETY: We took the folio lock above; the guard only borrows it.
    let guard = unsafe { LockedFolio::from_locked(folio) };
    let installed = pmd.set_pmd_migration_entry(&guard).is_ok();
    guard.into_raw_locked();
    if !installed {
        // SAFETY: We took the reference and the lock above.
        unsafe {
            bindings::folio_put(folio.as_raw());
            bindings::folio_unlock(folio.as_raw());
        }
        return None;
    }
    stats.inc(Counter::FaultEntries);
    f.page = page;
    f.pte = core::ptr::null_mut();
    Some(page)
}

/// After `migrate_to_ram()`: puts the device-private entry back if the
/// driver left the early migration entry at the fault address, then drops
/// the fault folio's lock and the reference the fault path held.
///
/// # Safety
///
/// `page` is the fault page of `vmf`, whose early entry the fault path
/// installed (at PMD level if `huge`) and whose folio it holds locked and
/// referenced; the mmap lock is held and no page-table lock.
unsafe fn finish(
    vmf: *mut bindings::vm_fault,
    page: *mut bindings::page,
    huge: bool,
    stats: &mut Stats,
) {
    // SAFETY: The caller passes a valid fault, whose VMA the mmap lock
    // keeps.
    let (vma, addr) = unsafe {
        let f = &*vmf;
        (
            VmaRef::from_raw(f.__bindgen_anon_1.vma),
            f.__bindgen_anon_1.address,
        )
    };
    // SAFETY: The fault path holds the folio, so the page is valid.
    let pfn = unsafe { bindings::page_to_pfn(page) };
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
    // SAFETY: The caller guarantees the lock and the reference. The driver
    // may have split the folio: they moved with the fault page, the head
    // page for a PMD.
    unsafe {
        let folio = bindings::page_folio(page);
        if left {
            bindings::remove_migration_ptes(folio, folio, 0);
            stats.inc(Counter::FaultEntriesRestored);
        }
        bindings::folio_unlock(folio);
        bindings::folio_put(folio);
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
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes a fault on a device-private PTE; `handle`
    // runs under the mmap lock.
    unsafe { under_mmap_lock(vmf, |stats| fault_with_entry(vmf, false, stats)) }
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
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes a fault on a device-private PMD; `handle`
    // runs under the mmap lock.
    unsafe { under_mmap_lock(vmf, |stats| fault_with_entry(vmf, true, stats)) }
}

/// A device-private fault, on a PMD when `pmd`, with the early entry: the
/// fault path installs it and calls `migrate_to_ram()`. Falls back to the
/// usual path when the entry changed, or the folio is large, contended or
/// pinned; that path rechecks the entry and waits on a contended folio.
///
/// # Safety
///
/// `vmf` is a fault on a device-private PMD when `pmd`, else PTE, under the
/// mmap lock.
unsafe fn fault_with_entry(
    vmf: *mut bindings::vm_fault,
    pmd: bool,
    stats: &mut Stats,
) -> bindings::vm_fault_t {
    // SAFETY: The caller passes such a fault.
    let installed = unsafe {
        if pmd {
            install_pmd_entry(vmf, stats)
        } else {
            install_pte_entry(vmf, stats)
        }
    };
    let Some(page) = installed else {
        // SAFETY: As above.
        return unsafe {
            if pmd {
                huge_pmd_device_private(vmf, stats)
            } else {
                device_private_fault(vmf, stats)
            }
        };
    };
    // SAFETY: The fault folio is locked and held; no page-table lock.
    let ret = unsafe { migrate_to_ram(vmf, stats) };
    // SAFETY: The early entry is installed for `page`.
    unsafe { finish(vmf, page, pmd, stats) };
    ret
}
