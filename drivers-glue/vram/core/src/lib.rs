// SPDX-License-Identifier: GPL-2.0

#![cfg_attr(not(kernel), no_std)]

//! The pure core of the folio-migrate VRAM driver.
//!
//! The driver's VRAM is one physically contiguous region under a
//! device-private pagemap mapped 1:1 onto it, so a run of device PFNs is one
//! run of VRAM and one copy. What decides where folios land is here, free of
//! kernel types so that it is tested on the host:
//!
//! - [`chunk`]: the allocator of 2 MiB chunks, split for smaller folios,
//!   with metadata per chunk only ([`ChunkAllocator`]).
//!
//! Like `migrate_core`, the crate is `no_std`, allocates nothing and has no
//! `unsafe`; the kernel driver builds the same files with `--cfg kernel`.
//!
//! # Example
//!
//! Eight scattered 4 KiB pages going to the device land next to each other,
//! so the driver copies them as one extent:
//!
//! ```
//! use vram_core::{ChunkAllocator, Chunk};
//!
//! let mut chunks = [Chunk::FREE; 4];
//! let mut vram = ChunkAllocator::new(&mut chunks[..]);
//! let pages: Vec<usize> = (0..8).map(|_| vram.alloc(0)).collect::<Result<_, _>>()?;
//! assert_eq!(pages, (0..8).collect::<Vec<_>>());
//! assert_eq!(vram.chunks_in_use(), 1);
//! # Ok::<(), vram_core::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(test, not(kernel)))]
extern crate std;

pub mod chunk;

pub use self::chunk::{Chunk, ChunkAllocator, Error, CHUNK_ORDER, CHUNK_PAGES};
