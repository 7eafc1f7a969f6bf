package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// metricDef is one row of the table.
type metricDef struct {
	key, name, unit string
	better          string // "higher", "lower", or "" for information without a ratio
	prec            int
}

// metricDefs lists the rows; the UDP rows repeat for each sender count.
func metricDefs(senders []int) []metricDef {
	defs := []metricDef{
		{"tcp1", "TCP throughput, 1 stream", "Gbit/s", "higher", 2},
		{"tcp4", "TCP throughput, 4 streams", "Gbit/s", "higher", 2},
	}
	for _, n := range senders {
		k := udpKey(n)
		defs = append(defs,
			metricDef{"udp_if" + k, fmt.Sprintf("UDP 64-byte frames received at b, %s", senderText(n)), "kpps", "higher", 0},
			metricDef{"udp_app" + k, "  of which read by the receiver", "kpps", "higher", 0})
	}
	defs = append(defs,
		metricDef{"rr_mean", "TCP_RR round trip, mean", "us", "lower", 1},
		metricDef{"rr_p99", "TCP_RR round trip, p99", "us", "lower", 1},
		metricDef{"rr_tps", "TCP_RR transactions", "1/s", "higher", 0})
	for _, n := range senders {
		k := udpKey(n)
		defs = append(defs,
			metricDef{"udp_offered" + k, fmt.Sprintf("UDP 64-byte sent by a, %s", senderText(n)), "kpps", "", 0},
			metricDef{"udp_txdrop" + k, "  dropped at a's interface (queue full)", "kpps", "", 0})
	}
	defs = append(defs,
		metricDef{"tcp1_retr", "TCP 1 stream, retransmitted segments", "", "", 0},
		metricDef{"tcp4_retr", "TCP 4 streams, retransmitted segments", "", "", 0},
		metricDef{"cpu_tcp1", "machine CPU busy, TCP 1 stream", "% of all", "", 0})
	for _, n := range senders {
		defs = append(defs, metricDef{"cpu_udp" + udpKey(n), "machine CPU busy, UDP, " + senderText(n), "% of all", "", 0})
	}
	defs = append(defs,
		metricDef{"swcpu_tcp1", "sgswitch process CPU, TCP 1 stream", "% of 1 core", "", 0},
		metricDef{"swcpu_tcp4", "sgswitch process CPU, TCP 4 streams", "% of 1 core", "", 0},
		metricDef{"swcpu_rr", "sgswitch process CPU, TCP_RR", "% of 1 core", "", 0},
		metricDef{"swcpu_idle", "sgswitch process CPU, idle (2 s, no traffic)", "% of 1 core", "", 1})
	for _, n := range senders {
		defs = append(defs, metricDef{"swcpu_udp" + udpKey(n), "sgswitch process CPU, UDP, " + senderText(n), "% of 1 core", "", 0})
	}
	defs = append(defs,
		metricDef{"fpc_rx_tcp1", "frames per read, TCP 1 stream (a's port)", "frames", "", 1},
		metricDef{"fpc_tx_tcp1", "frames per write, TCP 1 stream (b's port)", "frames", "", 1})
	for _, n := range senders {
		defs = append(defs,
			metricDef{"fpc_rx_udp" + udpKey(n), "frames per read, UDP, " + senderText(n), "frames", "", 1},
			metricDef{"fpc_tx_udp" + udpKey(n), "frames per write, UDP, " + senderText(n), "frames", "", 1})
	}
	// Rates per core of sgswitch CPU: less sensitive to how much CPU other
	// work left to the switch.
	defs = append(defs, metricDef{"eff_tcp1", "sgswitch TCP 1 stream per core it used", "Gbit/s", "", 1})
	for _, n := range senders {
		defs = append(defs, metricDef{"eff_udp" + udpKey(n), "sgswitch UDP per core it used, " + senderText(n), "kpps", "", 0})
	}
	return defs
}

func udpKey(senders int) string { return fmt.Sprintf("@%d", senders) }

func senderText(n int) string {
	if n == 1 {
		return "1 sender"
	}
	return fmt.Sprintf("%d senders", n)
}

// sample is one setup's figures of one round, by metric key.
type sample map[string]float64

