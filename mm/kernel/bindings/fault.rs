// SPDX-License-Identifier: GPL-2.0

//! The device-private CPU fault: `struct vm_fault` and the fault folio.
//!
//! A fault on a device-private entry checks, under the page-table lock,
//! that the entry is unchanged and trylocks the folio it names. The fault
//! path then holds that folio ([`FaultFolio`]) across the driver's
//! `migrate_to_ram()`, whose migration treats it as its `fault_page`
//! ([`FaultPage`]); or, when the folio is locked already, it sleeps until
//! it is not ([`FaultWait`]).
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)

use crate::collection::CollectedFolio;
use crate::folio::Folio;
use crate::migrate_core::pfn::PMD_ORDER;
use crate::migrate_vma::{Collected, Select};
use crate::migrate_vma_args::MigrateVmaArgs;
use crate::migration::FaultPage;
use crate::page_table::{PmdGuard, PteEntry, PteValue};
use crate::pagemap::PagemapFlags;
use core::ffi::c_void;
use kernel::{bindings, mm::virt::VmaRef, page::PAGE_SIZE, prelude::*, types::Opaque};

/// What a fault handler returns (`vm_fault_t`): 0 or `VM_FAULT_*` bits.
pub type VmFaultReason = bindings::vm_fault_t;

impl PagemapFlags {
    /// `PGMAP_VMA_LOCKED_FAULTS`: the driver's `migrate_to_ram()` runs
    /// under the faulting VMA's lock alone, as [`VmFault::from_raw`]
    /// allows, so that such a fault is not retried under the mmap lock.
    // INVARIANT: One of the flags `PagemapFlags` may hold.
    pub const VMA_LOCKED_FAULTS: Self = Self(bindings::PGMAP_VMA_LOCKED_FAULTS);
}

/// `VM_FAULT_RETRY`.
pub const VM_FAULT_RETRY: VmFaultReason = bindings::vm_fault_reason_VM_FAULT_RETRY;

/// A CPU fault on a device-private entry, under the mmap lock, or under
/// the faulting VMA's lock alone.
///
/// # Invariants
///
/// The fault is valid and its mm's mmap lock, or its VMA's lock, is held
/// for the lifetime of the borrow; no page-table lock is held. Under the
/// VMA lock alone the driver is called only for a pagemap that allows it
/// (`PGMAP_VMA_LOCKED_FAULTS`), which
/// [`VmFault::lock_device_private_pte`] checks.
#[repr(transparent)]
pub struct VmFault(Opaque<bindings::vm_fault>);

impl VmFault {
    /// Borrows the fault `ptr`, under whichever lock it holds: a fault
    /// under the VMA lock reaches the driver only if its pagemap allows
    /// it, and is answered with a retry under the mmap lock otherwise
    /// ([`DeviceFault::Retry`]).
    ///
    /// # Safety
    ///
    /// `ptr` is a valid fault for `'a`, under the mmap lock or the VMA
    /// lock, with no page-table lock held.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::vm_fault) -> &'a VmFault {
        // INVARIANT: The caller holds one of the locks; the pagemap is
        // checked before the driver is called.
        // SAFETY: `VmFault` is a transparent wrapper of `struct vm_fault`,
        // valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Whether the fault holds the VMA lock rather than the mmap lock.
    #[inline]
    fn under_vma_lock(&self) -> bool {
        // SAFETY: Reads a field of the valid fault.
        unsafe { (*self.as_raw()).flags & bindings::fault_flag_FAULT_FLAG_VMA_LOCK != 0 }
    }

    /// Whether the fault may call the driver of `page` as it is: under the
    /// mmap lock, or under the VMA lock if the page's pagemap allows it.
    ///
    /// # Safety
    ///
    /// `page` is the device-private page of an entry whose lock is held.
    #[inline]
    unsafe fn may_migrate(&self, page: *mut bindings::page) -> bool {
        // SAFETY: The entry, whose lock the caller holds, references the
        // page's folio.
        self.may_call_driver(unsafe { Folio::from_page(page) })
    }

    /// Ends the VMA lock of a fault that returns [`VM_FAULT_RETRY`] to be
    /// retried under the mmap lock.
    ///
    /// # Safety
    ///
    /// The fault holds the VMA lock and does not use it afterwards.
    #[inline]
    unsafe fn end_vma_lock(&self) {
        // SAFETY: As the caller promises.
        unsafe { bindings::vma_end_read((*self.as_raw()).__bindgen_anon_1.vma) };
    }

    #[inline]
    fn as_raw(&self) -> *mut bindings::vm_fault {
        self.0.get()
    }

