// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the folio and page-table bindings on a real user mm.

#[kernel::macros::kunit_tests(folio_migrate_bindings)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::page_table::{EntryBits, PmdEntry, PmdGuard, PteEntry, PteRun, PAGE_SIZE, PMD_SIZE};
    use kernel::{prelude::*, sync::aref::ARef, uapi};

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
}
