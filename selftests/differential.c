// SPDX-License-Identifier: GPL-2.0
/*
 * differential: run the same sequences of migrations, CPU faults, partial
 * munmap, mremap, fork (also of 4 KiB pages half shared with a child),
 * a long-term pinned page among 4 KiB pages,
 * mprotect, MADV_FREE and driver eviction under
 * debugfs migrate_device/engine "c", "rust" and "rust-entry", and check in
 * KTAP that each Rust engine gives the same data and the same page-table
 * shape as the C one.
 *
 * The shape of a page is what the test_hmm snapshot sees (mapped, write,
 * PMD, zero page, device-private) plus /proc/self/pagemap's present and
 * swap bits and, for a present page, whether /proc/kpageflags calls it a
 * THP; the migrate ioctls' page counts are recorded too. PFNs differ
 * between runs and are not compared.
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
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define PAGE_BYTES 4096UL
#define PMD_PAGES (PMD_BYTES / PAGE_BYTES)
#define MAX_REC (16 * 2 * PMD_PAGES)

/* What one run of a sequence saw. */
struct record {
	unsigned char shape[MAX_REC];
	size_t len;
	int failed;
	char why[160];
};

static int dev_fd, pagemap_fd, kpageflags_fd;

static void fail(struct record *r, const char *why, long at)
{
	if (!r->failed)
		snprintf(r->why, sizeof(r->why), "%s (at %ld)", why, at);
	r->failed = 1;
}

static void note(struct record *r, unsigned char v)
{
	if (r->len < MAX_REC)
		r->shape[r->len++] = v;
}

static void note_long(struct record *r, unsigned long v)
{
	for (int i = 0; i < 4; i++)
		note(r, v >> (8 * i));
}

/* A PMD-aligned anonymous region of @size, THP or not. */
static char *region(size_t size, int thp)
{
	char *a = map_aligned(size, PMD_BYTES, 0);

	if (a)
		madvise(a, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return a;
}

static void fill(char *p, size_t size, unsigned int seed)
{
	for (size_t i = 0; i < size; i += sizeof(int))
		*(int *)(p + i) = (int)(i * 2654435761u + seed);
}

static void check(struct record *r, char *p, size_t size, unsigned int seed)
{
	for (size_t i = 0; i < size; i += sizeof(int))
		if (*(int *)(p + i) != (int)(i * 2654435761u + seed)) {
			fail(r, "data differs", i);
			return;
		}
}

static void check_zero(struct record *r, char *p, size_t size)
{
	for (size_t i = 0; i < size; i += sizeof(int))
		if (*(int *)(p + i)) {
			fail(r, "data not zero", i);
			return;
		}
}

/* Runs a test_hmm migrate ioctl and records how many pages it moved. */
static void migrate(struct record *r, unsigned long req, char *p, size_t size)
{
	unsigned long npages = size / PAGE_BYTES;
	void *mirror = malloc(size);
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p,
		.ptr = (uintptr_t)mirror,
		.npages = npages,
	};

	if (!mirror || ioctl(dev_fd, req, &cmd))
		fail(r, req == HMM_DMIRROR_MIGRATE_TO_DEV ? "migrate to device failed" :
		     "migrate to system failed", errno);
	else
		note_long(r, cmd.cpages);
	free(mirror);
}

/*
 * Like migrate(), for a migration that may leave pages behind: records
 * the ioctl's errno (test_hmm reports a page it could not move as
 * ENOENT) instead of failing on it.
 */
static void migrate_some(struct record *r, unsigned long req, char *p, size_t size)
{
	void *mirror = malloc(size);
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p,
		.ptr = (uintptr_t)mirror,
		.npages = size / PAGE_BYTES,
	};

	if (!mirror)
		fail(r, "out of memory", 0);
	else
		note(r, ioctl(dev_fd, req, &cmd) ? errno : 0);
	free(mirror);
}

