// SPDX-License-Identifier: GPL-2.0

//! What collection does to a folio it meets under a page-table lock.
//!
//! `migrate_vma_collect_pmd()` looks at one entry at a time, with the
//! page-table lock held: it reads the page the entry names, trylocks and
//! references its folio for a slot ([`CollectedFolio`]), replaces the
//! entry by a migration entry ([`PteRun::migrate_page`], which takes a
//! [`PteSnapshot`] of what the walk read, so a page is looked up once;
//! [`PmdGuard::migrate_folio`]), or pins a large folio to split it once the
//! lock is dropped ([`SplitRef`]). Each type owns what it took and gives it
//! back on drop, so a path that gives up leaves the folio as it found it.
//!
//! C header: [`include/linux/rmap.h`](srctree/include/linux/rmap.h),
//! [`include/linux/huge_mm.h`](srctree/include/linux/huge_mm.h)

use crate::folio::{Folio, LockedFolio};
use crate::migration::FaultPage;
use crate::page_table::{
    flush_tlb_range, MigrationKind, PmdEntry, PmdGuard, PteEntry, PteRun, PteValue, TakenPte,
    PAGE_SIZE, PTRS_PER_PTE,
};
use core::mem::MaybeUninit;
use core::ptr;
use kernel::{
    alloc::{flags::GFP_KERNEL, kvec::DrainAll, KVVec},
    bindings,
    error::{code::EINVAL, Error, Result},
    sync::aref::ARef,
};

/// A page named by an entry whose page-table lock is held: mapped by a
/// present PTE, or named by a device-private entry.
///
/// # Invariants
///
/// `page` is a valid page whose folio, `folio`, the entry references,
/// stable for `'a`, the borrow of the lock.
pub struct MappedPage<'a> {
    page: *mut bindings::page,
    folio: &'a Folio,
}

impl<'a> MappedPage<'a> {
    /// The page's PFN.
    #[inline]
    pub fn pfn(&self) -> usize {
        // SAFETY: The page is valid by the type invariant.
        unsafe { bindings::page_to_pfn(self.page) }
    }

    /// The folio the page is in, stable while the lock is held.
    #[inline]
    pub fn folio(&self) -> &'a Folio {
        self.folio
    }

    /// Whether the page has a mapping (`page_has_mapping()`): an anon or
    /// file page, rather than a driver's.
    #[inline]
    pub fn has_mapping(&self) -> bool {
        // SAFETY: The page is valid by the type invariant.
        unsafe { bindings::page_has_mapping(self.page) }
    }
}

/// Whether `page` of the anonymous `folio` is anon-exclusive
/// (`folio_test_anon() && PageAnonExclusive()`). A small folio's page
/// carries the flag itself and is never hugetlb, the one kind that keeps it
/// on the head: its flag is read without `PageAnonExclusive()`'s hugetlb
/// test, which most collected pages would pay for.
///
/// # Safety
///
/// `page` is a page of `folio`, which the caller holds locked.
#[inline(always)]
unsafe fn page_anon_exclusive(folio: &Folio, page: *mut bindings::page) -> bool {
    if !folio.is_anon() {
        return false;
    }
    if folio.is_large() {
        // SAFETY: `page` is a valid page of the anonymous `folio`.
        return unsafe { bindings::PageAnonExclusive(page) };
    }
    // SAFETY: `page` is valid; its flags word is read once, as
    // `test_bit()` does, while other bits of it may change.
    let flags = unsafe { ptr::read_volatile(ptr::addr_of!((*page).flags.f)) };
    flags & (1 << bindings::pageflags_PG_anon_exclusive) != 0
}

/// The page an entry of a [`PteRun`] named when it was read, to find it
/// again under the same lock without a second `vm_normal_page()`.
///
/// # Invariants
///
/// `page` is the page that `raw`, the entry at `addr` in the page tables of
/// `mm`, named when it was read under its PTE lock: the normal page of a
/// present entry, or the page of a device-private one; `write` says
/// whether that entry is writable.
#[derive(Clone, Copy)]
pub struct PteSnapshot {
    mm: *const bindings::mm_struct,
    addr: usize,
    raw: PteValue,
    pfn: usize,
    page: *mut bindings::page,
    write: bool,
}

impl PteSnapshot {
    /// The address of the entry.
    #[inline]
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The PFN of the page.
    #[inline]
    pub fn pfn(&self) -> usize {
        self.pfn
    }

    /// The entry's value as it was read.
    #[inline]
    pub fn value(&self) -> PteValue {
        self.raw
    }
}

