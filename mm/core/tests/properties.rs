// SPDX-License-Identifier: GPL-2.0

//! Properties of migrate PFNs, folio arrays and extents, checked against
//! small reference models written independently of the crate.

use migrate_core::folio_array::validate;
use migrate_core::pfn::{
    MIGRATE_PFN_COMPOUND, MIGRATE_PFN_MAX_PFN, MIGRATE_PFN_MIGRATE, MIGRATE_PFN_ORDER_MAX,
    MIGRATE_PFN_VALID, MIGRATE_PFN_WRITE, PMD_ORDER,
};
use migrate_core::{Error, Extent, FolioArray, FolioArrayMut, MigratePfn};
use proptest::prelude::*;

/// Decoded fields of a slot: valid, migrate, write, PFN, order.
type Fields = (bool, bool, bool, u64, u32);

/// The encoding rules, read off the bit layout one field at a time.
fn model_decode(raw: u64) -> Option<Fields> {
    let bit = |n: u32| raw >> n & 1 == 1;
    if bit(2) || bit(5) || bit(61) || bit(62) || bit(63) {
        return None;
    }
    let field = ((raw >> 56) & 0x1f) as u32;
    let order = if bit(4) {
        // COMPOUND: the PMD order, with the field filled or (7.3) empty.
        if field != 0 && field != 9 {
            return None;
        }
        9
    } else {
        if field == 9 || field > 18 {
            return None;
        }
        field
    };
    let pfn = (raw >> 6) & ((1u64 << 50) - 1);
    let (valid, migrate, write) = (bit(0), bit(1), bit(3));
    if !valid && (pfn != 0 || write) {
        return None;
    }
    if valid && pfn % (1u64 << order) != 0 {
        return None;
    }
    Some((valid, migrate, write, pfn, order))
}

fn fields(m: MigratePfn) -> Fields {
    (
        m.is_valid(),
        m.is_migrate(),
        m.is_write(),
        m.pfn().unwrap_or(0),
        m.order(),
    )
}

/// Well-formedness, stated as a whole rather than as a left-to-right scan:
/// every non-zero slot decodes, is aligned, fits, and lies inside no other
/// non-zero slot's folio.
fn model_well_formed(slots: &[u64], base: u64) -> bool {
    let mut heads = Vec::new();
    for (i, &raw) in slots.iter().enumerate() {
        if raw == 0 {
            continue;
        }
        let Some((.., order)) = model_decode(raw) else {
            return false;
        };
        let nr = 1usize << order;
        if (base + i as u64) % nr as u64 != 0 || i + nr > slots.len() {
            return false;
        }
        heads.push((i, nr));
    }
    heads
        .iter()
        .all(|&(j, _)| !heads.iter().any(|&(h, nr)| h < j && j < h + nr))
}

/// One step of building an array: a kind, an order wish, a PFN seed, flags.
type Step = (u8, u8, u64, u8);

/// Builds a well-formed array of `len` slots based at page `base` from
/// `steps`, placing folios where their order allows.
fn build(len: usize, base: u64, steps: &[Step]) -> Vec<u64> {
    let mut slots = vec![0u64; len];
    let mut i = 0;
    for &(kind, order_wish, pfn_seed, flags) in steps.iter().cycle().take(len.max(1) * 2) {
        if i >= len {
            break;
        }
        if kind % 4 == 0 {
            i += 1;
            continue;
        }
        // Mostly small orders, sometimes the PMD order or above.
        let mut order = match order_wish % 16 {
            w @ 0..=9 => u32::from(w),
            10..=13 => PMD_ORDER,
            _ => 10 + u32::from(order_wish) % (MIGRATE_PFN_ORDER_MAX - 9),
        };
        while order > 0 && ((base + i as u64) % (1u64 << order) != 0 || i + (1 << order) > len) {
            order -= 1;
        }
        let mpfn = if flags & 1 == 0 {
            let pfn = (pfn_seed % (1 << 40)) & !((1u64 << order) - 1);
            let m = MigratePfn::new(pfn, order).unwrap();
            let m = if flags & 2 != 0 { m.with_migrate() } else { m };
            if flags & 4 != 0 {
                m.with_write().unwrap()
            } else {
                m
            }
        } else {
            MigratePfn::hole(order).unwrap()
        };
        slots[i] = mpfn.raw();
        i += 1 << order;
    }
    slots
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(any::<Step>(), 1..64)
}

/// A well-formed array with its base.
fn well_formed() -> impl Strategy<Value = (Vec<u64>, u64)> {
    let base = prop_oneof![Just(0u64), 0u64..1024];
    (0usize..1200, base, steps()).prop_map(|(len, base, steps)| {
        let slots = build(len, base, &steps);
        (slots, base)
    })
}

