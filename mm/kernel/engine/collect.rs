// SPDX-License-Identifier: GPL-2.0

//! Collection: the page-table walk of `migrate_vma_setup()`.
//!
//! Port of `migrate_vma_collect()` and its callbacks in
//! `mm/migrate_device.c`. For each entry the walk reduces what it sees to
//! the facts [`migrate_core::collect`] decides on, then carries the decision
//! out through the page-table and folio bindings: a PMD-mapped THP is locked
//! and replaced by one PMD migration entry and fills one head slot; a 4 KiB
//! page is locked and replaced by a PTE migration entry; anything else is a
//! hole or skipped. The walk goes one PMD at a time, so a hole that spans
//! several PMDs is collected as one head per PMD. A migration entry for
//! the fault folio is the one the fault path installed (engine
//! "rust-entry", `crate::fault_entry`): it is collected as a page already
//! unmapped.

use super::counters::{Counter, Stats};
use super::split::split_for_migrate;
use crate::folio::{Folio, LockedFolio};
use crate::migrate_core::collect::{
    self as rules, CollectArgs, Decision, PageInfo, PageKind, Source,
};
use crate::migrate_core::fault_lock::LockAction;
use crate::page_table::{
    flush_tlb_range, pmd_peek, MigrationKind, PmdEntry, PmdGuard, PteEntry, PteRun, PAGE_SIZE,
    PMD_ORDER, PMD_SIZE,
};
use core::ffi::c_void;
use kernel::{bindings, mm::virt::VmaRef};

/// The state of one collection: the arguments of `struct migrate_vma` and
/// the slots filled so far.
pub(crate) struct Collector<'a> {
    pub(crate) vma: &'a VmaRef,
    pub(crate) rules: CollectArgs,
    pub(crate) owner: *mut c_void,
    pub(crate) fault_page: *mut bindings::page,
    pub(crate) fault_folio: *mut bindings::folio,
    pub(crate) src: &'a mut [u64],
    pub(crate) dst: &'a mut [u64],
    pub(crate) npages: usize,
    pub(crate) cpages: usize,
    pub(crate) stats: &'a mut Stats,
}

/// What the PMD step leaves to do.
enum PmdStep {
    /// The range is collected.
    Done,
    /// The PMD points to a page table: walk its PTEs.
    WalkPtes,
}

/// A page the rules chose to collect from a PTE.
pub(crate) struct PteSource {
    /// The page, mapped or named by the PTE.
    pub(crate) page: *mut bindings::page,
    /// Its PFN.
    pub(crate) pfn: usize,
    /// Whether the PTE is present (else a device-private entry).
    pub(crate) present: bool,
    /// Whether the mapping was writable.
    pub(crate) write: bool,
    /// How to lock its folio.
    pub(crate) lock: LockAction,
}

