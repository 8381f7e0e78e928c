// SPDX-License-Identifier: GPL-2.0

//! Page-table views for device migration: a PMD under its lock
//! ([`PmdGuard`], in `pmd`) and a run of PTEs under the PTE-table lock
//! ([`PteRun`], in `pte`), each reading entries as typed values
//! ([`PmdEntry`], [`PteEntry`], decoded in `entry`).
//!
//! # Examples
//!
//! Find how `addr` is mapped, as collection does (the KUnit suite
//! `folio_migrate_bindings` runs the same on a real user mm):
//!
//! ```ignore
//! let mmap = mm.mmap_read_lock();
//! let vma = mmap.vma_lookup(addr).ok_or(EFAULT)?;
//! match PmdGuard::lock(vma, addr).ok_or(EFAULT)?.entry() {
//!     PmdEntry::Huge { .. } => { /* a THP: collect it whole */ }
//!     PmdEntry::Table => {
//!         let run = PteRun::lock(vma, addr, addr + PAGE_SIZE).ok_or(EAGAIN)?;
//!         for (a, entry) in run.iter() {
//!             if let Some(folio) = run.folio(a) {
//!                 pr_info!("{a:#x}: {entry:?}, order {}\n", folio.order());
//!             }
//!         }
//!     }
//!     _ => {}
//! }
//! ```
//!
//! C header: [`include/linux/pgtable.h`](srctree/include/linux/pgtable.h),
//! [`include/linux/leafops.h`](srctree/include/linux/leafops.h)

mod entry;
mod pmd;
mod pte;

pub use entry::{EntryBits, MigrationKind, PmdEntry, PteEntry, PteValue, TakenPmd, TakenPte};
pub use pmd::{pmd_peek, PmdGuard};
pub use pte::{LazyPteRun, PteRun};

use kernel::{bindings, mm::virt::VmaRef};

/// Size of a page.
pub const PAGE_SIZE: usize = bindings::PAGE_SIZE;
/// Size of the range one PMD maps.
pub const PMD_SIZE: usize = bindings::PMD_SIZE;
/// Order of a PMD-mapped folio.
pub const PMD_ORDER: u32 = (PMD_SIZE / PAGE_SIZE).trailing_zeros();
/// The number of entries of a PTE table (`PTRS_PER_PTE`).
pub const PTRS_PER_PTE: usize = PMD_SIZE / PAGE_SIZE;

// The core restates the page and PMD sizes so that it can be tested on the
// host: keep the two in step.
const _: () = {
    use crate::migrate_core::pfn;
    assert!(pfn::PAGE_SIZE == PAGE_SIZE as u64);
    assert!(pfn::PMD_SIZE == PMD_SIZE as u64);
    assert!(pfn::PMD_ORDER == PMD_ORDER);
};

/// Flushes the TLB entries of `start..end` in `vma` (`flush_tlb_range()`).
#[inline]
pub fn flush_tlb_range(vma: &VmaRef, start: usize, end: usize) {
    // SAFETY: `vma` is valid while borrowed; any range is accepted.
    unsafe { bindings::flush_tlb_range(vma.as_ptr(), start, end) };
}
