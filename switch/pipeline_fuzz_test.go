package vswitch

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

// FuzzPipeline runs arbitrary frames through Process, from the instance
// ports and from the uplink of the test configuration (testConfig), each
// input on a switch in its initial state (newPipelineFuzzer) that has
// learned the gateway's MAC on the uplink.
//
// Input format. The first byte b0 says how to read the rest. When b0&0x40
// is set, every port is opened with a virtio-net header (offload: true), so
// every frame must start with one (port.VnetHdrSize bytes, which may announce
// a TSO/GSO super-frame: such frames may exceed the MTU); otherwise ports
// carry plain Ethernet frames. Then:
//
//   - b0&0x80 == 0: the rest is one frame, arriving on port fzPorts[b0&3];
//   - b0&0x80 != 0: the rest is a sequence of records, each a header byte h,
//     a big-endian 16-bit length n and n bytes of frame (a short last record
//     takes what is left), so that connection tracking, fragments, the
//     uplink's MAC table and the responders' budgets carry state from frame
//     to frame. Before its frame, a record moves the switch's clock forward
//     by ((h>>2)&0x1f)² seconds (expiry of connections, fragments and
//     learned MACs) and, when h&0x80 is set, toggles the policy between
//     testConfig and a variant without db's ingress rule (Apply; the lazy
//     re-check of tracked connections). The frame arrives on port fzPorts[h&3].
//
// Invariants checked after every frame:
//
//   - Process does not panic and does not write to the frame;
//   - the verdict is Drop, Forward or Local, and the reason is one of that
//     verdict's reasons (SPEC §5; Reason.Verdict, by which the counters count
//     verdicts, agrees);
//   - a Drop has Out -1 and no reply; a Forward has no reply and an Out that
//     is a port id other than the ingress port; a Local answer (Replied) goes
//     back out of the ingress port and its Scratch.Reply decodes as a valid
//     frame from the switch's own MAC or an instance's MAC;
//   - a forwarded frame is ARP, IPv4 or IPv6, is at most 1514 bytes unless
//     its virtio-net header announces GSO, and when it goes to an instance
//     it is addressed to that instance's MAC and, unless it is ND, to one of
//     its IPs;
//   - from the uplink, a forwarded frame is unicast and does not claim an
//     instance's MAC as its source;
//   - from an instance port, a forwarded frame carries the instance's own
//     source MAC; ARP carries the instance's MAC as sender hardware address
//     and its IPv4 (or 0.0.0.0 in a request, an RFC 5227 probe) as sender
//     address; IPv4 carries the instance's IPv4 as source; IPv6 carries the
//     instance's IPv6 as source, or — for neighbour discovery only
//     (README "IPv6") — its EUI-64 link-local address or ::. This is checked
//     both on filter.Frame's decoding and on the raw bytes at their fixed
//     offsets, so that a decoder bug cannot hide a leak;
//   - the counters add up (checked after the input): every frame is counted
//     once, so each port's RxFrames grew by the number of frames sent to it,
//     and its counts by verdict and by reason both sum to RxFrames.
//
// On a sample of inputs (every input when the seed corpus runs as a test,
// one in fzAllocEvery while fuzzing: testing.AllocsPerRun is slow), the last
// frame is processed again under testing.AllocsPerRun and must not allocate
// unless it is one the local responders handle (ARP, NS, RS, DHCP requests;
// their replies are built with gopacket).
//
// Replay the committed corpus with go test -run FuzzPipeline ./switch/;
// fuzz with go test -run '^$' -fuzz FuzzPipeline -fuzztime 5m ./switch/.
func FuzzPipeline(f *testing.F) {
	for _, seed := range pipelineFuzzSeeds() {
		f.Add(seed)
	}
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	f.Fuzz(func(t *testing.T, data []byte) {
		fz := newPipelineFuzzer(t, fuzzing, len(data) > 0 && data[0]&0x40 != 0)
		fz.run(data)
		if !fuzzing || fzSample.Add(1)%fzAllocEvery == 0 {
			fz.checkAllocs()
		}
	})
}

// TestFuzzPipelineReset: the switch a fuzzing worker reuses, once reset,
// gives every seed the verdicts a new switch gives it (so that what the
// fuzzer reports reproduces on a new switch).
func TestFuzzPipelineReset(t *testing.T) {
	fzReused = [2]*Switch{}
	t.Cleanup(func() { fzReused = [2]*Switch{} })
	for i, seed := range pipelineFuzzSeeds() {
		vnet := len(seed) > 0 && seed[0]&0x40 != 0
		fresh := newPipelineFuzzer(t, false, vnet)
		fresh.run(seed)
		reused := newPipelineFuzzer(t, true, vnet)
		reused.run(seed)
		if !slices.Equal(fresh.results, reused.results) {
			t.Errorf("seed %d: on a new switch %v, on a reset one %v", i, fresh.results, reused.results)
		}
	}
}

// run plays one input (see FuzzPipeline for its format) and checks the
// counters at the end.
func (fz *pipelineFuzzer) run(data []byte) {
	if len(data) == 0 {
		return
	}
	if data[0]&0x80 == 0 {
		fz.step(fzPorts[data[0]&3], data[1:])
	} else {
		rest := data[1:]
		for n := 0; len(rest) > 0 && n < fzMaxRecords; n++ {
			h := rest[0]
			rest = rest[1:]
			l := len(rest)
			if len(rest) >= 2 {
				l = int(binary.BigEndian.Uint16(rest))
				rest = rest[2:]
			}
			l = min(l, len(rest))
			frame := rest[:l:l]
			rest = rest[l:]
			if adv := int64((h >> 2) & 0x1f); adv != 0 {
				fz.s.clock.Set(fz.s.clock.Time().Add(time.Duration(adv*adv) * time.Second))
			}
			if h&0x80 != 0 {
				fz.togglePolicy()
			}
			fz.step(fzPorts[h&3], frame)
		}
	}
	fz.checkStats()
}

