// SPDX-License-Identifier: GPL-2.0

//! `migrate_vma_*` and `migrate_device_*` for drivers, as a typestate.
//!
//! [`MigrateVma::setup`] collects a range of a VMA under the mmap read
//! lock, and [`MigrateVma::device_range`] a range of device pages for
//! eviction; both return a [`Collected`] migration. The driver reads the
//! source folios, copies their data and gives a locked destination for
//! each one it migrates; [`Collected::pages`] moves the mappings and
//! returns a [`Migrated`] one, and [`Migrated::finalize`] (or dropping it)
//! restores what did not move and releases every folio. Finalizing twice
//! or skipping `pages` does not compile; dropping a [`Collected`]
//! migration releases the destinations and restores the original
//! mappings.
//!
//! # Examples
//!
//! Migrate `start..end` to new folios, a destination per collected folio
//! (the KUnit test `system_to_system_4k` does this on a real user mm):
//!
//! ```ignore
//! let mmap = mm.mmap_read_lock();
//! let mut m = MigrateVma::setup(&mmap, start, end, Select::SYSTEM, owner, &mut src, &mut dst)?;
//! for i in 0..m.npages() {
//!     let Some(from) = m.source(i) else { continue };
//!     let to = Folio::alloc_movable(from.order())?;
//!     copy(&to, from);
//!     m.set_destination(i, to)?;
//! }
//! m.pages().finalize();
//! ```
//!
//! Or an extent at a time, into one contiguous device range per extent
//! (the KUnit test `destinations_set_by_extent` runs this code; module
//! examples are not built by rustdoc in the kernel, so the tests that
//! hold them are what keeps them compiling):
//!
//! ```ignore
//! let mut extents = KVec::new();
//! for e in m.source_extents() {
//!     extents.push(e, GFP_KERNEL)?;
//! }
//! for e in extents.iter() {
//!     // The driver's: `e.npages` contiguous pages of device memory.
//!     let first = device_run(e.npages)?;
//!     m.set_extent_destinations(e, |offset, order| device_folio(first + offset, order))?;
//! }
//! ```
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h)

use crate::folio::Folio;
use crate::migrate_core::{
    extent::{CopyRun, CopyRuns, Extent},
    folio_array::FolioArray,
    pfn::{MigratePfn, MIGRATE_PFN_MIGRATE},
};
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
};

