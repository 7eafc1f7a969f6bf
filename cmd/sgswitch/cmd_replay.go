package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/capture"
	"golang.org/x/sys/unix"
)

const replayUsage = `usage: sgswitch replay -c FILE [--verdicts OUT.jsonl] [--workers N] [--loop N] [--cpuprofile OUT.pprof] CAPTURE...
       sgswitch replay -c CURRENT --against PROPOSED [-o table|json] [--loop N] CAPTURE...

Feeds every frame of the captures (pcap, pcapng, either gzip-compressed), in
order, through the complete pipeline: the ingress port of a frame is the
instance owning its source MAC, else the uplink. The captures are streamed in
constant memory, so they may be larger than memory. --loop N replays them N
times, each loop shifted in time past every connection timeout (each loop
sees the first loop's verdicts). Prints frames, verdicts by reason, the
rate of the whole command (reading the captures included) and of the
pipeline alone, and the peak memory. With --workers > 1 the frames of each
flow stay in order on one worker but flows interleave differently than in
the capture.

With --against, every frame goes through the pipelines of both
configurations in one pass, and replay lists the connections (5-tuple, first
frame) whose fate differs: opened (PROPOSED forwards what CURRENT drops) or
cut, with the rule or reason that decided each side. Exit status: 0 when
nothing differs, 1 when something does, 2 on errors.`

// processStart is when main's package was initialised: with sinceExec, the
// whole-command rate counts everything a user waits for.
var processStart = time.Now()

// replayBatch is how many frames replay takes from the reader at a time; a
// batch is at most one read chunk (256 KiB) of frames, still in the cache.
const replayBatch = 2048