impl PteRun<'_> {
    /// Reads the entry at `addr`, and what it names: the normal page a
    /// present PTE maps (`vm_normal_page()`) or the page of a
    /// device-private entry, both as a snapshot to find the page again and
    /// as the page itself, borrowed while the lock is held. The second is
    /// `None` for any other entry, the zero page and special mappings;
    /// `None` outside the run.
    #[allow(clippy::type_complexity)]
    #[inline(always)]
    pub fn read_page(
        &self,
        addr: usize,
    ) -> Option<(PteEntry, Option<(PteSnapshot, MappedPage<'_>)>)> {
        let (raw, entry) = self.read(addr)?;
        let (page, pfn, write) = match entry {
            PteEntry::Present { pfn, bits } => (self.normal_page_of(addr, raw), pfn, bits.write),
            PteEntry::DevicePrivate { pfn, write } => {
                // SAFETY: A device-private entry names a page with a
                // memmap entry.
                (unsafe { bindings::pfn_to_page(pfn) }, pfn, write)
            }
            _ => return Some((entry, None)),
        };
        if page.is_null() {
            return Some((entry, None));
        }
        // SAFETY: The entry, stable under the lock we hold, references the
        // folio of `page`, which it names.
        let folio = unsafe { Folio::from_page(page) };
        // INVARIANT: `page` is what `raw`, just read at `addr`, names, and
        // `folio` its folio; the entry, stable under the lock we hold,
        // references it; `write` is the entry's write bit, just decoded.
        let snap = PteSnapshot {
            mm: self.vma().mm().as_raw(),
            addr,
            raw,
            pfn,
            page,
            write,
        };
        let mapped = MappedPage { page, folio };
        Some((entry, Some((snap, mapped))))
    }

    /// The page `snap` named, if its entry is still the same: an entry
    /// that holds the same value at the same address of the same mm names
    /// the same page, which it keeps referenced while the lock is held.
    #[inline]
    pub fn page_of(&self, snap: &PteSnapshot) -> Option<MappedPage<'_>> {
        let raw = self.read_value(snap.addr)?;
        if !core::ptr::eq(snap.mm, self.vma().mm().as_raw()) || !raw.same(&snap.raw) {
            return None;
        }
        // SAFETY: The entry, unchanged and stable under the lock we hold,
        // names the page, by the invariant of `PteSnapshot`, and references
        // its folio. The folio is looked up again: it may have been split
        // since `snap` was read under an earlier hold of the lock.
        let folio = unsafe { Folio::from_page(snap.page) };
        // INVARIANT: As just said, for the lifetime of the borrow of `self`.
        Some(MappedPage {
            page: snap.page,
            folio,
        })
    }

    /// Trylocks and references the folio of the page `snap` names, unless
    /// it is `fault`'s (then only references it), and replaces its present
    /// or device-private PTE by a migration entry, writable if the entry
    /// was, as `migrate_vma_collect_pmd()` does: flushes the page's cache,
    /// shares an anon-exclusive page (clearing its PTE first, and flushing
    /// it if present), moves the dirty bit to the folio, installs the entry
    /// and drops the page's rmap and the mapping's reference: the returned
    /// folio's own reference keeps it for the migration, as for a PMD.
    ///
    /// A present PTE's TLB entry is left to the caller to flush, unless the
    /// outcome says it was flushed. On any other outcome than
    /// [`PteMigration::Installed`] the PTE and the folio are as they were.
    #[inline(always)]
    pub fn migrate_page(&mut self, snap: &PteSnapshot, fault: &FaultPage) -> PteMigration {
        let Some(mapped) = self.page_of(snap) else {
            return PteMigration::Unchanged;
        };
        let Some(folio) = CollectedFolio::trylock(mapped.folio(), fault) else {
            return PteMigration::Contended;
        };
        // SAFETY: `page_of()` found the entry unchanged under the lock we
        // hold, and `folio` is the folio of its page, locked.
        unsafe { self.migrate_locked_page(snap, folio) }
    }

    /// [`PteRun::migrate_page`] once the folio is locked.
    ///
    /// # Safety
    ///
    /// The entry at `snap.addr` is the one `snap` read, unchanged, under
    /// the lock we hold, and `folio` is the folio of its page.
    #[inline(always)]
    unsafe fn migrate_locked_page(
        &mut self,
        snap: &PteSnapshot,
        folio: CollectedFolio,
    ) -> PteMigration {
        let (pfn, write) = (snap.pfn, snap.write);
        let (vma, addr, page) = (self.vma(), snap.addr, snap.page);
        let raw = folio.folio().as_raw();
        let present = snap.raw.is_present();
        if present {
            // SAFETY: The page is mapped at `addr` in the VMA.
            unsafe { bindings::flush_cache_page(vma.as_ptr(), addr, pfn) };
        }
        // SAFETY: The folio is locked and `page` is one of its pages.
        let anon_exclusive = unsafe { page_anon_exclusive(folio.folio(), page) };
        let kind = MigrationKind::of(write, anon_exclusive);
        // A device-private entry was never in a TLB: clearing it is enough
        // to keep GUP-fast off the page before it is shared.
        let installed = self.take_and_replace(addr, anon_exclusive && present, |old| {
            // SAFETY: The folio is locked, and its PTE is cleared and, if it
            // was present, flushed (asked for when `anon_exclusive`), as
            // sharing an anon-exclusive page requires.
            if anon_exclusive && unsafe { bindings::folio_try_share_anon_rmap_pte(raw, page) } != 0
            {
                // Pinned: the entry goes back and the page stays.
                return (old, false);
            }
            if present && old.is_dirty() {
                // SAFETY: The folio is locked and referenced.
                unsafe { bindings::folio_mark_dirty(raw) };
            }
            // SAFETY: The entry taken out is the present or device-private
            // one `snap` read (the caller found it unchanged under the lock
            // we hold), which names page `pfn`: no need to decode it again.
            (unsafe { old.migration_entry_of_page(kind, pfn) }, true)
        });
        match installed {
            Ok(true) => {}
            Ok(false) => return PteMigration::Pinned,
            Err(_) => return PteMigration::Unchanged,
        }
        // SAFETY: The PTE no longer maps the page: drop its rmap and the
        // mapping's reference, which `folio`'s own reference replaces.
        unsafe {
            bindings::folio_remove_rmap_pte(raw, page, vma.as_ptr());
            bindings::folio_put(raw);
        }
        PteMigration::Installed {
            folio,
            present,
            flushed: anon_exclusive && present,
        }
    }
}

/// The most pages a PTE-mapped folio collected whole has: one PTE table.
const MAX_RUN_PAGES: usize = PTRS_PER_PTE;

