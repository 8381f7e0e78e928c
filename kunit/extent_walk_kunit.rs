// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the C walks of include/linux/migrate.h against the Rust
//! rules they restate: `migrate_pfn_for_each_extent()` must yield what
//! [`CopyRuns`] yields, on the same arrays, so that C and Rust drivers copy
//! the same runs.

#[kernel::macros::kunit_tests(folio_migrate_extent_walk)]
mod tests {
    use crate::migrate_core::extent::{CopyRun, CopyRuns};
    use crate::migrate_core::folio_array::FolioArray;
    use crate::migrate_core::pfn::MigratePfn;
    use crate::migrate_core::Error;
    use kernel::{bindings, prelude::*};

    /// Slots per array: small enough for the stack, large enough for folios
    /// of order 3 to meet every neighbour.
    const SLOTS: usize = 64;

    /// A xorshift generator: the arrays are random but the same every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Fills `slots` with folios of orders 0 to 3, aligned, whose PFNs
    /// often follow the previous folio's, with empty slots and (for a
    /// `src`) holes and folios without `MIGRATE_PFN_MIGRATE` among them.
    fn fill(
        rng: &mut Rng,
        slots: &mut [u64; SLOTS],
        base_pfn: u64,
        src: bool,
    ) -> Result<(), Error> {
        let mut i = 0;
        let mut pfn = base_pfn;
        while i < SLOTS {
            let mut order = rng.below(4) as u32;
            while i % (1 << order) != 0 {
                order -= 1;
            }
            let nr = 1usize << order;
            if rng.below(3) != 0 {
                // Contiguous with the previous folio, or not.
                pfn += 0x40 * rng.below(2);
            } else {
                pfn += 0x1000;
            }
            // A folio is aligned to its size in physical memory too.
            pfn = pfn.next_multiple_of(nr as u64);
            slots[i] = match rng.below(8) {
                0 => 0,
                1 if src => MigratePfn::hole(order)?.raw(),
                2 if src => MigratePfn::new(pfn, order)?.raw(),
                _ if src => MigratePfn::new(pfn, order)?.with_migrate().raw(),
                _ => MigratePfn::new(pfn, order)?.raw(),
            };
            pfn += nr as u64;
            i += nr;
        }
        Ok(())
    }

    /// The runs of the C walk over `src` and `dst`, into `out`; returns
    /// how many there were.
    fn c_runs(src: &[u64; SLOTS], dst: &[u64; SLOTS], out: &mut [CopyRun; SLOTS]) -> usize {
        let src = src.map(|s| s as usize);
        let dst = dst.map(|d| d as usize);
        // SAFETY: All-zero is the start of a walk (`next` and `src_head` 0),
        // as `migrate_pfn_for_each_extent()` sets it.
        let mut ext: bindings::migrate_pfn_extent = unsafe { core::mem::zeroed() };
        let mut n = 0;
        // SAFETY: Both arrays hold `SLOTS` slots and outlive the calls;
        // `ext` is a walk over them.
        while unsafe {
            bindings::migrate_pfn_next_extent(src.as_ptr(), dst.as_ptr(), SLOTS, &mut ext)
        } {
            // A walk of `SLOTS` slots yields at most `SLOTS` runs.
            assert!(n < SLOTS);
            out[n] = CopyRun {
                index: ext.index,
                src_pfn: ext.src_pfn as u64,
                dst_pfn: ext.dst_pfn as u64,
                npages: ext.npages,
            };
            n += 1;
        }
        n
    }

    #[test]
    fn c_extent_walk_steps_past_a_larger_destination() -> Result<(), Error> {
        // A destination twice the size of its source covers the head of the
        // next source's destination (test_hmm's bad-destination flags do
        // this; the engine refuses it). FolioArray refuses such an array, so
        // CopyRuns never sees one; the C walk must still copy the next
        // source, which the engine migrates.
        let mut src = [0u64; SLOTS];
        let mut dst = [0u64; SLOTS];
        src[0] = MigratePfn::new(0x100, 2)?.with_migrate().raw();
        src[4] = MigratePfn::new(0x104, 2)?.with_migrate().raw();
        dst[0] = MigratePfn::new(0x200, 3)?.raw();
        dst[4] = MigratePfn::new(0x304, 2)?.raw();
        let mut c = [CopyRun {
            index: 0,
            src_pfn: 0,
            dst_pfn: 0,
            npages: 0,
        }; SLOTS];
        assert_eq!(c_runs(&src, &dst, &mut c), 1);
        assert_eq!(
            c[0],
            CopyRun {
                index: 4,
                src_pfn: 0x104,
                dst_pfn: 0x304,
                npages: 4
            }
        );
        Ok(())
    }

    #[test]
    fn c_extent_walk_matches_copy_runs() -> Result<(), Error> {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut runs = 0;
        let mut merged = 0;
        for _ in 0..200 {
            let mut src = [0u64; SLOTS];
            let mut dst = [0u64; SLOTS];
            fill(&mut rng, &mut src, 0x10_0000, true)?;
            fill(&mut rng, &mut dst, 0x80_0000, false)?;
            let mut c = [CopyRun {
                index: 0,
                src_pfn: 0,
                dst_pfn: 0,
                npages: 0,
            }; SLOTS];
            let n = c_runs(&src, &dst, &mut c);
            let mut rust = CopyRuns::new(FolioArray::new(&src)?, FolioArray::new(&dst)?)?;
            for run in &c[..n] {
                assert_eq!(rust.next().as_ref(), Some(run));
                merged += usize::from(run.npages > 1);
            }
            assert_eq!(rust.next(), None);
            runs += n;
        }
        // The arrays must exercise the walk: many runs, some of them merged.
        assert!(runs > 1000);
        assert!(merged > 200);
        Ok(())
    }
}
