// SPDX-License-Identifier: GPL-2.0
/*
 * CPU fault latency on device-private memory through the test_hmm driver.
 *
 * A buffer is migrated to the device, then the CPU reads it back: each
 * first read faults and migrate_to_ram() brings the memory home. With N
 * threads (--threads N; by default 1, then 8), N threads released together
 * read the same page, the scenario in which spinning on the fault folio
 * livelocks.
 *
 * For 4 KiB pages every page is one fault; for 64 KiB mTHPs (that size
 * enabled alone) and 2 MiB THPs the first byte of each folio is (--kind
 * runs one of 4k, 64k and thp alone). p50, p99 and max of the read
 * latency are printed, in microseconds, with one "@json" line per
 * figure, under each engine (by default c, rust and rust-entry, whose
 * fault path installs the migration entry itself), with the ratio of each
 * to the first.
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
#include <time.h>
#include <unistd.h>

#include "test_hmm_uapi.h"
#include "engine.h"

#define PMD_BYTES (2UL << 20)
#define MAX_THREADS 64
#define MAX_ROUNDS 32

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int to_device(int fd, char *buf, void *mirror, size_t size)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)buf,
		.ptr = (uintptr_t)mirror,
		.npages = size / sysconf(_SC_PAGESIZE),
	};
	struct folio_vram_range range = {
		.addr = (uintptr_t)buf,
		.npages = cmd.npages,
	};

	if (bench_vram_fd >= 0) {
		if (ioctl(bench_vram_fd, FOLIO_VRAM_MIGRATE_TO_VRAM, &range) ||
		    range.done != range.npages) {
			perror("FOLIO_VRAM_MIGRATE_TO_VRAM");
			return -1;
		}
		return 0;
	}
	/*
	 * Migration is best effort: a folio that another CPU holds for a
	 * moment (compaction, an LRU cache) stays where it is, and test_hmm
	 * then finds a page missing from its mirror (ENOENT). Try again, and
	 * say so.
	 */
	for (int tries = 1; ioctl(fd, HMM_DMIRROR_MIGRATE_TO_DEV, &cmd); tries++) {
		if (errno != ENOENT || tries == 3) {
			perror("HMM_DMIRROR_MIGRATE_TO_DEV");
			return -1;
		}
		fprintf(stderr, "HMM_DMIRROR_MIGRATE_TO_DEV: not every page moved, trying again\n");
	}
	return 0;
}

struct reader {
	pthread_t thread;
	pthread_barrier_t *go;
	volatile char *addr;
	char want;
	double us;
	int bad;
};

static void *read_once(void *arg)
{
	struct reader *r = arg;
	double t0;

	pthread_barrier_wait(r->go);
	t0 = now_us();
	r->bad = *r->addr != r->want;
	r->us = now_us() - t0;
	return NULL;
}

/*
 * Faults @nfaults units of @unit bytes, each read by @threads threads at
 * once; fills @lat with one latency per read. With @mthp_kb, the buffer
 * must be made of folios of that many KiB.
 */
