// SPDX-License-Identifier: GPL-2.0

//! Folio-based device memory migration.
//!
//! The Rust side of `migrate_vma_*` (see [`include/linux/migrate.h`]): a
//! 2 MiB THP or any mTHP is collected and migrated as one folio, its order
//! carried in the migrate PFN, with only the head slot of each folio filled.
//!
//! [`migrate_core`] holds the decisions, as pure functions with no `kernel`
//! dependency, built here from the same files as the host-tested crate
//! `mm/core` of the folio-migrate project.
//!
//! [`include/linux/migrate.h`]: srctree/include/linux/migrate.h

#[path = "core/lib.rs"]
pub mod migrate_core;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/migrate_core_kunit.rs"]
mod migrate_core_kunit;
