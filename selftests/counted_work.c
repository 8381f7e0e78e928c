// SPDX-License-Identifier: GPL-2.0
/*
 * counted_work: the work counters of a workload that fixes them. Under each
 * migrate_device engine, 2 MiB of anonymous memory goes to the device and
 * back with test_hmm's migrate ioctls, first as 512 small pages, then as
 * one THP; the counters of the engine that ran (migrate_device/counters
 * for the Rust engines, counters_c for C) must then read exactly what that
 * workload is: 1024 small folios and 1024 PTE migration entries, or two
 * 2 MiB folios and two PMD migration entries, no split, no CPU fault, and
 * no TLB flush beyond one per PTE and one per range. Finalize must walk
 * the rmap once per folio under C, and never under Rust: it puts back the
 * PTE and PMD entries it installed by walking the page table. The other
 * engine's counters must stay 0. test_hmm's own statistics must show every page
 * copied once each way, one device allocation per device folio, and for
 * the THP one copy per direction: the folio goes as one extent.
 * The data is checked after the round trip.
 *
 * Under each Rust engine the 512 small pages are also read back from the
 * device, a CPU fault each: every page must come back through one
 * migrate_to_ram(). test_hmm's pagemap lets its faults run under the
 * per-VMA lock, so under either Rust engine no fault may be retried under
 * the mmap lock.
 * KTAP output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define PAGE_BYTES 4096UL
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define DRIVER_STATS "/sys/kernel/debug/test_hmm/stats"

static int dev_fd, pagemap_fd, kpageflags_fd;

/* The sum of every counter of @path. */
static unsigned long counters_sum(const char *path)
{
	FILE *f = fopen(path, "r");
	char n[64];
	unsigned long v, sum = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%63s %lu", n, &v) == 2)
		if (strcmp(n, "fault_wait_max_ns"))
			sum += v;
	fclose(f);
	return sum;
}

/* Whether the page at @p is part of a THP. */
static int is_thp(void *p)
{
	uint64_t kf;

	return page_flags(pagemap_fd, kpageflags_fd, p, &kf) && (kf >> KPF_THP & 1);
}

static int migrate(unsigned long req, char *p, void *mirror)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p,
		.ptr = (uintptr_t)mirror,
		.npages = NPAGES,
	};

	return ioctl(dev_fd, req, &cmd) ? -errno : 0;
}

struct expect {
	const char *name;
	unsigned long want;
};

/*
 * Checks test_hmm's statistics of one round trip of @thp kind, and writes
 * into @why (unless something is there already) what is wrong with them.
 */
static void driver_stats_check(int thp, char *why, size_t len)
{
	const struct {
		const char *name;
		unsigned long want;
	} want[] = {
		{ "copy_pages", 2 * NPAGES },
		{ "dev_allocs", thp ? 1 : NPAGES },
		{ "extents", thp ? 2 : 0 },
		{ "copies", thp ? 2 : 0 },
	};
	unsigned long copies = counter_in(DRIVER_STATS, "copies");
	unsigned long extents = counter_in(DRIVER_STATS, "extents");
	size_t i;

	for (i = 0; i < sizeof(want) / sizeof(want[0]) && !*why; i++) {
		unsigned long got = counter_in(DRIVER_STATS, want[i].name);

		/* 4 KiB pages: extents and copies depend on where pages land. */
		if (want[i].want && got != want[i].want)
			snprintf(why, len, "test_hmm %s %lu, want %lu", want[i].name, got,
				 want[i].want);
	}
	if (!*why && (!extents || copies < extents || copies > 2 * NPAGES))
		snprintf(why, len, "test_hmm copies %lu for %lu extents", copies, extents);
}