const (
	fzMaxRecords = 128 // frames per input, to bound one execution's time
	fzAllocEvery = 512 // while fuzzing, check allocations on one input in this many
)

// fzPorts maps two bits of the input to an ingress port (the uplink twice:
// it is the port with the most paths of its own).
var fzPorts = [4]int{pWeb1, pDB1, pUplink, pUplink}

var fzSample atomic.Uint64

var fzLearnGW = ft.UDP(gw, web1, 9, 9, nil)

// fzWithout is testConfig without db's ingress rule: what the policy toggles to.
var fzWithout = strings.Replace(testConfig,
	"      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}\n", "", 1)

var fzConfigs = sync.OnceValues(func() ([2]*config.Config, error) {
	var cs [2]*config.Config
	for i, text := range []string{testConfig, fzWithout} {
		c, err := config.Parse("test.yaml", []byte(text))
		if err != nil {
			return cs, err
		}
		cs[i] = c
	}
	return cs, nil
})

type pipelineFuzzer struct {
	t       *testing.T
	s       *Switch
	sc      Scratch
	ids     []filter.Identity // by instance port id, from the configuration itself
	cfgs    [2]*config.Config
	policy  int      // index in cfgs of the configuration in force
	rx      []uint64 // frames sent to each port by this input
	base    []uint64 // each port's RxFrames before this input
	last    []byte   // the last frame processed, and its port
	lastIn  int
	hasLast bool
	results []fzResult // every frame's fate, in order
	hl      int        // virtio-net header length of every port
}

type fzResult struct {
	verdict filter.Verdict
	reason  filter.Reason
	out     int32
}

// fzReused are the switches (without and with virtio-net headers) a fuzzing
// worker process reuses from input to input.
var fzReused [2]*Switch

// newPipelineFuzzer starts an input on a switch in its initial state: a new
// one, or when reuse is set (while fuzzing) the worker's switch reset by
// fzReset — a new switch allocates some 5 MB of tables and costs a
// millisecond, a hundred times the rest of an input. Inputs the fuzzer
// reports are replayed as tests, on a new switch.
func newPipelineFuzzer(t *testing.T, reuse, vnet bool) *pipelineFuzzer {
	cfgs, err := fzConfigs()
	if err != nil {
		t.Fatal(err)
	}
	v := 0
	if vnet {
		v = 1
	}
	s := fzReused[v]
	switch {
	case !reuse || s == nil:
		var ports map[string]port.Port
		if vnet {
			ports = map[string]port.Port{}
			for _, name := range []string{"web1", "db1", "up0"} {
				ports[name] = port.NewMem(name, port.VnetHdrSize)
			}
		}
		s = newTestSwitch(t, ports)
		if reuse {
			fzReused[v] = s
		}
	default:
		fzReset(t, s, cfgs[0])
	}
	fz := &pipelineFuzzer{t: t, s: s, cfgs: cfgs}
	if vnet {
		fz.hl = port.VnetHdrSize
	}
	for _, in := range cfgs[0].Instances {
		var v6 netip.Addr
		if in.IPv6.IsValid() {
			v6 = in.IPv6.Addr()
		}
		fz.ids = append(fz.ids, filter.NewIdentity([6]byte(in.MAC), in.IPv4.Addr(), v6))
	}
	if len(fz.ids) != pUplink || fz.s.NumPorts() != pUplink+1 {
		t.Fatalf("test configuration: %d instances and %d ports, want %d and %d", len(fz.ids), fz.s.NumPorts(), pUplink, pUplink+1)
	}
	fz.rx = make([]uint64, fz.s.NumPorts())
	for _, st := range fz.s.Stats() {
		fz.base = append(fz.base, st.RxFrames)
	}
	// Teach the switch the gateway's MAC, so that single frames can reach
	// the internet: a datagram the policy refuses, learned all the same.
	fz.step(pUplink, append(make([]byte, fz.hl), fzLearnGW...))
	return fz
}

// fzReset puts a used switch back in the state of a new one, as far as
// Process can tell: the initial policy, empty connection, fragment and
// uplink MAC tables, and the clock a day later, so that every responder's
// budget is full again. Counters only grow; checkStats counts from a base.
func fzReset(t *testing.T, s *Switch, cfg *config.Config) {
	s.clock.Set(s.clock.Time().Add(24 * time.Hour))
	if s.Config() != cfg {
		if err := s.Apply(cfg); err != nil {
			t.Fatal(err)
		}
	}
	s.ct = conntrack.New(conntrack.Config{Max: cfg.Switch.Conntrack.Max, Timeouts: conntrackTimeouts(cfg.Switch.Conntrack.Timeouts)}, s.clock)
	// Smaller than New's (which costs 4 MB), but far more datagrams than
	// an input has frames: nothing is ever evicted either way.
	s.frags = conntrack.NewFragments(conntrack.FragConfig{Max: 4 * fzMaxRecords}, s.clock)
	maxMACs, age := cfg.Switch.MaxUplinkMACs, cfg.Switch.MACAgeing
	if maxMACs <= 0 {
		maxMACs = config.DefaultUplinkMACs
	}
	if age <= 0 {
		age = config.DefaultMACAgeing
	}
	s.fdb = newUplinkFDB(maxMACs, age)
}

func (fz *pipelineFuzzer) togglePolicy() {
	fz.policy ^= 1
	if err := fz.s.Apply(fz.cfgs[fz.policy]); err != nil {
		fz.t.Fatalf("Apply: %v", err)
	}
}

