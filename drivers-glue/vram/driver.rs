// SPDX-License-Identifier: GPL-2.0

//! The folio-migrate VRAM driver: migrations between user memory and a
//! device's VRAM, by folio and by extent, on the safe Rust API alone.
//!
//! The VRAM is a [`DeviceMemory`]: contiguous, in 2 MiB chunks, with the
//! folios of one migration placed next to each other whatever system
//! pages they come from. A migration to the VRAM gives every collected
//! folio (4 KiB, mTHP or THP, never split) a device folio of its order,
//! then copies each extent of destinations in one go, gathering its
//! sources, as a DMA engine given a scatter list would. When no chunk has
//! room, the migration is abandoned (nothing has moved yet), the least
//! recently allocated chunk is evicted to system memory, and the migration
//! is tried again; it fails with `ENOMEM` only when nothing is left to
//! evict, with the memory where it was.

use crate::device_memory::DeviceMemory;
use crate::migrate_core::pfn::PMD_NR;
use crate::migrate_vma::{Collected, MigrateVma, Select};
use crate::vram_core::Error as ChunkError;
use core::{
    ffi::c_void,
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
};
use kernel::{mm::MmapReadGuard, page::PAGE_SIZE, prelude::*};

/// What the driver did, as its statistics report it.
#[derive(Debug, Default)]
pub struct VramStats {
    /// Copies issued: one per extent of destinations.
    pub copies: AtomicUsize,
    /// Pages migrated to the VRAM.
    pub pages_in: AtomicUsize,
    /// Pages migrated back to system memory, evictions included.
    pub pages_out: AtomicUsize,
    /// Chunks evicted to make room or on request.
    pub evictions: AtomicUsize,
}

/// A device's VRAM and what the driver did with it.
pub struct Vram {
    mem: DeviceMemory,
    stats: VramStats,
}

/// The slots of one migration window: a PMD, so that a 2 MiB THP is
/// collected whole.
const WINDOW: usize = PMD_NR;

/// Why a migration window did not complete.
enum Attempt {
    /// No room: evict, then try again.
    Full,
    /// Any other error, returned as it is.
    Failed(Error),
}

impl From<Error> for Attempt {
    fn from(e: Error) -> Self {
        Attempt::Failed(e)
    }
}

/// Checks that `start..end` is a page-aligned range of one VMA before
/// anything migrates: `EINVAL` for an empty or unaligned range or one past
/// its VMA's end, `EFAULT` when no VMA holds `start`.
fn check_range(mmap: &MmapReadGuard<'_>, start: usize, end: usize) -> Result {
    if start >= end || start % PAGE_SIZE != 0 || end % PAGE_SIZE != 0 {
        return Err(EINVAL);
    }
    if mmap.vma_lookup(start).ok_or(EFAULT)?.end() < end {
        return Err(EINVAL);
    }
    Ok(())
}

/// The end of the migration window that starts at `at`: the next PMD
/// boundary, or `end`.
fn window_end(at: usize, end: usize) -> usize {
    core::cmp::min(end, (at / (WINDOW * PAGE_SIZE) + 1) * WINDOW * PAGE_SIZE)
}

impl Vram {
    /// VRAM of `nr_chunks` chunks of 2 MiB, owned by `owner`.
    pub fn new(nr_chunks: usize, owner: NonNull<c_void>) -> Result<Self> {
        Ok(Self {
            mem: DeviceMemory::new(nr_chunks, owner)?,
            stats: VramStats::default(),
        })
    }

    /// The driver's statistics.
    #[inline]
    pub fn stats(&self) -> &VramStats {
        &self.stats
    }

    /// Chunks with a live folio.
    #[inline]
    pub fn chunks_in_use(&self) -> usize {
        self.mem.chunks_in_use()
    }

    /// The chunks of the VRAM.
    #[inline]
    pub fn nr_chunks(&self) -> usize {
        self.mem.nr_chunks()
    }

    /// Pages CPU faults took back to system memory.
    #[inline]
    pub fn faulted_pages(&self) -> usize {
        self.mem.faulted_pages()
    }

    /// Migrates `start..end`, page aligned and in one VMA, to the VRAM;
    /// returns the pages migrated.
    pub fn migrate_to_vram(
        &self,
        mmap: &MmapReadGuard<'_>,
        start: usize,
        end: usize,
    ) -> Result<usize> {
        check_range(mmap, start, end)?;
        let mut src = KVec::from_elem(0usize, WINDOW, GFP_KERNEL)?;
        let mut dst = KVec::from_elem(0usize, WINDOW, GFP_KERNEL)?;
        let mut done = 0;
        let mut at = start;
        while at < end {
            let next = window_end(at, end);
            done += loop {
                match self.window_to_vram(mmap, at, next, &mut src, &mut dst) {
                    Ok(n) => break n,
                    Err(Attempt::Full) => self.evict_oldest()?,
                    Err(Attempt::Failed(e)) => return Err(e),
                }
            };
            at = next;
        }
        Ok(done)
    }

