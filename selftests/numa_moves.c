// SPDX-License-Identifier: GPL-2.0
/*
 * numa_moves: NUMA migration meeting device-private memory. Under each
 * migrate_device engine, memory is migrated to test_hmm's device (512
 * small pages, then one THP) and, while it is there, moved to node 1 with
 * move_pages(), mbind(MPOL_BIND, MPOL_MF_MOVE) and migrate_pages(). None
 * of them may move a device-private page or fail the call for it, and the
 * data must be intact when the CPU reads it back from the device; the
 * kernel log (checked by the harness) must stay free of warnings. The
 * test kernel has two nodes (numa=fake=2); a missing node 1 fails the run.
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
#include <sys/syscall.h>
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define PAGE_BYTES 4096UL
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define MPOL_BIND 2
#define MPOL_DEFAULT 0
#define MPOL_MF_MOVE (1 << 1)
#define NODE1 "/sys/devices/system/node/node1"

static int dev_fd;

enum mover { MOVE_PAGES, MBIND, MIGRATE_PAGES, NR_MOVERS };
static const char *const mover_names[] = { "move_pages", "mbind", "migrate_pages" };

/* Moves @p..@p+PMD_BYTES to node 1 with @how; returns 0 or a reason. */
static const char *move_to_node1(enum mover how, char *p)
{
	unsigned long node1 = 1UL << 1, node0 = 1UL << 0;
	static void *pages[NPAGES];
	static int nodes[NPAGES], status[NPAGES];
	size_t i;

	switch (how) {
	case MOVE_PAGES:
		for (i = 0; i < NPAGES; i++) {
			pages[i] = p + i * PAGE_BYTES;
			nodes[i] = 1;
		}
		if (syscall(SYS_move_pages, 0, NPAGES, pages, nodes, status, MPOL_MF_MOVE) < 0)
			return "move_pages() failed";
		/* A device-private page is not on a node: none may be moved. */
		for (i = 0; i < NPAGES; i++)
			if (status[i] == 1)
				return "move_pages() moved a device-private page";
		return NULL;
	case MBIND:
		if (syscall(SYS_mbind, p, PMD_BYTES, MPOL_BIND, &node1, 8 * sizeof(node1),
			    MPOL_MF_MOVE))
			return "mbind() failed";
		if (syscall(SYS_mbind, p, PMD_BYTES, MPOL_DEFAULT, NULL, 0, 0))
			return "mbind(MPOL_DEFAULT) failed";
		return NULL;
	case MIGRATE_PAGES:
		if (syscall(SYS_migrate_pages, 0, 8 * sizeof(node0), &node0, &node1) < 0)
			return "migrate_pages() failed";
		return NULL;
	default:
		return "no such mover";
	}
}

/* One case, its data seeded with @n; reports its KTAP result. */
static void one(int n, const char *engine, int thp, enum mover how)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	void *mirror = malloc(PMD_BYTES);
	struct hmm_dmirror_cmd cmd;
	const char *why = NULL;
	size_t i;

	if (!p || !mirror) {
		why = "cannot map buffers";
		goto out;
	}
	madvise(p, PMD_BYTES, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (i = 0; i < PMD_BYTES; i++)
		p[i] = (char)(i * 13 + n);
	cmd = (struct hmm_dmirror_cmd){ .addr = (uintptr_t)p,
					.ptr = (uintptr_t)mirror,
					.npages = NPAGES };
	if (ioctl(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd) || cmd.cpages != NPAGES) {
		why = "migration to the device failed";
		goto out;
	}
	why = move_to_node1(how, p);
	if (why)
		goto out;
	/* The CPU reads bring every page back from the device. */
	for (i = 0; i < PMD_BYTES; i++)
		if (p[i] != (char)(i * 13 + n)) {
			why = "data differs after the move";
			goto out;
		}
out:
	ksft_test_result(!why, "%s %s %s%s%s\n", engine, thp ? "thp" : "4k", mover_names[how],
			 why ? ": " : "", why ? why : "");
	free(mirror);
	if (p)
		munmap(p, PMD_BYTES);
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	int e, k, m, n = 0;

	tap_begin(&dev_fd, NULL);
	if (access(NODE1, F_OK))
		ksft_exit_fail_msg("no %s: the test kernel must have two nodes\n", NODE1);
	ksft_set_plan(3 * 2 * NR_MOVERS);
	for (e = 0; e < 3; e++) {
		if (write_file(ENGINE, engines[e]))
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		for (k = 0; k < 2; k++)
			for (m = 0; m < NR_MOVERS; m++)
				one(++n, engines[e], k, m);
	}
	write_file(ENGINE, "rust");
	close(dev_fd);
	ksft_finished();
}
