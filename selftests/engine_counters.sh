#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# engine_counters ENGINE: after a run under debugfs migrate_device/engine =
# ENGINE, check in TAP that the Rust engine's counters show who did the
# work. Under "rust" it must have collected 2 MiB folios whole with PMD
# migration entries and 4 KiB pages with PTE migration entries, and
# handled device-private CPU faults; under "rust-entry" also collected
# migration entries its fault path installed; under "c" it must have done
# nothing. The C engine's counters (counters_c) must show the reverse: 2 MiB
# folios and 4 KiB pages collected under "c", nothing under the others.
# The counters are printed as diagnostics.

dir=/sys/kernel/debug/migrate_device
engine=$1

if [ ! -r "$dir/counters" ]; then
	echo "1..0 # SKIP no $dir/counters (CONFIG_MIGRATE_DEVICE_RUST=n)"
	exit 0
fi
case $engine in
rust|rust-entry|c) ;;
*) echo "usage: $0 rust|rust-entry|c" >&2; exit 2 ;;
esac

get() {
	awk -v k="$1" '$1 == k { print $2 }' "$dir/counters"
}

get_c() {
	awk -v k="$1" '$1 == k { print $2 }' "$dir/counters_c"
}

sum() {
	awk '{ s += $2 } END { print s + 0 }' "$1"
}

n=0
check() {
	n=$((n + 1))
	if [ "$1" ]; then
		echo "ok $n $2"
	else
		echo "not ok $n $2"
	fi
}

echo "TAP version 13"
sed 's/^/# /' "$dir/counters"
sed 's/^/# c: /' "$dir/counters_c"
if [ "$engine" != c ]; then
	if [ "$engine" = rust-entry ]; then
		echo "1..7"
	else
		echo "1..6"
	fi
	check "$(test "$(get folios_order_9)" -gt 0 && echo y)" \
		"2 MiB folios collected whole: $(get folios_order_9)"
	check "$(test "$(get pmd_migration_entries)" -gt 0 && echo y)" \
		"PMD migration entries: $(get pmd_migration_entries)"
	check "$(test "$(get folios_order_0)" -gt 0 && echo y)" \
		"4 KiB folios collected: $(get folios_order_0)"
	check "$(test "$(get pte_migration_entries)" -gt 0 && echo y)" \
		"PTE migration entries: $(get pte_migration_entries)"
	check "$(test "$(get migrate_to_ram)" -gt 0 && echo y)" \
		"device-private faults: $(get faults), migrate_to_ram calls: $(get migrate_to_ram), waits: $(get fault_waits)"
	if [ "$engine" = rust-entry ]; then
		check "$(test "$(get fault_entries_collected)" -gt 0 && echo y)" \
			"fault path migration entries: $(get fault_entries), collected: $(get fault_entries_collected), put back: $(get fault_entries_restored)"
	fi
	total=$(sum "$dir/counters_c")
	check "$(test "$total" -eq 0 && echo y)" \
		"C engine idle under engine=$engine (sum of counters_c: $total)"
else
	echo "1..3"
	total=$(sum "$dir/counters")
	check "$(test "$total" -eq 0 && echo y)" \
		"Rust engine idle under engine=c (sum of counters: $total)"
	check "$(test "$(get_c folios_order_9)" -gt 0 && echo y)" \
		"C engine: 2 MiB folios collected whole: $(get_c folios_order_9), PMD migration entries: $(get_c pmd_migration_entries)"
	check "$(test "$(get_c pte_migration_entries)" -gt 0 && echo y)" \
		"C engine: PTE migration entries: $(get_c pte_migration_entries), TLB flushes: $(get_c tlb_flushes)"
fi
