// SPDX-License-Identifier: GPL-2.0

//! The engine's per-CPU counters and the clock that times its phases.
//!
//! Each count is one `this_cpu_add()` into a per-CPU array of
//! `MIGRATE_DEVICE_RUST_COUNTERS` counters, which the C helpers index only
//! within bounds: a count never takes a lock or an atomic.
//!
//! C header: [`mm/folio_migrate/engine.h`](srctree/mm/folio_migrate/engine.h)

use kernel::bindings;

/// A timestamp in nanoseconds from the NMI-safe monotonic clock
/// (`ktime_get_mono_fast_ns()`), which reads the clocksource without a
/// seqcount retry loop.
#[inline]
pub fn now_ns() -> u64 {
    // SAFETY: Reads a clock; callable from any context.
    unsafe { bindings::ktime_get_mono_fast_ns() }
}

/// Adds `n` to counter `idx` of this CPU (`migrate_device_counter_add()`);
/// an `idx` past the last counter is refused with a warning.
#[inline]
pub fn add(idx: u32, n: usize) {
    // SAFETY: The helper checks `idx` against the array, and a per-CPU
    // add is safe with preemption on: a migrated task adds to the counter
    // of the CPU it runs on.
    unsafe { bindings::migrate_device_counter_add(idx, n) };
}

/// The sum of counter `idx` over every CPU
/// (`migrate_device_counter_sum()`); 0 past the last counter.
#[inline]
pub fn sum(idx: u32) -> usize {
    // SAFETY: The helper checks `idx` against the array and only reads.
    unsafe { bindings::migrate_device_counter_sum(idx) as usize }
}

/// Sets every counter of every CPU to 0 (`migrate_device_counters_clear()`);
/// a count made meanwhile may survive.
#[inline]
pub fn clear() {
    // SAFETY: Stores 0 into plain per-CPU counters.
    unsafe { bindings::migrate_device_counters_clear() };
}
