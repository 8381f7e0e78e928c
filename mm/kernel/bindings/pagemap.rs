// SPDX-License-Identifier: GPL-2.0

//! Device-private memory: a [`DevicePrivatePagemap`] owns a
//! `MEMORY_DEVICE_PRIVATE` `struct dev_pagemap` and the driver's
//! [`DevicePrivateOps`] that the core calls back into.
//!
//! The pages of such a pagemap have a `struct page` but no CPU mapping; a
//! driver hands them out as migration destinations and gets them back
//! through [`DevicePrivateOps::folio_free`] once their last reference goes.
//!
//! C header: [`include/linux/memremap.h`](srctree/include/linux/memremap.h)

use crate::folio::Folio;
use core::{ffi::c_void, marker::PhantomPinned, ptr::NonNull};
use kernel::{
    bindings,
    error::{from_err_ptr, Error},
    prelude::*,
    sync::aref::ARef,
    types::Opaque,
};

/// Size and alignment unit of a device-private range: memory hotplug adds
/// memmap in subsections.
const SUBSECTION_SIZE: usize = 1 << bindings::SUBSECTION_SHIFT;

/// Callbacks of a device-private pagemap, the Rust side of
/// `struct dev_pagemap_ops`.
///
/// The vtable built from an implementation finds `&Self` from the
/// `struct dev_pagemap` the core passes (through the folio or the faulting
/// page): the pagemap is embedded in a [`DevicePrivatePagemap`], which
/// also holds the implementation, so `container_of` recovers it. The
/// pagemap outlives every callback, as dropping it waits until all of its
/// folios are freed.
pub trait DevicePrivateOps: Send + Sync {
    /// Whether [`DevicePrivateOps::folio_split`] is implemented, so that
    /// the ops table installs it; set it when overriding that method.
    const HAS_FOLIO_SPLIT: bool = false;

    /// The pagemap's flags. The default has none: among others, a fault
    /// taken under the faulting VMA's lock alone is then retried under the
    /// mmap lock before it reaches [`DevicePrivateOps::migrate_to_ram`].
    const FLAGS: PagemapFlags = PagemapFlags::NONE;

    /// Called when the last reference of a device folio is dropped; the
    /// folio (of order `folio.order()`) is free for the driver to reuse,
    /// with [`DevicePrivatePagemap::init_folio`].
    ///
    /// The folio's refcount is zero during the call: do not take or drop
    /// references to it.
    fn folio_free(&self, folio: &Folio);

    /// Called on a CPU fault of a device-private entry: must migrate the
    /// data back to system memory (with `vmf->page` the faulting page).
    /// The fault holds the mmap lock, or the VMA lock alone if
    /// [`DevicePrivateOps::FLAGS`] allow it.
    ///
    /// The default fails the fault with `VM_FAULT_SIGBUS`.
    fn migrate_to_ram(&self, vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        let _ = vmf;
        bindings::vm_fault_reason_VM_FAULT_SIGBUS
    }

    /// Called when a large device folio `head` is split: once per new
    /// folio `tail` (whose pagemap and mapping are already set), then once
    /// with `None` when the split is complete.
    ///
    /// The refcounts are frozen during the call: do not take or drop
    /// references to the folios.
    ///
    /// Only called when [`DevicePrivateOps::HAS_FOLIO_SPLIT`] is set; the
    /// default does nothing.
    fn folio_split(&self, head: &Folio, tail: Option<&Folio>) {
        let _ = (head, tail);
    }
}

/// The flags of a device-private pagemap (`dev_pagemap.flags`). Only
/// flags that need nothing else of the pagemap can be made, so that safe
/// code cannot set, say, one that makes the core read an altmap.
///
/// # Invariants
///
/// The value holds no flag but those its constructors in the bindings
/// name: none (`NONE`), or `PGMAP_VMA_LOCKED_FAULTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PagemapFlags(pub(crate) u32);

impl PagemapFlags {
    /// No flag.
    // INVARIANT: No flag.
    pub const NONE: Self = Self(0);
}

