// SPDX-License-Identifier: GPL-2.0
/*
 * Migration throughput through the test_hmm driver: system to device and
 * device to system, for 4 KiB pages (MADV_NOHUGEPAGE), 2 MiB THPs
 * (MADV_HUGEPAGE) and each mTHP size the kernel offers
 * (/sys/kernel/mm/transparent_hugepage/hugepages-<N>kB, only that size
 * enabled, MADV_HUGEPAGE), beside the memcpy bandwidth of the same buffer.
 * The mTHP sizes run over fewer buffer sizes (those of --quick), and
 * --quick runs 64 KiB alone.
 *
 * Each figure is measured under every engine given (debugfs
 * migrate_device/engine: "c" and "rust" by default when the kernel has
 * both), the engines interleaved within each round and their order
 * alternated from round to round. The minimum and the median are printed
 * with the ratio rust/c, as a table and as one "@json" line per engine and
 * figure for the host to collect; beside them, each engine's counters per
 * 2 MiB migrated (there and back), when the kernel counts its work, and
 * under each engine's row where its time went: the engine's phases (its
 * ns_* counters), test_hmm's allocations and copies (debugfs
 * test_hmm/stats) and the engine's share of the whole migration, then
 * the phases of each way beside that way's time.
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
#include <time.h>
#include <unistd.h>

#include "test_hmm_uapi.h"
#include "engine.h"

#define PMD_BYTES (2UL << 20)
#define MAX_ROUNDS 64
#define MAX_SIZES 16
#define MAX_KINDS 16

/* A page size to measure: 4 KiB, the PMD THP, or an mTHP size. */
struct kind {
	char name[16];
	int advice;
	/* mTHP size in KiB, 0 for 4 KiB pages and the PMD THP. */
	int mthp_kb;
};

/* Every THP size and its setting, to be put back. */
static struct thp_sizes thp;

struct figure {
	unsigned long long entries[MAX_ENGINES];
	double s2d[MAX_ENGINES][MAX_ROUNDS];
	double d2s[MAX_ENGINES][MAX_ROUNDS];
	double copy[MAX_ROUNDS];
	/* Each engine's counters summed over the rounds. */
	double counters[MAX_ENGINES][NR_SUMS];
	/* The same, read once the buffer is on the device. */
	double to_dev[MAX_ENGINES][NR_SUMS];
	/* Whether the kernel counts that engine's work. */
	int counted[MAX_ENGINES];
	/* test_hmm's statistics under each engine, summed over the rounds. */
	double driver[MAX_ENGINES][NR_DRIVER_STATS];
	int driver_counted[MAX_ENGINES];
};

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double gbps(size_t bytes, double ms)
{
	return ms > 0 ? bytes / (ms * 1e6) : 0;
}

/*
 * Migrates [buf, buf + size) with @request and returns test_hmm's count
 * in @entries: pages or collected entries depending on the direction, so
 * it is only checked for being non-zero and at most the pages.
 */
static int migrate(int fd, unsigned long request, void *buf, void *mirror,
		   size_t size, double *ms, unsigned long long *entries)
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
	double t0 = now_ms();

	if (bench_vram_fd >= 0) {
		/* The VRAM driver reports pages, both ways. */
		request = request == HMM_DMIRROR_MIGRATE_TO_DEV ?
			  FOLIO_VRAM_MIGRATE_TO_VRAM : FOLIO_VRAM_MIGRATE_TO_RAM;
		if (ioctl(bench_vram_fd, request, &range)) {
			perror("migrate ioctl");
			return -1;
		}
		*ms = now_ms() - t0;
		*entries = range.done;
		return range.done == range.npages ? 0 : -1;
	}
	if (ioctl(fd, request, &cmd)) {
		perror("migrate ioctl");
		return -1;
	}
	*ms = now_ms() - t0;
	*entries = cmd.cpages;
	if (!cmd.cpages || cmd.cpages > cmd.npages) {
		fprintf(stderr, "migrated %llu entries for %llu pages\n",
			(unsigned long long)cmd.cpages,
			(unsigned long long)cmd.npages);
		return -1;
	}
	return 0;
}

/*
 * One round of engine @name: maps a fresh buffer, so that a THP buffer is
 * a THP again (a round trip may leave it in 4 KiB pages), fills it, moves
 * it to the device and back, and checks it. The engine's counters are
 * added to @to_dev_sums between the two ways, untimed. On success *@map_out
 * keeps the mapping for the caller's memcpy, else it is unmapped.
 */
