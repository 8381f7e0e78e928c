// SPDX-License-Identifier: GPL-2.0

//! Page-table entries as values: what a PMD or PTE holds, decoded, and the
//! raw values taken out of a table to be restored or turned into migration
//! entries.

use kernel::bindings;

/// The bits of a present or swap-like entry that migration carries over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct EntryBits {
    /// Writable (for a migration or device-private entry: was writable).
    pub write: bool,
    /// Soft-dirty (present entries only).
    pub soft_dirty: bool,
    /// Userfaultfd write-protected (present entries only).
    pub uffd_wp: bool,
}

/// Which migration entry to install, as `migrate_vma_collect_pmd()` and
/// `set_pmd_migration_entry()` choose it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationKind {
    /// The mapping was read-only and the folio may be shared.
    Readable,
    /// The mapping was read-only but the anonymous folio is exclusive.
    ReadableExclusive,
    /// The mapping was writable.
    Writable,
}

impl MigrationKind {
    /// The kind `migrate_vma_collect_pmd()` picks for an entry: writable
    /// if it was writable, else readable, and exclusive if the page was
    /// anon-exclusive.
    #[inline]
    pub fn of(write: bool, anon_exclusive: bool) -> Self {
        if write {
            Self::Writable
        } else if anon_exclusive {
            Self::ReadableExclusive
        } else {
            Self::Readable
        }
    }

    /// The migration entry for `pfn`, young and dirty as the present entry
    /// it replaces was.
    pub(super) fn leaf(self, pfn: usize, young: bool, dirty: bool) -> bindings::softleaf_t {
        // SAFETY: These only encode a value.
        unsafe {
            let mut e = match self {
                Self::Readable => bindings::make_readable_migration_entry(pfn),
                Self::ReadableExclusive => bindings::make_readable_exclusive_migration_entry(pfn),
                Self::Writable => bindings::make_writable_migration_entry(pfn),
            };
            if young {
                e = bindings::make_migration_entry_young(e);
            }
            if dirty {
                e = bindings::make_migration_entry_dirty(e);
            }
            e
        }
    }
}

/// The device-private entry for `pfn`.
pub(super) fn device_private_leaf(pfn: usize, write: bool) -> bindings::softleaf_t {
    // SAFETY: These only encode a value.
    unsafe {
        if write {
            bindings::make_writable_device_private_entry(pfn)
        } else {
            bindings::make_readable_device_private_entry(pfn)
        }
    }
}

/// Whether `leaf`, taken from a PTE or a PMD, is a migration entry for
/// page `pfn` made from an exclusive mapping (writable or anon-exclusive):
/// no other page table maps that page. A readable entry may have siblings
/// in other page tables (a forked child's).
#[inline(always)]
pub(super) fn is_exclusive_migration_leaf(leaf: bindings::softleaf_t, pfn: usize) -> bool {
    // SAFETY: The predicates only look at the value.
    unsafe {
        // A shared entry is ruled out before its PFN is compared.
        bindings::softleaf_is_migration(leaf)
            && !bindings::softleaf_is_migration_read(leaf)
            && bindings::softleaf_to_pfn(leaf) == pfn
    }
}

/// A non-present entry of either level, decoded.
enum Leaf {
    Migration { pfn: usize, write: bool },
    DevicePrivate { pfn: usize, write: bool },
    DeviceExclusive,
    Other,
}

/// Decodes a software leaf entry taken from a PTE or a PMD.
fn decode_leaf(leaf: bindings::softleaf_t) -> Leaf {
    // SAFETY: The predicates only look at the value.
    unsafe {
        let pfn = bindings::softleaf_to_pfn(leaf);
        if bindings::softleaf_is_migration(leaf) {
            Leaf::Migration {
                pfn,
                write: bindings::softleaf_is_migration_write(leaf),
            }
        } else if bindings::softleaf_is_device_private(leaf) {
            Leaf::DevicePrivate {
                pfn,
                write: bindings::softleaf_is_device_private_write(leaf),
            }
        } else if bindings::softleaf_is_device_exclusive(leaf) {
            Leaf::DeviceExclusive
        } else {
            Leaf::Other
        }
    }
}

/// A PTE value read from a page table or handed over by the caller, such
/// as `vmf->orig_pte`: to decode and compare, never to store.
#[derive(Clone, Copy)]
pub struct PteValue(pub(super) bindings::pte_t);

impl PteValue {
    /// Wraps a PTE value read elsewhere.
    #[inline]
    pub fn from_raw(pte: bindings::pte_t) -> Self {
        PteValue(pte)
    }

