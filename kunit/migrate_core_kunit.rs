// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the migrate_core rules, run inside the kernel.
//!
//! The same rules are tested on the host by `cargo test -p migrate-core`; this
//! suite checks that the files built into the kernel, with the kernel's
//! compiler flags and target, give the same answers. Arrays stay small (at
//! most 64 slots) so that every test fits easily on a kernel stack.

#[kernel::macros::kunit_tests(migrate_core)]
mod tests {
    use crate::migrate_core::collect::{
        migrate_vma_collect_hole, migrate_vma_collect_huge_pmd, migrate_vma_collect_pte,
        CollectArgs, Decision, Failure, Orders, PageInfo, PageKind, PmdEntry, PteEntry,
        SelectFlags, Source,
    };
    use crate::migrate_core::extent::{CopyRun, CopyRuns, Extent};
    use crate::migrate_core::fault_lock::LockAction;
    use crate::migrate_core::folio_array::{validate, FolioArray, FolioArrayMut};
    use crate::migrate_core::pfn::{
        MigratePfn, MIGRATE_PFN_COMPOUND, MIGRATE_PFN_MAX_PFN, MIGRATE_PFN_MIGRATE,
        MIGRATE_PFN_VALID, MIGRATE_PFN_WRITE, PAGE_SIZE, PMD_ORDER, PMD_SIZE, PUD_ORDER,
    };
    use crate::migrate_core::Error;

    /// A PMD-aligned user address.
    const ADDR: u64 = 0x7f00_0000_0000;

    #[test]
    fn pfn_round_trip() -> Result<(), Error> {
        // include/linux/migrate.h:151-154 (migrate_pfn)
        let m = MigratePfn::new(0x1234, 0)?.with_migrate().with_write()?;
        assert_eq!(
            m.raw(),
            (0x1234 << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE
        );
        assert_eq!(MigratePfn::from_raw(m.raw())?, m);
        assert_eq!(m.pfn(), Some(0x1234));
        assert_eq!(m.order(), 0);
        Ok(())
    }

    #[test]
    fn pfn_pmd_order_is_compound() -> Result<(), Error> {
        // 7.3's bits for a PMD folio, and the order beside them.
        let m = MigratePfn::new(0x400, PMD_ORDER)?;
        assert_eq!(
            m.raw(),
            (0x400 << 6) | (9 << 56) | MIGRATE_PFN_VALID | MIGRATE_PFN_COMPOUND
        );
        // A raw COMPOUND slot without an order field is the PMD order.
        let raw = (0x200 << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_COMPOUND;
        assert_eq!(MigratePfn::from_raw(raw)?.order(), PMD_ORDER);
        assert_eq!(MigratePfn::from_raw(raw)?.nr_pages(), 512);
        Ok(())
    }

    #[test]
    fn pfn_order_field_and_mask() -> Result<(), Error> {
        let m = MigratePfn::new(0x40, 4)?;
        assert_eq!(m.raw(), (0x40 << 6) | (4 << 56) | MIGRATE_PFN_VALID);
        assert!(!m.is_compound());
        assert_eq!(m.pfn(), Some(0x40));
        let pud = MigratePfn::new(1 << 18, PUD_ORDER)?;
        assert_eq!(pud.order(), PUD_ORDER);
        assert_eq!(pud.pfn(), Some(1 << 18));
        Ok(())
    }

    #[test]
    fn pfn_errors() {
        assert_eq!(MigratePfn::new(0x201, PMD_ORDER), Err(Error::Misaligned));
        assert_eq!(MigratePfn::new(0, PUD_ORDER + 1), Err(Error::OrderTooLarge));
        assert_eq!(
            MigratePfn::new(MIGRATE_PFN_MAX_PFN + 1, 0),
            Err(Error::PfnTooLarge)
        );
        assert_eq!(MigratePfn::from_raw(1 << 2), Err(Error::ReservedBits));
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_COMPOUND | (4 << 56)),
            Err(Error::CompoundOrder)
        );
        assert_eq!(
            MigratePfn::from_raw(MIGRATE_PFN_MIGRATE | MIGRATE_PFN_WRITE),
            Err(Error::PfnWithoutValid)
        );
    }

