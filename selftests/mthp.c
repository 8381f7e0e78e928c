// SPDX-License-Identifier: GPL-2.0
/*
 * mthp: PTE-mapped large anonymous folios (mTHPs, each size below the PMD
 * size) on test_hmm's device-private memory, under each migrate_device
 * engine. Each case fills a fresh 2 MiB region made of folios of that one
 * size (checked with the size's anon_fault_alloc), migrates it to the
 * device, then: migrates it back; faults a middle page, with and without
 * the driver's large allocation failing (HMM_DMIRROR_FLAG_FAIL_ALLOC);
 * unmaps, mprotect()s or MADV_DONTNEEDs half a folio; forks a child that
 * writes; evicts all device memory; reads pagemap and smaps, madvises,
 * move_pages() and mremap()s it; write-protects half a folio with
 * userfaultfd and migrates it back; or has 8 threads fault one folio while
 * migrate_to_ram() holds the driver's lock for 1 ms. Three more cases have
 * the driver hand over a bad destination for folio 0 (a larger order,
 * another device, a folio named by its second page), which the Rust
 * engines must refuse, leaving folio 0 mapped with its data.
 *
 * No data may be lost under any engine. The Rust engines move each folio
 * whole both ways: no split, one folio of the same order (their counters),
 * folios back whole (/proc/kpageflags), one migrate_to_ram() per folio.
 * 7.3's C splits the folios first, so for engine c those figures are only
 * reported, and its device holds no large folio whose allocation could
 * fail (failing its 4 KiB one would return VM_FAULT_OOM): the flag is not
 * set under c. KTAP output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define PAGE_BYTES 4096UL
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define NCASES 14
#define READERS 8
#define HOLD_US "1000"
#define DET 320
#define PM_UFFD_WP (1ULL << 57)
#ifndef MPOL_MF_MOVE
#define MPOL_MF_MOVE (1 << 1)
#endif
/* The offset of the folio after folio 1, or of folio 1 when there are 2. */
#define FOLIO2 ((nf > 2 ? 2 : 1) * size)

static int dev_fd, pagemap_fd, kpageflags_fd;
static unsigned int mirror[PMD_BYTES / sizeof(int)];
static char msg[160];

/* The size under test: KiB, order, bytes, pages per folio, folios. */
static int kb, order;
static size_t size;
static unsigned long np, nf;
/*
 * Whether the engine is a Rust one; its counters file and two of them as
 * they were before the case's migration to the device.
 */
static int rust;
static const char *cfile;
static char order_name[32];
static unsigned long splits0, folios0;

/* Every THP size and its setting, to be put back. */
static struct thp_sizes thp;

static void fill(char *p, size_t from, size_t to, unsigned int seed)
{
	for (size_t i = from; i < to; i += sizeof(int))
		*(unsigned int *)(p + i) = (unsigned int)i ^ seed;
}

/* NULL when bytes @from..@to of the region hold the pattern of @seed. */
static const char *check(const char *p, size_t from, size_t to, unsigned int seed)
{
	for (size_t i = from; i < to; i += sizeof(int)) {
		unsigned int v = *(const unsigned int *)(p + i);

		if (v != ((unsigned int)i ^ seed)) {
			snprintf(msg, sizeof(msg), "data lost: byte %zu reads %#x, want %#x",
				 i, v, (unsigned int)i ^ seed);
			return msg;
		}
	}
	return NULL;
}

/*
 * Pages of @pages at @p present in system memory; *@compound gets how many
 * of those are part of a large folio.
 */
static int present(const char *p, unsigned long pages, unsigned long *compound)
{
	return pages_present(pagemap_fd, kpageflags_fd, p, pages,
			     1ULL << KPF_COMPOUND_HEAD | 1ULL << KPF_COMPOUND_TAIL, compound);
}

/*
 * How many of the @folios folios at @p are present and whole: a large
 * folio's head on the first page, tails on the others.
 */
static unsigned long whole(const char *p, unsigned long folios)
{
	unsigned long f, i, n = 0;

	for (f = 0; f < folios; f++) {
		for (i = 0; i < np; i++) {
			uint64_t kf, want = 1ULL << KPF_THP |
					    1ULL << (i ? KPF_COMPOUND_TAIL : KPF_COMPOUND_HEAD);

			if (!page_flags(pagemap_fd, kpageflags_fd, p + (f * np + i) * PAGE_BYTES,
					&kf) || (kf & want) != want)
				break;
		}
		n += i == np;
	}
	return n;
}

