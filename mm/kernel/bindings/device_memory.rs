// SPDX-License-Identifier: GPL-2.0

//! Device memory simulated with system memory, for drivers without a
//! device: one physically contiguous run of system pages stands for the
//! device's VRAM, under a device-private pagemap of the same size mapped
//! 1:1 onto it, so that a run of device PFNs is one run of VRAM and one
//! copy, as a DMA engine would see it. Device folios come from a
//! [`ChunkAllocator`], which places the folios of one migration next to
//! each other.
//!
//! [`DeviceMemory`] hands out device folios safely (the allocator never
//! gives out a page twice, which is what initialising a device folio
//! requires), takes them back when their last reference goes, copies
//! between them and system folios, collects a chunk for eviction, and
//! migrates the folio of a CPU fault back to system memory (whole, with
//! the faulting page as the migration's `fault_page`, so that the fault
//! path's trylock-and-wait rules hold).
//!
//! C headers: [`include/linux/memremap.h`](srctree/include/linux/memremap.h),
//! [`include/linux/gfp.h`](srctree/include/linux/gfp.h)

use crate::folio::Folio;
use crate::migrate_vma::{Collected, MigrateVma, Select};
use crate::pagemap::{DevicePrivateOps, DevicePrivatePagemap, PagemapFlags};
use crate::vm_fault::VmFault;
use crate::vram_core::{Chunk, ChunkAllocator, Error as ChunkError, CHUNK_PAGES};
use core::{
    ffi::c_void,
    ptr::NonNull,
    sync::atomic::{AtomicUsize, Ordering},
};
use kernel::{
    bindings, new_spinlock,
    page::PAGE_SIZE,
    prelude::*,
    sync::{aref::ARef, Arc, SpinLock},
};

/// The chunk allocator, shared by the allocating side and the pagemap's
/// `folio_free` callback.
type Chunks = Arc<SpinLock<ChunkAllocator<KVec<Chunk>>>>;

/// A physically contiguous run of system pages, freed on drop.
///
/// # Invariants
///
/// `first_pfn..first_pfn + nr_pages` were allocated together by
/// `alloc_contig_pages()` and are owned by this value.
struct ContigPages {
    first_pfn: usize,
    nr_pages: usize,
}

impl ContigPages {
    /// Allocates `nr_pages` contiguous pages on node 0, or fails with
    /// `ENOMEM`.
    fn alloc(nr_pages: usize) -> Result<Self> {
        // SAFETY: No preconditions; a null nodemask means any zone of the
        // node.
        let page = unsafe {
            bindings::alloc_contig_pages_noprof(
                nr_pages,
                bindings::GFP_KERNEL,
                0,
                core::ptr::null_mut(),
            )
        };
        if page.is_null() {
            return Err(ENOMEM);
        }
        // SAFETY: `page` is a valid page just allocated.
        let first_pfn = unsafe { bindings::page_to_pfn(page) } as usize;
        // INVARIANT: The run was just allocated, and is ours.
        Ok(Self {
            first_pfn,
            nr_pages,
        })
    }

    /// The page `n` of the run, mapped for the duration of `f`.
    fn with_page<R>(&self, n: usize, f: impl FnOnce(*mut u8) -> R) -> Result<R> {
        if n >= self.nr_pages {
            return Err(EINVAL);
        }
        // SAFETY: `first_pfn + n` is a page of the run (type invariant).
        let page = unsafe { bindings::pfn_to_page(self.first_pfn + n) };
        // SAFETY: `page` is a valid page; the mapping is dropped below,
        // before any other local mapping made in `f` is still live.
        let addr = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
        let r = f(addr);
        // SAFETY: `addr` is the local mapping made above.
        unsafe { bindings::kunmap_local(addr.cast()) };
        Ok(r)
    }
}

impl Drop for ContigPages {
    fn drop(&mut self) {
        // SAFETY: The run is ours and nothing uses it any more: it is
        // dropped with the pagemap's callbacks, after the pagemap was
        // unmapped, which waits until every device folio is freed.
        unsafe { bindings::free_contig_range(self.first_pfn, self.nr_pages) };
    }
}

/// Maps page `n` of `folio` for the duration of `f`.
fn with_folio_page<R>(folio: &Folio, n: usize, f: impl FnOnce(*mut u8) -> R) -> Result<R> {
    if n >= folio.nr_pages() || folio.is_zone_device() {
        return Err(EINVAL);
    }
    // SAFETY: `n` is a page of `folio`, which is system memory the caller
    // holds a reference to.
    let addr = unsafe { bindings::kmap_local_page(folio.head_page().add(n)) }.cast::<u8>();
    let r = f(addr);
    // SAFETY: `addr` is the local mapping made above.
    unsafe { bindings::kunmap_local(addr.cast()) };
    Ok(r)
}

