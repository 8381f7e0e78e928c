// SPDX-License-Identifier: GPL-2.0

//! VRAM in 2 MiB chunks, split for smaller folios.
//!
//! A folio of the PMD order takes a chunk of its own. Smaller folios are
//! handed out from one open chunk, one after the other at the next offset
//! aligned to their size, so that the folios of one migration, whatever
//! system pages they come from, land next to each other: one extent, one
//! copy (seed 003: "migrate 2MB of scattered system memory into a
//! contiguous 2MB block of VRAM").
//!
//! The allocator keeps nothing per 4 KiB page: per chunk, how far it has
//! been handed out, how many of its pages are still live and when it was
//! last allocated from. Space freed inside a split chunk is not reused until
//! every folio of the chunk is freed and the chunk becomes free again; the
//! driver gets such chunks back by evicting the least recently allocated
//! ones ([`ChunkAllocator::oldest_in_use`]).

use core::ops::{DerefMut, Range};

/// The order of a chunk: 2 MiB of 4 KiB pages.
pub const CHUNK_ORDER: u32 = 9;
/// The pages of a chunk.
pub const CHUNK_PAGES: usize = 1 << CHUNK_ORDER;

/// Why an allocation or a free was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A folio larger than a chunk.
    Order,
    /// No chunk has room for the folio: evict, or fail with -ENOMEM.
    Exhausted,
    /// A free of pages that are not an allocated folio of that order.
    NotAllocated,
}

/// What the allocator knows of one chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Pages handed out from the start of the chunk; 0 when it is free.
    used: u16,
    /// Pages of the folios handed out and not freed yet.
    live: u16,
    /// The allocator's clock at the last allocation from the chunk.
    stamp: u64,
}

impl Chunk {
    /// A chunk nothing was allocated from.
    pub const FREE: Self = Self {
        used: 0,
        live: 0,
        stamp: 0,
    };

    /// Whether a folio of the chunk is live.
    #[inline]
    pub fn in_use(&self) -> bool {
        self.live != 0
    }

    /// The pages of live folios.
    #[inline]
    pub fn live_pages(&self) -> usize {
        usize::from(self.live)
    }
}

/// Allocates folios of order 0 to [`CHUNK_ORDER`] from the chunks of
/// `S`, as page offsets into the VRAM (chunk `i` is pages `i *
/// CHUNK_PAGES ..`).
///
/// # Invariants
///
/// For every chunk, `live <= used <= CHUNK_PAGES`, and `used == 0` when
/// `live == 0`. `open`, when set, is the index of a chunk.
#[derive(Debug)]
pub struct ChunkAllocator<S> {
    chunks: S,
    /// The chunk small folios come from.
    open: Option<usize>,
    clock: u64,
}

impl<S: DerefMut<Target = [Chunk]>> ChunkAllocator<S> {
    /// An allocator over `chunks`, all of which are made free.
    pub fn new(mut chunks: S) -> Self {
        chunks.fill(Chunk::FREE);
        // INVARIANT: every chunk is free; nothing is open.
        Self {
            chunks,
            open: None,
            clock: 0,
        }
    }

    /// The number of chunks.
    #[inline]
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether there is no chunk at all.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The state of chunk `i`.
    #[inline]
    pub fn chunk(&self, i: usize) -> Option<&Chunk> {
        self.chunks.get(i)
    }

    /// The pages of chunk `i`, as offsets into the VRAM.
    #[inline]
    pub fn pages_of(i: usize) -> Range<usize> {
        i * CHUNK_PAGES..(i + 1) * CHUNK_PAGES
    }

    /// The chunks with a live folio.
    pub fn chunks_in_use(&self) -> usize {
        self.chunks.iter().filter(|c| c.in_use()).count()
    }

    /// The pages of live folios, in all chunks.
    pub fn live_pages(&self) -> usize {
        self.chunks.iter().map(Chunk::live_pages).sum()
    }

