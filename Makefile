# sgswitch — every target installs what it needs (as root, through apt-get and
# the Go module proxy), so each works on a fresh machine.
GO      ?= go
BIN     := bin/sgswitch
PKGS    := ./...
APT_PKGS := udhcpc iputils-ping iproute2 util-linux qemu-system-x86 busybox-static etcd-server nftables
# GUEST_DIR holds the kernel of the QEMU test guests (switch/lab/vm): the
# package that linux-image-cloud-amd64 depends on, unpacked, not installed.
GUEST_DIR ?= /var/cache/sgswitch/guest
export SGSWITCH_GUEST_DIR := $(GUEST_DIR)

export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all build deps guest-kernel lint test unit e2e demo demo-vm demo-cluster bench fuzz clean bench-vhost bench-floor

all: build

# build: a static binary (no cgo: nothing in sgswitch needs libc), which
# starts without the dynamic loader: 6 ms less for every command on the
# 2-core VM, where each page a process touches first costs about 15 µs.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/sgswitch

# deps installs the Debian packages the end-to-end tests and the demos use
# (a DHCP client and ping inside namespaces; QEMU and busybox-static for the
# test guests) and the guests' kernel. Skipped when already present.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 $$missing >/dev/null; \
	fi
	$(MAKE) --no-print-directory guest-kernel
	$(GO) mod download

# guest-kernel unpacks (dpkg-deb -x) the kernel package that Debian's
# linux-image-cloud-amd64 depends on today into GUEST_DIR, resolved with
# apt-cache each time; nothing is installed. Skipped when that version is there.
guest-kernel:
	@resolve() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '$$1 == "Depends:" && $$2 ~ /^linux-image-/ {print $$2; exit}'; }; \
	pkg=$$(resolve); \
	if [ -z "$$pkg" ]; then apt-get update -qq && pkg=$$(resolve); fi; \
	if [ -z "$$pkg" ]; then echo "apt-cache knows no linux-image-cloud-amd64 (Debian main, amd64)"; exit 1; fi; \
	if [ -f "$(GUEST_DIR)/.$$pkg" ]; then exit 0; fi; \
	echo "unpacking $$pkg into $(GUEST_DIR)"; \
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && apt-get download -q=2 "$$pkg" 2>/dev/null) && \
	rm -rf "$(GUEST_DIR)" && mkdir -p "$(GUEST_DIR)" && \
	dpkg-deb -x "$$tmp"/$$pkg_*.deb "$(GUEST_DIR)" && touch "$(GUEST_DIR)/.$$pkg"

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# test is everything CI runs: lint, unit tests with the race detector, the
# fuzz targets' seed corpora (run as ordinary tests), the end-to-end tests in
# network namespaces through the built binary (root; one package at a time,
# since the lab tests share the machine's two cores), and every benchmark once
# so that none rots (their numbers are not checked: see make bench).
test: deps lint build
	$(GO) test -race -count=1 -p 1 -timeout 20m $(PKGS)
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 10m $(PKGS)

demo: deps build
	$(GO) run ./cmd/labdemo -sgswitch $(BIN) -c testdata/lab/seed.yaml

# demo-cluster: the seed scenario over three hosts sharing one policy
# through a three-member etcd (the multi-host lab, cmd/clusterdemo).
demo-cluster: deps build
	$(GO) run ./cmd/clusterdemo -sgswitch $(BIN) -c testdata/lab/cluster.yaml

bench: build
	./bench/run.sh

# bench-replay: replay of a 2 GB capture (REPLAY_SIZE) and of 20,000 allowed
# connections on one core: whole command, per CPU-second, pipeline alone, peak RSS.
bench-replay: build
	./bench/replay-big.sh

# fuzz runs every fuzz target in turn for FUZZTIME (default 10m each; -timeout 0,
# since go test's default 10-minute timeout would end a 10-minute run as a
# failure). New inputs are minimised for at most 5s: FuzzPipeline's inputs are
# frame sequences whose minimisation otherwise takes the default 60s each, most
# of a run. FuzzDecode also fuzzes the guard: it runs every frame it accepts
# through Guard.
FUZZ_TARGETS := ./filter:FuzzDecode ./switch:FuzzPipeline ./filter/config:FuzzConfig ./conntrack:FuzzRestore ./switch/source/control:FuzzControlRequest ./switch/port/vhostuser:FuzzDecode ./switch/port/vhostuser:FuzzDescriptorWalk
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg) for $${FUZZTIME:-10m}"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $${FUZZTIME:-10m} -fuzzminimizetime 5s -timeout 0 || exit 1; \
	done

clean:
	rm -rf bin

# bench-live: sgswitch against the Linux bridge + stateful nftables in one run
# (root; installs iperf3 and nftables if missing). BENCH_LIVE_FLAGS=-quick for a short run.
bench-live: build
	$(GO) run ./bench/live $(BENCH_LIVE_FLAGS)

# soak: sgswitch under traffic, rule/instance churn, reloads and restarts
# (root; not in CI). SOAK_DURATION=5m by default, SOAK_QUEUES=1 (queues per TAP);
# exits 1 when a check fails.
soak: build
	$(GO) run ./bench/soak -duration $${SOAK_DURATION:-5m} -queues $${SOAK_QUEUES:-1}

# bench-flood: a pair's TCP throughput unloaded and under the issue's flood (two
# hping3 -i u50 from a third instance: SYN, random-source UDP), through sgswitch
# and through the kernel bridge + nftables, alternating (root; installs iperf3,
# hping3, nftables if missing). BENCH_FLOOD_FLAGS=-quick.
bench-flood: build
	$(GO) run ./bench/flood $(BENCH_FLOOD_FLAGS)

# bench-floor: the floor of a userspace hop's latency on this machine: sockperf
# ping-pong through the kernel bridge, through bench/floor/fwd.c (read and write,
# nothing else; sleeping or busy-polling) and through sgswitch (goroutines,
# poller) (root; installs gcc and sockperf if missing).
bench-floor: build
	bench/floor/run.sh $(BENCH_FLOOR_ARGS)

# bench-vhost: VM to VM through sgswitch's vhost-user ports, through its ports
# on TAP devices and through the Linux bridge + nftables on TAPs, in one run;
# a frontend process plays the two guests (root; installs nftables if missing).
# BENCH_VHOST_FLAGS=-quick for a short run.
bench-vhost: build
	@dpkg -s nftables >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null)
	$(GO) build -o bin/bench-vhost ./bench/vhost
	./bin/bench-vhost -sgswitch $(BIN) $(BENCH_VHOST_FLAGS)

# demo-vm: the seed scenario's groups with two real QEMU VMs (frontend1 and
# backend1) among the instances, on netdev ports; the rest are namespaces
# (root; make deps installs QEMU, busybox-static and the guests' kernel).
demo-vm: deps build
	$(GO) run ./cmd/vmdemo -sgswitch $(BIN) -c testdata/lab/seed.yaml