    /// Whether both values are the same entry (`pte_same()`).
    #[inline]
    pub fn same(&self, other: &PteValue) -> bool {
        // SAFETY: This only compares values.
        unsafe { bindings::pte_same(self.0, other.0) }
    }

    /// Decodes the value.
    #[inline]
    pub fn entry(&self) -> PteEntry {
        decode_pte(self.0)
    }

    /// Whether the value maps a page (`pte_present()`).
    #[inline]
    pub fn is_present(&self) -> bool {
        // SAFETY: This only looks at the value.
        unsafe { bindings::pte_present(self.0) }
    }

    /// Whether a present value is dirty (`pte_dirty()`).
    #[inline]
    pub fn is_dirty(&self) -> bool {
        // SAFETY: This only looks at the value.
        self.is_present() && unsafe { bindings::pte_dirty(self.0) }
    }
}

/// A PTE taken out of a page table, to be put back where it was or
/// replaced there by the migration entry that stands for it.
///
/// Only [`PteRun`](super::PteRun) makes one, by clearing the entry, and it
/// is neither `Copy` nor `Clone`: safe code can neither forge an entry nor
/// store one twice.
///
/// # Invariants
///
/// `pte` is the entry that was at `addr` in the page tables of `mm` until
/// it was cleared, or the migration entry for the page that entry mapped;
/// nothing else holds it.
pub struct TakenPte {
    pub(super) pte: bindings::pte_t,
    pub(super) mm: *const bindings::mm_struct,
    pub(super) addr: usize,
}

impl TakenPte {
    /// The value, to decode or compare.
    #[inline]
    pub fn value(&self) -> PteValue {
        PteValue(self.pte)
    }

    /// Decodes the value.
    #[inline]
    pub fn entry(&self) -> PteEntry {
        decode_pte(self.pte)
    }

    /// Whether a present value is dirty (`pte_dirty()`).
    #[inline]
    pub fn is_dirty(&self) -> bool {
        self.value().is_dirty()
    }

    /// The address the entry was taken from.
    #[inline]
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// The migration entry of `kind` that stands for this present or
    /// device-private entry, for the page the caller knows it names, and
    /// carrying its young, dirty, soft-dirty and uffd-wp bits as
    /// `migrate_vma_collect_pmd()` does. The entry taken out stays, to be
    /// put back if the migration gives the page up.
    ///
    /// # Safety
    ///
    /// The entry is a present or device-private entry that names page
    /// `pfn`.
    #[inline]
    pub(crate) unsafe fn migration_entry_of_page(
        &self,
        kind: MigrationKind,
        pfn: usize,
    ) -> TakenPte {
        let pte = encode_migration_pte(self.value(), pfn, kind);
        // INVARIANT: the migration entry for the page the taken entry
        // mapped, for the same slot, by the caller's guarantee.
        TakenPte {
            pte,
            mm: self.mm,
            addr: self.addr,
        }
    }
}

/// The migration entry of `kind` for the page a present or device-private
/// PTE value maps, with its young, dirty, soft-dirty and uffd-wp bits;
/// `None` for any other value.
pub(super) fn migration_pte(old: PteValue, kind: MigrationKind) -> Option<bindings::pte_t> {
    let pfn = match old.entry() {
        PteEntry::Present { pfn, .. } | PteEntry::DevicePrivate { pfn, .. } => pfn,
        _ => return None,
    };
    Some(encode_migration_pte(old, pfn, kind))
}

/// The migration entry of `kind` for page `pfn`, which `old` maps.
#[inline]
fn encode_migration_pte(old: PteValue, pfn: usize, kind: MigrationKind) -> bindings::pte_t {
    let kind = match kind {
        MigrationKind::Readable => 0,
        MigrationKind::ReadableExclusive => 1,
        MigrationKind::Writable => 2,
    };
    // SAFETY: This only encodes a value.
    unsafe { bindings::folio_migrate_migration_pte(old.0, pfn, kind) }
}

/// A PMD taken out of a page table, to be put back where it was.
///
/// Only [`PmdGuard`](super::PmdGuard) makes one, by clearing the entry; it
/// is neither `Copy` nor `Clone`.
///
/// # Invariants
///
/// `pmd` is the entry that was at `addr` in the page tables of `mm` until
/// it was cleared; nothing else holds it.
pub struct TakenPmd {
    pub(super) pmd: bindings::pmd_t,
    pub(super) mm: *const bindings::mm_struct,
    pub(super) addr: usize,
}