    #[test]
    fn array_validation_errors() -> Result<(), Error> {
        let order2 = MigratePfn::new(0x100, 2)?.raw();
        let mut s = [0u64; 8];
        s[0] = order2;
        s[2] = MigratePfn::new(0x5, 0)?.raw();
        assert_eq!(validate(&s, 0), Err(Error::TailNotEmpty { index: 2 }));
        let mut s = [0u64; 8];
        s[6] = order2;
        assert_eq!(validate(&s, 0), Err(Error::HeadMisaligned { index: 6 }));
        assert_eq!(validate(&s, 2), Err(Error::HeadPastEnd { index: 6 }));
        let mut s = [0u64; 8];
        s[3] = 1 << 63;
        assert_eq!(validate(&s, 0), Err(Error::BadEntry { index: 3 }));
        assert!(FolioArray::new(&s).is_err());
        Ok(())
    }

    #[test]
    fn array_iteration_steps_over_tails() -> Result<(), Error> {
        let mut s = [0u64; 32];
        s[0] = MigratePfn::new(0x100, 3)?.raw();
        s[8] = MigratePfn::new(0x7, 0)?.raw();
        s[16] = MigratePfn::hole(4)?.raw();
        let a = FolioArray::new(&s)?;
        let mut it = a.iter();
        assert_eq!(it.next().map(|(i, m)| (i, m.order())), Some((0, 3)));
        assert_eq!(it.next().map(|(i, m)| (i, m.pfn())), Some((8, Some(0x7))));
        assert_eq!(it.next().map(|(i, m)| (i, m.is_valid())), Some((16, false)));
        assert!(it.next().is_none());
        assert_eq!(a.head_of(5).map(|(h, _)| h), Some(0));
        assert_eq!(a.head_of(31).map(|(h, _)| h), Some(16));
        assert_eq!(a.head_of(9), None);
        Ok(())
    }

    #[test]
    fn array_set_and_split() -> Result<(), Error> {
        let mut s = [0u64; 16];
        let mut a = FolioArrayMut::new(&mut s)?;
        a.set(8, MigratePfn::new(0x48, 3)?.with_migrate())?;
        assert_eq!(
            a.set(12, MigratePfn::new(1, 0)?),
            Err(Error::Occupied { index: 12 })
        );
        // mm/migrate_device.c:930-934: a split head becomes one slot per page.
        a.split(8)?;
        let slots = a.as_array().slots();
        assert_eq!(
            slots[8],
            (0x48 << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE
        );
        assert_eq!(
            slots[15],
            (0x4f << 6) | MIGRATE_PFN_VALID | MIGRATE_PFN_MIGRATE
        );
        assert_eq!(validate(slots, 0), Ok(()));
        Ok(())
    }

    #[test]
    fn extents_coalesce_contiguous_heads() -> Result<(), Error> {
        let mut s = [0u64; 16];
        s[0] = MigratePfn::new(0x100, 2)?.raw();
        s[4] = MigratePfn::new(0x104, 0)?.raw();
        s[8] = MigratePfn::new(0x300, 3)?.raw();
        let a = FolioArray::new(&s)?;
        let mut e = a.extents();
        assert_eq!(
            e.next(),
            Some(Extent {
                index: 0,
                pfn: 0x100,
                npages: 5,
                folios: 2
            })
        );
        assert_eq!(
            e.next(),
            Some(Extent {
                index: 8,
                pfn: 0x300,
                npages: 8,
                folios: 1
            })
        );
        assert_eq!(e.next(), None);
        Ok(())
    }

    #[test]
    fn copy_runs_follow_a_smaller_destination() -> Result<(), Error> {
        let mut src = [0u64; 8];
        let mut dst = [0u64; 8];
        src[0] = MigratePfn::new(0x800, 3)?.with_migrate().raw();
        for (i, d) in dst.iter_mut().enumerate() {
            // `i` < 8.
            *d = MigratePfn::new(0x900 + i as u64, 0)?.raw();
        }
        let mut runs = CopyRuns::new(FolioArray::new(&src)?, FolioArray::new(&dst)?)?;
        assert_eq!(
            runs.next(),
            Some(CopyRun {
                index: 0,
                src_pfn: 0x800,
                dst_pfn: 0x900,
                npages: 8
            })
        );
        assert_eq!(runs.next(), None);
        Ok(())
    }

    #[test]
    fn collect_hole_compound_pmd() -> Result<(), Error> {
        // mm/migrate_device.c:48-62 (migrate_vma_collect_hole)
        let args = CollectArgs::new(SelectFlags::SYSTEM | SelectFlags::COMPOUND);
        assert_eq!(
            migrate_vma_collect_hole(&args, ADDR, ADDR + PMD_SIZE)?,
            Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: Source::Hole
            }
        );
        // mm/migrate_device.c:65-70: without COMPOUND, one hole per page.
        let args = CollectArgs::new(SelectFlags::SYSTEM);
        let d = migrate_vma_collect_hole(&args, ADDR, ADDR + 4 * PAGE_SIZE)?;
        let mut out = [0u64; 4];
        assert_eq!(d.fill(&mut out, 0)?, 4);
        assert_eq!(out, [MIGRATE_PFN_MIGRATE; 4]);
        Ok(())
    }

