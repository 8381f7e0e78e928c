// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the `migrate_vma_*` typestate on a real user mm.

#[kernel::macros::kunit_tests(folio_migrate_migrate_vma)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::migrate_core::pfn::{MigratePfn, PMD_ORDER};
    use crate::migrate_vma::{MigrateVma, Select};
    use crate::migrate_vma_args::MigrateVmaArgs;
    use crate::page_table::{PmdEntry, PmdGuard, PteEntry, PteRun, PAGE_SIZE, PMD_SIZE};
    use kernel::{bindings, mm::virt::VmaRef, prelude::*, sync::aref::ARef, uapi};

    const PAGES: usize = 8;

    fn pattern(page: usize) -> [u8; 8] {
        (0x7e57_0000_0000_0000_u64 | page as u64).to_ne_bytes()
    }

    /// A written, PTE-mapped region of `PAGES` pages.
    fn small_region() -> Result<UserMapping> {
        let map = UserMapping::new(PAGES * PAGE_SIZE, PMD_SIZE)?;
        map.madvise(0, PAGES * PAGE_SIZE, uapi::MADV_NOHUGEPAGE)?;
        for p in 0..PAGES {
            map.write(p * PAGE_SIZE, &pattern(p))?;
        }
        Ok(map)
    }

    /// The PFN of each present PTE of the region (0 if not present).
    fn pfns(vma: &VmaRef, start: usize) -> Result<[usize; PAGES]> {
        let run = PteRun::lock(vma, start, start + PAGES * PAGE_SIZE).ok_or(EINVAL)?;
        let mut out = [0; PAGES];
        for (addr, entry) in run.iter() {
            if let PteEntry::Present { pfn, .. } = entry {
                out[(addr - start) / PAGE_SIZE] = pfn;
            }
        }
        Ok(out)
    }

    fn check_data(map: &UserMapping) -> Result {
        for p in 0..PAGES {
            let mut buf = [0u8; 8];
            map.read(p * PAGE_SIZE, &mut buf)?;
            assert_eq!(buf, pattern(p));
        }
        Ok(())
    }

    #[test]
    fn system_to_system_4k() -> Result {
        let map = small_region()?;
        let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let before = pfns(vma, map.start())?;
        assert!(before.iter().all(|&p| p != 0));

        let end = map.start() + PAGES * PAGE_SIZE;
        let null = core::ptr::null_mut();
        let mut m = MigrateVma::setup(
            &mmap,
            map.start(),
            end,
            Select::SYSTEM,
            null,
            &mut src,
            &mut dst,
        )?;
        assert_eq!(m.npages(), PAGES);
        assert_eq!(m.cpages(), PAGES);
        let mut kept: KVec<ARef<Folio>> = KVec::new();
        for (i, &old) in before.iter().enumerate() {
            let from = m.source(i).ok_or(EINVAL)?;
            assert_eq!(from.order(), 0);
            assert_eq!(from.pfn(), old);
            assert!(from.is_locked());
            let to = Folio::alloc_movable(0)?;
            kept.push(to.clone(), GFP_KERNEL)?;
            // SAFETY: Both folios are ours for the copy: the source is
            // locked and unmapped by the migration, the destination new.
            unsafe { bindings::folio_copy(to.as_raw(), from.as_raw()) };
            m.set_destination(i, to)?;
        }
        // A slot can take one destination only.
        assert_eq!(m.set_destination(0, Folio::alloc_movable(0)?), Err(EINVAL));
        // The extents and the copy runs cover every page once, each run
        // contiguous in the range and in memory.
        let mut seen = 0;
        for e in m.source_extents() {
            assert_eq!(e.index, seen);
            for k in 0..e.npages {
                assert_eq!(before[e.index + k] as u64, e.pfn + k as u64);
            }
            seen += e.npages;
        }
        assert_eq!(seen, PAGES);
        let mut seen = 0;
        for r in m.copy_runs() {
            assert_eq!(r.index, seen);
            for k in 0..r.npages {
                assert_eq!(before[r.index + k] as u64, r.src_pfn + k as u64);
                let to = MigratePfn::from_raw(m.dst_entry(r.index + k) as u64);
                assert_eq!(to.ok().and_then(|d| d.pfn()), Some(r.dst_pfn + k as u64));
            }
            seen += r.npages;
        }
        assert_eq!(seen, PAGES);
        let done = m.pages();
        for i in 0..PAGES {
            assert!(done.is_migrated(i));
        }
        done.finalize();

        let after = pfns(vma, map.start())?;
        for (new, old) in after.iter().zip(before.iter()) {
            assert!(*new != 0);
            assert!(new != old);
        }
        drop(mmap);
        // SAFETY: Drains the per-CPU LRU caches, whose batches hold
        // references of their own; nothing is held that it waits for.
        unsafe { bindings::lru_add_drain_all() };
        // Each destination is mapped once and unlocked; the slot's
        // reference went to its mapping: one for it and one for `kept`,
        // so a leaked reference reads 3 and a missing one 1.
        for (f, &pfn) in kept.iter().zip(after.iter()) {
            assert_eq!(f.pfn(), pfn);
            assert!(!f.is_locked());
            assert_eq!(f.mapcount(), 1);
            assert_eq!(f.ref_count(), 2);
        }
        check_data(&map)
    }

    #[test]
    fn abandoned_migration_restores_the_sources() -> Result {
        let map = small_region()?;
        let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let before = pfns(vma, map.start())?;
        let end = map.start() + PAGES * PAGE_SIZE;
        let null = core::ptr::null_mut();
        let mut kept: KVec<ARef<Folio>> = KVec::new();
        {
            let mut m = MigrateVma::setup(
                &mmap,
                map.start(),
                end,
                Select::SYSTEM,
                null,
                &mut src,
                &mut dst,
            )?;
            assert_eq!(m.cpages(), PAGES);
            for i in (0..PAGES).step_by(2) {
                let to = Folio::alloc_movable(0)?;
                kept.push(to.clone(), GFP_KERNEL)?;
                m.set_destination(i, to)?;
            }
            // Dropped without pages(): nothing may move.
        }
        assert_eq!(pfns(vma, map.start())?, before);
        // The destinations were unlocked and their references returned.
        for f in kept.iter() {
            assert!(!f.is_locked());
            assert_eq!(f.ref_count(), 1);
        }
        drop(mmap);
        check_data(&map)
    }

    #[test]
    fn thp_is_collected_whole_with_compound() -> Result {
        let map = UserMapping::new(PMD_SIZE, PMD_SIZE)?;
        map.madvise(0, PMD_SIZE, uapi::MADV_HUGEPAGE)?;
        map.write(0, &pattern(0))?;
        map.write(PMD_SIZE - PAGE_SIZE, &pattern(511))?;
        let mut src = KVec::from_elem(0usize, 512, GFP_KERNEL)?;
        let mut dst = KVec::from_elem(0usize, 512, GFP_KERNEL)?;
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let pfn = match PmdGuard::lock(vma, map.start()).ok_or(EINVAL)?.entry() {
            PmdEntry::Huge { pfn, .. } => pfn,
            other => {
                pr_err!("2 MiB THP not PMD-mapped: {:?}\n", other);
                return Err(EINVAL);
            }
        };
        {
            let select = Select::SYSTEM | Select::COMPOUND;
            let end = map.start() + PMD_SIZE;
            let null = core::ptr::null_mut();
            let mut m =
                MigrateVma::setup(&mmap, map.start(), end, select, null, &mut src, &mut dst)?;
            // Only the head slot is filled; the tails stay 0.
            let head = MigratePfn::from_raw(m.src_entry(0) as u64);
            assert!(head.is_ok_and(|h| h.is_compound() && h.order() == PMD_ORDER));
            assert!((1..512).all(|i| m.src_entry(i) == 0));
            let head = m.source(0).ok_or(EINVAL)?;
            assert_eq!(head.order(), 9);
            assert_eq!(head.pfn(), pfn);
            // A destination of another order is refused.
            assert_eq!(m.set_destination(0, Folio::alloc_movable(0)?), Err(EINVAL));
            // The THP is one extent of 512 pages; with no destination,
            // nothing is to be copied.
            let mut extents = m.source_extents();
            let whole = extents.next().ok_or(EINVAL)?;
            assert_eq!((whole.index, whole.npages, whole.folios), (0, 512, 1));
            assert_eq!(whole.pfn, pfn as u64);
            assert!(extents.next().is_none());
            assert_eq!(m.copy_runs().count(), 0);
        }
        // Abandoned: the THP is mapped again (as a PMD or split into PTEs)
        // with its data.
        drop(mmap);
        let mut buf = [0u8; 8];
        map.read(0, &mut buf)?;
        assert_eq!(buf, pattern(0));
        map.read(PMD_SIZE - PAGE_SIZE, &mut buf)?;
        assert_eq!(buf, pattern(511));
        Ok(())
    }

    #[test]
    fn bad_arguments_are_refused() -> Result {
        let map = small_region()?;
        let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
        let (mut big_src, mut big_dst) = ([0usize; PAGES + 1], [0usize; PAGES + 1]);
        let mmap = map.mm().mmap_read_lock();
        let s = map.start();
        let null = core::ptr::null_mut();
        let sys = Select::SYSTEM;
        // No VMA there.
        assert_eq!(
            MigrateVma::setup(&mmap, 0, PAGE_SIZE, sys, null, &mut src, &mut dst).err(),
            Some(EFAULT)
        );
        // Past the end of the VMA (checked by migrate_vma_setup()).
        let past = s + (PAGES + 1) * PAGE_SIZE;
        assert_eq!(
            MigrateVma::setup(&mmap, s, past, sys, null, &mut big_src, &mut big_dst).err(),
            Some(EINVAL)
        );
        // Unaligned, empty, arrays too small.
        assert!(
            MigrateVma::setup(&mmap, s + 1, s + PAGE_SIZE, sys, null, &mut src, &mut dst).is_err()
        );
        assert!(MigrateVma::setup(&mmap, s, s, sys, null, &mut src, &mut dst).is_err());
        let big = s + (PAGES + 1) * PAGE_SIZE;
        assert!(MigrateVma::setup(&mmap, s, big, sys, null, &mut src, &mut dst).is_err());
        drop(mmap);
        check_data(&map)
    }

    /// Used directly, without the typestate, the binding refuses a
    /// destination once the pages have moved, names no source once
    /// finalized, and finalizes once; the page given a destination moves,
    /// the others stay, and the data is intact. (The slots alone already
    /// say as much under the Rust engine, which clears them in finalize:
    /// the binding's own checks matter under the C engine, which this
    /// suite does not select.)
    #[test]
    fn binding_refuses_late_use() -> Result {
        let map = small_region()?;
        let (mut src, mut dst) = ([0usize; PAGES], [0usize; PAGES]);
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let before = pfns(vma, map.start())?;
        let end = map.start() + PAGES * PAGE_SIZE;
        let null = core::ptr::null_mut();
        let mut args = MigrateVmaArgs::setup(
            &mmap,
            map.start(),
            end,
            Select::SYSTEM,
            null,
            &mut src,
            &mut dst,
        )?;
        assert_eq!(args.cpages(), PAGES);
        let from = args.source(0).ok_or(EINVAL)?;
        let to = Folio::alloc_movable(0)?;
        // SAFETY: Both folios are ours for the copy: the source is locked
        // and unmapped by the migration, the destination new.
        unsafe { bindings::folio_copy(to.as_raw(), from.as_raw()) };
        args.set_destination(0, to)?;
        args.pages();
        // Too late for slot 1: it stays where it was.
        assert_eq!(
            args.set_destination(1, Folio::alloc_movable(0)?),
            Err(EINVAL)
        );
        assert!(args.source(0).is_some());
        args.finalize();
        assert!(args.source(0).is_none());
        assert!(args.source(1).is_none());
        // A second finalize (as on drop) does nothing.
        args.finalize();
        drop(args);

        let after = pfns(vma, map.start())?;
        assert!(after[0] != 0 && after[0] != before[0]);
        assert_eq!(after[1..], before[1..]);
        drop(mmap);
        check_data(&map)
    }
}
