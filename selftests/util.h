/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers the selftests share, and the benchmarks through engine.h:
 * sysfs/debugfs files, the start of a TAP run and the clock.
 */
#ifndef SELFTESTS_UTIL_H
#define SELFTESTS_UTIL_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ENGINE "/sys/kernel/debug/migrate_device/engine"
#define COUNTERS "/sys/kernel/debug/migrate_device/counters"
#define FAULT_HOLD "/sys/module/test_hmm/parameters/fault_hold_us"
#define FAULT_CALLS "/sys/module/test_hmm/parameters/fault_calls"
#define DMIRROR "/dev/hmm_dmirror0"
#define PAGEMAP "/proc/self/pagemap"
#define KPAGEFLAGS "/proc/kpageflags"

/*
 * Starts the TAP output of a test that switches engines: opens test_hmm's
 * device into *@dev, then each (path, int *fd) pair that follows, read-only,
 * up to a NULL path. Prints the skip plan and returns -1 when the kernel has
 * no engine switch or a file cannot be opened.
 */
static inline int tap_begin(int *dev, ...)
{
	const char *path;
	va_list ap;
	int ret = 0;

	printf("TAP version 13\n");
	if (access(ENGINE, W_OK)) {
		printf("1..0 # SKIP no %s (CONFIG_MIGRATE_DEVICE_RUST=n)\n", ENGINE);
		return -1;
	}
	*dev = open(DMIRROR, O_RDWR);
	if (*dev < 0) {
		printf("1..0 # SKIP cannot open %s\n", DMIRROR);
		return -1;
	}
	va_start(ap, dev);
	while (!ret && (path = va_arg(ap, const char *))) {
		int *fd = va_arg(ap, int *);

		*fd = open(path, O_RDONLY);
		if (*fd < 0) {
			printf("1..0 # SKIP cannot open %s\n", path);
			ret = -1;
		}
	}
	va_end(ap);
	return ret;
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

/* One of the Rust engine's counters, 0 when there is none. */
static inline unsigned long counter(const char *name)
{
	FILE *f = fopen(COUNTERS, "r");
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

static inline double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

#endif /* SELFTESTS_UTIL_H */
