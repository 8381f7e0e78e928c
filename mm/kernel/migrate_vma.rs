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
//! mappings. The calls themselves, and the slots, are the
//! [`MigrateVmaArgs`] binding's: this module is safe code over it.
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
    pfn::MIGRATE_PFN_MIGRATE,
};
use crate::migrate_vma_args::{slot, MigrateVmaArgs};
use core::ffi::c_void;
use kernel::{
    error::{code::EINVAL, Result},
    mm::MmapReadGuard,
    sync::aref::ARef,
};

pub use crate::migrate_vma_args::Select;

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
    #[inline]
    pub fn setup<'a>(
        mmap: &'a MmapReadGuard<'_>,
        start: usize,
        end: usize,
        select: Select,
        owner: *mut c_void,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Collected<'a>> {
        MigrateVmaArgs::setup(mmap, start, end, select, owner, src, dst).map(Collected::new)
    }

    /// Collects the device pages `start_pfn..start_pfn + npages` for
    /// eviction back to system memory (`migrate_device_range()`), wherever
    /// they are mapped.
    ///
    /// # Safety
    ///
    /// Every PFN of the range is a page of a `dev_pagemap` the caller owns
    /// and keeps alive until the migration is finalized.
    #[inline]
    pub unsafe fn device_range<'a>(
        start_pfn: usize,
        npages: usize,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Collected<'a>> {
        // SAFETY: The caller's guarantee is the binding's.
        unsafe { MigrateVmaArgs::device_range(start_pfn, npages, src, dst) }.map(Collected::new)
    }
}

/// A collected migration: sources locked and unmapped, destinations being
/// filled in.
pub struct Collected<'a> {
    args: MigrateVmaArgs<'a>,
}

impl<'a> Collected<'a> {
    /// The typestate of a migration just collected.
    #[inline]
    pub(crate) fn new(args: MigrateVmaArgs<'a>) -> Self {
        Collected { args }
    }

    /// `slots`, the `src` or `dst` array, as a folio array; the engine and
    /// `set_destination()` write only well-formed ones.
    fn folio_array<'s>(&self, slots: &'s [u64]) -> Option<FolioArray<'s>> {
        match FolioArray::with_base(slots, self.args.base()) {
            Ok(array) => Some(array),
            Err(_) => {
                kernel::warn_on!(true);
                None
            }
        }
    }

    /// The number of slots (pages) of the range.
    #[inline]
    pub fn npages(&self) -> usize {
        self.args.npages()
    }

    /// The number of entries collected for migration; a large folio,
    /// collected whole in its head slot, counts once (as in 7.3's C).
    #[inline]
    pub fn cpages(&self) -> usize {
        self.args.cpages()
    }

    /// The raw source entry of slot `i` (0 outside the range).
    #[inline]
    pub fn src_entry(&self, i: usize) -> usize {
        self.args.src_raw(i) as usize
    }

    /// The raw destination entry of slot `i` (0 outside the range or
    /// before [`Collected::set_destination`]).
    #[inline]
    pub fn dst_entry(&self, i: usize) -> usize {
        self.args.dst_raw(i) as usize
    }

    /// The folio collected at slot `i`, if it may be migrated.
    ///
    /// It is locked and referenced by the migration until finalize.
    #[inline]
    pub fn source(&self, i: usize) -> Option<&Folio> {
        self.args.source(i)
    }

    /// The collected folios as `(slot, folio)`, stepping over the tail
    /// slots of each large folio.
    pub fn sources(&self) -> impl Iterator<Item = (usize, &Folio)> + '_ {
        self.folio_array(self.args.src_slots())
            .into_iter()
            .flat_map(|array| array.iter())
            .filter_map(move |(i, _)| Some((i, self.source(i)?)))
    }

    /// The collected folios as extents: runs of folios that follow each
    /// other in the range and in physical memory, for a driver that copies
    /// one extent at a time.
    pub fn source_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.folio_array(self.args.src_slots())
            .into_iter()
            .flat_map(|array| array.extents_with(MIGRATE_PFN_MIGRATE))
    }

    /// The destinations set so far as extents: runs of folios that follow
    /// each other in the range and in device memory. A driver that places
    /// the folios of a migration next to each other, whatever system pages
    /// they come from, gets one extent and copies it in one go, gathering
    /// the sources.
    pub fn destination_extents(&self) -> impl Iterator<Item = Extent> + '_ {
        self.folio_array(self.args.dst_slots())
            .into_iter()
            .flat_map(|array| array.extents())
    }

    /// The copies the destinations set so far ask for: runs of pages that
    /// are contiguous in the range, in the sources and in the destinations,
    /// one device copy each.
    pub fn copy_runs(&self) -> impl Iterator<Item = CopyRun> + '_ {
        let src = self.folio_array(self.args.src_slots());
        let dst = self.folio_array(self.args.dst_slots());
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
    #[inline]
    pub fn set_destination(&mut self, i: usize, folio: ARef<Folio>) -> Result {
        self.args.set_destination(i, folio)
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
        self.args.pages();
        Migrated { args: self.args }
    }
}

/// A migration whose pages have moved; finalize (or drop) to complete it.
pub struct Migrated<'a> {
    args: MigrateVmaArgs<'a>,
}

impl Migrated<'_> {
    /// Whether slot `i` was migrated.
    #[inline]
    pub fn is_migrated(&self, i: usize) -> bool {
        slot(self.args.src_raw(i)).is_migrate() && slot(self.args.dst_raw(i)).is_valid()
    }

    /// Removes the migration entries, unlocks and releases every folio
    /// (`migrate_vma_finalize()`).
    #[inline]
    pub fn finalize(mut self) {
        self.args.finalize();
    }
}
