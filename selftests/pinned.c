// SPDX-License-Identifier: GPL-2.0
/*
 * pinned: migrations to the device that meet a page someone pinned, or
 * folios a forked child shares, under each migrate_device engine.
 *
 * - A 2 MiB run of 4 KiB pages with one page in the middle pinned for
 *   the long term (pin_user_pages() through CONFIG_GUP_TEST's
 *   PIN_LONGTERM_TEST_START): the pinned page stays mapped in system
 *   memory with its data, every other page moves. The Rust engine clears
 *   the whole run's entries before it flushes once and shares the pages,
 *   so this is where it must find the pin and put that entry back.
 * - The same with 64 KiB mTHPs: a pinned folio can be neither collected
 *   whole nor split, so, as in 7.3, the walk gives up on the rest of the
 *   PMD: the folios before it move, it and the ones after stay.
 * - 64 KiB mTHPs that a forked child still maps: they are not the
 *   parent's alone, so the Rust engine splits them, and every page moves;
 *   the child reads its own data afterwards.
 * - A 2 MiB run of 4 KiB pages whose second half a forked child still
 *   maps (the parent wrote the first half again after the fork): every
 *   page moves and both read their data. The Rust engine's finalize puts
 *   the first half back by walking the page table and only the shared
 *   half through the rmap, so it must count exactly one rmap walk per
 *   shared page; C walks the rmap for every page.
 * - A PMD-mapped 2 MiB THP that a forked child still maps: it moves
 *   whole, and its PMD migration entries, the parent's and the child's,
 *   go back through one rmap walk under every engine (the Rust engine's
 *   finalize puts back by page-table walk only an exclusive PMD entry);
 *   both read their data.
 *
 * The migration reports the page left behind (the driver cannot read it
 * back: ENOENT). Data is checked everywhere, under every engine; under
 * the Rust engines the pinned 4 KiB page must be found when the batch
 * shares it (one failed share), not later by unmap. KTAP output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
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
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define MTHP_KB 64
#define PINNED (NPAGES / 2 + 3)

static int dev_fd, pagemap_fd, kpageflags_fd, gup_fd;
/* The engine is a Rust one, whose counters say where the pin was seen. */
static int rust;
static unsigned int mirror[PMD_BYTES / sizeof(int)];
static struct thp_sizes thp;
static char msg[160];

static void fill(char *p, unsigned int seed)
{
	for (size_t i = 0; i < PMD_BYTES; i += sizeof(int))
		*(unsigned int *)(p + i) = (unsigned int)i ^ seed;
}

static const char *check(const char *p, unsigned int seed)
{
	for (size_t i = 0; i < PMD_BYTES; i += sizeof(int)) {
		if (*(const unsigned int *)(p + i) != ((unsigned int)i ^ seed)) {
			snprintf(msg, sizeof(msg), "data lost at byte %zu", i);
			return msg;
		}
	}
	return NULL;
}

/* Migrates the region to the device; returns the ioctl's errno, or 0. */
static int to_dev(char *p)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .ptr = (uintptr_t)mirror,
				       .npages = NPAGES };

	return ioctl(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd) ? errno : 0;
}

/*
 * Pages of the region present in system memory, and of those the ones
 * below page @below; *@pinned_back for the pinned one.
 */
static int present(const char *p, unsigned long below, int *before, int *pinned_back)
{
	*before = pages_present(pagemap_fd, kpageflags_fd, p, below, 0, NULL);
	*pinned_back = pages_present(pagemap_fd, kpageflags_fd, p + PINNED * PAGE_BYTES, 1, 0,
				     NULL);
	return pages_present(pagemap_fd, kpageflags_fd, p, NPAGES, 0, NULL);
}

/*
 * A fresh 2 MiB region of 4 KiB pages (@mthp 0) or of 64 KiB folios, with
 * the page PINNED pinned; all but that page must move to the device.
 */
