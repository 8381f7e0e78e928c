// SPDX-License-Identifier: GPL-2.0
/*
 * A QEMU TCG plugin that counts the guest instructions each translated
 * block runs, for `cargo xtask vm --profile`: a block of n instructions
 * that ran k times counts n * k. Counting starts when the block at guest
 * address from=ADDR runs and stops when one at an until=ADDR runs (any
 * number of them), to start again at from=ADDR; out=FILE receives one
 * line per block that ran while counting: "address instructions runs".
 *
 * Only the stable part of the plugin API is used, declared here so that
 * no QEMU development headers are needed.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_info_t;
struct qemu_plugin_tb;
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
/* flags 0: QEMU_PLUGIN_CB_NO_REGS */
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, vcpu_udata_cb cb,
					  int flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 4;

#define MAX_UNTIL 8
#define BUCKETS (1u << 20)

struct block {
	uint64_t vaddr;
	uint64_t insns;
	uint64_t runs;
	struct block *next;
};

static struct block *table[BUCKETS];
static uint64_t from, until[MAX_UNTIL];
static int nuntil;
static volatile int counting;
static const char *out = "tb_profile.txt";

static void block_ran(unsigned int vcpu, void *userdata)
{
	struct block *b = userdata;

	for (int i = 0; i < nuntil; i++)
		if (b->vaddr == until[i])
			counting = 0;
	if (!counting) {
		if (b->vaddr != from)
			return;
		counting = 1;
	}
	__atomic_add_fetch(&b->runs, 1, __ATOMIC_RELAXED);
}

/* A block translated again (after a flush) keeps its counts. */
static void block_translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb), insns = qemu_plugin_tb_n_insns(tb);
	unsigned int h = (unsigned int)((vaddr ^ (vaddr >> 20) ^ (insns << 7)) & (BUCKETS - 1));
	struct block *b;

	for (b = table[h]; b; b = b->next)
		if (b->vaddr == vaddr && b->insns == insns)
			break;
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b)
			return;
		b->vaddr = vaddr;
		b->insns = insns;
		b->next = table[h];
		table[h] = b;
	}
	qemu_plugin_register_vcpu_tb_exec_cb(tb, block_ran, 0, b);
}

static void dump(qemu_plugin_id_t id, void *userdata)
{
	FILE *f = fopen(out, "w");

	if (!f)
		return;
	for (unsigned int i = 0; i < BUCKETS; i++)
		for (struct block *b = table[i]; b; b = b->next)
			if (b->runs)
				fprintf(f, "%llx %llu %llu\n", (unsigned long long)b->vaddr,
					(unsigned long long)b->insns, (unsigned long long)b->runs);
	fclose(f);
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
							       const struct qemu_info_t *info,
							       int argc, char **argv)
{
	for (int i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "from=", 5))
			from = strtoull(argv[i] + 5, NULL, 16);
		else if (!strncmp(argv[i], "until=", 6) && nuntil < MAX_UNTIL)
			until[nuntil++] = strtoull(argv[i] + 6, NULL, 16);
		else if (!strncmp(argv[i], "out=", 4))
			out = argv[i] + 4;
	}
	counting = !from;
	qemu_plugin_register_vcpu_tb_trans_cb(id, block_translated);
	qemu_plugin_register_atexit_cb(id, dump, NULL);
	return 0;
}
