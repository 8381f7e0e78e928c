// SPDX-License-Identifier: GPL-2.0

//! The folios a migration holds, and what it does to them.
//!
//! The `src` and `dst` arrays of `migrate_vma_*` are seen through
//! [`SourceSlots`] and [`DestSlots`]: views made once, at the C entry
//! points, whose slots own what they name. A source slot with a PFN holds a
//! reference to its folio and that folio's lock (the fault path holds the
//! lock of the fault folio instead, see [`FaultPage`]); a destination slot
//! holds the lock and reference the driver handed over. Every lock,
//! reference, LRU isolation, rmap walk, mapping move and split goes
//! through the views' methods, and the methods that end a slot clear it,
//! so the engine's phases cannot release a folio twice or keep one.
//!
//! A source view is typed by its phase: [`Collected`] (after collection,
//! the folios may still be mapped), [`Isolated`] (the folios that will
//! migrate are off the LRU, isolated in one pass) and [`Unmapped`] (after
//! unmap, every slot that will migrate has only migration entries left and
//! is off the LRU unless it is ZONE_DEVICE memory).
//!
//! C header: [`include/linux/migrate.h`](srctree/include/linux/migrate.h),
//! [`include/linux/rmap.h`](srctree/include/linux/rmap.h)

use crate::folio::Folio;
use crate::migrate_core::pfn::{MigratePfn, PMD_NR};
use crate::page_table::{pmd_peek, PmdEntry, PmdGuard, PteRun, PAGE_SIZE, PMD_ORDER, PMD_SIZE};
use core::{marker::PhantomData, mem::MaybeUninit, ptr};
use kernel::{
    bindings,
    error::{code::EINVAL, Error, Result},
    mm::virt::VmaRef,
};

// The arrays are `unsigned long`, read here as `u64`.
const _: () = assert!(core::mem::size_of::<usize>() == core::mem::size_of::<u64>());

// The core restates the order field of `include/linux/migrate.h` (the flags
// are checked in `migrate_vma`): keep the two in step.
const _: () = {
    use crate::migrate_core::pfn;
    assert!(pfn::MIGRATE_PFN_ORDER_SHIFT == bindings::MIGRATE_PFN_ORDER_SHIFT);
    assert!(pfn::MIGRATE_PFN_ORDER_MASK == bindings::MIGRATE_PFN_ORDER_MASK);
};

// The core restates the select flags of `include/linux/migrate.h` too.
const _: () = {
    use crate::migrate_core::collect as rules;
    let flags = [
        (
            rules::MIGRATE_VMA_SELECT_SYSTEM,
            bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_SYSTEM,
        ),
        (
            rules::MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
            bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_PRIVATE,
        ),
        (
            rules::MIGRATE_VMA_SELECT_DEVICE_COHERENT,
            bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_DEVICE_COHERENT,
        ),
        (
            rules::MIGRATE_VMA_SELECT_COMPOUND,
            bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_COMPOUND,
        ),
        (
            rules::MIGRATE_VMA_SELECT_MTHP,
            bindings::migrate_vma_direction_MIGRATE_VMA_SELECT_MTHP,
        ),
    ];
    let mut i = 0;
    while i < flags.len() {
        assert!(flags[i].0 == flags[i].1 as u64);
        i += 1;
    }
};

/// Borrows `n` slots of a C array, as collection fills them.
///
/// # Safety
///
/// `ptr` points at `n` slots that nothing else accesses for `'a`.
#[inline]
pub unsafe fn slots_mut<'a>(ptr: *mut usize, n: usize) -> &'a mut [u64] {
    if n == 0 || ptr.is_null() {
        return &mut [];
    }
    // SAFETY: The caller guarantees `n` valid, exclusive slots; `usize` and
    // `u64` have the same size and alignment here.
    unsafe { core::slice::from_raw_parts_mut(ptr.cast::<u64>(), n) }
}

/// Decodes a slot; one that does not decode (a driver's reserved bit, a
/// misaligned head) reads as empty.
#[inline]
fn read(raw: u64) -> MigratePfn {
    MigratePfn::from_raw_or_empty(raw)
}

/// Whether THP migration is built in (`thp_migration_supported()`).
#[inline]
pub fn thp_migration_supported() -> bool {
    // SAFETY: Reads a configuration constant.
    unsafe { bindings::thp_migration_supported() }
}

/// The value of a core result that an invariant of the caller makes
/// infallible; a failure is a bug: it warns and reads as `fallback`.
#[inline]
pub fn or_warn<T, E>(result: core::result::Result<T, E>, fallback: T) -> T {
    result.unwrap_or_else(|_| {
        kernel::warn_on!(true);
        fallback
    })
}

/// Whether `vma` is one `migrate_vma_setup()` refuses: hugetlb, DAX or
/// `VM_SPECIAL`.
#[inline]
pub fn vma_unsupported(vma: &VmaRef) -> bool {
    // SAFETY: `vma` proves the mmap lock is held.
    unsafe { bindings::folio_migrate_vma_unsupported(vma.as_ptr()) }
}

/// The page a CPU fault set the migration up for, if any.
///
/// The fault path trylocks the folio of the faulting device-private page,
/// takes a reference, and calls `migrate_to_ram()`, whose migration treats
/// that folio as locked but never takes or drops the lock: collection does
/// not trylock it, restore and finalize do not unlock it, and a split moves
/// the lock to whichever folio holds the page afterwards.
///
/// # Invariants
///
/// `page` is null, or a valid page whose folio the fault path holds locked
/// and referenced for as long as this value is used.
#[derive(Clone, Copy)]
pub struct FaultPage {
    page: *mut bindings::page,
}

impl FaultPage {
    /// No fault page: the migration did not come from a CPU fault.
    pub const NONE: Self = Self {
        page: ptr::null_mut(),
    };

    /// Wraps the `fault_page` of a `struct migrate_vma`.
    ///
    /// # Safety
    ///
    /// `page` is null or a valid page whose folio the caller (the fault
    /// path) holds locked and referenced while the value is used.
    #[inline]
    pub unsafe fn new(page: *mut bindings::page) -> Self {
        // INVARIANT: The caller guarantees the lock and the reference.
        Self { page }
    }

    /// The folio the fault page is in now.
    #[inline]
    pub fn folio(&self) -> Option<&Folio> {
        if self.page.is_null() {
            return None;
        }
        // SAFETY: The page is valid and its folio referenced by the type
        // invariant.
        Some(unsafe { Folio::from_page(self.page) })
    }

    /// Whether `folio` holds the fault page.
    #[inline]
    pub fn is_in(&self, folio: &Folio) -> bool {
        self.folio().is_some_and(|f| ptr::eq(f, folio))
    }

    /// The raw page, null for none.
    #[inline]
    pub(crate) fn as_raw(&self) -> *mut bindings::page {
        self.page
    }

    /// Whether there is a fault page.
    #[inline]
    pub fn is_some(&self) -> bool {
        !self.page.is_null()
    }
}

/// How both array views read their slots.
pub trait Slots {
    /// The slots, as the C array holds them.
    fn raw(&self) -> &[u64];

    /// The number of slots.
    #[inline]
    fn len(&self) -> usize {
        self.raw().len()
    }

    /// Whether there are no slots.
    #[inline]
    fn is_empty(&self) -> bool {
        self.raw().is_empty()
    }

    /// Slot `i`, decoded.
    #[inline]
    fn get(&self, i: usize) -> MigratePfn {
        read(self.raw()[i])
    }

