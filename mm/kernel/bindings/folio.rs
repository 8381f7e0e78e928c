// SPDX-License-Identifier: GPL-2.0

//! Folios: a borrowed [`Folio`], counted references through [`ARef`], and
//! the [`LockedFolio`] guard.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/pagemap.h`](srctree/include/linux/pagemap.h)

use core::{ops::Deref, ptr::NonNull};
use kernel::{
    bindings,
    error::{code::ENOMEM, Result},
    sync::aref::{ARef, AlwaysRefCounted},
    types::Opaque,
};

/// What memory a folio is, as [`Folio::memory_kind`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Not ZONE_DEVICE: system RAM.
    System,
    /// `MEMORY_DEVICE_PRIVATE` memory of the pagemap owner `owner`.
    DevicePrivate {
        /// The pagemap's `owner`.
        owner: *mut core::ffi::c_void,
    },
    /// `MEMORY_DEVICE_COHERENT` memory of the pagemap owner `owner`.
    DeviceCoherent {
        /// The pagemap's `owner`.
        owner: *mut core::ffi::c_void,
    },
    /// Another ZONE_DEVICE type (fsdax, PCI P2PDMA, generic).
    OtherZoneDevice,
}

impl MemoryKind {
    /// Whether the memory is device memory a migration can move data to
    /// or from: device-private or device-coherent.
    #[inline]
    pub fn is_device(self) -> bool {
        matches!(
            self,
            Self::DevicePrivate { .. } | Self::DeviceCoherent { .. }
        )
    }
}

/// A folio: a physically contiguous, naturally aligned set of `1 << order`
/// pages managed as one.
///
/// # Examples
///
/// Take a reference to the folio a PTE maps, then lock it without holding
/// the page-table lock (the `folio_lock_and_references` KUnit test does
/// this):
///
/// ```ignore
/// let folio: ARef<Folio> = {
///     let run = PteRun::lock(vma, addr, addr + PAGE_SIZE).ok_or(EINVAL)?;
///     run.folio(addr).ok_or(ENOENT)?.into()
/// };
/// if let Some(locked) = folio.trylock() {
///     assert_eq!(locked.order(), 0);
/// } // Unlocked here.
/// ```
///
/// # Invariants
///
/// A `&Folio` points at a valid `struct folio` whose refcount stays above
/// zero for the lifetime of the reference.
#[repr(transparent)]
pub struct Folio {
    inner: Opaque<bindings::folio>,
}

// SAFETY: `struct folio` is used from any thread; its fields are protected
// by the folio lock and atomic operations, which the methods respect.
unsafe impl Send for Folio {}
// SAFETY: As above, `&Folio` only allows operations that are safe to run
// concurrently (atomic reads, refcounting, the folio lock).
unsafe impl Sync for Folio {}

// SAFETY: `folio_get()` and `folio_put()` keep the folio alive while the
// refcount is above zero, which is what `ARef` needs.
unsafe impl AlwaysRefCounted for Folio {
    #[inline]
    fn inc_ref(&self) {
        // SAFETY: The refcount is non-zero by the type invariant.
        unsafe { bindings::folio_get(self.as_raw()) };
    }

    #[inline]
    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives up a reference it owns.
        unsafe { bindings::folio_put(obj.cast().as_ptr()) };
    }
}