/* Records the shape of every page of @p..@p+@size. */
static void shape(struct record *r, char *p, size_t size)
{
	unsigned long npages = size / PAGE_BYTES;
	unsigned char *snap = malloc(npages);
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p,
		.ptr = (uintptr_t)snap,
		.npages = npages,
	};

	if (!snap || ioctl(dev_fd, HMM_DMIRROR_SNAPSHOT, &cmd)) {
		fail(r, "snapshot failed", errno);
		free(snap);
		return;
	}
	for (unsigned long i = 0; i < npages; i++) {
		uint64_t pm = 0, kf = 0;
		unsigned char v = 0;

		if (pread(pagemap_fd, &pm, 8, ((uintptr_t)p / PAGE_BYTES + i) * 8) != 8)
			fail(r, "pagemap read failed", i);
		if (pm >> 63 & 1) {
			v |= 1;
			if (pread(kpageflags_fd, &kf, 8, (pm & ((1ULL << 55) - 1)) * 8) == 8 &&
			    (kf >> 22 & 1))
				v |= 4;
		}
		if (pm >> 62 & 1)
			v |= 2;
		note(r, snap[i]);
		note(r, v);
	}
	free(snap);
}

/* 4 KiB pages to the device and back by CPU faults. */
static void seq_small_fault(struct record *r)
{
	char *p = region(PMD_BYTES, 0);

	fill(p, PMD_BYTES, 1);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 1);
	shape(r, p, PMD_BYTES);
	munmap(p, PMD_BYTES);
}

/* A 2 MiB THP to the device and back by a CPU fault. */
static void seq_thp_fault(struct record *r)
{
	char *p = region(PMD_BYTES, 1);

	fill(p, PMD_BYTES, 2);
	shape(r, p, PMD_BYTES);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 2);
	shape(r, p, PMD_BYTES);
	munmap(p, PMD_BYTES);
}

/* A 2 MiB THP to the device and back by the driver. */
static void seq_thp_to_sys(struct record *r)
{
	char *p = region(PMD_BYTES, 1);

	fill(p, PMD_BYTES, 3);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_SYS, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 3);
	munmap(p, PMD_BYTES);
}

/* An untouched 2 MiB hole populated on the device, then read. */
static void seq_hole(struct record *r)
{
	char *p = region(PMD_BYTES, 1);

	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	check_zero(r, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	munmap(p, PMD_BYTES);
}

/* Half of a device-private THP unmapped, the rest read back. */
static void seq_partial_munmap(struct record *r)
{
	char *p = region(PMD_BYTES, 1);

	fill(p, PMD_BYTES, 4);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	munmap(p + PMD_BYTES / 2, PMD_BYTES / 2);
	shape(r, p, PMD_BYTES / 2);
	check(r, p, PMD_BYTES / 2, 4);
	shape(r, p, PMD_BYTES / 2);
	munmap(p, PMD_BYTES / 2);
}

/* A device-private THP moved by mremap, then read back. */
static void seq_mremap(struct record *r)
{
	char *p = region(PMD_BYTES, 1);
	char *q = region(PMD_BYTES, 1);
	char *n;

	fill(p, PMD_BYTES, 5);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	n = mremap(p, PMD_BYTES, PMD_BYTES, MREMAP_MAYMOVE | MREMAP_FIXED, q);
	if (n != q) {
		fail(r, "mremap failed", errno);
		return;
	}
	shape(r, q, PMD_BYTES);
	check(r, q, PMD_BYTES, 5);
	shape(r, q, PMD_BYTES);
	munmap(q, PMD_BYTES);
}

/* A device-private THP shared with a child by fork; both read, then the
 * parent writes. */
static void seq_fork(struct record *r)
{
	char *p = region(PMD_BYTES, 1);
	int status = 0;
	pid_t pid;

	fill(p, PMD_BYTES, 6);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	pid = fork();
	if (pid == 0) {
		struct record child = { 0 };

		check(&child, p, PMD_BYTES, 6);
		_exit(child.failed);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		fail(r, "child saw other data", status);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 6);
	fill(p, PMD_BYTES, 7);
	check(r, p, PMD_BYTES, 7);
	shape(r, p, PMD_BYTES);
	munmap(p, PMD_BYTES);
}

/*
 * 4 KiB pages whose second half a forked child still shares (the parent
 * wrote the first half again): to the device and back, which finalizes
 * the parent's own pages by page-table walk under Rust and the shared
 * ones through the rmap; then the child reads its data.
 */
static void seq_half_shared(struct record *r)
{
	char *p = region(PMD_BYTES, 0);
	int go[2], status = 0;
	char c = 0;
	pid_t pid;

	fill(p, PMD_BYTES, 10);
	if (pipe(go)) {
		fail(r, "pipe failed", errno);
		return;
	}
	pid = fork();
	if (pid == 0) {
		struct record child = { 0 };

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		check(&child, p, PMD_BYTES, 10);
		_exit(child.failed);
	}
	close(go[0]);
	for (size_t i = 0; i < PMD_BYTES / 2; i += PAGE_BYTES)
		*(volatile char *)(p + i) = *(volatile char *)(p + i);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_SYS, p, PMD_BYTES);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 10);
	if (write(go[1], &c, 1) != 1)
		fail(r, "cannot wake the child", errno);
	close(go[1]);
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		fail(r, "child saw other data", status);
	munmap(p, PMD_BYTES);
}

