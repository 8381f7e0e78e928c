// SPDX-License-Identifier: GPL-2.0

//! The collection rules against 7.3's decisions, case by case.

use super::super::pfn::{
    MIGRATE_PFN_COMPOUND, MIGRATE_PFN_MIGRATE, MIGRATE_PFN_VALID, MIGRATE_PFN_WRITE,
};
use super::*;

/// A PMD-aligned address.
const A: u64 = 0x7f00_0000_0000;
const PMD_END: u64 = A + PMD_SIZE;

fn args(flags: SelectFlags) -> CollectArgs {
    CollectArgs::new(flags)
}

fn sys() -> CollectArgs {
    args(SelectFlags::SYSTEM)
}

fn sys_thp() -> CollectArgs {
    args(SelectFlags::SYSTEM | SelectFlags::COMPOUND)
}

fn dev_thp() -> CollectArgs {
    args(SelectFlags::DEVICE_PRIVATE | SelectFlags::COMPOUND)
}

const TRYLOCK_PAGE: Source = Source::Page {
    write: true,
    lock: LockAction::Trylock,
};

fn thp(write: bool) -> PmdEntry {
    PmdEntry::TransHuge {
        huge_zero: false,
        write,
        fault_folio: false,
    }
}

fn present(page: PageInfo) -> PteEntry {
    PteEntry::Present {
        page,
        kind: PageKind::System,
        write: true,
    }
}

// ---- migrate_vma_collect_skip / migrate_vma_collect_hole ----

#[test]
fn skip_covers_the_range() {
    // mm/migrate_device.c:28-31 (migrate_vma_collect_skip)
    assert_eq!(
        migrate_vma_collect_skip(A, A + 3 * PAGE_SIZE),
        Ok(Decision::Skip { slots: 3 })
    );
}

#[test]
fn hole_in_file_vma_is_skipped() {
    // mm/migrate_device.c:45-46 (migrate_vma_collect_hole)
    let mut a = sys_thp();
    a.anonymous = false;
    assert_eq!(
        migrate_vma_collect_hole(&a, A, PMD_END),
        Ok(Decision::Skip { slots: 512 })
    );
}

#[test]
fn aligned_hole_with_compound_is_one_pmd_hole() {
    // mm/migrate_device.c:48-62 (migrate_vma_collect_hole)
    let d = migrate_vma_collect_hole(&sys_thp(), A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectWhole {
            order: PMD_ORDER,
            slots: 512,
            source: Source::Hole
        }
    );
    assert_eq!(d.collected(), 1);
    let mut out = [u64::MAX; 512];
    assert_eq!(d.fill(&mut out, 0), Ok(512));
    assert_eq!(
        out[0],
        MIGRATE_PFN_MIGRATE | MIGRATE_PFN_COMPOUND | (9 << 56)
    );
    assert!(out[1..].iter().all(|&s| s == 0));
}

#[test]
fn multi_pmd_hole_collects_the_first_pmd_only() {
    // mm/migrate_device.c:52-62: one COMPOUND head, the rest skipped.
    let d = migrate_vma_collect_hole(&sys_thp(), A, A + 2 * PMD_SIZE).unwrap();
    assert_eq!(
        d,
        Decision::CollectWhole {
            order: PMD_ORDER,
            slots: 1024,
            source: Source::Hole
        }
    );
}

#[test]
fn hole_without_compound_is_per_page() {
    // mm/migrate_device.c:65-70 (migrate_vma_collect_hole)
    let d = migrate_vma_collect_hole(&sys(), A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectSmall {
            slots: 512,
            source: Source::Hole
        }
    );
    assert_eq!(d.collected(), 512);
    let mut out = [0u64; 512];
    assert_eq!(d.fill(&mut out, 0), Ok(512));
    assert!(out.iter().all(|&s| s == MIGRATE_PFN_MIGRATE));
}

#[test]
fn unaligned_hole_with_compound_is_per_page() {
    // mm/migrate_device.c:50-51 (IS_ALIGNED checks fail) -> :65
    let d = migrate_vma_collect_hole(&sys_thp(), A + PAGE_SIZE, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectSmall {
            slots: 511,
            source: Source::Hole
        }
    );
}

#[test]
fn hole_without_thp_migration_is_per_page() {
    // mm/migrate_device.c:48 (thp_migration_supported())
    let mut a = sys_thp();
    a.thp_migration = false;
    assert!(matches!(
        migrate_vma_collect_hole(&a, A, PMD_END),
        Ok(Decision::CollectSmall { slots: 512, .. })
    ));
}