impl Folio {
    /// Borrows a folio from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` points at a valid `struct folio` whose refcount stays above
    /// zero for `'a` (the caller holds a reference, or a lock that keeps
    /// the folio mapped, such as the page-table lock of a present entry).
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::folio) -> &'a Folio {
        // SAFETY: `Folio` is a transparent wrapper of `struct folio`; the
        // caller guarantees validity for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Borrows the folio that contains `page`.
    ///
    /// # Safety
    ///
    /// As for [`Folio::from_raw`], for the folio of the valid `page`.
    #[inline]
    pub unsafe fn from_page<'a>(page: *mut bindings::page) -> &'a Folio {
        // SAFETY: The caller guarantees that `page` is valid.
        unsafe { Self::from_raw(bindings::page_folio(page)) }
    }

    /// Borrows the folio that contains page `pfn`.
    ///
    /// # Safety
    ///
    /// `pfn` has a `struct page`, and the caller holds a reference to its
    /// folio for `'a`, or a lock that keeps it referenced, as for
    /// [`Folio::from_raw`].
    #[inline]
    pub unsafe fn from_pfn<'a>(pfn: usize) -> &'a Folio {
        // SAFETY: The caller guarantees the memmap entry and the reference.
        unsafe { Self::from_raw(bindings::pfn_folio(pfn)) }
    }

    /// Takes a reference to the folio at `pfn`, unless it is being freed.
    ///
    /// # Safety
    ///
    /// `pfn` has a `struct page` (`pfn_valid()`), and its folio cannot be
    /// split or freed under the caller in a way that reuses the memmap:
    /// the caller holds a lock that keeps the entry naming `pfn` stable.
    #[inline]
    pub unsafe fn try_get_pfn(pfn: usize) -> Option<ARef<Folio>> {
        // SAFETY: The caller guarantees that `pfn` has a memmap entry.
        let folio = unsafe { bindings::pfn_folio(pfn) };
        // SAFETY: `folio_try_get()` only takes a reference when the count
        // is not zero, so a freeing folio is never resurrected.
        if unsafe { bindings::folio_try_get(folio) } {
            // SAFETY: We own the reference just taken; `folio` is non-null.
            Some(unsafe { ARef::from_raw(NonNull::new_unchecked(folio.cast())) })
        } else {
            None
        }
    }

    /// Allocates a folio of `order` for user memory (movable, may come
    /// from highmem), as a migration destination; the caller owns the only
    /// reference.
    #[inline]
    pub fn alloc_movable(order: u32) -> Result<ARef<Folio>> {
        // SAFETY: Any order is accepted; too large ones fail.
        let folio = unsafe { bindings::folio_alloc(bindings::GFP_HIGHUSER_MOVABLE, order) };
        let folio = NonNull::new(folio.cast::<Folio>()).ok_or(ENOMEM)?;
        // SAFETY: A fresh folio comes with one reference, which we own.
        Ok(unsafe { ARef::from_raw(folio) })
    }

    /// The raw `struct folio` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::folio {
        self.inner.get()
    }

    /// The order: the folio covers `1 << order` pages.
    #[inline]
    pub fn order(&self) -> u32 {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_order(self.as_raw()) }
    }

    /// The number of pages of the folio.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        1 << self.order()
    }

    /// Whether the folio has more than one page.
    #[inline]
    pub fn is_large(&self) -> bool {
        self.order() > 0
    }

    /// The page frame number of the head page.
    #[inline]
    pub fn pfn(&self) -> usize {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_pfn(self.as_raw()) }
    }

    /// Whether page `pfn` is one of the folio's.
    #[inline]
    pub fn contains_pfn(&self, pfn: usize) -> bool {
        let head = self.pfn();
        pfn >= head && pfn < head + self.nr_pages()
    }

    /// The head page.
    #[inline]
    pub fn head_page(&self) -> *mut bindings::page {
        // SAFETY: The folio is valid; `page` is its first member, so this
        // is only address arithmetic.
        unsafe { &raw mut (*self.as_raw()).__bindgen_anon_1.page }
    }

    /// Whether the folio is anonymous memory.
    #[inline]
    pub fn is_anon(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_test_anon(self.as_raw()) }
    }

    /// Whether the folio is ZONE_DEVICE memory.
    #[inline]
    pub fn is_zone_device(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_is_zone_device(self.as_raw()) }
    }

    /// Whether the folio is device-private memory.
    #[inline]
    pub fn is_device_private(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_is_device_private(self.as_raw()) }
    }

    /// The `owner` of the folio's `dev_pagemap`, for ZONE_DEVICE folios.
    ///
    /// Device migration compares it with `migrate_vma.pgmap_owner` to
    /// decide whether a device-private entry belongs to the caller.
    #[inline]
    pub fn pgmap_owner(&self) -> Option<*mut core::ffi::c_void> {
        // SAFETY: The folio is valid; the helper returns NULL for folios
        // outside ZONE_DEVICE.
        let pgmap = unsafe { bindings::folio_pgmap(self.as_raw()) };
        // SAFETY: A non-null pgmap stays valid while a folio of it is
        // referenced.
        (!pgmap.is_null()).then(|| unsafe { (*pgmap).owner })
    }

    /// What memory the folio is, from one read of its `dev_pagemap`:
    /// where the engine asks several of `folio_is_zone_device()`,
    /// `folio_is_device_private()`, `folio_is_device_coherent()` and the
    /// owner of one folio, each of which reads the zone and pagemap again.
    #[inline]
    pub fn memory_kind(&self) -> MemoryKind {
        // SAFETY: The folio is valid; the helper returns NULL for folios
        // outside ZONE_DEVICE.
        let pgmap = unsafe { bindings::folio_pgmap(self.as_raw()) };
        if pgmap.is_null() {
            return MemoryKind::System;
        }
        // SAFETY: A non-null pgmap stays valid while a folio of it is
        // referenced.
        let (kind, owner) = unsafe { ((*pgmap).type_, (*pgmap).owner) };
        match kind {
            bindings::memory_type_MEMORY_DEVICE_PRIVATE if cfg!(CONFIG_DEVICE_PRIVATE) => {
                MemoryKind::DevicePrivate { owner }
            }
            bindings::memory_type_MEMORY_DEVICE_COHERENT => MemoryKind::DeviceCoherent { owner },
            _ => MemoryKind::OtherZoneDevice,
        }
    }

    /// How many times the folio is mapped into page tables.
    #[inline]
    pub fn mapcount(&self) -> i32 {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_mapcount(self.as_raw()) }
    }

    /// The current reference count.
    #[inline]
    pub fn ref_count(&self) -> i32 {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_ref_count(self.as_raw()) }
    }

    /// Whether the only references left are the ones migration expects:
    /// one per mapping, the page and swap caches', plus `extra` the caller
    /// holds itself (as `folio_expected_ref_count()` documents).
    ///
    /// Migration must not move a folio that someone else pins.
    #[inline]
    pub fn has_expected_refs(&self, extra: i32) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        let expected = unsafe { bindings::folio_expected_ref_count(self.as_raw()) };
        self.ref_count() == expected + extra
    }

    /// Whether the folio lock is held (by anyone).
    #[inline]
    pub fn is_locked(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_test_locked(self.as_raw()) }
    }

    /// Tries to take the folio lock without sleeping.
    #[inline]
    pub fn trylock(&self) -> Option<LockedFolio<'_>> {
        // SAFETY: The folio is valid by the type invariant.
        if unsafe { bindings::folio_trylock(self.as_raw()) } {
            // INVARIANT: We just took the lock.
            Some(LockedFolio { folio: self })
        } else {
            None
        }
    }

    /// Takes the folio lock, sleeping until it is free.
    #[inline]
    pub fn lock(&self) -> LockedFolio<'_> {
        // SAFETY: The folio is valid by the type invariant; we may sleep.
        unsafe { bindings::folio_lock(self.as_raw()) };
        // INVARIANT: We just took the lock.
        LockedFolio { folio: self }
    }
}

