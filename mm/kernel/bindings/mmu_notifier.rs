// SPDX-License-Identifier: GPL-2.0

//! MMU-notifier invalidation ranges for migration.
//!
//! Before collection changes page tables, `migrate_vma_collect()` tells
//! secondary MMUs (device page tables) to drop `start..end`, with event
//! `MMU_NOTIFY_MIGRATE` and the migrating driver's `pgmap_owner`, so that
//! the driver can skip invalidating what it is itself migrating.
//!
//! # Examples
//!
//! ```ignore
//! let mut range = MmuNotifierRange::migrate(mm, start, end, owner);
//! {
//!     let _invalidation = range.invalidate();
//!     // Change the page tables of start..end here.
//! } // mmu_notifier_invalidate_range_end()
//! ```
//!
//! C header: [`include/linux/mmu_notifier.h`](srctree/include/linux/mmu_notifier.h)

use core::{ffi::c_void, marker::PhantomData};
use kernel::{bindings, mm::MmWithUser};

/// An invalidation range of an mm, not yet started.
///
/// # Invariants
///
/// `range` was initialised by `mmu_notifier_range_init_owner()` for an mm
/// that outlives `'a`.
pub struct MmuNotifierRange<'a> {
    range: bindings::mmu_notifier_range,
    _mm: PhantomData<&'a MmWithUser>,
}

impl<'a> MmuNotifierRange<'a> {
    /// A migration range `start..end` of `mm` on behalf of `owner`
    /// (`MMU_NOTIFY_MIGRATE`).
    // `owner` is a cookie that notifiers compare, never dereference.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    #[inline]
    pub fn migrate(mm: &'a MmWithUser, start: usize, end: usize, owner: *mut c_void) -> Self {
        // SAFETY: Plain data; initialised below.
        let mut range: bindings::mmu_notifier_range = unsafe { core::mem::zeroed() };
        // SAFETY: `range` is ours and `mm` is valid for `'a`.
        unsafe {
            bindings::mmu_notifier_range_init_owner(
                &mut range,
                bindings::mmu_notifier_event_MMU_NOTIFY_MIGRATE,
                0,
                mm.as_raw(),
                start,
                end,
                owner,
            )
        };
        // INVARIANT: Initialised just above for `mm`.
        Self {
            range,
            _mm: PhantomData,
        }
    }

    /// The first address of the range.
    #[inline]
    pub fn start(&self) -> usize {
        self.range.start
    }

    /// The address after the range.
    #[inline]
    pub fn end(&self) -> usize {
        self.range.end
    }

    /// Starts the invalidation (`mmu_notifier_invalidate_range_start()`);
    /// it ends when the returned guard is dropped. May sleep.
    #[inline]
    pub fn invalidate(&mut self) -> Invalidation<'_> {
        // SAFETY: The range is initialised by the type invariant.
        unsafe { bindings::mmu_notifier_invalidate_range_start(&mut self.range) };
        // INVARIANT: Started just above.
        Invalidation {
            range: &mut self.range,
        }
    }
}

/// A started invalidation; ends it on drop
/// (`mmu_notifier_invalidate_range_end()`).
///
/// # Invariants
///
/// `mmu_notifier_invalidate_range_start()` ran on `range` and the matching
/// end has not.
pub struct Invalidation<'r> {
    range: &'r mut bindings::mmu_notifier_range,
}

impl Drop for Invalidation<'_> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: Started and not ended, by the type invariant.
        unsafe { bindings::mmu_notifier_invalidate_range_end(self.range) };
    }
}
