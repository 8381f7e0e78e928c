// SPDX-License-Identifier: GPL-2.0
/*
 * upstream_fixes: one case for each fix to 7.3's device-private THP code
 * that nothing else here guards, named after the bug it fixed, under each
 * migrate_device engine (the other fixes are guarded by differential,
 * numa_moves and mthp; the README lists which case guards which fix):
 *
 * - the write bit of a device-private PMD, lost by remove_migration_pmd()
 *   when it rebuilt the entry: a writable THP must stay writable on the
 *   device and back (test_hmm's snapshot);
 * - hmm_range_fault() starving behind a failed trylock of a device page
 *   (a69d1ab971a6): a read through the second device must complete while
 *   CPU readers fault the same page and the driver holds its lock;
 * - the huge zero PMD replaced without flushing it: a range mapped by it
 *   must migrate and read back as zeros;
 * - the uffd-wp bit dropped when a device-private PMD is split: every PTE
 *   of the split must keep it, on the device and back;
 * - pagemap and smaps of a device-private PMD: swap entries, not present
 *   pages, and no warning;
 * - MADV_FREE, MADV_COLD and MADV_PAGEOUT racing the migration of a
 *   device THP: no data lost (a freed page reads its data or zeros);
 * - the mapping of a page in the swap cache used after folio_free_swap()
 *   dropped it, in migrate_vma_pages(): pages swapped in from zram while
 *   a child shared their swap entries must migrate with their data;
 * - the PMD lock leaked by migrate_vma_insert_huge_pmd_page() when it
 *   backs off: a 2 MiB hole registered with userfaultfd for missing
 *   faults must be left empty.
 *
 * The harness fails the run on any warning, lockdep report or leaked lock
 * in the kernel log.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/swap.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PMD_BYTES (2UL << 20)
#define PAGE_BYTES 4096UL
#define NPAGES (PMD_BYTES / PAGE_BYTES)
#define DMIRROR1 "/dev/hmm_dmirror1"
#define PM_SWAP (1ULL << 62)
#define PM_PRESENT (1ULL << 63)
#define PM_UFFD_WP (1ULL << 57)
#define NENGINES 3
#define READERS 4

#define KPF_ZERO_PAGE 24
#define KPF_SWAPCACHE 13
#define ZRAM_SIZE "/sys/block/zram0/disksize"
#define ZRAM_RESET "/sys/block/zram0/reset"
#define ZRAM_DEV "/dev/zram0"
#define SWAP_BYTES (16UL << 20)
#define SMALL 64

static int dev_fd, dev1_fd, pagemap_fd, kpageflags_fd;
static unsigned char mirror[PMD_BYTES];
static uint64_t pm[NPAGES];
static char msg[200];

static void fill(char *p, unsigned int seed)
{
	for (size_t i = 0; i < PMD_BYTES; i += sizeof(int))
		*(unsigned int *)(p + i) = (unsigned int)i ^ seed;
}

/* NULL when every word holds the pattern of @seed (or 0 if @or_zero). */
static const char *check(const char *p, unsigned int seed, int or_zero)
{
	for (size_t i = 0; i < PMD_BYTES; i += sizeof(int)) {
		unsigned int v = *(const unsigned int *)(p + i);

		if (v != ((unsigned int)i ^ seed) && !(or_zero && !v)) {
			snprintf(msg, sizeof(msg), "data lost at byte %zu: %#x", i, v);
			return msg;
		}
	}
	return NULL;
}

static int ioctl_cmd(int fd, unsigned long req, void *addr, void *ptr, unsigned long npages,
		     struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)addr,
		.ptr = (uintptr_t)ptr,
		.npages = npages,
	};
	int ret = ioctl(fd, req, &cmd);

	if (out)
		*out = cmd;
	return ret;
}

static const char *to_dev(char *p)
{
	if (ioctl_cmd(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, mirror, NPAGES, NULL))
		return "migration to the device failed";
	return NULL;
}

static const char *to_sys(char *p)
{
	if (ioctl_cmd(dev_fd, HMM_DMIRROR_MIGRATE_TO_SYS, p, mirror, NPAGES, NULL))
		return "migration back failed";
	return NULL;
}

/* A 2 MiB THP filled with @seed, or NULL. */
static char *new_thp(unsigned int seed)
{
	char *p = map_aligned(PMD_BYTES, PMD_BYTES, 0);

	if (!p)
		return NULL;
	madvise(p, PMD_BYTES, MADV_HUGEPAGE);
	fill(p, seed);
	return p;
}