// step processes one frame and checks every per-frame invariant.
func (fz *pipelineFuzzer) step(in int, frame []byte) {
	t := fz.t
	t.Helper()
	orig := bytes.Clone(frame)
	r := fz.s.Process(in, frame, &fz.sc)
	fz.rx[in]++
	fz.results = append(fz.results, fzResult{r.Verdict, r.Reason, r.Out})
	fz.last, fz.lastIn, fz.hasLast = frame, in, true
	if !bytes.Equal(frame, orig) {
		t.Fatalf("port %d: Process wrote to its input frame\n before % x\n after  % x", in, orig, frame)
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("port %d: %v/%v out %d: %s\nframe % x", in, r.Verdict, r.Reason, r.Out, fmt.Sprintf(format, args...), frame)
	}
	if r.Verdict >= filter.NumVerdicts || r.Reason >= filter.NumReasons {
		fail("verdict or reason out of range (%d, %d)", r.Verdict, r.Reason)
	}
	if !fzReasonFits(r.Verdict, r.Reason) || r.Reason.Verdict() != r.Verdict {
		fail("reason %v is not a reason of verdict %v", r.Reason, r.Verdict)
	}
	// What follows the virtio-net header, if any, is the Ethernet frame.
	if len(frame) < fz.hl && (r.Verdict != filter.Drop || r.Reason != filter.ReasonMalformed) {
		fail("a frame shorter than its virtio-net header not dropped as malformed")
	}
	gso := false
	eth := frame
	if fz.hl > 0 && len(frame) >= fz.hl {
		h, _ := port.DecodeVnetHdr(frame)
		gso, eth = h.GSOType != port.VnetGSONone, frame[fz.hl:]
	}
	var f filter.Frame
	decoded := f.Decode(eth) == filter.ReasonNone
	switch r.Verdict {
	case filter.Drop:
		if r.Out != -1 || r.Replied() {
			fail("a drop with an output port or a reply")
		}
		return
	case filter.Local:
		if r.Replied() {
			if r.Out != int32(in) {
				fail("a local answer that does not go back out of the ingress port")
			}
			fz.checkReply(fail, fz.sc.Reply())
		} else if r.Out != -1 && r.Out != int32(in) {
			fail("a local verdict without a reply sent to another port")
		}
		return
	}
	// Forward.
	if r.Replied() {
		fail("a forwarded frame with a reply")
	}
	if r.Out < 0 || int(r.Out) >= fz.s.NumPorts() || r.Out == int32(in) {
		fail("forwarded to an invalid port (%d ports)", fz.s.NumPorts())
	}
	if !decoded {
		fail("forwarded a frame that does not decode")
	}
	switch f.EtherType {
	case filter.EtherTypeARP, filter.EtherTypeIPv4, filter.EtherTypeIPv6:
	default:
		fail("forwarded EtherType %#04x", f.EtherType)
	}
	if len(f.Buf) > 14+DefaultMTU && !gso {
		fail("forwarded %d bytes over the MTU without offload headers", len(f.Buf)-14-DefaultMTU)
	}
	nd := fzIsND(&f)
	if out := r.Out; out != pUplink {
		id := &fz.ids[out]
		if f.Dst != id.MAC {
			fail("forwarded to instance port %d, addressed to MAC %x, not its %x", out, f.Dst, id.MAC)
		}
		if f.IsIP() && !nd && f.DstIP != id.IPv4 && (!id.IPv6.IsValid() || f.DstIP != id.IPv6) {
			fail("forwarded to instance port %d, addressed to %v, not one of its addresses", out, f.DstIP)
		}
	}
	if in == pUplink {
		if f.IsMulticast() {
			fail("multicast from the uplink forwarded (flooded)")
		}
		for i := range fz.ids {
			if f.Src == fz.ids[i].MAC {
				fail("a frame from the uplink claiming instance %d's MAC forwarded", i)
			}
		}
		return
	}
	fz.checkFromInstance(fail, &fz.ids[in], &f, eth, r.Reason, nd)
}

// checkFromInstance: nothing an instance forwards may claim another identity.
func (fz *pipelineFuzzer) checkFromInstance(fail func(string, ...any), id *filter.Identity, f *filter.Frame, raw []byte, reason filter.Reason, nd bool) {
	if f.Src != id.MAC || [6]byte(raw[6:12]) != id.MAC {
		fail("forwarded from an instance with source MAC %x, not its own %x", raw[6:12], id.MAC)
	}
	et := binary.BigEndian.Uint16(raw[12:14])
	if et != f.EtherType {
		fail("EtherType %#04x in the frame, %#04x decoded", et, f.EtherType)
	}
	switch f.EtherType {
	case filter.EtherTypeARP:
		sha, spa := [6]byte(raw[22:28]), netip.AddrFrom4([4]byte(raw[28:32]))
		if f.ARPSHA != id.MAC || sha != id.MAC {
			fail("forwarded ARP with sender hardware address %x, not the instance's %x", sha, id.MAC)
		}
		probe := f.ARPOp == 1 && spa.IsUnspecified()
		if (f.ARPSPA != id.IPv4 || spa != id.IPv4) && !probe {
			fail("forwarded ARP with sender address %v, not the instance's %v", spa, id.IPv4)
		}
	case filter.EtherTypeIPv4:
		src := netip.AddrFrom4([4]byte(raw[26:30]))
		if f.SrcIP != id.IPv4 || src != id.IPv4 {
			fail("forwarded IPv4 from %v, not the instance's %v", src, id.IPv4)
		}
	case filter.EtherTypeIPv6:
		src := netip.AddrFrom16([16]byte(raw[22:38]))
		if src != f.SrcIP {
			fail("IPv6 source %v in the frame, %v decoded", src, f.SrcIP)
		}
		own := id.IPv6.IsValid() && src == id.IPv6
		ndSource := nd && (reason == filter.ReasonND || reason == filter.ReasonResolve) &&
			(src == id.LinkLocal || src.IsUnspecified())
		if !own && !ndSource {
			fail("forwarded IPv6 from %v, not the instance's %v (link-local %v)", src, id.IPv6, id.LinkLocal)
		}
	}
}