/// The pagemap's callbacks and the memory behind it: freed folios go back
/// to the allocator, and a CPU fault takes its folio back to system memory.
///
/// The pagemap owns it, so the data pages are freed only after the pagemap
/// is unmapped, which waits for every device folio.
struct Backend {
    chunks: Chunks,
    data: ContigPages,
    /// The first PFN of the pagemap, set once it is mapped.
    first_pfn: AtomicUsize,
    /// Pages a CPU fault took back to system memory.
    faulted: AtomicUsize,
}

impl Backend {
    /// The data page of device PFN `pfn`.
    fn data_page(&self, pfn: usize) -> Result<usize> {
        pfn.checked_sub(self.first_pfn.load(Ordering::Relaxed))
            .filter(|&n| n < self.data.nr_pages)
            .ok_or(EINVAL)
    }

    /// See [`DeviceMemory::copy_from_device`].
    fn copy_from_device(&self, from: usize, to: &Folio, first: usize, n: usize) -> Result {
        let at = self.data_page(from)?;
        for k in 0..n {
            with_folio_page(to, first + k, |dst| {
                self.data.with_page(at + k, |src| {
                    // SAFETY: Both are mapped pages, distinct (one is device
                    // data, the other system memory).
                    unsafe { core::ptr::copy_nonoverlapping(src, dst, PAGE_SIZE) }
                })
            })??;
        }
        Ok(())
    }

    /// See [`DeviceMemory::to_system`].
    fn to_system(&self, m: &mut Collected<'_>) -> Result<usize> {
        let mut pages = 0;
        // Slot by slot rather than through `sources()`, which would borrow
        // `m` across `set_destination()`: a tail slot has no source.
        for i in 0..m.npages() {
            let Some((pfn, order)) = m.source(i).map(|from| (from.pfn(), from.order())) else {
                continue;
            };
            let to = Folio::alloc_movable(order)?;
            self.copy_from_device(pfn, &to, 0, 1 << order)?;
            m.set_destination(i, to)?;
            pages += 1usize << order;
        }
        Ok(pages)
    }

    /// Migrates the folio of a CPU fault back to system memory.
    fn fault_to_ram(&self, fault: &VmFault) -> Result {
        // A 4 KiB fault needs one slot in each array: no allocation.
        let n = fault.migrate_vma_slots();
        let (mut src_one, mut dst_one) = ([0usize; 1], [0usize; 1]);
        let (mut src_many, mut dst_many);
        let (src, dst): (&mut [usize], &mut [usize]) = if n == 1 {
            (&mut src_one, &mut dst_one)
        } else {
            src_many = KVec::from_elem(0usize, n, GFP_KERNEL)?;
            dst_many = KVec::from_elem(0usize, n, GFP_KERNEL)?;
            (&mut src_many, &mut dst_many)
        };
        let select = Select::DEVICE_PRIVATE | Select::COMPOUND | Select::MTHP;
        // SAFETY: The faulting page is a referenced page of our pagemap.
        let owner = unsafe { Folio::from_page(fault.page()) }
            .pgmap_owner()
            .ok_or(EINVAL)?;
        let mut m = fault.migrate_vma_setup(select, owner, src, dst)?;
        let pages = self.to_system(&mut m)?;
        m.pages().finalize();
        self.faulted.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }
}

impl DevicePrivateOps for Backend {
    // `fault_to_ram()` takes no lock but the chunk allocator's and uses no
    // VMA but the fault's.
    const FLAGS: PagemapFlags = PagemapFlags::VMA_LOCKED_FAULTS;

    fn folio_free(&self, folio: &Folio) {
        let page = folio.pfn() - self.first_pfn.load(Ordering::Relaxed);
        // A folio the allocator did not hand out cannot be freed here: the
        // pagemap has no other source of folios.
        let freed = self.chunks.lock().free(page, folio.order());
        kernel::warn_on!(freed.is_err());
    }

    fn migrate_to_ram(&self, vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The pagemap calls this for a fault on one of its pages,
        // valid for the call, with no page-table lock held, under the mmap
        // lock or, as our flags allow, the VMA lock.
        let fault = unsafe { VmFault::from_raw(vmf) };
        match self.fault_to_ram(fault) {
            Ok(()) => 0,
            Err(e) if e == ENOMEM => bindings::vm_fault_reason_VM_FAULT_OOM,
            Err(_) => bindings::vm_fault_reason_VM_FAULT_SIGBUS,
        }
    }
}

/// Device memory of whole 2 MiB chunks: a device-private pagemap over a
/// contiguous run of system pages that holds its data.
///
/// Device PFN `first_pfn() + n` stands for page `n` of the run.
pub struct DeviceMemory {
    pagemap: Pin<KBox<DevicePrivatePagemap<Backend>>>,
    chunks: Chunks,
}