    /// Whether slot `i` is 0, as a folio's tail slots are: nothing to
    /// decode.
    #[inline]
    fn is_unused(&self, i: usize) -> bool {
        self.raw()[i] == 0
    }

    /// The first slot from `from` on, before `end`, that is not 0, else
    /// `end`: a large folio's tail slots are skipped in one scan.
    #[inline]
    fn next_used(&self, from: usize, end: usize) -> usize {
        let Some(slots) = self.raw().get(from..end) else {
            return end;
        };
        from + first_used(slots.len(), |k| slots[k])
    }
}

/// The first slot from `from` on, before `end`, that is not 0 in `src` or
/// in `dst`, else `end`.
#[inline]
fn next_used_in_either(src: &[u64], dst: &[u64], from: usize, end: usize) -> usize {
    let (Some(src), Some(dst)) = (src.get(from..end), dst.get(from..end)) else {
        return end;
    };
    let n = src.len().min(dst.len());
    from + first_used(n, |k| src[k] | dst[k])
}

/// The first `k < n` for which `slot(k)` is not 0, else `n`. Past an
/// empty slot, as a large folio's tail slots come, eight are tested at a
/// time; a used slot costs one test.
#[inline(always)]
fn first_used(n: usize, slot: impl Fn(usize) -> u64) -> usize {
    const STRIDE: usize = 8;
    let mut k = 0;
    while k < n && slot(k) == 0 {
        k += 1;
        while k + STRIDE <= n && (k..k + STRIDE).fold(0, |acc, j| acc | slot(j)) == 0 {
            k += STRIDE;
        }
    }
    k
}

impl<P> Slots for SourceSlots<'_, P> {
    #[inline]
    fn raw(&self) -> &[u64] {
        self.slots
    }
}

impl Slots for DestSlots<'_> {
    #[inline]
    fn raw(&self) -> &[u64] {
        self.slots
    }
}

/// Source phase: collected, possibly still mapped.
pub struct Collected;
/// Source phase: migrating folios off the LRU, possibly still mapped.
pub struct Isolated;
/// Source phase: unmapped, migrating folios off the LRU.
pub struct Unmapped;

/// The `src` array of a migration.
///
/// # Invariants
///
/// Each slot with a PFN names the head page of a folio the migration holds
/// a reference to and, unless `fault` is in it, the lock of. Under
/// [`Collected`], no slot is isolated from the LRU by the migration. Under
/// [`Isolated`], a slot with a PFN names ZONE_DEVICE memory or, exactly
/// when it has `MIGRATE_PFN_MIGRATE`, a folio isolated from the LRU by
/// the migration, whose reference is the isolation's. Under
/// [`Unmapped`], every slot with a PFN
/// names a folio that is mapped only by migration entries and, unless it
/// is ZONE_DEVICE memory, isolated from the LRU by the migration, whose
/// reference is the isolation's.
pub struct SourceSlots<'a, P> {
    slots: &'a mut [u64],
    fault: FaultPage,
    _phase: PhantomData<P>,
}

impl<'a, P> SourceSlots<'a, P> {
    /// Re-encodes slot `i` as the head of a folio of `order`; fails if its
    /// PFN is not aligned to that order. The slot names the same folio and
    /// keeps its flags, whatever the phase.
    #[inline]
    pub fn set_order(&mut self, i: usize, order: u32) -> Result {
        let head = self.get(i).with_order(order).map_err(|_| EINVAL)?;
        self.slots[i] = head.raw();
        Ok(())
    }

    /// Borrows the `src` array of a migration at phase `P`.
    ///
    /// # Safety
    ///
    /// `ptr` points at `n` slots that nothing else accesses for `'a`, and
    /// they are as the type invariant says for `P`, with `fault` the
    /// migration's fault page.
    #[inline]
    pub unsafe fn from_raw(ptr: *mut usize, n: usize, fault: FaultPage) -> Self {
        // INVARIANT: The caller guarantees the slots.
        Self {
            // SAFETY: The caller guarantees the array.
            slots: unsafe { slots_mut(ptr, n) },
            fault,
            _phase: PhantomData,
        }
    }

    /// The fault page of the migration.
    #[inline]
    pub fn fault(&self) -> FaultPage {
        self.fault
    }

    /// The folio slot `i` holds.
    #[inline]
    pub fn folio(&self, i: usize) -> Option<&Folio> {
        // The migration wrote the slot, and a driver only clears flags in
        // it: its PFN needs no full decode.
        let pfn = MigratePfn::handed_over_pfn(self.slots[i])?;
        // SAFETY: A slot with a PFN holds a reference to its folio by the
        // type invariant, for as long as `self` is borrowed; a PFN has at
        // most 50 bits and fits `usize`.
        Some(unsafe { Folio::from_pfn(pfn as usize) })
    }

    /// Whether slot `i` holds a folio, without looking it up.
    #[inline]
    pub fn has_folio(&self, i: usize) -> bool {
        MigratePfn::handed_over_pfn(self.slots[i]).is_some()
    }

    /// Whether slot `i` has `MIGRATE_PFN_MIGRATE`, which a driver may
    /// clear: no full decode, as for [`SourceSlots::folio`].
    #[inline]
    fn migrates(&self, i: usize) -> bool {
        MigratePfn::handed_over_migrate(self.slots[i])
    }

    /// Clears `MIGRATE_PFN_MIGRATE` of slot `i`: its source stays.
    #[inline]
    pub fn clear_migrate(&mut self, i: usize) {
        // INVARIANT: Under `Collected` nothing is isolated, and only
        // `isolate_and_unmap` clears the flag, of a slot whose folio it did
        // not isolate or put back, as `Isolated` wants it; under `Unmapped`
        // a slot is isolated with or without the flag.
        self.slots[i] = self.get(i).without_migrate().raw();
    }

    /// Sets slot `i`, which names no page, to the hole `hole`; refused
    /// (with a warning) if either names a page.
    #[inline]
    pub fn set_hole(&mut self, i: usize, hole: MigratePfn) {
        if kernel::warn_on!(self.get(i).pfn().is_some() || hole.pfn().is_some()) {
            return;
        }
        self.slots[i] = hole.raw();
    }

    /// Whether slot `i`'s folio is the fault folio.
    #[inline]
    fn is_fault_folio(&self, folio: &Folio) -> bool {
        self.fault.is_in(folio)
    }

    /// Drops what slot `i` holds, its reference into `puts`, and clears
    /// it.
    ///
    /// # Safety
    ///
    /// The slot's migration entries were removed, and its folio is not
    /// isolated by the migration (or was put back with its reference
    /// handed to the slot).
    unsafe fn release(&mut self, i: usize, puts: &mut PutBatch) {
        match self.folio(i) {
            Some(folio) => {
                let (raw, fault) = (folio.as_raw(), self.is_fault_folio(folio));
                // SAFETY: As the caller promises; the slot names `raw`.
                unsafe { self.release_folio(i, raw, fault, puts) };
            }
            None => self.slots[i] = 0,
        }
    }

    /// [`SourceSlots::release`] for a slot whose folio was looked up.
    ///
    /// # Safety
    ///
    /// As for [`SourceSlots::release`]; slot `i` names `folio`, which is
    /// the fault folio exactly when `fault`.
    #[inline]
    unsafe fn release_folio(
        &mut self,
        i: usize,
        folio: *mut bindings::folio,
        fault: bool,
        puts: &mut PutBatch,
    ) {
        self.slots[i] = 0;
        // SAFETY: The slot held the reference and, unless it is the fault
        // folio, the lock (type invariant); it is cleared, so neither is
        // released twice.
        unsafe {
            if !fault {
                bindings::folio_unlock(folio);
            }
            puts.put(folio);
        }
    }

