// SPDX-License-Identifier: GPL-2.0

//! Folio-based device memory migration.
//!
//! The Rust side of `migrate_vma_*` (see [`include/linux/migrate.h`]): a
//! 2 MiB THP or any mTHP is collected and migrated as one folio, its order
//! carried in the migrate PFN, with only the head slot of each folio filled.
//!
//! [`migrate_core`] holds the decisions, as pure functions with no `kernel`
//! dependency, built here from the same files as the host-tested crate
//! `mm/core` of the folio-migrate project. `folio`, `page_table` and
//! `mmu_notifier` are the bindings the engine acts through; `migrate_vma`
//! is the driver API, a typestate over the `migrate_vma_args` binding,
//! `pagemap` provides device-private memory to migrate to, `engine`
//! implements `migrate_vma_*` and `migrate_device_*` behind the C entry
//! points, and `fault` and `fault_entry` the device-private CPU fault
//! paths.
//!
//! Each patch of the series adds its modules here; a module whose source a
//! patch has not added yet is left out of that patch's crate root.
//!
//! [`include/linux/migrate.h`]: srctree/include/linux/migrate.h

/// Prefix of this object's log messages (`pr_*!`); with the VRAM driver,
/// `module!` below defines it.
#[cfg(not(CONFIG_CONTIG_ALLOC))]
const __LOG_PREFIX: &[u8] = b"folio_migrate\0";

#[path = "core/lib.rs"]
pub mod migrate_core;

// The bindings: sound wrappers of the C types and operations the engine
// and the drivers act through. Their folder holds all of the unsafe code
// but for the engine's C entry points.
#[path = "bindings/collection.rs"]
pub mod collection;
#[path = "bindings/folio.rs"]
pub mod folio;
#[path = "bindings/migrate_vma_args.rs"]
pub mod migrate_vma_args;
#[path = "bindings/migration.rs"]
pub mod migration;
#[path = "bindings/mmu_notifier.rs"]
pub mod mmu_notifier;
#[path = "bindings/page_table/mod.rs"]
pub mod page_table;
#[path = "bindings/pagemap.rs"]
pub mod pagemap;
#[path = "bindings/percpu_counters.rs"]
pub mod percpu_counters;
#[path = "bindings/populate.rs"]
pub mod populate;
#[path = "bindings/fault.rs"]
pub mod vm_fault;

// The driver API: a typestate over `migrate_vma_args`.
pub mod migrate_vma;

// The VRAM driver of drivers-glue/, built into this object so that it can
// use the driver API above. Its chunk allocator:
#[path = "vram_core/lib.rs"]
pub mod vram_core;

// The device memory it allocates from (a binding: contiguous system pages
// under a pagemap), and the driver.
#[cfg(CONFIG_CONTIG_ALLOC)]
#[path = "bindings/device_memory.rs"]
pub mod device_memory;
#[cfg(CONFIG_CONTIG_ALLOC)]
#[path = "vram/driver.rs"]
pub mod vram;
#[cfg(CONFIG_CONTIG_ALLOC)]
#[path = "vram/chardev.rs"]
mod vram_chardev;

#[cfg(CONFIG_CONTIG_ALLOC)]
kernel::prelude::module! {
    // The object's init: the VRAM driver's device, and its parameter.
    type: vram_chardev::VramModule,
    name: "folio_migrate",
    authors: ["folio-migrate"],
    description: "Folio-based device migration, and a VRAM driver on it",
    license: "GPL",
    params: {
        vram_chunks: u32 {
            default: 32,
            description: "2 MiB chunks of VRAM reserved at init (0: no device)",
        },
    },
}

// The engine's phases, and the device-private CPU fault paths.
pub mod engine;
#[path = "fault/device_private.rs"]
pub mod fault;
#[path = "fault/entry.rs"]
pub mod fault_entry;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/migrate_core_kunit.rs"]
mod migrate_core_kunit;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/user_mm.rs"]
mod kunit_user_mm;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/bindings_kunit.rs"]
mod bindings_kunit;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/migrate_vma_kunit.rs"]
mod migrate_vma_kunit;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/pagemap_kunit.rs"]
mod pagemap_kunit;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/device_kunit.rs"]
mod device_kunit;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/extent_walk_kunit.rs"]
mod extent_walk_kunit;

#[cfg(CONFIG_KUNIT = "y")]
#[path = "kunit/vram_core_kunit.rs"]
mod vram_core_kunit;

#[cfg(all(CONFIG_KUNIT = "y", CONFIG_CONTIG_ALLOC))]
#[path = "kunit/vram_kunit.rs"]
mod vram_kunit;