impl DeviceMemory {
    /// Device memory of `nr_chunks` chunks of 2 MiB owned by `owner` (the
    /// `pgmap_owner` of migrations to and from it): the data pages are
    /// allocated, the pagemap mapped, every chunk free.
    pub fn new(nr_chunks: usize, owner: NonNull<c_void>) -> Result<Self> {
        let nr_pages = nr_chunks.checked_mul(CHUNK_PAGES).ok_or(EINVAL)?;
        if nr_pages == 0 {
            return Err(EINVAL);
        }
        let data = ContigPages::alloc(nr_pages)?;
        let all = KVec::from_elem(Chunk::FREE, nr_chunks, GFP_KERNEL)?;
        let chunks = Arc::pin_init(new_spinlock!(ChunkAllocator::new(all)), GFP_KERNEL)?;
        let backend = Backend {
            chunks: chunks.clone(),
            data,
            first_pfn: AtomicUsize::new(0),
            faulted: AtomicUsize::new(0),
        };
        let pagemap = DevicePrivatePagemap::new(nr_pages * PAGE_SIZE, owner, backend)?;
        pagemap
            .ops()
            .first_pfn
            .store(pagemap.first_pfn(), Ordering::Relaxed);
        Ok(Self { pagemap, chunks })
    }

    /// The `pgmap_owner` of the memory.
    #[inline]
    pub fn owner(&self) -> *mut c_void {
        self.pagemap.owner()
    }

    /// The device PFN of page 0.
    #[inline]
    pub fn first_pfn(&self) -> usize {
        self.pagemap.first_pfn()
    }

    /// The chunks of the memory.
    #[inline]
    pub fn nr_chunks(&self) -> usize {
        self.pagemap.ops().data.nr_pages / CHUNK_PAGES
    }

    /// Pages CPU faults took back to system memory.
    #[inline]
    pub fn faulted_pages(&self) -> usize {
        self.pagemap.ops().faulted.load(Ordering::Relaxed)
    }

    /// Chunks with a live folio.
    pub fn chunks_in_use(&self) -> usize {
        self.chunks.lock().chunks_in_use()
    }

    /// The chunk in use allocated from least recently: the one to evict.
    pub fn oldest_chunk(&self) -> Option<usize> {
        self.chunks.lock().oldest_in_use()
    }

    /// A new device folio of `order`, unlocked, with the one reference the
    /// caller owns; when that and every other reference are gone, its
    /// pages go back to the allocator. Fails with
    /// [`ChunkError::Exhausted`] when no chunk has room: evict one.
    pub fn alloc(&self, order: u32) -> core::result::Result<ARef<Folio>, ChunkError> {
        let page = self.chunks.lock().alloc(order)?;
        // SAFETY: The allocator hands out `page..page + (1 << order)` to
        // nobody else until the folio made of them is freed, and those
        // pages are in the pagemap (the allocator has one chunk per 2 MiB
        // of it).
        let folio = unsafe { self.pagemap.init_folio(self.first_pfn() + page, order) };
        folio.map_err(|_| {
            let _ = self.chunks.lock().free(page, order);
            ChunkError::NotAllocated
        })
    }

    /// Copies pages `first..first + n` of the system folio `from` to the
    /// device pages from PFN `to`.
    pub fn copy_to_device(&self, to: usize, from: &Folio, first: usize, n: usize) -> Result {
        let backend = self.pagemap.ops();
        let at = backend.data_page(to)?;
        for k in 0..n {
            with_folio_page(from, first + k, |src| {
                backend.data.with_page(at + k, |dst| {
                    // SAFETY: Both are mapped pages, distinct (one is device
                    // data, the other system memory).
                    unsafe { core::ptr::copy_nonoverlapping(src, dst, PAGE_SIZE) }
                })
            })??;
        }
        Ok(())
    }

    /// Copies the device pages from PFN `from` to pages `first..first + n`
    /// of the system folio `to`.
    pub fn copy_from_device(&self, from: usize, to: &Folio, first: usize, n: usize) -> Result {
        self.pagemap.ops().copy_from_device(from, to, first, n)
    }

    /// Gives every collected device folio of `m` a system folio of its
    /// order holding its data; returns the pages given.
    pub fn to_system(&self, m: &mut Collected<'_>) -> Result<usize> {
        self.pagemap.ops().to_system(m)
    }

    /// Collects the folios of chunk `chunk` for eviction back to system
    /// memory (`migrate_device_range()`); `src` and `dst` need
    /// [`CHUNK_PAGES`] slots.
    pub fn evict_chunk<'a>(
        &'a self,
        chunk: usize,
        src: &'a mut [usize],
        dst: &'a mut [usize],
    ) -> Result<Collected<'a>> {
        if chunk >= self.nr_chunks() {
            return Err(EINVAL);
        }
        let start = self.first_pfn() + chunk * CHUNK_PAGES;
        // SAFETY: The PFNs are pages of our pagemap, which lives as long as
        // `self`, borrowed for the migration's lifetime.
        unsafe { MigrateVma::device_range(start, CHUNK_PAGES, src, dst) }
    }
}