// checkReply: the switch's own answers are valid frames from itself or from
// the owner of the address it answers for.
func (fz *pipelineFuzzer) checkReply(fail func(string, ...any), reply []byte) {
	var g filter.Frame
	if r := g.Decode(reply); r != filter.ReasonNone {
		fail("the reply does not decode (%v): % x", r, reply)
	}
	if g.Src == SwitchMAC {
		return
	}
	for i := range fz.ids {
		if g.Src == fz.ids[i].MAC {
			return
		}
	}
	fail("a reply from MAC %x, neither the switch's nor an instance's", g.Src)
}

// checkStats: every frame counted once, under one verdict and one reason.
func (fz *pipelineFuzzer) checkStats() {
	t := fz.t
	t.Helper()
	stats := fz.s.Stats()
	if len(stats) != len(fz.rx) {
		t.Fatalf("Stats has %d ports, want %d", len(stats), len(fz.rx))
	}
	for i, st := range stats {
		var byVerdict, byReason uint64
		for _, n := range st.Verdicts {
			byVerdict += n
		}
		for _, n := range st.Reasons {
			byReason += n
		}
		if st.RxFrames-fz.base[i] != fz.rx[i] || byVerdict != st.RxFrames || byReason != st.RxFrames {
			t.Fatalf("port %s: %d frames sent (after %d), rx %d, verdicts %d, reasons %d", st.Port, fz.rx[i], fz.base[i], st.RxFrames, byVerdict, byReason)
		}
	}
}

// checkAllocs processes the last frame again and again: after the first
// time (state learned, connection tracked) it must not allocate, unless the
// local responders build an answer with gopacket.
func (fz *pipelineFuzzer) checkAllocs() {
	if !fz.hasLast || fz.responderFrame(fz.lastIn, fz.last) {
		return
	}
	s, in, frame, sc := fz.s, fz.lastIn, fz.last, &fz.sc
	if n := testing.AllocsPerRun(20, func() { s.Process(in, frame, sc) }); n != 0 {
		r := s.Process(in, frame, sc)
		fz.t.Fatalf("port %d: Process allocates %v times per frame (%v/%v)\nframe % x", in, n, r.Verdict, r.Reason, frame)
	}
	// The repetitions counted too.
	fz.rx[in] += 21 // one warm-up run and 20 measured ones
	fz.checkStats()
}

// responderFrame reports whether frame, from port in, is one for the local
// responders: those allocate (gopacket), on a path bounded per port.
func (fz *pipelineFuzzer) responderFrame(in int, frame []byte) bool {
	if len(frame) < fz.hl {
		return false
	}
	var f filter.Frame
	if f.Decode(frame[fz.hl:]) != filter.ReasonNone {
		return false
	}
	if in == pUplink {
		return f.IsMulticast() && ((f.EtherType == filter.EtherTypeARP && f.ARPOp == 1) ||
			(f.EtherType == filter.EtherTypeIPv6 && f.Proto == filter.ProtoICMPv6 && f.L4 != 0 && f.ICMPType == filter.ICMPv6NeighborSolicit))
	}
	switch class, _ := fz.ids[in].Guard(&f); class {
	case filter.ClassARPRequest, filter.ClassNeighborSolicit, filter.ClassRouterSolicit, filter.ClassDHCP:
		return true
	}
	return false
}

// fzIsND: ICMPv6 router solicitation, neighbour solicitation or advertisement.
func fzIsND(f *filter.Frame) bool {
	return f.EtherType == filter.EtherTypeIPv6 && f.Proto == filter.ProtoICMPv6 && f.L4 != 0 &&
		(f.ICMPType == filter.ICMPv6RouterSolicit || f.ICMPType == filter.ICMPv6NeighborSolicit || f.ICMPType == filter.ICMPv6NeighborAdvert)
}

// fzReasonFits: the reasons of each verdict (filter/reason.go). Replay's
// unknown-source never comes out of Process.
func fzReasonFits(v filter.Verdict, r filter.Reason) bool {
	switch v {
	case filter.Forward:
		switch r {
		case filter.ReasonRule, filter.ReasonEstablished, filter.ReasonRelated, filter.ReasonDefaultEgress,
			filter.ReasonARP, filter.ReasonND, filter.ReasonResolve, filter.ReasonFragmentOf:
			return true
		}
	case filter.Local:
		switch r {
		case filter.ReasonARPReply, filter.ReasonDHCPReply, filter.ReasonNDReply, filter.ReasonAnnounce:
			return true
		}
	case filter.Drop:
		return r >= filter.ReasonMalformed && r < filter.NumReasons && r != filter.ReasonUnknownSource
	}
	return false
}

// Seeds.

// fzOne is a single-frame input from port p (its index in fzPorts).
func fzOne(p byte, frame []byte) []byte { return append([]byte{p}, frame...) }

// fzRec is one record of a sequence: header h (port, clock, policy toggle) and a frame.
type fzRec struct {
	h     byte
	frame []byte
}

func fzSeq(recs ...fzRec) []byte { return fzSeqOf(0x80, recs) }

// fzVnetSeq is a sequence on ports with virtio-net headers; each frame
// must start with its header (fzVnet).
func fzVnetSeq(recs ...fzRec) []byte { return fzSeqOf(0xc0, recs) }