    /// Evicts the least recently allocated chunk; `ENOMEM` when no chunk
    /// is in use or the eviction freed none (a folio of it stayed, e.g.
    /// pinned).
    fn evict_oldest(&self) -> Result {
        let chunk = self.mem.oldest_chunk().ok_or(ENOMEM)?;
        let before = self.mem.chunks_in_use();
        self.evict_chunk(chunk)?;
        if self.mem.chunks_in_use() >= before {
            return Err(ENOMEM);
        }
        Ok(())
    }

    /// One window of [`Vram::migrate_to_vram`].
    fn window_to_vram(
        &self,
        mmap: &MmapReadGuard<'_>,
        start: usize,
        end: usize,
        src: &mut [usize],
        dst: &mut [usize],
    ) -> core::result::Result<usize, Attempt> {
        let select = Select::SYSTEM | Select::COMPOUND | Select::MTHP;
        let mut m = MigrateVma::setup(mmap, start, end, select, self.mem.owner(), src, dst)?;
        let mut wanted = KVec::new();
        for (i, from) in m.sources() {
            wanted
                .push((i, from.order()), GFP_KERNEL)
                .map_err(|_| Attempt::Failed(ENOMEM))?;
        }
        for &(i, order) in wanted.iter() {
            let to = match self.mem.alloc(order) {
                Ok(to) => to,
                // Dropping `m` gives the destinations back and restores
                // the sources.
                Err(ChunkError::Exhausted) => return Err(Attempt::Full),
                Err(_) => return Err(Attempt::Failed(ENOMEM)),
            };
            m.set_destination(i, to)?;
        }
        self.copy_extents_in(&m)?;
        let moved = m.pages();
        let pages = wanted
            .iter()
            .filter(|&&(i, _)| moved.is_migrated(i))
            .map(|&(_, order)| 1usize << order)
            .sum();
        moved.finalize();
        self.stats.pages_in.fetch_add(pages, Ordering::Relaxed);
        Ok(pages)
    }

    /// Copies the sources of `m` into its destinations, one copy per
    /// extent of destinations.
    fn copy_extents_in(&self, m: &Collected<'_>) -> Result {
        for extent in m.destination_extents() {
            let mut i = extent.index;
            while i < extent.end_index() {
                let from = m.source(i).ok_or(EINVAL)?;
                let to = extent.pfn as usize + (i - extent.index);
                self.mem.copy_to_device(to, from, 0, from.nr_pages())?;
                i += from.nr_pages();
            }
            self.stats.copies.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Migrates the pages of `start..end` that are in the VRAM back to
    /// system memory; returns the pages migrated.
    pub fn migrate_to_ram(
        &self,
        mmap: &MmapReadGuard<'_>,
        start: usize,
        end: usize,
    ) -> Result<usize> {
        check_range(mmap, start, end)?;
        let mut src = KVec::from_elem(0usize, WINDOW, GFP_KERNEL)?;
        let mut dst = KVec::from_elem(0usize, WINDOW, GFP_KERNEL)?;
        let mut done = 0;
        let mut at = start;
        while at < end {
            let next = window_end(at, end);
            let select = Select::DEVICE_PRIVATE | Select::COMPOUND | Select::MTHP;
            let owner = self.mem.owner();
            let mut m = MigrateVma::setup(mmap, at, next, select, owner, &mut src, &mut dst)?;
            let pages = self.mem.to_system(&mut m)?;
            m.pages().finalize();
            self.stats.pages_out.fetch_add(pages, Ordering::Relaxed);
            done += pages;
            at = next;
        }
        Ok(done)
    }

    /// Evicts chunk `chunk` to system memory, wherever its folios are
    /// mapped.
    pub fn evict_chunk(&self, chunk: usize) -> Result {
        let mut src = KVec::from_elem(0usize, WINDOW, GFP_KERNEL)?;
        let mut dst = KVec::from_elem(0usize, WINDOW, GFP_KERNEL)?;
        let mut m = self.mem.evict_chunk(chunk, &mut src, &mut dst)?;
        let pages = self.mem.to_system(&mut m)?;
        m.pages().finalize();
        self.stats.pages_out.fetch_add(pages, Ordering::Relaxed);
        self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Evicts every chunk in use, as the driver must before its VRAM goes;
    /// `EBUSY` when a folio stays (e.g. pinned).
    pub fn evict_all(&self) -> Result {
        for _ in 0..self.mem.nr_chunks() {
            match self.mem.oldest_chunk() {
                Some(chunk) => self.evict_chunk(chunk)?,
                None => return Ok(()),
            }
        }
        match self.mem.oldest_chunk() {
            Some(_) => Err(EBUSY),
            None => Ok(()),
        }
    }
}

impl Drop for Vram {
    fn drop(&mut self) {
        // The pagemap cannot go while a device folio is mapped: unmapping
        // it waits for every folio to be freed.
        if self.evict_all().is_err() {
            pr_warn!("VRAM folios stay mapped; waiting for them to be freed\n");
        }
    }
}