/* One round trip of @thp kind under @engine; reports one KTAP result. */
static void round_trip(const char *engine, int thp)
{
	const char *mine = strcmp(engine, "c") ? COUNTERS : COUNTERS_C;
	const char *other = strcmp(engine, "c") ? COUNTERS_C : COUNTERS;
	const char *kind = thp ? "thp" : "4k";
	const struct expect small[] = {
		{ "folios_order_0", 2 * NPAGES },
		{ "pte_migration_entries", 2 * NPAGES },
		{ "folios_order_9", 0 },
		{ "pmd_migration_entries", 0 },
		{ "splits", 0 },
		{ "faults", 0 },
	};
	const struct expect huge[] = {
		{ "folios_order_9", 2 },
		{ "pmd_migration_entries", 2 },
		{ "folios_order_0", 0 },
		{ "pte_migration_entries", 0 },
		{ "splits", 0 },
		{ "faults", 0 },
	};
	const struct expect *want = thp ? huge : small;
	const unsigned long max_flushes = thp ? 2 : 2 * NPAGES + 2;
	const unsigned long want_walks = strcmp(engine, "c") ? 0 : thp ? 2 : 2 * NPAGES;
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	void *mirror = malloc(PMD_BYTES);
	char why[200] = "";
	unsigned long flushes, walks, idle;
	size_t i;

	if (!p || !mirror) {
		ksft_test_result_fail("%s %s: cannot map buffers\n", engine, kind);
		goto out;
	}
	madvise(p, PMD_BYTES, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (i = 0; i < PMD_BYTES; i++)
		p[i] = (char)(i * 7 + 3);
	if (thp && !is_thp(p)) {
		ksft_test_result_skip("%s %s: no THP for the buffer\n", engine, kind);
		goto out;
	}
	write_file(COUNTERS, "0");
	write_file(COUNTERS_C, "0");
	write_file(DRIVER_STATS, "0");
	if (migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p, mirror) ||
	    migrate(HMM_DMIRROR_MIGRATE_TO_SYS, p, mirror)) {
		ksft_test_result_fail("%s %s: a migration failed\n", engine, kind);
		goto out;
	}
	for (i = 0; i < PMD_BYTES; i++)
		if (p[i] != (char)(i * 7 + 3)) {
			ksft_test_result_fail("%s %s: data differs at %zu\n", engine, kind, i);
			goto out;
		}
	for (i = 0; i < 6; i++) {
		unsigned long got = counter_in(mine, want[i].name);

		if (got != want[i].want && !*why)
			snprintf(why, sizeof(why), "%s %lu, want %lu", want[i].name,
				 got, want[i].want);
	}
	flushes = counter_in(mine, "tlb_flushes");
	if (!*why && (!flushes || flushes > max_flushes))
		snprintf(why, sizeof(why), "tlb_flushes %lu, want 1..%lu", flushes,
			 max_flushes);
	walks = counter_in(mine, "rmap_restores");
	if (!*why && walks != want_walks)
		snprintf(why, sizeof(why), "rmap_restores %lu, want %lu", walks, want_walks);
	idle = counters_sum(other);
	if (!*why && idle)
		snprintf(why, sizeof(why), "the other engine's counters sum to %lu",
			 idle);
	driver_stats_check(thp, why, sizeof(why));
	ksft_test_result(!*why,
			 "%s %s: %lu small folios, %lu 2 MiB folios, %lu PTE and %lu PMD migration entries, %lu TLB flushes, %lu rmap walks in finalize; test_hmm %lu copies, %lu extents%s%s\n",
			 engine, kind,
			 counter_in(mine, "folios_order_0"), counter_in(mine, "folios_order_9"),
			 counter_in(mine, "pte_migration_entries"),
			 counter_in(mine, "pmd_migration_entries"), flushes, walks,
			 counter_in(DRIVER_STATS, "copies"), counter_in(DRIVER_STATS, "extents"),
			 *why ? ": " : "", why);
out:
	free(mirror);
	if (p)
		munmap(p, PMD_BYTES);
}

/*
 * 4 KiB pages read back by CPU faults under @engine, one of the Rust ones;
 * reports one KTAP result.
 */
static void fault_back(const char *engine)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	void *mirror = malloc(PMD_BYTES);
	unsigned long faults, retries, calls;
	char why[200] = "";
	size_t i;

	if (!p || !mirror) {
		ksft_test_result_fail("%s 4k faults: cannot map buffers\n", engine);
		goto out;
	}
	madvise(p, PMD_BYTES, MADV_NOHUGEPAGE);
	for (i = 0; i < PMD_BYTES; i++)
		p[i] = (char)(i * 5 + 1);
	if (migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p, mirror)) {
		ksft_test_result_fail("%s 4k faults: migration failed\n", engine);
		goto out;
	}
	write_file(COUNTERS, "0");
	for (i = 0; i < PMD_BYTES; i++)
		if (p[i] != (char)(i * 5 + 1)) {
			ksft_test_result_fail("%s 4k faults: data differs at %zu\n", engine, i);
			goto out;
		}
	faults = counter("faults");
	retries = counter("fault_retries");
	calls = counter("migrate_to_ram");
	if (calls != NPAGES)
		snprintf(why, sizeof(why), "migrate_to_ram %lu, want %lu", calls, NPAGES);
	else if (faults != NPAGES + retries)
		snprintf(why, sizeof(why), "faults %lu, want %lu + %lu retries", faults,
			 NPAGES, retries);
	else if (retries != 0)
		snprintf(why, sizeof(why), "fault_retries %lu, want 0", retries);
	ksft_test_result(!*why,
			 "%s 4k faults: %lu pages back in %lu faults, %lu retried under the mmap lock%s%s\n",
			 engine, calls, faults, retries, *why ? ": " : "", why);
out:
	free(mirror);
	if (p)
		munmap(p, PMD_BYTES);
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	int e, k;

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, KPAGEFLAGS, &kpageflags_fd, NULL);
	if (access(COUNTERS_C, R_OK))
		ksft_exit_skip("no %s\n", COUNTERS_C);
	ksft_set_plan(8);
	for (e = 0; e < 3; e++) {
		if (write_file(ENGINE, engines[e]))
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		for (k = 0; k < 2; k++)
			round_trip(engines[e], k);
		if (e > 0)
			fault_back(engines[e]);
	}
	write_file(ENGINE, "rust");
	write_file(COUNTERS, "0");
	write_file(COUNTERS_C, "0");
	close(dev_fd);
	ksft_finished();
}