/// Decodes a slot of the `src` or `dst` array; one that does not decode
/// reads as empty.
#[inline]
fn slot(raw: usize) -> MigratePfn {
    MigratePfn::from_raw_or_empty(raw as u64)
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

/// Entry point of the typestate.
pub struct MigrateVma;

impl MigrateVma {
    /// Collects `start..end`, which must lie in one VMA, for migration
    /// (`migrate_vma_setup()`).
    ///
    /// `src` and `dst` need one slot per page of the range. `owner` is the
    /// `pgmap_owner` cookie of the driver (null for none). The mmap read
    /// lock `mmap` stays held until the migration is finalized: a per-VMA
    /// lock is not enough for `migrate_vma_setup()`.
    // `owner` is a cookie compared with the pagemap's, never dereferenced.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    pub fn setup<'a>(
        mmap: &'a MmapReadGuard<'_>,
        start: usize,
        end: usize,
        select: Select,
        owner: *mut c_void,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Collected<'a>> {
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
    /// The mmap lock of `vma`'s mm is held for `'a`; `fault_page`, if not
    /// null, is the page a fault path holds locked across the migration.
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn setup_in<'a>(
        vma: &VmaRef,
        start: usize,
        end: usize,
        select: Select,
        owner: *mut c_void,
        src: &'a mut [usize],
        dst: &'a mut [usize],
        fault_page: *mut bindings::page,
    ) -> Result<Collected<'a>> {
        let npages = (end - start) / PAGE_SIZE;
        if npages == 0 || src.len() < npages || dst.len() < npages {
            return Err(EINVAL);
        }
        dst[..npages].fill(0);
        // SAFETY: `migrate_vma` is plain data; all-zero is its empty value.
        let mut args: bindings::migrate_vma = unsafe { core::mem::zeroed() };
        args.vma = vma.as_ptr();
        args.src = src.as_mut_ptr();
        args.dst = dst.as_mut_ptr();
        args.start = start;
        args.end = end;
        args.pgmap_owner = owner;
        args.flags = select.0 as usize;
        args.fault_page = fault_page;
        let base = (start / PAGE_SIZE) as u64;
        // SAFETY: The arrays hold `npages` slots and outlive the returned
        // migration; the caller holds the mmap lock for as long and
        // vouches for `fault_page`.
        to_result(unsafe { bindings::migrate_vma_setup(&mut args) })?;
        // INVARIANT: Setup succeeded: the collected folios are locked and
        // unmapped until finalize.
        Ok(Collected {
            inner: Inner {
                args,
                device: false,
                base,
                moved: false,
                done: false,
                _arrays: PhantomData,
            },
        })
    }

    /// Collects the device pages `start_pfn..start_pfn + npages` for
    /// eviction back to system memory (`migrate_device_range()`), wherever
    /// they are mapped.
    ///
    /// # Safety
    ///
    /// Every PFN of the range is a page of a `dev_pagemap` the caller owns
    /// and keeps alive until the migration is finalized.
    pub unsafe fn device_range<'a>(
        start_pfn: usize,
        npages: usize,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Collected<'a>> {
        if npages == 0 || src.len() < npages || dst.len() < npages {
            return Err(EINVAL);
        }
        dst[..npages].fill(0);
        // SAFETY: `migrate_vma` is plain data; all-zero is its empty value.
        let mut args: bindings::migrate_vma = unsafe { core::mem::zeroed() };
        args.src = src.as_mut_ptr();
        args.dst = dst.as_mut_ptr();
        args.npages = npages;
        // SAFETY: The arrays hold `npages` slots and outlive the returned
        // migration; the caller guarantees the PFNs are device pages.
        to_result(unsafe { bindings::migrate_device_range(args.src, start_pfn, npages) })?;
        // Count entries, as `migrate_vma_setup()` does: a large folio,
        // collected in its head slot, counts once.
        args.cpages = (0..npages)
            // SAFETY: `i` is below `npages`.
            .filter(|&i| slot(unsafe { *args.src.add(i) }).is_migrate())
            .count();
        // INVARIANT: The collected folios are locked until finalize.
        Ok(Collected {
            inner: Inner {
                args,
                device: true,
                base: start_pfn as u64,
                moved: false,
                done: false,
                _arrays: PhantomData,
            },
        })
    }
}

/// The `struct migrate_vma` of a migration in flight.
///
/// # Invariants
///
/// `args` was passed to a successful `migrate_vma_setup()` (or, if
/// `device`, its arrays to `migrate_device_range()`), its arrays live for
/// `'a`, `migrate_*_pages()` has run iff `moved`, and
/// `migrate_*_finalize()` has run iff `done`. Slot 0 stands for page
/// `base`: the first virtual page, or the first PFN if `device`.
struct Inner<'a> {
    args: bindings::migrate_vma,
    device: bool,
    base: u64,
    moved: bool,
    done: bool,
    _arrays: PhantomData<&'a mut [usize]>,
}

