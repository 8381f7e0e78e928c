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
use crate::collection::{
    BatchedRun, CollectedFolio, Finished, MappedPage, PteBatch, PteSnapshot, SmallPage, SmallTake,
    SplitRef, Take,
};
use crate::folio::{Folio, MemoryKind};
use crate::migrate_core::collect::{
    self as rules, CollectArgs, Decision, Failure, Orders, PageInfo, PageKind, Source,
};
use crate::migrate_core::pfn::MigratePfn;
use crate::migration::{or_warn, FaultPage};
use crate::page_table::{
    pmd_peek, PmdEntry, PmdGuard, PteEntry, PteRun, PAGE_SIZE, PMD_ORDER, PMD_SIZE,
};
use core::ffi::c_void;
use kernel::mm::virt::VmaRef;

/// The state of one collection: the arguments of `struct migrate_vma` and
/// the slots filled so far.
pub(crate) struct Collector<'a> {
    pub(crate) vma: &'a VmaRef,
    pub(crate) rules: CollectArgs,
    pub(crate) owner: *mut c_void,
    pub(crate) fault: FaultPage,
    pub(crate) src: &'a mut [u64],
    pub(crate) dst: &'a mut [u64],
    pub(crate) npages: usize,
    pub(crate) cpages: usize,
    pub(crate) stats: &'a mut Stats,
}

/// What [`Collector::collect_small_page`] did with an entry.
enum SmallStep {
    /// Collected or skipped, its slot recorded.
    Done,
    /// Not the page of a small folio: for the general path.
    Other,
    /// A present page the batch has no room for yet: nothing recorded.
    NeedsRoom,
}

/// What the PMD step leaves to do.
enum PmdStep {
    /// The range is collected.
    Done,
    /// The PMD points to a page table: walk its PTEs.
    WalkPtes,
}