/*
 * 4 KiB pages with one page in the middle pinned for the long term
 * (CONFIG_GUP_TEST): to the device, where the pinned page must stay, then
 * unpinned and back. The Rust engines clear the run's entries before they
 * share the pages, so they find the pin later than C and must put its
 * entry back.
 */
static void seq_pinned(struct record *r)
{
	char *p = region(PMD_BYTES, 0);
	struct pin_longterm_test pin = {
		.addr = (uintptr_t)(p + (PMD_PAGES / 2 + 3) * PAGE_BYTES),
		.size = PAGE_BYTES,
		.flags = PIN_LONGTERM_TEST_FLAG_USE_WRITE,
	};
	int gup_fd = open(GUP_TEST, O_RDWR);

	fill(p, PMD_BYTES, 16);
	if (gup_fd < 0 || ioctl(gup_fd, PIN_LONGTERM_TEST_START, &pin)) {
		fail(r, "cannot pin a page through " GUP_TEST, errno);
	} else {
		migrate_some(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
		shape(r, p, PMD_BYTES);
		check(r, p, PMD_BYTES, 16);
		ioctl(gup_fd, PIN_LONGTERM_TEST_STOP);
		migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
		shape(r, p, PMD_BYTES);
		migrate(r, HMM_DMIRROR_MIGRATE_TO_SYS, p, PMD_BYTES);
		shape(r, p, PMD_BYTES);
		check(r, p, PMD_BYTES, 16);
	}
	if (gup_fd >= 0)
		close(gup_fd);
	munmap(p, PMD_BYTES);
}

/* A device-private THP made read-only, read, made writable, written. */
static void seq_mprotect(struct record *r)
{
	char *p = region(PMD_BYTES, 1);

	fill(p, PMD_BYTES, 8);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	if (mprotect(p, PMD_BYTES, PROT_READ))
		fail(r, "mprotect failed", errno);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 8);
	shape(r, p, PMD_BYTES);
	if (mprotect(p, PMD_BYTES, PROT_READ | PROT_WRITE))
		fail(r, "mprotect failed", errno);
	fill(p, PMD_BYTES, 9);
	check(r, p, PMD_BYTES, 9);
	shape(r, p, PMD_BYTES);
	munmap(p, PMD_BYTES);
}

/* MADV_FREE of a device-private THP, then CPU access. The device copy is
 * not freed (MADV_FREE skips non-present entries), so each page reads
 * either its data or, had it been freed, zeroes; never anything else. */
static void seq_madv_free(struct record *r)
{
	char *p = region(PMD_BYTES, 1);

	fill(p, PMD_BYTES, 12);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	if (madvise(p, PMD_BYTES, MADV_FREE))
		fail(r, "MADV_FREE failed", errno);
	shape(r, p, PMD_BYTES);
	for (size_t off = 0; off < PMD_BYTES; off += PAGE_BYTES) {
		struct record page = { 0 };

		check(&page, p + off, PAGE_BYTES, (unsigned int)(off * 2654435761u + 12));
		note(r, page.failed);
		if (page.failed) {
			page.failed = 0;
			check_zero(&page, p + off, PAGE_BYTES);
			if (page.failed)
				fail(r, "page neither kept nor zeroed", off);
		}
	}
	shape(r, p, PMD_BYTES);
	fill(p, PMD_BYTES, 13);
	check(r, p, PMD_BYTES, 13);
	munmap(p, PMD_BYTES);
}

/* A device-private THP evicted by the driver (migrate_device_range() over
 * its whole chunk, test_hmm's HMM_DMIRROR_RELEASE), then read. */