func fzSeqOf(b0 byte, recs []fzRec) []byte {
	out := []byte{b0}
	for _, r := range recs {
		out = append(out, r.h, byte(len(r.frame)>>8), byte(len(r.frame)))
		out = append(out, r.frame...)
	}
	return out
}

// Record header bits.
const (
	fzWeb    = 0
	fzDB     = 1
	fzUp     = 2
	fzToggle = 0x80
)

// fzVnet puts a virtio-net header in front of frame: none (gsoType
// port.VnetGSONone, a plain frame) or a TSO/USO super-frame of segments of
// size bytes, its L4 checksum left to the kernel.
func fzVnet(frame []byte, gsoType uint8, size uint16) []byte {
	h := port.VnetHdr{GSOType: gsoType}
	if gsoType != port.VnetGSONone {
		l4 := 34 // Ethernet and an IPv4 header without options
		if binary.BigEndian.Uint16(frame[12:14]) == filter.EtherTypeIPv6 {
			l4 = 54
		}
		h.Flags, h.GSOSize, h.CsumStart = port.VnetFlagNeedsCsum, size, uint16(l4)
		h.HdrLen, h.CsumOffset = uint16(l4+20), 16
		if gsoType == port.VnetGSOUDP {
			h.HdrLen, h.CsumOffset = uint16(l4+8), 6
		}
	}
	out := make([]byte, port.VnetHdrSize, port.VnetHdrSize+len(frame))
	h.Encode(out)
	return append(out, frame...)
}

// fzAdvance is the header bits that move the clock by n² seconds (n < 32).
func fzAdvance(n byte) byte { return (n & 0x1f) << 2 }