/* A fresh region of folios of the size under test, filled with @seed. */
static char *new_region(unsigned int seed, const char **why)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	unsigned long a0, got;

	*why = "cannot map a 2 MiB area";
	if (!p)
		return NULL;
	madvise(p, PMD_BYTES, MADV_HUGEPAGE);
	a0 = thp_fault_allocs(kb);
	fill(p, 0, PMD_BYTES, seed);
	got = thp_fault_allocs(kb) - a0;
	if (got == nf)
		return p;
	snprintf(msg, sizeof(msg), "%lu folios of %d kB allocated at fault, want %lu",
		 got, kb, nf);
	*why = msg;
	munmap(p, PMD_BYTES);
	return NULL;
}

static const char *migrate(unsigned long req, char *p)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .ptr = (uintptr_t)mirror,
				       .npages = NPAGES };
	const char *to = req == HMM_DMIRROR_MIGRATE_TO_DEV ? "to the device" : "back";

	if (ioctl(dev_fd, req, &cmd))
		snprintf(msg, sizeof(msg), "migration %s failed: %s", to, strerror(errno));
	else if (cmd.cpages != NPAGES)
		snprintf(msg, sizeof(msg), "migration %s moved %llu pages, want %lu", to,
			 (unsigned long long)cmd.cpages, NPAGES);
	else
		return NULL;
	return msg;
}

/* Migrates the region, filled with @seed, to the device: all of it. */
static const char *to_dev(char *p, unsigned int seed)
{
	const char *why = migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p);
	unsigned long i, c;
	int n;

	if (why)
		return why;
	for (i = 0; i < PMD_BYTES / sizeof(int); i++)
		if (mirror[i] != ((unsigned int)(i * sizeof(int)) ^ seed))
			return "the device received other data";
	n = present(p, NPAGES, &c);
	if (!n)
		return NULL;
	snprintf(msg, sizeof(msg), "%d pages still present after the migration", n);
	return msg;
}

static int set_flags(unsigned long long flags)
{
	struct hmm_dmirror_cmd cmd = { .npages = flags };

	return ioctl(dev_fd, HMM_DMIRROR_FLAGS, &cmd);
}

/* The cases: @p is on the device, filled with @seed. */
static const char *round_trip(char *p, unsigned int seed, char *det)
{
	unsigned long s1 = counter_in(cfile, "splits") - splits0;
	unsigned long f1 = counter_in(cfile, order_name) - folios0;
	const char *why = migrate(HMM_DMIRROR_MIGRATE_TO_SYS, p);
	unsigned long s2, f2, wf, c;
	int n;

	if (why)
		return why;
	s2 = counter_in(cfile, "splits") - splits0;
	f2 = counter_in(cfile, order_name) - folios0;
	n = present(p, NPAGES, &c);
	wf = whole(p, nf);
	snprintf(det, DET,
		 "to device: splits %lu, order-%d folios %lu; round trip: splits %lu, order-%d folios %lu; %d pages back, %lu of %lu folios whole%s",
		 s1, order, f1, s2, order, f2, n, wf, nf, rust ? "" : " (not checked for c)");
	why = check(p, 0, PMD_BYTES, seed);
	if (why || !rust)
		return why;
	if (s1 || f1 != nf)
		return "the folios did not move to the device whole";
	if (n != (int)NPAGES || wf != nf)
		return "not every folio came back whole";
	if (s2 || f2 != 2 * nf)
		return "the folios did not move back whole";
	return NULL;
}

static const char *fault_middle(char *p, unsigned int seed, char *det)
{
	size_t at = size + size / 2;
	unsigned long calls, c;
	const char *why;
	unsigned int v;
	int n1, w, others;

	write_file(FAULT_CALLS, "0");
	v = *(volatile unsigned int *)(p + at);
	calls = read_ulong(FAULT_CALLS);
	n1 = present(p + size, np, &c);
	w = whole(p + size, 1);
	others = present(p, np, &c) + (nf > 2 ? present(p + 2 * size, np, &c) : 0);
	snprintf(det, DET,
		 "migrate_to_ram calls %lu; folio 1: %d of %lu pages back, %s; folios 0 and 2: %d pages back%s",
		 calls, n1, np, w ? "one folio" : "not one folio", others,
		 rust ? "" : " (not checked for c)");
	if (v != ((unsigned int)at ^ seed))
		return "the faulting read returned other data";
	why = check(p, 0, PMD_BYTES, seed);
	if (why || !rust)
		return why;
	if (calls != 1)
		return "not one migrate_to_ram() call";
	if (n1 != (int)np || !w)
		return "folio 1 did not come back whole";
	return others ? "the fault moved a neighbouring folio" : NULL;
}

