// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the VRAM driver on a real user mm: scattered 4 KiB pages
//! and a THP go to the VRAM in one copy each and come back intact; a full
//! VRAM evicts its least recently allocated chunk; a migration that cannot
//! fit anywhere fails with `ENOMEM` and leaves the memory where it was.

#[kernel::macros::kunit_tests(folio_migrate_vram)]
mod tests {
    use crate::folio::Folio;
    use crate::kunit_user_mm::UserMapping;
    use crate::page_table::{PmdEntry, PmdGuard, PAGE_SIZE, PMD_SIZE};
    use crate::vram::Vram;
    use core::{ffi::c_void, ptr::NonNull, sync::atomic::Ordering};
    use kernel::{prelude::*, uapi};

    /// What page `p` of buffer `b` starts with.
    fn pattern(b: u8, p: usize) -> [u8; 8] {
        [b, (p >> 8) as u8, p as u8, 0x5a, b, 0xa5, p as u8, b]
    }

    /// A user buffer of `pages` pages, each starting with its pattern,
    /// faulted in backwards so that its pages do not follow each other in
    /// system memory; `thp` asks for THPs instead.
    fn buffer(b: u8, pages: usize, thp: bool) -> Result<UserMapping> {
        let map = UserMapping::new(pages * PAGE_SIZE, PMD_SIZE)?;
        let advice = if thp {
            uapi::MADV_HUGEPAGE
        } else {
            uapi::MADV_NOHUGEPAGE
        };
        map.madvise(0, pages * PAGE_SIZE, advice)?;
        for p in (0..pages).rev() {
            map.write(p * PAGE_SIZE, &pattern(b, p))?;
        }
        Ok(map)
    }

    /// Whether every page of `map` starts with its pattern.
    fn intact(map: &UserMapping, b: u8) -> Result<bool> {
        for p in 0..map.len() / PAGE_SIZE {
            let mut buf = [0u8; 8];
            map.read(p * PAGE_SIZE, &mut buf)?;
            if buf != pattern(b, p) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Migrates all of `map` to the VRAM; returns the pages migrated.
    fn to_vram(vram: &Vram, map: &UserMapping) -> Result<usize> {
        let mmap = map.mm().mmap_read_lock();
        vram.migrate_to_vram(&mmap, map.start(), map.start() + map.len())
    }

    /// Migrates all of `map` back; returns the pages migrated.
    fn to_ram(vram: &Vram, map: &UserMapping) -> Result<usize> {
        let mmap = map.mm().mmap_read_lock();
        vram.migrate_to_ram(&mmap, map.start(), map.start() + map.len())
    }

    #[test]
    fn scattered_pages_and_a_thp_go_in_one_copy_each() -> Result {
        let mut cookie = 0u8;
        let vram = Vram::new(2, NonNull::from(&mut cookie).cast::<c_void>())?;
        let small = buffer(1, 64, false)?;
        let huge = buffer(2, PMD_SIZE / PAGE_SIZE, true)?;

        assert_eq!(to_vram(&vram, &small)?, 64);
        assert_eq!(vram.stats().copies.load(Ordering::Relaxed), 1);
        assert_eq!(to_vram(&vram, &huge)?, PMD_SIZE / PAGE_SIZE);
        assert_eq!(vram.stats().copies.load(Ordering::Relaxed), 2);
        assert_eq!(vram.chunks_in_use(), 2);

        assert_eq!(to_ram(&vram, &small)?, 64);
        assert_eq!(to_ram(&vram, &huge)?, PMD_SIZE / PAGE_SIZE);
        assert_eq!(vram.chunks_in_use(), 0);
        assert!(intact(&small, 1)?);
        assert!(intact(&huge, 2)?);
        assert_eq!(vram.stats().evictions.load(Ordering::Relaxed), 0);
        Ok(())
    }

    #[test]
    fn a_full_vram_evicts_its_oldest_chunk() -> Result {
        let mut cookie = 0u8;
        let vram = Vram::new(2, NonNull::from(&mut cookie).cast::<c_void>())?;
        let bufs = [
            buffer(3, PMD_SIZE / PAGE_SIZE, true)?,
            buffer(4, PMD_SIZE / PAGE_SIZE, true)?,
            buffer(5, PMD_SIZE / PAGE_SIZE, true)?,
        ];
        for b in &bufs {
            assert_eq!(to_vram(&vram, b)?, PMD_SIZE / PAGE_SIZE);
        }
        // The third took the first one's chunk.
        assert_eq!(vram.stats().evictions.load(Ordering::Relaxed), 1);
        assert_eq!(vram.chunks_in_use(), 2);
        assert!(intact(&bufs[0], 3)?);
        vram.evict_all()?;
        assert_eq!(vram.chunks_in_use(), 0);
        assert!(intact(&bufs[1], 4)?);
        assert!(intact(&bufs[2], 5)?);
        Ok(())
    }

    #[test]
    fn nothing_to_evict_is_enomem() -> Result {
        const NR: usize = PMD_SIZE / PAGE_SIZE;
        let mut cookie = 0u8;
        let vram = Vram::new(1, NonNull::from(&mut cookie).cast::<c_void>())?;
        let first = buffer(6, NR, true)?;
        let second = buffer(7, NR, true)?;
        assert_eq!(to_vram(&vram, &first)?, NR);
        let pfn = {
            let mmap = first.mm().mmap_read_lock();
            let vma = mmap.vma_lookup(first.start()).ok_or(EINVAL)?;
            let pmd = PmdGuard::lock(vma, first.start()).ok_or(EINVAL)?;
            let PmdEntry::DevicePrivate { pfn, .. } = pmd.entry() else {
                return Err(EINVAL);
            };
            pfn
        };
        // Hold the device folio, as a pin would: it cannot be evicted.
        // SAFETY: `pfn` heads the device folio mapped just above, which
        // nothing unmaps meanwhile.
        let held = unsafe { Folio::try_get_pfn(pfn) }.ok_or(ENOENT)?;
        assert_eq!(to_vram(&vram, &second), Err(ENOMEM));
        assert!(intact(&second, 7)?);
        drop(held);
        vram.evict_all()?;
        assert!(intact(&first, 6)?);
        Ok(())
    }
}
