// SPDX-License-Identifier: GPL-2.0
/*
 * evict_race: CPU faults racing with the driver's eviction of the same
 * device-private folios. Each round migrates a buffer (64 pages of 4 KiB,
 * or 4 THPs) to the device, then releases 8 reader threads over it, each
 * starting at another unit, while the main thread evicts all device memory
 * with test_hmm's HMM_DMIRROR_RELEASE (migrate_device_range() over every
 * chunk, then memunmap_pages(), which waits for the last reference to every
 * device page). A folio is either evicted or faulted back, whoever locks it
 * first; the other side must wait or skip it, never lose it.
 *
 * Run under each migrate_device engine. Every read must return the data,
 * every page must end up present in system memory, and the run must
 * finish. The readers start a little later each round, so the eviction
 * meets them at every point of their pass. Reported: migrate_to_ram() calls
 * per round, the rest of the pages having been evicted. KTAP output.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
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
#define THREADS 8
/* Slow faults down so that eviction overlaps them. */
#define HOLD_US "200"

struct reader {
	pthread_t thread;
	pthread_barrier_t *go;
	volatile char *buf;
	size_t unit;
	int units, first, delay_us, bad;
};

static int dev_fd;
static void *evict_addr;

static char want(int unit)
{
	return 'A' + unit % 26;
}

static void *read_all(void *arg)
{
	struct reader *r = arg;

	pthread_barrier_wait(r->go);
	usleep(r->delay_us);
	for (int i = 0; i < r->units; i++) {
		int u = (r->first + i) % r->units;

		if (r->buf[u * r->unit + r->unit - 1] != want(u))
			r->bad = 1;
	}
	return NULL;
}

/* Evicts all device memory; the ioctl wants a non-empty range, which the
 * release ignores. */
static void *evict(void *arg)
{
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)evict_addr, .npages = 1 };

	pthread_barrier_wait(arg);
	return (void *)(intptr_t)(ioctl(dev_fd, HMM_DMIRROR_RELEASE, &cmd) ? -1 : 0);
}

/* Whether every page of @p..@p+@size is present in system memory. */
static int all_present(int pagemap_fd, char *p, size_t size)
{
	for (size_t off = 0; off < size; off += PAGE_BYTES) {
		uint64_t pm = 0;

		if (pread(pagemap_fd, &pm, 8, (uintptr_t)(p + off) / PAGE_BYTES * 8) != 8 ||
		    !(pm >> 63 & 1))
			return 0;
	}
	return 1;
}

/*
 * @rounds rounds over @units units; returns 0, or -1 with @why set. The
 * readers start @step_us later each round, so that over the rounds the
 * eviction meets them at every point of their pass; @calls gets the
 * migrate_to_ram() calls of each round.
 */
static int run(int pagemap_fd, int thp, int units, int rounds, int step_us,
	       unsigned long *calls, const char **why)
{
	size_t unit = thp ? PMD_BYTES : PAGE_BYTES, size = unit * units;
	char *map = mmap(NULL, size + PMD_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *mirror = malloc(size);
	struct reader r[THREADS];
	pthread_barrier_t go;
	pthread_t evictor;
	void *evicted;
	char *buf;
	int i, t, round, ret = -1;

	*why = "cannot map buffers";
	if (map == MAP_FAILED || !mirror)
		goto out;
	buf = (char *)(((uintptr_t)map + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
	madvise(buf, size, thp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (i = 0; i < units; i++)
		memset(buf + i * unit, want(i), unit);
	evict_addr = buf;
	for (round = 0; round < rounds; round++) {
		struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)buf,
					       .ptr = (uintptr_t)mirror,
					       .npages = size / PAGE_BYTES };

		*why = "migration to the device failed";
		if (ioctl(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd) ||
		    cmd.cpages != size / PAGE_BYTES)
			goto out;
		write_file(FAULT_CALLS, "0");
		pthread_barrier_init(&go, NULL, THREADS + 1);
		*why = "pthread_create failed";
		if (pthread_create(&evictor, NULL, evict, &go))
			goto out;
		for (t = 0; t < THREADS; t++) {
			r[t] = (struct reader){ .go = &go, .buf = buf, .unit = unit,
						.units = units, .delay_us = round * step_us,
						.first = (t * units / THREADS + round) % units };
			if (pthread_create(&r[t].thread, NULL, read_all, &r[t]))
				goto out;
		}
		pthread_join(evictor, &evicted);
		for (t = 0; t < THREADS; t++)
			pthread_join(r[t].thread, NULL);
		pthread_barrier_destroy(&go);
		calls[round] = read_ulong(FAULT_CALLS);
		*why = "eviction failed";
		if (evicted)
			goto out;
		*why = "a read returned other data";
		for (t = 0; t < THREADS; t++)
			if (r[t].bad)
				goto out;
		*why = "a page is not back in system memory";
		if (!all_present(pagemap_fd, buf, size))
			goto out;
		*why = "data differs after the round";
		for (i = 0; i < units; i++)
			for (size_t b = 0; b < unit; b += PAGE_BYTES / 4)
				if (buf[i * unit + b] != want(i))
					goto out;
	}
	ret = 0;
out:
	free(mirror);
	if (map != MAP_FAILED)
		munmap(map, size + PMD_BYTES);
	return ret;
}

int main(void)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	static const struct { const char *name; int thp, units, rounds, step_us; } kinds[] = {
		{ "4k", 0, 64, 16, 250 },
		{ "thp", 1, 8, 16, 500 },
	};
	const int nengines = sizeof(engines) / sizeof(engines[0]);
	int pagemap_fd, e, k;

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, NULL);
	write_file(FAULT_HOLD, HOLD_US);
	ksft_set_plan(2 * nengines);
	for (e = 0; e < nengines; e++) {
		for (k = 0; k < 2; k++) {
			const char *why = "";
			unsigned long calls[16];
			char list[16 * 24];
			int i, len = 0;

			if (write_file(ENGINE, engines[e]))
				ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
			if (run(pagemap_fd, kinds[k].thp, kinds[k].units, kinds[k].rounds,
				kinds[k].step_us, calls, &why)) {
				ksft_test_result_fail("%s %s: %s\n", engines[e], kinds[k].name,
						      why);
				continue;
			}
			list[0] = 0;
			for (i = 0; i < kinds[k].rounds; i++)
				len += snprintf(list + len, sizeof(list) - len, " %lu", calls[i]);
			ksft_test_result_pass("%s %s: %d rounds of %d units x %d readers against an eviction; migrate_to_ram calls per round, readers %d us later each round:%s\n",
					      engines[e], kinds[k].name, kinds[k].rounds,
					      kinds[k].units, THREADS, kinds[k].step_us, list);
		}
	}
	write_file(FAULT_HOLD, "0");
	write_file(ENGINE, "rust");
	ksft_finished();
}
