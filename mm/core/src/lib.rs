// SPDX-License-Identifier: GPL-2.0

#![cfg_attr(not(kernel), no_std)]

//! The pure core of large-folio device migration.
//!
//! `migrate_vma_setup()`, `migrate_vma_pages()` and `migrate_vma_finalize()`
//! (see `include/linux/migrate.h` and `mm/migrate_device.c`) move memory between
//! system RAM and device memory through two arrays of migrate PFNs, `src` and
//! `dst`, with one slot per 4 KiB page of the range. This crate holds the parts
//! of that engine that are decisions rather than effects, so that they can be
//! tested on the host and built into the kernel unchanged:
//!
//! - [`pfn`]: the migrate PFN, bit-compatible with Linux 7.3, plus a folio order
//!   field ([`MigratePfn`]);
//! - [`folio_array`]: `src`/`dst` arrays in which only the head slot of a folio
//!   is filled, their validation and per-folio iteration ([`FolioArray`],
//!   [`FolioArrayMut`]);
//! - [`extent`]: runs of physically contiguous folios, one device copy each
//!   ([`Extent`], [`CopyRun`]);
//! - [`collect`]: what the page-table walk of `migrate_vma_collect()` does with
//!   each PMD and PTE it meets ([`Decision`]);
//! - [`fault_lock`]: who locks each folio the rules collect or split
//!   ([`LockAction`]);
//! - [`error`]: the one error type ([`Error`]).
//!
//! The crate is `no_std`, uses only `core`, allocates nothing and has no
//! `unsafe`. In the kernel the same files are a module of the engine object,
//! built with `--cfg kernel`; the code therefore names its own items with
//! `self::`/`super::` paths only.
//!
//! # Example
//!
//! A driver's view of a `src` array after `migrate_vma_setup()`: a 2 MiB
//! folio and a 4 KiB page that follows it in memory, one copy for both.
//!
//! ```
//! use migrate_core::{FolioArray, MigratePfn, MIGRATE_PFN_MIGRATE, PMD_ORDER};
//!
//! let mut src = [0u64; 1024];
//! src[0] = MigratePfn::new(0x40000, PMD_ORDER)?.with_migrate().raw();
//! src[512] = MigratePfn::new(0x40200, 0)?.with_migrate().raw();
//! let src = FolioArray::new(&src)?;
//! assert_eq!(src.iter().map(|(i, m)| (i, m.order())).collect::<Vec<_>>(), [(0, 9), (512, 0)]);
//! let runs = src.extents_with(MIGRATE_PFN_MIGRATE).map(|e| (e.pfn, e.npages));
//! assert_eq!(runs.collect::<Vec<_>>(), [(0x40000, 513)]);
//! # Ok::<(), migrate_core::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(test, not(kernel)))]
extern crate std;

pub mod collect;
pub mod error;
pub mod extent;
pub mod fault_lock;
pub mod folio_array;
pub mod pfn;

pub use self::collect::{
    migrate_vma_collect_hole, migrate_vma_collect_huge_pmd, migrate_vma_collect_pmd,
    migrate_vma_collect_pte, migrate_vma_collect_skip, CollectArgs, Decision, Failure, Orders,
    PageInfo, PageKind, PmdEntry, PteEntry, SelectFlags, Source, MIGRATE_VMA_SELECT_COMPOUND,
    MIGRATE_VMA_SELECT_DEVICE_COHERENT, MIGRATE_VMA_SELECT_DEVICE_PRIVATE, MIGRATE_VMA_SELECT_MTHP,
    MIGRATE_VMA_SELECT_SYSTEM,
};
pub use self::error::Error;
pub use self::extent::{CopyRun, CopyRuns, Extent, Extents};
pub use self::fault_lock::LockAction;
pub use self::folio_array::{validate, FolioArray, FolioArrayMut, Folios};
pub use self::pfn::{
    MigratePfn, MIGRATE_PFN_COMPOUND, MIGRATE_PFN_MIGRATE, MIGRATE_PFN_ORDER_MAX,
    MIGRATE_PFN_ORDER_SHIFT, MIGRATE_PFN_SHIFT, MIGRATE_PFN_VALID, MIGRATE_PFN_WRITE, PMD_ORDER,
    PUD_ORDER,
};