    /// [`SourceSlots::release_folio`] for a folio that the caller just
    /// mapped: the slot's reference is dropped at once if `put`, else the
    /// entries took it over.
    ///
    /// # Safety
    ///
    /// As for [`SourceSlots::release_folio`]; moreover, if `put`, the
    /// caller holds no spinlock; if not, the entries the caller restored
    /// took over the slot's reference, and the caller holds their lock.
    #[inline]
    unsafe fn release_mapped_folio(
        &mut self,
        i: usize,
        folio: *mut bindings::folio,
        fault: bool,
        put: bool,
    ) {
        self.slots[i] = 0;
        // SAFETY: The slot held the reference and, unless it is the fault
        // folio, the lock (type invariant); it is cleared, so neither is
        // released twice. Without `put`, the entries' lock keeps the folio
        // until it is unlocked.
        unsafe {
            if !fault {
                bindings::folio_unlock(folio);
            }
            if put {
                bindings::folio_put(folio);
            }
        }
    }
}

impl<'a> SourceSlots<'a, Collected> {
    /// `migrate_device_unmap()`'s pass over the slots: isolates from the
    /// LRU the folio of every slot that will migrate
    /// (`folio_isolate_lru()`), replaces what mappings are left by
    /// migration entries (`try_to_migrate()`) and checks that nobody else
    /// holds a reference, one slot after the other. `report` hears of each
    /// slot's outcome. The slots that cannot migrate are then restored:
    /// returns the slots, unmapped, and how many were restored.
    ///
    /// Each lruvec lock is taken once for a run of folios of the same
    /// lruvec instead of once per folio, and dropped before anything that
    /// sleeps or takes it again. The isolation takes over the slot's
    /// reference; ZONE_DEVICE memory is on no LRU. This CPU's LRU cache is
    /// drained before the first folio to isolate, not at the start as
    /// `migrate_device_unmap()` does: a migration of device memory only,
    /// such as every CPU fault's, then leaves the folios that earlier
    /// migrations put back to go to the LRU a batch at a time. The first
    /// folio found on no LRU may sit in another CPU's LRU cache: those are
    /// drained then, once, as `migrate_device_unmap()` does. A folio that
    /// cannot migrate is put back on the LRU and its slot loses
    /// `MIGRATE_PFN_MIGRATE`, to be restored once the pass is done; a pass
    /// in which every folio unmapped has nothing to restore and does not
    /// look again.
    ///
    /// While the pass runs, the slots it went through are as [`Isolated`]
    /// says, and the others as [`Collected`] says.
    pub fn isolate_and_unmap(
        mut self,
        mut report: impl FnMut(UnmapOutcome),
    ) -> (SourceSlots<'a, Unmapped>, usize) {
        let mut lru = LruvecLock::new();
        let mut drained = Drained::None;
        let mut failed = false;
        let mut i = 0;
        while i < self.slots.len() {
            if self.is_unused(i) {
                i += 1;
                continue;
            }
            let (outcome, nr) = self.isolate_and_unmap_folio(i, &mut lru, &mut drained);
            failed |= matches!(
                outcome,
                UnmapOutcome::NotIsolated | UnmapOutcome::Pinned { .. }
            );
            report(outcome);
            i += nr;
        }
        drop(lru);
        // INVARIANT: Every non-ZONE_DEVICE folio of a slot that kept the
        // flag was just isolated, its reference the slot's; the others
        // were not, or were put back.
        let mut isolated = SourceSlots::<Isolated> {
            slots: self.slots,
            fault: self.fault,
            _phase: PhantomData,
        };
        let restored = if failed {
            isolated.restore_unmigrated()
        } else {
            0
        };
        // SAFETY: A slot with a PFN that did not unmap had an outcome
        // other than `Unmapped`, which set `failed`, and lost the flag:
        // `restore_unmigrated()` released it. Every other slot with a PFN
        // unmapped.
        (unsafe { isolated.into_unmapped() }, restored)
    }

    /// [`SourceSlots::isolate_and_unmap`] for slot `i`, not empty; `lru`
    /// is the lruvec lock held from the slots before, `drained` which LRU
    /// caches were drained. A large folio's head slot is given its
    /// folio's order: from here on it carries it. Returns the outcome and
    /// the number of slots the slot covers.
    #[inline(always)]
    fn isolate_and_unmap_folio(
        &mut self,
        i: usize,
        lru: &mut LruvecLock,
        drained: &mut Drained,
    ) -> (UnmapOutcome, usize) {
        let (outcome, nr) = match self.folio(i) {
            None => {
                let slot = self.get(i);
                let hole = slot.is_migrate();
                return (UnmapOutcome::Empty { hole }, slot.nr_pages());
            }
            Some(folio) => {
                // Most slots hold a small folio, whose order is not looked
                // up.
                let order = folio.is_large().then(|| folio.order());
                let outcome = self.isolate_and_unmap_slot(i, folio, lru, drained);
                let nr = match order {
                    None => 1,
                    Some(order) if self.set_order(i, order).is_ok() => 1 << order,
                    Some(_) => {
                        kernel::warn_on!(true);
                        1
                    }
                };
                (outcome, nr)
            }
        };
        if matches!(
            outcome,
            UnmapOutcome::NotIsolated | UnmapOutcome::Pinned { .. }
        ) {
            // INVARIANT: The folio was not isolated, or was put back.
            self.clear_migrate(i);
        }
        (outcome, nr)
    }

    /// [`SourceSlots::isolate_and_unmap_folio`] for `folio`, slot `i`'s,
    /// past the slot's order. The caller clears `MIGRATE_PFN_MIGRATE` of a
    /// slot whose folio cannot migrate.
    #[inline(always)]
    fn isolate_and_unmap_slot(
        &self,
        i: usize,
        folio: &Folio,
        lru: &mut LruvecLock,
        drained: &mut Drained,
    ) -> UnmapOutcome {
        let migrate = self.migrates(i);
        let (raw, zone_device) = (folio.as_raw(), folio.is_zone_device());
        if migrate && !zone_device {
            if *drained == Drained::None {
                // Draining takes the lruvec lock: not under it.
                lru.unlock();
                lru_add_drain();
                *drained = Drained::Local;
            }
            if *drained == Drained::Local && !folio.is_on_lru() {
                // Draining sleeps: not under the lruvec lock.
                lru.unlock();
                lru_add_drain_all();
                *drained = Drained::All;
            }
            if !lru.isolate(folio) {
                return UnmapOutcome::NotIsolated;
            }
        }
        if !migrate {
            return UnmapOutcome::NotIsolated;
        }
        let rmap_walked = folio.is_mapped();
        // A locked folio that nothing maps is not mapped again until it is
        // unlocked: only an rmap walk that may have left a mapping makes it
        // worth looking again.
        let still_mapped = rmap_walked && {
            // The rmap walk sleeps.
            lru.unlock();
            // SAFETY: The folio is locked and referenced (type invariant).
            unsafe { bindings::try_to_migrate(raw, 0) };
            folio.is_mapped()
        };
        if still_mapped || !self.has_only_expected_refs(folio, zone_device) {
            if !zone_device {
                // The putback takes the lruvec lock.
                lru.unlock();
                // SAFETY: `folio_putback_lru()` drops the isolation's
                // reference: take the one the slot keeps until restore.
                unsafe {
                    bindings::folio_get(raw);
                    bindings::folio_putback_lru(raw);
                }
            }
            return UnmapOutcome::Pinned { rmap_walked };
        }
        UnmapOutcome::Unmapped { rmap_walked }
    }

