// SPDX-License-Identifier: GPL-2.0
/*
 * stress: a seeded random mix of what meets device-private memory. Under
 * each migrate_device engine, for a bounded time, OWNERS threads each own
 * three 2 MiB regions (4 KiB pages, a THP, 64 KiB mTHPs) with a shadow
 * copy, and pick at random: migrate part of a region to test_hmm's device,
 * migrate it back, read and check a page, write a page, MADV_DONTNEED a
 * range, read a range through a read-only mprotect() window, fork a child
 * that checks the whole region against the shadow, mremap() the region
 * elsewhere, or map fresh zero pages over part of it (MAP_FIXED, which
 * unmaps what was there). Meanwhile a chaos thread migrates random ranges
 * of any region to the device and evicts all device memory at random.
 * Migrations keep data, so the shadow stays exact; any mismatch fails the
 * run and is reported with the seed, the operation that found it and the
 * place. The harness fails the run on any warning in the kernel log.
 *
 * Usage: stress [--seed N] [--seconds S] [--engine E]: S seconds per
 * engine (default 8), every engine unless E is given.
 * KTAP output.
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
#include <time.h>
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define MTHP_BYTES (64UL << 10)
#define PAGE_BYTES 4096UL
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define OWNERS 2
#define KINDS 3
#define MTHP_ENABLED "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled"

enum op {
	OP_TO_DEV, OP_TO_SYS, OP_READ, OP_WRITE, OP_DONTNEED, OP_MPROTECT,
	OP_FORK, OP_MREMAP, OP_REMAP_ZERO, NR_OPS
};
static const char *const op_names[] = {
	"migrate to device", "migrate to system", "read", "write",
	"MADV_DONTNEED", "mprotect window", "fork", "mremap", "MAP_FIXED over",
};
static const char *const kind_names[] = { "4k", "thp", "64k" };

struct region {
	char *volatile addr;	/* read by the chaos thread */
	char *shadow;
	int kind;
};

struct owner {
	pthread_t thread;
	struct region r[KINDS];
	uint64_t rng;
	void *mirror;
	unsigned long ops[NR_OPS];
	char failure[240];
};

static int dev_fd;
static volatile int stop;
static unsigned long seed;
static struct owner owners[OWNERS];
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_failure[320];

static uint64_t next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 2685821657736338717ULL;
}

static unsigned long below(uint64_t *s, unsigned long n)
{
	return next(s) % n;
}

static void fail(struct owner *o, enum op op, int kind, size_t at, const char *what)
{
	if (o->failure[0])
		return;
	snprintf(o->failure, sizeof(o->failure),
		 "seed %lu, %s on the %s region at byte %zu: %s", seed, op_names[op],
		 kind_names[kind], at, what);
	pthread_mutex_lock(&fail_lock);
	if (!first_failure[0])
		snprintf(first_failure, sizeof(first_failure), "%s", o->failure);
	pthread_mutex_unlock(&fail_lock);
	stop = 1;
}

static int migrate(unsigned long req, char *p, size_t bytes, void *mirror)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)p,
		.ptr = (uintptr_t)mirror,
		.npages = bytes / PAGE_BYTES,
	};

	return ioctl(dev_fd, req, &cmd) ? -errno : 0;
}

/* Maps a fresh region of @kind; the mTHP region leaves no aligned 2 MiB
 * block inside its VMA, so that 64 KiB folios back it. */
