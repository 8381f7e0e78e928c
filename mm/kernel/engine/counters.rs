// SPDX-License-Identifier: GPL-2.0

//! Engine counters: the work the Rust engine did, read and reset through
//! debugfs `migrate_device/counters`, so that two runs can be compared by
//! what they did and not only by how long it took.
//!
//! A call counts through [`Stats`] into the per-CPU counters of
//! mm/folio_migrate/engine.h, one `this_cpu_add()` per count, so neither
//! the hot loops nor a single-page fault do an atomic operation. The
//! maximum wait is not a sum and stays one global atomic, raised only when
//! a fault waited.
//! The `ns_*` counters time the phases, one clock read at each end of a
//! phase, so that the time of a migration can be split into the engine's
//! share and the driver's.

use crate::percpu_counters;
pub(crate) use crate::percpu_counters::now_ns;
use core::sync::atomic::{AtomicUsize, Ordering};
use kernel::{c_str, ffi::c_char, prelude::*, str::CStr};

/// One engine counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// Holes collected (a PMD-sized hole counts once).
    Holes,
    /// PMD entries read by collection.
    PmdsWalked,
    /// PTE entries read by collection.
    PtesWalked,
    /// PMD migration entries installed by collection.
    PmdMigrationEntries,
    /// PTE migration entries installed by collection.
    PteMigrationEntries,
    /// Folios split before or during migration.
    Splits,
    /// TLB flushes issued by the engine (ranges and single entries).
    TlbFlushes,
    /// mmu-notifier invalidation ranges started.
    NotifierRanges,
    /// Folios the rmap walk had to unmap (`try_to_migrate()`).
    RmapUnmaps,
    /// Folios whose metadata moved to the destination.
    Migrated,
    /// Holes populated with a destination folio.
    Inserted,
    /// Folios restored or left in place at finalize.
    Restored,
    /// Folios whose migration entries finalize put back through an rmap
    /// walk (`remove_migration_ptes()`), not the page-table walk.
    RmapRestores,
    /// Failure: a folio lock was contended.
    FailTrylock,
    /// Failure: a folio could not be split.
    FailSplit,
    /// Failure: a PMD migration entry could not be installed.
    FailPmdMigrationEntry,
    /// Failure: an anon-exclusive page could not be shared (pinned).
    FailAnonShare,
    /// Failure: a folio could not be isolated from the LRU.
    FailIsolate,
    /// Failure: a folio stayed mapped or had extra references.
    FailPinned,
    /// Failure: the folio's mapping could not be moved.
    FailMigrateMapping,
    /// Failure: the source is in the swap cache or a file.
    FailMapping,
    /// Failure: the destination is a ZONE_DEVICE type that is not supported.
    FailDestination,
    /// Failure: a large source could not be split for a small destination.
    FailSplitUnmapped,
    /// Failure: a call was refused for its arguments.
    FailArgs,
    /// Device-private CPU faults handled (PTE and PMD).
    Faults,
    /// `migrate_to_ram()` calls made by those faults.
    MigrateToRam,
    /// Faults that found the fault folio locked and slept until it was not.
    FaultWaits,
    /// Faults under the per-VMA lock, retried under the mmap lock.
    FaultRetries,
    /// The longest such sleep, in nanoseconds (a maximum, not a sum).
    FaultWaitMaxNs,
    /// Migration entries the fault path installed (engine "rust-entry").
    FaultEntries,
    /// Those that collection took as already unmapped.
    FaultEntriesCollected,
    /// Those the fault path put back after `migrate_to_ram()`.
    FaultEntriesRestored,
    /// Nanoseconds in collection: the page-table walk of
    /// `migrate_vma_setup()`, or locking the PFNs of `migrate_device_*()`.
    NsCollect,
    /// Nanoseconds in unmap: LRU isolation and the rmap walks after it.
    NsUnmap,
    /// Nanoseconds in `migrate_*_pages()`.
    NsPages,
    /// Nanoseconds in `migrate_*_finalize()`.
    NsFinalize,
    /// Folios collected whole, by order: order 0 is this counter, order `n`
    /// is `FolioOrder0 + n`.
    FolioOrder0,
}

/// Highest folio order counted on its own; larger ones count here too.
pub const MAX_COUNTED_ORDER: usize = 9;

const NR_COUNTERS: usize = Counter::FolioOrder0 as usize + MAX_COUNTED_ORDER + 1;

