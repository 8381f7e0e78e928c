/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers the selftests share: sysfs/debugfs files and the clock.
 */
#ifndef SELFTESTS_UTIL_H
#define SELFTESTS_UTIL_H

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ENGINE "/sys/kernel/debug/migrate_device/engine"
#define COUNTERS "/sys/kernel/debug/migrate_device/counters"
#define FAULT_HOLD "/sys/module/test_hmm/parameters/fault_hold_us"
#define FAULT_CALLS "/sys/module/test_hmm/parameters/fault_calls"

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