impl Collector<'_> {
    /// Walks `start..end`, one PMD at a time; `batch` is room for the
    /// folios of one PTE run, borrowed rather than moved for each run.
    pub(crate) fn walk(&mut self, start: usize, end: usize, batch: &mut PteBatch) {
        let mut addr = start;
        while addr < end {
            let next = ((addr & !(PMD_SIZE - 1)) + PMD_SIZE).min(end);
            self.collect_pmd(addr, next, batch);
            addr = next;
        }
    }

    /// Stores the slots of `decision` at the end of the arrays; `pfn` is the
    /// page or head page for a collected page.
    #[inline(always)]
    fn record(&mut self, decision: &Decision, pfn: usize) {
        let n = decision.slots().unwrap_or(0);
        let room = self.src.len() - self.npages;
        let out = &mut self.src[self.npages..];
        let written = match decision.fill(out, pfn as u64) {
            Ok(w) => w,
            Err(_) => {
                // Never expected; leave the slots empty rather than lose
                // track of the walk.
                kernel::warn_on!(true);
                let w = n.min(room);
                out[..w].fill(0);
                w
            }
        };
        // Most decisions write one slot: spare the memset() call.
        match &mut self.dst[self.npages..self.npages + written] {
            [slot] => *slot = 0,
            slots => slots.fill(0),
        }
        self.npages += written;
    }

    /// Stores a collected folio's slots; the slot at `pfn` takes over its
    /// lock and reference.
    fn record_folio(&mut self, decision: &Decision, folio: CollectedFolio, pfn: usize) {
        folio.into_slot();
        self.record(decision, pfn);
        self.cpages += 1;
    }

    /// Stores the slots of a decision that collects no folio: holes, or
    /// slots to skip.
    fn record_other(&mut self, decision: &Decision) {
        self.record(decision, 0);
        let c = decision.collected();
        self.cpages += c;
        self.stats.add(Counter::Holes, c);
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
            Ok(d) => self.record_other(&d),
            Err(_) => {
                // The walk only asks for ranges inside one PMD.
                kernel::warn_on!(true);
                self.skip(start, end)
            }
        }
    }

    /// `migrate_vma_collect_pmd()`: collects `start..end`, inside one PMD.
    /// Called once per PMD, and kept out of line: inlined into the walk,
    /// its PTE loop compiles to more instructions per page.
    #[inline(never)]
    fn collect_pmd(&mut self, start: usize, end: usize, batch: &mut PteBatch) {
        let mut addr = start;
        loop {
            // Most PMDs point to a page table: lock it at once, and read
            // the PMD only when there is none.
            let run = match PteRun::lock(self.vma, addr, end) {
                Some(run) => run,
                None => {
                    match pmd_peek(self.vma, addr) {
                        None => return self.hole(addr, end),
                        // The PMD changed under us: look at it again.
                        Some(PmdEntry::Table) => continue,
                        Some(_) => match self.collect_huge_pmd(addr, end) {
                            PmdStep::Done => return,
                            PmdStep::WalkPtes => {}
                        },
                    }
                    // Split, or about to be walked: a page table now.
                    let Some(run) = PteRun::lock(self.vma, addr, end) else {
                        continue;
                    };
                    run
                }
            };
            match self.collect_ptes(run, end, addr, batch) {
                Ok(()) => return,
                Err(resume) => addr = resume,
            }
        }
    }

    /// Reduces the PMD to what the rules decide on; also says whether it is
    /// the fault path's migration entry for the fault folio.
    fn classify_pmd(&self, pmd: &PmdGuard<'_>) -> Option<(rules::PmdEntry, bool)> {
        let folio = pmd.mapped_folio();
        let is_fault = folio.is_some_and(|f| self.fault.is_in(f));
        let seen = match pmd.entry() {
            PmdEntry::None => rules::PmdEntry::None,
            PmdEntry::Table => return None,
            PmdEntry::HugeZero => rules::PmdEntry::TransHuge {
                huge_zero: true,
                write: false,
                fault_folio: false,
            },
            PmdEntry::Huge { bits, .. } => rules::PmdEntry::TransHuge {
                huge_zero: false,
                write: bits.write,
                fault_folio: is_fault,
            },
            PmdEntry::DevicePrivate { write, .. } => rules::PmdEntry::DevicePrivate {
                owner_matches: self.owner_matches(folio),
                write,
                fault_folio: is_fault,
            },
            // Seen as the device-private entry it replaced.
            PmdEntry::Migration { pfn, write } if self.is_fault_entry(pfn, true) => {
                let seen = rules::PmdEntry::DevicePrivate {
                    owner_matches: self.owner_matches(self.fault.folio()),
                    write,
                    fault_folio: true,
                };
                return Some((seen, true));
            }
            PmdEntry::Migration { .. } | PmdEntry::Other => rules::PmdEntry::Migration,
        };
        Some((seen, false))
    }

    /// Whether `folio` belongs to the migration's device.
    fn owner_matches(&self, folio: Option<&Folio>) -> bool {
        folio.and_then(Folio::pgmap_owner) == Some(self.owner)
    }

    /// `migrate_vma_collect_huge_pmd()`: a PMD that is not a page table.
    fn collect_huge_pmd(&mut self, start: usize, end: usize) -> PmdStep {
        let Some(mut pmd) = PmdGuard::lock(self.vma, start) else {
            self.hole(start, end);
            return PmdStep::Done;
        };
        self.stats.inc(Counter::PmdsWalked);
        let Some((seen, fault_entry)) = self.classify_pmd(&pmd) else {
            return PmdStep::WalkPtes;
        };
        let decision =
            match rules::migrate_vma_collect_huge_pmd(&self.rules, &seen, start as u64, end as u64)
            {
                Ok(d) => d,
                Err(_) => {
                    // As for a hole: the range is inside this PMD.
                    kernel::warn_on!(true);
                    drop(pmd);
                    self.skip(start, end);
                    return PmdStep::Done;
                }
            };
        if fault_entry {
            drop(pmd);
            match decision {
                Decision::CollectWhole { .. } => self.adopt_fault_entry(&decision, PMD_ORDER),
                Decision::SplitFirst { .. } => {
                    // The driver wants pages, not the THP: put the device
                    // entry back and split as for any fault folio.
                    self.fault.remove_migration_entries();
                    self.stats.inc(Counter::FaultEntriesRestored);
                    return PmdStep::WalkPtes;
                }
                d => self.record(&d, 0),
            }
            return PmdStep::Done;
        }
        let whole = match decision {
            Decision::Retry | Decision::WalkPtes => return PmdStep::WalkPtes,
            Decision::CollectWhole {
                source: Source::Page { .. },
                ..
            } => true,
            Decision::SplitFirst { .. } => false,
            d => {
                drop(pmd);
                self.record_other(&d);
                return PmdStep::Done;
            }
        };

        // The rules collect a page only from a PMD that maps a folio.
        let collected = pmd
            .mapped_folio()
            .and_then(|folio| CollectedFolio::trylock(folio, &self.fault));
        let Some(folio) = collected else {
            drop(pmd);
            self.stats.inc(Counter::FailTrylock);
            self.skip(start, end);
            return PmdStep::Done;
        };

        if whole {
            if pmd.migrate_folio(&folio).is_ok() {
                drop(pmd);
                let pfn = folio.folio().pfn();
                self.record_folio(&decision, folio, pfn);
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
        let split = folio.split(&self.fault);
        self.stats.inc(Counter::Splits);
        if split.is_err() {
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
        // The fault path installs one only for a small folio under a PTE
        // and a PMD-order one under a PMD.
        self.fault.folio().is_some_and(|folio| {
            pfn == folio.pfn() && folio.order() == if pmd { PMD_ORDER } else { 0 }
        })
    }

    /// Takes the fault path's migration entry for the fault folio as the
    /// page already unmapped: the slot gets its own reference; the lock is
    /// the fault path's.
    fn adopt_fault_entry(&mut self, decision: &Decision, order: u32) {
        let Some(folio) = CollectedFolio::fault_folio(&self.fault) else {
            // Only called once the entry is known to be the fault folio's.
            kernel::warn_on!(true);
            return self.record(&Decision::Skip { slots: 1 }, 0);
        };
        let pfn = folio.folio().pfn();
        self.record_folio(decision, folio, pfn);
        self.stats.folio(order);
        self.stats.inc(Counter::FaultEntriesCollected);
    }

    /// Reduces the PTE at `addr` to what the rules decide on; also stores
    /// what it names in `snap`, for [`PteRun::migrate_page`] (written in
    /// place: the walk keeps it across the decision), and says whether it
    /// is the fault path's migration entry for the fault folio.
    #[inline]
    fn classify(
        &self,
        run: &PteRun<'_>,
        addr: usize,
        snap: &mut Option<PteSnapshot>,
    ) -> (rules::PteEntry, bool) {
        let Some((entry, named)) = run.read_page(addr) else {
            return (rules::PteEntry::None, false);
        };
        let page = match named {
            Some((read, page)) => {
                *snap = Some(read);
                Some(page)
            }
            None => None,
        };
        let snap = snap.as_ref();
        // For a large folio's head, whether the run maps it whole and alone,
        // and if so whether all its entries are writable; only looked at
        // when the driver takes large folios whole.
        let whole = match (snap, &page) {
            (Some(snap), Some(page)) if self.rules.orders != Orders::NONE => {
                let folio = page.folio();
                if folio.is_large() && page.pfn() == folio.pfn() {
                    run.maps_folio_whole(snap)
                } else {
                    None
                }
            }
            _ => None,
        };
        let entry_of = |page: &MappedPage<'_>, present: bool, write: bool| {
            let info = PageInfo {
                mapped_whole: whole.is_some(),
                ..self.page_info(page)
            };
            self.page_entry(page, info, present, write && whole.unwrap_or(true))
        };
        let seen = match (entry, page) {
            (PteEntry::None, _) => rules::PteEntry::None,
            (PteEntry::Zero, _) => rules::PteEntry::Zero,
            (PteEntry::Present { .. }, None) => rules::PteEntry::Special,
            (PteEntry::Present { bits, .. }, Some(page)) => entry_of(&page, true, bits.write),
            (PteEntry::DevicePrivate { write, .. }, Some(page)) => entry_of(&page, false, write),
            (PteEntry::DevicePrivate { .. }, None) => rules::PteEntry::Swap,
            // Seen as the device-private entry it replaced.
            (PteEntry::Migration { pfn, write }, _) if self.is_fault_entry(pfn, false) => {
                let Some(page) = self.fault.page() else {
                    return (rules::PteEntry::Migration, false);
                };
                let seen = rules::PteEntry::DevicePrivate {
                    page: self.page_info(&page),
                    owner_matches: self.owner_matches(Some(page.folio())),
                    write,
                };
                return (seen, true);
            }
            (PteEntry::Migration { .. }, _) => rules::PteEntry::Migration,
            _ => rules::PteEntry::Swap,
        };
        (seen, false)
    }

    /// What the rules see of a present (else device-private) entry for
    /// `page`, described by `info`, writable if `write`.
    #[inline(always)]
    fn page_entry(
        &self,
        page: &MappedPage<'_>,
        info: PageInfo,
        present: bool,
        write: bool,
    ) -> rules::PteEntry {
        let folio = page.folio();
        if !present {
            return rules::PteEntry::DevicePrivate {
                page: info,
                owner_matches: self.owner_matches(Some(folio)),
                write,
            };
        }
        let kind = match folio.memory_kind() {
            MemoryKind::System => PageKind::System,
            MemoryKind::DeviceCoherent { owner } => PageKind::DeviceCoherent {
                owner_matches: owner == self.owner,
            },
            // Device-private memory is never mapped present.
            MemoryKind::DevicePrivate { .. } | MemoryKind::OtherZoneDevice => {
                PageKind::OtherZoneDevice
            }
        };
        rules::PteEntry::Present {
            page: info,
            kind,
            write,
        }
    }

    /// What the rules see of the page of a small folio, as
    /// [`BatchedRun::collect_small_page`] shows it: what `classify()` finds
    /// for it, without looking up the folio's order and the page's index,
    /// which a small folio has fixed.
    #[inline(always)]
    fn small_page_entry(&self, small: &SmallPage<'_>) -> rules::PteEntry {
        let page = small.page();
        let info = PageInfo {
            order: 0,
            index: 0,
            fault_folio: self.fault.is_in(page.folio()),
            has_mapping: page.has_mapping(),
            mapped_whole: false,
        };
        self.page_entry(page, info, small.is_present(), small.is_writable())
    }

    /// Collects the PTE at `addr`, up to `end`, if it names the page of a
    /// small folio, the common case (and a CPU fault's), in one pass:
    /// decided by the rules as any PTE, taken without a second lookup.
    /// Does nothing for any other entry (the fault path's migration entry
    /// is one), or for a present page before the batch has made its room.
    #[inline(always)]
    fn collect_small_page(
        &mut self,
        taking: &mut BatchedRun<'_, '_>,
        addr: usize,
        end: usize,
    ) -> SmallStep {
        let mut decision = Decision::Skip { slots: 1 };
        let tag = self.npages;
        let done = taking.collect_small_page(addr, &self.fault, tag, |small| {
            let seen = self.small_page_entry(small);
            // The walk stays inside the range and one PMD: an error is a bug.
            decision = or_warn(
                rules::migrate_vma_collect_pte(&self.rules, &seen, addr as u64, end as u64),
                Decision::Skip { slots: 1 },
            );
            // A small folio is collected as one page, or skipped.
            matches!(
                decision,
                Decision::CollectSmall {
                    source: Source::Page { .. },
                    ..
                }
            )
        });
        match done {
            SmallTake::Other => return SmallStep::Other,
            SmallTake::NeedsRoom => return SmallStep::NeedsRoom,
            SmallTake::Declined => self.record_other(&decision),
            SmallTake::Tried { taken, pfn } => self.record_taken(&decision, taken, pfn, 1),
        }
        SmallStep::Done
    }

    /// Records the slots of `decision`, which took a page or folio of
    /// `slots` pages at `pfn` with outcome `taken`.
    #[inline(always)]
    fn record_taken(&mut self, decision: &Decision, taken: Take, pfn: usize, slots: usize) {
        match taken {
            Take::Taken => self.record(decision, pfn),
            Take::Collected(folio) => {
                self.record(decision, pfn);
                self.finished(Finished::Installed { folio, nr: 1 });
            }
            Take::Pinned => {
                self.stats.inc(Counter::FailAnonShare);
                self.record(&Decision::Skip { slots }, 0);
            }
            Take::Contended => {
                self.stats.inc(Counter::FailTrylock);
                let skip = decision.on_failure(Failure::Trylock);
                self.record(&skip.unwrap_or(Decision::Skip { slots }), 0);
            }
            Take::Unchanged => self.record(&Decision::Skip { slots }, 0),
        }
    }

    /// What the rules need to know of `page`.
    #[inline]
    fn page_info(&self, page: &MappedPage<'_>) -> PageInfo {
        let folio = page.folio();
        PageInfo {
            order: folio.order(),
            index: page.pfn() - folio.pfn(),
            fault_folio: self.fault.is_in(folio),
            has_mapping: page.has_mapping(),
            // Set by `classify()` for a large folio the run maps whole.
            mapped_whole: false,
        }
    }

    /// The PTE loop of `migrate_vma_collect_pmd()`, from `from` on, up to
    /// `end`.
    ///
    /// The folios met are taken in one batch: their entries become
    /// migration entries as the walk goes, and their anon-exclusive pages
    /// are shared at the end of the run, after one TLB flush for the run
    /// (7.3 flushes once per anon-exclusive page). Returns `Err(addr)` when
    /// the run had to be dropped to split a folio, or to make the batch's
    /// room for the first folio that needs it, and the walk must look at
    /// the PMD again from `addr`.
    fn collect_ptes(
        &mut self,
        run: PteRun<'_>,
        end: usize,
        from: usize,
        batch: &mut PteBatch,
    ) -> Result<(), usize> {
        let mut run = run.into_lazy_mmu();
        let mut taking = run.batched(batch);
        let mut addr = from;
        let (mut split, mut needs_room) = (None, false);
        while addr < end {
            self.stats.inc(Counter::PtesWalked);
            match self.collect_small_page(&mut taking, addr, end) {
                SmallStep::Done => {
                    addr += PAGE_SIZE;
                    continue;
                }
                SmallStep::NeedsRoom => {
                    needs_room = true;
                    break;
                }
                SmallStep::Other => {}
            }
            let mut snap = None;
            let (seen, fault_entry) = self.classify(&taking, addr, &mut snap);
            // The walk stays inside the range and one PMD: an error is a bug.
            let decision = or_warn(
                rules::migrate_vma_collect_pte(&self.rules, &seen, addr as u64, end as u64),
                Decision::Skip { slots: 1 },
            );
            match decision {
                Decision::CollectSmall {
                    source: Source::Page { .. },
                    ..
                } if fault_entry => self.adopt_fault_entry(&decision, 0),
                Decision::CollectWhole {
                    slots,
                    source: Source::Page { .. },
                    ..
                } if !fault_entry => {
                    if taking.wants_room() {
                        needs_room = true;
                        break;
                    }
                    // A large folio this run maps whole: one lock and one
                    // reference, its entries replaced now and its pages
                    // shared when the run is done.
                    let tag = self.npages;
                    let taken = match &snap {
                        None => Take::Unchanged,
                        Some(snap) => taking.take(snap, &self.fault, tag),
                    };
                    let pfn = snap.map_or(0, |snap| snap.pfn());
                    self.record_taken(&decision, taken, pfn, slots);
                    addr += slots * PAGE_SIZE;
                    continue;
                }
                Decision::CollectSmall {
                    source: Source::Page { .. },
                    ..
                } => {
                    // Only for a small folio's page, which
                    // `collect_small_page()` took above.
                    kernel::warn_on!(true);
                    self.skip(addr, addr + PAGE_SIZE);
                }
                Decision::CollectWhole { .. } | Decision::SplitFirst { .. } => {
                    // A large folio mapped by PTEs: split it and look again.
                    // The rules choose this only for a page.
                    let Some(page) = snap.as_ref().and_then(|s| taking.page_of(s)) else {
                        kernel::warn_on!(true);
                        self.skip(addr, addr + PAGE_SIZE);
                        addr += PAGE_SIZE;
                        continue;
                    };
                    split = Some(SplitRef::new(page.folio(), self.fault));
                    break;
                }
                d => self.record_other(&d),
            }
            addr += PAGE_SIZE;
        }
        if taking.finish(|done| self.finished(done)) {
            self.stats.inc(Counter::TlbFlushes);
        }
        // Splitting and allocating sleep: leave lazy MMU mode and the PTE
        // lock first.
        drop(run);
        if needs_room {
            batch.make_room();
            return Err(addr);
        }
        match split {
            Some(pin) => self.split_then_retry(pin, addr, end),
            None => Ok(()),
        }
    }

    /// Splits the large folio `pin` holds, met at `addr` (the PTE lock
    /// dropped), so that the walk looks at the PMD again from `addr`
    /// (`Err(addr)`); if the split fails, the rest of the range up to `end`
    /// is skipped.
    fn split_then_retry(&mut self, pin: SplitRef, addr: usize, end: usize) -> Result<(), usize> {
        let split = pin.split();
        self.stats.inc(Counter::Splits);
        if split.is_err() {
            self.stats.inc(Counter::FailSplit);
            self.skip(addr, end);
            return Ok(());
        }
        Err(addr)
    }

    /// Completes a folio the run took: its slots, recorded when it was
    /// taken, get its lock and reference, or are emptied if it turned out
    /// pinned.
    #[inline(always)]
    fn finished(&mut self, done: Finished) {
        match done {
            Finished::Installed { folio, nr } => {
                // Its slots were recorded when it was taken.
                let order = folio.folio().order();
                folio.into_slot();
                self.cpages += 1;
                self.stats.add(Counter::PteMigrationEntries, nr);
                self.stats.folio(order);
            }
            Finished::Pinned { tag } => {
                let nr = self
                    .src
                    .get(tag)
                    .map_or(1, |&raw| MigratePfn::from_raw_or_empty(raw).nr_pages());
                let end = (tag + nr).min(self.npages);
                self.src[tag..end].fill(0);
                self.stats.inc(Counter::FailAnonShare);
            }
        }
    }
}
