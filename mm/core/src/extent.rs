// SPDX-License-Identifier: GPL-2.0

//! Extents: runs of folios that are contiguous both in the array and in
//! physical memory, so that a driver issues one device copy per run instead
//! of one per folio.
//!
//! [`Extents`] coalesces the valid heads of one array (`src` or `dst`, each on
//! its own). [`CopyRuns`] pairs the two arrays, page for page, into runs that
//! are contiguous on both sides, which is what a copy engine takes.

use super::error::Error;
use super::folio_array::{FolioArray, Folios};
use super::pfn::MigratePfn;

/// No flag required beyond `MIGRATE_PFN_VALID`.
pub(super) const NO_FLAGS: u64 = 0;

/// A run of folios of one array that follow each other in the array (slot
/// after slot, no empty slot between them) and in physical memory (PFN after
/// PFN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Index of the run's first slot: the head of its first folio.
    pub index: usize,
    /// PFN of the run's first page.
    pub pfn: u64,
    /// Pages (slots) in the run.
    pub npages: usize,
    /// Folios (heads) in the run.
    pub folios: usize,
}

impl Extent {
    /// The index one past the run's last slot.
    #[inline]
    pub fn end_index(&self) -> usize {
        self.index + self.npages
    }

    /// The PFN one past the run's last page.
    #[inline]
    pub fn end_pfn(&self) -> u64 {
        // `npages` is at most the length of a slice of `u64`.
        self.pfn + self.npages as u64
    }
}

/// The extents of a [`FolioArray`], in array order: each valid head (with the
/// required flags) belongs to exactly one extent, and two consecutive extents
/// could not be merged. Heads without `MIGRATE_PFN_VALID` (holes) or without
/// the required flags belong to none and end the run before them.
#[derive(Debug, Clone)]
pub struct Extents<'a> {
    folios: Folios<'a>,
    flags: u64,
    pending: Option<Extent>,
}

impl<'a> Extents<'a> {
    /// The extents of `folios`, over the valid heads that have every flag of
    /// `flags`.
    pub(super) fn new(folios: Folios<'a>, flags: u64) -> Self {
        Self {
            folios,
            flags,
            pending: None,
        }
    }
}

/// The one-folio extent of `mpfn` at `index`; `None` for a hole.
fn single(index: usize, mpfn: MigratePfn) -> Option<Extent> {
    Some(Extent {
        index,
        pfn: mpfn.pfn()?,
        npages: mpfn.nr_pages(),
        folios: 1,
    })
}

impl Iterator for Extents<'_> {
    type Item = Extent;

    fn next(&mut self) -> Option<Extent> {
        let mut cur = self.pending.take();
        for (index, mpfn) in self.folios.by_ref() {
            if !(mpfn.is_valid() && mpfn.raw() & self.flags == self.flags) {
                if cur.is_some() {
                    return cur;
                }
                continue;
            }
            let Some(next) = single(index, mpfn) else {
                continue;
            };
            match cur.as_mut() {
                None => cur = Some(next),
                Some(run) if run.end_index() == index && run.end_pfn() == next.pfn => {
                    run.npages += next.npages;
                    run.folios += 1;
                }
                Some(_) => {
                    self.pending = Some(next);
                    return cur;
                }
            }
        }
        cur
    }
}

impl core::iter::FusedIterator for Extents<'_> {}

/// A run of pages to copy from `src` to `dst`: the pages of slots `index ..
/// index + npages`, contiguous in physical memory on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyRun {
    /// Index of the run's first slot.
    pub index: usize,
    /// PFN of the run's first source page.
    pub src_pfn: u64,
    /// PFN of the run's first destination page.
    pub dst_pfn: u64,
    /// Pages in the run.
    pub npages: usize,
}

/// The copy runs of a `src` and a `dst` array of the same length.
///
/// A destination folio is copied to when its head is valid and lies, with all
/// its pages, inside a valid source folio that has `MIGRATE_PFN_MIGRATE` set;
/// its source pages are the matching pages of that folio. A destination
/// smaller than its source is therefore copied piece by piece (the engine
/// splits the source later, as `migrate_vma_pages()` does,
/// `mm/migrate_device.c:1179-1202`); a destination larger than its source is
/// not copied, since the engine will not migrate it
/// (`mm/migrate_device.c:1203-1206`). Neighbouring copies merge when they are
/// contiguous in the arrays, in `src` memory and in `dst` memory.
#[derive(Debug, Clone)]
pub struct CopyRuns<'a> {
    src: FolioArray<'a>,
    dst: Folios<'a>,
    pending: Option<CopyRun>,
}

impl<'a> CopyRuns<'a> {
    /// The copy runs from `src` to `dst`; fails with [`Error::OutOfRange`] if
    /// their lengths differ.
    pub fn new(src: FolioArray<'a>, dst: FolioArray<'a>) -> Result<Self, Error> {
        if src.len() != dst.len() {
            return Err(Error::OutOfRange);
        }
        Ok(Self {
            src,
            dst: dst.iter(),
            pending: None,
        })
    }

    /// The copy of the destination folio `d` at `index`, if it has one.
    fn pair(&self, index: usize, d: MigratePfn) -> Option<CopyRun> {
        let dst_pfn = d.pfn()?;
        let (head, s) = self.src.head_of(index)?;
        if !s.is_migrate() || index + d.nr_pages() > head + s.nr_pages() {
            return None;
        }
        // `index - head` is below 1 << 18.
        let src_pfn = s.pfn()? + (index - head) as u64;
        Some(CopyRun {
            index,
            src_pfn,
            dst_pfn,
            npages: d.nr_pages(),
        })
    }
}

