#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
#
# engine_counters ENGINE: after a run under debugfs migrate_device/engine =
# ENGINE, check in TAP that the Rust engine's counters show who did the
# work. Under "rust" it must have collected 2 MiB folios whole with PMD
# migration entries and 4 KiB pages with PTE migration entries, and
# handled device-private CPU faults; under "rust-entry" also collected
# migration entries its fault path installed; under "c" it must have done
# nothing. The counters are printed as diagnostics.

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
if [ "$engine" != c ]; then
	if [ "$engine" = rust-entry ]; then
		echo "1..6"
	else
		echo "1..5"
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
else
	echo "1..1"
	total=$(awk '{ s += $2 } END { print s + 0 }' "$dir/counters")
	check "$(test "$total" -eq 0 && echo y)" \
		"Rust engine idle under engine=c (sum of counters: $total)"
fi
