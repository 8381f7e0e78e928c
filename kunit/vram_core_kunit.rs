// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the VRAM driver's chunk allocator, inside the kernel:
//! allocation, freeing, fragmentation and exhaustion with the kernel's
//! compiler flags (the host runs the same rules with `cargo test -p
//! vram-core`), and the point of it on a real user mm: pages that go to the
//! device land next to each other in device memory, so their destinations
//! are one extent, whatever system pages they come from.

#[kernel::macros::kunit_tests(folio_migrate_vram_chunks)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::migrate_vma::{MigrateVma, Select};
    use crate::page_table::{PAGE_SIZE, PMD_SIZE};
    use crate::pagemap::{DevicePrivateOps, DevicePrivatePagemap};
    use crate::vram_core::{Chunk, ChunkAllocator, Error, CHUNK_ORDER, CHUNK_PAGES};
    use core::{
        ffi::c_void,
        ptr::NonNull,
        sync::atomic::{AtomicUsize, Ordering},
    };
    use kernel::{prelude::*, uapi};

    #[test]
    fn small_folios_fill_one_chunk_in_order() {
        let mut chunks = [Chunk::FREE; 2];
        let mut v = ChunkAllocator::new(&mut chunks[..]);
        for p in 0..CHUNK_PAGES {
            assert_eq!(v.alloc(0), Ok(p));
        }
        assert_eq!(v.chunks_in_use(), 1);
        assert_eq!(v.alloc(4), Ok(CHUNK_PAGES));
        assert_eq!(v.alloc(0), Ok(CHUNK_PAGES + 16));
    }

    #[test]
    fn exhaustion_and_freeing() {
        let mut chunks = [Chunk::FREE; 2];
        let mut v = ChunkAllocator::new(&mut chunks[..]);
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(0));
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(CHUNK_PAGES));
        assert_eq!(v.alloc(0), Err(Error::Exhausted));
        assert_eq!(v.alloc(CHUNK_ORDER + 1), Err(Error::Order));
        assert_eq!(v.free(CHUNK_PAGES, CHUNK_ORDER), Ok(()));
        assert_eq!(v.free(CHUNK_PAGES, CHUNK_ORDER), Err(Error::NotAllocated));
        assert_eq!(v.alloc(0), Ok(CHUNK_PAGES));
        assert_eq!(v.live_pages(), CHUNK_PAGES + 1);
    }

    #[test]
    fn fragmentation_keeps_a_chunk_until_its_last_folio_goes() {
        let mut chunks = [Chunk::FREE; 2];
        let mut v = ChunkAllocator::new(&mut chunks[..]);
        for p in 0..CHUNK_PAGES {
            assert_eq!(v.alloc(0), Ok(p));
        }
        for p in 1..CHUNK_PAGES {
            assert_eq!(v.free(p, 0), Ok(()));
        }
        // 511 free pages in chunk 0, but no free chunk there.
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(CHUNK_PAGES));
        assert_eq!(v.alloc(CHUNK_ORDER), Err(Error::Exhausted));
        assert_eq!(v.oldest_in_use(), Some(0));
        assert_eq!(v.free(0, 0), Ok(()));
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(0));
    }

    /// Device memory that only counts the pages given back to it.
    #[derive(Default)]
    struct Counting {
        freed: AtomicUsize,
    }

    impl DevicePrivateOps for Counting {
        fn folio_free(&self, folio: &Folio) {
            self.freed.fetch_add(folio.nr_pages(), Ordering::Relaxed);
        }
    }

    #[test]
    fn destinations_set_by_extent() -> Result {
        const PAGES: usize = 8;
        let mut cookie = 0u8;
        let owner = NonNull::from(&mut cookie).cast::<c_void>();
        let pgmap = DevicePrivatePagemap::new(PMD_SIZE, owner, Counting::default())?;
        let owner = owner.as_ptr();
        let base = pgmap.first_pfn();
        let mut chunks = [Chunk::FREE; 1];
        let mut vram = ChunkAllocator::new(&mut chunks[..]);
        let map = UserMapping::new(PAGES * PAGE_SIZE, PMD_SIZE)?;
        map.madvise(0, PAGES * PAGE_SIZE, uapi::MADV_NOHUGEPAGE)?;
        for p in 0..PAGES {
            map.write(p * PAGE_SIZE, &[p as u8; 8])?;
        }
        let (s, end) = (map.start(), map.start() + PAGES * PAGE_SIZE);
        {
            let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
            let mmap = map.mm().mmap_read_lock();
            let mut m =
                MigrateVma::setup(&mmap, s, end, Select::SYSTEM, owner, &mut src, &mut dst)?;
            let mut extents = KVec::new();
            for e in m.source_extents() {
                extents.push(e, GFP_KERNEL)?;
            }
            for e in extents.iter() {
                // One contiguous device range per extent: 4 KiB pages
                // follow each other in the open chunk.
                let first = vram.alloc(0).map_err(|_| ENOMEM)?;
                for _ in 1..e.npages {
                    vram.alloc(0).map_err(|_| ENOMEM)?;
                }
                m.set_extent_destinations(e, |offset, order| {
                    // SAFETY: The allocator handed these pages out just
                    // above, to nobody else; the pagemap is new.
                    unsafe { pgmap.init_folio(base + first + offset, order) }
                })?;
            }
            // Every source got a destination, extent by extent.
            assert!((0..PAGES).all(|i| m.dst_entry(i) != 0));
            let total: usize = m.destination_extents().map(|e| e.npages).sum();
            assert_eq!(total, PAGES);
        }
        assert_eq!(pgmap.ops().freed.load(Ordering::Relaxed), PAGES);
        Ok(())
    }

    #[test]
    fn pages_going_to_the_device_are_one_extent() -> Result {
        const PAGES: usize = 16;
        let mut cookie = 0u8;
        let owner = NonNull::from(&mut cookie).cast::<c_void>();
        let pgmap = DevicePrivatePagemap::new(2 * PMD_SIZE, owner, Counting::default())?;
        let owner = owner.as_ptr();
        let base = pgmap.first_pfn();
        let mut chunks = [Chunk::FREE; 2];
        let mut vram = ChunkAllocator::new(&mut chunks[..]);

        // Fault the pages in backwards, so that they are unlikely to follow
        // each other in system memory.
        let map = UserMapping::new(PAGES * PAGE_SIZE, PMD_SIZE)?;
        map.madvise(0, PAGES * PAGE_SIZE, uapi::MADV_NOHUGEPAGE)?;
        for p in (0..PAGES).rev() {
            map.write(p * PAGE_SIZE, &[p as u8 + 1; 8])?;
        }
        let (s, end) = (map.start(), map.start() + PAGES * PAGE_SIZE);
        {
            let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
            let mmap = map.mm().mmap_read_lock();
            let mut m =
                MigrateVma::setup(&mmap, s, end, Select::SYSTEM, owner, &mut src, &mut dst)?;
            assert_eq!(m.cpages(), PAGES);
            let sources = m.source_extents().count();
            for i in 0..PAGES {
                let order = m.source(i).ok_or(EINVAL)?.order();
                let page = vram.alloc(order).map_err(|_| ENOMEM)?;
                // SAFETY: The allocator hands out each page once until it
                // is freed, and this pagemap is new.
                let dev = unsafe { pgmap.init_folio(base + page, order) }?;
                m.set_destination(i, dev)?;
            }
            let mut dests = m.destination_extents();
            let one = dests.next().ok_or(EINVAL)?;
            assert!(dests.next().is_none());
            assert_eq!((one.pfn as usize, one.npages), (base, PAGES));
            pr_info!("{PAGES} pages in {sources} source extents, 1 device extent\n");
            // Not migrated: dropping the migration restores the pages and
            // frees the destinations.
        }
        assert_eq!(pgmap.ops().freed.load(Ordering::Relaxed), PAGES);
        for p in 0..PAGES {
            let mut buf = [0u8; 8];
            map.read(p * PAGE_SIZE, &mut buf)?;
            assert_eq!(buf, [p as u8 + 1; 8]);
        }
        Ok(())
    }
}