impl PteRun<'_> {
    /// Whether the entry `snap` read heads a large folio that this run maps
    /// whole and alone: the `folio_nr_pages()` entries from it map the
    /// folio's pages in order, all present or all device-private, nothing
    /// else maps the folio, and nobody may have pinned it. `Some(write)`
    /// then says whether every one of those entries is writable.
    pub fn maps_folio_whole(&self, snap: &PteSnapshot) -> Option<bool> {
        let folio = self.page_of(snap)?.folio();
        let nr = folio.nr_pages();
        if !(2..=MAX_RUN_PAGES).contains(&nr) || folio.pfn() != snap.pfn {
            return None;
        }
        let present = snap.raw.is_present();
        let mut write = true;
        for k in 0..nr {
            let (pfn, w) = match self.read(snap.addr + k * PAGE_SIZE)?.1 {
                PteEntry::Present { pfn, bits } if present => (pfn, bits.write),
                PteEntry::DevicePrivate { pfn, write } if !present => (pfn, write),
                _ => return None,
            };
            if pfn != snap.pfn + k {
                return None;
            }
            write &= w;
        }
        // Each of the `nr` entries counts once: any other mapping, such as a
        // forked child's, adds to the count.
        let alone = usize::try_from(folio.mapcount()).is_ok_and(|m| m == nr);
        (alone && !folio.maybe_dma_pinned()).then_some(write)
    }
}

impl<'a> PteRun<'a> {
    /// Starts taking folios for migration into `batch`, whose entries
    /// become migration entries at once and are kept until
    /// [`BatchedRun::finish`] says whether to put them back, all under this
    /// lock.
    #[inline]
    pub fn batched<'r>(&'r mut self, batch: &'r mut PteBatch) -> BatchedRun<'r, 'a>
    where
        'a: 'r,
    {
        BatchedRun { run: self, batch }
    }
}

/// The entries a CPU fault's migration takes at most without a heap
/// allocation: its page, or a small folio.
const INLINE_PAGES: usize = 4;

/// Room for up to a fixed number of values: inline for the few of a CPU
/// fault's migration, allocated once beyond that. The inline slots are
/// written only as values are added, so that making a room clears no
/// memory, and only a room that allocated has a vector to free: a fault's
/// migration makes no allocator call and no `memset()` call for it.
///
/// # Invariants
///
/// Without `heap`, the first `len` inline slots hold values the room owns;
/// with it, the values are in `heap` and `len` is 0.
struct Room<T> {
    inline: [MaybeUninit<T>; INLINE_PAGES],
    heap: Option<KVVec<T>>,
    len: usize,
}

impl<T> Room<T> {
    /// Room for the values that fit inline.
    #[inline(always)]
    fn new() -> Self {
        // INVARIANT: No value, and no vector.
        Self {
            inline: [const { MaybeUninit::uninit() }; INLINE_PAGES],
            heap: None,
            len: 0,
        }
    }

    /// Makes room for `cap` values in all, allocated now if they do not
    /// fit inline; only while the room is empty.
    #[inline]
    fn reserve(&mut self, cap: usize) -> Result {
        if !self.is_empty() {
            return Err(EINVAL);
        }
        if cap > INLINE_PAGES {
            // INVARIANT: The room is empty, inline and in the vector.
            self.heap = Some(KVVec::with_capacity(cap, GFP_KERNEL)?);
        }
        Ok(())
    }

    /// Whether the room holds no value.
    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.len == 0 && self.heap.as_ref().is_none_or(|heap| heap.is_empty())
    }

    /// How many more values fit.
    #[inline]
    fn room(&self) -> usize {
        match &self.heap {
            Some(heap) => heap.capacity() - heap.len(),
            None => INLINE_PAGES - self.len,
        }
    }

    /// Adds `v`; gives it back when there is no room.
    #[inline(always)]
    fn push(&mut self, v: T) -> core::result::Result<(), T> {
        if let Some(heap) = &mut self.heap {
            // `push_within_capacity()`, written out: the walk pushes once
            // per page taken, where the call it may stay would cost more.
            let Some(slot) = heap.spare_capacity_mut().first_mut() else {
                return Err(v);
            };
            slot.write(v);
            // SAFETY: The first spare slot, within the capacity, was just
            // written.
            unsafe { heap.inc_len(1) };
            return Ok(());
        }
        let len = self.len;
        let Some(slot) = self.inline.get_mut(len) else {
            return Err(v);
        };
        slot.write(v);
        // INVARIANT: The slot at `len` now holds a value.
        self.len = len + 1;
        Ok(())
    }

    /// Takes the last value added out.
    #[inline]
    fn pop(&mut self) -> Option<T> {
        if let Some(heap) = &mut self.heap {
            return heap.pop();
        }
        let last = self.len.checked_sub(1)?;
        // INVARIANT: The slot at `last` is no longer counted.
        self.len = last;
        // SAFETY: The slot at `last` held a value (invariant), which the
        // room no longer counts: it is read out once.
        Some(unsafe { self.inline[last].assume_init_read() })
    }

    /// Takes every value out, in the order they were added.
    #[inline]
    fn drain(&mut self) -> RoomDrain<'_, T> {
        if let Some(heap) = &mut self.heap {
            return RoomDrain::Heap(heap.drain_all());
        }
        // INVARIANT: The values pass to the drain, which owns them.
        let n = core::mem::take(&mut self.len);
        RoomDrain::Inline(self.inline[..n].iter_mut())
    }
}

impl<T> Drop for Room<T> {
    /// Drops the inline values still in the room (a vector drops its own).
    #[inline(always)]
    fn drop(&mut self) {
        for slot in &mut self.inline[..self.len] {
            // SAFETY: The first `len` slots hold values the room owns
            // (invariant), dropped once, as the room goes.
            unsafe { slot.assume_init_drop() };
        }
    }
}

