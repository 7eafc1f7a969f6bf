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
