// SPDX-License-Identifier: GPL-2.0
/*
 * fault_livelock: the seed 003 scenario. Memory is migrated to the device,
 * then for each page (512 pages of 4 KiB, 32 mTHPs of 64 KiB, that size
 * enabled alone, then 16 THPs) 8 threads released
 * together read it, so that 8 CPU faults race on one device-private fault
 * folio, while the driver holds a lock in migrate_to_ram() for 1 ms
 * (test_hmm's fault_hold_us). Run under each migrate_device engine; every
 * read must return the data, and the run must finish. Reported per engine:
 * migrate_to_ram() calls per page (counted by the driver), the CPU time the
 * readers burnt per page (a fault path that refaults instead of sleeping
 * burns it), the CPU faults the readers took (getrusage(RUSAGE_THREAD),
 * the same measure for both engines) and so migrate_to_ram() calls per
 * fault, the worst read, and under the Rust engine its fault counters.
 *
 * What each engine must show: under both, the data and at least one
 * migrate_to_ram() per page; under the Rust engines, whose fault path
 * sleeps on a contended fault folio at PTE and at PMD level, also at most
 * THREADS CPU faults per page (one per reader) and at most 1.1
 * migrate_to_ram() calls per page, where a page is a whole folio for the
 * mTHPs and THPs. 7.3's C refaults at once at PMD level,
 * so for it those figures are only reported. Without the driver's hold
 * there is no contention to measure, so the run bails out.
 * KTAP output.
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
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define THREADS 8
#define HOLD_US "1000"

struct reader {
	pthread_t thread;
	pthread_barrier_t *go;
	volatile char *addr;
	char want;
	double us;
	long faults;
	int bad;
};

/* Completed CPU faults of the calling thread. A fault that returns to
 * refault counts again; one retried under the mmap lock counts once. */
static long thread_faults(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_minflt + ru.ru_majflt;
}

static void *read_once(void *arg)
{
	struct reader *r = arg;
	double t0;
	long f0;

	pthread_barrier_wait(r->go);
	f0 = thread_faults();
	t0 = now_us();
	r->bad = *r->addr != r->want;
	r->us = now_us() - t0;
	r->faults = thread_faults() - f0;
	return NULL;
}

