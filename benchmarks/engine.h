/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Choosing the migrate_device engine (debugfs migrate_device/engine) and
 * reading its counters (migrate_device/counters for the Rust engines,
 * counters_c for C), for the benchmarks' A/B runs.
 */
#ifndef BENCH_ENGINE_H
#define BENCH_ENGINE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../selftests/util.h"
#include "../selftests/vram_uapi.h"

#define COUNTERS_C_FILE "/sys/kernel/debug/migrate_device/counters_c"
#define MAX_ENGINES 3

/* The engines a run compares, in the order of its first round. */
struct engines {
	const char *name[MAX_ENGINES];
	int n;
};

static inline int engine_switch_built(void)
{
	return access(ENGINE, W_OK) == 0;
}

/*
 * Parses a comma-separated list of "c", "rust" and "rust-entry" (the Rust
 * engine whose fault path installs the migration entry itself); without
 * the switch only the kernel's one engine, C, exists. Exits with 2 on a
 * name that is not an engine of this kernel.
 */
static inline void engines_parse(struct engines *e, const char *arg)
{
	char *dup = strdup(arg), *tok, *save = NULL;

	e->n = 0;
	for (tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const char *name;

		if (!strcmp(tok, "c"))
			name = "c";
		else if (!strcmp(tok, "rust"))
			name = "rust";
		else if (!strcmp(tok, "rust-entry"))
			name = "rust-entry";
		else {
			fprintf(stderr,
				"unknown engine `%s`: use c, rust, rust-entry or a list such as c,rust\n",
				tok);
			exit(2);
		}
		if (strcmp(name, "c") && !engine_switch_built()) {
			fprintf(stderr,
				"engine %s is not built in this kernel (no %s; CONFIG_MIGRATE_DEVICE_RUST=n?)\n",
				name, ENGINE);
			exit(2);
		}
		if (e->n == MAX_ENGINES) {
			fprintf(stderr, "at most %d engines\n", MAX_ENGINES);
			exit(2);
		}
		e->name[e->n++] = name;
	}
	free(dup);
	if (!e->n) {
		fprintf(stderr, "no engine given\n");
		exit(2);
	}
}

/*
 * C and Rust when the kernel has the switch, else C alone; with
 * @fault_entry also rust-entry, which differs from rust only in the fault
 * path.
 */
static inline void engines_default(struct engines *e, int fault_entry)
{
	if (!engine_switch_built())
		engines_parse(e, "c");
	else
		engines_parse(e, fault_entry ? "c,rust,rust-entry" : "c,rust");
}

/* The engine that runs round @round at position @i: the order alternates
 * from round to round so neither engine always runs first. */
static inline const char *engine_at(const struct engines *e, int round, int i)
{
	return e->name[round % 2 ? e->n - 1 - i : i];
}

static inline int engine_select(const char *name)
{
	if (!engine_switch_built())
		return strcmp(name, "c") ? -1 : 0;
	if (write_file(ENGINE, name)) {
		fprintf(stderr, "cannot select engine %s\n", name);
		return -1;
	}
	return 0;
}

static inline int engine_index(const struct engines *e, const char *name)
{
	for (int i = 0; i < e->n; i++)
		if (!strcmp(e->name[i], name))
			return i;
	return 0;
}

/* The engine counters the benchmarks report, per 2 MiB migrated. */
#define NR_COUNTERS 8
static const char *const counter_names[NR_COUNTERS] __attribute__((unused)) = {
	"folios", "pte_migration_entries", "pmd_migration_entries",
	"tlb_flushes", "notifier_ranges", "rmap_unmaps", "rmap_restores", "splits",
};
static const char *const counter_short[NR_COUNTERS] __attribute__((unused)) = {
	"folios", "ptes", "pmds", "tlbfl", "notif", "rmap", "rmrest", "splits",
};
/* After the counters, the folios of each order up to this one. */
#define MAX_COUNTED_ORDER 9
/* After those, the nanoseconds each engine spent in its phases. */
#define NR_PHASES 4
#define PHASE0 (NR_COUNTERS + MAX_COUNTED_ORDER + 1)
#define NR_SUMS (PHASE0 + NR_PHASES)
static const char *const phase_names[NR_PHASES] __attribute__((unused)) = {
	"ns_collect", "ns_unmap", "ns_pages", "ns_finalize",
};
static const char *const phase_short[NR_PHASES] __attribute__((unused)) = {
	"collect", "unmap", "pages", "finalize",
};

/*
 * test_hmm's side of a migration: nanoseconds allocating and copying,
 * copies issued, pages copied, extents copied and device folios allocated.
 */