    /// Whether `folio`, a slot's, has no reference but its mappings', the
    /// page cache's and the migration's (`migrate_vma_check_page()`); only
    /// asked once it is known not to be mapped, so that its mappings have
    /// none; `zone_device` says whether it is ZONE_DEVICE memory.
    #[inline]
    fn has_only_expected_refs(&self, folio: &Folio, zone_device: bool) -> bool {
        // The migration's reference (isolation's or the slot's), and the
        // fault path's for the fault folio, and one more for ZONE_DEVICE
        // memory, as `migrate_vma_check_page()` counts.
        let mut extra = 1 + i32::from(self.is_fault_folio(folio)) + i32::from(zone_device);
        if folio.has_mapping() {
            extra += 1 + i32::from(folio.has_private());
        }
        folio.ref_count() <= extra
    }
}

impl<'a> SourceSlots<'a, Isolated> {
    /// Restores every slot that has a PFN but will not migrate: its
    /// migration entries become mappings of the folio again, and its lock
    /// and reference are dropped. Returns how many slots were restored.
    fn restore_unmigrated(&mut self) -> usize {
        let mut restored = 0;
        let mut puts = PutBatch::new();
        for i in 0..self.slots.len() {
            let m = self.get(i);
            let Some(folio) = self.folio(i) else {
                continue;
            };
            if m.is_migrate() {
                continue;
            }
            // SAFETY: The folio is locked (or the fault folio) and its
            // migration entries, if any, are the migration's own.
            unsafe { bindings::remove_migration_ptes(folio.as_raw(), folio.as_raw(), 0) };
            // SAFETY: Not isolated (type invariant); entries removed.
            unsafe { self.release(i, &mut puts) };
            restored += 1;
        }
        restored
    }

    /// Marks the end of unmap.
    ///
    /// # Safety
    ///
    /// Every slot with a PFN went through [`SourceSlots::isolate_and_unmap`]
    /// with the outcome [`UnmapOutcome::Unmapped`]: the others were
    /// restored.
    #[inline]
    unsafe fn into_unmapped(self) -> SourceSlots<'a, Unmapped> {
        // INVARIANT: The caller guarantees the `Unmapped` invariant.
        SourceSlots {
            slots: self.slots,
            fault: self.fault,
            _phase: PhantomData,
        }
    }
}

/// Where `migrate_device_range()` and `migrate_device_pfns()` read their
/// device PFNs.
#[derive(Clone, Copy)]
pub enum DevicePfns {
    /// `start..start + npages`.
    Range {
        /// The first PFN.
        start: usize,
    },
    /// The `src` array itself, each PFN read before its slot is written.
    InArray,
}

/// What locking one device PFN found (`migrate_device_pfn_lock()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DevicePfn {
    /// A folio of `order`, now locked and referenced by its slot.
    Locked {
        /// The folio's order.
        order: u32,
    },
    /// A folio in use whose trylock failed.
    Contended,
    /// A free page or a tail page.
    Free,
}

impl<'a> SourceSlots<'a, Collected> {
    /// Collects the device folios at the PFNs `pfns` names, one slot per
    /// page: each in-use folio headed at its PFN is referenced and
    /// trylocked, and fills its head slot with its order, its tail slots
    /// empty; `seen` learns what each head PFN was. A folio that runs past
    /// the end of the array is left alone, with every slot from it on.
    ///
    /// # Safety
    ///
    /// `ptr` points at `n` slots that nothing else accesses for `'a`, and
    /// every PFN read has a memmap entry.
    pub unsafe fn lock_device_pfns(
        ptr: *mut usize,
        n: usize,
        pfns: DevicePfns,
        mut seen: impl FnMut(DevicePfn),
    ) -> Self {
        // SAFETY: The caller guarantees the array.
        let slots = unsafe { slots_mut(ptr, n) };
        let mut i = 0;
        while i < n {
            let pfn = match pfns {
                DevicePfns::Range { start } => start + i,
                DevicePfns::InArray => slots[i] as usize,
            };
            // SAFETY: The caller guarantees the memmap entry; the order is
            // read without a reference, as 7.3 reads it, only to step.
            let (page, order) = unsafe {
                let page = bindings::pfn_to_page(pfn);
                (page, bindings::folio_order(bindings::page_folio(page)))
            };
            // SAFETY: Only a non-tail page with a non-zero count is taken.
            let folio = unsafe { bindings::folio_get_nontail_page(page) };
            let mut found = DevicePfn::Free;
            slots[i] = 0;
            if !folio.is_null() {
                // SAFETY: We hold a reference.
                if unsafe { bindings::folio_trylock(folio) } {
                    // INVARIANT: The slot holds the lock and the reference.
                    slots[i] = or_warn(
                        MigratePfn::new(pfn as u64, 0).map(|m| m.with_migrate().raw()),
                        0,
                    );
                    found = DevicePfn::Locked { order };
                } else {
                    // SAFETY: Drops the reference just taken.
                    unsafe { bindings::folio_put(folio) };
                    found = DevicePfn::Contended;
                }
            }
            let nr = 1usize << order;
            if nr > n - i {
                if slots[i] != 0 {
                    // SAFETY: Releases what was taken just above.
                    unsafe {
                        bindings::folio_unlock(folio);
                        bindings::folio_put(folio);
                    }
                }
                slots[i..].fill(0);
                break;
            }
            if nr > 1 {
                // A folio's head PFN is aligned to its order.
                let head = read(slots[i]);
                slots[i] = head.with_order(order).map_or(slots[i], MigratePfn::raw);
                slots[i + 1..i + nr].fill(0);
            }
            seen(found);
            i += nr;
        }
        // INVARIANT: Each slot with a PFN was filled above with a folio
        // locked and referenced; none is isolated.
        Self {
            slots,
            fault: FaultPage::NONE,
            _phase: PhantomData,
        }
    }
}

/// What [`SourceSlots::isolate_and_unmap`] did with a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapOutcome {
    /// The slot names no folio; a `hole` the driver may fill if it has
    /// `MIGRATE_PFN_MIGRATE`.
    Empty {
        /// Whether the slot has `MIGRATE_PFN_MIGRATE`.
        hole: bool,
    },
    /// The folio could not be isolated from the LRU: it stays.
    NotIsolated,
    /// The folio is still mapped, or pinned: it stays.
    Pinned {
        /// Whether `try_to_migrate()` walked the rmap.
        rmap_walked: bool,
    },
    /// The folio is unmapped and isolated: it migrates.
    Unmapped {
        /// Whether `try_to_migrate()` walked the rmap.
        rmap_walked: bool,
    },
}

/// Why [`SourceSlots::migrate_to`] left a slot where it is.
pub enum MigrateToError {
    /// The source is file-backed, or its swap slot could not be freed, and
    /// the destination is device memory.
    Mapping,
    /// The folios do not match, or the mapping could not move.
    Refused,
}

