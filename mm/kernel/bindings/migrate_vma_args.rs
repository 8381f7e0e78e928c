// SPDX-License-Identifier: GPL-2.0

//! The `struct migrate_vma` of a migration in flight, and the C calls on
//! it: `migrate_vma_setup()` or `migrate_device_range()`, then
//! `migrate_*_pages()` and `migrate_*_finalize()`, each at most once.
//!
//! [`MigrateVmaArgs`] owns the arguments, the arrays' borrow and which
//! calls have run, and reads and writes the slots only in ways the C side
//! expects: a source folio is borrowed only while collected, a destination
//! is written only into an empty slot of a collected folio of its order,
//! with its lock and reference. The typestate of `migrate_vma` orders the
//! calls for drivers on top of it.
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use crate::folio::Folio;
use crate::migrate_core::pfn::MigratePfn;
use core::{ffi::c_void, marker::PhantomData, ptr::null_mut};
use kernel::{
    bindings,
    error::{
        code::{EBUSY, EFAULT, EINVAL},
        to_result, Result,
    },
    mm::{virt::VmaRef, MmapReadGuard},
    page::PAGE_SIZE,
    sync::aref::ARef,
};

// The core restates the flags of `include/linux/migrate.h` so that it can
// be tested on the host: keep the two in step.
const _: () = {
    use crate::migrate_core::pfn;
    assert!(pfn::MIGRATE_PFN_VALID == bindings::MIGRATE_PFN_VALID as u64);
    assert!(pfn::MIGRATE_PFN_MIGRATE == bindings::MIGRATE_PFN_MIGRATE as u64);
    assert!(pfn::MIGRATE_PFN_WRITE == bindings::MIGRATE_PFN_WRITE as u64);
    assert!(pfn::MIGRATE_PFN_COMPOUND == bindings::MIGRATE_PFN_COMPOUND as u64);
    assert!(pfn::MIGRATE_PFN_SHIFT == bindings::MIGRATE_PFN_SHIFT);
    // The arrays are `unsigned long`, read as the core's `u64` slots.
    assert!(core::mem::size_of::<usize>() == core::mem::size_of::<u64>());
};

/// Decodes a slot of the `src` or `dst` array; one that does not decode
/// reads as empty.
#[inline]
pub fn slot(raw: u64) -> MigratePfn {
    MigratePfn::from_raw_or_empty(raw)
}

/// Which pages `migrate_vma_setup()` collects (`enum migrate_vma_direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Select(u32);

impl Select {
    /// System memory.
    pub const SYSTEM: Self = Self(bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM);
    /// Device-private memory of the caller's `pgmap_owner`.
    pub const DEVICE_PRIVATE: Self =
        Self(bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE);
    /// Large folios collected whole rather than split.
    pub const COMPOUND: Self = Self(bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND);
    /// PTE-mapped large folios (mTHP) collected whole rather than split.
    // The core's value: C gains the flag with the folio order in migrate
    // PFNs, and the migration bindings check that the two agree.
    pub const MTHP: Self = Self(crate::migrate_core::collect::MIGRATE_VMA_SELECT_MTHP as u32);
}

impl core::ops::BitOr for Select {
    type Output = Self;

    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// The `struct migrate_vma` of a migration in flight; dropping it
/// finalizes the migration, releasing any destination first if the pages
/// have not moved.
///
/// # Invariants
///
/// `args` was passed to a successful `migrate_vma_setup()` (or, if
/// `device`, its arrays to `migrate_device_range()`), its arrays hold
/// `args.npages` slots and live for `'a`, `migrate_*_pages()` has run iff
/// `moved`, and `migrate_*_finalize()` has run iff `done`. Slot 0 stands
/// for page `base`: the first virtual page, or the first PFN if `device`.
/// Every slot of `dst` is empty or names a folio whose lock and reference
/// belong to the migration.
pub struct MigrateVmaArgs<'a> {
    args: bindings::migrate_vma,
    device: bool,
    base: u64,
    moved: bool,
    done: bool,
    _arrays: PhantomData<&'a mut [usize]>,
}

impl<'a> MigrateVmaArgs<'a> {
    /// Collects `start..end` of `vma`, found under `mmap`
    /// (`migrate_vma_setup()`); `src` and `dst` need one slot per page of
    /// the range.
    ///
    /// The mmap read lock stays held until the migration is finalized: a
    /// per-VMA lock is not enough for `migrate_vma_setup()`.
    // `owner` is a cookie compared with the pagemap's, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn setup(
        mmap: &'a MmapReadGuard<'_>,
        start: usize,
        end: usize,
        select: Select,
        owner: *mut c_void,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Self> {
        if start >= end || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let vma = mmap.vma_lookup(start).ok_or(EFAULT)?;
        // SAFETY: The mmap read lock is held for as long as the migration;
        // the C function checks the range against the VMA; no fault page.
        unsafe { Self::setup_in(vma, start, end, select, owner, src, dst, null_mut()) }
    }