static double cpu_ms(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

/* One run over @units units of @unit bytes (a large folio each when
 * @large); returns 0 and fills @worst_us, @cpu and @faults, or -1 with
 * @why set. */
static int run(int fd, size_t unit, int large, int units, double *worst_us, double *cpu,
	       long *faults, const char **why)
{
	size_t size = unit * units;
	char *map = mmap(NULL, size + PMD_BYTES, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *mirror = malloc(size);
	struct hmm_dmirror_cmd cmd;
	struct reader r[THREADS];
	pthread_barrier_t go;
	char *buf;
	int i, t, ret = -1;

	*worst_us = 0;
	*faults = 0;
	*why = "cannot map buffers";
	if (map == MAP_FAILED || !mirror)
		goto out;
	buf = (char *)(((uintptr_t)map + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
	madvise(buf, size, large ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	for (i = 0; i < units; i++)
		memset(buf + i * unit, 'a' + i % 26, unit);
	cmd = (struct hmm_dmirror_cmd){ .addr = (uintptr_t)buf,
					.ptr = (uintptr_t)mirror,
					.npages = size / 4096 };
	*why = "migration to the device failed";
	if (ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd))
		goto out;
	*cpu = cpu_ms();
	for (i = 0; i < units; i++) {
		pthread_barrier_init(&go, NULL, THREADS);
		for (t = 0; t < THREADS; t++) {
			r[t] = (struct reader){ .go = &go, .addr = buf + i * unit,
						.want = 'a' + i % 26 };
			if (t && pthread_create(&r[t].thread, NULL, read_once, &r[t])) {
				*why = "pthread_create failed";
				goto out;
			}
		}
		read_once(&r[0]);
		for (t = 1; t < THREADS; t++)
			pthread_join(r[t].thread, NULL);
		pthread_barrier_destroy(&go);
		for (t = 0; t < THREADS; t++) {
			if (r[t].bad) {
				*why = "a read returned other data";
				goto out;
			}
			if (r[t].us > *worst_us)
				*worst_us = r[t].us;
			*faults += r[t].faults;
		}
	}
	*cpu = cpu_ms() - *cpu;
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
	static const struct { const char *name; size_t unit; int mthp_kb, units; } kinds[] = {
		{ "4k", 4096, 0, 512 },
		{ "64k", 64UL << 10, 64, 32 },
		{ "thp", PMD_BYTES, 0, 16 },
	};
	const int nengines = sizeof(engines) / sizeof(engines[0]);
	const int nkinds = sizeof(kinds) / sizeof(kinds[0]);
	int fd, e, k;
	static struct thp_sizes thp;

	tap_begin(&fd, NULL);
	if (write_file(FAULT_HOLD, HOLD_US))
		ksft_exit_fail_msg("cannot set %s: the driver would hold no lock\n", FAULT_HOLD);
	thp_sizes_save(&thp, PMD_BYTES >> 10);
	ksft_set_plan(nkinds * nengines);
	for (e = 0; e < nengines; e++) {
		for (k = 0; k < nkinds; k++) {
			int mthp = kinds[k].mthp_kb;
			unsigned long allocs = mthp ? thp_fault_allocs(mthp) : 0;
			const char *why = "";
			double worst, cpu;
			int rust = strcmp(engines[e], "c") != 0, ok;
			unsigned long calls;
			long faults;

			if (write_file(ENGINE, engines[e]))
				ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
			if (rust)
				write_file(COUNTERS, "0");
			write_file(FAULT_CALLS, "0");
			if (mthp && thp_size_only(&thp, mthp, "always")) {
				ok = 0;
				why = "cannot enable the mTHP size alone";
			} else {
				ok = !run(fd, kinds[k].unit, kinds[k].unit > 4096, kinds[k].units,
					  &worst, &cpu, &faults, &why);
			}
			if (ok && mthp &&
			    thp_fault_allocs(mthp) - allocs < (unsigned long)kinds[k].units) {
				ok = 0;
				why = "the buffer was not made of mTHPs";
			}
			if (mthp)
				thp_size_only(&thp, 0, NULL);
			calls = read_ulong(FAULT_CALLS);
			if (!ok) {
				ksft_test_result_fail("%s %s: %s\n", engines[e], kinds[k].name,
						      why);
			} else {
				unsigned long units = kinds[k].units;
				char waits[128] = "", because[128] = "";

				/* Every page needs at least one migrate_to_ram(). */
				ok = calls >= units;
				why = ok ? "" : "a page without migrate_to_ram()";
				/* The Rust fault path sleeps instead of refaulting. */
				if (rust && faults > (long)(THREADS * units)) {
					ok = 0;
					why = "more CPU faults than readers";
				}
				if (rust && calls * 10 > units * 11) {
					ok = 0;
					why = "more than 1.1 migrate_to_ram() per page";
				}
				if (rust)
					snprintf(waits, sizeof(waits),
						 "; engine faults %.2f per page, waits %lu, longest wait %.0f us",
						 (double)counter("faults") / kinds[k].units,
						 counter("fault_waits"),
						 counter("fault_wait_max_ns") / 1e3);
				if (!ok && *why)
					snprintf(because, sizeof(because), " (%s)", why);
				ksft_test_result(ok,
						 "%s %s: %d pages x %d threads, migrate_to_ram %.2f per page, CPU faults %.2f per page, migrate_to_ram %.4f per fault, reader CPU %.2f ms per page, worst read %.0f us%s%s\n",
						 engines[e], kinds[k].name, kinds[k].units, THREADS,
						 (double)calls / kinds[k].units,
						 (double)faults / kinds[k].units,
						 faults ? (double)calls / faults : 0.0,
						 cpu / kinds[k].units, worst, waits, because);
			}
		}
	}
	write_file(FAULT_HOLD, "0");
	write_file(ENGINE, "rust");
	close(fd);
	ksft_finished();
}
