// SPDX-License-Identifier: GPL-2.0
/*
 * thp_fault: one CPU fault on a 2 MiB device-private THP, under each
 * migrate_device engine.
 *
 * - With a free 2 MiB page, migrate_to_ram() brings the whole folio back as
 *   a THP: after the one fault, all 512 pages are present and part of a THP.
 * - With none (test_hmm's HMM_DMIRROR_FLAG_FAIL_ALLOC fails its 2 MiB
 *   allocation, and it falls back to 512 pages of 4 KiB), the device folio
 *   is split and migrated page by page; no data may be lost. Under the Rust
 *   engine all 512 pages must be back after the one fault. 7.3 cannot split
 *   the fault folio there (the fault path's reference makes
 *   folio_split_unmapped() fail), restores it and migrates one page per
 *   later fault; for engine c the pages back are reported, not checked.
 *
 * khugepaged may collapse the 4 KiB pages the fault brought back into a
 * THP while they are counted, which would read as pages brought back in a
 * THP. So THP is disabled for the process (PR_SET_THP_DISABLE) from before
 * the fault until the pages are counted: the fault path does not look at
 * it, and khugepaged checks it again under mmap_lock before it collapses.
 *
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
#include <sys/prctl.h>
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define PAGE_BYTES 4096UL
#define PMD_PAGES (PMD_BYTES / PAGE_BYTES)

static int dev_fd, pagemap_fd, kpageflags_fd;

/* Pages of @p..@p+2 MiB present in system memory, and of those in a THP. */
static int count_back(char *p, int *thp)
{
	unsigned long in_thp;
	int present = pages_present(pagemap_fd, kpageflags_fd, p, PMD_PAGES,
				    1ULL << KPF_THP, &in_thp);

	*thp = in_thp;
	return present;
}

/*
 * Migrates a filled THP to the device, faults it once (with the driver's
 * 2 MiB allocation failing if @no_thp), and reports how many pages came
 * back and whether all data reads back; returns -1 with @why on an error.
 */
static int one_fault(int no_thp, int *present, int *thp, const char **why)
{
	char *map = mmap(NULL, 2 * PMD_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *mirror = malloc(PMD_BYTES);
	struct hmm_dmirror_cmd cmd;
	char *p;
	int ret = -1, thp_off = 0;

	*why = "cannot map buffers";
	if (map == MAP_FAILED || !mirror)
		goto out;
	p = (char *)(((uintptr_t)map + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
	madvise(p, PMD_BYTES, MADV_HUGEPAGE);
	for (unsigned long i = 0; i < PMD_BYTES; i += sizeof(int))
		*(int *)(p + i) = (int)i;
	*why = "the buffer is not a THP";
	if (count_back(p, thp) != PMD_PAGES || *thp != PMD_PAGES)
		goto out;
	cmd = (struct hmm_dmirror_cmd){ .addr = (uintptr_t)p, .ptr = (uintptr_t)mirror,
					.npages = PMD_PAGES };
	*why = "migration to the device failed";
	if (ioctl(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd) || cmd.cpages != PMD_PAGES)
		goto out;
	*why = "the THP did not move to the device";
	if (count_back(p, thp))
		goto out;
	if (no_thp) {
		/* The driver's next 2 MiB allocation fails; the flag clears itself. */
		cmd = (struct hmm_dmirror_cmd){ .addr = (uintptr_t)p,
						.npages = HMM_DMIRROR_FLAG_FAIL_ALLOC };
		*why = "setting the driver's flags failed";
		if (ioctl(dev_fd, HMM_DMIRROR_FLAGS, &cmd))
			goto out;
	}
	*why = "cannot disable THP for khugepaged";
	if (no_thp && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		goto out;
	thp_off = no_thp;
	*why = "the faulting read returned other data";
	if (*(volatile int *)(p + PMD_BYTES / 2) != (int)(PMD_BYTES / 2))
		goto out;
	*present = count_back(p, thp);
	*why = "cannot enable THP again";
	thp_off = 0;
	if (no_thp && prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0))
		goto out;
	*why = "data lost";
	for (unsigned long i = 0; i < PMD_BYTES; i += sizeof(int))
		if (*(int *)(p + i) != (int)i)
			goto out;
	ret = 0;
out:
	if (thp_off)
		prctl(PR_SET_THP_DISABLE, 0, 0, 0, 0);
	free(mirror);
	if (map != MAP_FAILED)
		munmap(map, 2 * PMD_BYTES);
	return ret;
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	const int nengines = sizeof(engines) / sizeof(engines[0]);
	int e;

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, KPAGEFLAGS, &kpageflags_fd, NULL);
	ksft_set_plan(2 * nengines);
	for (e = 0; e < nengines; e++) {
		int rust = strcmp(engines[e], "c") != 0;
		const char *why;
		int present, thp, ok;

		if (write_file(ENGINE, engines[e]))
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);

		present = thp = 0;
		ok = !one_fault(0, &present, &thp, &why);
		if (ok && (present != PMD_PAGES || thp != PMD_PAGES))
			ok = 0, why = "the folio did not come back whole as a THP";
		ksft_test_result(ok,
				 "%s: THP fault with a 2 MiB page free: %s%s%d pages back, %d in a THP\n",
				 engines[e], ok ? "" : why, ok ? "" : "; ", present, thp);

		present = thp = 0;
		ok = !one_fault(1, &present, &thp, &why);
		if (ok && rust && (present != PMD_PAGES || thp))
			ok = 0, why = "not all pages came back as 4 KiB pages";
		ksft_test_result(ok,
				 "%s: THP fault with no 2 MiB page: %s%s%d pages back after the fault, %d in a THP%s\n",
				 engines[e], ok ? "" : why, ok ? "" : "; ", present, thp,
				 rust ? "" : " (7.3 cannot split the fault folio; not checked)");
	}
	write_file(ENGINE, "rust");
	ksft_finished();
}