static const char *fault_no_folio(char *p, unsigned int seed, char *det)
{
	size_t at = size + size / 2;
	const char *why;
	unsigned long c;
	unsigned int v;
	int n1;

	/* The driver's next large allocation fails; the flag clears itself. */
	if (rust && set_flags(HMM_DMIRROR_FLAG_FAIL_ALLOC))
		return "setting the driver's flags failed";
	v = *(volatile unsigned int *)(p + at);
	n1 = present(p + size, np, &c);
	set_flags(0);
	snprintf(det, DET, "folio 1: %d of %lu pages back, %lu in a large folio%s", n1, np, c,
		 rust ? "" : " (c has no large device folio: flag not set, not checked)");
	if (v != ((unsigned int)at ^ seed))
		return "the faulting read returned other data";
	why = check(p, 0, PMD_BYTES, seed);
	if (why || !rust)
		return why;
	return n1 != (int)np || c ? "folio 1 did not come back as 4 KiB pages" : NULL;
}

static const char *partial_munmap(char *p, unsigned int seed, char *det)
{
	size_t from = size + size / 2, to = 2 * size;

	if (munmap(p + from, to - from))
		return "munmap failed";
	snprintf(det, DET, "bytes %zu..%zu unmapped, the rest read back", from, to);
	return check(p, 0, from, seed) ?: check(p, to, PMD_BYTES, seed);
}

static const char *partial_mprotect(char *p, unsigned int seed, char *det)
{
	size_t from = FOLIO2, to = from + size / 2;
	const char *why;

	if (mprotect(p + from, to - from, PROT_READ))
		return "mprotect failed";
	snprintf(det, DET, "bytes %zu..%zu read-only, read, made writable, rewritten", from, to);
	why = check(p, 0, PMD_BYTES, seed);
	if (why)
		return why;
	if (mprotect(p + from, to - from, PROT_READ | PROT_WRITE))
		return "mprotect back failed";
	fill(p, from, to, ~seed);
	why = check(p, from, to, ~seed);
	return why ?: check(p, 0, from, seed) ?: check(p, to, PMD_BYTES, seed);
}

static const char *fork_write(char *p, unsigned int seed, char *det)
{
	pid_t pid = fork();
	int status;

	if (pid == 0) {
		fill(p, 0, size, ~seed);
		_exit(check(p, 0, size, ~seed) || check(p, size, 2 * size, seed));
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return "fork or wait failed";
	snprintf(det, DET, "the child rewrote folio 0 and read folio 1");
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		return "the child read other data";
	return check(p, 0, PMD_BYTES, seed);
}

static const char *dontneed(char *p, unsigned int seed, char *det)
{
	size_t from = FOLIO2, to = from + size / 2;

	if (madvise(p + from, to - from, MADV_DONTNEED))
		return "madvise failed";
	snprintf(det, DET, "bytes %zu..%zu dropped, read as zeros", from, to);
	for (size_t i = from; i < to; i += sizeof(int))
		if (*(unsigned int *)(p + i))
			return "a dropped page does not read as zeros";
	return check(p, 0, from, seed) ?: check(p, to, PMD_BYTES, seed);
}

static const char *evict(char *p, unsigned int seed, char *det)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .npages = NPAGES };
	unsigned long wf, c;
	const char *why;
	int n;

	if (ioctl(dev_fd, HMM_DMIRROR_RELEASE, &cmd))
		return "releasing the device memory failed";
	n = present(p, NPAGES, &c);
	wf = whole(p, nf);
	snprintf(det, DET, "%d pages back, %lu of %lu folios whole%s", n, wf, nf,
		 rust ? "" : " (not checked for c)");
	if (n != (int)NPAGES)
		return "not every page came back";
	why = check(p, 0, PMD_BYTES, seed);
	if (why || !rust)
		return why;
	return wf == nf ? NULL : "not every folio came back whole";
}

/*
 * The other calls that meet device-private entries, one after another on
 * the device mTHPs: pagemap and smaps read over them, MADV_COLD and
 * MADV_PAGEOUT on folio 0, MADV_FREE on half of folio 1 (those pages may
 * then read as zeros), move_pages() to node 1 (none of them moves), and
 * mremap() of the whole region away and back. Every other byte keeps its
 * data.
 */