static int round_trip(int fd, const char *name, const struct kind *kind,
		      size_t size, int r, char *mirror, double *s2d,
		      double *d2s, double *to_dev_sums,
		      unsigned long long *entries, char **map_out)
{
	unsigned long mthp0 = kind->mthp_kb ? thp_fault_allocs(kind->mthp_kb) : 0;
	size_t span = size + PMD_BYTES;
	char *map = mmap(NULL, span, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned long long to_dev;
	char *buf;
	int ok;

	*map_out = NULL;
	if (map == MAP_FAILED) {
		perror("mmap");
		return -1;
	}
	buf = (char *)(((uintptr_t)map + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
	ok = !madvise(buf, size, kind->advice);
	if (ok) {
		memset(buf, 'a' + r % 26, size);
		if (kind->mthp_kb && thp_fault_allocs(kind->mthp_kb) == mthp0) {
			fprintf(stderr, "%s %zu: the kernel gave no %d KiB folio\n",
				kind->name, size, kind->mthp_kb);
			ok = 0;
		}
	}
	if (ok) {
		/*
		 * test_hmm reports pages for the way to the device and
		 * collected entries for the way back: keep the latter, where a
		 * THP moved whole counts once.
		 */
		ok = !migrate(fd, HMM_DMIRROR_MIGRATE_TO_DEV, buf, mirror, size,
			      s2d, &to_dev);
		if (ok)
			counters_add(name, to_dev_sums);
		ok = ok && !migrate(fd, HMM_DMIRROR_MIGRATE_TO_SYS, buf, mirror,
				    size, d2s, entries);
	}
	if (ok && (buf[0] != 'a' + r % 26 || buf[size - 1] != 'a' + r % 26)) {
		fprintf(stderr, "%s %zu: data lost in round %d\n", kind->name, size, r);
		ok = 0;
	}
	if (!ok) {
		munmap(map, span);
		return -1;
	}
	*map_out = map;
	return 0;
}

/*
 * One figure: each round runs every engine once, in alternating order, then
 * times a memcpy of the last buffer.
 */
static int run(int fd, const struct engines *eng, const struct kind *kind,
	       size_t size, int rounds, struct figure *f)
{
	size_t span = size + PMD_BYTES;
	char *mirror = malloc(size), *copy = malloc(size);
	int r, i, ret = -1;

	memset(f, 0, sizeof(*f));
	for (i = 0; i < eng->n; i++)
		f->counted[i] = f->driver_counted[i] = 1;
	if (!mirror || !copy) {
		perror("malloc");
		goto out;
	}
	for (r = 0; r < rounds; r++) {
		char *map = NULL, *buf;
		double t0;
		int ok;

		for (i = 0; i < eng->n; i++) {
			const char *name = engine_at(eng, r, i);
			int e = engine_index(eng, name);

			if (map)
				munmap(map, span);
			if (engine_select(name))
				goto out;
			counters_reset(name);
			driver_stats_reset();
			if (round_trip(fd, name, kind, size, r, mirror,
				       &f->s2d[e][r], &f->d2s[e][r],
				       f->to_dev[e], &f->entries[e], &map)) {
				fprintf(stderr, "%s %zu: round %d under %s failed; its counters:\n",
					kind->name, size, r, name);
				counters_dump(name);
				goto out;
			}
			if (counters_add(name, f->counters[e]))
				f->counted[e] = 0;
			if (driver_stats_add(f->driver[e]))
				f->driver_counted[e] = 0;
		}
		buf = (char *)(((uintptr_t)map + PMD_BYTES - 1) & ~(PMD_BYTES - 1));
		t0 = now_ms();
		memcpy(copy, buf, size);
		f->copy[r] = now_ms() - t0;
		/* Keep the copy observable. */
		ok = copy[size / 2] == buf[size / 2];
		munmap(map, span);
		if (!ok)
			goto out;
	}
	ret = 0;
out:
	free(mirror);
	free(copy);
	return ret;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: migrate_throughput [--quick] [--rounds N] [--size BYTES]... [--kind 4k|thp|NNk] [--engines c|rust|c,rust] [--driver test_hmm|vram]\n");
	exit(2);
}

static double ratio(double rust, double c)
{
	return c > 0 ? rust / c : 0;
}

/*
 * Engine @e's phases one way, in us per 2 MiB moved that way (means over
 * the rounds), beside that way's time: @to_dev for the way to the device,
 * else the way back. Part of a table line, or with @json one field of the
 * engine's @json line.
 */
static void print_way(const struct figure *f, int e, int to_dev, double per2m,
		      int rounds, int json)
{
	double us, engine = 0, total = 0;
	int p, r;

	for (r = 0; r < rounds; r++)
		total += (to_dev ? f->s2d[e][r] : f->d2s[e][r]) * 1e3;
	total /= per2m;
	if (json)
		printf(",\"phase_us_per_2m_%s\":{", to_dev ? "to_device" : "back");
	else
		printf("%s:", to_dev ? "to device" : "back");
	for (p = 0; p < NR_PHASES; p++) {
		us = f->to_dev[e][PHASE0 + p];
		if (!to_dev)
			us = f->counters[e][PHASE0 + p] - us;
		us /= 1e3 * per2m;
		engine += us;
		printf(json ? "\"%s\":%.2f," : " %s %.1f", phase_short[p], us);
	}
	printf(json ? "\"engine\":%.2f,\"total\":%.2f}" : ", engine %.1f of %.1f", engine, total);
}

/*
 * Where engine @e's time went, in us per 2 MiB migrated there and back
 * (means over the rounds): each phase of the engine, the driver's
 * allocations and copies, and the engine's share of the whole migration
 * as the benchmark timed it; then the phases of each way. Table lines, or
 * with @json the fields of the engine's @json line.
 */
static void print_phases(const struct figure *f, int e, const char *kind,
			 size_t size, int rounds, int json)
{
	double per2m = (double)size / PMD_BYTES * rounds;
	double total = 0, engine = 0, us[NR_PHASES], copy, copies, extents;
	int p, r;

	for (r = 0; r < rounds; r++)
		total += (f->s2d[e][r] + f->d2s[e][r]) * 1e3;
	total /= per2m;
	for (p = 0; p < NR_PHASES; p++) {
		us[p] = f->counters[e][PHASE0 + p] / 1e3 / per2m;
		engine += us[p];
	}
	/* The VRAM driver does not time its copies. */
	copy = f->driver_counted[e] && bench_vram_fd < 0 ? f->driver[e][0] / 1e3 / per2m : 0;
	copies = f->driver_counted[e] ? f->driver[e][1] / per2m : 0;
	extents = f->driver_counted[e] ? f->driver[e][3] / per2m : 0;
	if (json) {
		printf(",\"phase_us_per_2m\":{");
		for (p = 0; p < NR_PHASES; p++)
			printf("\"%s\":%.2f,", phase_short[p], us[p]);
		printf("\"engine\":%.2f,\"driver_copy\":%.2f,\"total\":%.2f},\"driver\":\"%s\","
		       "\"driver_copies_per_2m\":%.2f,\"driver_extents_per_2m\":%.2f,"
		       "\"engine_share\":%.4f",
		       engine, copy, total, bench_vram_fd >= 0 ? "vram" : "test_hmm", copies, extents,
		       total > 0 ? engine / total : 0);
		print_way(f, e, 1, per2m, rounds, 1);
		print_way(f, e, 0, per2m, rounds, 1);
		return;
	}
	printf("%-4s %10zu %7s |   us/2MiB:", kind, size, "");
	for (p = 0; p < NR_PHASES; p++)
		printf(" %s %.1f", phase_short[p], us[p]);
	printf(", engine %.1f of %.1f (%.0f%%)", engine, total, total > 0 ? 100 * engine / total : 0);
	if (bench_vram_fd >= 0)
		printf("; vram driver %.1f copies in\n", copies);
	else
		printf("; driver copy %.1f in %.1f copies, %.1f extents\n", copy, copies, extents);
	printf("%-4s %10zu %7s |   us/2MiB ", kind, size, "");
	print_way(f, e, 1, per2m, rounds, 0);
	printf("; ");
	print_way(f, e, 0, per2m, rounds, 0);
	printf("\n");
}

int main(int argc, char **argv)
{
	static const size_t all[] = { 512UL << 10, 1UL << 20, 2UL << 20,
				      4UL << 20, 8UL << 20, 16UL << 20,
				      32UL << 20, 64UL << 20, 128UL << 20,
				      256UL << 20 };
	static const size_t quick[] = { 512UL << 10, 2UL << 20, 16UL << 20 };
	struct kind kinds[MAX_KINDS] = {
		{ "4k", MADV_NOHUGEPAGE, 0 },
		{ "thp", MADV_HUGEPAGE, 0 },
	};
	int nkinds = 2, nmthp, is_quick = 0, sized = 0;
	size_t sizes[MAX_SIZES];
	long page = sysconf(_SC_PAGESIZE);
	int nsizes = 0, rounds = 5, fd, i, k, e, c, o, ic, ir;
	/* Only this page kind (4k, thp or an mTHP size as "64k"), or all. */
	const char *only_kind = NULL;
	struct engines eng = { .n = 0 };
	size_t vram_bytes = SIZE_MAX;

	for (i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			memcpy(sizes, quick, sizeof(quick));
			nsizes = sizeof(quick) / sizeof(quick[0]);
			is_quick = 1;
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
			if (rounds < 1 || rounds > MAX_ROUNDS) {
				fprintf(stderr, "rounds must be 1..%d\n",
					MAX_ROUNDS);
				return 2;
			}
		} else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			char *end;
			unsigned long long v = strtoull(argv[++i], &end, 0);

			if (*end || !v || v % page) {
				fprintf(stderr,
					"size %s is not a positive multiple of the page size %ld\n",
					argv[i], page);
				return 2;
			}
			if (nsizes == MAX_SIZES)
				usage();
			sizes[nsizes++] = v;
			sized = 1;
		} else if (!strcmp(argv[i], "--driver") && i + 1 < argc) {
			int ret = driver_select(argv[++i]);

			if (ret)
				return ret;
		} else if (!strcmp(argv[i], "--kind") && i + 1 < argc) {
			only_kind = argv[++i];
		} else if (!strcmp(argv[i], "--engines") && i + 1 < argc) {
			engines_parse(&eng, argv[++i]);
		} else {
			usage();
		}
	}
	if (!nsizes) {
		memcpy(sizes, all, sizeof(all));
		nsizes = sizeof(all) / sizeof(all[0]);
	}
	if (!eng.n)
		engines_default(&eng, 0);
	nmthp = thp_sizes_save(&thp, PMD_BYTES >> 10);
	for (i = 0; i < nmthp && nkinds < MAX_KINDS; i++) {
		if (is_quick && thp.kb[i] != 64)
			continue;
		snprintf(kinds[nkinds].name, sizeof(kinds[nkinds].name), "%dk",
			 thp.kb[i]);
		kinds[nkinds].advice = MADV_HUGEPAGE;
		kinds[nkinds++].mthp_kb = thp.kb[i];
	}
	ic = engine_index(&eng, "c");
	ir = engine_index(&eng, "rust");
	if (strcmp(eng.name[ic], "c") || strcmp(eng.name[ir], "rust"))
		ic = ir = -1;

	fd = open(DMIRROR, O_RDWR);
	if (fd < 0) {
		perror(DMIRROR);
		return 1;
	}
	if (bench_vram_fd >= 0) {
		struct folio_vram_stats vs = { 0 };

		if (ioctl(bench_vram_fd, FOLIO_VRAM_STATS, &vs)) {
			perror(FOLIO_VRAM);
			return 1;
		}
		vram_bytes = vs.chunks * PMD_BYTES;
	}
	printf("driver %s; engines:", bench_vram_fd >= 0 ? "vram (copies in only, buffers up to its size)" :
	       "test_hmm");
	for (e = 0; e < eng.n; e++)
		printf(" %s", eng.name[e]);
	printf("; %d rounds, engines interleaved; times in ms (min/median), ratio = rust/c of the medians\n",
	       rounds);
	printf("%-4s %10s %7s | %-6s %8s %8s %7s | %8s %8s %7s | %7s",
	       "page", "bytes", "entries", "engine", "s2d min", "s2d med",
	       "GB/s", "d2s min", "d2s med", "GB/s", "memcpy");
	if (engine_switch_built())
		for (c = 0; c < NR_COUNTERS; c++)
			printf(" %6s", counter_short[c]);
	printf("\n");
	for (k = 0; k < nkinds; k++) {
		if (only_kind && strcmp(only_kind, kinds[k].name))
			continue;
		if (kinds[k].mthp_kb && thp_size_only(&thp, kinds[k].mthp_kb, "madvise")) {
			fprintf(stderr, "cannot enable the %d KiB mTHP size alone\n",
				kinds[k].mthp_kb);
			thp_size_only(&thp, 0, NULL);
			return 1;
		}
		for (i = 0; i < nsizes; i++) {
			static struct figure f;
			double cp_med, per2m = (double)sizes[i] / PMD_BYTES * rounds;

			/*
			 * mTHP sizes: the sizes of --quick, unless sizes were
			 * given, and only buffers that hold such a folio.
			 */
			if (kinds[k].mthp_kb && !sized && !is_quick &&
			    sizes[i] != quick[0] && sizes[i] != quick[1] && sizes[i] != quick[2])
				continue;
			if (kinds[k].mthp_kb && sizes[i] < (size_t)kinds[k].mthp_kb << 10)
				continue;
			/* A buffer larger than the VRAM would be evicted on the way. */
			if (sizes[i] > vram_bytes)
				continue;
			if (run(fd, &eng, &kinds[k], sizes[i], rounds, &f)) {
				thp_size_only(&thp, 0, NULL);
				return 1;
			}
			cp_med = median(f.copy, rounds);
			for (e = 0; e < eng.n; e++) {
				double s2d_min, s2d_med, d2s_min, d2s_med;
				int counted = f.counted[e];

				s2d_med = median(f.s2d[e], rounds);
				s2d_min = f.s2d[e][0];
				d2s_med = median(f.d2s[e], rounds);
				d2s_min = f.d2s[e][0];
				printf("%-4s %10zu %7llu | %-6s %8.3f %8.3f %7.2f | %8.3f %8.3f %7.2f | %7.2f",
				       kinds[k].name, sizes[i], f.entries[e],
				       eng.name[e], s2d_min, s2d_med,
				       gbps(sizes[i], s2d_med), d2s_min, d2s_med,
				       gbps(sizes[i], d2s_med), gbps(sizes[i], cp_med));
				if (counted)
					for (c = 0; c < NR_COUNTERS; c++)
						printf(" %6.1f", f.counters[e][c] / per2m);
				printf("\n");
				if (counted)
					print_phases(&f, e, kinds[k].name, sizes[i], rounds, 0);
				printf("@json {\"engine\":\"%s\",\"page\":\"%s\",\"bytes\":%zu,\"entries\":%llu,\"rounds\":%d,"
				       "\"s2d_ms_min\":%.4f,\"s2d_ms_median\":%.4f,"
				       "\"d2s_ms_min\":%.4f,\"d2s_ms_median\":%.4f,"
				       "\"memcpy_ms_median\":%.4f",
				       eng.name[e], kinds[k].name, sizes[i], f.entries[e],
				       rounds, s2d_min, s2d_med, d2s_min, d2s_med, cp_med);
				if (counted) {
					printf(",\"counters_per_2m\":{");
					for (c = 0; c < NR_COUNTERS; c++)
						printf("%s\"%s\":%.2f", c ? "," : "",
						       counter_names[c], f.counters[e][c] / per2m);
					printf("},\"folios_per_2m_by_order\":{");
					for (c = 0, o = 0; o <= MAX_COUNTED_ORDER; o++) {
						double v = f.counters[e][NR_COUNTERS + o];

						if (v > 0)
							printf("%s\"%d\":%.2f", c++ ? "," : "", o,
							       v / per2m);
					}
					printf("}");
					print_phases(&f, e, kinds[k].name, sizes[i], rounds, 1);
				}
				printf("}\n");
			}
			if (ic >= 0 && ir >= 0 && ic != ir)
				printf("%-4s %10zu %7s | %-6s %8s %8.3f %7s | %8s %8.3f %7s |\n",
				       kinds[k].name, sizes[i], "", "rust/c", "",
				       ratio(median(f.s2d[ir], rounds), median(f.s2d[ic], rounds)), "",
				       "", ratio(median(f.d2s[ir], rounds), median(f.d2s[ic], rounds)), "");
		}
		if (kinds[k].mthp_kb && thp_size_only(&thp, 0, NULL)) {
			fprintf(stderr, "cannot restore the THP settings\n");
			return 1;
		}
	}
	close(fd);
	return 0;
}