/// The values of a [`Room`], taken out in the order they were added; those
/// not taken are dropped with it.
///
/// # Invariants
///
/// The inline slots left to iterate hold values the drain owns.
enum RoomDrain<'r, T> {
    Heap(DrainAll<'r, T>),
    Inline(core::slice::IterMut<'r, MaybeUninit<T>>),
}

impl<T> Iterator for RoomDrain<'_, T> {
    type Item = T;

    #[inline(always)]
    fn next(&mut self) -> Option<T> {
        match self {
            RoomDrain::Heap(drain) => drain.next(),
            // SAFETY: The slot holds a value the drain owns (invariant),
            // read out once as the iterator passes it.
            RoomDrain::Inline(slots) => slots.next().map(|slot| unsafe { slot.assume_init_read() }),
        }
    }
}

impl<T> Drop for RoomDrain<'_, T> {
    #[inline]
    fn drop(&mut self) {
        if let RoomDrain::Inline(slots) = self {
            for slot in slots {
                // SAFETY: As in `next()`: owned, and dropped once.
                unsafe { slot.assume_init_drop() };
            }
        }
    }
}

/// Room for the entries and folios of one run: inline for a few, and for
/// more allocated by [`PteBatch::make_room`] once a run meets the first
/// folio that needs it, which the walk then takes with the lock dropped
/// and taken again.
///
/// # Invariants
///
/// Outside a [`BatchedRun`], both rooms are empty.
pub struct PteBatch {
    taken: Room<TakenPte>,
    folios: Room<BatchedFolio>,
    present: bool,
    /// The pages a run may take, to allocate room for when one first
    /// needs it; 0 once allocated, or once allocation failed.
    wanted: usize,
}

/// A folio of a batch: locked and referenced for a slot, its `nr` pages
/// from page `first` on mapped by migration entries, which replaced the
/// next `nr` entries of [`PteBatch::taken`]; `dirty` if one of those was.
struct BatchedFolio {
    folio: CollectedFolio,
    first: usize,
    nr: usize,
    tag: usize,
    dirty: bool,
}

impl PteBatch {
    /// Whether one more page fits.
    #[inline(always)]
    fn has_room_for_page(&self) -> bool {
        self.taken.room() != 0 && self.folios.room() != 0
    }

    /// Room for a run of up to `pages` entries: inline for a few, made
    /// where it is stored; more are allocated by
    /// [`PteBatch::make_room`], when a run first needs them.
    #[inline(always)]
    pub fn new(pages: usize) -> Self {
        // INVARIANT: Both start empty.
        Self {
            taken: Room::new(),
            folios: Room::new(),
            present: false,
            wanted: if pages > INLINE_PAGES { pages } else { 0 },
        }
    }

    /// Whether [`PteBatch::make_room`] has room to allocate.
    #[inline(always)]
    pub fn wants_room(&self) -> bool {
        self.wanted != 0
    }

    /// Allocates the room [`PteBatch::new`] was asked for, if not done
    /// yet; outside a run, as allocating may sleep. The walk makes it when
    /// a run first meets a folio that needs it, so that a range of PMD
    /// entries only (THPs), or of small device-private folios, which are
    /// taken at once, allocates nothing. If the allocation fails the batch
    /// keeps its inline room: a run then takes the folios that fit, and
    /// leaves the others where they are for the driver to see as not
    /// collected.
    #[inline]
    pub fn make_room(&mut self) {
        let pages = core::mem::take(&mut self.wanted);
        if pages == 0 {
            return;
        }
        // Both rooms are empty outside a run (invariant); one that could
        // not allocate keeps its inline slots.
        let _ = self.taken.reserve(pages);
        let _ = self.folios.reserve(pages);
    }
}

/// A [`PteRun`] that takes folios for migration in two steps, so that the
/// TLB flush that sharing their anon-exclusive pages needs is done once for
/// the run rather than once per page: [`BatchedRun::take`] locks a folio
/// and replaces its entries by migration entries, [`BatchedRun::finish`]
/// flushes the TLB once, shares the anon-exclusive pages and drops the
/// rmap. Dropped unfinished, it puts every entry back and lets the folios
/// go.
pub struct BatchedRun<'r, 'a> {
    run: &'r mut PteRun<'a>,
    batch: &'r mut PteBatch,
}

/// What [`BatchedRun::take`] did.
pub enum Take {
    /// The folio is locked and its entries replaced, until
    /// [`BatchedRun::finish`] says what became of it.
    Taken,
    /// Taken at once (a device-private page, by
    /// [`BatchedRun::collect_small_page`]): its migration entry is
    /// installed, and `folio` holds the lock and reference for the slot.
    Collected(CollectedFolio),
    /// Taken at once, its anon-exclusive page turned out pinned: nothing
    /// changed.
    Pinned,
    /// The folio is locked by someone else: nothing changed.
    Contended,
    /// The entries changed since the snapshot, or there is no room left:
    /// nothing changed.
    Unchanged,
}

impl From<PteMigration> for Take {
    #[inline(always)]
    fn from(migration: PteMigration) -> Self {
        match migration {
            PteMigration::Installed { folio, .. } => Take::Collected(folio),
            PteMigration::Pinned => Take::Pinned,
            PteMigration::Contended => Take::Contended,
            PteMigration::Unchanged => Take::Unchanged,
        }
    }
}

/// The page of a small folio that a present or device-private entry
/// names, as [`BatchedRun::collect_small_page`] shows it.
pub struct SmallPage<'p> {
    page: MappedPage<'p>,
    present: bool,
    write: bool,
}