#define DRIVER_STATS "/sys/kernel/debug/test_hmm/stats"
#define NR_DRIVER_STATS 5
static const char *const driver_stat_names[NR_DRIVER_STATS] __attribute__((unused)) = {
	"copy_ns", "copies", "copy_pages", "extents", "dev_allocs",
};

/* The counters of engine @name. */
static inline const char *counters_file(const char *name)
{
	return strcmp(name, "c") ? COUNTERS : COUNTERS_C_FILE;
}

static inline void counters_reset(const char *name)
{
	int fd = open(counters_file(name), O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "0", 1) != 1)
			perror(counters_file(name));
		close(fd);
	}
}

/*
 * Prints to stderr the counters of engine @name that are not 0, failures
 * among them, to tell why a run gave up.
 */
static inline void counters_dump(const char *name)
{
	FILE *f = fopen(counters_file(name), "r");
	char key[64];
	unsigned long v;

	if (!f)
		return;
	while (fscanf(f, "%63s %lu", key, &v) == 2)
		if (v)
			fprintf(stderr, "  %s %lu\n", key, v);
	fclose(f);
}

/*
 * Adds the counters of engine @name to @sum; "folios" sums the folios of
 * every order, and sum[NR_COUNTERS + order] has those of each order. Fails
 * when the kernel does not count that engine's work.
 */
static inline int counters_add(const char *name, double sum[NR_SUMS])
{
	FILE *f = fopen(counters_file(name), "r");
	char key[64];
	unsigned long v;

	if (!f)
		return -1;
	while (fscanf(f, "%63s %lu", key, &v) == 2) {
		if (!strncmp(key, "folios_order_", 13)) {
			int order = atoi(key + 13);

			sum[0] += v;
			if (order >= 0 && order <= MAX_COUNTED_ORDER)
				sum[NR_COUNTERS + order] += v;
		}
		for (int i = 1; i < NR_COUNTERS; i++)
			if (!strcmp(key, counter_names[i]))
				sum[i] += v;
		for (int i = 0; i < NR_PHASES; i++)
			if (!strcmp(key, phase_names[i]))
				sum[PHASE0 + i] += v;
	}
	fclose(f);
	return 0;
}

/*
 * The driver the benchmarks migrate with: test_hmm, or with
 * --driver vram the folio-migrate VRAM driver, whose statistics count its
 * copies in (one per extent of destinations) and not its time.
 */
static int bench_vram_fd = -1;
static struct folio_vram_stats bench_vram_base;

/*
 * Selects the driver named @name, "test_hmm" or "vram"; fails with 2 on
 * another name, with 1 when the VRAM driver's device cannot be opened.
 */
static inline int driver_select(const char *name)
{
	if (!strcmp(name, "test_hmm"))
		return 0;
	if (strcmp(name, "vram")) {
		fprintf(stderr, "unknown driver `%s`: use test_hmm or vram\n", name);
		return 2;
	}
	bench_vram_fd = open(FOLIO_VRAM, O_RDWR);
	if (bench_vram_fd < 0) {
		perror(FOLIO_VRAM);
		return 1;
	}
	return 0;
}

static inline void driver_stats_reset(void)
{
	int fd;

	if (bench_vram_fd >= 0) {
		if (ioctl(bench_vram_fd, FOLIO_VRAM_STATS, &bench_vram_base))
			perror(FOLIO_VRAM);
		return;
	}
	fd = open(DRIVER_STATS, O_WRONLY);

	if (fd >= 0) {
		if (write(fd, "0", 1) != 1)
			perror(DRIVER_STATS);
		close(fd);
	}
}

/* Adds the driver's statistics to @sum; fails when it has none. */
static inline int driver_stats_add(double sum[NR_DRIVER_STATS])
{
	struct folio_vram_stats now;
	unsigned long long v;
	char key[64];
	FILE *f;

	if (bench_vram_fd >= 0) {
		if (ioctl(bench_vram_fd, FOLIO_VRAM_STATS, &now))
			return -1;
		sum[1] += now.copies - bench_vram_base.copies;
		sum[2] += now.pages_in - bench_vram_base.pages_in;
		sum[3] += now.copies - bench_vram_base.copies;
		return 0;
	}
	f = fopen(DRIVER_STATS, "r");
	if (!f)
		return -1;
	while (fscanf(f, "%63s %llu", key, &v) == 2)
		for (int i = 0; i < NR_DRIVER_STATS; i++)
			if (!strcmp(key, driver_stat_names[i]))
				sum[i] += v;
	fclose(f);
	return 0;
}

#endif /* BENCH_ENGINE_H */
