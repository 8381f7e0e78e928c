// SPDX-License-Identifier: GPL-2.0

//! The Rust migrate_device engine.
//!
//! Implements the entry points of `mm/migrate_device.c` (`migrate_vma_setup`,
//! `_pages`, `_finalize`, and `migrate_device_range`, `_pfns`, `_pages`,
//! `_finalize`) with the same array format, locking rules and results, and
//! two differences: each collected folio's head slot carries its order next
//! to `MIGRATE_PFN_COMPOUND`, and the walk collects one head per PMD. The C
//! entry points call in here while debugfs `migrate_device/engine` says
//! `rust`.
//!
//! - [`collect`] walks the range (the decisions are
//!   [`migrate_core::collect`](crate::migrate_core::collect)'s);
//! - [`unmap`] isolates, unmaps through the rmap and checks for pins;
//! - [`pages`] moves metadata to the destinations and maps destinations
//!   into holes;
//! - [`finalize`] removes the migration entries and releases everything;
//! - [`device`] collects device folios by PFN for eviction;
//! - [`counters`] counts the work for debugfs `migrate_device/counters`;
//! - `entry` holds the `extern "C"` entry points that the C functions of
//!   `mm/migrate_device.c` call.

pub(crate) mod collect;
pub mod counters;
mod device;
pub mod entry;
mod finalize;
mod pages;
mod unmap;