impl<'p> SmallPage<'p> {
    /// The page.
    #[inline]
    pub fn page(&self) -> &MappedPage<'p> {
        &self.page
    }

    /// Whether the entry is present (else device-private).
    #[inline]
    pub fn is_present(&self) -> bool {
        self.present
    }

    /// Whether the entry is writable.
    #[inline]
    pub fn is_writable(&self) -> bool {
        self.write
    }
}

/// What [`BatchedRun::collect_small_page`] did.
pub enum SmallTake {
    /// The entry names no page of a small folio: nothing changed.
    Other,
    /// The decision left the page where it is: nothing changed.
    Declined,
    /// The decision took the page, a present one, which needs room in the
    /// batch that [`PteBatch::make_room`] has yet to make: nothing
    /// changed.
    NeedsRoom,
    /// The decision took the page of PFN `pfn`, with this outcome.
    Tried {
        /// What became of the folio.
        taken: Take,
        /// The page's PFN.
        pfn: usize,
    },
}

/// What became of a folio [`BatchedRun::finish`] looked at.
pub enum Finished {
    /// Its migration entries are installed; `folio` holds the lock and
    /// reference for the migration's slot.
    Installed {
        /// The folio, locked and referenced.
        folio: CollectedFolio,
        /// The number of its entries that were replaced.
        nr: usize,
    },
    /// An anon-exclusive page of it is pinned: its entries are back as
    /// they were, and the folio is released.
    Pinned {
        /// The caller's tag given to [`BatchedRun::take`].
        tag: usize,
    },
}

impl<'a> core::ops::Deref for BatchedRun<'_, 'a> {
    type Target = PteRun<'a>;

    #[inline]
    fn deref(&self) -> &PteRun<'a> {
        self.run
    }
}

impl BatchedRun<'_, '_> {
    /// Whether the batch has yet to make the room it was asked for
    /// ([`PteBatch::wants_room`]): before a folio that needs it is taken,
    /// the caller ends the run and makes it.
    #[inline(always)]
    pub fn wants_room(&self) -> bool {
        self.batch.wants_room()
    }

    /// Takes the large folio whose head `snap` names, which this run maps
    /// whole ([`PteRun::maps_folio_whole`]): trylocks and references it
    /// (only references the fault folio, whose lock the fault path holds)
    /// and replaces all its entries by migration entries (without a TLB
    /// flush, which `finish` does for the run), each writable if the entry
    /// it replaces was. `tag` comes back if [`BatchedRun::finish`] finds
    /// the folio pinned. A small folio's page is taken by
    /// [`BatchedRun::collect_small_page`].
    #[inline]
    pub fn take(&mut self, snap: &PteSnapshot, fault: &FaultPage, tag: usize) -> Take {
        if self.run.maps_folio_whole(snap).is_none() {
            return Take::Unchanged;
        }
        let Some(mapped) = self.run.page_of(snap) else {
            return Take::Unchanged;
        };
        let nr = mapped.folio().nr_pages();
        // The page's index in its folio: 0, as the folio is taken whole.
        let first = snap.pfn - mapped.folio().pfn();
        let batch = &mut *self.batch;
        if batch.taken.room() < nr || batch.folios.room() == 0 {
            return Take::Unchanged;
        }
        let Some(folio) = CollectedFolio::trylock(mapped.folio(), fault) else {
            return Take::Contended;
        };
        let (vma, present) = (self.run.vma(), snap.raw.is_present());
        let (anon, raw) = (folio.folio().is_anon(), folio.folio().as_raw());
        // SAFETY: A `CollectedFolio` holds the folio lock, by its
        // invariant; the guard only borrows it and gives it back below.
        let locked = unsafe { LockedFolio::from_locked(folio.folio()) };
        let (mut taken, mut dirty) = (0, false);
        for k in 0..nr {
            let addr = snap.addr + k * PAGE_SIZE;
            if present {
                // SAFETY: The page is mapped at `addr` in the VMA.
                unsafe { bindings::flush_cache_page(vma.as_ptr(), addr, snap.pfn + k) };
            }
            // SAFETY: The folio is locked and has page `first + k`.
            let exclusive = anon
                && unsafe { bindings::PageAnonExclusive(bindings::folio_page(raw, first + k)) };
            // Every entry was read in this run and names the folio's page
            // `first + k`, and there is room for it.
            let Ok(old) = self
                .run
                .replace_by_migration_entry(addr, &locked, exclusive)
            else {
                break;
            };
            dirty |= old.is_dirty();
            if let Err(old) = self.batch.taken.push(old) {
                if self.run.restore(old).is_err() {
                    kernel::warn_on!(true);
                }
                break;
            }
            taken += 1;
        }
        locked.into_raw_locked();
        // Neither is reached: every entry was read in this run, and room
        // was checked above. The folio goes only once its entries are
        // back.
        if taken < nr {
            kernel::warn_on!(true);
            self.put_back(taken);
            return Take::Unchanged;
        }
        let folio = BatchedFolio {
            folio,
            first,
            nr,
            tag,
            dirty,
        };
        self.keep(folio, present)
    }