/// A free physical address range reserved in `iomem_resource`; released
/// on drop.
///
/// # Invariants
///
/// `start..start + len` is a region we requested and still own.
struct Region {
    start: u64,
    len: u64,
}

impl Region {
    /// Reserves at least `size` bytes of free physical address space; the
    /// core rounds the size up to a memory section.
    fn request(size: usize) -> Result<Self> {
        // SAFETY: `iomem_resource` is the root of the physical address
        // space; the name is a static string.
        let res = unsafe {
            bindings::request_free_mem_region(
                &raw mut bindings::iomem_resource,
                size,
                c"folio_migrate_pagemap".as_char_ptr(),
            )
        };
        let res = NonNull::new(from_err_ptr(res)?).ok_or(ENOMEM)?;
        // SAFETY: `res` is the resource just reserved for us.
        let (start, end) = unsafe { (res.as_ref().start, res.as_ref().end) };
        // INVARIANT: We own the region just requested.
        Ok(Self {
            start,
            len: end - start + 1,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: We own the region by the type invariant.
        unsafe {
            bindings::__release_region(&raw mut bindings::iomem_resource, self.start, self.len)
        };
    }
}

/// A `MEMORY_DEVICE_PRIVATE` pagemap over a free physical address range,
/// with the driver callbacks `T`.
///
/// # Invariants
///
/// `pgmap` is a `MEMORY_DEVICE_PRIVATE` pagemap of one range, at the start
/// of `region`, mapped with `memremap_pages()` and with `Self::VTABLE` as
/// its ops, until drop.
#[pin_data(PinnedDrop)]
pub struct DevicePrivatePagemap<T: DevicePrivateOps> {
    ops: T,
    region: Region,
    #[pin]
    pgmap: Opaque<bindings::dev_pagemap>,
    #[pin]
    _pin: PhantomPinned,
}

// SAFETY: The pagemap is only changed by the core under its own
// synchronisation; `T` is `Send`.
unsafe impl<T: DevicePrivateOps> Send for DevicePrivatePagemap<T> {}
// SAFETY: `&self` methods only read the pagemap or call functions that are
// safe to run concurrently; `T` is `Sync`.
unsafe impl<T: DevicePrivateOps> Sync for DevicePrivatePagemap<T> {}

impl<T: DevicePrivateOps> DevicePrivatePagemap<T> {
    const VTABLE: bindings::dev_pagemap_ops = bindings::dev_pagemap_ops {
        folio_free: Some(Self::folio_free_callback),
        migrate_to_ram: Some(Self::migrate_to_ram_callback),
        memory_failure: None,
        folio_split: if T::HAS_FOLIO_SPLIT {
            Some(Self::folio_split_callback)
        } else {
            None
        },
    };

    /// Reserves free physical address space and maps `size` bytes of it
    /// as device-private memory owned by `owner` on the local NUMA node.
    ///
    /// `size` must be a non-zero multiple of the 2 MiB memory-hotplug
    /// subsection. Device migration compares `owner` with
    /// `migrate_vma.pgmap_owner`. Returns `EINVAL` for a bad size, or
    /// the error of the region request, of the allocation or of
    /// `memremap_pages()`, with nothing left reserved.
    pub fn new(size: usize, owner: NonNull<c_void>, ops: T) -> Result<Pin<KBox<Self>>> {
        if size == 0 || size % SUBSECTION_SIZE != 0 {
            return Err(EINVAL);
        }
        // On any later failure, dropping `region` releases it.
        let region = Region::request(size)?;
        let range = bindings::range {
            start: region.start,
            end: region.start + size as u64 - 1,
        };
        let init = try_pin_init!(Self {
            ops,
            region,
            pgmap <- Opaque::try_ffi_init(move |pgmap| {
                // SAFETY: `pgmap` is valid for writes and pinned.
                unsafe { Self::map(pgmap, range, owner) }
            }),
            _pin: PhantomPinned,
        }? Error);
        KBox::try_pin_init(init, GFP_KERNEL)
    }

    /// Fills in `pgmap` for `range` and maps it.
    ///
    /// # Safety
    ///
    /// `pgmap` is valid for writes and does not move until it is unmapped;
    /// `range` lies in a region reserved for it.
    unsafe fn map(
        pgmap: *mut bindings::dev_pagemap,
        range: bindings::range,
        owner: NonNull<c_void>,
    ) -> Result {
        // SAFETY: The caller guarantees that `pgmap` is valid for writes;
        // all-zeroes is a valid `struct dev_pagemap` before it is filled.
        unsafe {
            pgmap.write_bytes(0, 1);
            (*pgmap).type_ = bindings::memory_type_MEMORY_DEVICE_PRIVATE;
            *(*pgmap).__bindgen_anon_1.range.as_mut() = range;
            (*pgmap).nr_range = 1;
            (*pgmap).flags = T::FLAGS.0;
            (*pgmap).ops = &Self::VTABLE;
            (*pgmap).owner = owner.as_ptr();
        }
        // SAFETY: `pgmap` is filled in and stays put (caller guarantee);
        // `numa_node_id()` has no preconditions.
        let ptr = unsafe { bindings::memremap_pages(pgmap, bindings::numa_node_id()) };
        match from_err_ptr(ptr) {
            Ok(p) if p.is_null() => Err(ENOMEM),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Recovers the callbacks from a pagemap of this type.
    ///
    /// # Safety
    ///
    /// `pgmap` is the `pgmap` field of a live `DevicePrivatePagemap<T>`,
    /// which stays alive for `'a`.
    #[inline]
    unsafe fn ops_of<'a>(pgmap: *mut bindings::dev_pagemap) -> &'a T {
        let field = pgmap.cast::<Opaque<bindings::dev_pagemap>>();
        // SAFETY: `field` is the `pgmap` field of a `Self` (caller
        // guarantee), so the containing struct is valid for `'a`.
        unsafe { &(*kernel::container_of!(field, Self, pgmap)).ops }
    }

    /// `dev_pagemap_ops.folio_free`.
    ///
    /// # Safety
    ///
    /// `folio` is a freed folio of a pagemap using `Self::VTABLE`.
    unsafe extern "C" fn folio_free_callback(folio: *mut bindings::folio) {
        // SAFETY: `folio` is a ZONE_DEVICE folio of our pagemap, which
        // outlives its folios (`memunmap_pages()` waits for them).
        let ops = unsafe { Self::ops_of(bindings::folio_pgmap(folio)) };
        // SAFETY: The core keeps `folio` valid during the call.
        ops.folio_free(unsafe { Folio::from_raw(folio) });
    }

    /// `dev_pagemap_ops.migrate_to_ram`.
    ///
    /// # Safety
    ///
    /// `vmf` is a fault whose `page` is a referenced page of a pagemap
    /// using `Self::VTABLE`.
    unsafe extern "C" fn migrate_to_ram_callback(
        vmf: *mut bindings::vm_fault,
    ) -> bindings::vm_fault_t {
        // SAFETY: `vmf->page` is a referenced device-private page of our
        // pagemap, which stays alive while the page is referenced.
        let ops = unsafe { Self::ops_of(bindings::folio_pgmap(bindings::page_folio((*vmf).page))) };
        ops.migrate_to_ram(vmf)
    }

    /// `dev_pagemap_ops.folio_split`.
    ///
    /// # Safety
    ///
    /// `head` is a folio being split of a pagemap using `Self::VTABLE`, and
    /// `tail` null or a new folio split from it.
    unsafe extern "C" fn folio_split_callback(
        head: *mut bindings::folio,
        tail: *mut bindings::folio,
    ) {
        // SAFETY: `head` is a device folio of our pagemap, which stays
        // alive while its pages are in use.
        let ops = unsafe { Self::ops_of(bindings::folio_pgmap(head)) };
        let tail = if tail.is_null() {
            None
        } else {
            // SAFETY: Both folios are valid; with a `folio_split` method
            // installed, the core leaves copying these fields to us.
            unsafe { bindings::folio_migrate_split_tail(head, tail) };
            // SAFETY: The core keeps `tail` valid during the call.
            Some(unsafe { Folio::from_raw(tail) })
        };
        // SAFETY: The core keeps `head` valid during the call.
        ops.folio_split(unsafe { Folio::from_raw(head) }, tail);
    }

    /// The raw `struct dev_pagemap` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dev_pagemap {
        self.pgmap.get()
    }

    /// The driver callbacks.
    #[inline]
    pub fn ops(&self) -> &T {
        &self.ops
    }

    /// The owner cookie given to [`DevicePrivatePagemap::new`].
    #[inline]
    pub fn owner(&self) -> *mut c_void {
        // SAFETY: The pagemap is valid by the type invariant; `owner` is
        // not changed after mapping.
        unsafe { (*self.as_raw()).owner }
    }

    /// The first page frame number of the range.
    #[inline]
    pub fn first_pfn(&self) -> usize {
        // SAFETY: The pagemap is valid by the type invariant; its range is
        // not changed after mapping.
        let start = unsafe { (*self.as_raw()).__bindgen_anon_1.range.as_ref().start };
        (start >> bindings::PAGE_SHIFT) as usize
    }

    /// The number of pages of the range.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        // SAFETY: As for `first_pfn()`.
        let range = unsafe { *(*self.as_raw()).__bindgen_anon_1.range.as_ref() };
        ((range.end - range.start + 1) >> bindings::PAGE_SHIFT) as usize
    }

    /// Whether `folio` belongs to this pagemap.
    #[inline]
    pub fn contains(&self, folio: &Folio) -> bool {
        // SAFETY: The folio is valid; the helper returns NULL for folios
        // outside ZONE_DEVICE.
        unsafe { bindings::folio_pgmap(folio.as_raw()) == self.as_raw() }
    }

    /// Initialises the free pages `pfn..pfn + (1 << order)` of this
    /// pagemap as one folio and returns it, unlocked, with the one
    /// reference it starts with. Dropping that reference calls
    /// [`DevicePrivateOps::folio_free`].
    ///
    /// Returns `EINVAL` when the pages are not in the range or `pfn` is
    /// not aligned to `order`.
    ///
    /// # Safety
    ///
    /// None of these pages is part of a folio that is in use (initialised
    /// and not yet freed), and no other thread initialises them
    /// concurrently.
    pub unsafe fn init_folio(&self, pfn: usize, order: u32) -> Result<ARef<Folio>> {
        let nr = 1usize.checked_shl(order).ok_or(EINVAL)?;
        let first = self.first_pfn();
        let offset = pfn.checked_sub(first).ok_or(EINVAL)?;
        if nr > self.nr_pages() || offset > self.nr_pages() - nr || pfn % nr != 0 {
            return Err(EINVAL);
        }
        // SAFETY: `pfn` is in our range, so it has a `struct page`. That
        // page becomes the head: it may be a stale tail of a freed larger
        // folio, so `page_folio()` is not used.
        let folio = unsafe { bindings::pfn_to_page(pfn) }.cast::<bindings::folio>();
        // SAFETY: The pages are ours, free and naturally aligned for
        // `order` (checked above and by the caller), and the pagemap is
        // live (type invariant).
        unsafe { bindings::zone_device_folio_init(folio, self.as_raw(), order) };
        // SAFETY: The folio was returned locked; we hold that lock.
        unsafe { bindings::folio_unlock(folio) };
        // SAFETY: A fresh folio comes with one reference, which we own;
        // `folio` is non-null.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(folio.cast())) })
    }
}

#[pinned_drop]
impl<T: DevicePrivateOps> PinnedDrop for DevicePrivatePagemap<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: The pagemap is mapped (type invariant); this waits until
        // every folio of it is freed, and nothing maps it again. The
        // region is released after this, when the fields are dropped.
        unsafe { bindings::memunmap_pages(self.as_raw()) };
    }
}