/// Which LRU caches a pass of [`SourceSlots::isolate_and_unmap`] drained.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// None yet: no folio to isolate was met.
    None,
    /// This CPU's (`lru_add_drain()`).
    Local,
    /// Every CPU's (`lru_add_drain_all()`).
    All,
}

/// Drains this CPU's LRU caches (`lru_add_drain()`).
#[inline]
fn lru_add_drain() {
    // SAFETY: Always allowed in process context.
    unsafe { bindings::lru_add_drain() };
}

/// Drains every CPU's LRU caches (`lru_add_drain_all()`); sleeps.
#[inline]
fn lru_add_drain_all() {
    // SAFETY: Process context; a caller holding folio locks is allowed.
    unsafe { bindings::lru_add_drain_all() };
}

/// The `dst` array of a migration.
///
/// # Invariants
///
/// Each slot with `MIGRATE_PFN_VALID` names a page of a folio the driver
/// locked and gave its reference to the migration, not yet released; a
/// slot that decodes names the folio's head page.
pub struct DestSlots<'a> {
    slots: &'a mut [u64],
}

impl<'a> DestSlots<'a> {
    /// Borrows the `dst` array of a migration.
    ///
    /// # Safety
    ///
    /// `ptr` points at `n` slots that nothing else accesses for `'a`, each
    /// empty or naming a folio as the type invariant says.
    #[inline]
    pub unsafe fn from_raw(ptr: *mut usize, n: usize) -> Self {
        // INVARIANT: The caller guarantees the slots.
        Self {
            // SAFETY: The caller guarantees the array.
            slots: unsafe { slots_mut(ptr, n) },
        }
    }

    /// The destination of slot `i`, as proof that the migration holds it
    /// locked; the slot is decoded once.
    #[inline]
    pub fn dest(&self, i: usize) -> Option<DestFolio<'_>> {
        let slot = self.get(i);
        let pfn = slot.pfn()?;
        // SAFETY: The driver's reference keeps the folio of the page for as
        // long as `self` is borrowed (type invariant); a PFN has at most 50
        // bits and fits `usize`.
        let folio = unsafe { Folio::from_pfn(pfn as usize) };
        // INVARIANT: The slot's folio, locked and referenced by the driver
        // for the migration (type invariant).
        Some(DestFolio {
            folio,
            compound: slot.is_compound(),
            order: slot.order(),
        })
    }

    /// The folio of the page slot `i` hands over, whether or not the slot
    /// decodes: what goes back to the driver when it is not used.
    #[inline]
    fn handed_over(&self, i: usize) -> Option<&Folio> {
        let pfn = MigratePfn::handed_over_pfn(self.slots[i])?;
        // SAFETY: The driver locked and referenced the folio of that page
        // (type invariant), which keeps it while `self` is borrowed; a PFN
        // has at most 50 bits and fits `usize`.
        Some(unsafe { Folio::from_pfn(pfn as usize) })
    }

    /// Unlocks and drops slot `i`'s destination, unused (or refused, such
    /// as one that names a page other than its folio's head), and clears
    /// the slot so that it is not released twice.
    fn release(&mut self, i: usize, fault: &FaultPage, puts: &mut PutBatch) {
        let Some(folio) = self.handed_over(i) else {
            return;
        };
        // A destination is never the fault folio.
        if kernel::warn_on!(fault.is_in(folio)) {
            return;
        }
        // SAFETY: The slot names the folio, not the fault folio.
        unsafe { self.release_folio(i, folio.as_raw(), puts) };
    }

    /// [`DestSlots::release`] for a slot whose folio was looked up.
    ///
    /// # Safety
    ///
    /// Slot `i` names `folio`, which is not the fault folio.
    #[inline]
    unsafe fn release_folio(&mut self, i: usize, folio: *mut bindings::folio, puts: &mut PutBatch) {
        self.slots[i] = 0;
        // SAFETY: The slot owned the driver's lock and reference; it is
        // cleared, so neither is released twice.
        unsafe {
            bindings::folio_unlock(folio);
            puts.put(folio);
        }
    }

    /// [`DestSlots::release_folio`] for a folio that the caller just
    /// mapped: the slot's reference is dropped at once if `put`, else the
    /// entries took it over.
    ///
    /// # Safety
    ///
    /// As for [`DestSlots::release_folio`]; moreover, if `put`, the caller
    /// holds no spinlock; if not, the entries the caller restored took over
    /// the slot's reference, and the caller holds their lock.
    #[inline]
    unsafe fn release_mapped_folio(&mut self, i: usize, folio: *mut bindings::folio, put: bool) {
        self.slots[i] = 0;
        // SAFETY: The slot owned the driver's lock and reference; it is
        // cleared, so neither is released twice. Without `put`, the
        // entries' lock keeps the folio until it is unlocked.
        unsafe {
            bindings::folio_unlock(folio);
            if put {
                bindings::folio_put(folio);
            }
        }
    }
}

/// A destination folio the driver locked and gave to the migration.
///
/// # Invariants
///
/// `folio` is locked and referenced by the migration for `'a`.
pub struct DestFolio<'a> {
    folio: &'a Folio,
    compound: bool,
    order: u32,
}

impl DestFolio<'_> {
    /// Whether the driver gave it as a PMD-sized folio
    /// (`MIGRATE_PFN_COMPOUND`).
    #[inline]
    pub fn is_compound(&self) -> bool {
        self.compound
    }

    /// The order its slot gives.
    #[inline]
    pub fn slot_order(&self) -> u32 {
        self.order
    }
}

impl core::ops::Deref for DestFolio<'_> {
    type Target = Folio;

    #[inline]
    fn deref(&self) -> &Folio {
        self.folio
    }
}

impl<'a> SourceSlots<'a, Unmapped> {
    /// Gives up on migrating slot `i` and leaves it naming its head page
    /// alone, order 0, as 7.3 leaves a PMD it could not split.
    #[inline]
    pub fn demote_to_page(&mut self, i: usize) {
        // INVARIANT: The PFN stays, and with it what the slot holds.
        let head = or_warn(self.get(i).subpage(0), MigratePfn::EMPTY);
        if head.pfn().is_some() {
            self.slots[i] = head.without_migrate().raw();
        }
    }

    /// Moves slot `i`'s mapping and flags to the destination `new`
    /// (`folio_migrate_mapping()`, `folio_migrate_flags()`), allowing for
    /// the reference the fault path holds on the fault folio. Only
    /// anonymous memory moves `to_device`: a folio in the swap cache leaves
    /// it first.
    #[inline]
    pub fn migrate_to(
        &self,
        i: usize,
        new: &DestFolio<'_>,
        to_device: bool,
    ) -> core::result::Result<(), MigrateToError> {
        let Some(folio) = self.folio(i) else {
            return Err(MigrateToError::Refused);
        };
        if folio.nr_pages() != new.nr_pages() {
            return Err(MigrateToError::Refused);
        }
        let raw = folio.as_raw();
        // SAFETY: The folio is valid by the type invariant.
        let mut mapping = unsafe { bindings::folio_migrate_folio_mapping(raw) };
        if to_device && !mapping.is_null() {
            // SAFETY: The folio is locked by the type invariant.
            if !folio.is_anon() || !unsafe { bindings::folio_free_swap(raw) } {
                return Err(MigrateToError::Mapping);
            }
            // SAFETY: As above.
            mapping = unsafe { bindings::folio_migrate_folio_mapping(raw) };
        }
        let extra = i32::from(self.fault.is_in(folio));
        // SAFETY: Both folios are locked; the source is unmapped and frozen
        // by its migration entries (type invariants), and of the same size
        // as the destination.
        let ret = unsafe {
            let ret = bindings::folio_migrate_mapping(mapping, new.as_raw(), raw, extra);
            if ret == 0 {
                bindings::folio_migrate_flags(new.as_raw(), raw);
            }
            ret
        };
        if ret != 0 {
            return Err(MigrateToError::Refused);
        }
        Ok(())
    }