impl Inner<'_> {
    fn npages(&self) -> usize {
        self.args.npages
    }

    /// Slot `i` of `src`, 0 past the end.
    fn src(&self, i: usize) -> usize {
        self.src_slots().get(i).map_or(0, |&slot| slot as usize)
    }

    /// The `src` array: the engine filled it as a folio array.
    fn src_slots(&self) -> &[u64] {
        if self.npages() == 0 {
            return &[];
        }
        // SAFETY: The invariant keeps `npages` slots alive for `'a`; the
        // driver does not write `src` after setup, and `usize` is `u64`.
        unsafe { core::slice::from_raw_parts(self.args.src.cast::<u64>(), self.npages()) }
    }

    /// The `dst` array, as the driver filled it through
    /// [`Collected::set_destination`].
    fn dst_slots(&self) -> &[u64] {
        if self.npages() == 0 {
            return &[];
        }
        // SAFETY: As in `src_slots()`; the driver writes `dst` only through
        // `&mut Collected`, which cannot coexist with this borrow.
        unsafe { core::slice::from_raw_parts(self.args.dst.cast::<u64>(), self.npages()) }
    }

    /// `slots` as a folio array; the engine and `set_destination()` write
    /// only well-formed ones.
    fn folio_array<'s>(&self, slots: &'s [u64]) -> Option<FolioArray<'s>> {
        match FolioArray::with_base(slots, self.base) {
            Ok(array) => Some(array),
            Err(_) => {
                kernel::warn_on!(true);
                None
            }
        }
    }

    /// Slot `i` of `dst`, 0 past the end.
    fn dst(&self, i: usize) -> usize {
        self.dst_slots().get(i).map_or(0, |&slot| slot as usize)
    }

    fn pages(&mut self) {
        if !self.moved {
            // SAFETY: Setup succeeded and pages has not run.
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
    }

    /// Abandons a migration before `pages()`: releases the destinations so
    /// that finalize restores every source where it was.
    fn abandon(&mut self) {
        for i in 0..self.npages() {
            if let Some(pfn) = slot(self.dst(i)).pfn() {
                // SAFETY: Set by `set_destination()`, which handed us the
                // lock and a reference of this folio; `i` is in range.
                unsafe {
                    let folio = bindings::pfn_folio(pfn as usize);
                    bindings::folio_unlock(folio);
                    bindings::folio_put(folio);
                    *self.args.dst.add(i) = 0;
                }
            }
        }
        // With no destination, `migrate_vma_pages()` clears the migrate
        // bit of every slot.
        self.pages();
    }

    fn finalize(&mut self) {
        if !self.moved {
            self.abandon();
        }
        if !self.done {
            // SAFETY: Setup succeeded and finalize has not run.
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
}

impl Drop for Inner<'_> {
    fn drop(&mut self) {
        self.finalize();
    }
}

/// A collected migration: sources locked and unmapped, destinations being
/// filled in.
pub struct Collected<'a> {
    inner: Inner<'a>,
}

impl<'a> Collected<'a> {
    /// The number of slots (pages) of the range.
    #[inline]
    pub fn npages(&self) -> usize {
        self.inner.npages()
    }

    /// The number of entries collected for migration; a large folio,
    /// collected whole in its head slot, counts once (as in 7.3's C).
    #[inline]
    pub fn cpages(&self) -> usize {
        self.inner.args.cpages
    }

    /// The raw source entry of slot `i` (0 outside the range).
    #[inline]
    pub fn src_entry(&self, i: usize) -> usize {
        self.inner.src(i)
    }

    /// The raw destination entry of slot `i` (0 outside the range or
    /// before [`Collected::set_destination`]).
    #[inline]
    pub fn dst_entry(&self, i: usize) -> usize {
        self.inner.dst(i)
    }

    /// The folio collected at slot `i`, if it may be migrated.
    ///
    /// It is locked and referenced by the migration until finalize.
    pub fn source(&self, i: usize) -> Option<&Folio> {
        let e = slot(self.inner.src(i));
        if !e.is_migrate() {
            return None;
        }
        let pfn = e.pfn()? as usize;
        // SAFETY: A collected entry names a folio the migration holds a
        // reference to until finalize, which cannot run while `self` is
        // borrowed.
        Some(unsafe { Folio::from_pfn(pfn) })
    }