// ---- migrate_vma_collect_huge_pmd ----

#[test]
fn pmd_none_is_a_hole() {
    // mm/migrate_device.c:149-151
    assert_eq!(
        migrate_vma_collect_huge_pmd(&sys_thp(), &PmdEntry::None, A, PMD_END),
        migrate_vma_collect_hole(&sys_thp(), A, PMD_END)
    );
}

#[test]
fn pmd_thp_without_select_system_is_skipped() {
    // mm/migrate_device.c:155-157
    assert_eq!(
        migrate_vma_collect_huge_pmd(&dev_thp(), &thp(true), A, PMD_END),
        Ok(Decision::Skip { slots: 512 })
    );
}

#[test]
fn pmd_huge_zero_is_a_hole() {
    // mm/migrate_device.c:161-163
    let zero = PmdEntry::TransHuge {
        huge_zero: true,
        write: false,
        fault_folio: false,
    };
    assert_eq!(
        migrate_vma_collect_huge_pmd(&sys_thp(), &zero, A, PMD_END),
        Ok(Decision::CollectWhole {
            order: PMD_ORDER,
            slots: 512,
            source: Source::Hole
        })
    );
}

#[test]
fn pmd_thp_aligned_with_compound_is_collected_whole() {
    // mm/migrate_device.c:196-225, slot value :210-212
    let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectWhole {
            order: PMD_ORDER,
            slots: 512,
            source: TRYLOCK_PAGE
        }
    );
    let mut out = [1u64; 512];
    assert_eq!(d.fill(&mut out, 0x4200), Ok(512));
    assert_eq!(
        out[0],
        (0x4200 << 6)
            | (9 << 56)
            | MIGRATE_PFN_VALID
            | MIGRATE_PFN_MIGRATE
            | MIGRATE_PFN_WRITE
            | MIGRATE_PFN_COMPOUND
    );
    assert!(out[1..].iter().all(|&s| s == 0));
    // The head PFN of a PMD folio is PMD aligned.
    assert_eq!(d.fill(&mut out, 0x4201), Err(Error::Misaligned));
}

#[test]
fn pmd_thp_read_only_has_no_write() {
    // mm/migrate_device.c:165-166 (pmd_write)
    let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(false), A, PMD_END).unwrap();
    let mut out = [0u64; 512];
    d.fill(&mut out, 0x200).unwrap();
    assert_eq!(out[0] & MIGRATE_PFN_WRITE, 0);
}

#[test]
fn pmd_trylock_failure_skips_the_range() {
    // mm/migrate_device.c:190-193
    let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END).unwrap();
    assert_eq!(
        d.on_failure(Failure::Trylock),
        Some(Decision::Skip { slots: 512 })
    );
}

#[test]
fn pmd_fault_folio_is_not_trylocked() {
    // mm/migrate_device.c:190 (folio != fault_folio && ...)
    let e = PmdEntry::DevicePrivate {
        owner_matches: true,
        write: true,
        fault_folio: true,
    };
    let d = migrate_vma_collect_huge_pmd(&dev_thp(), &e, A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectWhole {
            order: PMD_ORDER,
            slots: 512,
            source: Source::Page {
                write: true,
                lock: LockAction::Held
            }
        }
    );
    assert_eq!(d.on_failure(Failure::Trylock), None);
}

#[test]
fn pmd_migration_entry_failure_falls_back_to_split() {
    // mm/migrate_device.c:215-221 -> fallback :228
    let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END).unwrap();
    assert_eq!(
        d.on_failure(Failure::PmdMigrationEntry),
        Some(Decision::SplitFirst {
            lock: LockAction::Trylock,
            slots: 512
        })
    );
}

#[test]
fn pmd_thp_without_compound_is_split() {
    // mm/migrate_device.c:196-199 fail -> fallback :228-242
    let d = migrate_vma_collect_huge_pmd(&sys(), &thp(true), A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::SplitFirst {
            lock: LockAction::Trylock,
            slots: 512
        }
    );
    // mm/migrate_device.c:236-237: a failed split skips the range.
    assert_eq!(
        d.on_failure(Failure::Split),
        Some(Decision::Skip { slots: 512 })
    );
    assert_eq!(d.slots(), None);
    assert_eq!(d.fill(&mut [], 0), Ok(0));
}