    /// `migrate_vma_split_unmapped_folio()`: splits the unmapped large
    /// folio of slot `i` into pages and rewrites its slots one per page. A
    /// PMD-sized folio unmapped by a PMD migration entry at `addr` in `vma`
    /// has that entry split into PTE migration entries first; a folio
    /// collected from PTEs (mTHP) has them already.
    ///
    /// Unlike 7.3 this also splits the fault folio: `folio_split_unmapped()`
    /// allows the caller one reference, and the fault path holds a second
    /// one across `migrate_to_ram()`, so a device-private fault whose
    /// driver found no folio of the order could not fall back to 4 KiB
    /// pages. The fault path's reference is set aside for the split and
    /// taken again on the folio that holds the fault page afterwards, which
    /// the split leaves locked like every other page, so it stays with the
    /// lock the fault path will release.
    pub fn split_unmapped(&mut self, vma: &VmaRef, i: usize, addr: usize) -> Result {
        let head = self.get(i);
        let Some(folio) = self.folio(i) else {
            return Err(EINVAL);
        };
        let nr = folio.nr_pages();
        if nr < 2
            || self.slots.len() < i + nr
            || !head.is_migrate()
            || folio.is_zone_device() && !folio.is_device_private()
        {
            return Err(EINVAL);
        }
        let raw = folio.as_raw();
        if nr == PMD_NR && matches!(pmd_peek(vma, addr), Some(PmdEntry::Migration { .. })) {
            // SAFETY: `split_huge_pmd_address()` with `freeze` drops a
            // reference once it split the PMD migration entry just seen at
            // `addr`: take it first. The mmap lock is held while `vma` is
            // borrowed.
            unsafe {
                bindings::folio_get(raw);
                bindings::split_huge_pmd_address(vma.as_ptr(), addr, true);
            }
        }
        // The fault path's reference is on `folio` if it holds the page.
        let fault_ref = self.fault.is_in(folio);
        if fault_ref {
            // SAFETY: The migration holds its own reference.
            unsafe { bindings::folio_put(raw) };
        }
        // SAFETY: The folio is locked, unmapped and referenced.
        let ret = unsafe { bindings::folio_split_unmapped(raw, 0) };
        if fault_ref {
            if let Some(f) = self.fault.folio() {
                // SAFETY: Gives the fault path its reference back, on the
                // folio its page is in now.
                unsafe { bindings::folio_get(f.as_raw()) };
            }
        }
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        // INVARIANT: Each page is now a folio of its own, locked and
        // referenced by the split, and still isolated.
        for (k, slot) in self.slots[i..i + nr].iter_mut().enumerate() {
            *slot = or_warn(head.subpage(k), MigratePfn::EMPTY).raw();
        }
        Ok(())
    }

    /// `__migrate_device_finalize()`: every migration entry becomes a
    /// mapping of the destination where slot and destination are both
    /// there and the slot migrates, of the source otherwise; every lock,
    /// reference and isolation the migration held is released, and the
    /// slots' PFNs cleared.
    ///
    /// With `at`, the migration's own entries are put back by walking the
    /// page table, one PTE or PMD lock per PMD, where they are the folio's
    /// only mappings; the others, and every slot without `at`, go through
    /// an rmap walk (`remove_migration_ptes()`).
    pub fn finalize(mut self, mut dst: DestSlots<'_>, at: Option<SlotsMappedAt<'_>>) -> Finalized {
        let n = self.slots.len().min(dst.len());
        let mut done = Finalized::default();
        let mut puts = PutBatch::new();
        let mut i = 0;
        while i < n {
            let end = at.map_or(n, |at| at.pmd_end(i, n)).min(i + PMD_NR);
            self.finalize_window(&mut dst, i..end, at, &mut done, &mut puts);
            i = end;
        }
        done
    }

    /// Finalizes the slots of `window`, which share one PMD when `at` is
    /// given and are at most `PMD_NR`, in two passes.
    ///
    /// The first, under the window's PTE lock (its PMD lock for a
    /// PMD-order folio) when `at` is given, looks each slot's folios up,
    /// puts on the LRU the folio that stays mapped, and where the walk may
    /// restore its entries, finishes the slot: unlocks its folios and
    /// queues their references. References are only dropped with the lock
    /// released, since the last one of a device folio calls its driver.
    /// The second, with the lock dropped, restores the slots left through
    /// the rmap and releases them.
    fn finalize_window(
        &mut self,
        dst: &mut DestSlots<'_>,
        window: core::ops::Range<usize>,
        at: Option<SlotsMappedAt<'_>>,
        done: &mut Finalized,
        puts: &mut PutBatch,
    ) {
        let fault = self.fault;
        // The window's PTE lock, taken at its first folio.
        let (mut run, mut tried) = (None, false);
        let mut next = window.start;
        loop {
            // A large folio's tail slots are 0: nothing to do for them.
            let i = self.next_used(next, window.end);
            if i == window.end {
                break;
            }
            next = i + 1;
            let Some(src) = self.folio(i) else {
                continue;
            };
            let (src_raw, src_fault) = (src.as_raw(), self.is_fault_folio(src));
            // The folio the entries will map: the destination if the slot
            // migrates to one, else the source. A destination that did not
            // decode left its source unmigrated in the pages phase.
            let new = match dst.handed_over(i) {
                Some(new) if self.migrates(i) => new,
                _ => {
                    done.restored += 1;
                    src
                }
            };
            let new_raw = new.as_raw();
            if !new.is_zone_device() {
                // SAFETY: `folio_add_lru()` takes its own reference; a
                // source that stays was isolated (type invariant), and the
                // release below drops the isolation's.
                unsafe { bindings::folio_add_lru(new_raw) };
            }
            let Some(at) = at else {
                continue;
            };
            let pmd_level = src.order() == PMD_ORDER;
            // Room for the references queued below: at most two. Made
            // before the restore: restored PTEs hold the slot's reference,
            // so the folio is unlocked before their lock is dropped.
            if !puts.fits(2) {
                // Drop the references queued with the lock released, and
                // take it again: if the table went away meanwhile, the
                // rest of the window goes through the rmap.
                let relock = run.take().is_some();
                puts.flush();
                if relock {
                    run = PteRun::lock(at.vma, at.addr(window.start), at.addr(window.end));
                }
            }
            let walked = if pmd_level {
                // Its slots fill the window: no PTE lock is held.
                !tried && restore_pmd_by_walk(at, i, src, new, window.end)
            } else {
                if !tried {
                    tried = true;
                    // None without a PTE table: a PMD entry, or the table
                    // went away.
                    run = PteRun::lock(at.vma, at.addr(window.start), at.addr(window.end));
                }
                run.as_mut().is_some_and(|run| {
                    // SAFETY: The slot that names `new`, the destination's
                    // or else the source's, owns a reference to it; when
                    // the entries are restored, the slot is released below
                    // without dropping it, before the PTE lock is.
                    unsafe { restore_by_walk(run, at, i, src, new, window.end) }
                })
            };
            if !walked {
                continue;
            }
            // Restored PTEs took over the slot's reference to the folio
            // they map; a restored PMD took its own, and the slot's is
            // dropped, no spinlock held.
            if new_raw != src_raw {
                // SAFETY: Slot `i` of `dst` names `new_raw`, a destination,
                // never the fault folio, mapped by the restored entries;
                // PTEs took over its reference, and their lock is held.
                unsafe { dst.release_mapped_folio(i, new_raw, pmd_level) };
                // SAFETY: The source's entries are gone and its mapping
                // moved: the slot's reference is the isolation's, or the
                // collection's for device memory. Slot `i` names
                // `src_raw`, the fault folio if `src_fault`.
                unsafe { self.release_folio(i, src_raw, src_fault, puts) };
            } else {
                dst.release(i, &fault, puts);
                // SAFETY: The source stays, mapped by the restored entries;
                // the slot's reference is the isolation's (the LRU took its
                // own), which PTEs took over, and their lock is held. Slot
                // `i` names `src_raw`, the fault folio if `src_fault`.
                unsafe { self.release_mapped_folio(i, src_raw, src_fault, pmd_level) };
            }
        }
        drop(run);
        // The slots the walk finished are cleared on both sides.
        let mut next = window.start;
        loop {
            let i = next_used_in_either(self.raw(), dst.raw(), next, window.end);
            if i == window.end {
                break;
            }
            next = i + 1;
            let Some(src) = self.folio(i) else {
                dst.release(i, &fault, puts);
                continue;
            };
            let (src_raw, src_fault) = (src.as_raw(), self.is_fault_folio(src));
            let new_raw = match dst.handed_over(i) {
                Some(new) if self.migrates(i) => new.as_raw(),
                _ => {
                    dst.release(i, &fault, puts);
                    src_raw
                }
            };
            // SAFETY: The source and the destination, if any, are locked,
            // and the source's migration entries are the migration's own
            // (invariants).
            unsafe { bindings::remove_migration_ptes(src_raw, new_raw, 0) };
            done.rmap_walks += 1;
            // SAFETY: The entries are removed and the folio is back on the
            // LRU: the slot's reference is the isolation's. Slot `i` names
            // `src_raw`, the fault folio if `src_fault`.
            unsafe { self.release_folio(i, src_raw, src_fault, puts) };
            if new_raw != src_raw {
                // SAFETY: Slot `i` of `dst` names `new_raw`, a destination,
                // which is never the fault folio.
                unsafe { dst.release_folio(i, new_raw, puts) };
            }
        }
    }
}