static const char *pinned_page(int mthp, unsigned int seed, char *det, size_t len)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	unsigned long folio_start = mthp ? PINNED & ~(MTHP_KB / 4 - 1UL) : PINNED;
	struct pin_longterm_test pin;
	int ret, n, before, pinned_back;
	const char *why = NULL;
	unsigned long shares, walks;

	if (!p)
		return "cannot map a 2 MiB area";
	madvise(p, PMD_BYTES, mthp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	fill(p, seed);
	pin = (struct pin_longterm_test){ .addr = (uintptr_t)(p + PINNED * PAGE_BYTES),
					  .size = PAGE_BYTES,
					  .flags = PIN_LONGTERM_TEST_FLAG_USE_WRITE };
	if (ioctl(gup_fd, PIN_LONGTERM_TEST_START, &pin)) {
		munmap(p, PMD_BYTES);
		return "pinning the page failed";
	}
	shares = counter("fail_anon_share");
	walks = counter("rmap_restores");
	ret = to_dev(p);
	shares = counter("fail_anon_share") - shares;
	walks = counter("rmap_restores") - walks;
	n = present(p, folio_start, &before, &pinned_back);
	snprintf(det, len, "migration: %s; %d pages left in system memory, %d before the pinned folio, the pinned page %s; failed shares %lu, rmap walks in finalize %lu%s",
		 ret ? strerror(ret) : "no error", n, before, pinned_back ? "among them" : "not",
		 shares, walks, rust ? "" : " (Rust counters, not checked for c)");
	if (ret != ENOENT)
		why = "the migration did not report the pinned page";
	else if (!pinned_back || before)
		why = "the pinned page moved, or a page before its folio stayed";
	else if (!mthp && n != 1)
		why = "a page other than the pinned one stayed";
	else if (!mthp && rust && shares != 1)
		/* Collection, not unmap, must have seen the pin. */
		why = "the batch did not find the pin when it shared the page";
	else if (!mthp && rust && walks)
		/* The pinned page was never collected; the rest is exclusive. */
		why = "finalize walked the rmap for pages the run mapped alone";
	ioctl(gup_fd, PIN_LONGTERM_TEST_STOP);
	why = check(p, seed) ?: why;
	munmap(p, PMD_BYTES);
	return why;
}

/* What a forked child shares with the parent in shared_with_child(). */
enum shared {
	SHARED_MTHP,
	SHARED_SMALL,
	SHARED_THP,
};

/*
 * Folios a forked child still maps when the parent migrates them: 64 KiB
 * mTHPs (SHARED_MTHP); 4 KiB pages whose first half the parent wrote
 * again after the fork, so that only the second half stays shared
 * (SHARED_SMALL); or one PMD-mapped 2 MiB THP (SHARED_THP), whose PMD
 * migration entry is then read-only and not exclusive. Every page must
 * move and both must read their data. For the 4 KiB pages finalize must
 * walk the rmap for the shared pages only (Rust) or for every page (C);
 * for the THP, once under every engine: the child's entry is found only
 * through the rmap. *@skip when the kernel gave no THP.
 */