// options of one run.
type options struct {
	rounds     int
	testTime   time.Duration // TCP throughput and UDP rate
	rrTime     time.Duration
	udpWarmup  time.Duration
	settleTime time.Duration
	udpSenders []int
	self       string
}

// cpuSnap is the machine's and one process's CPU time at an instant.
type cpuSnap struct {
	busy, total uint64 // /proc/stat ticks, all CPUs
	proc        uint64 // utime+stime ticks of the process
	at          time.Time
}

func readCPU(pid int) cpuSnap {
	s := cpuSnap{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		fs := strings.Fields(line)
		for i, f := range fs[1:] {
			v, _ := strconv.ParseUint(f, 10, 64)
			if i >= 8 { // guest time is already counted in user
				break
			}
			s.total += v
			if i != 3 && i != 4 { // idle, iowait
				s.busy += v
			}
		}
	}
	if pid > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// Fields after the command name, which is in parentheses.
			if i := strings.LastIndexByte(string(b), ')'); i > 0 {
				fs := strings.Fields(string(b[i+1:]))
				if len(fs) > 12 {
					u, _ := strconv.ParseUint(fs[11], 10, 64)
					k, _ := strconv.ParseUint(fs[12], 10, 64)
					s.proc = u + k
				}
			}
		}
	}
	return s
}

const clockTicks = 100 // USER_HZ on Linux

func machineBusy(a, b cpuSnap) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * float64(b.busy-a.busy) / float64(b.total-a.total)
}

func procCPU(a, b cpuSnap) float64 {
	secs := b.at.Sub(a.at).Seconds()
	if secs <= 0 {
		return 0
	}
	return 100 * float64(b.proc-a.proc) / clockTicks / secs
}

// alive fails when the sgswitch of s has exited.
func (s *setup) alive() error {
	if s.sw != nil && !s.sw.running() {
		return s.sw.failure("exited during the benchmark")
	}
	return nil
}

// measure runs every test once on s.
func measure(ctx context.Context, o options, s *setup, round int) (sample, error) {
	v := sample{}
	pause := func() error {
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(o.settleTime):
		}
		return s.alive()
	}
	if err := s.alive(); err != nil {
		return nil, err
	}
	if s.pid > 0 {
		// The switch with no traffic: what an idle hypervisor pays for it.
		c0 := readCPU(s.pid)
		select {
		case <-ctx.Done():
			return nil, errors.New("interrupted")
		case <-time.After(2 * time.Second):
		}
		v["swcpu_idle"] = procCPU(c0, readCPU(s.pid))
	}
	// Drops sgswitch counted during each test, by port and reason.
	last := s.dropCounts(ctx)
	noteDrops := func(test string) {
		now := s.dropCounts(ctx)
		if d := diffDrops(last, now); d != "" {
			s.drops = append(s.drops, fmt.Sprintf("round %d, %s: %s", round, test, d))
		}
		last = now
	}
	// Frames per read at a's port and per write at b's port during a test.
	var calls0 portCalls
	callsBefore := func() { calls0 = s.calls(ctx) }
	callsAfter := func(key string) {
		c1 := s.calls(ctx)
		if c1.rxCalls > calls0.rxCalls {
			v["fpc_rx_"+key] = float64(c1.rxFrames-calls0.rxFrames) / float64(c1.rxCalls-calls0.rxCalls)
		}
		if c1.txCalls > calls0.txCalls {
			v["fpc_tx_"+key] = float64(c1.txFrames-calls0.txFrames) / float64(c1.txCalls-calls0.txCalls)
		}
	}
	for _, streams := range []int{1, 4} {
		callsBefore()
		c0 := readCPU(s.pid)
		gbps, retr, err := iperf(ctx, o, s, streams)
		c1 := readCPU(s.pid)
		if err != nil {
			return nil, err
		}
		k := strconv.Itoa(streams)
		callsAfter("tcp" + k)
		v["tcp"+k], v["tcp"+k+"_retr"] = gbps, retr
		if streams == 1 {
			v["cpu_tcp1"] = machineBusy(c0, c1)
		}
		if s.pid > 0 {
			v["swcpu_tcp"+k] = procCPU(c0, c1)
			if streams == 1 && v["swcpu_tcp1"] > 1 {
				v["eff_tcp1"] = gbps / (v["swcpu_tcp1"] / 100)
			}
		}
		noteDrops("tcp" + k)
		if err := pause(); err != nil {
			return nil, err
		}
	}
	for _, n := range o.udpSenders {
		callsBefore()
		c0 := readCPU(s.pid)
		sink, gen, err := udpRate(ctx, o, s, n)
		c1 := readCPU(s.pid)
		if err != nil {
			return nil, err
		}
		k := udpKey(n)
		callsAfter("udp" + k)
		v["udp_if"+k], v["udp_app"+k] = sink.IfPPS/1e3, sink.AppPPS/1e3
		v["udp_offered"+k], v["udp_txdrop"+k] = gen.PPS/1e3, float64(gen.IfTxDrp)/gen.Secs/1e3
		v["cpu_udp"+k] = machineBusy(c0, c1)
		if s.pid > 0 {
			v["swcpu_udp"+k] = procCPU(c0, c1)
			if v["swcpu_udp"+k] > 1 {
				v["eff_udp"+k] = v["udp_if"+k] / (v["swcpu_udp"+k] / 100)
			}
		}
		noteDrops("udp64, " + senderText(n))
		if err := pause(); err != nil {
			return nil, err
		}
	}
	c0 := readCPU(s.pid)
	rr, err := tcpRR(ctx, o, s)
	c1 := readCPU(s.pid)
	if err != nil {
		return nil, err
	}
	if s.pid > 0 {
		v["swcpu_rr"] = procCPU(c0, c1)
	}
	v["rr_mean"], v["rr_p99"], v["rr_tps"] = rr.MeanUS, rr.P99US, rr.TPS
	noteDrops("tcp_rr")
	return v, s.alive()
}