/* test_hmm's view of the range through device 0: each page's flags. */
static int snapshot(char *p, unsigned char *flags)
{
	return ioctl_cmd(dev_fd, HMM_DMIRROR_SNAPSHOT, p, flags, NPAGES, NULL);
}

/* How many pages of the snapshot have every bit of @want. */
static unsigned long count_flags(const unsigned char *flags, unsigned char want)
{
	unsigned long n = 0;

	for (unsigned long i = 0; i < NPAGES; i++)
		n += (flags[i] & want) == want;
	return n;
}

static const char *write_bit(char *p, unsigned int seed, char *det)
{
	static unsigned char on_dev[NPAGES], back[NPAGES];
	unsigned char dev = HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE;
	unsigned char sys = HMM_DMIRROR_PROT_WRITE | HMM_DMIRROR_PROT_PMD;
	unsigned long w_dev, w_back;
	const char *why;

	why = to_dev(p);
	if (why)
		return why;
	if (snapshot(p, on_dev))
		return "snapshot on the device failed";
	why = to_sys(p);
	if (why)
		return why;
	if (snapshot(p, back))
		return "snapshot back failed";
	w_dev = count_flags(on_dev, dev);
	w_back = count_flags(back, sys);
	snprintf(det, 120, "writable device pages %lu, writable PMD-mapped pages back %lu",
		 w_dev, w_back);
	if (w_dev != NPAGES)
		return "the device-private entries lost the write bit";
	if (w_back != NPAGES)
		return "the THP came back without the write bit (or not PMD-mapped)";
	return check(p, seed, 0);
}

/* CPU readers of one page, started together. */
static struct {
	pthread_barrier_t go;
	const volatile unsigned int *addr;
	unsigned int want;
	int bad;
} rd;

static void *cpu_read(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&rd.go);
	if (*rd.addr != rd.want)
		__atomic_store_n(&rd.bad, 1, __ATOMIC_RELAXED);
	return NULL;
}

static const char *range_fault_progress(char *p, unsigned int seed, char *det)
{
	static unsigned char buf[PAGE_BYTES];
	pthread_t t[READERS];
	struct hmm_dmirror_cmd cmd;
	unsigned long faults = 0;
	int round, i, ret = 0;

	if (dev1_fd < 0)
		return "cannot open the second device";
	if (write_file(FAULT_HOLD, "1000"))
		return "cannot set fault_hold_us";
	for (round = 0; round < 8 && !ret; round++) {
		const char *why = to_dev(p);

		if (why) {
			write_file(FAULT_HOLD, "0");
			return why;
		}
		rd.addr = (const volatile unsigned int *)p;
		rd.want = seed;
		pthread_barrier_init(&rd.go, NULL, READERS + 1);
		for (i = 0; i < READERS; i++)
			pthread_create(&t[i], NULL, cpu_read, NULL);
		pthread_barrier_wait(&rd.go);
		/* hmm_range_fault() through device 1 meets device 0's page. */
		alarm(30);
		ret = ioctl_cmd(dev1_fd, HMM_DMIRROR_READ, p, buf, 1, &cmd);
		alarm(0);
		faults += cmd.faults;
		for (i = 0; i < READERS; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&rd.go);
		if (!ret && *(unsigned int *)buf != seed)
			ret = -1;
	}
	write_file(FAULT_HOLD, "0");
	snprintf(det, 120, "8 device reads against %d CPU readers each, %lu device faults",
		 READERS, faults);
	if (ret)
		return "a read through the second device failed or read other data";
	if (rd.bad)
		return "a CPU reader read other data";
	return check(p, seed, 0);
}

/* Whether the page at @addr is the (huge) zero page, by /proc/kpageflags. */
static int zero_page(const char *addr)
{
	uint64_t kf = 0;

	return page_flags(pagemap_fd, kpageflags_fd, addr, &kf) &&
	       (kf & (1ULL << KPF_ZERO_PAGE | 1ULL << KPF_THP)) ==
	       (1ULL << KPF_ZERO_PAGE | 1ULL << KPF_THP);
}