static const char *shared_with_child(enum shared kind, unsigned int seed, char *det,
				     size_t len, int *skip)
{
	int small = kind == SHARED_SMALL, huge = kind == SHARED_THP;
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	int go[2], status, ret, n, before, pinned_back;
	unsigned long walks, splits, pmds, want = huge ? 1 : rust ? NPAGES / 2 : NPAGES;
	const char *file = rust ? COUNTERS : COUNTERS_C;
	const char *why;
	char wants[32];
	uint64_t kf;
	pid_t pid;
	char c = 0;

	if (!p || pipe(go))
		return "cannot map a 2 MiB area or make a pipe";
	madvise(p, PMD_BYTES, small ? MADV_NOHUGEPAGE : MADV_HUGEPAGE);
	fill(p, seed);
	if (huge && !(page_flags(pagemap_fd, kpageflags_fd, p, &kf) && (kf >> KPF_THP & 1))) {
		*skip = 1;
		munmap(p, PMD_BYTES);
		close(go[0]);
		close(go[1]);
		return "no THP for the region";
	}
	pid = fork();
	if (pid == 0) {
		/* Wait for the parent's migration, then read the data. */
		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		_exit(check(p, seed) ? 1 : 0);
	}
	close(go[0]);
	if (pid < 0)
		return "fork failed";
	/* Copy on write: the first half becomes the parent's alone. */
	for (size_t i = 0; small && i < PMD_BYTES / 2; i += PAGE_BYTES)
		*(volatile char *)(p + i) = *(volatile char *)(p + i);
	walks = counter_in(file, "rmap_restores");
	splits = counter_in(file, "splits");
	pmds = counter_in(file, "pmd_migration_entries");
	ret = to_dev(p);
	walks = counter_in(file, "rmap_restores") - walks;
	splits = counter_in(file, "splits") - splits;
	pmds = counter_in(file, "pmd_migration_entries") - pmds;
	n = present(p, 0, &before, &pinned_back);
	if (write(go[1], &c, 1) != 1)
		kill(pid, SIGKILL);
	close(go[1]);
	waitpid(pid, &status, 0);
	snprintf(wants, sizeof(wants), small || huge ? "want %lu" : "not checked", want);
	snprintf(det, len, "migration: %s; %d pages left in system memory; rmap walks in finalize %lu (%s); %lu PMD migration entries, %lu splits; child %s",
		 ret ? strerror(ret) : "no error", n, walks, wants, pmds, splits,
		 WIFEXITED(status) && !WEXITSTATUS(status) ? "read its data" : "failed");
	why = check(p, seed);
	if (!why && ret)
		why = "the migration failed";
	if (!why && n)
		why = "pages of shared folios stayed";
	if (!why && huge && (splits || !pmds))
		why = "the THP did not move whole";
	if (!why && (small || huge) && walks != want)
		why = "finalize walked the rmap for other folios than the shared ones";
	if (!why && (!WIFEXITED(status) || WEXITSTATUS(status)))
		why = "the child read other data";
	munmap(p, PMD_BYTES);
	return why;
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	static const char *const names[] = {
		"pinned 4 KiB page in a 2 MiB run",
		"pinned page in a 64 KiB mTHP",
		"64 KiB mTHPs shared with a forked child",
		"4 KiB pages, half shared with a forked child",
		"a 2 MiB THP shared with a forked child",
	};
	int e, k;
	char det[300];

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, KPAGEFLAGS, &kpageflags_fd, NULL);
	gup_fd = open(GUP_TEST, O_RDWR);
	if (gup_fd < 0)
		ksft_exit_skip("cannot open %s (CONFIG_GUP_TEST=n)\n", GUP_TEST);
	thp_sizes_save(&thp, PMD_BYTES >> 10);
	if (thp_size_only(&thp, MTHP_KB, "always")) {
		thp_size_only(&thp, 0, NULL);
		ksft_exit_skip("no %d kB mTHP size\n", MTHP_KB);
	}
	ksft_set_plan(3 * 5);
	for (e = 0; e < 3; e++) {
		if (write_file(ENGINE, engines[e])) {
			thp_size_only(&thp, 0, NULL);
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		}
		rust = strcmp(engines[e], "c") != 0;
		for (k = 0; k < 5; k++) {
			unsigned int seed = 0x2545f491u * (ksft_test_num() + 1);
			const char *why;
			int skip = 0;

			det[0] = 0;
			if (k == 4) {
				/* Only the PMD size: the region is one THP. */
				thp_size_only(&thp, PMD_BYTES >> 10, "always");
				why = shared_with_child(SHARED_THP, seed, det, sizeof(det), &skip);
				thp_size_only(&thp, MTHP_KB, "always");
			} else if (k >= 2) {
				why = shared_with_child(k == 3 ? SHARED_SMALL : SHARED_MTHP, seed, det,
							sizeof(det), &skip);
			} else {
				why = pinned_page(k, seed, det, sizeof(det));
			}
			if (skip)
				ksft_test_result_skip("%s: %s: %s\n", engines[e], names[k], why);
			else
				ksft_test_result(!why, "%s: %s: %s%s%s\n", engines[e], names[k],
						 why ?: "", why ? "; " : "", det);
		}
	}
	thp_size_only(&thp, 0, NULL);
	write_file(ENGINE, "rust");
	ksft_finished();
}
