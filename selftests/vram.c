// SPDX-License-Identifier: GPL-2.0
/*
 * vram: the folio-migrate VRAM driver (/dev/folio_vram) under each
 * migrate_device engine. Round trips of 4 KiB pages faulted in backwards,
 * of each mTHP size and of a 2 MiB THP, each going to the VRAM in one copy
 * (the driver places the folios of a migration next to each other); CPU
 * faults of VRAM pages, 8 readers on one page, fork, partial munmap and
 * mprotect; a working set twice the VRAM migrated in turns (the driver
 * evicts its oldest chunks); closing the device with pages on it; and bad
 * input, which gets an errno with the data left intact. Every case checks
 * the data. KTAP output.
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
#include <sys/wait.h>
#include <unistd.h>

#include "kselftest.h"
#include "util.h"
#include "vram_uapi.h"

#define PAGE_BYTES 4096UL
#define PMD_BYTES (2UL << 20)
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define READERS 8

static int vram_fd, hmm_fd;
static struct thp_sizes thp;

static void fill(char *p, size_t n, unsigned int seed)
{
	/* Backwards, so that the pages do not follow each other in memory. */
	for (size_t i = n; i-- > 0;)
		p[i] = (char)(i * 7 + seed);
}

/* NULL, or where @p first differs from what fill() wrote. */
static const char *check(const char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (char)(i * 7 + seed))
			return "data differs";
	return NULL;
}

static struct folio_vram_stats stats(void)
{
	struct folio_vram_stats s = { 0 };

	ioctl(vram_fd, FOLIO_VRAM_STATS, &s);
	return s;
}

/* The ioctl @req on @len bytes at @p: 0 or -errno; *@done its pages. */
static int migrate(int fd, unsigned long req, void *p, size_t len, unsigned long *done)
{
	struct folio_vram_range r = { .addr = (uintptr_t)p, .npages = len / PAGE_BYTES };
	int ret = ioctl(fd, req, &r) ? -errno : 0;

	if (done)
		*done = r.done;
	return ret;
}

/* 2 MiB to the VRAM and back by ioctl, in one copy in; kb: THP size. */
static const char *round_trip(int kb, char *det)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	struct folio_vram_stats a, b;
	unsigned long in = 0, out = 0, allocs;
	const char *why = NULL;

	if (!p)
		return "cannot map";
	allocs = kb ? thp_fault_allocs(kb) : 0;
	madvise(p, PMD_BYTES, kb ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	if (kb && kb != 2048)
		thp_size_only(&thp, kb, "always");
	fill(p, PMD_BYTES, kb);
	if (kb && kb != 2048)
		thp_size_only(&thp, 0, NULL);
	/* The buffer must be made of folios of that size. */
	if (kb && thp_fault_allocs(kb) - allocs != 2048 / (unsigned long)kb) {
		munmap(p, PMD_BYTES);
		return "the buffer is not made of folios of that size";
	}
	a = stats();
	if (migrate(vram_fd, FOLIO_VRAM_MIGRATE_TO_VRAM, p, PMD_BYTES, &in))
		why = "migration to the VRAM failed";
	b = stats();
	if (!why && migrate(vram_fd, FOLIO_VRAM_MIGRATE_TO_RAM, p, PMD_BYTES, &out))
		why = "migration back failed";
	snprintf(det, 160, "%lu pages in, %lu out, %llu copies in", in, out,
		 (unsigned long long)(b.copies - a.copies));
	if (!why && (in != NPAGES || out != NPAGES))
		why = "not every page migrated";
	if (!why && b.copies - a.copies != 1)
		why = "more than one copy for 2 MiB";
	if (!why)
		why = check(p, PMD_BYTES, kb);
	munmap(p, PMD_BYTES);
	return why;
}

/* A buffer of @len bytes on the VRAM, in THPs if @huge. */
static char *on_vram(size_t len, int huge, unsigned int seed)
{
	char *p = map_aligned(len, PMD_BYTES, 0);
	unsigned long done;

	if (!p)
		return NULL;
	madvise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	fill(p, len, seed);
	if (migrate(vram_fd, FOLIO_VRAM_MIGRATE_TO_VRAM, p, len, &done) ||
	    done != len / PAGE_BYTES) {
		munmap(p, len);
		return NULL;
	}
	return p;
}

/*
 * The driver's pagemap sets PGMAP_VMA_LOCKED_FAULTS: under the Rust
 * engines a fault taken under the per-VMA lock reaches the driver at once,
 * so none may be retried under the mmap lock. "c" still retries them, and
 * its fault path does not count them.
 */