    /// The faulting VMA.
    #[inline]
    pub fn vma(&self) -> &VmaRef {
        // SAFETY: The mmap or VMA lock keeps the VMA, by the type
        // invariant.
        unsafe { VmaRef::from_raw((*self.as_raw()).__bindgen_anon_1.vma) }
    }

    /// The faulting page (`vmf->page`): a device-private page the fault
    /// path holds referenced and locked across `migrate_to_ram()`.
    #[inline]
    pub(crate) fn page(&self) -> *mut bindings::page {
        // SAFETY: Reads a field of the valid fault.
        unsafe { (*self.as_raw()).page }
    }

    /// Whether the fault came through a PTE (`vmf->pte` is set), rather
    /// than through a PMD entry.
    #[inline]
    pub fn via_pte(&self) -> bool {
        // SAFETY: Reads a field of the valid fault.
        !unsafe { (*self.as_raw()).pte }.is_null()
    }

    /// The faulting address, page aligned.
    #[inline]
    pub fn address(&self) -> usize {
        // SAFETY: Reads a field of the valid fault.
        unsafe { (*self.as_raw()).__bindgen_anon_1.address }
    }

    /// The PTE the fault read (`vmf->orig_pte`).
    #[inline]
    pub fn orig_pte(&self) -> PteValue {
        // SAFETY: Reads a field of the valid fault.
        PteValue::from_raw(unsafe { (*self.as_raw()).__bindgen_anon_2.orig_pte })
    }

    /// Whether `pmd`, locked, still holds the PMD the fault read
    /// (`vmf->orig_pmd`).
    #[inline]
    pub fn pmd_unchanged(&self, pmd: &PmdGuard<'_>) -> bool {
        // SAFETY: We hold the lock of this PMD; the fault is valid.
        unsafe {
            bindings::pmd_same(
                bindings::pmdp_get(pmd.as_raw()),
                (*self.as_raw()).__bindgen_anon_2.orig_pmd,
            )
        }
    }

    /// Whether the fault may call the driver of `folio`, the device folio
    /// of the entry it faulted on: always under the mmap lock, under the
    /// VMA lock only if the folio's pagemap allows it
    /// (`PGMAP_VMA_LOCKED_FAULTS`). The caller holds the entry's lock.
    #[inline]
    pub fn may_call_driver(&self, folio: &Folio) -> bool {
        if !self.under_vma_lock() {
            return true;
        }
        // SAFETY: The helper returns NULL outside ZONE_DEVICE; a pagemap
        // stays valid while a folio of it is referenced, as the borrow of
        // `folio` proves.
        unsafe {
            let pgmap = bindings::folio_pgmap(folio.as_raw());
            !pgmap.is_null() && (*pgmap).flags & bindings::PGMAP_VMA_LOCKED_FAULTS != 0
        }
    }