// fzFrag6 turns an IPv6 frame into the fragment [off, off+n) of its payload
// (what follows the fixed header), with a fragment header for datagram id.
func fzFrag6(frame []byte, id uint32, off, n int, more bool) []byte {
	payload := frame[54:]
	out := append([]byte(nil), frame[:54]...)
	next := out[20]
	out[20] = 44 // fragment header
	fo := uint16(off) &^ 7
	if more {
		fo |= 1
	}
	out = append(out, next, 0, byte(fo>>8), byte(fo), byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	out = append(out, payload[off:off+n]...)
	binary.BigEndian.PutUint16(out[18:20], uint16(8+n))
	return out
}

func pipelineFuzzSeeds() [][]byte {
	mac := ft.MustMAC
	stranger := mac("02:00:00:00:00:99")
	outside6 := ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("2001:db8::5")}
	web1ll := ft.Host{MAC: web1MAC, IP: filter.LinkLocalFromMAC([6]byte(web1MAC))}
	db1ll := filter.LinkLocalFromMAC([6]byte(db1MAC))
	gw6 := ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("fe80::1")}
	web1Spoof := ft.Host{MAC: web1MAC, IP: db1.IP}
	web1Spoof6 := ft.Host{MAC: web1MAC, IP: netip.MustParseAddr("fd00::99")}
	strangerHost := ft.Host{MAC: stranger, IP: web1.IP}
	udp6Big := ft.UDP(web1v6, outside6, 40010, 9000, make([]byte, 64))
	udp4Big := ft.UDP(web1, outside, 40010, 9000, make([]byte, 64))
	dhcpReq := func(chaddr []byte, t layers.DHCPMsgType, opts ...layers.DHCPOption) []byte {
		return ft.DHCP(web1MAC, chaddr, zero4, bcast4, t, 9, opts...)
	}

	var seeds [][]byte
	one := func(p byte, frames ...[]byte) {
		for _, fr := range frames {
			seeds = append(seeds, fzOne(p, fr))
		}
	}
	// From web1: every kind of frame, legitimate and forged.
	one(fzWeb,
		ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil),
		ft.TCP(web1, outside, 40000, 443, "S", 1, 0, nil),
		ft.TCP(web1, outside, 40000, 25, "S", 1, 0, nil),
		ft.TCP(web1v6, outside6, 40000, 443, "S", 1, 0, nil),
		ft.UDP(web1, outside, 40000, 53, []byte("q")),
		ft.UDP(web1v6, outside6, 40000, 53, []byte("q")),
		ft.ICMPEcho(web1, outside, 7, 1, true),
		ft.ICMPEcho(web1v6, outside6, 7, 1, true),
		ft.ICMP(web1, outside, 13, 0, make([]byte, 12)),
		icmpError(web1, outside, ft.UDP(outside, web1, 53, 40000, nil)),
		ft.ICMPv6(web1v6, outside6, 1, 4, append(make([]byte, 4), ft.UDP(outside6, web1v6, 53, 40000, nil)[14:62]...)),
		ft.IPPacket(web1, outside, 0, []byte("proto 0")),
		ft.IPPacket(web1, outside, filter.ProtoGRE, make([]byte, 8)),
		ft.IPPacket(web1v6, outside6, 132, make([]byte, 12)),
		ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP),
		ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, gw.IP),
		ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, web1.IP),
		ft.ARP(1, ft.Broadcast, web1MAC, zero4, nil, web1.IP),
		ft.ARP(1, ft.Broadcast, web1MAC, zero4, nil, gw.IP),
		ft.ARP(2, gwMAC, web1MAC, web1.IP, gwMAC, gw.IP),
		ft.ARP(2, ft.Broadcast, web1MAC, web1.IP, ft.Broadcast, web1.IP),
		ft.ARP(2, db1MAC, web1MAC, db1.IP, db1MAC, db1.IP),
		ft.ARP(1, ft.Broadcast, web1MAC, db1.IP, nil, gw.IP),
		ft.ARPFrom(web1MAC, 2, gwMAC, stranger, web1.IP, gwMAC, gw.IP),
		ft.NeighborSolicit(web1MAC, web1v6.IP, db1ll),
		ft.NeighborSolicit(web1MAC, web1ll.IP, gw6.IP),
		ft.NeighborSolicit(web1MAC, netip.IPv6Unspecified(), web1v6.IP),
		ft.NeighborSolicit(web1MAC, netip.IPv6Unspecified(), gw6.IP),
		ft.NeighborSolicit(stranger, web1v6.IP, db1ll),
		ft.NeighborAdvert(web1MAC, web1ll.IP, web1v6.IP, web1MAC, gw6),
		ft.NeighborAdvert(web1MAC, web1ll.IP, web1v6.IP, web1MAC, ft.Host{}),
		ft.NeighborAdvert(web1MAC, web1ll.IP, db1ll, web1MAC, gw6),
		ft.NeighborAdvert(web1MAC, web1ll.IP, web1v6.IP, stranger, gw6),
		ft.NeighborAdvert(web1MAC, web1ll.IP, web1v6.IP, web1MAC, ft.Host{MAC: db1MAC, IP: db1ll}),
		ft.RouterSolicit(web1MAC, web1ll.IP),
		ft.RouterSolicit(web1MAC, netip.IPv6Unspecified()),
		ft.RouterAdvert(web1MAC, web1ll.IP),
		ft.ICMPv6(web1ll, ft.Host{MAC: ft.MulticastMAC(netip.MustParseAddr("ff02::16")), IP: netip.MustParseAddr("ff02::16")}, 143, 0, make([]byte, 4)),
		ft.ICMPv6(web1v6, outside6, 137, 0, make([]byte, 36)),
		dhcpReq(web1MAC, layers.DHCPMsgTypeDiscover),
		dhcpReq(web1MAC, layers.DHCPMsgTypeRequest, layers.NewDHCPOption(layers.DHCPOptRequestIP, web1.IP.AsSlice())),
		dhcpReq(web1MAC, layers.DHCPMsgTypeRequest, layers.NewDHCPOption(layers.DHCPOptRequestIP, db1.IP.AsSlice())),
		dhcpReq(web1MAC, layers.DHCPMsgTypeRelease),
		dhcpReq(web1MAC, layers.DHCPMsgTypeInform),
		dhcpReq(stranger, layers.DHCPMsgTypeDiscover),
		ft.DHCP(web1MAC, web1MAC, web1.IP, gw, layers.DHCPMsgTypeRequest, 10),
		ft.DHCPServerReply(web1, web1.IP, stranger),
		ft.UDP(web1v6, ft.Host{MAC: ft.MulticastMAC(netip.MustParseAddr("ff02::1:2")), IP: netip.MustParseAddr("ff02::1:2")}, 546, 547, make([]byte, 8)),
		ft.UDP(web1v6, outside6, 547, 546, make([]byte, 8)),
		ft.UDP(web1, bcast4, 5353, 5353, []byte("mdns")),
		ft.VLAN(ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), 7, false),
		ft.VLAN(ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), 7, true),
		ft.TCP(web1Spoof, outside, 40000, 443, "S", 1, 0, nil),
		ft.TCP(web1Spoof6, outside6, 40000, 443, "S", 1, 0, nil),
		ft.TCP(web1ll, outside6, 40000, 443, "S", 1, 0, nil),
		ft.TCP(strangerHost, outside, 40000, 443, "S", 1, 0, nil),
		ft.TCP(web1, ft.Host{MAC: db1MAC, IP: netip.MustParseAddr("10.0.0.99")}, 1, 3306, "S", 1, 0, nil),
		ft.TCP(web1, ft.Host{MAC: web1MAC, IP: web1.IP}, 1, 80, "S", 1, 0, nil),
		fragment(udp4Big, 5, 0, 40, true),
		fragment(udp4Big, 5, 40, 32, false),
		fragment(udp4Big, 5, 0, 8, true), // a tiny first fragment (RFC 1858)
		fzFrag6(udp6Big, 5, 0, 40, true),
		fzFrag6(udp6Big, 5, 40, 32, false),
		fzFrag6(ft.RouterAdvert(web1MAC, web1ll.IP), 6, 0, 8, true),
		ft.UDP(web1, db1, 1, 2, make([]byte, 1600)),
		append(ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), make([]byte, 16)...), // Ethernet padding
		ft.Build(ft.Eth(web1MAC, ft.Broadcast, 0x88cc), gopacket.Payload(make([]byte, 46))),
		[]byte{1, 2, 3},
		nil,
	)
	// The same kinds of frames from db1 (no IPv6 address, other policy).
	one(fzDB,
		ft.TCP(db1, web1, 3306, 40000, "SA", 500, 2, nil),
		ft.TCP(db1, outside, 40000, 443, "S", 1, 0, nil),
		ft.TCP(db1, outside, 40000, 80, "S", 1, 0, nil),
		ft.RouterSolicit(db1MAC, db1ll),
		ft.NeighborSolicit(db1MAC, db1ll, filter.LinkLocalFromMAC([6]byte(web1MAC))),
		ft.TCP(ft.Host{MAC: db1MAC, IP: netip.MustParseAddr("fd00::21")}, outside6, 1, 443, "S", 1, 0, nil),
	)
	// From the uplink.
	one(fzDB|fzUp,
		ft.TCP(outside, web1, 5555, 80, "S", 1, 0, nil),
		ft.TCP(outside, db1, 5555, 3306, "S", 1, 0, nil),
		ft.TCP(outside6, web1v6, 5555, 80, "S", 1, 0, nil),
		ft.UDP(outside, web1, 53, 40000, nil),
		ft.ICMPEcho(outside, web1, 7, 1, true),
		ft.ICMPEcho(outside6, web1v6, 7, 1, true),
		icmpError(outside, web1, ft.UDP(web1, outside, 40005, 53, []byte("q"))),
		ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, web1.IP),
		ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, netip.MustParseAddr("10.0.0.77")),
		ft.ARP(2, web1MAC, gwMAC, gw.IP, web1MAC, web1.IP),
		ft.NeighborSolicit(gwMAC, gw6.IP, web1v6.IP),
		ft.NeighborAdvert(gwMAC, gw6.IP, gw6.IP, gwMAC, web1ll),
		ft.RouterAdvert(gwMAC, gw6.IP),
		ft.UDP(gw, bcast4, 1, 2, nil),
		ft.TCP(ft.Host{MAC: web1MAC, IP: outside.IP}, db1, 1, 3306, "S", 1, 0, nil),
		ft.VLAN(ft.TCP(outside, web1, 1, 80, "S", 1, 0, nil), 3, false),
		ft.TCP(outside, ft.Host{MAC: web1MAC, IP: db1.IP}, 5555, 80, "S", 1, 0, nil),
		fragment(ft.UDP(outside, web1, 53, 40000, make([]byte, 64)), 9, 40, 32, false),
		ft.Build(ft.Eth(gwMAC, web1MAC, 0x88cc), gopacket.Payload(make([]byte, 46))),
	)

	// Sequences: state carried from frame to frame.
	seq := func(recs ...fzRec) { seeds = append(seeds, fzSeq(recs...)) }
	learnGW := fzRec{fzUp, ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, web1.IP)}
	seq( // a TCP connection through its life, with forged segments
		fzRec{fzWeb, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil)},
		fzRec{fzDB, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil)},
		fzRec{fzWeb, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil)},
		fzRec{fzWeb, ft.TCP(web1, db1, 40000, 3306, "PA", 101, 501, []byte("select 1"))},
		fzRec{fzDB, ft.TCP(db1, web1, 3306, 40000, "R", 500+1<<30, 0, nil)},
		fzRec{fzDB, ft.TCP(db1, web1, 3306, 40000, "PA", 501, 109, []byte("1"))},
		fzRec{fzWeb, ft.TCP(web1, db1, 40000, 3306, "FA", 109, 502, nil)},
		fzRec{fzDB, ft.TCP(db1, web1, 3306, 40000, "FA", 502, 110, nil)},
		fzRec{fzWeb, ft.TCP(web1, db1, 40000, 3306, "A", 110, 503, nil)},
	)
	seq( // to the internet and back
		learnGW,
		fzRec{fzWeb, ft.TCP(web1, outside, 40001, 443, "S", 100, 0, nil)},
		fzRec{fzUp, ft.TCP(outside, web1, 443, 40001, "SA", 7000, 101, nil)},
		fzRec{fzWeb, ft.TCP(web1, outside, 40001, 443, "A", 101, 7001, nil)},
		fzRec{fzUp | fzAdvance(20), ft.TCP(outside, web1, 443, 40001, "PA", 7001, 101, []byte("hello"))},
	)
	seq( // IPv6 to the internet and back
		fzRec{fzUp, ft.NeighborSolicit(gwMAC, gw6.IP, web1v6.IP)},
		fzRec{fzWeb, ft.TCP(web1v6, outside6, 40001, 443, "S", 100, 0, nil)},
		fzRec{fzUp, ft.TCP(outside6, web1v6, 443, 40001, "SA", 7000, 101, nil)},
		fzRec{fzWeb, ft.UDP(web1v6, outside6, 40002, 53, []byte("q"))},
		fzRec{fzUp, ft.ICMPv6(outside6, web1v6, 1, 4, append(make([]byte, 4), ft.UDP(web1v6, outside6, 40002, 53, []byte("q"))[14:62]...))},
		fzRec{fzUp, ft.UDP(outside6, web1v6, 53, 40002, []byte("a"))},
	)
	seq( // UDP, a related ICMP error, expiry
		learnGW,
		fzRec{fzWeb, ft.UDP(web1, outside, 40005, 53, []byte("q"))},
		fzRec{fzUp, icmpError(outside, web1, ft.UDP(web1, outside, 40005, 53, []byte("q")))},
		fzRec{fzUp, icmpError(outside, web1, ft.UDP(db1, outside, 40005, 53, []byte("q")))},
		fzRec{fzUp | fzAdvance(5), ft.UDP(outside, web1, 53, 40005, []byte("a"))},
		fzRec{fzUp | fzAdvance(12), ft.UDP(outside, web1, 53, 40005, []byte("a"))},
	)
	seq( // echo both ways
		learnGW,
		fzRec{fzUp, ft.ICMPEcho(outside, web1, 7, 1, true)},
		fzRec{fzWeb, ft.ICMPEcho(web1, outside, 7, 1, false)},
		fzRec{fzWeb, ft.ICMPEcho(web1, outside, 8, 1, false)},
		fzRec{fzWeb, ft.ICMPEcho(web1v6, outside6, 9, 1, true)},
		fzRec{fzUp, ft.ICMPEcho(outside6, web1v6, 9, 1, false)},
	)
	seq( // fragments: first, later, overlap, orphan, denied; IPv6 too
		learnGW,
		fzRec{fzWeb, fragment(udp4Big, 77, 0, 40, true)},
		fzRec{fzWeb, fragment(udp4Big, 77, 40, 24, false)},
		fzRec{fzWeb, fragment(udp4Big, 77, 32, 16, true)},
		fzRec{fzWeb, fragment(udp4Big, 78, 40, 24, false)},
		fzRec{fzDB, fragment(ft.UDP(db1, outside, 40006, 9000, make([]byte, 64)), 79, 0, 40, true)},
		fzRec{fzDB, fragment(ft.UDP(db1, outside, 40006, 9000, make([]byte, 64)), 79, 40, 24, false)},
		fzRec{fzWeb, fzFrag6(udp6Big, 80, 0, 40, true)},
		fzRec{fzWeb, fzFrag6(udp6Big, 80, 40, 32, false)},
		fzRec{fzWeb | fzAdvance(6), fzFrag6(udp6Big, 80, 40, 32, false)},
	)
	seq( // a policy change cuts and revives an established connection
		fzRec{fzWeb, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil)},
		fzRec{fzDB, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil)},
		fzRec{fzWeb | fzToggle, ft.TCP(web1, db1, 40000, 3306, "PA", 101, 501, []byte("x"))},
		fzRec{fzDB, ft.TCP(db1, web1, 3306, 40000, "A", 501, 102, nil)},
		fzRec{fzWeb | fzToggle, ft.TCP(web1, db1, 40000, 3306, "PA", 102, 501, []byte("y"))},
	)
	seq( // the responders: ARP, ND, DHCP exchanges
		fzRec{fzWeb, ft.ARP(1, ft.Broadcast, web1MAC, zero4, nil, web1.IP)},
		fzRec{fzWeb, ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, web1.IP)},
		fzRec{fzWeb, dhcpReq(web1MAC, layers.DHCPMsgTypeDiscover)},
		fzRec{fzWeb, dhcpReq(web1MAC, layers.DHCPMsgTypeRequest, layers.NewDHCPOption(layers.DHCPOptRequestIP, web1.IP.AsSlice()))},
		fzRec{fzWeb, ft.NeighborSolicit(web1MAC, netip.IPv6Unspecified(), web1v6.IP)},
		fzRec{fzWeb, ft.RouterSolicit(web1MAC, web1ll.IP)},
		fzRec{fzWeb, ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP)},
		fzRec{fzDB, ft.ARP(1, ft.Broadcast, db1MAC, db1.IP, nil, web1.IP)},
		fzRec{fzUp, ft.ARP(1, ft.Broadcast, gwMAC, gw.IP, nil, db1.IP)},
		fzRec{fzUp, ft.NeighborSolicit(gwMAC, gw6.IP, web1v6.IP)},
	)
	// Ports with virtio-net headers: plain frames, TSO/USO super-frames over
	// the MTU, a header cut short.
	for _, fr := range []struct {
		p     byte
		frame []byte
	}{
		{fzWeb, fzVnet(ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), port.VnetGSONone, 0)},
		{fzWeb, fzVnet(ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP), port.VnetGSONone, 0)},
		{fzWeb, fzVnet(dhcpReq(web1MAC, layers.DHCPMsgTypeDiscover), port.VnetGSONone, 0)},
		{fzWeb, fzVnet(ft.UDP(web1, outside, 40000, 9000, make([]byte, 4000)), port.VnetGSOUDP, 1472)},
		{fzWeb, fzVnet(ft.TCP(web1Spoof, outside, 40000, 443, "A", 1, 1, make([]byte, 4000)), port.VnetGSOTCPv4, 1448)},
		{fzWeb, fzVnet(ft.UDP(web1, db1, 1, 2, make([]byte, 1600)), port.VnetGSONone, 0)},
		{fzUp, fzVnet(ft.TCP(outside, web1, 5555, 80, "S", 1, 0, nil), port.VnetGSONone, 0)},
		{fzUp, fzVnet(ft.TCP(outside6, web1v6, 5555, 80, "PA", 1, 1, make([]byte, 3000)), port.VnetGSOTCPv6, 1428)},
		{fzDB, make([]byte, port.VnetHdrSize/2)},
	} {
		seeds = append(seeds, fzOne(0x40|fr.p, fr.frame))
	}
	seeds = append(seeds, fzVnetSeq( // an established connection carrying super-frames
		fzRec{fzWeb, fzVnet(ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), port.VnetGSONone, 0)},
		fzRec{fzDB, fzVnet(ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), port.VnetGSONone, 0)},
		fzRec{fzWeb, fzVnet(ft.TCP(web1, db1, 40000, 3306, "PA", 101, 501, make([]byte, 6000)), port.VnetGSOTCPv4, 1448)},
		fzRec{fzDB, fzVnet(ft.TCP(db1, web1, 3306, 40000, "PA", 501, 6101, make([]byte, 9000)), port.VnetGSOTCPv4|port.VnetGSOECN, 1448)},
		fzRec{fzWeb, fzVnet(ft.TCP(web1v6, outside6, 40001, 443, "S", 1, 0, nil), port.VnetGSONone, 0)},
	))
	seq( // the uplink's MAC table: learning, ageing, a claimed instance MAC
		fzRec{fzUp, ft.UDP(ft.Host{MAC: mac("02:00:00:00:01:01"), IP: outside.IP}, web1, 53, 40000, nil)},
		fzRec{fzWeb, ft.UDP(web1, ft.Host{MAC: mac("02:00:00:00:01:01"), IP: outside.IP}, 40000, 53, nil)},
		fzRec{fzWeb | fzAdvance(18), ft.UDP(web1, ft.Host{MAC: mac("02:00:00:00:01:01"), IP: outside.IP}, 40000, 53, nil)},
		fzRec{fzUp, ft.TCP(ft.Host{MAC: db1MAC, IP: outside.IP}, web1, 1, 80, "S", 1, 0, nil)},
		fzRec{fzWeb, ft.TCP(web1, ft.Host{MAC: db1MAC, IP: outside.IP}, 80, 1, "SA", 1, 2, nil)},
	)
	return seeds
}