static const char *other_calls(char *p, unsigned int seed, char *det)
{
	static uint64_t pm[NPAGES];
	static void *pages[NPAGES];
	static int nodes[NPAGES], status[NPAGES];
	size_t free_to = size + size / 2;
	char buf[4096];
	long moved;
	char *q, *r;
	int fd;

	if (pread(pagemap_fd, pm, sizeof(pm), (uintptr_t)p / PAGE_BYTES * 8) != sizeof(pm))
		return "reading pagemap failed";
	fd = open("/proc/self/smaps", O_RDONLY);
	if (fd < 0)
		return "cannot open smaps";
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	if (madvise(p, size, MADV_COLD) || madvise(p, size, MADV_PAGEOUT) ||
	    madvise(p + size, size / 2, MADV_FREE))
		return "madvise failed";
	for (unsigned long i = 0; i < NPAGES; i++) {
		pages[i] = p + i * PAGE_BYTES;
		nodes[i] = 1;
	}
	moved = syscall(SYS_move_pages, 0, NPAGES, pages, nodes, status, MPOL_MF_MOVE);
	q = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	if (!q)
		return "cannot map the mremap() target";
	r = mremap(p, PMD_BYTES, PMD_BYTES, MREMAP_MAYMOVE | MREMAP_FIXED, q);
	if (r != q)
		return "mremap() failed";
	snprintf(det, DET, "pagemap, smaps, MADV_COLD, MADV_PAGEOUT, MADV_FREE, move_pages() %s, mremap()",
		 moved < 0 ? strerror(errno) : "done");
	for (size_t i = size; i < free_to; i += PAGE_BYTES) {
		/* A MADV_FREE page: its data, or zeros. */
		if (*(unsigned int *)(q + i) && check(q, i, i + PAGE_BYTES, seed))
			return "a MADV_FREE page reads neither its data nor zeros";
	}
	if (check(q, 0, size, seed) ?: check(q, free_to, PMD_BYTES, seed))
		return msg;
	if (mremap(q, PMD_BYTES, PMD_BYTES, MREMAP_MAYMOVE | MREMAP_FIXED, p) != p)
		return "mremap() back failed";
	return NULL;
}

/*
 * Whether exactly the pages of [@from, @to) of the region have the uffd-wp
 * bit in pagemap; *@set gets how many pages have it.
 */
static int wp_exactly(const char *p, size_t from, size_t to, unsigned long *set)
{
	static uint64_t pm[NPAGES];
	int ok = 1;

	*set = 0;
	if (pread(pagemap_fd, pm, sizeof(pm), (uintptr_t)p / PAGE_BYTES * 8) != sizeof(pm))
		return 0;
	for (unsigned long i = 0; i < NPAGES; i++) {
		int in = i * PAGE_BYTES >= from && i * PAGE_BYTES < to;
		int wp = !!(pm[i] & PM_UFFD_WP);

		*set += wp;
		ok &= wp == in;
	}
	return ok;
}

/*
 * Write-protects the first half of folio 1 with userfaultfd while it is on
 * the device: the bit must stay on exactly those pages through the
 * device-private entries and the migration back, whether the folio moves
 * whole or split. Unregistering then resolves it, and the pages take
 * writes again.
 */
static const char *uffd_wp(char *p, unsigned int seed, char *det)
{
	size_t from = size, to = size + size / 2;
	unsigned long on_dev, back;
	const char *why = NULL;
	int ok_dev, ok_back;
	int uffd = uffd_register(p, PMD_BYTES, UFFDIO_REGISTER_MODE_WP, from, to - from);

	if (uffd < 0)
		return "registering or write-protecting with userfaultfd failed";
	ok_dev = wp_exactly(p, from, to, &on_dev);
	why = migrate(HMM_DMIRROR_MIGRATE_TO_SYS, p);
	ok_back = wp_exactly(p, from, to, &back);
	snprintf(det, DET, "uffd-wp on %lu pages: %lu on the device, %lu back (want %lu, those alone)",
		 np / 2, on_dev, back, np / 2);
	if (uffd_unregister(uffd, p, PMD_BYTES) && !why)
		why = "unregistering failed";
	if (why)
		return why;
	if (!ok_dev)
		return "the device-private entries lost or gained the uffd-wp bit";
	if (!ok_back)
		return "the migration back lost or moved the uffd-wp bit";
	why = check(p, 0, PMD_BYTES, seed);
	if (why)
		return why;
	fill(p, from, to, ~seed);
	return check(p, from, to, ~seed);
}

