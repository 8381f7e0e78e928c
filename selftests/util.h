/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers the selftests share, and the benchmarks through engine.h:
 * sysfs/debugfs files, the start of a KTAP run, aligned mappings, page
 * flags, THP sizes and the clock.
 */
#ifndef SELFTESTS_UTIL_H
#define SELFTESTS_UTIL_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kselftest.h"

#define ENGINE "/sys/kernel/debug/migrate_device/engine"
#define COUNTERS "/sys/kernel/debug/migrate_device/counters"
/* The C engine's counters, under the same names. */
#define COUNTERS_C COUNTERS "_c"
#define FAULT_HOLD "/sys/module/test_hmm/parameters/fault_hold_us"
#define FAULT_CALLS "/sys/module/test_hmm/parameters/fault_calls"
#define DMIRROR "/dev/hmm_dmirror0"
#define PAGEMAP "/proc/self/pagemap"
#define KPAGEFLAGS "/proc/kpageflags"
#define KPF_COMPOUND_HEAD 15
#define KPF_COMPOUND_TAIL 16
#define KPF_THP 22
#define GUP_TEST "/sys/kernel/debug/gup_test"

/* The ABI of mm/gup_test.h: pin_user_pages() for the long term. */
struct pin_longterm_test {
	uint64_t addr;
	uint64_t size;
	uint32_t flags;
};

#define PIN_LONGTERM_TEST_START _IOW('g', 7, struct pin_longterm_test)
#define PIN_LONGTERM_TEST_STOP _IO('g', 8)
#define PIN_LONGTERM_TEST_FLAG_USE_WRITE 1

/*
 * Starts the KTAP output of a test that switches engines: opens test_hmm's
 * device into *@dev, then each (path, int *fd) pair that follows, read-only,
 * up to a NULL path. Exits with the whole suite skipped when the kernel has
 * no engine switch or a file cannot be opened, so it comes before the plan.
 */
static inline void tap_begin(int *dev, ...)
{
	const char *path;
	va_list ap;

	ksft_print_header();
	if (access(ENGINE, W_OK))
		ksft_exit_skip("no %s (CONFIG_MIGRATE_DEVICE_RUST=n)\n", ENGINE);
	*dev = open(DMIRROR, O_RDWR);
	if (*dev < 0)
		ksft_exit_skip("cannot open %s\n", DMIRROR);
	va_start(ap, dev);
	while ((path = va_arg(ap, const char *))) {
		int *fd = va_arg(ap, int *);

		*fd = open(path, O_RDONLY);
		if (*fd < 0)
			ksft_exit_skip("cannot open %s\n", path);
	}
	va_end(ap);
}

static inline int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
	close(fd);
	return ok ? 0 : -1;
}