const NAMES: [&CStr; NR_COUNTERS] = [
    c_str!("holes"),
    c_str!("pmds_walked"),
    c_str!("ptes_walked"),
    c_str!("pmd_migration_entries"),
    c_str!("pte_migration_entries"),
    c_str!("splits"),
    c_str!("tlb_flushes"),
    c_str!("notifier_ranges"),
    c_str!("rmap_unmaps"),
    c_str!("migrated"),
    c_str!("inserted"),
    c_str!("restored"),
    c_str!("rmap_restores"),
    c_str!("fail_trylock"),
    c_str!("fail_split"),
    c_str!("fail_pmd_migration_entry"),
    c_str!("fail_anon_share"),
    c_str!("fail_isolate"),
    c_str!("fail_pinned"),
    c_str!("fail_migrate_mapping"),
    c_str!("fail_mapping"),
    c_str!("fail_destination"),
    c_str!("fail_split_unmapped"),
    c_str!("fail_args"),
    c_str!("faults"),
    c_str!("migrate_to_ram"),
    c_str!("fault_waits"),
    c_str!("fault_retries"),
    c_str!("fault_wait_max_ns"),
    c_str!("fault_entries"),
    c_str!("fault_entries_collected"),
    c_str!("fault_entries_restored"),
    c_str!("ns_collect"),
    c_str!("ns_unmap"),
    c_str!("ns_pages"),
    c_str!("ns_finalize"),
    c_str!("folios_order_0"),
    c_str!("folios_order_1"),
    c_str!("folios_order_2"),
    c_str!("folios_order_3"),
    c_str!("folios_order_4"),
    c_str!("folios_order_5"),
    c_str!("folios_order_6"),
    c_str!("folios_order_7"),
    c_str!("folios_order_8"),
    c_str!("folios_order_9"),
];

// The per-CPU counters have room for MIGRATE_DEVICE_RUST_COUNTERS (64).
const _: () = assert!(NR_COUNTERS <= 64);

/// `Counter::FaultWaitMaxNs`, the one counter that is a maximum.
static FAULT_WAIT_MAX_NS: AtomicUsize = AtomicUsize::new(0);

/// Adds `n` to counter `idx` of this CPU.
#[inline]
fn count(idx: usize, n: usize) {
    // `idx` is below NR_COUNTERS, which fits the per-CPU array.
    percpu_counters::add(idx as u32, n);
}

/// Where an engine call counts its work. Each count goes straight to this
/// CPU's counter: one `this_cpu_add()`, a single instruction without a lock
/// prefix on x86. A call has no local copy to set up or to flush when it
/// returns, which a single-page fault would pay for four times.
pub struct Stats {
    _private: (),
}

impl Stats {
    /// A handle to count with.
    #[inline]
    pub const fn new() -> Self {
        Self { _private: () }
    }

    /// Adds `n` to `counter`.
    #[inline]
    pub fn add(&mut self, counter: Counter, n: usize) {
        if counter == Counter::FaultWaitMaxNs {
            self.max(counter, n);
        } else if n != 0 {
            count(counter as usize, n);
        }
    }

    /// Adds one to `counter`.
    #[inline]
    pub fn inc(&mut self, counter: Counter) {
        self.add(counter, 1);
    }

    /// Raises the maximum `counter` to `v`; only `FaultWaitMaxNs` is one.
    #[inline]
    pub fn max(&mut self, counter: Counter, v: usize) {
        if counter == Counter::FaultWaitMaxNs {
            // Most faults do not wait: no atomic for them.
            if v != 0 {
                FAULT_WAIT_MAX_NS.fetch_max(v, Ordering::Relaxed);
            }
        } else {
            kernel::warn_on!(true);
        }
    }

    /// Adds the nanoseconds since `start`, a [`now_ns()`], to `phase`.
    #[inline]
    pub fn time_since(&mut self, phase: Counter, start: u64) {
        self.add(phase, now_ns().saturating_sub(start) as usize);
    }

    /// Counts a folio of `order` collected whole.
    #[inline]
    pub fn folio(&mut self, order: u32) {
        let order = (order as usize).min(MAX_COUNTED_ORDER);
        count(Counter::FolioOrder0 as usize + order, 1);
    }
}

impl Default for Stats {
    #[inline]
    fn default() -> Self {
        Self::new()
    }
}

/// Reads counter `idx` for debugfs: its name and value; false past the
/// last one.
///
/// # Safety
///
/// `name` and `value` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn rust_migrate_device_counter(
    idx: u32,
    name: *mut *const c_char,
    value: *mut usize,
) -> bool {
    let idx = idx as usize;
    if idx >= NR_COUNTERS {
        return false;
    }
    let sum = if idx == Counter::FaultWaitMaxNs as usize {
        FAULT_WAIT_MAX_NS.load(Ordering::Relaxed)
    } else {
        percpu_counters::sum(idx as u32)
    };
    // SAFETY: The caller passes pointers valid for writes.
    unsafe {
        *name = NAMES[idx].as_char_ptr();
        *value = sum;
    }
    true
}

/// Resets every counter to 0.
#[no_mangle]
pub extern "C" fn rust_migrate_device_counters_reset() {
    percpu_counters::clear();
    FAULT_WAIT_MAX_NS.store(0, Ordering::Relaxed);
}