impl Collector<'_> {
    /// Walks `start..end`, one PMD at a time.
    pub(crate) fn walk(&mut self, start: usize, end: usize) {
        let mut addr = start;
        while addr < end {
            let next = ((addr & !(PMD_SIZE - 1)) + PMD_SIZE).min(end);
            self.collect_pmd(addr, next);
            addr = next;
        }
    }

    /// Stores the slots of `decision` at the end of the arrays; `pfn` is the
    /// page or head page for a collected page.
    fn record(&mut self, decision: &Decision, pfn: usize) {
        let n = decision.slots().unwrap_or(0);
        let room = self.src.len() - self.npages;
        let out = &mut self.src[self.npages..];
        let written = match decision.fill(out, pfn as u64) {
            Ok(w) => w,
            Err(_) => {
                // Never expected; leave the slots empty rather than lose
                // track of the walk.
                let w = n.min(room);
                out[..w].fill(0);
                w
            }
        };
        self.dst[self.npages..self.npages + written].fill(0);
        self.npages += written;
    }

    /// `migrate_vma_collect_skip()`.
    fn skip(&mut self, start: usize, end: usize) {
        self.record(
            &Decision::Skip {
                slots: (end - start) / PAGE_SIZE,
            },
            0,
        );
    }

    /// `migrate_vma_collect_hole()` for a range inside one PMD.
    fn hole(&mut self, start: usize, end: usize) {
        match rules::migrate_vma_collect_hole(&self.rules, start as u64, end as u64) {
            Ok(d) => {
                self.record(&d, 0);
                let c = d.collected();
                self.cpages += c;
                self.stats.add(Counter::Holes, c);
            }
            Err(_) => self.skip(start, end),
        }
    }

    /// `migrate_vma_collect_pmd()`: collects `start..end`, inside one PMD.
    fn collect_pmd(&mut self, start: usize, end: usize) {
        let mut addr = start;
        let mut unmapped = 0;
        loop {
            match pmd_peek(self.vma, addr) {
                None => return self.hole(addr, end),
                Some(PmdEntry::Table) => {}
                Some(_) => match self.collect_huge_pmd(addr, end) {
                    PmdStep::Done => return,
                    PmdStep::WalkPtes => {}
                },
            }
            let Some(run) = PteRun::lock(self.vma, addr, end) else {
                // The PMD changed under us: look at it again.
                continue;
            };
            match self.collect_ptes(run, start, end, addr, &mut unmapped) {
                Ok(()) => return,
                Err(resume) => addr = resume,
            }
        }
    }

    /// `migrate_vma_collect_huge_pmd()`: a PMD that is not a page table.
    fn collect_huge_pmd(&mut self, start: usize, end: usize) -> PmdStep {
        let Some(mut pmd) = PmdGuard::lock(self.vma, start) else {
            self.hole(start, end);
            return PmdStep::Done;
        };
        self.stats.inc(Counter::PmdsWalked);
        let fault_folio = self.fault_folio;
        let (seen, pfn) = match pmd.entry() {
            PmdEntry::None => (rules::PmdEntry::None, 0),
            PmdEntry::Table => return PmdStep::WalkPtes,
            PmdEntry::HugeZero => (
                rules::PmdEntry::TransHuge {
                    huge_zero: true,
                    write: false,
                    fault_folio: false,
                },
                0,
            ),
            PmdEntry::Huge { pfn, bits } => (
                rules::PmdEntry::TransHuge {
                    huge_zero: false,
                    write: bits.write,
                    // SAFETY: The PMD maps `pfn`, so it has a memmap entry.
                    fault_folio: unsafe { bindings::pfn_folio(pfn) } == fault_folio,
                },
                pfn,
            ),
            PmdEntry::DevicePrivate { pfn, write } => {
                // SAFETY: The entry holds a reference to the device folio,
                // stable under the PMD lock.
                let folio = unsafe { Folio::from_raw(bindings::pfn_folio(pfn)) };
                (
                    rules::PmdEntry::DevicePrivate {
                        owner_matches: folio.pgmap_owner() == Some(self.owner),
                        write,
                        fault_folio: folio.as_raw() == fault_folio,
                    },
                    pfn,
                )
            }
            PmdEntry::Migration { pfn, write } if self.is_fault_entry(pfn, true) => {
                // SAFETY: The fault path holds the fault folio.
                let folio = unsafe { Folio::from_raw(fault_folio) };
                // Seen as the device-private entry it replaced.
                (
                    rules::PmdEntry::DevicePrivate {
                        owner_matches: folio.pgmap_owner() == Some(self.owner),
                        write,
                        fault_folio: true,
                    },
                    pfn,
                )
            }
            PmdEntry::Migration { .. } | PmdEntry::Other => (rules::PmdEntry::Migration, 0),
        };
        let fault_entry = match pmd.entry() {
            PmdEntry::Migration { pfn, .. } => self.is_fault_entry(pfn, true),
            _ => false,
        };
        let decision =
            match rules::migrate_vma_collect_huge_pmd(&self.rules, &seen, start as u64, end as u64)
            {
                Ok(d) => d,
                Err(_) => {
                    drop(pmd);
                    self.skip(start, end);
                    return PmdStep::Done;
                }
            };
        if fault_entry {
            drop(pmd);
            if matches!(decision, Decision::CollectWhole { .. }) {
                self.adopt_fault_entry(&decision, PMD_ORDER);
                return PmdStep::Done;
            }
            if matches!(decision, Decision::SplitFirst { .. }) {
                // The driver wants pages, not the THP: put the device
                // entry back and split as for any fault folio.
                // SAFETY: The fault path holds the folio locked; the
                // entry is the only one for it.
                unsafe { bindings::remove_migration_ptes(fault_folio, fault_folio, 0) };
                self.stats.inc(Counter::FaultEntriesRestored);
                return PmdStep::WalkPtes;
            }
            self.record(&decision, 0);
            return PmdStep::Done;
        }
        let (lock, whole) = match decision {
            Decision::Retry | Decision::WalkPtes => return PmdStep::WalkPtes,
            Decision::CollectWhole {
                source: Source::Page { lock, .. },
                ..
            } => (lock, true),
            Decision::SplitFirst { lock, .. } => (lock, false),
            d => {
                drop(pmd);
                self.record(&d, 0);
                let c = d.collected();
                self.cpages += c;
                self.stats.add(Counter::Holes, c);
                return PmdStep::Done;
            }
        };

        // SAFETY: The PMD maps the folio at `pfn` and we hold its lock, so
        // the folio is alive; the reference taken next keeps it so.
        let folio = unsafe { Folio::from_raw(bindings::pfn_folio(pfn)) };
        // SAFETY: As above.
        unsafe { bindings::folio_get(folio.as_raw()) };
        let held = lock == LockAction::Held;
        let locked = held || {
            // SAFETY: The folio is valid; a trylock does not sleep.
            unsafe { bindings::folio_trylock(folio.as_raw()) }
        };
        if !locked {
            drop(pmd);
            // SAFETY: Drops the reference taken above.
            unsafe { bindings::folio_put(folio.as_raw()) };
            self.stats.inc(Counter::FailTrylock);
            self.skip(start, end);
            return PmdStep::Done;
        }

        if whole {
            // The folio is locked, as `set_pmd_migration_entry()` needs;
            // the guard only borrows that lock here.
            // SAFETY: We (or the fault path) hold the folio lock; the guard
            // hands it back below.
            let guard = unsafe { LockedFolio::from_locked(folio) };
            let installed = pmd.set_pmd_migration_entry(&guard).is_ok();
            guard.into_raw_locked();
            if installed {
                drop(pmd);
                self.record(&decision, folio.pfn());
                self.cpages += 1;
                self.stats.inc(Counter::PmdMigrationEntries);
                if matches!(seen, rules::PmdEntry::TransHuge { .. }) {
                    // Unmapping a present PMD flushed its TLB entries.
                    self.stats.inc(Counter::TlbFlushes);
                }
                self.stats.folio(PMD_ORDER);
                return PmdStep::Done;
            }
            self.stats.inc(Counter::FailPmdMigrationEntry);
        }

        // Fall back to splitting the folio, as 7.3 does.
        drop(pmd);
        let raw = folio.as_raw();
        // SAFETY: We hold the folio lock (or the fault path does) and a
        // reference; `split_folio()` needs both.
        let ret = unsafe { bindings::split_folio(raw) };
        self.stats.inc(Counter::Splits);
        if !held {
            // SAFETY: We took the lock above.
            unsafe { bindings::folio_unlock(raw) };
        }
        // SAFETY: Drops the reference taken above.
        unsafe { bindings::folio_put(raw) };
        if ret != 0 {
            self.stats.inc(Counter::FailSplit);
            self.skip(start, end);
            return PmdStep::Done;
        }
        if matches!(pmd_peek(self.vma, start), None | Some(PmdEntry::None)) {
            self.hole(start, end);
            return PmdStep::Done;
        }
        PmdStep::WalkPtes
    }

    /// Whether a migration entry for `pfn` is the one the fault path put
    /// in place of the fault folio's device-private entry (engine
    /// "rust-entry", `crate::fault_entry`), for a PMD if `pmd`. The fault
    /// path holds that folio's lock from before it installs the entry until
    /// `migrate_to_ram()` returns, and a migration leaves no entry behind
    /// when it unlocks a folio, so any migration entry for it is that one.
    fn is_fault_entry(&self, pfn: usize, pmd: bool) -> bool {
        if self.fault_folio.is_null() {
            return false;
        }
        // SAFETY: The fault path holds the fault folio locked and
        // referenced while the driver migrates it.
        let folio = unsafe { Folio::from_raw(self.fault_folio) };
        // The fault path installs one only for a small folio under a PTE
        // and a PMD-order one under a PMD.
        pfn == folio.pfn() && folio.order() == if pmd { PMD_ORDER } else { 0 }
    }

    /// Takes the fault path's migration entry for the fault folio as the
    /// page already unmapped: the slot gets its own reference; the lock is
    /// the fault path's.
    fn adopt_fault_entry(&mut self, decision: &Decision, order: u32) {
        // SAFETY: The fault path holds the fault folio locked and
        // referenced.
        let folio = unsafe { Folio::from_raw(self.fault_folio) };
        // SAFETY: As above; finalize drops this reference.
        unsafe { bindings::folio_get(folio.as_raw()) };
        self.record(decision, folio.pfn());
        self.cpages += 1;
        self.stats.folio(order);
        self.stats.inc(Counter::FaultEntriesCollected);
    }

    /// Reduces the PTE at `addr` to what the rules decide on; also returns
    /// the page it names (or null), that page's PFN, and whether the PTE is
    /// the fault path's migration entry for it.
    fn classify(
        &self,
        run: &PteRun<'_>,
        addr: usize,
    ) -> (rules::PteEntry, *mut bindings::page, usize, bool) {
        let (seen, page, pfn) = self.classify_entry(run, addr);
        if let (rules::PteEntry::Migration, Some((_, PteEntry::Migration { pfn, write }))) =
            (seen, run.read(addr))
        {
            if self.is_fault_entry(pfn, false) {
                // SAFETY: The fault folio, held by the fault path, has a
                // memmap entry for `pfn`.
                let page = unsafe { bindings::pfn_to_page(pfn) };
                // SAFETY: As above.
                let folio = unsafe { Folio::from_raw(self.fault_folio) };
                // Seen as the device-private entry it replaced.
                let seen = rules::PteEntry::DevicePrivate {
                    page: page_info(page, folio, pfn, self.fault_folio),
                    owner_matches: folio.pgmap_owner() == Some(self.owner),
                    write,
                };
                return (seen, page, pfn, true);
            }
        }
        (seen, page, pfn, false)
    }

    /// [`Collector::classify`] for any entry but the fault path's.
    fn classify_entry(
        &self,
        run: &PteRun<'_>,
        addr: usize,
    ) -> (rules::PteEntry, *mut bindings::page, usize) {
        let null = core::ptr::null_mut();
        let Some((raw, entry)) = run.read(addr) else {
            return (rules::PteEntry::None, null, 0);
        };
        match entry {
            PteEntry::None => (rules::PteEntry::None, null, 0),
            PteEntry::Zero => (rules::PteEntry::Zero, null, 0),
            PteEntry::Present { pfn, bits } => {
                let page = run.normal_page_of(addr, raw);
                if page.is_null() {
                    return (rules::PteEntry::Special, page, 0);
                }
                // SAFETY: `page` is mapped by a PTE whose lock we hold, so
                // its folio is alive and cannot be split under us.
                let folio = unsafe { Folio::from_page(page) };
                let kind = if !folio.is_zone_device() {
                    PageKind::System
                } else if folio.is_device_coherent() {
                    PageKind::DeviceCoherent {
                        owner_matches: folio.pgmap_owner() == Some(self.owner),
                    }
                } else {
                    PageKind::OtherZoneDevice
                };
                (
                    rules::PteEntry::Present {
                        page: page_info(page, folio, pfn, self.fault_folio),
                        kind,
                        write: bits.write,
                    },
                    page,
                    pfn,
                )
            }
            PteEntry::DevicePrivate { pfn, write } => {
                // SAFETY: A device-private entry names a page with a memmap
                // entry.
                let page = unsafe { bindings::pfn_to_page(pfn) };
                // SAFETY: The entry holds a reference to the device folio,
                // stable under the PTE lock.
                let folio = unsafe { Folio::from_page(page) };
                (
                    rules::PteEntry::DevicePrivate {
                        page: page_info(page, folio, pfn, self.fault_folio),
                        owner_matches: folio.pgmap_owner() == Some(self.owner),
                        write,
                    },
                    page,
                    pfn,
                )
            }
            PteEntry::Migration { .. } => (rules::PteEntry::Migration, null, 0),
            _ => (rules::PteEntry::Swap, null, 0),
        }
    }

    /// The PTE loop of `migrate_vma_collect_pmd()`, from `addr` on.
    ///
    /// Returns `Err(addr)` when the run had to be dropped to split a folio,
    /// and the walk must look at the PMD again from `addr`.
    fn collect_ptes(
        &mut self,
        run: PteRun<'_>,
        start: usize,
        end: usize,
        from: usize,
        unmapped: &mut usize,
    ) -> Result<(), usize> {
        let mut run = run.into_lazy_mmu();
        let mut addr = from;
        while addr < end {
            self.stats.inc(Counter::PtesWalked);
            let (seen, page, pfn, fault_entry) = self.classify(&run, addr);
            let decision =
                rules::migrate_vma_collect_pte(&self.rules, &seen, addr as u64, end as u64)
                    .unwrap_or(Decision::Skip { slots: 1 });
            match decision {
                Decision::CollectSmall {
                    source: Source::Page { .. },
                    ..
                } if fault_entry => self.adopt_fault_entry(&decision, 0),
                Decision::CollectSmall {
                    source: Source::Page { write, lock },
                    ..
                } => {
                    let src = PteSource {
                        page,
                        pfn,
                        present: matches!(seen, rules::PteEntry::Present { .. }),
                        write,
                        lock,
                    };
                    if self.unmap_pte(&mut run, addr, src, unmapped) {
                        self.record(&decision, pfn);
                        self.cpages += 1;
                        self.stats.folio(0);
                    } else {
                        self.skip(addr, addr + PAGE_SIZE);
                    }
                }
                Decision::CollectWhole { .. } | Decision::SplitFirst { .. } => {
                    // A large folio mapped by PTEs: split it and look again.
                    // SAFETY: `page` is mapped under the lock we hold.
                    let folio = unsafe { bindings::page_folio(page) };
                    if folio != self.fault_folio {
                        // SAFETY: As above; `split_for_migrate` consumes it.
                        unsafe { bindings::folio_get(folio) };
                    }
                    // Splitting sleeps: leave lazy MMU mode and the PTE
                    // lock first.
                    drop(run);
                    // SAFETY: We hold a reference, or `folio` is the fault
                    // folio, which the fault path holds locked and
                    // referenced; no page-table lock is held.
                    let ok = unsafe { split_for_migrate(folio, self.fault_page) };
                    self.stats.inc(Counter::Splits);
                    if ok.is_err() {
                        self.stats.inc(Counter::FailSplit);
                        if *unmapped != 0 {
                            flush_tlb_range(self.vma, start, end);
                            self.stats.inc(Counter::TlbFlushes);
                        }
                        self.skip(addr, end);
                        return Ok(());
                    }
                    return Err(addr);
                }
                d => {
                    self.record(&d, 0);
                    let c = d.collected();
                    self.cpages += c;
                    self.stats.add(Counter::Holes, c);
                }
            }
            addr += PAGE_SIZE;
        }
        // Only flush the TLB if we actually modified any entries.
        if *unmapped != 0 {
            flush_tlb_range(self.vma, start, end);
            self.stats.inc(Counter::TlbFlushes);
        }
        Ok(())
    }

    /// Locks the folio of `src.page`, mapped at `addr`, and replaces its
    /// PTE by a migration entry (see [`unmap_pte`]); counts a present PTE in
    /// `unmapped`.
    fn unmap_pte(
        &mut self,
        run: &mut PteRun<'_>,
        addr: usize,
        src: PteSource,
        unmapped: &mut usize,
    ) -> bool {
        match unmap_pte(self.vma, run, addr, src, self.stats) {
            Some(present) => {
                *unmapped += usize::from(present);
                true
            }
            None => false,
        }
    }
}