/* Static: readers left waiting by a failed start still use them. */
static struct reader {
	pthread_t thread;
	const unsigned int *addr;
	unsigned int want;
	int bad;
} readers[READERS];
static pthread_barrier_t go;

static void *read_once(void *arg)
{
	struct reader *r = arg;

	pthread_barrier_wait(&go);
	r->bad = *(const volatile unsigned int *)r->addr != r->want;
	return NULL;
}

static const char *many_readers(char *p, unsigned int seed, char *det)
{
	const char *why = "cannot set fault_hold_us";
	unsigned long calls;
	int t, bad = 0;

	if (write_file(FAULT_HOLD, HOLD_US))
		goto out;
	write_file(FAULT_CALLS, "0");
	why = "pthread_create failed";
	pthread_barrier_init(&go, NULL, READERS);
	for (t = 0; t < READERS; t++) {
		size_t at = size + t * np / READERS * PAGE_BYTES;

		readers[t] = (struct reader){ .addr = (const unsigned int *)(p + at),
					      .want = (unsigned int)at ^ seed };
		if (pthread_create(&readers[t].thread, NULL, read_once, &readers[t]))
			goto out;
	}
	for (t = 0; t < READERS; t++)
		pthread_join(readers[t].thread, NULL);
	pthread_barrier_destroy(&go);
	calls = read_ulong(FAULT_CALLS);
	for (t = 0; t < READERS; t++)
		bad += readers[t].bad;
	snprintf(det, DET, "%d threads on pages 0..%lu of folio 1: migrate_to_ram calls %lu%s",
		 READERS, (READERS - 1) * np / READERS, calls,
		 rust ? "" : " (not checked for c)");
	why = bad ? "a reader read other data" : check(p, 0, PMD_BYTES, seed);
	/* At most 1.1 migrate_to_ram() calls per folio: one. */
	if (!why && rust && (!calls || calls * 10 > 11))
		why = "not one migrate_to_ram() call for the folio";
out:
	write_file(FAULT_HOLD, "0");
	return why;
}

/*
 * A bad destination for folio 0 (test_hmm's flag @inject): the engine must
 * refuse it, so the migration to the device reports the missing pages
 * (ENOENT), folio 0 stays mapped with its data, whole, and the others go.
 * Only the Rust engines collect an mTHP whole for test_hmm to pair with a
 * bad destination; the flag must not outlive the case.
 */
static const char *bad_dst(char *p, unsigned int seed, char *det, unsigned long long inject)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .ptr = (uintptr_t)mirror,
				       .npages = NPAGES };
	unsigned long c;
	const char *why;
	int ret, n0, rest;

	if (set_flags(inject))
		return "setting the driver's flags failed";
	ret = ioctl(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd) ? errno : 0;
	set_flags(0);
	n0 = present(p, np, &c);
	rest = present(p + size, NPAGES - np, &c);
	snprintf(det, DET, "migration: %s; folio 0: %d of %lu pages mapped, %s; %d other pages mapped",
		 ret ? strerror(ret) : "no error", n0, np,
		 whole(p, 1) ? "whole" : "not whole", rest);
	why = check(p, 0, PMD_BYTES, seed);
	if (why)
		return why;
	if (ret != ENOENT)
		return "the migration did not report the refused folio";
	if (n0 != (int)np || !whole(p, 1))
		return "folio 0 did not stay mapped whole";
	return rest ? "the folios after it did not move" : NULL;
}

static const char *dst_larger(char *p, unsigned int seed, char *det)
{
	return bad_dst(p, seed, det, HMM_DMIRROR_FLAG_DST_LARGER);
}

static const char *dst_foreign(char *p, unsigned int seed, char *det)
{
	return bad_dst(p, seed, det, HMM_DMIRROR_FLAG_DST_FOREIGN);
}

static const char *dst_misaligned(char *p, unsigned int seed, char *det)
{
	return bad_dst(p, seed, det, HMM_DMIRROR_FLAG_DST_MISALIGNED);
}

/* Cases that are given the region still in system memory. */
static int before_migration(const char *(*run)(char *, unsigned int, char *))
{
	return run == dst_larger || run == dst_foreign || run == dst_misaligned;
}

