// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the folio and page-table bindings on a real user mm.

#[kernel::macros::kunit_tests(folio_migrate_bindings)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::mmu_notifier::MmuNotifierRange;
    use crate::page_table::{
        flush_tlb_range, EntryBits, MigrationKind, PmdEntry, PmdGuard, PteEntry, PteRun, TakenPte,
        PAGE_SIZE, PMD_SIZE,
    };
    use core::{
        ffi::c_void,
        sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering},
    };
    use kernel::{bindings, prelude::*, sync::aref::ARef, uapi};

    /// A byte pattern that differs per page, so a misplaced page shows.
    fn pattern(page: usize) -> [u8; 8] {
        (0x0123_4567_89ab_0000_u64 | page as u64).to_ne_bytes()
    }

    #[test]
    fn thp_is_pmd_mapped_with_order_9() -> Result {
        let map = UserMapping::new(PMD_SIZE, PMD_SIZE)?;
        map.madvise(0, PMD_SIZE, uapi::MADV_HUGEPAGE)?;
        // One store faults in the whole THP.
        map.write(0, &pattern(0))?;
        map.write(PMD_SIZE - PAGE_SIZE, &pattern(511))?;

        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let pmd = PmdGuard::lock(vma, map.start() + 3 * PAGE_SIZE).ok_or(EINVAL)?;
        assert_eq!(pmd.addr(), map.start());
        let PmdEntry::Huge { pfn, bits } = pmd.entry() else {
            pr_err!("2 MiB THP not PMD-mapped: {:?}\n", pmd.entry());
            return Err(EINVAL);
        };
        assert!(bits.write);
        assert!(!bits.uffd_wp);
        let folio = pmd.folio().ok_or(EINVAL)?;
        assert_eq!(folio.order(), 9);
        assert_eq!(folio.nr_pages(), 512);
        assert!(folio.is_large());
        assert!(folio.is_anon());
        assert!(!folio.is_zone_device());
        assert!(!folio.is_device_private());
        assert_eq!(folio.pgmap_owner(), None);
        assert_eq!(folio.pfn(), pfn);
        assert_eq!(pfn % 512, 0);
        assert_eq!(folio.mapcount(), 1);
        // Mapped once and referenced by nobody else.
        assert!(folio.has_expected_refs(0));
        // No PTE table under a huge PMD.
        drop(pmd);
        assert!(PteRun::lock(vma, map.start(), map.start() + PAGE_SIZE).is_none());
        drop(mmap);

        let mut buf = [0u8; 8];
        map.read(0, &mut buf)?;
        assert_eq!(buf, pattern(0));
        map.read(PMD_SIZE - PAGE_SIZE, &mut buf)?;
        assert_eq!(buf, pattern(511));
        Ok(())
    }

    #[test]
    fn pte_walk_of_a_4k_region() -> Result {
        const PAGES: usize = 16;
        let map = UserMapping::new(PAGES * PAGE_SIZE, PMD_SIZE)?;
        map.madvise(0, PAGES * PAGE_SIZE, uapi::MADV_NOHUGEPAGE)?;
        for p in [0, 2, 5, 15] {
            map.write(p * PAGE_SIZE, &pattern(p))?;
        }
        // A read fault of untouched anonymous memory maps the zero page.
        let mut buf = [0u8; 8];
        map.read(7 * PAGE_SIZE, &mut buf)?;
        assert_eq!(buf, [0; 8]);

        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let pmd = PmdGuard::lock(vma, map.start()).ok_or(EINVAL)?;
        assert_eq!(pmd.entry(), PmdEntry::Table);
        drop(pmd);

        let end = map.start() + PAGES * PAGE_SIZE;
        let run = PteRun::lock(vma, map.start(), end).ok_or(EINVAL)?;
        assert_eq!(run.len(), PAGES);
        let mut seen = 0;
        for (addr, entry) in run.iter() {
            let page = (addr - map.start()) / PAGE_SIZE;
            seen += 1;
            match page {
                0 | 2 | 5 | 15 => {
                    let PteEntry::Present { pfn, bits } = entry else {
                        pr_err!("page {page} not present: {entry:?}\n");
                        return Err(EINVAL);
                    };
                    assert_eq!(
                        bits,
                        EntryBits {
                            write: true,
                            soft_dirty: bits.soft_dirty,
                            uffd_wp: false
                        }
                    );
                    let folio = run.folio(addr).ok_or(EINVAL)?;
                    assert_eq!(folio.order(), 0);
                    assert_eq!(folio.pfn(), pfn);
                    assert!(folio.is_anon());
                    assert_eq!(folio.mapcount(), 1);
                }
                7 => {
                    assert_eq!(entry, PteEntry::Zero);
                    assert!(run.folio(addr).is_none());
                }
                _ => {
                    assert_eq!(entry, PteEntry::None);
                    assert!(run.folio(addr).is_none());
                }
            }
        }
        assert_eq!(seen, PAGES);
        assert_eq!(run.entry(end), None);
        Ok(())
    }

    #[test]
    fn bad_ranges_are_refused() -> Result {
        let map = UserMapping::new(4 * PAGE_SIZE, PMD_SIZE)?;
        map.write(0, &pattern(0))?;
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let s = map.start();
        // Unaligned, empty, past the VMA, before the VMA.
        assert!(PteRun::lock(vma, s + 1, s + PAGE_SIZE).is_none());
        assert!(PteRun::lock(vma, s, s).is_none());
        assert!(PteRun::lock(vma, s, s + 5 * PAGE_SIZE).is_none());
        assert!(PmdGuard::lock(vma, s + 4 * PAGE_SIZE).is_none());
        assert!(PmdGuard::lock(vma, s - 1).is_none());
        assert!(PteRun::lock(vma, s, s + 4 * PAGE_SIZE).is_some());
        Ok(())
    }

    #[test]
    fn folio_lock_and_references() -> Result {
        let map = UserMapping::new(PAGE_SIZE, PMD_SIZE)?;
        map.write(0, &pattern(0))?;
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let run = PteRun::lock(vma, map.start(), map.start() + PAGE_SIZE).ok_or(EINVAL)?;
        let folio: ARef<Folio> = run.folio(map.start()).ok_or(EINVAL)?.into();
        drop(run);
        drop(mmap);

        // A freshly faulted folio may sit in a per-CPU LRU batch, which
        // holds a reference; migration drains the batches first too.
        // SAFETY: May sleep, which a test thread can.
        unsafe { kernel::bindings::lru_add_drain_all() };
        // Our reference is the one beyond what the mapping accounts for.
        assert!(folio.has_expected_refs(1));
        assert!(!folio.has_expected_refs(0));
        let before = folio.ref_count();
        let second = folio.clone();
        assert_eq!(folio.ref_count(), before + 1);
        drop(second);
        assert_eq!(folio.ref_count(), before);

        assert!(!folio.is_locked());
        let locked = folio.trylock().ok_or(EBUSY)?;
        assert!(folio.is_locked());
        assert!(folio.trylock().is_none());
        drop(locked);
        assert!(!folio.is_locked());
        {
            let locked = folio.lock();
            assert!(locked.is_locked());
            assert_eq!(locked.order(), 0);
        }
        assert!(!folio.is_locked());

        // The PFN round-trips to the same folio with a counted reference.
        // SAFETY: We hold a reference, so the folio at its PFN stays put.
        let again = unsafe { Folio::try_get_pfn(folio.pfn()) }.ok_or(ENOENT)?;
        assert_eq!(again.as_raw(), folio.as_raw());
        assert_eq!(folio.ref_count(), before + 1);
        Ok(())
    }

    #[test]
    fn pte_migration_entry_round_trip() -> Result {
        const PAGES: usize = 4;
        let map = UserMapping::new(PAGES * PAGE_SIZE, PMD_SIZE)?;
        map.madvise(0, PAGES * PAGE_SIZE, uapi::MADV_NOHUGEPAGE)?;
        for p in 0..PAGES {
            map.write(p * PAGE_SIZE, &pattern(p))?;
        }
        let (s, end) = (map.start(), map.start() + PAGES * PAGE_SIZE);
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(s).ok_or(EINVAL)?;
        // Room for the references is made before the PTE lock is taken.
        let mut folios = KVec::with_capacity(PAGES, GFP_KERNEL)?;
        {
            let run = PteRun::lock(vma, s, end).ok_or(EINVAL)?;
            for p in 0..PAGES {
                let f: ARef<Folio> = run.folio(s + p * PAGE_SIZE).ok_or(EINVAL)?.into();
                folios.push_within_capacity(f).map_err(|_| ENOMEM)?;
            }
        }
        // Migration entries name locked folios: lock before the PTL.
        let mut locked = KVec::new();
        for f in folios.iter() {
            locked.push(f.trylock().ok_or(EBUSY)?, GFP_KERNEL)?;
        }
        // No allocation from here on: the PTE lock is held.
        let mut lazy = PteRun::lock(vma, s, end).ok_or(EINVAL)?.into_lazy_mmu();
        let mut olds: [Option<TakenPte>; PAGES] = [const { None }; PAGES];
        for (p, old) in olds.iter_mut().enumerate() {
            let kind = if p % 2 == 0 {
                MigrationKind::Writable
            } else {
                MigrationKind::Readable
            };
            *old = Some(lazy.install_migration_entry(s + p * PAGE_SIZE, &locked[p], kind)?);
        }
        let mut run = lazy.leave();
        for p in 0..PAGES {
            let want = PteEntry::Migration {
                pfn: folios[p].pfn(),
                write: p % 2 == 0,
            };
            assert_eq!(run.entry(s + p * PAGE_SIZE), Some(want));
            assert!(run.folio(s + p * PAGE_SIZE).is_none());
        }
        // A migration entry, another folio's page and an address outside
        // the run are refused.
        assert_eq!(
            run.install_migration_entry(s, &locked[0], MigrationKind::Writable)
                .err(),
            Some(EINVAL)
        );
        assert!(run.clear_flush(end).is_err());
        // Put the original entries back, as a failed migration would.
        for (p, old) in olds.iter_mut().enumerate() {
            let old = old.take().ok_or(EINVAL)?;
            assert!(matches!(old.entry(), PteEntry::Present { .. }));
            assert_eq!(old.addr(), s + p * PAGE_SIZE);
            run.restore(old)?;
        }
        flush_tlb_range(vma, s, end);
        for p in 0..PAGES {
            assert_eq!(
                run.folio(s + p * PAGE_SIZE).map(|f| f.pfn()),
                Some(folios[p].pfn())
            );
        }
        drop(run);
        drop(locked);
        drop(mmap);
        for p in 0..PAGES {
            let mut buf = [0u8; 8];
            map.read(p * PAGE_SIZE, &mut buf)?;
            assert_eq!(buf, pattern(p));
        }
        Ok(())
    }

    #[test]
    fn pmd_migration_entry_round_trip() -> Result {
        let map = UserMapping::new(PMD_SIZE, PMD_SIZE)?;
        map.madvise(0, PMD_SIZE, uapi::MADV_HUGEPAGE)?;
        map.write(0, &pattern(0))?;
        let mmap = map.mm().mmap_read_lock();
        let vma = mmap.vma_lookup(map.start()).ok_or(EINVAL)?;
        let folio: ARef<Folio> = PmdGuard::lock(vma, map.start())
            .ok_or(EINVAL)?
            .folio()
            .ok_or(EINVAL)?
            .into();
        let locked = folio.trylock().ok_or(EBUSY)?;
        let mut pmd = PmdGuard::lock(vma, map.start()).ok_or(EINVAL)?;
        let old = pmd.install_migration_entry(&locked, MigrationKind::Writable)?;
        assert_eq!(
            pmd.entry(),
            PmdEntry::Migration {
                pfn: folio.pfn(),
                write: true
            }
        );
        assert!(pmd.folio().is_none());
        // Not a THP any more: refused.
        assert!(pmd.clear_flush().is_err());
        assert!(pmd
            .install_migration_entry(&locked, MigrationKind::Readable)
            .is_err());
        pmd.restore(old)?;
        assert_eq!(pmd.folio().map(|f| f.pfn()), Some(folio.pfn()));
        drop(pmd);
        drop(locked);
        drop(mmap);
        let mut buf = [0u8; 8];
        map.read(0, &mut buf)?;
        assert_eq!(buf, pattern(0));
        Ok(())
    }

    /// An interval notifier that records what invalidates it.
    #[repr(C)]
    struct Recorder {
        mni: bindings::mmu_interval_notifier,
        calls: AtomicUsize,
        event: AtomicU32,
        owner: AtomicPtr<c_void>,
        start: AtomicUsize,
        end: AtomicUsize,
    }

    /// The `invalidate` callback of [`RECORD_OPS`].
    ///
    /// # Safety
    ///
    /// `mni` is the notifier of a live [`Recorder`] and `range` is valid.
    unsafe extern "C" fn record(
        mni: *mut bindings::mmu_interval_notifier,
        range: *const bindings::mmu_notifier_range,
        cur_seq: usize,
    ) -> bool {
        // SAFETY: `mni` is the first field of a live `Recorder`
        // (`repr(C)`), and `range` is valid during the call.
        unsafe {
            let r = &*mni.cast::<Recorder>();
            r.calls.fetch_add(1, Ordering::Relaxed);
            r.event.store((*range).event, Ordering::Relaxed);
            r.owner.store((*range).owner, Ordering::Relaxed);
            r.start.store((*range).start, Ordering::Relaxed);
            r.end.store((*range).end, Ordering::Relaxed);
            bindings::mmu_interval_set_seq(mni, cur_seq);
        }
        true
    }

    static RECORD_OPS: bindings::mmu_interval_notifier_ops = bindings::mmu_interval_notifier_ops {
        invalidate: Some(record),
        invalidate_start: None,
        invalidate_finish: None,
    };

    #[test]
    fn mmu_notifier_range_carries_the_owner() -> Result {
        let map = UserMapping::new(4 * PAGE_SIZE, PMD_SIZE)?;
        map.write(0, &pattern(0))?;
        // SAFETY: All-zero is the unregistered state of the notifier and
        // a valid value of the counters.
        let rec = KBox::new(unsafe { core::mem::zeroed::<Recorder>() }, GFP_KERNEL)?;
        let rec = KBox::into_raw(rec);
        // SAFETY: `rec` is valid and stays put until freed below; the mm
        // has users (the test thread).
        kernel::error::to_result(unsafe {
            bindings::mmu_interval_notifier_insert(
                &raw mut (*rec).mni,
                map.mm().as_raw(),
                map.start(),
                4 * PAGE_SIZE,
                &RECORD_OPS,
            )
        })
        .inspect_err(|_| {
            // SAFETY: Not registered; ours to free.
            drop(unsafe { KBox::from_raw(rec) });
        })?;
        let mut cookie = 0u8;
        let owner = (&raw mut cookie).cast::<c_void>();
        {
            let (s, e) = (map.start() + PAGE_SIZE, map.start() + 3 * PAGE_SIZE);
            let mut range = MmuNotifierRange::migrate(map.mm(), s, e, owner);
            assert_eq!((range.start(), range.end()), (s, e));
            let _inv = range.invalidate();
        }
        // SAFETY: Registered above; `remove` waits for callbacks to end.
        unsafe { bindings::mmu_interval_notifier_remove(&raw mut (*rec).mni) };
        // SAFETY: Unregistered: ours again.
        let rec = unsafe { KBox::from_raw(rec) };
        assert_eq!(rec.calls.load(Ordering::Relaxed), 1);
        assert_eq!(
            rec.event.load(Ordering::Relaxed),
            bindings::mmu_notifier_event_MMU_NOTIFY_MIGRATE
        );
        assert_eq!(rec.owner.load(Ordering::Relaxed), owner);
        assert_eq!(rec.start.load(Ordering::Relaxed), map.start() + PAGE_SIZE);
        assert_eq!(rec.end.load(Ordering::Relaxed), map.start() + 3 * PAGE_SIZE);
        Ok(())
    }
}