static const char *huge_zero_pmd(char *p, unsigned int seed, char *det)
{
	volatile char sink;
	const char *why;
	int zero;

	(void)seed;
	/* A fresh range, read only: the huge zero page if the kernel uses it. */
	munmap(p, PMD_BYTES);
	p = map_aligned(PMD_BYTES, PMD_BYTES, 0);
	if (!p)
		return "cannot map 2 MiB";
	madvise(p, PMD_BYTES, MADV_HUGEPAGE);
	sink = p[0];
	(void)sink;
	zero = zero_page(p) && zero_page(p + PMD_BYTES - PAGE_BYTES);
	why = to_dev(p) ?: to_sys(p);
	snprintf(det, 120, "%s", zero ? "huge zero PMD migrated there and back"
				  : "no huge zero PMD here (use_zero_page off)");
	for (size_t i = 0; !why && i < PMD_BYTES; i += PAGE_BYTES)
		if (p[i])
			why = "a page of the huge zero PMD reads non-zero";
	munmap(p, PMD_BYTES);
	if (!why && !zero)
		return "the range was not mapped by the huge zero PMD";
	return why;
}

static const char *uffd_wp_split(char *p, unsigned int seed, char *det)
{
	unsigned long on_dev = 0, back = 0, i;
	const char *why = to_dev(p);
	int uffd;

	if (why)
		return why;
	uffd = uffd_register(p, PMD_BYTES, UFFDIO_REGISTER_MODE_WP, 0, PMD_BYTES);
	if (uffd < 0)
		return "write-protecting the device PMD failed";
	/* Half of it read-only: the device-private PMD is split. */
	if (mprotect(p + PMD_BYTES / 2, PMD_BYTES / 2, PROT_READ))
		why = "mprotect failed";
	if (!why && pread(pagemap_fd, pm, sizeof(pm), (uintptr_t)p / PAGE_BYTES * 8) != sizeof(pm))
		why = "reading pagemap failed";
	for (i = 0; !why && i < NPAGES; i++)
		on_dev += !!(pm[i] & PM_UFFD_WP);
	if (!why)
		why = to_sys(p);
	if (!why && pread(pagemap_fd, pm, sizeof(pm), (uintptr_t)p / PAGE_BYTES * 8) != sizeof(pm))
		why = "reading pagemap failed";
	for (i = 0; !why && i < NPAGES; i++)
		back += !!(pm[i] & PM_UFFD_WP);
	uffd_unregister(uffd, p, PMD_BYTES);
	snprintf(det, 120, "uffd-wp pages after the split: %lu on the device, %lu back, of %lu",
		 on_dev, back, NPAGES);
	if (why)
		return why;
	if (on_dev != NPAGES)
		return "splitting the device-private PMD dropped the uffd-wp bit";
	if (back != NPAGES)
		return "the migration back dropped the uffd-wp bit";
	mprotect(p + PMD_BYTES / 2, PMD_BYTES / 2, PROT_READ | PROT_WRITE);
	return check(p, seed, 0);
}

static const char *pagemap_smaps(char *p, unsigned int seed, char *det)
{
	unsigned long swap = 0, present = 0, i;
	char buf[4096];
	const char *why = to_dev(p);
	int fd;

	if (why)
		return why;
	if (pread(pagemap_fd, pm, sizeof(pm), (uintptr_t)p / PAGE_BYTES * 8) != sizeof(pm))
		return "reading pagemap failed";
	for (i = 0; i < NPAGES; i++) {
		swap += !!(pm[i] & PM_SWAP);
		present += !!(pm[i] & PM_PRESENT);
	}
	fd = open("/proc/self/smaps", O_RDONLY);
	if (fd < 0)
		return "cannot open smaps";
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	close(fd);
	snprintf(det, 120, "pagemap of the device PMD: %lu swap entries, %lu present; smaps read",
		 swap, present);
	if (swap != NPAGES || present)
		return "pagemap does not show the device PMD as swap entries";
	return check(p, seed, 0);
}

static struct {
	char *p;
	int stop;
} adv;

static void *advise_loop(void *arg)
{
	static const int advice[] = { MADV_COLD, MADV_PAGEOUT, MADV_FREE };
	unsigned long n = 0;

	(void)arg;
	while (!__atomic_load_n(&adv.stop, __ATOMIC_RELAXED)) {
		madvise(adv.p, PMD_BYTES, advice[n % 3]);
		n++;
	}
	return (void *)n;
}

static const char *madvise_race(char *p, unsigned int seed, char *det)
{
	pthread_t t;
	void *calls;
	int round;

	adv.p = p;
	adv.stop = 0;
	pthread_create(&t, NULL, advise_loop, NULL);
	/*
	 * A migration may fail or move nothing while the advice discards
	 * lazily freed pages: the data is what counts.
	 */
	for (round = 0; round < 20; round++) {
		to_dev(p);
		to_sys(p);
	}
	__atomic_store_n(&adv.stop, 1, __ATOMIC_RELAXED);
	pthread_join(t, &calls);
	snprintf(det, 120, "20 round trips against %lu madvise() calls",
		 (unsigned long)(uintptr_t)calls);
	return check(p, seed, 1);
}