/// Locks the folio of `src.page`, mapped or named at `addr`, and replaces
/// its PTE by a migration entry, moving the mapping's reference to the
/// migration, as `migrate_vma_collect_pmd()` does. Returns whether the PTE
/// was present (its TLB entry is left to the caller to flush), or `None`,
/// with everything as it was, when the folio is contended or pinned.
pub(crate) fn unmap_pte(
    vma: &VmaRef,
    run: &mut PteRun<'_>,
    addr: usize,
    src: PteSource,
    stats: &mut Stats,
) -> Option<bool> {
    let PteSource {
        page,
        pfn,
        present,
        write,
        lock,
    } = src;
    // SAFETY: `page` is mapped at `addr` under the PTE lock we hold.
    let folio = unsafe { Folio::from_page(page) };
    let raw = folio.as_raw();
    // SAFETY: Pins the folio, which "freezes" the PTE for the rmap.
    unsafe { bindings::folio_get(raw) };
    let held = lock == LockAction::Held;
    // SAFETY: A trylock does not sleep.
    if !held && !unsafe { bindings::folio_trylock(raw) } {
        // SAFETY: Drops the reference taken above.
        unsafe { bindings::folio_put(raw) };
        stats.inc(Counter::FailTrylock);
        return None;
    }
    if present {
        // SAFETY: The page is mapped at `addr` in the VMA.
        unsafe { bindings::flush_cache_page(vma.as_ptr(), addr, pfn) };
    }
    // SAFETY: The folio is locked and `page` is one of its pages.
    let anon_exclusive = folio.is_anon() && unsafe { bindings::PageAnonExclusive(page) };
    let old = if anon_exclusive {
        let Ok(old) = run.clear_flush(addr) else {
            return undo_lock(raw, held);
        };
        stats.inc(Counter::TlbFlushes);
        // SAFETY: The folio is locked and its PTE is cleared and flushed,
        // as sharing an anon-exclusive page requires.
        if unsafe { bindings::folio_try_share_anon_rmap_pte(raw, page) } != 0 {
            // Pinned: put the entry back and leave the page alone.
            if run.restore(old).is_err() {
                // The entry came from this run: not reached.
                kernel::warn_on!(true);
            }
            stats.inc(Counter::FailAnonShare);
            return undo_lock(raw, held);
        }
        old
    } else {
        match run.get_and_clear(addr) {
            Ok(old) => old,
            Err(_) => return undo_lock(raw, held),
        }
    };
    if old.is_dirty() {
        // SAFETY: The folio is locked and referenced.
        unsafe { bindings::folio_mark_dirty(raw) };
    }
    let kind = if write {
        MigrationKind::Writable
    } else if anon_exclusive {
        MigrationKind::ReadableExclusive
    } else {
        MigrationKind::Readable
    };
    let was_present = old.value().is_present();
    // A present or device-private entry was taken from this run: it has a
    // migration entry, and the slot takes it back.
    let entry = match old.into_migration_entry(kind) {
        Ok(entry) => entry,
        Err(old) => {
            // Not reached: leave the page mapped, as a pinned one is.
            kernel::warn_on!(true);
            if run.restore(old).is_err() {
                kernel::warn_on!(true);
            }
            return undo_lock(raw, held);
        }
    };
    if run.restore(entry).is_err() {
        kernel::warn_on!(true);
    }
    // SAFETY: The PTE no longer maps the page: drop its rmap and the
    // reference taken above; the mapping's reference now belongs to the
    // migration.
    unsafe {
        bindings::folio_remove_rmap_pte(raw, page, vma.as_ptr());
        bindings::folio_put(raw);
    }
    stats.inc(Counter::PteMigrationEntries);
    Some(was_present)
}

/// Releases the lock (unless `held` by the fault path) and the reference
/// [`unmap_pte`] took; returns `None`.
fn undo_lock(folio: *mut bindings::folio, held: bool) -> Option<bool> {
    // SAFETY: `unmap_pte` took the lock unless `held`, and a reference.
    unsafe {
        if !held {
            bindings::folio_unlock(folio);
        }
        bindings::folio_put(folio);
    }
    None
}

/// What the rules need to know of `page`, page `pfn` of `folio`.
fn page_info(
    page: *mut bindings::page,
    folio: &Folio,
    pfn: usize,
    fault_folio: *mut bindings::folio,
) -> PageInfo {
    PageInfo {
        order: folio.order(),
        index: pfn - folio.pfn(),
        fault_folio: folio.as_raw() == fault_folio,
        // SAFETY: `page` is mapped under a lock the caller holds.
        has_mapping: unsafe { bindings::page_has_mapping(page) },
        // Only the PMD order is collected whole: a PTE-mapped large folio is
        // split first, as 7.3 does.
        mapped_whole: false,
    }
}