// replayInFlight is how many batches a multi-worker replay keeps in flight
// (the reader's window): the reader fills one while the workers run others.
const replayInFlight = 4

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	verdictsPath := fs.String("verdicts", "", "write one JSON object per frame to `OUT.jsonl`")
	workers := fs.Int("workers", 1, "pipeline workers; 0 = one per core (frames of one flow stay on one worker, in order)")
	loops := fs.Int("loop", 1, "replay the captures `N` times")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the replay (go tool pprof) to `OUT.pprof`")
	against := fs.String("against", "", "replay under this proposed configuration `FILE` too, and list the connections whose fate differs")
	outFormat := fs.String("o", "table", "output format of --against: table or json")
	if err := parseFlags(fs, reorderFlags(args), cfgPath); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError("replay: no capture given\n%s", replayUsage)
	}
	if *against != "" {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, name := range []string{"verdicts", "workers", "cpuprofile"} {
			if set[name] {
				return usageError("replay: --%s does not go with --against, which compares the two configurations in one pass", name)
			}
		}
		if *outFormat != "table" && *outFormat != "json" {
			return usageError("replay: -o %s: the output format is table or json", *outFormat)
		}
	} else if *outFormat != "table" {
		return usageError("replay: -o is for --against; the summary is a table")
	}
	if *loops < 1 {
		return usageError("replay: --loop %d: the captures are replayed at least once (--loop 1)", *loops)
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	defer tuneGCForReplay(cfg)()
	if *against != "" {
		return replayAgainst(ctx, cfg, *cfgPath, *against, fs.Args(), *loops, *outFormat, stdout, stderr)
	}
	n := *workers
	if n <= 0 {
		n = runtime.NumCPU()
	}
	window := 1
	if n > 1 {
		window = replayInFlight
	}
	src, err := newReplaySource(fs.Args(), *loops, capture.Options{Window: window}, cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer src.close()
	clock := &vswitch.Clock{}
	sw, err := vswitch.New(cfg, vswitch.Options{Clock: clock})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	var vw *verdictWriter
	if *verdictsPath != "" {
		f, err := os.Create(*verdictsPath)
		if err != nil {
			return err
		}
		defer f.Close()
		vw = newVerdictWriter(f, sw)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rp := &replayer{sw: sw, clock: clock, src: src, vw: vw, ports: portCache{sw: sw}}
	var st replayStats
	if n == 1 {
		st, err = rp.runOne(ctx)
	} else {
		st, err = rp.runMany(ctx, n)
	}
	if err != nil {
		if _, ok := err.(*capture.Error); ok {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	if vw != nil {
		if err := vw.flush(); err != nil {
			return fmt.Errorf("--verdicts %s: %w", *verdictsPath, err)
		}
	}
	st.whole = max(time.Since(processStart), sinceExec())
	st.cpu = cpuTime()
	st.bytes = src.bytesRead()
	st.peakRSS = peakRSS()
	fmt.Fprintf(stdout, "workers %d\n", n)
	printReplaySummary(stdout, st)
	return nil
}

// tuneGCForReplay turns the collector off for the replay, with a memory
// limit as the backstop, unless the user set GOGC or GOMEMLIMIT. A replay
// allocates nothing per frame: what the heap holds is the configuration, the
// connection table (which grows, or stays put when the sweep frees what
// expires) and the read buffers. Collections then only cost: each one walks
// the heap and, on a VM where a fresh page costs 15 µs to fault in, touches
// pages of its own (an empty replay ran two collections while starting, 6 ms).
// The limit leaves room for a full connection table (about 170 bytes an
// entry with its index) on top of a generous 1 GiB.
// It returns the function that restores the settings (tests run replays in
// a process that goes on).
func tuneGCForReplay(cfg *config.Config) (restore func()) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	pct := debug.SetGCPercent(-1)
	limit := debug.SetMemoryLimit(1<<30 + 256*int64(max(cfg.Switch.Conntrack.Max, 0)))
	return func() {
		debug.SetMemoryLimit(limit)
		debug.SetGCPercent(pct)
	}
}

// replayStats is what a replay measured.
type replayStats struct {
	frames    int64
	whole     time.Duration // the whole command, from process start
	cpu       time.Duration // CPU time of the whole command (user + system)
	pipeline  time.Duration // in the pipeline (the busiest worker's, with several)
	bytes     int64         // read from the capture files
	peakRSS   int64         // bytes; 0 when unknown
	byReason  [filter.NumReasons]uint64
	byVerdict [filter.NumVerdicts]uint64
}

// replayer runs the frames of a replaySource through a switch.
type replayer struct {
	sw    *vswitch.Switch
	clock *vswitch.Clock
	src   *replaySource
	vw    *verdictWriter
	ports portCache
}

// tick keeps the switch's clock at the capture's time to the millisecond, as
// a running switch sees its own (Clock): one clock write per millisecond of
// capture, not one per frame.
type tick struct{ last int64 }

func (t *tick) set(c *vswitch.Clock, ns int64, forwardOnly bool) {
	if ns-t.last >= int64(time.Millisecond) || ns < t.last {
		t.last = ns
		if forwardOnly {
			c.Advance(time.Unix(0, ns)) // workers interleave: time only moves forward
		} else {
			c.Set(time.Unix(0, ns))
		}
	}
}

// sweeper frees expired connections during a replay, as a running switch's
// sweep does once a second (conntrack.Table.Run): their entries are then
// reused instead of the table growing by every connection of the capture.
// Replay's clock runs hundreds of times faster than a switch's, so a sweep
// of the whole table every capture second would cost more than the frames;
// it sweeps at most once a capture second, and only when the table has grown
// by a quarter since the last sweep left it (each entry is then visited a
// few times over its life) or is nearly full (where, as on a running
// switch, room for new connections depends on what has been freed).
type sweeper struct {
	ct    *conntrack.Table
	full  int   // a table this large is nearly full: cfg's conntrack max × 7/8
	last  int64 // capture time of the last sweep
	after int   // entries the last sweep left
}

func newSweeper(sw *vswitch.Switch) *sweeper {
	return &sweeper{ct: sw.Conntrack(), full: sw.Config().Switch.Conntrack.Max / 8 * 7}
}

func (s *sweeper) maybe(now int64) {
	if now-s.last < int64(time.Second) && now >= s.last {
		return
	}
	n := s.ct.Len()
	if n < s.after+s.after/4+1024 && n < s.full {
		return
	}
	s.ct.Sweep(math.MaxInt)
	s.last, s.after = now, s.ct.Len()
}

// runOne replays on the calling goroutine: read a batch, run it through the
// pipeline while its frames are still in the cache, write its verdicts.
func (rp *replayer) runOne(ctx context.Context) (replayStats, error) {
	var st replayStats
	var sc vswitch.Scratch
	var tk tick
	sweep := newSweeper(rp.sw)
	batch := make([]capture.Frame, replayBatch)
	ins := make([]int32, replayBatch)
	res := make([]vswitch.Result, replayBatch)
	for {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		n, err := rp.src.next(batch)
		if err == io.EOF {
			break
		}
		if err != nil {
			return st, err
		}
		t0 := time.Now()
		for i := range batch[:n] {
			fr := &batch[i]
			tk.set(rp.clock, fr.Time, false)
			in := rp.ports.port(fr.Data)
			ins[i] = in
			var r vswitch.Result
			if in < 0 {
				// No uplink to blame: a frame from nobody the switch knows.
				r = vswitch.Result{Verdict: filter.Drop, Reason: filter.ReasonUnknownSource, Out: -1}
			} else {
				r = rp.sw.Process(int(in), fr.Data, &sc)
			}
			st.byReason[r.Reason]++
			res[i] = r
		}
		sweep.maybe(batch[n-1].Time)
		st.pipeline += time.Since(t0)
		st.frames += int64(n)
		if rp.vw != nil {
			for i := range batch[:n] {
				if err := rp.vw.write(batch[i].Num, ins[i], res[i]); err != nil {
					return st, err
				}
			}
		}
	}
	st.finish()
	return st, nil
}

// replaySlot is one batch in flight in a multi-worker replay.
type replaySlot struct {
	frames []capture.Frame
	n      int
	ins    []int32
	res    []vswitch.Result
	part   [][]int32 // per worker: indices of its frames in the batch
	done   sync.WaitGroup
	used   bool
}

// runMany replays with n workers: this goroutine reads batches and deals
// each frame to the worker of its flow (so a flow's frames stay in order on
// one worker); the workers run the pipeline; the verdicts are written in
// capture order as batches complete. At most replayInFlight batches are in
// memory (the reader's window).
func (rp *replayer) runMany(ctx context.Context, n int) (replayStats, error) {
	var st replayStats
	sweep := newSweeper(rp.sw)
	slots := make([]replaySlot, replayInFlight)
	for i := range slots {
		s := &slots[i]
		s.frames = make([]capture.Frame, replayBatch)
		s.ins = make([]int32, replayBatch)
		s.res = make([]vswitch.Result, replayBatch)
		s.part = make([][]int32, n)
		for w := range s.part {
			s.part[w] = make([]int32, 0, replayBatch)
		}
	}
	type workerStats struct {
		busy     time.Duration
		byReason [filter.NumReasons]uint64
	}
	ws := make([]workerStats, n)
	queues := make([]chan *replaySlot, n)
	var wg sync.WaitGroup
	for w := range n {
		queues[w] = make(chan *replaySlot, replayInFlight)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var sc vswitch.Scratch
			var tk tick
			me := &ws[w]
			for s := range queues[w] {
				t0 := time.Now()
				for _, i := range s.part[w] {
					fr := &s.frames[i]
					tk.set(rp.clock, fr.Time, true)
					var r vswitch.Result
					if in := s.ins[i]; in < 0 {
						r = vswitch.Result{Verdict: filter.Drop, Reason: filter.ReasonUnknownSource, Out: -1}
					} else {
						r = rp.sw.Process(int(in), fr.Data, &sc)
					}
					me.byReason[r.Reason]++
					s.res[i] = r
				}
				me.busy += time.Since(t0)
				s.done.Done()
			}
		}()
	}
	stop := func() {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}
	emit := func(s *replaySlot) error {
		s.done.Wait()
		s.used = false
		st.frames += int64(s.n)
		if rp.vw != nil {
			for i := range s.frames[:s.n] {
				if err := rp.vw.write(s.frames[i].Num, s.ins[i], s.res[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var err error
	for k := 0; ; k++ {
		s := &slots[k%len(slots)]
		if s.used {
			if err = emit(s); err != nil {
				break
			}
		}
		if err = ctx.Err(); err != nil {
			break
		}
		s.n, err = rp.src.next(s.frames)
		if err != nil {
			break
		}
		sweep.maybe(s.frames[s.n-1].Time)
		for w := range s.part {
			s.part[w] = s.part[w][:0]
		}
		for i := range s.frames[:s.n] {
			data := s.frames[i].Data
			s.ins[i] = rp.ports.port(data)
			w := int(flowHash(data) % uint32(n))
			s.part[w] = append(s.part[w], int32(i))
		}
		s.used = true
		s.done.Add(n)
		for _, q := range queues {
			q <- s
		}
	}
	if err == io.EOF {
		err = nil
	}
	// Drain the batches still in flight, in order.
	for _, s := range inFlightOrder(slots) {
		if e := emit(s); e != nil && err == nil {
			err = e
		}
	}
	stop()
	if err != nil {
		return st, err
	}
	for w := range ws {
		st.pipeline = max(st.pipeline, ws[w].busy)
		for r, c := range ws[w].byReason {
			st.byReason[r] += c
		}
	}
	st.finish()
	return st, nil
}

// inFlightOrder is the used slots in the order their batches were read
// (frame numbers ascending).
func inFlightOrder(slots []replaySlot) []*replaySlot {
	var out []*replaySlot
	for i := range slots {
		if slots[i].used && slots[i].n > 0 {
			out = append(out, &slots[i])
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].frames[0].Num < out[b].frames[0].Num })
	return out
}

func (st *replayStats) finish() {
	for r, c := range st.byReason {
		st.byVerdict[filter.Reason(r).Verdict()] += c
	}
}

// sinceExec is the time since the process started, from the kernel's
// record (10 ms resolution): processStart misses the packages'
// initialisation, which runs before it (tens of milliseconds).
func sinceExec() time.Duration {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces) in parentheses;
	// starttime is field 22, the 20th after it.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return 0
	}
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ts.Nano() - ticks*int64(time.Second)/clkTck)
}

// cpuTime is the CPU time the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS is the process's peak resident memory (VmHWM), in bytes.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// flowHash maps both directions of a flow to the same value, so that one
// replay worker sees all of a flow's frames, in capture order.
func flowHash(b []byte) uint32 {
	var f filter.Frame
	if f.Decode(b) != filter.ReasonNone || !f.IsIP() {
		return 0 // ARP and broken frames: all on one worker
	}
	src, dst := f.AddrBytes()
	sp, dp := f.SrcPort, f.DstPort
	if string(src) > string(dst) || (string(src) == string(dst) && sp > dp) {
		src, dst, sp, dp = dst, src, dp, sp
	}
	h := fnv1a(fnvOffset, src)
	h = fnv1a(h, dst)
	k := [5]byte{f.Proto, byte(sp >> 8), byte(sp), byte(dp >> 8), byte(dp)}
	return fnv1a(h, k[:])
}

const fnvOffset = 2166136261

// fnv1a is 32-bit FNV-1a, inline: hash/fnv's interface would allocate per frame.
func fnv1a(h uint32, b []byte) uint32 {
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// reorderFlags moves flags after the positional captures to the front, so
// that `replay -c F a.pcap --verdicts out.jsonl` works as people type it.
func reorderFlags(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			if !containsEq(a) && i+1 < len(args) && a != "-h" && a != "--help" {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

func containsEq(s string) bool {
	for _, c := range s {
		if c == '=' {
			return true
		}
	}
	return false
}

// verdictWriter writes one verdict line of SPEC §7 per frame without
// reflection or allocation: replay writes millions per second. Every
// string but the frame number is formatted once, ahead.
type verdictWriter struct {
	f     io.Writer
	buf   []byte
	in    [][]byte // per port: `,"in":"web1"`
	out   [][]byte // per port: `,"out":"db1"`
	vr    [filter.NumVerdicts][filter.NumReasons][]byte
	rules map[filter.RuleRef][]byte // `,"rule":"backend/ingress/0"`
	sw    *vswitch.Switch
	err   error
}

func newVerdictWriter(f io.Writer, sw *vswitch.Switch) *verdictWriter {
	v := &verdictWriter{f: f, buf: make([]byte, 0, 1<<20), sw: sw, rules: map[filter.RuleRef][]byte{}}
	for i := range sw.NumPorts() {
		label := sw.PortLabel(i)
		v.in = append(v.in, strconv.AppendQuote([]byte(`,"in":`), label))
		v.out = append(v.out, strconv.AppendQuote([]byte(`,"out":`), label))
	}
	for vd := range filter.NumVerdicts {
		for r := range filter.NumReasons {
			v.vr[vd][r] = []byte(`,"verdict":"` + vd.String() + `","reason":"` + r.String() + `"`)
		}
	}
	return v
}

func (v *verdictWriter) write(frame int64, in int32, r vswitch.Result) error {
	b := append(v.buf, `{"frame":`...)
	b = strconv.AppendInt(b, frame, 10)
	if in >= 0 {
		b = append(b, v.in[in]...)
	}
	if r.Verdict == filter.Forward {
		b = append(b, v.out[r.Out]...)
	}
	b = append(b, v.vr[r.Verdict][r.Reason]...)
	if r.HasRule() {
		rule, ok := v.rules[r.Rule]
		if !ok {
			rule = strconv.AppendQuote([]byte(`,"rule":`), v.sw.Policy().RuleName(r.Rule))
			v.rules[r.Rule] = rule
		}
		b = append(b, rule...)
	}
	b = append(b, "}\n"...)
	v.buf = b
	if len(b) > cap(b)-512 {
		return v.flush()
	}
	return nil
}

func (v *verdictWriter) flush() error {
	if v.err == nil && len(v.buf) > 0 {
		_, v.err = v.f.Write(v.buf)
	}
	v.buf = v.buf[:0]
	return v.err
}

func printReplaySummary(w io.Writer, st replayStats) {
	rate := func(d time.Duration) float64 {
		if d <= 0 {
			return 0
		}
		return float64(st.frames) / d.Seconds()
	}
	fmt.Fprintf(w, "frames %d in %v: %.0f frames/s for the whole command (reading %.1f MB of captures included)\n",
		st.frames, st.whole.Round(time.Microsecond), rate(st.whole), float64(st.bytes)/1e6)
	fmt.Fprintf(w, "cpu time %v: %.0f frames per CPU-second (a shared machine's other work excluded)\n",
		st.cpu.Round(time.Microsecond), rate(st.cpu))
	fmt.Fprintf(w, "pipeline alone %v: %.0f frames/s\n", st.pipeline.Round(time.Microsecond), rate(st.pipeline))
	if st.peakRSS > 0 {
		fmt.Fprintf(w, "peak memory %.1f MB resident\n", float64(st.peakRSS)/(1<<20))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	for v, n := range st.byVerdict {
		if n > 0 {
			fmt.Fprintf(tw, "%s\t%d\t\n", filter.Verdict(v), n)
		}
	}
	tw.Flush()
	type rc struct {
		r filter.Reason
		n uint64
	}
	var rs []rc
	for r, n := range st.byReason {
		if n > 0 {
			rs = append(rs, rc{filter.Reason(r), n})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].n > rs[j].n || (rs[i].n == rs[j].n && rs[i].r < rs[j].r) })
	fmt.Fprintln(w, "by reason:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, x := range rs {
		fmt.Fprintf(tw, "  %s\t%d\n", x.r, x.n)
	}
	tw.Flush()
}