    /// Takes the folio of the one page `snap` read, as
    /// [`BatchedRun::take`] does for a large one, once the folio is locked:
    /// the entry, found unchanged, is replaced without decoding it again.
    ///
    /// # Safety
    ///
    /// The entry at `snap.addr` is the one `snap` read, unchanged, under
    /// the lock we hold, `folio` is the folio of its page, and the batch
    /// has room for one more page.
    #[inline(always)]
    unsafe fn take_locked_page(
        &mut self,
        snap: &PteSnapshot,
        folio: CollectedFolio,
        tag: usize,
    ) -> Take {
        let first = snap.pfn - folio.folio().pfn();
        let (vma, present) = (self.run.vma(), snap.raw.is_present());
        if present {
            // SAFETY: The page is mapped at `snap.addr` in the VMA.
            unsafe { bindings::flush_cache_page(vma.as_ptr(), snap.addr, snap.pfn) };
        }
        // SAFETY: The folio is locked and `snap.page` is one of its pages.
        let exclusive = unsafe { page_anon_exclusive(folio.folio(), snap.page) };
        // SAFETY: The entry is the present or device-private one `snap`
        // read, unchanged, by the caller's guarantee, which names page
        // `snap.pfn` of the folio just locked, writable if `snap.write`, by
        // the invariant of `PteSnapshot`.
        let replaced = unsafe {
            self.run
                .replace_by_migration_entry_of_page(snap.addr, snap.pfn, snap.write, exclusive)
        };
        let Ok(old) = replaced else {
            return Take::Unchanged;
        };
        let dirty = old.is_dirty();
        if let Err(old) = self.batch.taken.push(old) {
            // Not reached: the caller checked for room.
            if self.run.restore(old).is_err() {
                kernel::warn_on!(true);
            }
            return Take::Unchanged;
        }
        let folio = BatchedFolio {
            folio,
            first,
            nr: 1,
            tag,
            dirty,
        };
        self.keep(folio, present)
    }

    /// Adds `folio`, whose `nr` entries were just taken, to the batch;
    /// `present` if they were present entries, whose TLB entries the run
    /// then flushes.
    #[inline(always)]
    fn keep(&mut self, folio: BatchedFolio, present: bool) -> Take {
        let nr = folio.nr;
        if let Err(folio) = self.batch.folios.push(folio) {
            // Not reached: room was checked before taking the entries,
            // which go back before the folio goes.
            kernel::warn_on!(true);
            self.put_back(nr);
            drop(folio);
            return Take::Unchanged;
        }
        self.batch.present |= present;
        Take::Taken
    }