#[test]
fn pmd_thp_partial_range_is_split() {
    // mm/migrate_device.c:198-199 (IS_ALIGNED(start/end, HPAGE_PMD_SIZE))
    let d = migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A + PAGE_SIZE, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::SplitFirst {
            lock: LockAction::Trylock,
            slots: 511
        }
    );
}

#[test]
fn pmd_without_thp_migration_is_split() {
    // mm/migrate_device.c:196 (thp_migration_supported())
    let mut a = sys_thp();
    a.thp_migration = false;
    assert!(matches!(
        migrate_vma_collect_huge_pmd(&a, &thp(true), A, PMD_END),
        Ok(Decision::SplitFirst { .. })
    ));
}

#[test]
fn pmd_migration_entry_is_skipped() {
    // mm/migrate_device.c:170-173 (!softleaf_is_device_private)
    assert_eq!(
        migrate_vma_collect_huge_pmd(&sys_thp(), &PmdEntry::Migration, A, PMD_END),
        Ok(Decision::Skip { slots: 512 })
    );
}

#[test]
fn pmd_device_private_needs_the_flag() {
    // mm/migrate_device.c:170-173 (!MIGRATE_VMA_SELECT_DEVICE_PRIVATE)
    let e = PmdEntry::DevicePrivate {
        owner_matches: true,
        write: false,
        fault_folio: false,
    };
    assert_eq!(
        migrate_vma_collect_huge_pmd(&sys_thp(), &e, A, PMD_END),
        Ok(Decision::Skip { slots: 512 })
    );
}

#[test]
fn pmd_device_private_foreign_owner_is_skipped() {
    // mm/migrate_device.c:177-180
    let e = PmdEntry::DevicePrivate {
        owner_matches: false,
        write: false,
        fault_folio: false,
    };
    assert_eq!(
        migrate_vma_collect_huge_pmd(&dev_thp(), &e, A, PMD_END),
        Ok(Decision::Skip { slots: 512 })
    );
}

#[test]
fn pmd_device_private_owned_is_collected_whole() {
    // mm/migrate_device.c:176-183, :196-225
    let e = PmdEntry::DevicePrivate {
        owner_matches: true,
        write: false,
        fault_folio: false,
    };
    assert_eq!(
        migrate_vma_collect_huge_pmd(&dev_thp(), &e, A, PMD_END),
        Ok(Decision::CollectWhole {
            order: PMD_ORDER,
            slots: 512,
            source: Source::Page {
                write: false,
                lock: LockAction::Trylock
            }
        })
    );
}

#[test]
fn pmd_table_under_huge_pmd_is_retry() {
    // mm/migrate_device.c:184-186 (-EAGAIN), :263-264 (goto again)
    assert_eq!(
        migrate_vma_collect_huge_pmd(&sys_thp(), &PmdEntry::Table, A, PMD_END),
        Ok(Decision::Retry)
    );
}

#[test]
fn collect_pmd_walks_page_tables() {
    // mm/migrate_device.c:260-269 (migrate_vma_collect_pmd)
    assert_eq!(
        migrate_vma_collect_pmd(&sys_thp(), &PmdEntry::Table, A, PMD_END),
        Ok(Decision::WalkPtes)
    );
    assert_eq!(
        migrate_vma_collect_pmd(&sys_thp(), &thp(true), A, PMD_END),
        migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, PMD_END)
    );
}

#[test]
fn pmd_ranges_must_stay_in_one_pmd() {
    assert_eq!(
        migrate_vma_collect_huge_pmd(&sys_thp(), &thp(true), A, A + 2 * PMD_SIZE),
        Err(Error::BadRange)
    );
    assert_eq!(
        migrate_vma_collect_pmd(&sys_thp(), &PmdEntry::Table, A, A),
        Err(Error::BadRange)
    );
    assert_eq!(migrate_vma_collect_skip(A, A + 1), Err(Error::BadRange));
}

// ---- migrate_vma_collect_pmd, PTE loop ----