    /// The chunk in use that was allocated from least recently: the one to
    /// evict when there is no room.
    pub fn oldest_in_use(&self) -> Option<usize> {
        self.chunks
            .as_ref()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.in_use())
            .min_by_key(|(_, c)| c.stamp)
            .map(|(i, _)| i)
    }

    /// Takes `nr` pages at `start` of chunk `i`, which has room for them.
    fn take(&mut self, i: usize, start: usize, nr: usize) -> usize {
        self.clock += 1;
        let clock = self.clock;
        let c = &mut self.chunks[i];
        // INVARIANT: `start + nr <= CHUNK_PAGES` (the callers check), so
        // both counts stay within the chunk and `live <= used`.
        c.used = (start + nr) as u16;
        c.live += nr as u16;
        c.stamp = clock;
        i * CHUNK_PAGES + start
    }

    /// A free chunk, looking from the one after the open chunk on so that
    /// chunks are used in turn.
    fn free_chunk(&self) -> Option<usize> {
        let n = self.len();
        let first = self.open.map_or(0, |o| o + 1);
        (0..n)
            .map(|k| (first + k) % n)
            .find(|&i| self.chunks[i].used == 0)
    }

    /// Allocates a folio of `order`; returns its first page.
    ///
    /// A folio of [`CHUNK_ORDER`] takes a free chunk; a smaller one goes at
    /// the next offset of the open chunk aligned to its size, or opens a
    /// free chunk when it does not fit.
    pub fn alloc(&mut self, order: u32) -> Result<usize, Error> {
        if order > CHUNK_ORDER {
            return Err(Error::Order);
        }
        let nr = 1usize << order;
        if order < CHUNK_ORDER {
            if let Some(i) = self.open {
                let start = usize::from(self.chunks[i].used).next_multiple_of(nr);
                if start + nr <= CHUNK_PAGES {
                    return Ok(self.take(i, start, nr));
                }
            }
        }
        let i = self.free_chunk().ok_or(Error::Exhausted)?;
        if order < CHUNK_ORDER {
            self.open = Some(i);
        }
        Ok(self.take(i, 0, nr))
    }

    /// Frees the folio of `order` at `page`, as [`alloc`](Self::alloc)
    /// returned it. When the last live folio of a chunk goes, the chunk is
    /// free again, whole.
    ///
    /// Without per-page state a double free is caught only when it would
    /// free more pages than the chunk has live, or pages it never handed
    /// out.
    pub fn free(&mut self, page: usize, order: u32) -> Result<(), Error> {
        if order > CHUNK_ORDER {
            return Err(Error::Order);
        }
        let nr = 1usize << order;
        let (i, off) = (page / CHUNK_PAGES, page % CHUNK_PAGES);
        let c = self.chunks.get_mut(i).ok_or(Error::NotAllocated)?;
        if off % nr != 0 || off + nr > usize::from(c.used) || usize::from(c.live) < nr {
            return Err(Error::NotAllocated);
        }
        // INVARIANT: `live >= nr`; a chunk left with nothing live is free.
        c.live -= nr as u16;
        if c.live == 0 {
            *c = Chunk::FREE;
        }
        Ok(())
    }
}

