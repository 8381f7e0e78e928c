// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of a migration to device-private memory and back: the
//! `migrate_vma` typestate, the pagemap and the page-table bindings
//! together on a real user mm.

#[kernel::macros::kunit_tests(folio_migrate_device)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::migrate_vma::{MigrateVma, Select};
    use crate::page_table::{PteEntry, PteRun, PAGE_SIZE, PMD_SIZE};
    use crate::pagemap::{DevicePrivateOps, DevicePrivatePagemap};
    use core::{
        ffi::c_void,
        ptr::NonNull,
        sync::atomic::{AtomicUsize, Ordering},
    };
    use kernel::{bindings, prelude::*, uapi};

    const PAGES: usize = 8;

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

    fn pattern(page: usize) -> [u8; 8] {
        (0xd0d0_0000_0000_0000_u64 | page as u64).to_ne_bytes()
    }

    /// Reads the first bytes of a system folio.
    fn peek(folio: &Folio) -> [u8; 8] {
        let mut out = [0u8; 8];
        // SAFETY: The folio is system memory the caller holds; the local
        // mapping is dropped before returning.
        unsafe {
            let addr = bindings::kmap_local_page(folio.head_page()).cast::<u8>();
            core::ptr::copy_nonoverlapping(addr, out.as_mut_ptr(), out.len());
            bindings::kunmap_local(addr.cast());
        }
        out
    }

    /// Fills a new system folio: `head` then zeroes.
    fn fill(folio: &Folio, head: &[u8; 8]) {
        // SAFETY: As in `peek()`; the folio is new and ours alone.
        unsafe {
            let addr = bindings::kmap_local_page(folio.head_page()).cast::<u8>();
            core::ptr::write_bytes(addr, 0, PAGE_SIZE);
            core::ptr::copy_nonoverlapping(head.as_ptr(), addr, head.len());
            bindings::kunmap_local(addr.cast());
        }
    }

    #[test]
    fn to_device_private_and_evicted_back() -> Result {
        let mut cookie = 0u8;
        let owner = NonNull::from(&mut cookie).cast::<c_void>();
        let pgmap = DevicePrivatePagemap::new(2 * PMD_SIZE, owner, Counting::default())?;
        let owner = owner.as_ptr();
        let base = pgmap.first_pfn();

        let map = UserMapping::new(PAGES * PAGE_SIZE, PMD_SIZE)?;
        map.madvise(0, PAGES * PAGE_SIZE, uapi::MADV_NOHUGEPAGE)?;
        for p in 0..PAGES {
            map.write(p * PAGE_SIZE, &pattern(p))?;
        }
        let (s, end) = (map.start(), map.start() + PAGES * PAGE_SIZE);

        // The "device" keeps the data here: its pages have no CPU mapping.
        let mut vram = [[0u8; 8]; PAGES];
        {
            let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
            let mmap = map.mm().mmap_read_lock();
            let vma = mmap.vma_lookup(s).ok_or(EINVAL)?;
            let mut m = MigrateVma::setup(vma, s, end, Select::SYSTEM, owner, &mut src, &mut dst)?;
            assert_eq!(m.cpages(), PAGES);
            for (i, data) in vram.iter_mut().enumerate() {
                *data = peek(m.source(i).ok_or(EINVAL)?);
                // SAFETY: Fresh pagemap: these pages were never handed out.
                let dev = unsafe { pgmap.init_folio(base + i, 0) }?;
                m.set_destination(i, dev)?;
            }
            let done = m.pages();
            assert!((0..PAGES).all(|i| done.is_migrated(i)));
            done.finalize();

            let run = PteRun::lock(vma, s, end).ok_or(EINVAL)?;
            for (addr, entry) in run.iter() {
                let i = (addr - s) / PAGE_SIZE;
                assert_eq!(
                    entry,
                    PteEntry::DevicePrivate {
                        pfn: base + i,
                        write: true
                    }
                );
            }
        }
        for (i, data) in vram.iter().enumerate() {
            assert_eq!(*data, pattern(i));
        }
        assert_eq!(pgmap.ops().freed.load(Ordering::Relaxed), 0);

        // Evict, as a driver does before freeing its memory.
        {
            let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
            // SAFETY: The PFNs are pages of our pagemap, alive until the
            // end of the test.
            let mut m = unsafe { MigrateVma::device_range(base, PAGES, &mut src, &mut dst) }?;
            assert_eq!(m.cpages(), PAGES);
            for (i, data) in vram.iter().enumerate() {
                let from = m.source(i).ok_or(EINVAL)?;
                assert!(from.is_device_private());
                assert!(pgmap.contains(from));
                assert_eq!(from.pgmap_owner(), Some(owner));
                let to = Folio::alloc_movable(0)?;
                fill(&to, data);
                m.set_destination(i, to)?;
            }
            m.pages().finalize();
        }
        {
            let mmap = map.mm().mmap_read_lock();
            let vma = mmap.vma_lookup(s).ok_or(EINVAL)?;
            let run = PteRun::lock(vma, s, end).ok_or(EINVAL)?;
            for (addr, entry) in run.iter() {
                assert!(matches!(entry, PteEntry::Present { .. }));
                assert!(run.folio(addr).is_some_and(|f| !f.is_zone_device()));
            }
        }
        for p in 0..PAGES {
            let mut buf = [0u8; 8];
            map.read(p * PAGE_SIZE, &mut buf)?;
            assert_eq!(buf, pattern(p));
        }
        // Every device page came back to the driver.
        assert_eq!(pgmap.ops().freed.load(Ordering::Relaxed), PAGES);
        Ok(())
    }
}