/*
 * A 2 MiB hole registered for userfaultfd missing faults: inserting the
 * device THP must back off under the PMD lock (migrate_vma_insert_huge_pmd
 * _page(), which leaked that lock on such a path) and leave the hole empty.
 */
static const char *hole_uffd_missing(char *p, unsigned int seed, char *det)
{
	struct hmm_dmirror_cmd cmd = { 0 };
	unsigned long mapped = 0, i;
	const char *why = NULL;
	int uffd, ret;

	(void)seed;
	/* A fresh hole at the same place. */
	if (madvise(p, PMD_BYTES, MADV_DONTNEED))
		return "MADV_DONTNEED failed";
	uffd = uffd_register(p, PMD_BYTES, UFFDIO_REGISTER_MODE_MISSING, 0, 0);
	if (uffd < 0)
		return "registering the hole with userfaultfd failed";
	ret = ioctl_cmd(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, mirror, NPAGES, &cmd);
	if (pread(pagemap_fd, pm, sizeof(pm), (uintptr_t)p / PAGE_BYTES * 8) != sizeof(pm))
		why = "reading pagemap failed";
	for (i = 0; !why && i < NPAGES; i++)
		mapped += !!(pm[i] & (PM_PRESENT | PM_SWAP));
	uffd_unregister(uffd, p, PMD_BYTES);
	snprintf(det, 120, "migration %s, %llu pages; %lu pages of the hole mapped",
		 ret ? strerror(errno) : "done", (unsigned long long)cmd.cpages, mapped);
	if (why)
		return why;
	if (mapped)
		return "the hole was filled behind userfaultfd's back";
	for (i = 0; i < PMD_BYTES; i += PAGE_BYTES)
		if (p[i])
			return "the hole reads non-zero";
	return NULL;
}

/* Swap on a fresh zram device; 0 on success. */
static int swap_on(void)
{
	static char page[PAGE_BYTES];
	int fd, ok;

	write_file(ZRAM_RESET, "1");
	if (write_file(ZRAM_SIZE, "16M"))
		return -1;
	/* A version 1 swap header: last page, then the magic at the end. */
	memset(page, 0, sizeof(page));
	*(uint32_t *)(page + 1024) = 1;
	*(uint32_t *)(page + 1028) = SWAP_BYTES / PAGE_BYTES - 1;
	memcpy(page + PAGE_BYTES - 10, "SWAPSPACE2", 10);
	fd = open(ZRAM_DEV, O_WRONLY);
	if (fd < 0)
		return -1;
	ok = write(fd, page, sizeof(page)) == (ssize_t)sizeof(page);
	close(fd);
	return ok ? swapon(ZRAM_DEV, 0) : -1;
}

static void swap_off(void)
{
	swapoff(ZRAM_DEV);
	write_file(ZRAM_RESET, "1");
}

/* Pages of the @n at @q whose pagemap entry has @bit. */
static unsigned long pagemap_count(const char *q, unsigned long n, uint64_t bit)
{
	unsigned long c = 0;

	if (pread(pagemap_fd, pm, n * 8, (uintptr_t)q / PAGE_BYTES * 8) != (ssize_t)(n * 8))
		return 0;
	for (unsigned long i = 0; i < n; i++)
		c += !!(pm[i] & bit);
	return c;
}

/*
 * Pages swapped out, then swapped in while a child still held their swap
 * entries, stay in the swap cache; once the child is gone,
 * migrate_vma_pages() can take them out of it (folio_free_swap()) and
 * must then migrate them with their mapping as it is now, not as it was.
 */