/// What a PMD holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmdEntry {
    /// Nothing is mapped.
    None,
    /// A PTE table: walk it with [`PteRun`].
    Table,
    /// The huge zero page.
    HugeZero,
    /// A PMD-mapped THP whose head page is `pfn`.
    Huge {
        /// Head page frame number.
        pfn: usize,
        /// Permission and tracking bits.
        bits: EntryBits,
    },
    /// A PMD migration entry for the folio at `pfn`.
    Migration {
        /// Head page frame number.
        pfn: usize,
        /// Whether the mapping was writable.
        write: bool,
    },
    /// A device-private PMD entry for the device folio at `pfn`.
    DevicePrivate {
        /// Head page frame number.
        pfn: usize,
        /// Whether the mapping is writable.
        write: bool,
    },
    /// Any other non-present PMD (swap or a marker).
    Other,
}

/// What a PTE holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PteEntry {
    /// Nothing is mapped.
    None,
    /// The shared zero page.
    Zero,
    /// A present page `pfn`.
    Present {
        /// Page frame number.
        pfn: usize,
        /// Permission and tracking bits.
        bits: EntryBits,
    },
    /// A migration entry for the page `pfn`.
    Migration {
        /// Page frame number.
        pfn: usize,
        /// Whether the mapping was writable.
        write: bool,
    },
    /// A device-private entry for the device page `pfn`.
    DevicePrivate {
        /// Page frame number.
        pfn: usize,
        /// Whether the mapping is writable.
        write: bool,
    },
    /// A device-exclusive entry for the page `pfn`.
    DeviceExclusive {
        /// Page frame number.
        pfn: usize,
    },
    /// Any other non-present PTE (swap or a marker).
    Other,
}

/// Decodes a PMD value.
pub(super) fn decode_pmd(pmd: bindings::pmd_t) -> PmdEntry {
    // SAFETY: The predicates only look at the value.
    unsafe {
        if bindings::pmd_none(pmd) {
            return PmdEntry::None;
        }
        if bindings::pmd_present(pmd) {
            if !bindings::pmd_trans_huge(pmd) {
                return PmdEntry::Table;
            }
            if bindings::is_huge_zero_pmd(pmd) {
                return PmdEntry::HugeZero;
            }
            return PmdEntry::Huge {
                pfn: bindings::pmd_pfn(pmd),
                bits: EntryBits {
                    write: bindings::pmd_write(pmd),
                    soft_dirty: bindings::pmd_soft_dirty(pmd),
                    uffd_wp: bindings::pmd_uffd(pmd),
                },
            };
        }
        match decode_leaf(bindings::softleaf_from_pmd(pmd)) {
            Leaf::Migration { pfn, write } => PmdEntry::Migration { pfn, write },
            Leaf::DevicePrivate { pfn, write } => PmdEntry::DevicePrivate { pfn, write },
            // Device-exclusive entries exist at PTE level only.
            Leaf::DeviceExclusive | Leaf::Other => PmdEntry::Other,
        }
    }
}

// The bits of `folio_migrate_pte_decode()` (rust/helpers/folio_migrate.c).
const PTE_NONE: u32 = 1 << 0;
const PTE_PRESENT: u32 = 1 << 1;
const PTE_ZERO: u32 = 1 << 2;
const PTE_WRITE: u32 = 1 << 3;
const PTE_SOFT_DIRTY: u32 = 1 << 4;
const PTE_UFFD: u32 = 1 << 5;
const PTE_MIGRATION: u32 = 1 << 6;
const PTE_DEVICE_PRIVATE: u32 = 1 << 7;
const PTE_DEVICE_EXCLUSIVE: u32 = 1 << 8;

/// Decodes a PTE value in one helper call: collection decodes every PTE of
/// the range.
#[inline]
pub(super) fn decode_pte(pte: bindings::pte_t) -> PteEntry {
    let mut pfn = 0;
    // SAFETY: This only looks at the value and writes `pfn`.
    let bits = unsafe { bindings::folio_migrate_pte_decode(pte, &mut pfn) };
    let write = bits & PTE_WRITE != 0;
    if bits & PTE_NONE != 0 {
        PteEntry::None
    } else if bits & PTE_ZERO != 0 {
        PteEntry::Zero
    } else if bits & PTE_PRESENT != 0 {
        PteEntry::Present {
            pfn,
            bits: EntryBits {
                write,
                soft_dirty: bits & PTE_SOFT_DIRTY != 0,
                uffd_wp: bits & PTE_UFFD != 0,
            },
        }
    } else if bits & PTE_MIGRATION != 0 {
        PteEntry::Migration { pfn, write }
    } else if bits & PTE_DEVICE_PRIVATE != 0 {
        PteEntry::DevicePrivate { pfn, write }
    } else if bits & PTE_DEVICE_EXCLUSIVE != 0 {
        PteEntry::DeviceExclusive { pfn }
    } else {
        PteEntry::Other
    }
}
