#!/usr/bin/env bash
# make bench-replay: sgswitch replay of captures larger than its memory budget
# on one core (taskset), as a user runs it: a REPLAY_SIZE (default 2G) capture
# of the seed mix, and REPLAY_ALLOWED_CONNS rounds (default 5000: 20,000 TCP
# connections plus DNS and ICMP) of traffic the seed policy allows, where every
# frame must be forwarded. Prints the median of REPLAY_RUNS runs (default 3)
# of each rate, the peak RSS and the page faults, then the start-up alone (an
# empty capture) and the 2 GB capture with a worker per core; deletes the
# captures.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${REPLAY_SIZE:-2G}
RUNS=${REPLAY_RUNS:-3}
CONNS=${REPLAY_ALLOWED_CONNS:-5000}
CPU=${REPLAY_CPU:-1}
dir=$(mktemp -d /tmp/sgswitch-replay.XXXXXX)
trap 'rm -rf "$dir"' EXIT
go build -o "$dir/gencap" ./bench/gencap
"$dir/gencap" -o "$dir/big.pcap" -size "$SIZE" >/dev/null
"$dir/gencap" -o "$dir/allowed.pcap" -mix allowed -conns "$CONNS" >/dev/null
head -c 24 "$dir/allowed.pcap" >"$dir/empty.pcap" # the pcap header alone
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# faults CMD...: runs CMD with its output in $dir/run.txt and prints its page
# faults (the traps, as perf counts them: getrusage would add the pages that
# MADV_POPULATE_WRITE brings in without one), "-" without perf.
faults() {
	if command -v perf >/dev/null && perf stat -x, -e page-faults -o "$dir/faults.txt" "$@" >"$dir/run.txt" 2>/dev/null; then
		awk -F, '/page-faults/ {print $1}' "$dir/faults.txt"
	else
		"$@" >"$dir/run.txt"
		echo -
	fi
}
printf '%-40s %10s %10s %11s %11s %6s %8s %7s\n' capture frames "whole/s" "per-cpu-s/s" "pipeline/s" ratio "peak RSS" faults
row() { # row LABEL FILE WORKERS CHECK
	local label=$1 f=$2 workers=$3 check=$4 out="$dir/rows.out"
	: >"$out"
	for _ in $(seq "$RUNS"); do
		if [ "$workers" = 1 ]; then
			pf=$(faults taskset -c "$CPU" bin/sgswitch replay -c testdata/lab/seed.yaml "$f")
		else
			pf=$(faults bin/sgswitch replay -c testdata/lab/seed.yaml --workers "$workers" "$f")
		fi
		if [ "$check" = allowed ] && grep -qE '^ +(drop|local) ' "$dir/run.txt"; then
			echo "allowed capture: not every frame was forwarded:"; cat "$dir/run.txt"; exit 1
		fi
		awk -v pf="$pf" '/^frames/ {n=$2; w=$5} /^cpu time/ {c=$4} /^pipeline alone/ {p=$4} /^peak memory/ {m=$3}
			END {print n, w, c, p, m, pf}' "$dir/run.txt" >>"$out"
	done
	local n w c p r m pf
	n=$(awk '{print $1; exit}' "$out")
	w=$(awk '{print $2}' "$out" | median)
	c=$(awk '{print $3}' "$out" | median)
	p=$(awk '{print $4}' "$out" | median)
	r=$(awk '{print $2/$4}' "$out" | median)
	m=$(awk '{print $5}' "$out" | median)
	pf=$(awk '{print $6}' "$out" | median)
	printf '%-40s %10s %10.0f %11.0f %11.0f %6.2f %5s MB %7s\n' "$label" "$n" "$w" "$c" "$p" "$r" "$m" "$pf"
}
row "seed mix ($(du -m "$dir/big.pcap" | cut -f1) MB), one core" "$dir/big.pcap" 1 -
row "all allowed ($(du -m "$dir/allowed.pcap" | cut -f1) MB), one core" "$dir/allowed.pcap" 1 allowed
row "seed mix, --workers 2 (both cores)" "$dir/big.pcap" 2 -
# The start-up: what an empty capture's replay takes, whole command.
: >"$dir/start.out"
for _ in $(seq "$RUNS"); do
	pf=$(faults taskset -c "$CPU" bin/sgswitch replay -c testdata/lab/seed.yaml "$dir/empty.pcap")
	awk -v pf="$pf" '/^frames/ {t=$4; sub(/:$/, "", t)
		if (t ~ /ms$/) {sub(/ms$/, "", t)} else if (t ~ /µs$/) {sub(/µs$/, "", t); t /= 1000} else {sub(/s$/, "", t); t *= 1000}
		print t, pf}' "$dir/run.txt" >>"$dir/start.out"
done
printf 'start-up alone (a capture without frames, one core): %s ms, %s page faults (medians)\n' \
	"$(awk '{print $1}' "$dir/start.out" | median)" "$(awk '{print $2}' "$dir/start.out" | median)"