static const char *swap_cache(char *p, unsigned int seed, char *det)
{
	size_t bytes = SMALL * PAGE_BYTES;
	unsigned long out, cached = 0, i;
	struct hmm_dmirror_cmd cmd = { 0 };
	const char *why = NULL;
	int pipefd[2], ret;
	char *q;
	pid_t pid;

	(void)p;
	if (swap_on())
		return "cannot swap on zram";
	q = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (q == MAP_FAILED) {
		swap_off();
		return "mmap failed";
	}
	madvise(q, bytes, MADV_NOHUGEPAGE);
	for (i = 0; i < bytes; i += sizeof(int))
		*(unsigned int *)(q + i) = (unsigned int)i ^ seed;
	madvise(q, bytes, MADV_PAGEOUT);
	out = pagemap_count(q, SMALL, PM_SWAP);
	if (pipe(pipefd)) {
		why = "pipe failed";
		goto out;
	}
	pid = fork();
	if (!pid) {
		char c;

		close(pipefd[1]);
		_exit(read(pipefd[0], &c, 1) < 0);
	}
	close(pipefd[0]);
	/* Swapped in while the child shares the entries: via the swap cache. */
	for (i = 0; i < bytes; i += PAGE_BYTES)
		(void)*(volatile char *)(q + i);
	for (i = 0; i < SMALL; i++) {
		uint64_t kf = 0;

		cached += page_flags(pagemap_fd, kpageflags_fd, q + i * PAGE_BYTES, &kf) &&
			  (kf & 1ULL << KPF_SWAPCACHE);
	}
	close(pipefd[1]);
	waitpid(pid, NULL, 0);
	ret = ioctl_cmd(dev_fd, HMM_DMIRROR_MIGRATE_TO_DEV, q, mirror, SMALL, &cmd);
	snprintf(det, 120, "%lu pages swapped out, %lu in the swap cache; to the device: %s, %llu pages",
		 out, cached, ret ? strerror(errno) : "done", (unsigned long long)cmd.cpages);
	if (pid < 0)
		why = "fork failed";
	else if (out != SMALL)
		why = "MADV_PAGEOUT did not swap the pages out";
	else if (!cached)
		why = "no page stayed in the swap cache";
	else if (ret || cmd.cpages != SMALL)
		why = "the pages did not all migrate";
	else if (pagemap_count(q, SMALL, PM_PRESENT))
		why = "pages stayed in system memory";
	for (i = 0; !why && i < bytes; i += sizeof(int))
		if (*(unsigned int *)(q + i) != ((unsigned int)i ^ seed))
			why = "data lost";
out:
	munmap(q, bytes);
	swap_off();
	return why;
}

static const struct {
	const char *name;
	const char *(*run)(char *p, unsigned int seed, char *det);
} cases[] = {
	{ "device-private PMD keeps its write bit (remove_migration_pmd)", write_bit },
	{ "hmm_range_fault progresses behind a locked device page (a69d1ab971a6)",
	  range_fault_progress },
	{ "huge zero PMD migrated (cache flushed before it is replaced)", huge_zero_pmd },
	{ "uffd-wp kept when a device-private PMD is split", uffd_wp_split },
	{ "pagemap and smaps of a device-private PMD", pagemap_smaps },
	{ "MADV_FREE, MADV_COLD and MADV_PAGEOUT racing a device THP", madvise_race },
	{ "hole under userfaultfd left alone, PMD lock released", hole_uffd_missing },
	{ "pages in the swap cache migrated (mapping read after folio_free_swap)", swap_cache },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void on_alarm(int sig)
{
	(void)sig;
	/* A read that starves fails the suite rather than hang it. */
	write_file(FAULT_HOLD, "0");
	_exit(KSFT_FAIL);
}

static void restore(void)
{
	write_file(FAULT_HOLD, "0");
	write_file(ENGINE, "rust");
}

int main(void)
{
	static const char *const engines[NENGINES] = { "c", "rust", "rust-entry" };
	static char det[120];
	unsigned int c;
	int e;

	tap_begin(&dev_fd, PAGEMAP, &pagemap_fd, KPAGEFLAGS, &kpageflags_fd, NULL);
	dev1_fd = open(DMIRROR1, O_RDWR);
	signal(SIGALRM, on_alarm);
	ksft_set_plan(NENGINES * NCASES);
	for (e = 0; e < NENGINES; e++) {
		if (write_file(ENGINE, engines[e])) {
			restore();
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		}
		for (c = 0; c < NCASES; c++) {
			unsigned int seed = 0x9e3779b9u * (c + 1 + e * NCASES);
			char *p = new_thp(seed);
			const char *why;

			det[0] = 0;
			why = p ? cases[c].run(p, seed, det) : "cannot map a THP";
			/* The case that replaces the region unmaps it itself. */
			if (p && cases[c].run != huge_zero_pmd)
				munmap(p, PMD_BYTES);
			if (why)
				ksft_test_result_fail("%s %s: %s; %s\n", engines[e], cases[c].name,
						      why, det);
			else
				ksft_test_result_pass("%s %s: %s\n", engines[e], cases[c].name, det);
		}
	}
	restore();
	ksft_finished();
}