    /// Collects `start..end` of `vma` (`migrate_vma_setup()`), with
    /// `fault_page` as the migration's `fault_page` unless it is null;
    /// `src` and `dst` need one slot per page of the range.
    ///
    /// # Safety
    ///
    /// The mmap lock of `vma`'s mm, or a VMA lock the driver migrates
    /// under, is held for `'a`; `fault_page`, if not null, is the page a
    /// fault path holds locked across the migration.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn setup_in(
        vma: &VmaRef,
        start: usize,
        end: usize,
        select: Select,
        owner: *mut c_void,
        src: &'a mut [usize],
        dst: &'a mut [usize],
        fault_page: *mut bindings::page,
    ) -> Result<Self> {
        let mut args = Self::prepare((end - start) / PAGE_SIZE, src, dst)?;
        args.vma = vma.as_ptr();
        args.start = start;
        args.end = end;
        args.pgmap_owner = owner;
        args.flags = select.0 as usize;
        args.fault_page = fault_page;
        // SAFETY: The arrays hold `npages` slots and outlive the returned
        // migration; the caller holds the mmap lock for as long and
        // vouches for `fault_page`.
        to_result(unsafe { bindings::migrate_vma_setup(&mut args) })?;
        // INVARIANT: Setup succeeded and set `npages`.
        Ok(Self::collected(args, false, (start / PAGE_SIZE) as u64))
    }

    /// Collects the device pages `start_pfn..start_pfn + npages` for
    /// eviction back to system memory (`migrate_device_range()`), wherever
    /// they are mapped.
    ///
    /// # Safety
    ///
    /// Every PFN of the range is a page of a `dev_pagemap` the caller owns
    /// and keeps alive until the migration is finalized.
    pub unsafe fn device_range(
        start_pfn: usize,
        npages: usize,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Self> {
        let mut args = Self::prepare(npages, src, dst)?;
        args.npages = npages;
        // SAFETY: The arrays hold `npages` slots and outlive the returned
        // migration; the caller guarantees the PFNs are device pages.
        to_result(unsafe { bindings::migrate_device_range(args.src, start_pfn, npages) })?;
        // INVARIANT: The collected folios are locked until finalize.
        let mut this = Self::collected(args, true, start_pfn as u64);
        // Count entries, as `migrate_vma_setup()` does: a large folio,
        // collected in its head slot, counts once.
        this.args.cpages = this
            .src_slots()
            .iter()
            .filter(|&&raw| slot(raw).is_migrate())
            .count();
        Ok(this)
    }

    /// The arguments of a migration of `npages` slots, all zero but the
    /// arrays, `dst` emptied; both arrays must hold `npages` slots.
    fn prepare(
        npages: usize,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<bindings::migrate_vma> {
        if npages == 0 || src.len() < npages || dst.len() < npages {
            return Err(EINVAL);
        }
        dst[..npages].fill(0);
        // SAFETY: `migrate_vma` is plain data; all-zero is its empty value.
        let mut args: bindings::migrate_vma = unsafe { core::mem::zeroed() };
        args.src = src.as_mut_ptr();
        args.dst = dst.as_mut_ptr();
        Ok(args)
    }

    /// A migration just collected through `args`, which hold `npages`
    /// slots with `dst` empty; slot 0 stands for page `base`.
    fn collected(args: bindings::migrate_vma, device: bool, base: u64) -> Self {
        Self {
            args,
            device,
            base,
            moved: false,
            done: false,
            _arrays: PhantomData,
        }
    }

    /// The number of slots (pages) of the range.
    #[inline]
    pub fn npages(&self) -> usize {
        self.args.npages
    }

    /// The number of entries collected for migration.
    #[inline]
    pub fn cpages(&self) -> usize {
        self.args.cpages
    }

    /// The page slot 0 stands for: the first virtual page, or the first
    /// PFN of a device range.
    #[inline]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The `src` array, as collection filled it: a folio array.
    #[inline]
    pub fn src_slots(&self) -> &[u64] {
        // SAFETY: By the type invariant `npages` slots live for `'a`; the
        // driver does not write `src` after setup, and `usize` is `u64`.
        unsafe { slots(self.args.src, self.npages()) }
    }

    /// The `dst` array, as [`MigrateVmaArgs::set_destination`] filled it.
    #[inline]
    pub fn dst_slots(&self) -> &[u64] {
        // SAFETY: As in `src_slots()`; `dst` is written only through
        // `&mut self`, which cannot coexist with this borrow.
        unsafe { slots(self.args.dst, self.npages()) }
    }

    /// Slot `i` of `src`, 0 past the end.
    #[inline]
    pub fn src_raw(&self, i: usize) -> u64 {
        self.src_slots().get(i).copied().unwrap_or(0)
    }

    /// Slot `i` of `dst`, 0 past the end.
    #[inline]
    pub fn dst_raw(&self, i: usize) -> u64 {
        self.dst_slots().get(i).copied().unwrap_or(0)
    }

    /// The folio collected at slot `i`, if it may be migrated and the
    /// migration is not finalized.
    ///
    /// It is locked and referenced by the migration until finalize, which
    /// cannot run while `self` is borrowed.
    pub fn source(&self, i: usize) -> Option<&Folio> {
        // Finalize released the folios; the C engine leaves their slots.
        if self.done {
            return None;
        }
        let e = slot(self.src_raw(i));
        if !e.is_migrate() {
            return None;
        }
        let pfn = e.pfn()? as usize;
        // SAFETY: A collected entry names a folio the migration holds a
        // reference to until finalize (type invariant), and finalize takes
        // `&mut self`.
        Some(unsafe { Folio::from_pfn(pfn) })
    }

    /// Gives `folio` as the destination of slot `i`, a collected folio of
    /// the same order with no destination yet, before the pages move.
    ///
    /// The folio is locked here, and the lock and the reference pass to
    /// the migration, which releases them in finalize.
    pub fn set_destination(&mut self, i: usize, folio: ARef<Folio>) -> Result {
        if self.moved {
            return Err(EINVAL);
        }
        let src = self.source(i).ok_or(EINVAL)?;
        if src.order() != folio.order() || self.dst_raw(i) != 0 {
            return Err(EINVAL);
        }
        let locked = folio.trylock().ok_or(EBUSY)?;
        let entry = MigratePfn::new(locked.pfn() as u64, locked.order())
            .map_err(|_| EINVAL)?
            .raw() as usize;
        let _ = locked.into_raw_locked();
        // INVARIANT: The lock and the reference now belong to the `dst`
        // array.
        let _ = ARef::into_raw(folio);
        // SAFETY: `i` is in range (`source()` checked it); no borrow of
        // the array outlives this `&mut self`.
        unsafe { *self.args.dst.add(i) = entry };
        Ok(())
    }

    /// Moves the mappings and metadata to the destinations
    /// (`migrate_vma_pages()`), once.
    pub fn pages(&mut self) {
        if self.moved {
            return;
        }
        // SAFETY: Setup succeeded and pages has not run (type invariant).
        unsafe {
            if self.device {
                let a = &self.args;
                bindings::migrate_device_pages(a.src, a.dst, a.npages);
            } else {
                bindings::migrate_vma_pages(&mut self.args);
            }
        }
        self.moved = true;
    }

    /// Releases every destination before `pages()`, so that finalize
    /// restores every source where it was.
    fn release_destinations(&mut self) {
        for i in 0..self.npages() {
            let Some(pfn) = slot(self.dst_raw(i)).pfn() else {
                continue;
            };
            // SAFETY: By the type invariant the slot holds this folio's
            // lock and a reference, given up here with the slot; `i` is in
            // range.
            unsafe {
                let folio = bindings::pfn_folio(pfn as usize);
                bindings::folio_unlock(folio);
                bindings::folio_put(folio);
                *self.args.dst.add(i) = 0;
            }
        }
    }

    /// Restores what did not move and releases every folio
    /// (`migrate_vma_finalize()`), once; a migration whose pages have not
    /// moved gives up its destinations first and moves nothing.
    pub fn finalize(&mut self) {
        if !self.moved {
            self.release_destinations();
            // With no destination, `migrate_vma_pages()` clears the
            // migrate bit of every slot.
            self.pages();
        }
        if self.done {
            return;
        }
        // SAFETY: Setup succeeded and finalize has not run (type invariant).
        unsafe {
            if self.device {
                let a = &self.args;
                bindings::migrate_device_finalize(a.src, a.dst, a.npages);
            } else {
                bindings::migrate_vma_finalize(&mut self.args);
            }
        }
        self.done = true;
    }
}

impl Drop for MigrateVmaArgs<'_> {
    fn drop(&mut self) {
        self.finalize();
    }
}

/// `npages` slots at `array`, as `u64`.
///
/// # Safety
///
/// `array` holds `npages` slots that live, unwritten, for the returned
/// borrow.
#[inline]
unsafe fn slots<'s>(array: *mut usize, npages: usize) -> &'s [u64] {
    if npages == 0 {
        return &[];
    }
    // SAFETY: The caller's guarantee; `usize` is `u64` (asserted above).
    unsafe { core::slice::from_raw_parts(array.cast::<u64>(), npages) }
}