static const char *cpu_faults(const char *eng, int huge, char *det)
{
	struct folio_vram_stats a = stats(), b;
	unsigned long retries = counter("fault_retries");
	char *p = on_vram(PMD_BYTES, huge, 11);
	const char *why;

	if (!p)
		return "cannot put a buffer on the VRAM";
	why = check(p, PMD_BYTES, 11);
	b = stats();
	retries = counter("fault_retries") - retries;
	snprintf(det, 160, "%llu pages faulted back, %lu faults retried",
		 (unsigned long long)(b.faulted - a.faulted), retries);
	if (!why && b.faulted - a.faulted != NPAGES)
		why = "not every page came back by a fault";
	if (!why && strcmp(eng, "c") && retries)
		why = "a fault was retried under the mmap lock";
	munmap(p, PMD_BYTES);
	return why;
}

static const char *reader_page;

static void *reader(void *arg)
{
	size_t off = reader_page - (const char *)arg;

	/* check() of the page at its offset in the buffer. */
	for (size_t i = 0; i < PAGE_BYTES; i++)
		if (reader_page[i] != (char)((off + i) * 7 + 13))
			return (void *)"data differs";
	return NULL;
}

static const char *readers(char *det)
{
	char *p = on_vram(PMD_BYTES, 1, 13);
	pthread_t t[READERS];
	const char *why = NULL;
	int i, n = 0;

	if (!p)
		return "cannot put a buffer on the VRAM";
	reader_page = p + PMD_BYTES / 2;
	for (i = 0; i < READERS; i++)
		n += !pthread_create(&t[i], NULL, reader, p);
	for (i = 0; i < n; i++) {
		void *r;

		pthread_join(t[i], &r);
		if (r)
			why = "a reader saw other data";
	}
	snprintf(det, 160, "%d readers of one page", n);
	if (!why && n != READERS)
		why = "cannot start the readers";
	munmap(p, PMD_BYTES);
	return why;
}

static const char *fork_child(char *det)
{
	char *p = on_vram(PMD_BYTES, 1, 17);
	const char *why;
	int status = -1;
	pid_t pid;

	if (!p)
		return "cannot put a buffer on the VRAM";
	pid = fork();
	if (!pid)
		_exit(check(p, PMD_BYTES, 17) ? 1 : 0);
	waitpid(pid, &status, 0);
	snprintf(det, 160, "child exit status %d", WEXITSTATUS(status));
	why = pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status) ?
	      "the child read other data" : check(p, PMD_BYTES, 17);
	munmap(p, PMD_BYTES);
	return why;
}

static const char *partial_munmap(char *det)
{
	char *p = on_vram(PMD_BYTES, 1, 19);
	const char *why;

	if (!p)
		return "cannot put a buffer on the VRAM";
	munmap(p + PMD_BYTES / 2, PMD_BYTES / 2);
	why = check(p, PMD_BYTES / 2, 19);
	snprintf(det, 160, "second half unmapped, first half read");
	munmap(p, PMD_BYTES / 2);
	return why;
}

static const char *partial_mprotect(char *det)
{
	char *p = on_vram(PMD_BYTES, 1, 23);
	const char *why = "mprotect failed";

	if (!p)
		return "cannot put a buffer on the VRAM";
	if (!mprotect(p, PMD_BYTES / 2, PROT_READ))
		why = check(p, PMD_BYTES, 23);
	snprintf(det, 160, "first half read-only");
	munmap(p, PMD_BYTES);
	return why;
}

static const char *twice_the_vram(char *det)
{
	struct folio_vram_stats a = stats(), b;
	size_t len = 2 * a.chunks * PMD_BYTES, off;
	char *p = map_aligned(len, PMD_BYTES, 0);
	const char *why = NULL;

	if (!p || !a.chunks)
		return "cannot map twice the VRAM";
	madvise(p, len, MADV_NOHUGEPAGE);
	fill(p, len, 29);
	for (off = 0; !why && off < len; off += PMD_BYTES)
		if (migrate(vram_fd, FOLIO_VRAM_MIGRATE_TO_VRAM, p + off, PMD_BYTES, NULL))
			why = "a migration to the VRAM failed";
	b = stats();
	snprintf(det, 160, "%zu MiB through %llu MiB of VRAM: %llu chunks evicted",
		 len >> 20, (unsigned long long)a.chunks * 2,
		 (unsigned long long)(b.evictions - a.evictions));
	if (!why && b.evictions - a.evictions < a.chunks)
		why = "fewer evictions than the VRAM has chunks";
	if (!why)
		why = check(p, len, 29);
	munmap(p, len);
	return why;
}