/// A folio whose lock the holder owns; unlocks on drop.
///
/// # Invariants
///
/// The folio lock of `folio` is held and owned by this guard.
pub struct LockedFolio<'a> {
    folio: &'a Folio,
}

impl<'a> LockedFolio<'a> {
    /// Wraps a folio whose lock is already held, to hand it to an API that
    /// needs proof of the lock; the guard unlocks on drop unless
    /// [`LockedFolio::into_raw_locked`] gives the lock back.
    ///
    /// # Safety
    ///
    /// The folio lock is held, and its owner lends it to the guard for the
    /// guard's lifetime.
    #[inline]
    pub unsafe fn from_locked(folio: &'a Folio) -> Self {
        // INVARIANT: The caller guarantees the lock is held.
        LockedFolio { folio }
    }

    /// Keeps the folio locked past the guard: the lock is handed to code
    /// that will unlock it (such as the C side of `migrate_vma_*`, which
    /// unlocks collected folios in `migrate_vma_finalize()`).
    #[inline]
    pub fn into_raw_locked(self) -> *mut bindings::folio {
        let ptr = self.folio.as_raw();
        core::mem::forget(self);
        ptr
    }
}

impl Deref for LockedFolio<'_> {
    type Target = Folio;

    #[inline]
    fn deref(&self) -> &Folio {
        self.folio
    }
}

impl Drop for LockedFolio<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: We own the lock by the type invariant.
        unsafe { bindings::folio_unlock(self.folio.as_raw()) };
    }
}
