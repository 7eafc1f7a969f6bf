#!/usr/bin/env bash
# make bench-replay: sgswitch replay of captures larger than its memory budget
# on one core (taskset), as a user runs it: a REPLAY_SIZE (default 2G) capture
# of the seed mix, and REPLAY_ALLOWED_CONNS rounds (default 5000: 20,000 TCP
# connections plus DNS and ICMP) of traffic the seed policy allows, where every
# frame must be forwarded. Prints the median of REPLAY_RUNS runs (default 3)
# of each rate, the peak RSS, and deletes the captures.
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
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-44s %10s %12s %12s %12s %8s %9s\n' capture frames "whole/s" "per-cpu-s/s" "pipeline/s" ratio "peak RSS"
for c in big allowed; do
	f="$dir/$c.pcap"
	out="$dir/$c.out"
	: >"$out"
	for _ in $(seq "$RUNS"); do
		taskset -c "$CPU" bin/sgswitch replay -c testdata/lab/seed.yaml "$f" >"$dir/run.txt"
		if [ "$c" = allowed ] && grep -qE '^ +(drop|local) ' "$dir/run.txt"; then
			echo "allowed capture: not every frame was forwarded:"; cat "$dir/run.txt"; exit 1
		fi
		awk '/^frames/ {n=$2; w=$5} /^cpu time/ {c=$4} /^pipeline alone/ {p=$4} /^peak memory/ {m=$3}
			END {print n, w, c, p, m}' "$dir/run.txt" >>"$out"
	done
	n=$(awk '{print $1; exit}' "$out")
	w=$(awk '{print $2}' "$out" | median)
	c2=$(awk '{print $3}' "$out" | median)
	p=$(awk '{print $4}' "$out" | median)
	r=$(awk '{print $2/$4}' "$out" | median)
	m=$(awk '{print $5}' "$out" | median)
	size=$(du -m "$f" | cut -f1)
	printf '%-44s %10s %12.0f %12.0f %12.0f %8.2f %6s MB\n' "$c ($size MB)" "$n" "$w" "$c2" "$p" "$r" "$m"
done
