// SPDX-License-Identifier: GPL-2.0

//! KUnit tests of the device-private pagemap binding.

#[kernel::macros::kunit_tests(folio_migrate_pagemap)]
mod tests {
    use crate::folio::Folio;
    use crate::pagemap::{DevicePrivateOps, DevicePrivatePagemap};
    use core::{
        ffi::c_void,
        ptr::NonNull,
        sync::atomic::{AtomicUsize, Ordering},
    };
    use kernel::prelude::*;

    const SIZE: usize = 4 << 20;
    const PAGES: usize = SIZE >> 12;

    /// Counts the folios freed back to it, per order.
    #[derive(Default)]
    struct Counter {
        order0: AtomicUsize,
        order9: AtomicUsize,
        other: AtomicUsize,
    }

    impl DevicePrivateOps for Counter {
        fn folio_free(&self, folio: &Folio) {
            let count = match folio.order() {
                0 => &self.order0,
                9 => &self.order9,
                _ => &self.other,
            };
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    impl Counter {
        fn frees(&self) -> [usize; 3] {
            [
                self.order0.load(Ordering::Relaxed),
                self.order9.load(Ordering::Relaxed),
                self.other.load(Ordering::Relaxed),
            ]
        }
    }

    /// A distinct, non-null owner cookie.
    static OWNER: u8 = 0;

    fn owner_cookie() -> NonNull<c_void> {
        NonNull::from(&OWNER).cast()
    }

    fn owner() -> *mut c_void {
        owner_cookie().as_ptr()
    }

    fn pagemap() -> Result<Pin<KBox<DevicePrivatePagemap<Counter>>>> {
        DevicePrivatePagemap::new(SIZE, owner_cookie(), Counter::default())
    }

    #[test]
    fn range_and_owner() -> Result {
        let pgmap = pagemap()?;
        assert_eq!(pgmap.nr_pages(), PAGES);
        assert_ne!(pgmap.first_pfn(), 0);
        // The region is section aligned, so every order fits naturally.
        assert_eq!(pgmap.first_pfn() % PAGES, 0);
        assert_eq!(pgmap.owner(), owner());

        // SAFETY: No folio of the pagemap is in use.
        let folio = unsafe { pgmap.init_folio(pgmap.first_pfn() + 3, 0) }?;
        assert_eq!(folio.pfn(), pgmap.first_pfn() + 3);
        assert!(folio.is_device_private());
        assert_eq!(folio.pgmap_owner(), Some(owner()));
        assert!(pgmap.contains(&folio));
        drop(folio);
        assert_eq!(pgmap.ops().frees(), [1, 0, 0]);
        Ok(())
    }

    #[test]
    fn order_0_and_order_9_folios() -> Result {
        let pgmap = pagemap()?;
        let first = pgmap.first_pfn();

        // SAFETY: No folio of the pagemap is in use.
        let small = unsafe { pgmap.init_folio(first + PAGES - 1, 0) }?;
        // SAFETY: These pages do not overlap `small` and are free.
        let large = unsafe { pgmap.init_folio(first, 9) }?;
        for (folio, order) in [(&small, 0), (&large, 9)] {
            assert_eq!(folio.order(), order);
            assert_eq!(folio.nr_pages(), 1 << order);
            assert_eq!(folio.ref_count(), 1);
            assert!(folio.is_zone_device());
            assert!(folio.is_device_private());
            assert!(!folio.is_locked());
            assert!(pgmap.contains(folio));
        }
        assert_eq!(large.pfn(), first);
        assert_eq!(pgmap.ops().frees(), [0, 0, 0]);

        drop(large);
        assert_eq!(pgmap.ops().frees(), [0, 1, 0]);
        drop(small);
        assert_eq!(pgmap.ops().frees(), [1, 1, 0]);

        // A freed order-9 folio's pages can be handed out again singly.
        // SAFETY: Every folio of the pagemap has been freed.
        let again = unsafe { pgmap.init_folio(first + 1, 0) }?;
        assert_eq!(again.order(), 0);
        assert_eq!(again.ref_count(), 1);
        drop(again);
        assert_eq!(pgmap.ops().frees(), [2, 1, 0]);
        Ok(())
    }

    #[test]
    fn bad_folios_are_refused() -> Result {
        let pgmap = pagemap()?;
        let first = pgmap.first_pfn();
        let end = first + PAGES;
        // SAFETY: Every call fails before touching a page; none is in use.
        unsafe {
            // Misaligned for the order.
            assert_eq!(pgmap.init_folio(first + 1, 9).err(), Some(EINVAL));
            assert_eq!(pgmap.init_folio(first + 256, 9).err(), Some(EINVAL));
            // Outside the range, or running past its end.
            assert_eq!(pgmap.init_folio(first - 1, 0).err(), Some(EINVAL));
            assert_eq!(pgmap.init_folio(end, 0).err(), Some(EINVAL));
            assert_eq!(pgmap.init_folio(end - 1, 1).err(), Some(EINVAL));
            // Larger than the range, or than any shift.
            assert_eq!(pgmap.init_folio(first, 11).err(), Some(EINVAL));
            assert_eq!(pgmap.init_folio(first, 64).err(), Some(EINVAL));
        }
        assert_eq!(pgmap.ops().frees(), [0, 0, 0]);
        Ok(())
    }

    #[test]
    fn bad_pagemaps_are_refused() -> Result {
        for size in [0, 4096, SIZE + 4096, SIZE - (1 << 20)] {
            let ret = DevicePrivatePagemap::new(size, owner_cookie(), Counter::default());
            assert_eq!(ret.err(), Some(EINVAL));
        }
        Ok(())
    }

    #[test]
    fn pagemaps_are_released() -> Result {
        // Map, use and drop twice: the region must be free again each
        // time, and teardown must not warn.
        for _ in 0..2 {
            let pgmap = pagemap()?;
            // SAFETY: No folio of the pagemap is in use.
            let folio = unsafe { pgmap.init_folio(pgmap.first_pfn(), 9) }?;
            drop(folio);
            assert_eq!(pgmap.ops().frees(), [0, 1, 0]);
        }
        Ok(())
    }
}