/// Puts back, under the PTE lock `run` holds, the migration entries of
/// `src`, which source slot `i` names at its address, as mappings of
/// `new`, when those entries are all the folio's mappings:
/// each is exclusive (writable or anon-exclusive when it was made), so no
/// other page table maps the page. Only a folio whose slots end before
/// `end`, the end of the window `run` covers, is looked at. Returns whether
/// the entries were put back; they then hold the caller's reference to
/// `new`.
///
/// # Safety
///
/// The caller owns a reference to `new`, which it gives up when this
/// returns `true`.
unsafe fn restore_by_walk(
    run: &mut PteRun<'_>,
    at: SlotsMappedAt<'_>,
    i: usize,
    src: &Folio,
    new: &Folio,
    end: usize,
) -> bool {
    if !src.is_anon() {
        return false;
    }
    let (addr, pfn) = (at.addr(i), src.pfn());
    // Most folios are small: one entry, at `i`, which is before `end`.
    if !src.is_large() {
        // SAFETY: A migration entry for the page of `src` is this
        // migration's own, which holds the folio's lock from before it
        // installed it until finalize removes it; `new` is `src` or its
        // destination, locked, its mapping moved by the pages phase, and
        // the caller gives up its reference on success.
        return unsafe { run.restore_exclusive_migration_entry(addr, pfn, new) };
    }
    let nr = src.nr_pages();
    if nr >= PMD_NR || i + nr > end {
        return false;
    }
    // SAFETY: A migration entry for a page of `src` is this migration's
    // own, which holds the folio's lock from before it installed them
    // until finalize removes them; `new` is `src` or its destination,
    // locked, with as many pages, its mapping moved by the pages phase, and
    // the caller gives up its reference on success.
    unsafe { run.restore_exclusive_migration_entries(addr, pfn, new, nr) }
}

/// Puts back the PMD migration entry of `src`, a PMD-order folio that
/// source slot `i` names at the start of the window ending at `end`, as a
/// mapping of `new`, when it is the folio's only mapping: the entry is
/// exclusive (writable or anon-exclusive when it was made). Returns whether
/// it was put back; the entry then holds a reference of its own.
fn restore_pmd_by_walk(
    at: SlotsMappedAt<'_>,
    i: usize,
    src: &Folio,
    new: &Folio,
    end: usize,
) -> bool {
    let addr = at.addr(i);
    if !src.is_anon() || new.order() != PMD_ORDER || addr % PMD_SIZE != 0 || i + PMD_NR != end {
        return false;
    }
    let Some(mut pmd) = PmdGuard::lock(at.vma, addr) else {
        return false;
    };
    // SAFETY: A migration entry for `src` is this migration's own: it holds
    // the folio's lock from before it installed the entry until finalize
    // removes it. `new` is `src` or its destination, locked and PMD-order,
    // its mapping moved by the pages phase.
    unsafe { pmd.restore_exclusive_migration_entry(src.pfn(), new) }
}

/// Folios isolate at most this many under one hold of their lruvec lock,
/// as `isolate_lru_folios()` takes at most `SWAP_CLUSTER_MAX`, to bound
/// the time with interrupts off.
const LRU_BATCH: u32 = 32;

/// The lock of the lruvec the last folio was isolated from, kept for the
/// next folio if it is on the same lruvec (`folio_lruvec_relock_irq()`).
///
/// # Invariants
///
/// `lruvec` is null, or a lruvec whose lock this guard holds with
/// interrupts disabled, for `held` isolations so far.
struct LruvecLock {
    lruvec: *mut bindings::lruvec,
    held: u32,
}

impl LruvecLock {
    /// No lock held yet.
    #[inline]
    fn new() -> Self {
        Self {
            lruvec: ptr::null_mut(),
            held: 0,
        }
    }

    /// `folio_isolate_lru()` for a folio the caller holds a reference to,
    /// which the isolation takes over: false, and nothing changed, if it
    /// is not on an LRU.
    #[inline]
    fn isolate(&mut self, folio: &Folio) -> bool {
        let raw = folio.as_raw();
        // SAFETY: The caller holds a reference to the folio.
        if !unsafe { bindings::folio_test_clear_lru(raw) } {
            return false;
        }
        if self.held == LRU_BATCH {
            self.unlock();
        }
        // INVARIANT: `folio_lruvec_relock_irq()` keeps the lock it is given
        // if the folio is on that lruvec, and otherwise drops it and takes
        // the folio's.
        // SAFETY: `self.lruvec` is null or locked by us (invariant). We
        // cleared PG_lru, so the folio is on that lruvec's lists and nobody
        // else takes it off them.
        unsafe {
            self.lruvec = bindings::folio_lruvec_relock_irq(raw, self.lruvec);
            bindings::lruvec_del_folio(self.lruvec, raw);
        }
        self.held += 1;
        true
    }