static const char *close_with_pages(char *det)
{
	int fd = open(FOLIO_VRAM, O_RDWR);
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	unsigned long done = 0;
	const char *why = NULL;

	if (fd < 0 || !p)
		return "cannot open the device or map";
	madvise(p, PMD_BYTES, MADV_HUGEPAGE);
	fill(p, PMD_BYTES, 31);
	if (migrate(fd, FOLIO_VRAM_MIGRATE_TO_VRAM, p, PMD_BYTES, &done))
		why = "migration to the VRAM failed";
	close(fd);
	snprintf(det, 160, "%lu pages on the VRAM at close, %llu chunks in use after",
		 done, (unsigned long long)stats().chunks_in_use);
	if (!why && stats().chunks_in_use)
		why = "closing left chunks in use";
	if (!why)
		why = check(p, PMD_BYTES, 31);
	munmap(p, PMD_BYTES);
	return why;
}

/* One bad range: the errno it must get, the data unchanged. */
static const char *bad_input(char *det)
{
	char *p = map_aligned(2 * PMD_BYTES, PMD_BYTES, 0);
	char path[] = "/tmp/vram-XXXXXX";
	struct {
		const char *name;
		size_t off, len;
		int want;
	} cases[] = {
		{ "unaligned", 1, PAGE_BYTES, EINVAL },
		{ "zero length", 0, 0, EINVAL },
		{ "past the VMA end", PMD_BYTES, 2 * PMD_BYTES, EINVAL },
	};
	const char *why = NULL;
	char *file;
	size_t c;
	int fd, ret;

	if (!p)
		return "cannot map";
	fill(p, 2 * PMD_BYTES, 37);
	for (c = 0; !why && c < sizeof(cases) / sizeof(cases[0]); c++) {
		ret = migrate(vram_fd, FOLIO_VRAM_MIGRATE_TO_VRAM, p + cases[c].off,
			      cases[c].len, NULL);
		if (ret != -cases[c].want) {
			snprintf(det, 160, "%s: got %s", cases[c].name, strerror(-ret));
			why = "not the errno this input must get";
		}
	}
	if (!why)
		why = check(p, 2 * PMD_BYTES, 37);
	munmap(p, 2 * PMD_BYTES);
	if (why)
		return why;
	/* Shared file memory is not anonymous: nothing to collect. */
	fd = mkstemp(path);
	if (fd < 0 || ftruncate(fd, PMD_BYTES))
		return "cannot make a file";
	unlink(path);
	file = mmap(NULL, PMD_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (file == MAP_FAILED)
		return "cannot map the file";
	fill(file, PMD_BYTES, 41);
	ret = migrate(vram_fd, FOLIO_VRAM_MIGRATE_TO_VRAM, file, PMD_BYTES, NULL);
	snprintf(det, 160, "EINVAL for unaligned, zero length, past the VMA; %s for a shared file",
		 strerror(-ret));
	if (ret != -ENOENT)
		why = "shared file memory did not get ENOENT";
	if (!why)
		why = check(file, PMD_BYTES, 41);
	munmap(file, PMD_BYTES);
	return why;
}

static void report(const char *engine, const char *name, const char *why, const char *det)
{
	ksft_test_result(!why, "%s %s: %s%s%s\n", engine, name, why ?: "", why ? "; " : "", det);
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	int nsizes, e, s;
	char det[160];

	tap_begin(&hmm_fd, FOLIO_VRAM, &vram_fd, NULL);
	nsizes = thp_sizes_save(&thp, PMD_BYTES >> 10);
	ksft_set_plan(3 * (2 + nsizes + 9));
	for (e = 0; e < 3; e++) {
		const char *eng = engines[e];

		if (write_file(ENGINE, eng))
			ksft_exit_fail_msg("cannot select engine %s\n", eng);
		det[0] = 0;
		report(eng, "4 KiB round trip", round_trip(0, det), det);
		for (s = 0; s < nsizes; s++) {
			char name[32];

			det[0] = 0;
			snprintf(name, sizeof(name), "%d kB mTHP round trip", thp.kb[s]);
			report(eng, name, round_trip(thp.kb[s], det), det);
		}
		det[0] = 0;
		report(eng, "THP round trip", round_trip(2048, det), det);
		det[0] = 0;
		report(eng, "CPU faults, 4 KiB", cpu_faults(eng, 0, det), det);
		det[0] = 0;
		report(eng, "CPU faults, THP", cpu_faults(eng, 1, det), det);
		det[0] = 0;
		report(eng, "8 readers on one page", readers(det), det);
		det[0] = 0;
		report(eng, "fork", fork_child(det), det);
		det[0] = 0;
		report(eng, "partial munmap", partial_munmap(det), det);
		det[0] = 0;
		report(eng, "partial mprotect", partial_mprotect(det), det);
		det[0] = 0;
		report(eng, "twice the VRAM in turns", twice_the_vram(det), det);
		det[0] = 0;
		report(eng, "close with pages on the VRAM", close_with_pages(det), det);
		det[0] = 0;
		report(eng, "bad input", bad_input(det), det);
	}
	thp_size_only(&thp, 0, NULL);
	write_file(ENGINE, "rust");
	ksft_finished();
}