// iperf runs an iperf3 TCP test from a to b and returns the received
// Gbit/s and the retransmitted segments.
func iperf(ctx context.Context, o options, s *setup, streams int) (float64, float64, error) {
	secs := max(1, int(o.testTime.Round(time.Second)/time.Second))
	argv := ipns(s.nsA, "iperf3", "-c", s.addrB, "-p", portIperf, "-t", strconv.Itoa(secs), "-O", "1", "-J")
	if streams > 1 {
		argv = append(argv, "-P", strconv.Itoa(streams))
	}
	out, err := run(ctx, time.Duration(secs)*time.Second+60*time.Second, argv...)
	var r struct {
		Error string `json:"error"`
		End   struct {
			SumSent struct {
				Retransmits float64 `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if jerr := json.Unmarshal([]byte(out), &r); jerr != nil {
		if err != nil {
			return 0, 0, fmt.Errorf("%s: iperf3 TCP, %d stream(s): %w", s.label, streams, err)
		}
		return 0, 0, fmt.Errorf("%s: iperf3 TCP, %d stream(s): unreadable JSON: %w", s.label, streams, jerr)
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("%s: iperf3 TCP, %d stream(s): %s", s.label, streams, r.Error)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%s: iperf3 TCP, %d stream(s): %w", s.label, streams, err)
	}
	if r.End.SumReceived.BitsPerSecond == 0 {
		return 0, 0, fmt.Errorf("%s: iperf3 TCP, %d stream(s): nothing received", s.label, streams)
	}
	return r.End.SumReceived.BitsPerSecond / 1e9, r.End.SumSent.Retransmits, nil
}

// udpRate floods b with 64-byte frames from a and counts what arrives.
func udpRate(ctx context.Context, o options, s *setup, senders int) (*udpSinkResult, *udpGenResult, error) {
	limit := o.udpWarmup + o.testTime + 30*time.Second
	sink, err := start("UDP sink in "+s.nsB, false, syscall.SIGKILL, ipns(s.nsB, o.self, "-role", "udp-sink",
		"-listen", "0.0.0.0:"+portUDP, "-ifname", s.ifB, "-warmup", o.udpWarmup.String(), "-dur", o.testTime.String(),
		"-timeout", limit.String())...)
	if err != nil {
		return nil, nil, err
	}
	defer sink.stop(syscall.SIGKILL, time.Second)
	if _, err := sink.waitLine(ctx, "ready", 20*time.Second); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.label, err)
	}
	genDur := o.udpWarmup + o.testTime + time.Second
	out, err := run(ctx, limit+10*time.Second, ipns(s.nsA, o.self, "-role", "udp-gen", "-dst", s.addrB+":"+portUDP,
		"-ifname", s.ifA, "-size", strconv.Itoa(udpPayload), "-threads", strconv.Itoa(senders), "-dur", genDur.String(), "-timeout", limit.String())...)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: UDP generator: %w", s.label, err)
	}
	var g udpGenResult
	if err := json.Unmarshal([]byte(lastLine(out)), &g); err != nil {
		return nil, nil, fmt.Errorf("%s: UDP generator output %q: %w", s.label, out, err)
	}
	if err := sink.wait(ctx, 20*time.Second); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.label, err)
	}
	lines := sink.output()
	var r udpSinkResult
	if len(lines) == 0 || json.Unmarshal([]byte(lines[len(lines)-1]), &r) != nil {
		return nil, nil, fmt.Errorf("%s: UDP sink printed no result: %q", s.label, lines)
	}
	return &r, &g, nil
}

func tcpRR(ctx context.Context, o options, s *setup) (*rrResult, error) {
	limit := o.rrTime + 30*time.Second
	out, err := run(ctx, limit+10*time.Second, ipns(s.nsA, o.self, "-role", "rr-client", "-dst", s.addrB+":"+portRR,
		"-warmup", "300ms", "-dur", o.rrTime.String(), "-timeout", limit.String())...)
	if err != nil {
		return nil, fmt.Errorf("%s: TCP_RR: %w", s.label, err)
	}
	var r rrResult
	if err := json.Unmarshal([]byte(lastLine(out)), &r); err != nil {
		return nil, fmt.Errorf("%s: TCP_RR output %q: %w", s.label, out, err)
	}
	return &r, nil
}

// dropCounts reads sgswitch's drop counters by "port reason"; nil for the
// kernel or when the control socket does not answer.
func (s *setup) dropCounts(ctx context.Context) map[string]uint64 {
	if s.ctl == nil {
		return nil
	}
	out, err := run(ctx, 10*time.Second, append(slices.Clone(s.ctl), "stats", "-o", "json")...)
	if err != nil {
		return nil
	}
	st, err := parseStats(out)
	if err != nil {
		return nil
	}
	m := map[string]uint64{}
	for _, p := range st.Ports {
		for r, n := range p.Reasons {
			// unanswered: the namespaces' own IPv6 solicitations, present
			// at any time; not benchmark traffic.
			if !notDrop[r] && r != "unanswered" {
				m[p.Port+" "+r] = n
			}
		}
		if p.TxErrors > 0 {
			m[p.Port+" tx-errors"] = p.TxErrors
		}
	}
	return m
}

// portCalls are the frames and calls of a's port's reads and b's port's writes.
type portCalls struct{ rxFrames, rxCalls, txFrames, txCalls uint64 }

// calls reads them from sgswitch's stats; zero for the kernel.
func (s *setup) calls(ctx context.Context) portCalls {
	var c portCalls
	if s.ctl == nil {
		return c
	}
	out, err := run(ctx, 10*time.Second, append(slices.Clone(s.ctl), "stats", "-o", "json")...)
	if err != nil {
		return c
	}
	st, err := parseStats(out)
	if err != nil {
		return c
	}
	for _, p := range st.Ports {
		switch p.Port {
		case s.portA:
			c.rxFrames, c.rxCalls = p.RxFrames, p.RxCalls
		case s.portB:
			c.txFrames, c.txCalls = p.TxFrames, p.TxCalls
		}
	}
	return c
}

func diffDrops(a, b map[string]uint64) string {
	if a == nil || b == nil {
		return ""
	}
	var out []string
	for k, n := range b {
		if d := n - a[k]; d > 0 {
			port, reason, _ := strings.Cut(k, " ")
			out = append(out, fmt.Sprintf("%s=%d on %s", reason, d, port))
		}
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}
