#!/usr/bin/env bash
# make bench: the stage benchmarks (decode, guard, classify, conntrack,
# pipeline) with -benchmem, printed as one table. Timings on a shared 2-core
# machine are noisy: compare rows of one run, not runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCHTIME=${BENCHTIME:-1s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" ./filter/ ./switch/ ./conntrack/ 2>&1 | tee "$out" >/dev/null
if grep -q -E '^(FAIL|panic)' "$out"; then cat "$out"; exit 1; fi
printf '%-60s %14s %10s %10s %s\n' BENCHMARK ns/op B/op allocs/op extra
awk '/^Benchmark/ {
	name=$1; sub(/-[0-9]+$/, "", name); ns=""; b=""; a=""; extra=""
	for (i = 3; i < NF; i += 2) {
		if ($(i+1) == "ns/op") ns=$i
		else if ($(i+1) == "B/op") b=$i
		else if ($(i+1) == "allocs/op") a=$i
		else extra = extra " " $i " " $(i+1)
	}
	printf "%-60s %14s %10s %10s%s\n", name, ns, b, a, extra
}' "$out"

# Capture replay: the seed traffic mix (bench/gencap: TCP handshakes, data and
# teardown, UDP/DNS, ICMP, ARP, spoofed and malformed frames) through the
# complete pipeline, on one worker and on one worker per core; the median of
# REPLAY_RUNS runs each (short runs on a shared machine scatter).
REPLAY_CONNS=${REPLAY_CONNS:-4000}
REPLAY_RUNS=${REPLAY_RUNS:-5}
cap=$(mktemp --suffix .pcap)
trap 'rm -f "$out" "$cap"' EXIT
go run ./bench/gencap -o "$cap" -conns "$REPLAY_CONNS" >/dev/null
echo
printf '%-60s %14s %14s\n' "REPLAY ($REPLAY_CONNS rounds of the seed mix, median of $REPLAY_RUNS)" "whole command" "pipeline alone"
for workers in 1 0; do
	rates=$(for _ in $(seq "$REPLAY_RUNS"); do
		bin/sgswitch replay -c testdata/lab/seed.yaml --workers "$workers" "$cap" |
			awk '/^frames/ {w=$5} /^pipeline alone/ {print w, $4}'
	done | sort -n)
	median=$(echo "$rates" | awk '{a[NR]=$1; b[NR]=$2} END {print a[int((NR+1)/2)], b[int((NR+1)/2)]}')
	label="one worker"
	[ "$workers" = 0 ] && label="one worker per core ($(nproc))"
	printf '%-60s %14s %14s frames/s\n' "replay, $label" $median
done