    /// Checks, under the PTE lock, that the device-private PTE the fault
    /// read is unchanged, and trylocks and references its folio (the
    /// device-private branch of `do_swap_page()`). Under the VMA lock, a
    /// pagemap whose driver needs the mmap lock gets [`DeviceFault::Retry`].
    pub fn lock_device_private_pte(&self) -> DeviceFault<'_> {
        if !matches!(self.orig_pte().entry(), PteEntry::DevicePrivate { .. }) {
            return DeviceFault::Changed;
        }
        let f = self.as_raw();
        // SAFETY: The fault read a device-private PTE, whose PMD stays
        // allocated under the mmap or VMA lock; the PTE is mapped and
        // locked here and released on every path below, or by the
        // `FaultWait`. The VMA lock is ended only on the path that returns
        // `Retry`, which uses the fault no more.
        unsafe {
            let orig = (*f).__bindgen_anon_2.orig_pte;
            let entry = bindings::softleaf_from_pte(orig);
            (*f).page = bindings::pfn_to_page(bindings::softleaf_to_pfn(entry));
            (*f).pte = bindings::pte_offset_map_lock(
                (*(*f).__bindgen_anon_1.vma).vm_mm,
                (*f).pmd,
                (*f).__bindgen_anon_1.address,
                &mut (*f).ptl,
            );
            if (*f).pte.is_null() {
                return DeviceFault::Changed;
            }
            if !bindings::pte_same(bindings::ptep_get((*f).pte), orig) {
                bindings::pte_unmap_unlock((*f).pte, (*f).ptl);
                return DeviceFault::Changed;
            }
            if !self.may_migrate((*f).page) {
                bindings::pte_unmap_unlock((*f).pte, (*f).ptl);
                self.end_vma_lock();
                return DeviceFault::Retry;
            }
            let locked = self.trylock_page();
            if locked.is_some() {
                bindings::pte_unmap_unlock((*f).pte, (*f).ptl);
            } else {
                bindings::pte_unmap((*f).pte);
            }
            self.locked_or_wait(locked, entry, (*f).ptl)
        }
    }

    /// The PMD version of [`VmFault::lock_device_private_pte`]
    /// (`do_huge_pmd_device_private()`).
    pub fn lock_device_private_pmd(&self) -> DeviceFault<'_> {
        let f = self.as_raw();
        // SAFETY: The fault read a device-private PMD entry (checked
        // first), whose PMD stays allocated under the mmap or VMA lock; its
        // lock is taken here and released on every path below, or by the
        // `FaultWait`. The VMA lock is ended only on the path that returns
        // `Retry`, which uses the fault no more.
        unsafe {
            let orig = (*f).__bindgen_anon_2.orig_pmd;
            let entry = bindings::softleaf_from_pmd(orig);
            if !bindings::softleaf_is_device_private(entry) {
                return DeviceFault::Changed;
            }
            let ptl = bindings::pmd_lock((*(*f).__bindgen_anon_1.vma).vm_mm, (*f).pmd);
            if !bindings::pmd_same(bindings::pmdp_get((*f).pmd), orig) {
                bindings::spin_unlock(ptl);
                return DeviceFault::Changed;
            }
            (*f).page = bindings::pfn_to_page(bindings::softleaf_to_pfn(entry));
            (*f).pte = core::ptr::null_mut();
            if !self.may_migrate((*f).page) {
                bindings::spin_unlock(ptl);
                self.end_vma_lock();
                return DeviceFault::Retry;
            }
            let locked = self.trylock_page();
            if locked.is_some() {
                bindings::spin_unlock(ptl);
            }
            self.locked_or_wait(locked, entry, ptl)
        }
    }

    /// Trylocks and references the folio of `vmf->page`.
    ///
    /// # Safety
    ///
    /// `vmf->page` is named by an entry whose lock is held.
    unsafe fn trylock_page(&self) -> Option<FaultFolio<'_>> {
        // SAFETY: The caller holds the lock that keeps the page's folio.
        unsafe {
            let page = (*self.as_raw()).page;
            let folio = bindings::page_folio(page);
            if !bindings::folio_trylock(folio) {
                return None;
            }
            // The reference keeps the folio once the lock is dropped.
            bindings::folio_get(folio);
            // INVARIANT: Locked and referenced just above.
            Some(FaultFolio { fault: self, page })
        }
    }

    /// The fault folio, or the waiter for the entry `entry` under `ptl`.
    ///
    /// # Safety
    ///
    /// Unless `locked`, `ptl` is held over `entry`, and nothing else
    /// releases it.
    unsafe fn locked_or_wait<'a>(
        &'a self,
        locked: Option<FaultFolio<'a>>,
        entry: bindings::softleaf_t,
        ptl: *mut bindings::spinlock_t,
    ) -> DeviceFault<'a> {
        match locked {
            Some(folio) => DeviceFault::Locked(folio),
            // INVARIANT: The caller hands over the held lock.
            None => DeviceFault::Contended(FaultWait { entry, ptl }),
        }
    }

    /// Makes `folio`, trylocked and referenced by the fault path itself
    /// (with `FaultPage::NONE`), the fault folio: `vmf->page` becomes its
    /// head page, and the fault path holds the lock and reference until
    /// the [`FaultFolio`] is dropped.
    pub fn hold(&self, folio: CollectedFolio) -> FaultFolio<'_> {
        let page = folio.folio().head_page();
        folio.into_slot();
        // SAFETY: The fault is valid; the driver reads `vmf->page`, and
        // nothing reads `vmf->pte` once the page table is unlocked.
        unsafe {
            (*self.as_raw()).page = page;
            (*self.as_raw()).pte = core::ptr::null_mut();
        }
        // INVARIANT: The collected folio's lock and reference, handed over.
        FaultFolio { fault: self, page }
    }
}

/// What a device-private fault found under the page-table lock.
pub enum DeviceFault<'a> {
    /// The entry changed since the fault read it: return to refault.
    Changed,
    /// The fault folio, locked and referenced; the page-table lock is
    /// dropped.
    Locked(FaultFolio<'a>),
    /// Another thread holds the folio lock: wait for it, then refault.
    Contended(FaultWait),
    /// The fault holds the VMA lock, which the driver's pagemap does not
    /// allow: the lock is released; return [`VM_FAULT_RETRY`] to be called
    /// again under the mmap lock.
    Retry,
}