impl Iterator for CopyRuns<'_> {
    type Item = CopyRun;

    fn next(&mut self) -> Option<CopyRun> {
        let mut cur = self.pending.take();
        while let Some((index, d)) = self.dst.next() {
            let Some(next) = self.pair(index, d) else {
                if cur.is_some() {
                    return cur;
                }
                continue;
            };
            match cur.as_mut() {
                None => cur = Some(next),
                Some(run)
                    if run.index + run.npages == index
                        && run.src_pfn + run.npages as u64 == next.src_pfn
                        && run.dst_pfn + run.npages as u64 == next.dst_pfn =>
                {
                    run.npages += next.npages;
                }
                Some(_) => {
                    self.pending = Some(next);
                    return cur;
                }
            }
        }
        cur
    }
}

impl core::iter::FusedIterator for CopyRuns<'_> {}

#[cfg(test)]
mod tests {
    use super::super::pfn::{MIGRATE_PFN_MIGRATE, PMD_ORDER};
    use super::*;
    use std::vec::Vec;

    fn v(pfn: u64, order: u32) -> u64 {
        MigratePfn::new(pfn, order).unwrap().raw()
    }

    #[test]
    fn contiguous_heads_coalesce() {
        let mut s = [0u64; 16];
        s[0] = v(0x100, 2); // 0x100..0x104
        s[4] = v(0x104, 0); // contiguous
        s[5] = v(0x105, 0); // contiguous
        s[6] = v(0x206, 1); // new run
        s[8] = v(0x208, 3); // contiguous with the previous
        let a = FolioArray::new(&s).unwrap();
        let e: Vec<_> = a.extents().collect();
        assert_eq!(
            e,
            [
                Extent {
                    index: 0,
                    pfn: 0x100,
                    npages: 6,
                    folios: 3
                },
                Extent {
                    index: 6,
                    pfn: 0x206,
                    npages: 10,
                    folios: 2
                },
            ]
        );
        assert_eq!(e[1].end_index(), 16);
        assert_eq!(e[1].end_pfn(), 0x210);
    }

    #[test]
    fn gaps_holes_and_flags_end_runs() {
        let mut s = [0u64; 8];
        s[0] = v(0x10, 0);
        // slot 1 empty: gap in the array
        s[2] = v(0x12, 0);
        s[3] = MigratePfn::hole(0).unwrap().raw();
        s[4] = v(0x14, 0);
        s[5] = MigratePfn::new(0x15, 0).unwrap().with_migrate().raw();
        let a = FolioArray::new(&s).unwrap();
        let idx: Vec<_> = a.extents().map(|e| (e.index, e.npages)).collect();
        assert_eq!(idx, [(0, 1), (2, 1), (4, 2)]);
        let mig: Vec<_> = a
            .extents_with(MIGRATE_PFN_MIGRATE)
            .map(|e| e.index)
            .collect();
        assert_eq!(mig, [5]);
    }

    #[test]
    fn physically_discontiguous_heads_split_runs() {
        let s = [v(0x10, 0), v(0x12, 0), v(0x13, 0), v(0x11, 0)];
        let a = FolioArray::new(&s).unwrap();
        let e: Vec<_> = a.extents().map(|e| (e.index, e.pfn, e.npages)).collect();
        assert_eq!(e, [(0, 0x10, 1), (1, 0x12, 2), (3, 0x11, 1)]);
    }

    #[test]
    fn copy_runs_pair_src_and_dst() {
        let mig = |pfn, order| MigratePfn::new(pfn, order).unwrap().with_migrate().raw();
        let mut src = [0u64; 1040];
        let mut dst = [0u64; 1040];
        // A 2 MiB source copied to a 2 MiB destination.
        src[0] = mig(0x1000, PMD_ORDER);
        dst[0] = v(0x8000, PMD_ORDER);
        // A 2 MiB source copied to 4 KiB destinations, contiguous for 3
        // pages then not.
        src[512] = mig(0x2000, PMD_ORDER);
        dst[512] = v(0x9000, 0);
        dst[513] = v(0x9001, 0);
        dst[514] = v(0x9002, 0);
        dst[515] = v(0x7000, 0);
        // A destination larger than its source is not copied.
        src[1024] = mig(0x3000, 0);
        dst[1024] = v(0xa000, 3);
        // A source without MIGRATE is not copied.
        src[1032] = v(0x4000, 0);
        dst[1032] = v(0xb000, 0);
        let runs: Vec<_> = CopyRuns::new(
            FolioArray::new(&src).unwrap(),
            FolioArray::new(&dst).unwrap(),
        )
        .unwrap()
        .collect();
        assert_eq!(
            runs,
            [
                CopyRun {
                    index: 0,
                    src_pfn: 0x1000,
                    dst_pfn: 0x8000,
                    npages: 512
                },
                CopyRun {
                    index: 512,
                    src_pfn: 0x2000,
                    dst_pfn: 0x9000,
                    npages: 3
                },
                CopyRun {
                    index: 515,
                    src_pfn: 0x2003,
                    dst_pfn: 0x7000,
                    npages: 1
                },
            ]
        );
        assert!(CopyRuns::new(
            FolioArray::new(&src[1032..1036]).unwrap(),
            FolioArray::new(&dst[1032..1040]).unwrap()
        )
        .is_err());
    }
}