    /// Reads the entry at `addr` and, if it names a page of a small folio,
    /// shows the page to `decide`; if that returns `true`, takes the folio:
    /// a present entry as [`BatchedRun::take`] does (`tag` coming back if
    /// it turns out pinned), a device-private one at once
    /// ([`PteRun::migrate_page`]): it has no TLB entry, so sharing its page
    /// need not wait for the run's flush. Either only references `fault`'s
    /// folio, whose lock the fault path holds.
    ///
    /// This is most entries of a walk, read and looked up once here, where
    /// `take` has to find again the page a snapshot named. Any other entry
    /// is left as it was, for the caller to look at the general way.
    #[inline(always)]
    pub fn collect_small_page(
        &mut self,
        addr: usize,
        fault: &FaultPage,
        tag: usize,
        decide: impl FnOnce(&SmallPage<'_>) -> bool,
    ) -> SmallTake {
        let Some((_, Some((snap, page)))) = self.run.read_page(addr) else {
            return SmallTake::Other;
        };
        let folio = page.folio();
        if folio.is_large() {
            return SmallTake::Other;
        }
        let present = snap.raw.is_present();
        let small = SmallPage {
            page,
            present,
            write: snap.write,
        };
        if !decide(&small) {
            return SmallTake::Declined;
        }
        let pfn = snap.pfn;
        if present && self.batch.wants_room() {
            return SmallTake::NeedsRoom;
        }
        if present && !self.batch.has_room_for_page() {
            return SmallTake::Tried {
                taken: Take::Unchanged,
                pfn,
            };
        }
        let Some(folio) = CollectedFolio::trylock(folio, fault) else {
            return SmallTake::Tried {
                taken: Take::Contended,
                pfn,
            };
        };
        let taken = if present {
            // SAFETY: `snap` was read just now under the lock we hold,
            // nothing changed the entry since, `folio` is the folio of its
            // page, locked, and there is room for it, checked above.
            unsafe { self.take_locked_page(&snap, folio, tag) }
        } else {
            // SAFETY: As above, for the device-private entry.
            unsafe { self.run.migrate_locked_page(&snap, folio) }.into()
        };
        SmallTake::Tried { taken, pfn }
    }

    /// Puts back the last `n` entries taken.
    fn put_back(&mut self, n: usize) {
        for _ in 0..n {
            let restored = self.batch.taken.pop().map(|old| self.run.restore(old));
            if !matches!(restored, Some(Ok(()))) {
                kernel::warn_on!(true);
            }
        }
    }

    /// Flushes the TLB entries of the run once if a present entry was
    /// replaced, then, for each folio taken, in order, shares its
    /// anon-exclusive pages, moves the dirty bits of its entries to the
    /// folio, and drops the rmap and the mappings' references of its
    /// entries at once. A folio whose share fails is pinned: its entries
    /// are put back and it is released. `report` hears of each folio;
    /// returns whether the TLB was flushed.
    ///
    /// A pin taken through GUP-fast can only have been taken before the
    /// entries were replaced, so it is seen at the folio's first share,
    /// before any page of it was shared.
    #[inline(always)]
    pub fn finish(self, mut report: impl FnMut(Finished)) -> bool {
        let flushed = self.batch.present;
        if flushed {
            flush_tlb_range(self.run.vma(), self.run.start(), self.run.end());
        }
        let (run, batch) = (&mut *self.run, &mut *self.batch);
        batch.present = false;
        let mut entries = batch.taken.drain();
        for BatchedFolio {
            folio,
            first,
            nr,
            tag,
            dirty,
        } in batch.folios.drain()
        {
            if share_pages(&folio, first, nr) {
                // The entries taken out are not needed any more.
                for _ in 0..nr {
                    entries.next();
                }
                release_mappings(run, &folio, first, nr, dirty);
                report(Finished::Installed { folio, nr });
            } else {
                restore_entries(run, entries.by_ref().take(nr));
                drop(folio);
                report(Finished::Pinned { tag });
            }
        }
        flushed
    }
}

impl Drop for BatchedRun<'_, '_> {
    /// Puts back every entry not finished and lets its folio go, so that no
    /// migration entry is left behind for a folio that is not collected.
    fn drop(&mut self) {
        let (run, batch) = (&mut *self.run, &mut *self.batch);
        batch.present = false;
        // Mostly after `finish()`, which took every folio out.
        if batch.taken.is_empty() && batch.folios.is_empty() {
            return;
        }
        let mut entries = batch.taken.drain();
        for BatchedFolio { folio, nr, .. } in batch.folios.drain() {
            restore_entries(run, entries.by_ref().take(nr));
            drop(folio);
        }
    }
}

/// Puts `entries`, taken out of `run`, back where they were.
fn restore_entries(run: &mut PteRun<'_>, entries: impl Iterator<Item = TakenPte>) {
    for old in entries {
        // Every entry of a batch came from its run: not reached.
        if run.restore(old).is_err() {
            kernel::warn_on!(true);
        }
    }
}

/// Shares the anon-exclusive pages among the `nr` of `folio` from page
/// `first` on, whose entries are migration entries and flushed; `false`,
/// with no page shared, when the folio is pinned.
fn share_pages(folio: &CollectedFolio, first: usize, nr: usize) -> bool {
    if !folio.folio().is_anon() {
        return true;
    }
    let raw = folio.folio().as_raw();
    let mut shared_any = false;
    for k in 0..nr {
        // SAFETY: The folio is locked and has pages `first..first + nr`,
        // whose entries are no longer present and their TLB entries
        // flushed, as sharing an anon-exclusive page requires.
        let failed = unsafe {
            let page = bindings::folio_page(raw, first + k);
            if !bindings::PageAnonExclusive(page) {
                continue;
            }
            bindings::folio_try_share_anon_rmap_pte(raw, page)
        };
        if failed != 0 {
            // Only the first share can fail: no pin is taken once the
            // entries are gone.
            kernel::warn_on!(shared_any);
            return false;
        }
        shared_any = true;
    }
    true
}

/// Drops the rmap and the mappings' references of the `nr` pages of
/// `folio` from page `first` on, whose entries are now migration entries,
/// and marks the folio dirty if one of them was.
fn release_mappings(
    run: &PteRun<'_>,
    folio: &CollectedFolio,
    first: usize,
    nr: usize,
    dirty: bool,
) {
    let raw = folio.folio().as_raw();
    // SAFETY: The folio is locked and referenced, and its `nr` pages from
    // `first` on are no longer mapped by the entries just replaced: drop
    // their rmap and the mappings' references, which `folio`'s own
    // replaces.
    unsafe {
        if dirty {
            bindings::folio_mark_dirty(raw);
        }
        let page = bindings::folio_page(raw, first);
        if nr == 1 {
            bindings::folio_remove_rmap_pte(raw, page, run.vma().as_ptr());
        } else {
            bindings::folio_remove_rmap_ptes(raw, page, nr as i32, run.vma().as_ptr());
        }
        bindings::folio_put_refs(raw, nr as i32);
    }
}

/// What [`PteRun::migrate_page`] did.
pub enum PteMigration {
    /// The migration entries are installed, and `folio` holds the lock and
    /// reference for the migration; `present` when they replaced present
    /// PTEs, whose TLB entries were `flushed` already or are the caller's
    /// to flush.
    Installed {
        /// The folio, locked and referenced.
        folio: CollectedFolio,
        /// Whether the PTE was present (else device-private).
        present: bool,
        /// Whether its TLB entry was flushed.
        flushed: bool,
    },
    /// The folio is locked by someone else: nothing changed.
    Contended,
    /// The anon-exclusive page is pinned: its PTE was cleared, flushed
    /// and put back.
    Pinned,
    /// The entry changed since the snapshot: nothing changed.
    Unchanged,
}

impl PmdGuard<'_> {
    /// The folio a huge or device-private PMD names, borrowed for as long
    /// as the lock is held.
    pub fn mapped_folio(&self) -> Option<&Folio> {
        match self.entry() {
            PmdEntry::Huge { pfn, .. } | PmdEntry::DevicePrivate { pfn, .. } => {
                // SAFETY: The entry references its folio, and it cannot
                // change while we hold the PMD lock.
                Some(unsafe { Folio::from_pfn(pfn) })
            }
            _ => None,
        }
    }

    /// Replaces the huge or device-private PMD that maps `folio` by a PMD
    /// migration entry ([`PmdGuard::set_pmd_migration_entry`]), which
    /// drops the mapping's reference: `folio`'s own keeps the folio.
    #[inline]
    pub fn migrate_folio(&mut self, folio: &CollectedFolio) -> Result {
        // SAFETY: A `CollectedFolio` holds the folio lock, by its
        // invariant; the guard only borrows it and gives it back below.
        let locked = unsafe { LockedFolio::from_locked(folio.folio()) };
        let ret = self.set_pmd_migration_entry(&locked);
        locked.into_raw_locked();
        ret
    }
}

impl FaultPage {
    /// The fault page, which the fault path holds.
    #[inline]
    pub fn page(&self) -> Option<MappedPage<'_>> {
        let folio = self.folio()?;
        // INVARIANT: The fault path holds the page's folio locked and
        // referenced while `self` is used.
        Some(MappedPage {
            page: self.as_raw(),
            folio,
        })
    }

    /// Puts back the device-private entries that migration entries for the
    /// fault folio replaced (`remove_migration_ptes()`).
    #[inline]
    pub fn remove_migration_entries(&self) {
        if let Some(folio) = self.folio() {
            // SAFETY: The fault path holds the folio locked, as restoring
            // its migration entries requires.
            unsafe { bindings::remove_migration_ptes(folio.as_raw(), folio.as_raw(), 0) };
        }
    }
}