static int run(int fd, int advice, size_t unit, int mthp_kb, int nfaults,
	       int threads, double *lat)
{
	unsigned long allocs = mthp_kb ? thp_fault_allocs(mthp_kb) : 0;
	size_t size = unit * nfaults, span = size + PMD_BYTES;
	char *map = mmap(NULL, span, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *mirror = malloc(size);
	struct reader r[MAX_THREADS];
	pthread_barrier_t go;
	char *buf;
	int i, t, ret = -1;

	if (map == MAP_FAILED || !mirror) {
		perror("buffers");
		goto out;
	}
	buf = (char *)(((uintptr_t)map + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
	if (madvise(buf, size, advice)) {
		perror("madvise");
		goto out;
	}
	for (i = 0; i < nfaults; i++)
		memset(buf + i * unit, 'a' + i % 26, unit);
	if (mthp_kb && thp_fault_allocs(mthp_kb) - allocs < (unsigned long)nfaults) {
		fprintf(stderr, "the kernel gave fewer than %d folios of %d KiB\n",
			nfaults, mthp_kb);
		goto out;
	}
	if (to_device(fd, buf, mirror, size))
		goto out;
	for (i = 0; i < nfaults; i++) {
		pthread_barrier_init(&go, NULL, threads);
		for (t = 0; t < threads; t++) {
			r[t] = (struct reader){ .go = &go,
						.addr = buf + i * unit,
						.want = 'a' + i % 26 };
			if (t && pthread_create(&r[t].thread, NULL, read_once,
						&r[t])) {
				perror("pthread_create");
				exit(1);
			}
		}
		read_once(&r[0]);
		for (t = 1; t < threads; t++)
			pthread_join(r[t].thread, NULL);
		pthread_barrier_destroy(&go);
		for (t = 0; t < threads; t++) {
			if (r[t].bad) {
				fprintf(stderr, "fault %d: wrong data\n", i);
				goto out;
			}
			lat[i * threads + t] = r[t].us;
		}
	}
	ret = 0;
out:
	free(mirror);
	if (map != MAP_FAILED)
		munmap(map, span);
	return ret;
}

/* p50, p99 and max of @reads latencies (sorted in place). */
static void percentiles(double *lat, int reads, double out[3])
{
	qsort(lat, reads, sizeof(*lat), cmp_double);
	out[0] = lat[reads / 2];
	out[1] = lat[(int)(reads * 0.99)];
	out[2] = lat[reads - 1];
}

static double median_of(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int advice;
		size_t unit;
		/* mTHP size in KiB, enabled alone while the kind runs. */
		int mthp_kb;
	} kinds[] = {
		{ "4k", MADV_NOHUGEPAGE, 0, 0 },
		{ "64k", MADV_HUGEPAGE, 64UL << 10, 64 },
		{ "thp", MADV_HUGEPAGE, PMD_BYTES, 0 },
	};
	const int nkinds = sizeof(kinds) / sizeof(kinds[0]);
	int counts[2] = { 1, 8 }, ncounts = 2, rounds = 5;
	int nfaults = 512, mthp_faults = 64, thp_faults = 16, fd, k, i, c, e, r, q;
	static struct thp_sizes thp;
	struct engines eng = { .n = 0 };
	/* Only this page kind (4k, 64k or thp), or all. */
	const char *only_kind = NULL;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			counts[0] = atoi(argv[++i]);
			ncounts = 1;
			if (counts[0] < 1 || counts[0] > MAX_THREADS) {
				fprintf(stderr, "threads must be 1..%d\n",
					MAX_THREADS);
				return 2;
			}
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
			if (rounds < 1 || rounds > MAX_ROUNDS) {
				fprintf(stderr, "rounds must be 1..%d\n", MAX_ROUNDS);
				return 2;
			}
		} else if (!strcmp(argv[i], "--engines") && i + 1 < argc) {
			engines_parse(&eng, argv[++i]);
		} else if (!strcmp(argv[i], "--driver") && i + 1 < argc) {
			int ret = driver_select(argv[++i]);

			if (ret)
				return ret;
		} else if (!strcmp(argv[i], "--kind") && i + 1 < argc) {
			only_kind = argv[++i];
			for (k = 0; k < nkinds; k++)
				if (!strcmp(only_kind, kinds[k].name))
					break;
			if (k == nkinds) {
				fprintf(stderr, "no page kind %s\n", only_kind);
				return 2;
			}
		} else if (!strcmp(argv[i], "--quick")) {
			nfaults = 64;
			mthp_faults = 16;
			thp_faults = 4;
			rounds = 2;
		} else {
			fprintf(stderr,
				"usage: fault_latency [--threads N] [--rounds N] [--kind 4k|64k|thp] [--engines c|rust|rust-entry|LIST] [--driver test_hmm|vram] [--quick]\n");
			return 2;
		}
	}
	if (!eng.n)
		engines_default(&eng, 1);
	fd = open(DMIRROR, O_RDWR);
	if (fd < 0) {
		perror(DMIRROR);
		return 1;
	}
	thp_sizes_save(&thp, PMD_BYTES >> 10);
	printf("driver %s; %d rounds per figure, engines interleaved; per round p50/p99/max, then min and median over rounds\n",
	       bench_vram_fd >= 0 ? "vram" : "test_hmm", rounds);
	printf("%-4s %7s %7s | %-12s | %8s %8s | %8s %8s | %9s\n", "page",
	       "threads", "faults", "engine", "p50 min", "p50 med", "p99 min",
	       "p99 med", "max us");
	for (c = 0; c < ncounts; c++) {
		int threads = counts[c];

		for (k = 0; k < nkinds; k++) {
			size_t unit = kinds[k].unit ? kinds[k].unit :
				      (size_t)sysconf(_SC_PAGESIZE);
			int n = kinds[k].mthp_kb ? mthp_faults :
				kinds[k].unit ? thp_faults : nfaults;
			int reads = n * threads;
			double *lat;
			/* [engine][p50, p99, max][round] */
			static double pct[MAX_ENGINES][3][MAX_ROUNDS];
			double med[MAX_ENGINES][2];

			if (only_kind && strcmp(only_kind, kinds[k].name))
				continue;
			lat = calloc(reads, sizeof(*lat));
			if (!lat)
				return 1;
			if (kinds[k].mthp_kb &&
			    thp_size_only(&thp, kinds[k].mthp_kb, "madvise")) {
				fprintf(stderr, "no %d KiB mTHP size to enable; skipped\n",
					kinds[k].mthp_kb);
				thp_size_only(&thp, 0, NULL);
				free(lat);
				continue;
			}
			for (r = 0; r < rounds; r++) {
				for (i = 0; i < eng.n; i++) {
					const char *name = engine_at(&eng, r, i);
					double p[3];

					e = engine_index(&eng, name);
					if (engine_select(name) ||
					    run(fd, kinds[k].advice, unit, kinds[k].mthp_kb, n,
						threads, lat)) {
						thp_size_only(&thp, 0, NULL);
						return 1;
					}
					percentiles(lat, reads, p);
					for (q = 0; q < 3; q++)
						pct[e][q][r] = p[q];
				}
			}
			for (e = 0; e < eng.n; e++) {
				double max = 0;

				for (r = 0; r < rounds; r++)
					max = pct[e][2][r] > max ? pct[e][2][r] : max;
				med[e][0] = median_of(pct[e][0], rounds);
				med[e][1] = median_of(pct[e][1], rounds);
				printf("%-4s %7d %7d | %-12s | %8.1f %8.1f | %8.1f %8.1f | %9.1f\n",
				       kinds[k].name, threads, n, eng.name[e],
				       pct[e][0][0], med[e][0], pct[e][1][0], med[e][1], max);
				printf("@json {\"driver\":\"%s\",\"engine\":\"%s\",\"page\":\"%s\","
				       "\"threads\":%d,\"faults\":%d,\"rounds\":%d,\"p50_us_min\":%.2f,"
				       "\"p50_us_median\":%.2f,\"p99_us_min\":%.2f,\"p99_us_median\":%.2f,"
				       "\"max_us\":%.2f}\n",
				       bench_vram_fd >= 0 ? "vram" : "test_hmm",
				       eng.name[e], kinds[k].name, threads, n, rounds,
				       pct[e][0][0], med[e][0], pct[e][1][0], med[e][1], max);
			}
			/* Each other engine over the first, C by default. */
			for (e = 1; e < eng.n && med[0][0] > 0 && med[0][1] > 0; e++) {
				char ratio[32];

				snprintf(ratio, sizeof(ratio), "%s/%s", eng.name[e], eng.name[0]);
				printf("%-4s %7d %7d | %-12s | %8s %8.3f | %8s %8.3f |\n",
				       kinds[k].name, threads, n, ratio, "",
				       med[e][0] / med[0][0], "", med[e][1] / med[0][1]);
			}
			free(lat);
			if (kinds[k].mthp_kb)
				thp_size_only(&thp, 0, NULL);
		}
	}
	close(fd);
	return 0;
}
