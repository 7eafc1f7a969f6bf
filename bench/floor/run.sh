#!/bin/bash
# bench/floor/run.sh — the floor of a userspace hop's latency on this machine.
#
# TCP ping-pong (Debian's sockperf, 64-byte messages) between two namespaces
# through: the Linux bridge (the kernel forwards in the sender's context);
# fwd.c, the least a userspace program between two TAPs can do, sleeping in
# epoll_wait or busy-polling; and sgswitch with its default worker goroutines
# and with a poller thread (switch.poll). Rounds alternate the paths; the
# table gives medians of the mean and p99 one-way latency and the ratio of the
# kernel's figure to each (>= 0.8 is the performance issue's goal).
#
# usage: bench/floor/run.sh [ROUNDS] [SECONDS]   (root; from the repository
# root after `make build`; installs gcc and sockperf if missing)
set -euo pipefail
ROUNDS=${1:-5}
SECS=${2:-3}
BIN=${SGSWITCH:-bin/sgswitch}
[ "$(id -u)" = 0 ] || { echo "bench-floor: run as root" >&2; exit 2; }
[ -x "$BIN" ] || { echo "bench-floor: $BIN missing: make build" >&2; exit 2; }
need=()
command -v gcc >/dev/null || need+=(gcc libc6-dev)
command -v sockperf >/dev/null || need+=(sockperf)
if [ ${#need[@]} -gt 0 ]; then
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null
fi
TMP=$(mktemp -d /tmp/sgswitch-floor.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for ns in flk-a flk-b flc-a flc-b; do ip netns del $ns 2>/dev/null || true; done
	ip link del flk-br 2>/dev/null || true
	"$BIN" lab down -c "$TMP/sg.yaml" >/dev/null 2>&1 || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM
gcc -O2 -Wall -o "$TMP/fwd" bench/floor/fwd.c

addr() { ip -n "$1" addr add "$2/24" dev "$3"; ip -n "$1" link set "$3" up; ip -n "$1" link set lo up; }

# The kernel's path: two veth pairs on a bridge.
ip link add flk-br type bridge && ip link set flk-br up
for x in a b; do
	ip netns add flk-$x
	ip link add flkv-$x type veth peer name eth0 netns flk-$x
	ip link set flkv-$x master flk-br up
done
addr flk-a 10.0.0.21 eth0; addr flk-b 10.0.0.22 eth0

# fwd's path: two TAPs, opened by fwd, then moved into their namespaces.
ip netns add flc-a; ip netns add flc-b
cfwd() { # MODE: start fwd, plug its TAPs
	"$TMP/fwd" "$1" flc-a0 flc-b0 > "$TMP/fwd.out" &
	FWD=$!
	for _ in $(seq 50); do grep -q ready "$TMP/fwd.out" 2>/dev/null && break; sleep 0.1; done
	for x in a b; do ip link set flc-${x}0 netns flc-$x; done
	addr flc-a 10.0.0.31 flc-a0; addr flc-b 10.0.0.32 flc-b0
	sleep 0.5
}

cat > "$TMP/sg.yaml.in" <<YAML
switch:
  control: $TMP/control.sock
  metrics: ""
  poll: {threads: THREADS, spin-us: 200}
security-groups:
  - name: fl-any
    rules:
      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.0/24}
instances:
  - {name: fls-a, tap: fls-a0, mac: "02:00:00:00:fa:01", ipv4: 10.0.0.41/24, security-groups: [fl-any]}
  - {name: fls-b, tap: fls-b0, mac: "02:00:00:00:fa:02", ipv4: 10.0.0.42/24, security-groups: [fl-any]}
YAML
sgup() { # THREADS
	sed "s/THREADS/$1/" "$TMP/sg.yaml.in" > "$TMP/sg.yaml"
	"$BIN" lab up -c "$TMP/sg.yaml" > "$TMP/sg.out" 2>&1 &
	SG=$!
	for _ in $(seq 100); do grep -q "lab up" "$TMP/sg.out" 2>/dev/null && break; sleep 0.1; done
	grep -q "lab up" "$TMP/sg.out" || { cat "$TMP/sg.out" >&2; exit 1; }
	sleep 0.5
}

# pingpong NSA NSB DST: one-way mean and p99 in µs
pingpong() {
	ip netns exec "$2" sockperf server --tcp -i "$3" -p 5201 >/dev/null 2>&1 &
	local srv=$!
	sleep 0.5
	ip netns exec "$1" sockperf ping-pong --tcp -i "$3" -p 5201 -t "$SECS" -m 64 2>&1 | sed 's/\x1b\[[0-9;]*m//g' |
		awk '/avg-latency/{match($0,/avg-latency=[0-9.]+/); a=substr($0,RSTART+12,RLENGTH-12)} /percentile 99.000 /{p=$NF} END{print a, p}'
	kill $srv; wait $srv 2>/dev/null || true
}

declare -A MEAN P99
note() { MEAN[$1]+="$2 "; P99[$1]+="$3 "; }
for r in $(seq "$ROUNDS"); do
	paths=(kernel fwd-epoll fwd-spin sg-goroutines sg-poller)
	# rotate the order each round
	paths=("${paths[@]:$((r % 5))}" "${paths[@]:0:$((r % 5))}")
	for p in "${paths[@]}"; do
		case $p in
		kernel) read -r m q < <(pingpong flk-a flk-b 10.0.0.22) ;;
		fwd-epoll | fwd-spin)
			cfwd $([ $p = fwd-spin ] && echo 1 || echo 0)
			read -r m q < <(pingpong flc-a flc-b 10.0.0.32)
			kill $FWD; wait $FWD 2>/dev/null || true ;;
		sg-goroutines | sg-poller)
			sgup $([ $p = sg-poller ] && echo 1 || echo 0)
			read -r m q < <(pingpong fls-a fls-b 10.0.0.42)
			kill -TERM $SG; wait $SG 2>/dev/null || true ;;
		esac
		echo "round $r $p: mean $m µs, p99 $q µs" >&2
		note $p "$m" "$q"
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
km=$(echo "${MEAN[kernel]}" | median); kq=$(echo "${P99[kernel]}" | median)
echo
echo "bench-floor — sockperf TCP ping-pong, 64-byte messages, one-way latency, medians of $ROUNDS rounds of ${SECS}s"
echo "machine: nproc $(nproc), $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-16s %10s %10s %14s %14s\n" path "mean µs" "p99 µs" "kernel/mean" "kernel/p99"
for p in kernel fwd-epoll fwd-spin sg-goroutines sg-poller; do
	m=$(echo "${MEAN[$p]}" | median); q=$(echo "${P99[$p]}" | median)
	awk -v p=$p -v m="$m" -v q="$q" -v km="$km" -v kq="$kq" 'BEGIN{printf "%-16s %10.1f %10.1f %14.2f %14.2f\n", p, m, q, km/m, kq/q}'
done
echo "kernel: Linux bridge, no filter; fwd: bench/floor/fwd.c (read, write, nothing else) sleeping in epoll_wait or busy-polling;"
echo "sg-poller: switch.poll {threads: 1, spin-us: 200}. sgswitch filters (security groups, tracking); fwd does not."