    /// Drops the lock, if held.
    #[inline]
    fn unlock(&mut self) {
        if !self.lruvec.is_null() {
            // SAFETY: We hold this lruvec's lock (invariant).
            unsafe { bindings::lruvec_unlock_irq(self.lruvec) };
            self.lruvec = ptr::null_mut();
        }
        self.held = 0;
    }
}

impl Drop for LruvecLock {
    #[inline]
    fn drop(&mut self) {
        self.unlock();
    }
}

/// At most this many references in a [`PutBatch`] are dropped one at a
/// time: two is a CPU fault's source and destination.
const FEW_PUTS: usize = 2;

/// Folio references dropped a batch at a time (`folios_put()`): the
/// folios whose last reference goes are freed together, one zone lock
/// and one memcg uncharge per batch instead of per folio.
///
/// # Invariants
///
/// The header of `batch` (`nr`, `i`, `percpu_pvec_drained`) is
/// initialized, and so are the first `batch.nr` entries of
/// `batch.folios`: folios whose reference the batch owns. The other
/// entries may be uninitialized.
struct PutBatch {
    batch: MaybeUninit<bindings::folio_batch>,
}

impl PutBatch {
    /// An empty batch (`folio_batch_init()`), made where it is stored.
    /// Only the header is written: the folio array, 31 pointers, is
    /// written as it fills, so a one-page migration does not clear it.
    #[inline(always)]
    fn new() -> Self {
        let mut batch = MaybeUninit::<bindings::folio_batch>::uninit();
        let b = batch.as_mut_ptr();
        // SAFETY: `b` points at the batch just made; these are plain
        // writes of its header fields.
        unsafe {
            (&raw mut (*b).nr).write(0);
            (&raw mut (*b).i).write(0);
            (&raw mut (*b).percpu_pvec_drained).write(false);
        }
        // INVARIANT: The header is written, and no folio is in the batch.
        Self { batch }
    }

    /// Drops a reference to `folio`, now or with the batch.
    ///
    /// # Safety
    ///
    /// The caller owns a reference to `folio`, which it gives up.
    #[inline]
    unsafe fn put(&mut self, folio: *mut bindings::folio) {
        let b = self.batch.as_mut_ptr();
        // SAFETY: The header is initialized (invariant), and `nr` is below
        // the array's length: the batch is flushed once full. Writing
        // entry `nr` and counting it keeps the invariant, with the
        // caller's reference handed over.
        let full = unsafe {
            let nr = usize::from((*b).nr);
            (&raw mut (*b).folios[nr]).write(folio);
            (*b).nr += 1;
            nr + 1 == bindings::FOLIO_BATCH_SIZE as usize
        };
        if full {
            self.flush();
        }
    }

    /// Whether `n` more references go into the batch without flushing
    /// it.
    #[inline]
    fn fits(&self, n: usize) -> bool {
        // SAFETY: The header is initialized (invariant).
        let nr = usize::from(unsafe { (*self.batch.as_ptr()).nr });
        nr + n < bindings::FOLIO_BATCH_SIZE as usize
    }

    /// Drops every reference the batch holds: a few one at a time, as a
    /// CPU fault's migration has, for which `folios_put_refs()` would
    /// share nothing and cost its setup.
    #[inline]
    fn flush(&mut self) {
        let b = self.batch.as_mut_ptr();
        // SAFETY: The header is initialized and the batch owns one
        // reference to each of its first `nr` folios (invariant); each is
        // dropped once, by `folio_put()` or by `folios_put_refs()`, and
        // the batch is emptied.
        unsafe {
            let nr = usize::from((*b).nr);
            if nr > FEW_PUTS {
                bindings::folios_put_refs(b, ptr::null_mut());
                return;
            }
            for k in 0..nr {
                bindings::folio_put((*b).folios[k]);
            }
            (*b).nr = 0;
        }
    }
}

impl Drop for PutBatch {
    #[inline]
    fn drop(&mut self) {
        self.flush();
    }
}

/// Where the slots of a `migrate_vma` are mapped: slot `i` at
/// `start + i * PAGE_SIZE` in `vma`, whose mmap lock the caller holds.
#[derive(Clone, Copy)]
pub struct SlotsMappedAt<'v> {
    vma: &'v VmaRef,
    start: usize,
}

impl<'v> SlotsMappedAt<'v> {
    /// The slots of a migration of `vma` from `start`.
    #[inline]
    pub fn new(vma: &'v VmaRef, start: usize) -> Self {
        Self { vma, start }
    }

    /// The address of slot `i`.
    #[inline]
    fn addr(&self, i: usize) -> usize {
        self.start + i * PAGE_SIZE
    }

    /// The slot after the last of `i`'s PMD, at most `n`.
    #[inline]
    fn pmd_end(&self, i: usize, n: usize) -> usize {
        let addr = self.addr(i);
        let next = (addr & !(PMD_SIZE - 1)) + PMD_SIZE;
        (i + (next - addr) / PAGE_SIZE).min(n)
    }
}

/// What finalize did.
#[derive(Default)]
pub struct Finalized {
    /// Sources restored or left in place.
    pub restored: usize,
    /// Folios whose entries went back through an rmap walk.
    pub rmap_walks: usize,
}

// Folio queries migration needs beyond the basic ones of `folio`.
/// The views of the arrays of a migration past unmap, as the entry points
/// of `migrate_*_pages()` and `_finalize()` get them.
///
/// # Safety
///
/// `src` holds `npages` slots that went through setup's unmap (or
/// `migrate_device_range()`'s), `dst` the driver's locked destinations,
/// and the fault path holds the folio of a non-null `fault_page`; nothing
/// else accesses the arrays for `'a`.
pub unsafe fn unmapped_arrays<'a>(
    src: *mut usize,
    dst: *mut usize,
    npages: usize,
    fault_page: *mut bindings::page,
) -> (SourceSlots<'a, Unmapped>, DestSlots<'a>) {
    // SAFETY: The caller guarantees the arrays and the fault folio.
    unsafe {
        (
            SourceSlots::from_raw(src, npages, FaultPage::new(fault_page)),
            DestSlots::from_raw(dst, npages),
        )
    }
}

impl Folio {
    /// Whether any page of the folio is mapped (`folio_mapped()`).
    #[inline]
    pub fn is_mapped(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_mapped(self.as_raw()) }
    }

    /// Whether the folio is in the page cache or the swap cache
    /// (`folio_mapping()` is not null).
    #[inline]
    pub fn has_mapping(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        !unsafe { bindings::folio_migrate_folio_mapping(self.as_raw()) }.is_null()
    }

    /// Whether the folio has private data, which holds a reference
    /// (`folio_has_private()`).
    #[inline]
    pub fn has_private(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_has_private(self.as_raw()) }
    }

    /// Whether the folio is device-coherent ZONE_DEVICE memory.
    #[inline]
    pub fn is_device_coherent(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_is_device_coherent(self.as_raw()) }
    }

    /// Whether someone may hold a DMA pin on the folio
    /// (`folio_maybe_dma_pinned()`): then it must not migrate.
    #[inline]
    pub fn maybe_dma_pinned(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_maybe_dma_pinned(self.as_raw()) }
    }

    /// Whether the folio is on an LRU list (`folio_test_lru()`).
    #[inline]
    pub fn is_on_lru(&self) -> bool {
        // SAFETY: The folio is valid by the type invariant.
        unsafe { bindings::folio_test_lru(self.as_raw()) }
    }
}
