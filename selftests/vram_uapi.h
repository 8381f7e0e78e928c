/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The ABI of /dev/folio_vram, the folio-migrate VRAM driver
 * (drivers-glue/vram/chardev.rs has it in Rust).
 */
#ifndef SELFTESTS_VRAM_UAPI_H
#define SELFTESTS_VRAM_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define FOLIO_VRAM "/dev/folio_vram"

/* A range of the caller's memory; done gets the pages migrated. */
struct folio_vram_range {
	__u64 addr;
	__u64 npages;
	__u64 done;
};

struct folio_vram_stats {
	__u64 copies;		/* one per extent of destinations */
	__u64 pages_in;		/* migrated to the VRAM */
	__u64 pages_out;	/* migrated back by ioctl or eviction */
	__u64 faulted;		/* migrated back by CPU faults */
	__u64 evictions;	/* chunks evicted */
	__u64 chunks_in_use;
	__u64 chunks;		/* of 2 MiB */
};

#define FOLIO_VRAM_MIGRATE_TO_VRAM	_IOWR('F', 0x00, struct folio_vram_range)
#define FOLIO_VRAM_MIGRATE_TO_RAM	_IOWR('F', 0x01, struct folio_vram_range)
#define FOLIO_VRAM_EVICT		_IO('F', 0x02)
#define FOLIO_VRAM_STATS		_IOR('F', 0x03, struct folio_vram_stats)

#endif /* SELFTESTS_VRAM_UAPI_H */
