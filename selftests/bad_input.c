// SPDX-License-Identifier: GPL-2.0
/*
 * bad_input: test_hmm's migration ioctls given ranges they cannot take
 * whole, under each migrate_device engine: no pages, a range running past
 * the end of its VMA, an address with no VMA, a PROT_NONE VMA, an address
 * that is not page aligned, shared file memory, and a migration back of
 * memory that is not on the device. Each case records what the ioctl
 * returned (0 or an errno) and how many pages it reported; the Rust
 * engines must give what 7.3's C engine gives, the cases that name memory
 * the driver cannot take must fail with the errno listed below, and the
 * memory must read back as it was written, wherever it ended up.
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
#include <unistd.h>

#include "kselftest.h"
#include "test_hmm_uapi.h"
#include "util.h"

#define PAGE_BYTES 4096UL
#define NPAGES 16
#define BYTES (NPAGES * PAGE_BYTES)
#define NENGINES 3

static int dev_fd;
static unsigned char mirror[2 * BYTES];

/* What one ioctl did: its return value, errno and reported pages. */
struct outcome {
	int ret, err;
	unsigned long long cpages;
};

static void fill(unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i * 7 + seed);
}

static int intact(const unsigned char *p, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != (unsigned char)(i * 7 + seed))
			return 0;
	return 1;
}

static struct outcome migrate(unsigned long req, const void *addr, unsigned long npages)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)addr,
		.ptr = (uintptr_t)mirror,
		.npages = npages,
	};
	struct outcome o;

	errno = 0;
	o.ret = ioctl(dev_fd, req, &cmd);
	o.err = o.ret ? errno : 0;
	o.cpages = cmd.cpages;
	return o;
}

/*
 * The cases. Each maps what it needs, runs one ioctl into *@o, checks the
 * data and unmaps; it returns NULL or why the data is not intact. @want
 * is the errno the case must get whatever the engine (-1: none fixed, the
 * C engine is the reference).
 */
struct bad_case {
	const char *name;
	int want;
	const char *(*run)(unsigned int seed, struct outcome *o);
};

static unsigned char *anon(size_t bytes, unsigned int seed)
{
	unsigned char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, bytes, MADV_NOHUGEPAGE);
	fill(p, bytes, seed);
	return p;
}

/*
 * Runs @req on @npages from byte @off of a fresh anonymous mapping of
 * @bytes, then checks that all of it reads as written.
 */
static const char *on_anon(size_t bytes, size_t off, unsigned long req,
			   unsigned long npages, unsigned int seed, struct outcome *o)
{
	unsigned char *p = anon(bytes, seed);
	int ok;

	if (!p)
		return "mmap failed";
	*o = migrate(req, p + off, npages);
	ok = intact(p, bytes, seed);
	munmap(p, bytes);
	return ok ? NULL : "data lost";
}

static const char *no_pages(unsigned int seed, struct outcome *o)
{
	return on_anon(BYTES, 0, HMM_DMIRROR_MIGRATE_TO_DEV, 0, seed, o);
}

/* The second half of the range is unmapped: the first half may move. */
static const char *past_vma_end(unsigned int seed, struct outcome *o)
{
	unsigned char *p = anon(BYTES, seed);
	int ok;

	if (!p)
		return "mmap failed";
	munmap(p + BYTES / 2, BYTES / 2);
	*o = migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p, NPAGES);
	ok = intact(p, BYTES / 2, seed);
	munmap(p, BYTES / 2);
	return ok ? NULL : "data lost";
}

static const char *no_vma(unsigned int seed, struct outcome *o)
{
	unsigned char *p = anon(BYTES, seed);

	if (!p)
		return "mmap failed";
	munmap(p, BYTES);
	*o = migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p, NPAGES);
	return NULL;
}

static const char *prot_none(unsigned int seed, struct outcome *o)
{
	unsigned char *p = anon(BYTES, seed);
	int ok;

	if (!p)
		return "mmap failed";
	if (mprotect(p, BYTES, PROT_NONE)) {
		munmap(p, BYTES);
		return "mprotect failed";
	}
	*o = migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p, NPAGES);
	mprotect(p, BYTES, PROT_READ);
	ok = intact(p, BYTES, seed);
	munmap(p, BYTES);
	return ok ? NULL : "data lost";
}

/* One byte into the first page: the engines align the range down. */
static const char *unaligned(unsigned int seed, struct outcome *o)
{
	return on_anon(BYTES + PAGE_BYTES, 1, HMM_DMIRROR_MIGRATE_TO_DEV, NPAGES, seed, o);
}

/* Shared file pages have a mapping: no engine collects them. */
static const char *shared_file(unsigned int seed, struct outcome *o)
{
	int fd = memfd_create("bad_input", 0);
	unsigned char *p;
	int ok;

	if (fd < 0 || ftruncate(fd, BYTES)) {
		if (fd >= 0)
			close(fd);
		return "memfd failed";
	}
	p = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return "mmap failed";
	fill(p, BYTES, seed);
	*o = migrate(HMM_DMIRROR_MIGRATE_TO_DEV, p, NPAGES);
	ok = intact(p, BYTES, seed);
	munmap(p, BYTES);
	return ok ? NULL : "data lost";
}

/* Memory that never went to the device: nothing to bring back. */
static const char *back_not_on_device(unsigned int seed, struct outcome *o)
{
	return on_anon(BYTES, 0, HMM_DMIRROR_MIGRATE_TO_SYS, NPAGES, seed, o);
}

static const struct bad_case cases[] = {
	{ "no pages", -1, no_pages },
	{ "range past the end of its VMA", EINVAL, past_vma_end },
	{ "no VMA at the address", EINVAL, no_vma },
	{ "PROT_NONE VMA", EINVAL, prot_none },
	{ "address not page aligned", -1, unaligned },
	{ "shared file memory", ENOENT, shared_file },
	{ "back, memory not on the device", -1, back_not_on_device },
};

#define NCASES (sizeof(cases) / sizeof(cases[0]))

static void restore(void)
{
	write_file(ENGINE, "rust");
}

int main(void)
{
	static const char *const engines[NENGINES] = { "c", "rust", "rust-entry" };
	static struct outcome ref[NCASES];
	unsigned int c;
	int e;

	tap_begin(&dev_fd, NULL);
	ksft_set_plan(NENGINES * NCASES);
	for (e = 0; e < NENGINES; e++) {
		if (write_file(ENGINE, engines[e])) {
			restore();
			ksft_exit_fail_msg("cannot select engine %s\n", engines[e]);
		}
		for (c = 0; c < NCASES; c++) {
			struct outcome o = { 0 };
			const char *why = cases[c].run(0x51u * (c + 1) + e, &o);
			char got[96];

			snprintf(got, sizeof(got), "%s, %llu pages",
				 o.ret ? strerror(o.err) : "success", o.cpages);
			if (!e)
				ref[c] = o;
			if (!why && cases[c].want >= 0 && o.err != cases[c].want)
				why = "not the errno this case must get";
			if (!why && e && (o.ret != ref[c].ret || o.err != ref[c].err ||
					  o.cpages != ref[c].cpages))
				why = "not what the c engine gave";
			if (why)
				ksft_test_result_fail("%s %s: %s; got %s\n", engines[e],
						      cases[c].name, why, got);
			else
				ksft_test_result_pass("%s %s: %s\n", engines[e], cases[c].name,
						      got);
		}
	}
	restore();
	ksft_finished();
}