impl VmFault {
    /// Collects, for the driver's `migrate_to_ram()`, the folio of the
    /// faulting page, clamped to its VMA (`migrate_vma_setup()`): whole
    /// when the fault came through the entry that maps it whole, else the
    /// faulting page alone (a PMD-sized folio faulted through a PTE may be
    /// half split). The faulting page is the migration's `fault_page`,
    /// which the fault path holds locked; `src` and `dst` need a slot per
    /// page of the folio.
    // `owner` is a cookie compared with the pagemap's, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn migrate_vma_setup<'a>(
        &'a self,
        select: Select,
        owner: *mut c_void,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Collected<'a>> {
        let (start, end) = self.migrate_range();
        // SAFETY: The fault holds the mmap lock for as long, or the VMA
        // lock of a pagemap whose driver migrates under it (type
        // invariant); the fault path holds the faulting page locked.
        unsafe {
            MigrateVmaArgs::setup_in(self.vma(), start, end, select, owner, src, dst, self.page())
        }
        .map(Collected::new)
    }

    /// The slots [`VmFault::migrate_vma_setup`] needs in `src` and `dst`:
    /// one per page it collects.
    #[inline]
    pub fn migrate_vma_slots(&self) -> usize {
        let (start, end) = self.migrate_range();
        (end - start) / PAGE_SIZE
    }

    /// The range [`VmFault::migrate_vma_setup`] collects.
    fn migrate_range(&self) -> (usize, usize) {
        // SAFETY: The fault path holds a reference to the faulting page
        // for as long as the fault is borrowed.
        let mut order = unsafe { Folio::from_page(self.page()) }.order();
        if self.via_pte() && order >= PMD_ORDER {
            order = 0;
        }
        let size = PAGE_SIZE << order;
        let vma = self.vma();
        let first = self.address() & !(size - 1);
        let start = core::cmp::max(first, vma.start());
        let end = core::cmp::min(first + size, vma.end());
        (start, end)
    }
}

/// The folio of `vmf->page`, locked and referenced by the fault path for
/// `migrate_to_ram()`; unlocks and drops the reference on drop.
///
/// # Invariants
///
/// The fault path holds the lock and a reference of the folio that holds
/// `page`; a split moves them with the page (`migrate_vma_setup()`'s rule
/// for the fault page).
pub struct FaultFolio<'a> {
    fault: &'a VmFault,
    page: *mut bindings::page,
}

impl FaultFolio<'_> {
    /// The fault page, as a migration sees it.
    #[inline]
    pub fn fault_page(&self) -> FaultPage {
        // SAFETY: We hold the page's folio locked and referenced, by the
        // type invariant, for as long as the value is borrowed.
        unsafe { FaultPage::new(self.page) }
    }

    /// Calls the driver's `migrate_to_ram()` for the fault.
    #[inline]
    pub fn migrate_to_ram(&self) -> VmFaultReason {
        // SAFETY: The fault is valid, no page-table lock is held, and the
        // fault folio is locked and referenced, as the driver expects.
        unsafe { bindings::folio_migrate_call_migrate_to_ram(self.fault.as_raw()) }
    }
}

impl Drop for FaultFolio<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: The lock and the reference are ours, on the folio that
        // holds the page now, by the type invariant.
        unsafe {
            let folio = bindings::page_folio(self.page);
            bindings::folio_unlock(folio);
            bindings::folio_put(folio);
        }
    }
}

/// A fault whose folio another thread holds locked, with the page-table
/// lock over its entry still held; [`FaultWait::wait`] sleeps until the
/// folio is unlocked, dropping it drops the lock.
///
/// # Invariants
///
/// `ptl` is held over `entry`, and owned by this value.
pub struct FaultWait {
    entry: bindings::softleaf_t,
    ptl: *mut bindings::spinlock_t,
}

impl FaultWait {
    /// Sleeps until the folio is unlocked
    /// (`softleaf_entry_wait_on_locked()`), releasing the page-table lock.
    #[inline]
    pub fn wait(self) {
        let this = core::mem::ManuallyDrop::new(self);
        // SAFETY: We hold `ptl`, which keeps the folio alive until the
        // waiter is queued; the call releases it.
        unsafe { bindings::softleaf_entry_wait_on_locked(this.entry, this.ptl) };
    }
}

impl Drop for FaultWait {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: We own the lock by the type invariant.
        unsafe { bindings::spin_unlock(self.ptl) };
    }
}