#[test]
fn pte_none_is_a_hole_in_anonymous_vma() {
    // mm/migrate_device.c:285-291
    let d = migrate_vma_collect_pte(&sys(), &PteEntry::None, A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectSmall {
            slots: 1,
            source: Source::Hole
        }
    );
    assert_eq!(d.collected(), 1);
    let mut a = sys();
    a.anonymous = false;
    assert_eq!(
        migrate_vma_collect_pte(&a, &PteEntry::None, A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
}

#[test]
fn pte_swap_and_migration_entries_are_skipped() {
    // mm/migrate_device.c:299-301
    for e in [PteEntry::Swap, PteEntry::Migration] {
        assert_eq!(
            migrate_vma_collect_pte(&sys(), &e, A, PMD_END),
            Ok(Decision::Skip { slots: 1 })
        );
    }
}

#[test]
fn pte_device_private_needs_flag_and_owner() {
    // mm/migrate_device.c:305-308
    let e = |owner_matches| PteEntry::DevicePrivate {
        page: PageInfo::small(),
        owner_matches,
        write: false,
    };
    let dp = args(SelectFlags::DEVICE_PRIVATE);
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &e(true), A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
    assert_eq!(
        migrate_vma_collect_pte(&dp, &e(false), A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
    // mm/migrate_device.c:332-335
    assert_eq!(
        migrate_vma_collect_pte(&dp, &e(true), A, PMD_END),
        Ok(Decision::CollectSmall {
            slots: 1,
            source: Source::Page {
                write: false,
                lock: LockAction::Trylock
            }
        })
    );
}

#[test]
fn pte_device_private_large_folio_is_split() {
    // mm/migrate_device.c:311-330 (7.3 caller: no mTHP order accepted)
    let e = PteEntry::DevicePrivate {
        page: PageInfo::head(4),
        owner_matches: true,
        write: true,
    };
    let d = migrate_vma_collect_pte(&dev_thp(), &e, A + 16 * PAGE_SIZE, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::SplitFirst {
            lock: LockAction::Lock,
            slots: 496
        }
    );
    // mm/migrate_device.c:322-326: a failed split skips to the end.
    assert_eq!(
        d.on_failure(Failure::Split),
        Some(Decision::Skip { slots: 496 })
    );
    // The sleeping lock of the split cannot fail as a trylock.
    assert_eq!(d.on_failure(Failure::Trylock), None);
}

#[test]
fn pte_zero_page_is_a_hole_with_select_system() {
    // mm/migrate_device.c:338-342
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &PteEntry::Zero, A, PMD_END),
        Ok(Decision::CollectSmall {
            slots: 1,
            source: Source::Hole
        })
    );
    // Without SELECT_SYSTEM vm_normal_page() is NULL: skipped at :381.
    assert_eq!(
        migrate_vma_collect_pte(&dev_thp(), &PteEntry::Zero, A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
}

#[test]
fn pte_system_page_without_select_system_is_skipped() {
    // mm/migrate_device.c:344-347
    assert_eq!(
        migrate_vma_collect_pte(&dev_thp(), &present(PageInfo::small()), A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
}

#[test]
fn pte_device_coherent_needs_flag_and_owner() {
    // mm/migrate_device.c:348-355
    let e = |owner_matches| PteEntry::Present {
        page: PageInfo::small(),
        kind: PageKind::DeviceCoherent { owner_matches },
        write: false,
    };
    let coh = args(SelectFlags::DEVICE_COHERENT);
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &e(true), A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
    assert_eq!(
        migrate_vma_collect_pte(&coh, &e(false), A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
    assert!(matches!(
        migrate_vma_collect_pte(&coh, &e(true), A, PMD_END),
        Ok(Decision::CollectSmall { slots: 1, .. })
    ));
}

#[test]
fn pte_other_zone_device_page_is_not_filtered() {
    // mm/migrate_device.c:345-355: neither branch filters it.
    let e = PteEntry::Present {
        page: PageInfo::small(),
        kind: PageKind::OtherZoneDevice,
        write: false,
    };
    assert!(matches!(
        migrate_vma_collect_pte(&args(SelectFlags::NONE), &e, A, PMD_END),
        Ok(Decision::CollectSmall { slots: 1, .. })
    ));
}

#[test]
fn pte_system_large_folio_is_split() {
    // mm/migrate_device.c:357-376 (7.3 caller)
    let d = migrate_vma_collect_pte(&sys_thp(), &present(PageInfo::head(4)), A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::SplitFirst {
            lock: LockAction::Lock,
            slots: 512
        }
    );
}

#[test]
fn pte_fault_folio_split_takes_no_lock() {
    // mm/migrate_device.c:92-93 (migrate_vma_split_folio)
    let mut page = PageInfo::head(2);
    page.fault_folio = true;
    let e = PteEntry::DevicePrivate {
        page,
        owner_matches: true,
        write: false,
    };
    assert_eq!(
        migrate_vma_collect_pte(&dev_thp(), &e, A, PMD_END),
        Ok(Decision::SplitFirst {
            lock: LockAction::Held,
            slots: 512
        })
    );
}

#[test]
fn pte_without_page_or_mapping_is_skipped() {
    // mm/migrate_device.c:381-384
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &PteEntry::Special, A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
    let mut page = PageInfo::small();
    page.has_mapping = false;
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &present(page), A, PMD_END),
        Ok(Decision::Skip { slots: 1 })
    );
}

#[test]
fn pte_small_page_is_collected() {
    // mm/migrate_device.c:377-378, :410
    let d = migrate_vma_collect_pte(&sys(), &present(PageInfo::small()), A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectSmall {
            slots: 1,
            source: TRYLOCK_PAGE
        }
    );
    let mut out = [0u64; 1];
    assert_eq!(d.fill(&mut out, 0x1234), Ok(1));
    assert_eq!(
        out[0],
        (0x1234 << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE
    );
    // mm/migrate_device.c:479-481: a failed trylock leaves the slot 0.
    assert_eq!(
        d.on_failure(Failure::Trylock),
        Some(Decision::Skip { slots: 1 })
    );
    // mm/migrate_device.c:421-427: a failed unmap too.
    assert_eq!(
        d.on_failure(Failure::Unmap),
        Some(Decision::Skip { slots: 1 })
    );
    assert_eq!(d.on_failure(Failure::Split), None);
    assert_eq!(d.on_failure(Failure::PmdMigrationEntry), None);
}

#[test]
fn pte_fault_folio_is_not_trylocked() {
    // mm/migrate_device.c:410 (fault_folio == folio || folio_trylock)
    let mut page = PageInfo::small();
    page.fault_folio = true;
    let e = PteEntry::DevicePrivate {
        page,
        owner_matches: true,
        write: true,
    };
    let d = migrate_vma_collect_pte(&dev_thp(), &e, A, PMD_END).unwrap();
    assert_eq!(
        d,
        Decision::CollectSmall {
            slots: 1,
            source: Source::Page {
                write: true,
                lock: LockAction::Held
            }
        }
    );
    assert_eq!(d.on_failure(Failure::Trylock), None);
}

// ---- mTHP extension ----

fn mthp_args(order: u32) -> CollectArgs {
    let mut a = sys();
    a.orders = Orders::NONE.with(order).unwrap();
    a
}

#[test]
fn mthp_accepted_and_aligned_is_collected_whole() {
    let d = migrate_vma_collect_pte(
        &mthp_args(4),
        &present(PageInfo::head(4)),
        A + 16 * PAGE_SIZE,
        PMD_END,
    )
    .unwrap();
    assert_eq!(
        d,
        Decision::CollectWhole {
            order: 4,
            slots: 16,
            source: TRYLOCK_PAGE
        }
    );
    let mut out = [9u64; 16];
    assert_eq!(d.fill(&mut out, 0x80), Ok(16));
    let head = MigratePfn::from_raw(out[0]).unwrap();
    assert_eq!((head.pfn(), head.order()), (Some(0x80), 4));
    assert!(out[1..].iter().all(|&s| s == 0));
    assert_eq!(
        d.on_failure(Failure::Trylock),
        Some(Decision::Skip { slots: 16 })
    );
    assert_eq!(
        d.on_failure(Failure::Unmap),
        Some(Decision::Skip { slots: 16 })
    );
    assert_eq!(d.on_failure(Failure::PmdMigrationEntry), None);
}

#[test]
fn mthp_device_private_accepted_is_collected_whole() {
    let mut a = mthp_args(3);
    a.flags = SelectFlags::DEVICE_PRIVATE;
    let e = PteEntry::DevicePrivate {
        page: PageInfo::head(3),
        owner_matches: true,
        write: false,
    };
    assert!(matches!(
        migrate_vma_collect_pte(&a, &e, A, PMD_END),
        Ok(Decision::CollectWhole {
            order: 3,
            slots: 8,
            ..
        })
    ));
}

#[test]
fn mthp_not_whole_falls_back_to_split() {
    let a = mthp_args(4);
    let at = |page: PageInfo, addr: u64, end: u64| {
        migrate_vma_collect_pte(&a, &present(page), addr, end).unwrap()
    };
    let split = |slots| Decision::SplitFirst {
        lock: LockAction::Lock,
        slots,
    };
    // Order not accepted.
    assert_eq!(at(PageInfo::head(3), A, PMD_END), split(512));
    // Misaligned address.
    assert_eq!(at(PageInfo::head(4), A + PAGE_SIZE, PMD_END), split(511));
    // Not the head page (the folio starts before the range).
    let mut tail = PageInfo::head(4);
    tail.index = 3;
    assert_eq!(at(tail, A, PMD_END), split(512));
    // Runs past the end of the range.
    assert_eq!(at(PageInfo::head(4), A, A + 8 * PAGE_SIZE), split(8));
    // Not mapped whole by the PTEs.
    let mut partial = PageInfo::head(4);
    partial.mapped_whole = false;
    assert_eq!(at(partial, A, PMD_END), split(512));
    // No mapping.
    let mut unmapped = PageInfo::head(4);
    unmapped.has_mapping = false;
    assert_eq!(at(unmapped, A, PMD_END), split(512));
}

#[test]
fn pte_mapped_pmd_order_folio_needs_the_mthp_order() {
    // A PMD-order folio mapped by PTEs: 7.3 splits it (:357-376), with or
    // without COMPOUND; an mTHP caller gets it whole.
    for a in [sys(), sys_thp()] {
        assert!(matches!(
            migrate_vma_collect_pte(&a, &present(PageInfo::head(9)), A, PMD_END),
            Ok(Decision::SplitFirst { .. })
        ));
    }
    let mthp = CollectArgs::from_flags(SelectFlags::SYSTEM | SelectFlags::MTHP, true, true);
    assert!(matches!(
        migrate_vma_collect_pte(&mthp, &present(PageInfo::head(9)), A, PMD_END),
        Ok(Decision::CollectWhole {
            order: 9,
            slots: 512,
            ..
        })
    ));
}

#[test]
fn bad_page_info_is_an_error() {
    let mut page = PageInfo::head(2);
    page.index = 4;
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &present(page), A, PMD_END),
        Err(Error::OutOfRange)
    );
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &present(PageInfo::head(19)), A, PMD_END),
        Err(Error::OrderTooLarge)
    );
    assert_eq!(
        migrate_vma_collect_pte(&sys(), &PteEntry::None, A + PAGE_SIZE, A),
        Err(Error::BadRange)
    );
}

#[test]
fn orders_and_flags() {
    assert_eq!(Orders::from_bits(1 << 19), Err(Error::OrderTooLarge));
    assert_eq!(Orders::NONE.with(19), Err(Error::OrderTooLarge));
    let o = Orders::from_bits(0b1_0000).unwrap();
    assert!(o.contains(4) && !o.contains(5) && !o.contains(40));
    assert_eq!(o.bits(), 16);
    let f = SelectFlags::from_bits(0b1011);
    assert!(f.contains(SelectFlags::SYSTEM | SelectFlags::COMPOUND));
    assert!(!f.contains(SelectFlags::DEVICE_COHERENT));
    assert_eq!(f.bits(), 0b1011);
    let a = args(SelectFlags::SYSTEM);
    assert!(a.accepts(0) && !a.accepts(PMD_ORDER) && !a.accepts(4));
    let mut b = a;
    b.orders = Orders::NONE.with(PMD_ORDER).unwrap();
    assert!(b.accepts(PMD_ORDER));
    // MTHP asks for every order PTEs can map, and nothing else does.
    let m = CollectArgs::from_flags(SelectFlags::SYSTEM | SelectFlags::MTHP, true, true);
    assert_eq!(m.orders, Orders::PTE_MAPPED);
    assert!(!m.orders.contains(0) && (1..=PMD_ORDER).all(|o| m.orders.contains(o)));
    assert!(!m.orders.contains(PMD_ORDER + 1));
    let c = CollectArgs::from_flags(SelectFlags::SYSTEM | SelectFlags::COMPOUND, true, true);
    assert_eq!(c.orders, Orders::NONE);
}

#[test]
fn fill_checks_its_output() {
    let d = Decision::Skip { slots: 4 };
    let mut out = [5u64; 3];
    assert_eq!(d.fill(&mut out, 0), Err(Error::OutOfRange));
    let mut out = [5u64; 6];
    assert_eq!(d.fill(&mut out, 0), Ok(4));
    assert_eq!(out, [0, 0, 0, 0, 5, 5]);
    assert_eq!(Decision::WalkPtes.collected(), 0);
    assert_eq!(Decision::Retry.slots(), None);
}