static inline unsigned long read_ulong(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned long v = 0;

	if (f) {
		if (fscanf(f, "%lu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

/* Counter @name of the counters file @path, 0 when there is none. */
static inline unsigned long counter_in(const char *path, const char *name)
{
	FILE *f = fopen(path, "r");
	char n[64];
	unsigned long v, out = 0;

	if (!f)
		return 0;
	while (fscanf(f, "%63s %lu", n, &v) == 2)
		if (!strcmp(n, name))
			out = v;
	fclose(f);
	return out;
}

/* One of the Rust engine's counters, 0 when there is none. */
static inline unsigned long counter(const char *name)
{
	return counter_in(COUNTERS, name);
}

/*
 * A private anonymous read-write mapping of @size bytes that starts @off
 * bytes past an @align boundary, with nothing else of the mapping left
 * around it; NULL when it cannot be made.
 */
static inline char *map_aligned(size_t size, size_t align, size_t off)
{
	size_t span = size + align + off;
	char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *a;

	if (p == MAP_FAILED)
		return NULL;
	a = (char *)(((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1)) + off;
	if (a > p)
		munmap(p, a - p);
	if (p + span > a + size)
		munmap(a + size, p + span - (a + size));
	return a;
}

/*
 * Whether a page is present at @addr (/proc/self/pagemap open as
 * @pagemap_fd); if so, *@flags gets its /proc/kpageflags word (0 when that
 * cannot be read).
 */
static inline int page_flags(int pagemap_fd, int kpageflags_fd, const void *addr,
			     uint64_t *flags)
{
	uint64_t pm = 0;

	*flags = 0;
	if (pread(pagemap_fd, &pm, 8, (uintptr_t)addr / 4096 * 8) != 8 || !(pm >> 63 & 1))
		return 0;
	if (pread(kpageflags_fd, flags, 8, (pm & ((1ULL << 55) - 1)) * 8) != 8)
		*flags = 0;
	return 1;
}

#define THP_DIR "/sys/kernel/mm/transparent_hugepage"
#define THP_MAX_SIZES 16

/* Every THP size of the kernel, smallest first, and its saved setting. */
struct thp_sizes {
	int n;
	int kb[THP_MAX_SIZES];
	char was[THP_MAX_SIZES][16];
};

/*
 * Records every THP size (hugepages-<N>kB) and its "enabled" setting in @s,
 * smallest first; returns how many sizes are below @below_kb.
 */
static inline int thp_sizes_save(struct thp_sizes *s, int below_kb)
{
	int kb, below = 0;

	s->n = 0;
	for (kb = 4; kb <= (1 << 20) && s->n < THP_MAX_SIZES; kb *= 2) {
		char path[128], line[128] = "", *sel, *end;
		int fd, got;

		snprintf(path, sizeof(path), THP_DIR "/hugepages-%dkB/enabled", kb);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		got = read(fd, line, sizeof(line) - 1);
		close(fd);
		line[got > 0 ? got : 0] = 0;
		/* "always [inherit] madvise never": keep the selected one. */
		sel = strchr(line, '[');
		end = sel ? strchr(sel, ']') : NULL;
		if (!end || end - sel > (long)sizeof(s->was[0]))
			continue;
		*end = 0;
		s->kb[s->n] = kb;
		memcpy(s->was[s->n++], sel + 1, end - sel);
		below += kb < below_kb;
	}
	return below;
}

/*
 * Sets THP size @kb to @mode and every other size to "never"; @kb 0 puts
 * back what thp_sizes_save() recorded.
 */
static inline int thp_size_only(const struct thp_sizes *s, int kb, const char *mode)
{
	int i, ret = 0;

	for (i = 0; i < s->n; i++) {
		char path[128];

		snprintf(path, sizeof(path), THP_DIR "/hugepages-%dkB/enabled", s->kb[i]);
		if (write_file(path, !kb ? s->was[i] : s->kb[i] == kb ? mode : "never"))
			ret = -1;
	}
	return ret;
}

/*
 * Folios of THP size @kb allocated at fault so far (anon_fault_alloc). Read
 * without stdio, whose buffer could itself fault in such a folio.
 */
static inline unsigned long thp_fault_allocs(int kb)
{
	char path[128], buf[32] = "";
	int fd, got;

	snprintf(path, sizeof(path), THP_DIR "/hugepages-%dkB/stats/anon_fault_alloc", kb);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	got = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[got > 0 ? got : 0] = 0;
	return strtoul(buf, NULL, 10);
}

/*
 * How many of the @pages pages from @p are present in system memory; of
 * those, *@flagged (unless NULL) gets how many have a /proc/kpageflags bit
 * of @mask set.
 */
static inline int pages_present(int pagemap_fd, int kpageflags_fd, const void *p,
				unsigned long pages, uint64_t mask, unsigned long *flagged)
{
	int n = 0;

	if (flagged)
		*flagged = 0;
	for (unsigned long i = 0; i < pages; i++) {
		uint64_t kf;

		if (!page_flags(pagemap_fd, kpageflags_fd, (const char *)p + i * 4096, &kf))
			continue;
		n++;
		if (flagged && (kf & mask))
			(*flagged)++;
	}
	return n;
}

/*
 * A userfaultfd with the @len bytes at @p registered in @mode (an
 * UFFDIO_REGISTER_MODE_*); with UFFDIO_REGISTER_MODE_WP, the @wp_len bytes
 * at @p + @wp_off are write-protected too. Returns -1, with nothing left
 * registered, when that cannot be done.
 */
static inline int uffd_register(void *p, size_t len, __u64 mode, size_t wp_off,
				size_t wp_len)
{
	struct uffdio_api api = { .api = UFFD_API };
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)p, .len = len },
		.mode = mode,
	};
	struct uffdio_writeprotect wp = {
		.range = { .start = (uintptr_t)p + wp_off, .len = wp_len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	int uffd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (uffd < 0)
		return -1;
	if (ioctl(uffd, UFFDIO_API, &api) || ioctl(uffd, UFFDIO_REGISTER, &reg) ||
	    ((mode & UFFDIO_REGISTER_MODE_WP) && wp_len &&
	     ioctl(uffd, UFFDIO_WRITEPROTECT, &wp))) {
		close(uffd);
		return -1;
	}
	return uffd;
}

/* Unregisters the @len bytes at @p from @uffd and closes it; 0 on success. */
static inline int uffd_unregister(int uffd, void *p, size_t len)
{
	struct uffdio_range range = { .start = (uintptr_t)p, .len = len };
	int ret = ioctl(uffd, UFFDIO_UNREGISTER, &range);

	close(uffd);
	return ret;
}

static inline double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

#endif /* SELFTESTS_UTIL_H */