static const struct {
	const char *name;
	const char *(*run)(char *p, unsigned int seed, char *det);
} cases[NCASES] = {
	{ "round trip", round_trip },
	{ "fault on a middle page", fault_middle },
	{ "fault with no folio of that order", fault_no_folio },
	{ "partial munmap", partial_munmap },
	{ "partial mprotect", partial_mprotect },
	{ "fork with child writes", fork_write },
	{ "MADV_DONTNEED of part", dontneed },
	{ "eviction", evict },
	{ "8 readers on one device mTHP", many_readers },
	{ "pagemap, smaps, madvise, move_pages and mremap", other_calls },
	{ "uffd-wp on the device and back", uffd_wp },
	{ "destination of a larger order refused", dst_larger },
	{ "destination of another device refused", dst_foreign },
	{ "destination not at its folio's head refused", dst_misaligned },
};

/*
 * Moves a 2 MiB THP to the device and back, so that the device folios of
 * the next case are carved from a freed 2 MiB device folio, whose tail
 * pages still name their old head; then enables size @kb alone again.
 */
static const char *cycle_pmd_folio(int kb)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	const char *why = "cannot enable the 2 MiB size";

	if (!p)
		return "cannot map a 2 MiB area";
	if (!thp_size_only(&thp, PMD_BYTES >> 10, "always")) {
		madvise(p, PMD_BYTES, MADV_HUGEPAGE);
		fill(p, 0, PMD_BYTES, 0);
		why = migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p) ?:
		      migrate(HMM_DMIRROR_MIGRATE_TO_SYS, p) ?: check(p, 0, PMD_BYTES, 0);
	}
	munmap(p, PMD_BYTES);
	if (thp_size_only(&thp, kb, "always"))
		return "cannot enable the mTHP size again";
	return why;
}

/* Case @c on a fresh region; NULL when it passed, else why not. */
static const char *run_case(int c, unsigned int seed, char *det)
{
	const char *why = c ? NULL : cycle_pmd_folio(kb);
	char *p;

	if (why)
		return why;
	p = new_region(seed, &why);
	if (!p)
		return why;
	splits0 = counter_in(cfile, "splits");
	folios0 = counter_in(cfile, order_name);
	why = before_migration(cases[c].run) ? NULL : to_dev(p, seed);
	if (!why)
		why = cases[c].run(p, seed, det);
	munmap(p, PMD_BYTES);
	return why;
}

static void restore(void)
{
	set_flags(0);
	write_file(FAULT_HOLD, "0");
	thp_size_only(&thp, 0, NULL);
	write_file(ENGINE, "rust");
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	const int nengines = sizeof(engines) / sizeof(engines[0]);
	int nsizes, e, s, c;
	static char det[DET];

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, KPAGEFLAGS, &kpageflags_fd, NULL);
	nsizes = thp_sizes_save(&thp, PMD_BYTES >> 10);
	if (!nsizes)
		ksft_exit_skip("no mTHP size below %lu kB\n", PMD_BYTES >> 10);
	ksft_set_plan(nengines * nsizes * NCASES);
	for (e = 0; e < nengines; e++) {
		if (write_file(ENGINE, engines[e])) {
			restore();
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		}
		rust = strcmp(engines[e], "c") != 0;
		cfile = rust ? COUNTERS : COUNTERS_C;
		for (s = 0; s < nsizes; s++) {
			kb = thp.kb[s];
			size = (size_t)kb << 10;
			np = size / PAGE_BYTES;
			nf = PMD_BYTES / size;
			order = __builtin_ctzl(np);
			snprintf(order_name, sizeof(order_name), "folios_order_%d", order);
			if (thp_size_only(&thp, kb, "always")) {
				restore();
				ksft_exit_fail_msg("cannot enable the %d kB mTHP size alone\n", kb);
			}
			for (c = 0; c < NCASES; c++) {
				const char *name = cases[c].name, *why;

				det[0] = 0;
				if (before_migration(cases[c].run) &&
				    (!rust || (cases[c].run == dst_larger && order + 1 >= 9))) {
					/* No mTHP on the device to pair, or none larger. */
					ksft_test_result_skip("%s %dkB: %s: %s\n", engines[e], kb,
							      name, !rust ? "c splits mTHPs first" :
							      "no mTHP order above it");
					continue;
				}
				why = run_case(c, 0x9e3779b9u * (ksft_test_num() + 1), det);
				ksft_test_result(!why, "%s %dkB: %s: %s%s%s\n", engines[e], kb,
						 name, why ?: "", !why || !det[0] ? "" : "; ", det);
			}
		}
	}
	restore();
	close(dev_fd);
	ksft_finished();
}
