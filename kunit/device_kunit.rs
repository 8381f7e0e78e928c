// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of a migration to device-private memory and back: the
//! `migrate_vma` typestate, the pagemap and the page-table bindings
//! together on a real user mm.

#[kernel::macros::kunit_tests(folio_migrate_device)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::migrate_core::pfn::{MigratePfn, PMD_ORDER};
    use crate::migrate_vma::{MigrateVma, Select};
    use crate::page_table::{PmdEntry, PmdGuard, PteEntry, PteRun, PAGE_SIZE, PMD_SIZE};
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

    /// Reads the first bytes of page `n` of a system folio.
    fn peek(folio: &Folio, n: usize) -> [u8; 8] {
        let mut out = [0u8; 8];
        // SAFETY: The folio is system memory the caller holds and `n` is
        // one of its pages (checked); the local mapping is dropped before
        // returning.
        unsafe {
            assert!(n < folio.nr_pages());
            let addr = bindings::kmap_local_page(folio.head_page().add(n)).cast::<u8>();
            core::ptr::copy_nonoverlapping(addr, out.as_mut_ptr(), out.len());
            bindings::kunmap_local(addr.cast());
        }
        out
    }

    /// Fills a new system folio with zeroes, then page `n` of each
    /// `(n, head)` starts with `head`.
    fn fill(folio: &Folio, heads: &[(usize, [u8; 8])]) {
        // SAFETY: As in `peek()`; the folio is new and ours alone.
        unsafe {
            for n in 0..folio.nr_pages() {
                let addr = bindings::kmap_local_page(folio.head_page().add(n)).cast::<u8>();
                core::ptr::write_bytes(addr, 0, PAGE_SIZE);
                if let Some((_, head)) = heads.iter().find(|(m, _)| *m == n) {
                    core::ptr::copy_nonoverlapping(head.as_ptr(), addr, head.len());
                }
                bindings::kunmap_local(addr.cast());
            }
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
            let mut m =
                MigrateVma::setup(&mmap, s, end, Select::SYSTEM, owner, &mut src, &mut dst)?;
            assert_eq!(m.cpages(), PAGES);
            for (i, data) in vram.iter_mut().enumerate() {
                *data = peek(m.source(i).ok_or(EINVAL)?, 0);
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

        // Rewrite one device-private entry read-only and back, as a
        // driver's write-protect would; a PFN outside the folio is refused.
        {
            let mmap = map.mm().mmap_read_lock();
            let vma = mmap.vma_lookup(s).ok_or(EINVAL)?;
            // SAFETY: `base` is a page of our pagemap, mapped above, so
            // its folio is referenced.
            let dev = unsafe { Folio::try_get_pfn(base) }.ok_or(ENOENT)?;
            let locked = dev.trylock().ok_or(EBUSY)?;
            let mut run = PteRun::lock(vma, s, end).ok_or(EINVAL)?;
            let old = run.install_device_private_entry(s, &locked, base, false)?;
            assert_eq!(
                old.entry(),
                PteEntry::DevicePrivate {
                    pfn: base,
                    write: true
                }
            );
            assert_eq!(
                run.entry(s),
                Some(PteEntry::DevicePrivate {
                    pfn: base,
                    write: false
                })
            );
            // Not a page of this folio.
            assert!(run
                .install_device_private_entry(s, &locked, base + 1, false)
                .is_err());
            run.restore(old)?;
            assert_eq!(
                run.entry(s),
                Some(PteEntry::DevicePrivate {
                    pfn: base,
                    write: true
                })
            );
        }

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
                fill(&to, &[(0, *data)]);
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

    #[test]
    fn thp_to_device_private_and_evicted_back() -> Result {
        const NR: usize = 512;
        let mut cookie = 0u8;
        let owner = NonNull::from(&mut cookie).cast::<c_void>();
        let pgmap = DevicePrivatePagemap::new(2 * PMD_SIZE, owner, Counting::default())?;
        let owner = owner.as_ptr();
        let base = pgmap.first_pfn();

        let map = UserMapping::new(PMD_SIZE, PMD_SIZE)?;
        map.madvise(0, PMD_SIZE, uapi::MADV_HUGEPAGE)?;
        map.write(0, &pattern(0))?;
        map.write(PMD_SIZE - PAGE_SIZE, &pattern(NR - 1))?;
        let (s, end) = (map.start(), map.start() + PMD_SIZE);
        let mut src = KVec::from_elem(0usize, NR, GFP_KERNEL)?;
        let mut dst = KVec::from_elem(0usize, NR, GFP_KERNEL)?;

        let vram;
        {
            let mmap = map.mm().mmap_read_lock();
            let vma = mmap.vma_lookup(s).ok_or(EINVAL)?;
            let select = Select::SYSTEM | Select::COMPOUND;
            let mut m = MigrateVma::setup(&mmap, s, end, select, owner, &mut src, &mut dst)?;
            // One folio, in the head slot: one entry.
            assert_eq!(m.cpages(), 1);
            assert_eq!(m.sources().count(), 1);
            let (slot, from) = m.sources().next().ok_or(EINVAL)?;
            assert_eq!((slot, from.order()), (0, 9));
            vram = [peek(from, 0), peek(from, NR - 1)];
            // SAFETY: Fresh pagemap: these pages were never handed out.
            let dev = unsafe { pgmap.init_folio(base, 9) }?;
            m.set_destination(0, dev)?;
            let done = m.pages();
            assert!(done.is_migrated(0));
            done.finalize();

            // Mapped as one 2 MiB device-private PMD entry.
            let pmd = PmdGuard::lock(vma, s).ok_or(EINVAL)?;
            assert_eq!(
                pmd.entry(),
                PmdEntry::DevicePrivate {
                    pfn: base,
                    write: true
                }
            );
        }
        assert_eq!(vram, [pattern(0), pattern(NR - 1)]);

        // Rewrite the PMD entry read-only and back.
        {
            let mmap = map.mm().mmap_read_lock();
            let vma = mmap.vma_lookup(s).ok_or(EINVAL)?;
            // SAFETY: `base` heads a folio of our pagemap, mapped above.
            let dev = unsafe { Folio::try_get_pfn(base) }.ok_or(ENOENT)?;
            assert_eq!(dev.order(), 9);
            let locked = dev.trylock().ok_or(EBUSY)?;
            let mut pmd = PmdGuard::lock(vma, s).ok_or(EINVAL)?;
            let old = pmd.install_device_private_entry(&locked, false)?;
            assert_eq!(
                pmd.entry(),
                PmdEntry::DevicePrivate {
                    pfn: base,
                    write: false
                }
            );
            pmd.restore(old)?;
            assert_eq!(
                pmd.entry(),
                PmdEntry::DevicePrivate {
                    pfn: base,
                    write: true
                }
            );
        }

        // Evict into a new THP.
        {
            // SAFETY: The PFNs are pages of our pagemap, alive until the
            // end of the test.
            let mut m = unsafe { MigrateVma::device_range(base, NR, &mut src, &mut dst) }?;
            assert_eq!(m.cpages(), 1);
            let head = MigratePfn::from_raw(m.src_entry(0) as u64);
            assert!(head.is_ok_and(|h| h.is_compound() && h.order() == PMD_ORDER));
            assert!((1..NR).all(|i| m.src_entry(i) == 0));
            let from = m.source(0).ok_or(EINVAL)?;
            assert!(from.is_device_private());
            assert_eq!(from.order(), 9);
            let to = Folio::alloc_movable(9)?;
            fill(&to, &[(0, vram[0]), (NR - 1, vram[1])]);
            m.set_destination(0, to)?;
            let done = m.pages();
            assert!(done.is_migrated(0));
            done.finalize();
        }
        let mut buf = [0u8; 8];
        map.read(0, &mut buf)?;
        assert_eq!(buf, pattern(0));
        map.read(PMD_SIZE - PAGE_SIZE, &mut buf)?;
        assert_eq!(buf, pattern(NR - 1));
        map.read(PAGE_SIZE, &mut buf)?;
        assert_eq!(buf, [0; 8]);
        assert_eq!(pgmap.ops().freed.load(Ordering::Relaxed), NR);
        Ok(())
    }
}
