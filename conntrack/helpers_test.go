package conntrack

import (
	"net/netip"
	"testing"
)

var (
	cliAddr = netip.MustParseAddr("10.0.0.11")
	srvAddr = netip.MustParseAddr("10.0.0.21")
)

func newTestTable(cfg Config) (*Table, *ManualClock) {
	clk := &ManualClock{}
	return New(cfg, clk), clk
}

// flow drives one TCP connection through a table the way two well-behaved
// endpoints would, keeping each side's next sequence number.
type flow struct {
	tb  testing.TB
	tab *Table
	key Key       // client → server
	seq [2]uint32 // next sequence number each side sends, by Dir
	win uint16
	ws  [2]int8 // window-scale option each side puts in its SYN
}

func newFlow(tb testing.TB, tab *Table, sport uint16) *flow {
	return &flow{
		tb:  tb,
		tab: tab,
		key: KeyFrom(protoTCP, cliAddr, srvAddr, sport, 80, 0),
		// Close to the wrap, so that every test runs modular arithmetic.
		seq: [2]uint32{0xffffff00, 5000},
		win: 65535,
		ws:  [2]int8{-1, -1},
	}
}

// seg builds the next segment from side d, acknowledging everything the
// other side sent.
func (f *flow) seg(d Dir, flags uint8, n int) *Packet {
	k := f.key
	if d == Reply {
		k = k.Reverse()
	}
	p := &Packet{Key: k, TCPFlags: flags, Seq: f.seq[d], Window: f.win, WScale: -1, PayloadLen: n, Len: 40 + n}
	if flags&tcpSyn != 0 {
		p.WScale = f.ws[d]
	}
	if flags&tcpAck != 0 {
		p.Ack = f.seq[1-d]
	}
	return p
}

// consume moves side d's sequence number past a segment that was accepted.
func (f *flow) consume(p *Packet, d Dir) {
	if p.TCPFlags&tcpRst == 0 {
		f.seq[d] = segmentEnd(p)
	}
}

// send tracks the next segment from side d.
func (f *flow) send(d Dir, flags uint8, n int) Result {
	p := f.seg(d, flags, n)
	r := f.tab.Track(p)
	if r.Verdict == Valid {
		f.consume(p, d)
	}
	return r
}

// must is send that fails the test unless the result is Valid in state want.
func (f *flow) must(d Dir, flags uint8, n int, want State) Result {
	f.tb.Helper()
	r := f.send(d, flags, n)
	if r.Verdict != Valid || r.State != want || r.Dir != d {
		f.tb.Fatalf("%v flags %#x: got %v %v %v, want valid %v %v", d, flags, r.Verdict, r.Dir, r.State, d, want)
	}
	return r
}

// open inserts the SYN.
func (f *flow) open(meta Meta) Result {
	f.tb.Helper()
	p := f.seg(Original, tcpSyn, 0)
	r, ok := f.tab.Insert(p, meta)
	if !ok || r.Verdict != Valid || r.State != StateSynSent {
		f.tb.Fatalf("insert SYN: %v %v %v", ok, r.Verdict, r.State)
	}
	f.consume(p, Original)
	return r
}

// establish runs the three-way handshake.
func (f *flow) establish() Result {
	f.tb.Helper()
	f.open(Meta{Allowed: true})
	f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	return f.must(Original, tcpAck, 0, StateEstablished)
}

// probe looks the connection up without touching it.
func (f *flow) probe() Result { return f.tab.Related(f.key) }