/// An array of physically contiguous runs, to give extents something to merge.
fn contiguous() -> impl Strategy<Value = Vec<u64>> {
    (0usize..600, steps()).prop_map(|(len, steps)| {
        let mut slots = build(len, 0, &steps);
        // Make most valid heads follow the previous one in memory.
        let mut next_pfn = None::<u64>;
        for (i, step) in (0..slots.len()).zip(steps.iter().cycle()) {
            let Ok(m) = MigratePfn::from_raw(slots[i]) else {
                continue;
            };
            if !m.is_valid() {
                continue;
            }
            let nr = m.nr_pages() as u64;
            let pfn = match next_pfn {
                Some(p) if step.0 % 3 != 0 && p % nr == 0 => p,
                _ => m.pfn().unwrap(),
            };
            let mut n = MigratePfn::new(pfn, m.order()).unwrap();
            if m.is_migrate() {
                n = n.with_migrate();
            }
            slots[i] = n.raw();
            next_pfn = Some(pfn + nr);
        }
        slots
    })
}

/// A raw value that is often close to a valid slot.
fn raw_slot() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        (
            0u64..=MIGRATE_PFN_MAX_PFN,
            0u64..32,
            0u64..64,
            prop::sample::select(vec![0u64, 1 << 2, 1 << 5, 1 << 61, 1 << 63])
        )
            .prop_map(|(pfn, order, flags, noise)| (pfn << 6) | (order << 56) | flags | noise),
        (0u64..(1 << 20), 0u32..=MIGRATE_PFN_ORDER_MAX)
            .prop_map(|(pfn, order)| (pfn << order << 6) | MIGRATE_PFN_VALID),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_decode_round_trip(
        pfn in 0u64..=MIGRATE_PFN_MAX_PFN,
        order in 0u32..=MIGRATE_PFN_ORDER_MAX,
        migrate: bool,
        write: bool,
    ) {
        let pfn = pfn & !((1u64 << order) - 1);
        let mut m = MigratePfn::new(pfn, order).unwrap();
        if migrate {
            m = m.with_migrate();
        }
        if write {
            m = m.with_write().unwrap();
        }
        let back = MigratePfn::from_raw(m.raw()).unwrap();
        prop_assert_eq!(back, m);
        prop_assert_eq!(fields(back), (true, migrate, write, pfn, order));
        prop_assert_eq!(back.nr_pages(), 1usize << order);
        prop_assert_eq!(back.is_compound(), order == PMD_ORDER);
        // 7.3's bits where 7.3 has an encoding, and the order beside them.
        let flags = MIGRATE_PFN_VALID
            | if migrate { MIGRATE_PFN_MIGRATE } else { 0 }
            | if write { MIGRATE_PFN_WRITE } else { 0 };
        let compound = if order == PMD_ORDER { MIGRATE_PFN_COMPOUND } else { 0 };
        prop_assert_eq!(m.raw(), (pfn << 6) | flags | compound | (u64::from(order) << 56));
        // A 7.3 producer's PMD slot (no order field) reads the same.
        if order == PMD_ORDER {
            let legacy = MigratePfn::from_raw((pfn << 6) | flags | compound).unwrap();
            prop_assert_eq!(fields(legacy), fields(m));
        }
    }

    #[test]
    fn misaligned_or_oversized_inputs_are_errors(
        pfn in 0u64..u64::MAX,
        order in 0u32..40,
    ) {
        let r = MigratePfn::new(pfn, order);
        let expect = if order > MIGRATE_PFN_ORDER_MAX {
            Err(Error::OrderTooLarge)
        } else if pfn > MIGRATE_PFN_MAX_PFN {
            Err(Error::PfnTooLarge)
        } else if pfn % (1u64 << order) != 0 {
            Err(Error::Misaligned)
        } else {
            Ok(())
        };
        prop_assert_eq!(r.map(|_| ()), expect);
    }

    #[test]
    fn decoding_accepts_exactly_the_model(raw in raw_slot()) {
        match (MigratePfn::from_raw(raw), model_decode(raw)) {
            (Ok(m), Some(f)) => {
                prop_assert_eq!(m.raw(), raw);
                prop_assert_eq!(fields(m), f);
                // The encoding is unique: rebuilding gives the same bits.
                let (valid, migrate, write, pfn, order) = f;
                let mut n = if valid {
                    MigratePfn::new(pfn, order).unwrap()
                } else {
                    MigratePfn::hole(order).unwrap().without_migrate()
                };
                if migrate {
                    n = n.with_migrate();
                }
                if write {
                    n = n.with_write().unwrap();
                }
                prop_assert_eq!(n.raw(), raw);
            }
            (Err(_), None) => {}
            (r, f) => prop_assert!(false, "decode {:#x}: {:?} vs model {:?}", raw, r, f),
        }
    }

    #[test]
    fn built_arrays_are_well_formed((slots, base) in well_formed()) {
        prop_assert!(model_well_formed(&slots, base));
        prop_assert_eq!(validate(&slots, base), Ok(()));
    }

    #[test]
    fn iterator_covers_every_populated_slot_once((slots, base) in well_formed()) {
        let a = FolioArray::with_base(&slots, base).unwrap();
        let folios: Vec<_> = a.iter().collect();
        // Exactly the non-zero slots, in order, each once.
        let populated: Vec<_> = slots
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != 0)
            .map(|(i, &s)| (i, s))
            .collect();
        let seen: Vec<_> = folios.iter().map(|(i, m)| (*i, m.raw())).collect();
        prop_assert_eq!(&seen, &populated);
        // The folios' slots are disjoint and every slot is covered by at most
        // one folio; head_of agrees with that cover.
        let mut cover = vec![None; slots.len()];
        for &(i, m) in &folios {
            for c in &mut cover[i..i + m.nr_pages()] {
                prop_assert!(c.is_none());
                *c = Some(i);
            }
        }
        for (j, c) in cover.iter().enumerate() {
            prop_assert_eq!(a.head_of(j).map(|(h, _)| h), *c);
        }
        prop_assert_eq!(a.folio_count(), populated.len());
    }

    #[test]
    fn extents_partition_the_valid_heads(slots in contiguous(), flags in 0u64..4) {
        let a = FolioArray::new(&slots).unwrap();
        let flags = flags & MIGRATE_PFN_MIGRATE;
        let extents: Vec<Extent> = a.extents_with(flags).collect();
        let heads: Vec<_> = a
            .iter()
            .filter(|(_, m)| m.is_valid() && m.raw() & flags == flags)
            .collect();
        // Walk the heads through the extents: each head in exactly one, in
        // order, each extent contiguous in the array and in memory.
        let mut k = 0;
        for e in &extents {
            prop_assert!(e.folios > 0);
            let (mut index, mut pfn, mut pages) = (e.index, e.pfn, 0);
            for _ in 0..e.folios {
                let (i, m) = heads[k];
                prop_assert_eq!(i, index);
                prop_assert_eq!(m.pfn(), Some(pfn));
                index += m.nr_pages();
                pfn += m.nr_pages() as u64;
                pages += m.nr_pages();
                k += 1;
            }
            prop_assert_eq!(pages, e.npages);
        }
        prop_assert_eq!(k, heads.len());
        // Maximal: no two neighbouring extents could be merged.
        for w in extents.windows(2) {
            let (x, y) = (w[0], w[1]);
            let adjacent = x.end_index() == y.index && x.end_pfn() == y.pfn;
            let between = (x.end_index()..y.index).any(|i| slots[i] != 0);
            prop_assert!(!adjacent || between);
        }
    }

    #[test]
    fn validation_accepts_exactly_the_well_formed_arrays(
        (mut slots, base) in well_formed(),
        corruptions in prop::collection::vec((any::<prop::sample::Index>(), raw_slot(), 0u8..5), 0..4),
        shift in prop_oneof![Just(0u64), 1u64..8],
    ) {
        // Reading the array from another base page misaligns its heads.
        let base = base + shift;
        for (at, raw, how) in corruptions {
            if slots.is_empty() {
                break;
            }
            let i = at.index(slots.len());
            slots[i] = match how {
                0 => raw,
                1 => 0,
                2 => slots[i] ^ (1u64 << (raw % 64)),
                // A valid slot of some order dropped anywhere.
                3 => MigratePfn::new(0, (raw % 19) as u32).unwrap().raw(),
                // A small folio, often misaligned, over often empty slots.
                _ => MigratePfn::new(0, 1 + (raw % 3) as u32).unwrap().raw(),
            };
        }
        let result = validate(&slots, base);
        prop_assert_eq!(result.is_ok(), model_well_formed(&slots, base));
        // The error names the first malformed slot: everything before the head
        // it is about is well formed, and the slot it names is not 0.
        match result {
            Ok(()) => {}
            Err(
                Error::BadEntry { index }
                | Error::HeadMisaligned { index }
                | Error::HeadPastEnd { index },
            ) => {
                prop_assert!(slots[index] != 0);
                prop_assert!(model_well_formed(&slots[..index], base));
            }
            Err(Error::TailNotEmpty { index }) => {
                prop_assert!(slots[index] != 0);
                let before = validate(&slots[..index], base);
                let Err(Error::HeadPastEnd { index: head }) = before else {
                    return Err(TestCaseError::fail(format!("prefix: {before:?}")));
                };
                prop_assert!(model_well_formed(&slots[..head], base));
            }
            Err(e) => prop_assert!(false, "unexpected {:?}", e),
        }
    }

    #[test]
    fn mutations_keep_arrays_well_formed(
        (mut slots, base) in well_formed(),
        ops in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>(), 0u32..12, 0u8..4), 0..16),
    ) {
        let len = slots.len();
        let mut a = FolioArrayMut::with_base(&mut slots, base).unwrap();
        for (at, pfn, order, op) in ops {
            if len == 0 {
                break;
            }
            let i = at.index(len);
            let pfn = (pfn % (1 << 40)) & !((1u64 << order) - 1);
            let _ = match op {
                0 => a.set(i, MigratePfn::new(pfn, order).unwrap()).map(|_| ()),
                1 => a.clear(i).map(|_| ()),
                2 => a.split(i),
                _ => a.update(i, MigratePfn::without_migrate).map(|_| ()),
            };
            prop_assert!(model_well_formed(a.as_array().slots(), base));
        }
    }
}