    /// The collected folios as `(slot, folio)`, stepping over the tail
    /// slots of each large folio.
    pub fn sources(&self) -> impl Iterator<Item = (usize, &Folio)> + '_ {
        self.inner
            .folio_array(self.inner.src_slots())
            .into_iter()
            .flat_map(|array| array.iter())
            .filter_map(move |(i, _)| Some((i, self.source(i)?)))
    }

    /// The collected folios as extents: runs of folios that follow each
    /// other in the range and in physical memory, for a driver that copies
    /// one extent at a time.
    pub fn source_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.inner
            .folio_array(self.inner.src_slots())
            .into_iter()
            .flat_map(|array| array.extents_with(MIGRATE_PFN_MIGRATE))
    }

    /// The destinations set so far as extents: runs of folios that follow
    /// each other in the range and in device memory. A driver that places
    /// the folios of a migration next to each other, whatever system pages
    /// they come from, gets one extent and copies it in one go, gathering
    /// the sources.
    pub fn destination_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.inner
            .folio_array(self.inner.dst_slots())
            .into_iter()
            .flat_map(|array| array.extents())
    }

    /// The copies the destinations set so far ask for: runs of pages that
    /// are contiguous in the range, in the sources and in the destinations,
    /// one device copy each.
    pub fn copy_runs(&self) -> impl Iterator<Item = CopyRun> + '_ {
        let src = self.inner.folio_array(self.inner.src_slots());
        let dst = self.inner.folio_array(self.inner.dst_slots());
        src.zip(dst)
            .and_then(|(src, dst)| CopyRuns::new(src, dst).ok())
            .into_iter()
            .flatten()
    }

    /// Gives `folio` as the destination of slot `i`.
    ///
    /// The folio must be as large as the source and not shared: it is
    /// locked here, and the lock and the reference pass to the migration,
    /// which releases them in finalize. The driver copies the data before
    /// [`Collected::pages`].
    pub fn set_destination(&mut self, i: usize, folio: ARef<Folio>) -> Result {
        let src = self.source(i).ok_or(EINVAL)?;
        if src.order() != folio.order() || self.inner.dst(i) != 0 {
            return Err(EINVAL);
        }
        let locked = folio.trylock().ok_or(EBUSY)?;
        let entry = MigratePfn::new(locked.pfn() as u64, locked.order())
            .map_err(|_| EINVAL)?
            .raw() as usize;
        let _ = locked.into_raw_locked();
        // The reference now belongs to the dst array.
        let _ = ARef::into_raw(folio);
        // SAFETY: `i` is in range (`source()` checked it).
        unsafe { *self.inner.args.dst.add(i) = entry };
        Ok(())
    }

    /// Gives each folio of `extent`, one of [`Collected::source_extents`],
    /// the destination `alloc(offset, order)` returns for the folio at page
    /// `offset` of the extent, of `order`: a driver that answers with the
    /// folio at page `offset` of one contiguous device range copies the
    /// extent in one go. Stops at the first error; the destinations set
    /// until then stay, and are released if the migration is dropped.
    pub fn set_extent_destinations(
        &mut self,
        extent: &Extent,
        mut alloc: impl FnMut(usize, u32) -> Result<ARef<Folio>>,
    ) -> Result {
        let mut i = extent.index;
        while i < extent.end_index() {
            let order = self.source(i).ok_or(EINVAL)?.order();
            self.set_destination(i, alloc(i - extent.index, order)?)?;
            i += 1 << order;
        }
        Ok(())
    }

    /// Moves the mappings and metadata to the destinations
    /// (`migrate_vma_pages()`).
    pub fn pages(mut self) -> Migrated<'a> {
        self.inner.pages();
        Migrated { inner: self.inner }
    }
}

/// A migration whose pages have moved; finalize (or drop) to complete it.
pub struct Migrated<'a> {
    inner: Inner<'a>,
}

impl Migrated<'_> {
    /// Whether slot `i` was migrated.
    #[inline]
    pub fn is_migrated(&self, i: usize) -> bool {
        slot(self.inner.src(i)).is_migrate() && slot(self.inner.dst(i)).is_valid()
    }

    /// Removes the migration entries, unlocks and releases every folio
    /// (`migrate_vma_finalize()`).
    #[inline]
    pub fn finalize(mut self) {
        self.inner.finalize();
    }
}