/// A folio collection took for a slot: referenced, and locked by
/// collection, or by the fault path for the fault folio.
///
/// Dropping it unlocks (unless the fault path holds the lock) and drops
/// the reference; [`CollectedFolio::into_slot`] hands both to the slot.
///
/// # Invariants
///
/// `folio`'s lock is held: owned by this value unless `fault`, when the
/// fault path owns it.
pub struct CollectedFolio {
    folio: ARef<Folio>,
    fault: bool,
}

impl CollectedFolio {
    /// References and trylocks `folio`; the fault folio, which the fault
    /// path holds locked, is only referenced. `None` when the lock is
    /// contended.
    #[inline]
    pub fn trylock(folio: &Folio, fault: &FaultPage) -> Option<Self> {
        let fault = fault.is_in(folio);
        // SAFETY: A trylock does not sleep.
        if !fault && !unsafe { bindings::folio_trylock(folio.as_raw()) } {
            return None;
        }
        // INVARIANT: The lock was just taken, or the fault path holds it.
        Some(Self {
            folio: ARef::from(folio),
            fault,
        })
    }

    /// The fault folio, referenced for a slot of its own; the lock stays
    /// the fault path's.
    #[inline]
    pub fn fault_folio(fault: &FaultPage) -> Option<Self> {
        let folio = fault.folio()?;
        Self::trylock(folio, fault)
    }

    /// The folio.
    #[inline]
    pub fn folio(&self) -> &Folio {
        &self.folio
    }

    /// Hands the lock and the reference to the slot that will name the
    /// folio; returns the head PFN to store there.
    #[inline]
    pub fn into_slot(self) -> usize {
        let pfn = self.folio.pfn();
        core::mem::forget(self);
        pfn
    }

    /// Splits the folio (`split_folio()`) and releases it: the lock stays
    /// on the first folio of the split, or on the fault page's folio.
    /// Fails with the split's error, everything released.
    pub fn split(self, fault: &FaultPage) -> Result {
        // SAFETY: The folio is locked and referenced, by the invariant.
        let ret = unsafe { bindings::split_folio(self.folio.as_raw()) };
        if ret != 0 {
            return Err(Error::from_errno(ret));
        }
        // The fault page of a PMD fault is the head page, so the fault
        // path's lock stays on the folio it holds.
        if self.fault && !fault.is_in(&self.folio) {
            kernel::warn_on!(true);
        }
        Ok(())
    }
}

impl Drop for CollectedFolio {
    #[inline]
    fn drop(&mut self) {
        if !self.fault {
            // SAFETY: We own the lock by the type invariant.
            unsafe { bindings::folio_unlock(self.folio.as_raw()) };
        }
    }
}

/// A large folio met under a page-table lock, pinned to be split once the
/// lock is dropped (`migrate_vma_split_folio()`).
///
/// # Invariants
///
/// The value holds a reference to `folio`, unless it is the fault folio,
/// which the fault path holds locked and referenced.
pub struct SplitRef {
    folio: *mut bindings::folio,
    fault: FaultPage,
    is_fault: bool,
}

impl SplitRef {
    /// Pins `folio` for [`SplitRef::split`].
    pub fn new(folio: &Folio, fault: FaultPage) -> Self {
        let is_fault = fault.is_in(folio);
        if !is_fault {
            // SAFETY: The caller's borrow proves the folio alive.
            unsafe { bindings::folio_get(folio.as_raw()) };
        }
        // INVARIANT: A reference was taken, or it is the fault folio.
        Self {
            folio: folio.as_raw(),
            fault,
            is_fault,
        }
    }

    /// Locks and splits the folio, keeping the fault path's lock on
    /// whichever folio holds the fault page afterwards. Sleeps: no
    /// page-table lock may be held.
    pub fn split(self) -> Result {
        let this = core::mem::ManuallyDrop::new(self);
        let (folio, is_fault) = (this.folio, this.is_fault);
        // The fault path holds the lock of `folio` when it is the fault
        // folio; after the split that lock belongs on the fault page's.
        if !is_fault {
            // SAFETY: We hold a reference; taking the lock sleeps, which
            // the caller allows.
            unsafe { bindings::folio_lock(folio) };
        }
        // SAFETY: The folio is locked and referenced.
        let ret = unsafe { bindings::split_folio(folio) };
        if ret != 0 {
            if !is_fault {
                // SAFETY: Releases the lock and reference taken for the
                // split.
                unsafe {
                    bindings::folio_unlock(folio);
                    bindings::folio_put(folio);
                }
            }
            return Err(Error::from_errno(ret));
        }
        // After the split the fault page may be in another, smaller folio:
        // the fault path's lock must end up on that one.
        let new_fault = this
            .fault
            .folio()
            .map_or(core::ptr::null_mut(), Folio::as_raw);
        // SAFETY: `folio` is now the first small folio of the split, still
        // locked and referenced as before; the others were unlocked by the
        // split, so the lock moves by taking the new one.
        unsafe {
            if new_fault.is_null() {
                bindings::folio_unlock(folio);
                bindings::folio_put(folio);
            } else if folio != new_fault {
                if is_fault {
                    bindings::folio_get(new_fault);
                    bindings::folio_lock(new_fault);
                }
                bindings::folio_unlock(folio);
                bindings::folio_put(folio);
            }
        }
        Ok(())
    }
}

impl Drop for SplitRef {
    #[inline]
    fn drop(&mut self) {
        if !self.is_fault {
            // SAFETY: We own the reference by the type invariant.
            unsafe { bindings::folio_put(self.folio) };
        }
    }
}