#[cfg(all(test, not(kernel)))]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn vram(chunks: usize) -> ChunkAllocator<Vec<Chunk>> {
        ChunkAllocator::new(vec![Chunk::FREE; chunks])
    }

    #[test]
    fn small_folios_land_next_to_each_other() {
        let mut v = vram(2);
        let pages: Vec<_> = (0..CHUNK_PAGES).map(|_| v.alloc(0).unwrap()).collect();
        assert_eq!(pages, (0..CHUNK_PAGES).collect::<Vec<_>>());
        assert_eq!(v.chunks_in_use(), 1);
        // The next one opens the other chunk.
        assert_eq!(v.alloc(0), Ok(CHUNK_PAGES));
        assert_eq!(v.chunks_in_use(), 2);
    }

    #[test]
    fn folios_are_aligned_to_their_size() {
        let mut v = vram(1);
        assert_eq!(v.alloc(0), Ok(0));
        assert_eq!(v.alloc(4), Ok(16), "a 64 KiB folio skips to 64 KiB");
        assert_eq!(v.alloc(0), Ok(32));
        assert_eq!(v.alloc(2), Ok(36));
        assert_eq!(v.live_pages(), 1 + 16 + 1 + 4);
    }

    #[test]
    fn a_pmd_folio_takes_a_chunk_and_leaves_the_open_one() {
        let mut v = vram(3);
        assert_eq!(v.alloc(0), Ok(0));
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(CHUNK_PAGES));
        assert_eq!(v.alloc(0), Ok(1), "small folios stay in the open chunk");
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(2 * CHUNK_PAGES));
        assert_eq!(v.alloc(CHUNK_ORDER), Err(Error::Exhausted));
        assert_eq!(v.alloc(CHUNK_ORDER + 1), Err(Error::Order));
    }

    #[test]
    fn exhaustion_then_a_freed_chunk_is_whole_again() {
        let mut v = vram(2);
        let a = v.alloc(CHUNK_ORDER).unwrap();
        let b = v.alloc(CHUNK_ORDER).unwrap();
        assert_eq!(v.alloc(0), Err(Error::Exhausted));
        v.free(a, CHUNK_ORDER).unwrap();
        assert_eq!(v.chunks_in_use(), 1);
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(a));
        v.free(b, CHUNK_ORDER).unwrap();
        assert_eq!(v.alloc(3), Ok(b));
    }

    #[test]
    fn one_live_folio_keeps_its_chunk_until_it_is_freed() {
        let mut v = vram(2);
        let pages: Vec<_> = (0..CHUNK_PAGES).map(|_| v.alloc(0).unwrap()).collect();
        for &p in &pages[1..] {
            v.free(p, 0).unwrap();
        }
        // Fragmented: 511 pages free, but not as a chunk.
        assert_eq!(v.chunk(0).map(Chunk::live_pages), Some(1));
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(CHUNK_PAGES));
        assert_eq!(v.alloc(CHUNK_ORDER), Err(Error::Exhausted));
        v.free(pages[0], 0).unwrap();
        assert_eq!(v.chunk(0), Some(&Chunk::FREE));
        assert_eq!(v.alloc(CHUNK_ORDER), Ok(0));
    }

    #[test]
    fn eviction_takes_the_least_recently_allocated_chunk() {
        let mut v = vram(3);
        let a = v.alloc(CHUNK_ORDER).unwrap();
        let b = v.alloc(0).unwrap();
        let c = v.alloc(CHUNK_ORDER).unwrap();
        assert_eq!(v.oldest_in_use(), Some(a / CHUNK_PAGES));
        v.alloc(0).unwrap();
        v.free(a, CHUNK_ORDER).unwrap();
        // b's chunk was allocated from after c's.
        assert_eq!(v.oldest_in_use(), Some(c / CHUNK_PAGES));
        v.free(c, CHUNK_ORDER).unwrap();
        assert_eq!(v.oldest_in_use(), Some(b / CHUNK_PAGES));
        assert_eq!(vram(1).oldest_in_use(), None);
    }

    #[test]
    fn bad_frees_are_refused_and_change_nothing() {
        let mut v = vram(2);
        let p = v.alloc(4).unwrap();
        let before = v.chunk(0).copied();
        assert_eq!(v.free(p + 1, 4), Err(Error::NotAllocated), "misaligned");
        assert_eq!(
            v.free(p + 16, 4),
            Err(Error::NotAllocated),
            "never handed out"
        );
        assert_eq!(
            v.free(p, 5),
            Err(Error::NotAllocated),
            "larger than handed out"
        );
        assert_eq!(
            v.free(2 * CHUNK_PAGES, 0),
            Err(Error::NotAllocated),
            "past the VRAM"
        );
        assert_eq!(v.free(p, CHUNK_ORDER + 1), Err(Error::Order));
        assert_eq!(v.chunk(0).copied(), before);
        v.free(p, 4).unwrap();
        assert_eq!(v.free(p, 4), Err(Error::NotAllocated), "double free");
    }

    #[test]
    fn random_allocations_keep_the_books() {
        // A fixed xorshift sequence of allocations and frees, checked
        // against a list of the live folios: no two overlap, and the
        // allocator's live count is theirs.
        let mut v = vram(8);
        let mut live: Vec<(usize, u32)> = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 != 0 || live.is_empty() {
                let order = [0, 0, 0, 2, 4, 9][(x >> 8) as usize % 6];
                match v.alloc(order) {
                    Ok(p) => {
                        let end = p + (1 << order);
                        assert!(live.iter().all(|&(q, o)| end <= q || q + (1 << o) <= p));
                        assert_eq!(p % (1 << order), 0);
                        live.push((p, order));
                    }
                    Err(e) => assert_eq!(e, Error::Exhausted),
                }
            } else {
                let (p, o) = live.swap_remove((x >> 8) as usize % live.len());
                v.free(p, o).unwrap();
            }
            let pages: usize = live.iter().map(|&(_, o)| 1usize << o).sum();
            assert_eq!(v.live_pages(), pages);
        }
    }
}