static char *map_region(int kind)
{
	char *a = map_aligned(PMD_BYTES, PMD_BYTES, kind == 2 ? MTHP_BYTES : 0);

	if (a)
		madvise(a, PMD_BYTES, kind ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return a;
}

static int check(struct owner *o, struct region *r, size_t from, size_t len, enum op op)
{
	for (size_t i = from; i < from + len; i++)
		if (r->addr[i] != r->shadow[i]) {
			char what[80];

			snprintf(what, sizeof(what), "read %d, want %d", r->addr[i],
				 r->shadow[i]);
			fail(o, op, r->kind, i, what);
			return -1;
		}
	return 0;
}

/* A page-aligned range inside a region: [*from, *from + *len). */
static void range(uint64_t *s, size_t *from, size_t *len)
{
	size_t first = below(s, NPAGES), n = 1 + below(s, NPAGES - first);

	*from = first * PAGE_BYTES;
	*len = n * PAGE_BYTES;
}

static void one_op(struct owner *o)
{
	enum op op = below(&o->rng, NR_OPS);
	struct region *r = &o->r[below(&o->rng, KINDS)];
	size_t from, len, i;

	range(&o->rng, &from, &len);
	o->ops[op]++;
	switch (op) {
	case OP_TO_DEV:
		migrate(HMM_DMIRROR_MIGRATE_TO_DEV, r->addr + from, len, o->mirror);
		break;
	case OP_TO_SYS:
		migrate(HMM_DMIRROR_MIGRATE_TO_SYS, r->addr + from, len, o->mirror);
		break;
	case OP_READ:
		check(o, r, from, PAGE_BYTES, op);
		break;
	case OP_WRITE: {
		char v = (char)next(&o->rng);

		for (i = from; i < from + PAGE_BYTES; i += 512) {
			r->addr[i] = v;
			r->shadow[i] = v;
		}
		break;
	}
	case OP_DONTNEED:
		if (madvise(r->addr + from, len, MADV_DONTNEED))
			fail(o, op, r->kind, from, "madvise failed");
		else
			memset(r->shadow + from, 0, len);
		break;
	case OP_MPROTECT:
		if (mprotect(r->addr + from, len, PROT_READ)) {
			fail(o, op, r->kind, from, "mprotect failed");
			break;
		}
		check(o, r, from, len, op);
		if (mprotect(r->addr + from, len, PROT_READ | PROT_WRITE))
			fail(o, op, r->kind, from, "mprotect back failed");
		break;
	case OP_FORK: {
		pid_t pid = fork();
		int status;

		if (pid == 0)
			_exit(memcmp(r->addr, r->shadow, PMD_BYTES) ? 1 : 0);
		if (pid < 0 || waitpid(pid, &status, 0) != pid)
			fail(o, op, r->kind, 0, "fork or wait failed");
		else if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail(o, op, r->kind, 0, "the child saw other data");
		break;
	}
	case OP_MREMAP: {
		/* mremap() moves one VMA only: a region that did not merge
		 * back after a MAP_FIXED stays where it is. */
		char *p = mremap(r->addr, PMD_BYTES, PMD_BYTES, MREMAP_MAYMOVE);

		if (p != MAP_FAILED)
			r->addr = p;
		check(o, r, from, PAGE_BYTES, op);
		break;
	}
	case OP_REMAP_ZERO:
		if (mmap(r->addr + from, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED) {
			fail(o, op, r->kind, from, "mmap failed");
			break;
		}
		/* The same flags as the rest, so that the VMAs merge back. */
		madvise(r->addr + from, len, r->kind ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		memset(r->shadow + from, 0, len);
		break;
	default:
		break;
	}
}

static void *owner_run(void *arg)
{
	struct owner *o = arg;

	while (!stop)
		one_op(o);
	/* The last word: every region still matches its shadow. */
	for (int k = 0; k < KINDS && !o->failure[0]; k++)
		check(o, &o->r[k], 0, PMD_BYTES, OP_READ);
	return NULL;
}

static void *chaos_run(void *arg)
{
	uint64_t rng = seed * 0x9e3779b97f4a7c15ULL + 1;
	void *mirror = arg;
	struct hmm_dmirror_cmd cmd = { 0 };

	while (!stop) {
		struct region *r = &owners[below(&rng, OWNERS)].r[below(&rng, KINDS)];
		size_t from, len;

		range(&rng, &from, &len);
		if (below(&rng, 8) == 0)
			ioctl(dev_fd, HMM_DMIRROR_RELEASE, &cmd);
		else
			migrate(HMM_DMIRROR_MIGRATE_TO_DEV, r->addr + from, len, mirror);
	}
	return NULL;
}

/* One engine's run; reports its KTAP result. */
static void run(const char *engine, unsigned int seconds)
{
	void *chaos_mirror = malloc(PMD_BYTES);
	unsigned long total[NR_OPS] = { 0 };
	char totals[NR_OPS * 48];
	pthread_t chaos;
	int o, k, ok = 1, len = 0;
	time_t end;

	stop = 0;
	first_failure[0] = 0;
	for (o = 0; o < OWNERS; o++) {
		struct owner *w = &owners[o];

		memset(w, 0, sizeof(*w));
		w->rng = seed * 2654435761UL + o + 1;
		w->mirror = malloc(PMD_BYTES);
		for (k = 0; k < KINDS; k++) {
			w->r[k].kind = k;
			w->r[k].addr = map_region(k);
			w->r[k].shadow = malloc(PMD_BYTES);
			if (!w->r[k].addr || !w->r[k].shadow || !w->mirror) {
				ksft_test_result_fail("%s: cannot map regions\n", engine);
				return;
			}
			for (size_t i = 0; i < PMD_BYTES; i++)
				w->r[k].addr[i] = w->r[k].shadow[i] = (char)(i * 31 + k + o);
		}
	}
	for (o = 0; o < OWNERS; o++)
		pthread_create(&owners[o].thread, NULL, owner_run, &owners[o]);
	pthread_create(&chaos, NULL, chaos_run, chaos_mirror);
	end = time(NULL) + seconds;
	while (!stop && time(NULL) < end)
		usleep(100 * 1000);
	stop = 1;
	pthread_join(chaos, NULL);
	for (o = 0; o < OWNERS; o++) {
		pthread_join(owners[o].thread, NULL);
		for (k = 0; k < NR_OPS; k++)
			total[k] += owners[o].ops[k];
		if (owners[o].failure[0])
			ok = 0;
	}
	for (k = 0; k < NR_OPS; k++)
		len += snprintf(totals + len, sizeof(totals) - len, "%s %s %lu", k ? "," : ";",
				op_names[k], total[k]);
	ksft_test_result(ok, "%s: seed %lu, %u s%s%s%s\n", engine, seed, seconds, totals,
			 ok ? "" : "; first mismatch: ", ok ? "" : first_failure);
	for (o = 0; o < OWNERS; o++) {
		for (k = 0; k < KINDS; k++) {
			munmap(owners[o].r[k].addr, PMD_BYTES);
			free(owners[o].r[k].shadow);
		}
		free(owners[o].mirror);
	}
	free(chaos_mirror);
}

int main(int argc, char **argv)
{
	static const char *const engines[] = { "c", "rust", "rust-entry" };
	unsigned int seconds = 8;
	const char *only = NULL;
	char mthp_was[64] = "";
	int e, fd;

	seed = (unsigned long)time(NULL);
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--seed"))
			seed = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--seconds"))
			seconds = strtoul(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--engine"))
			only = argv[i + 1];
	}
	tap_begin(&dev_fd, NULL);
	/* 64 KiB mTHPs for the regions that ask for huge pages. */
	fd = open(MTHP_ENABLED, O_RDONLY);
	if (fd >= 0) {
		ssize_t got = read(fd, mthp_was, sizeof(mthp_was) - 1);
		char *sel;

		close(fd);
		mthp_was[got > 0 ? got : 0] = 0;
		sel = strchr(mthp_was, '[');
		if (sel) {
			memmove(mthp_was, sel + 1, strlen(sel));
			*strchrnul(mthp_was, ']') = 0;
		}
		write_file(MTHP_ENABLED, "madvise");
	}
	ksft_print_msg("seed %lu, %u s per engine\n", seed, seconds);
	ksft_set_plan(only ? 1 : 3);
	for (e = 0; e < 3; e++) {
		if (only && strcmp(only, engines[e]))
			continue;
		if (write_file(ENGINE, engines[e]))
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		run(engines[e], seconds);
	}
	if (mthp_was[0])
		write_file(MTHP_ENABLED, mthp_was);
	write_file(ENGINE, "rust");
	close(dev_fd);
	ksft_finished();
}