static void seq_evict(struct record *r)
{
	char *p = region(PMD_BYTES, 1);
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .npages = 1 };

	fill(p, PMD_BYTES, 14);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, PMD_BYTES);
	if (ioctl(dev_fd, HMM_DMIRROR_RELEASE, &cmd))
		fail(r, "eviction failed", errno);
	shape(r, p, PMD_BYTES);
	check(r, p, PMD_BYTES, 14);
	shape(r, p, PMD_BYTES);
	munmap(p, PMD_BYTES);
}

/* A THP next to a half-populated run of 4 KiB pages, there and back. */
static void seq_mixed(struct record *r)
{
	char *p = region(2 * PMD_BYTES, 1);

	fill(p, PMD_BYTES, 10);
	madvise(p + PMD_BYTES, PMD_BYTES, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < PMD_BYTES; i += 2 * PAGE_BYTES)
		p[PMD_BYTES + i] = 1;
	migrate(r, HMM_DMIRROR_MIGRATE_TO_DEV, p, 2 * PMD_BYTES);
	shape(r, p, 2 * PMD_BYTES);
	migrate(r, HMM_DMIRROR_MIGRATE_TO_SYS, p, 2 * PMD_BYTES);
	shape(r, p, 2 * PMD_BYTES);
	check(r, p, PMD_BYTES, 10);
	for (size_t i = 0; i < PMD_BYTES; i += PAGE_BYTES)
		if (p[PMD_BYTES + i] != (i % (2 * PAGE_BYTES) ? 0 : 1))
			fail(r, "small page data differs", i);
	munmap(p, 2 * PMD_BYTES);
}

static const struct {
	const char *name;
	void (*run)(struct record *r);
} seqs[] = {
	{ "4k pages to device, CPU fault back", seq_small_fault },
	{ "THP to device, CPU fault back", seq_thp_fault },
	{ "THP to device, driver migrates back", seq_thp_to_sys },
	{ "2 MiB hole populated on device", seq_hole },
	{ "device THP, partial munmap", seq_partial_munmap },
	{ "device THP, mremap", seq_mremap },
	{ "device THP, fork", seq_fork },
	{ "4k pages half shared with a child, there and back", seq_half_shared },
	{ "4k pages, one pinned in the middle", seq_pinned },
	{ "device THP, mprotect", seq_mprotect },
	{ "THP and 4k pages, there and back", seq_mixed },
	{ "device THP, MADV_FREE", seq_madv_free },
	{ "device THP, evicted by the driver", seq_evict },
};

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	enum { NENGINES = sizeof(engines) / sizeof(engines[0]) };
	static struct record rec[NENGINES];
	int nseq = sizeof(seqs) / sizeof(seqs[0]);

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, KPAGEFLAGS, &kpageflags_fd, NULL);
	ksft_set_plan(nseq * (NENGINES - 1));
	for (int s = 0; s < nseq; s++) {
		for (int e = 0; e < NENGINES; e++) {
			memset(&rec[e], 0, sizeof(rec[e]));
			if (write_file(ENGINE, engines[e]))
				ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
			seqs[s].run(&rec[e]);
		}
		/* Each Rust engine against the C one. */
		for (int e = 1; e < NENGINES; e++) {
			if (rec[0].failed || rec[e].failed) {
				ksft_test_result_fail("%s, c vs %s # c: %s; %s: %s\n",
						      seqs[s].name, engines[e],
						      rec[0].failed ? rec[0].why : "ok", engines[e],
						      rec[e].failed ? rec[e].why : "ok");
			} else if (rec[0].len != rec[e].len ||
				   memcmp(rec[0].shape, rec[e].shape, rec[0].len)) {
				size_t i = 0;

				while (i < rec[0].len && i < rec[e].len &&
				       rec[0].shape[i] == rec[e].shape[i])
					i++;
				ksft_test_result_fail("%s, c vs %s # shapes differ at byte %zu of %zu/%zu\n",
						      seqs[s].name, engines[e], i, rec[0].len,
						      rec[e].len);
			} else {
				ksft_test_result_pass("%s, c vs %s # %zu shape bytes equal\n",
						      seqs[s].name, engines[e], rec[0].len);
			}
		}
	}
	write_file(ENGINE, "rust");
	ksft_finished();
}