    #[test]
    fn collect_huge_pmd_trylock_and_owner() -> Result<(), Error> {
        let args = CollectArgs::new(SelectFlags::DEVICE_PRIVATE | SelectFlags::COMPOUND);
        let owned = PmdEntry::DevicePrivate {
            owner_matches: true,
            write: true,
            fault_folio: false,
        };
        // mm/migrate_device.c:196-225: collected whole after a trylock.
        let d = migrate_vma_collect_huge_pmd(&args, &owned, ADDR, ADDR + PMD_SIZE)?;
        assert_eq!(
            d,
            Decision::CollectWhole {
                order: PMD_ORDER,
                slots: 512,
                source: Source::Page {
                    write: true,
                    lock: LockAction::Trylock
                }
            }
        );
        // mm/migrate_device.c:190-193: a failed trylock skips the PMD.
        assert_eq!(
            d.on_failure(Failure::Trylock),
            Some(Decision::Skip { slots: 512 })
        );
        // mm/migrate_device.c:177-180: another owner's folio is skipped.
        let foreign = PmdEntry::DevicePrivate {
            owner_matches: false,
            write: true,
            fault_folio: false,
        };
        assert_eq!(
            migrate_vma_collect_huge_pmd(&args, &foreign, ADDR, ADDR + PMD_SIZE)?,
            Decision::Skip { slots: 512 }
        );
        Ok(())
    }

    #[test]
    fn collect_pte_large_folio_split_or_whole() -> Result<(), Error> {
        let present = PteEntry::Present {
            page: PageInfo::head(4),
            kind: PageKind::System,
            write: false,
        };
        // mm/migrate_device.c:357-376: a 7.3 caller splits an mTHP first.
        let args = CollectArgs::new(SelectFlags::SYSTEM);
        assert_eq!(
            migrate_vma_collect_pte(&args, &present, ADDR, ADDR + PMD_SIZE)?,
            Decision::SplitFirst {
                lock: LockAction::Lock,
                slots: 512
            }
        );
        // Accepting order 4 collects it whole: one head, 16 slots.
        let mut args = args;
        args.orders = Orders::NONE.with(4)?;
        assert_eq!(
            migrate_vma_collect_pte(&args, &present, ADDR, ADDR + PMD_SIZE)?,
            Decision::CollectWhole {
                order: 4,
                slots: 16,
                source: Source::Page {
                    write: false,
                    lock: LockAction::Trylock
                }
            }
        );
        Ok(())
    }

    #[test]
    fn collect_pte_fault_folio_is_not_trylocked() -> Result<(), Error> {
        // mm/migrate_device.c:410 (fault_folio == folio || folio_trylock())
        let mut page = PageInfo::small();
        page.fault_folio = true;
        let entry = PteEntry::DevicePrivate {
            page,
            owner_matches: true,
            write: true,
        };
        let args = CollectArgs::new(SelectFlags::DEVICE_PRIVATE);
        let d = migrate_vma_collect_pte(&args, &entry, ADDR, ADDR + PMD_SIZE)?;
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
        Ok(())
    }

    #[test]
    fn other_folios_are_engine_locked() {
        assert_eq!(LockAction::for_collect(false), LockAction::Trylock);
        assert_eq!(LockAction::for_split(false), LockAction::Lock);
        assert_eq!(LockAction::for_collect(true), LockAction::Held);
        assert_eq!(LockAction::for_split(true), LockAction::Held);
    }
}
