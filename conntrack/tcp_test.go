package conntrack

import (
	"testing"
	"time"
)

func TestTCPLifecycle(t *testing.T) {
	tab, clk := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.open(Meta{A: 1, B: 2, Allowed: true})
	f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	f.must(Original, tcpAck, 0, StateEstablished)
	f.must(Original, tcpAck|0x08, 1000, StateEstablished)
	f.must(Reply, tcpAck, 0, StateEstablished)
	f.must(Reply, tcpAck, 3000, StateEstablished)
	f.must(Original, tcpAck, 0, StateEstablished)
	f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
	f.must(Reply, tcpAck, 0, StateCloseWait)
	f.must(Reply, tcpFin|tcpAck, 0, StateLastAck)
	r := f.must(Original, tcpAck, 0, StateTimeWait)
	if r.Meta != (Meta{A: 1, B: 2, Allowed: true}) {
		t.Fatalf("meta lost: %+v", r.Meta)
	}
	list := tab.List(nil, 0)
	if len(list) != 1 {
		t.Fatalf("List: %d connections", len(list))
	}
	ci := list[0]
	if ci.Key != f.key || ci.Protocol != "tcp" || ci.State != StateTimeWait || ci.Timeout != 120*time.Second {
		t.Fatalf("ConnInfo: %+v", ci)
	}
	if ci.Packets != [2]uint64{6, 5} || ci.Bytes != [2]uint64{6*40 + 1000, 5*40 + 3000} {
		t.Fatalf("counters: packets %v bytes %v", ci.Packets, ci.Bytes)
	}
	clk.Advance(120 * time.Second)
	if r := f.send(Original, tcpAck, 0); r.Verdict != Miss {
		t.Fatalf("after TIME_WAIT expiry: %v", r.Verdict)
	}
	if st := tab.Stats(); st.Entries != 0 || st.Expired != 1 || st.States[StateTimeWait] != 0 {
		t.Fatalf("stats after expiry: %+v", st)
	}
}

func TestTCPSimultaneousClose(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.establish()
	// Both FINs cross; each side then acknowledges the other's.
	pc := f.seg(Original, tcpFin|tcpAck, 0)
	ps := f.seg(Reply, tcpFin|tcpAck, 0)
	for _, c := range []struct {
		p    *Packet
		d    Dir
		want State
	}{{pc, Original, StateFinWait}, {ps, Reply, StateLastAck}} {
		if r := tab.Track(c.p); r.Verdict != Valid || r.State != c.want {
			t.Fatalf("FIN %v: %v %v", c.d, r.Verdict, r.State)
		}
		f.consume(c.p, c.d)
	}
	f.must(Original, tcpAck, 0, StateTimeWait)
	f.must(Reply, tcpAck, 0, StateTimeWait)
}

// The Linux selftest conntrack_rst_invalid and friends: an RST that is not
// exactly at the expected sequence number is invalid and leaves the
// connection established; an exact one closes it.
func TestTCPRST(t *testing.T) {
	cases := []struct {
		name  string
		from  Dir
		delta uint32 // added to the exact sequence number
		flags uint8
		want  Verdict
		state State
	}{
		{"exact from client", Original, 0, tcpRst, Valid, StateClose},
		{"exact from server", Reply, 0, tcpRst, Valid, StateClose},
		{"exact with ACK", Original, 0, tcpRst | tcpAck, Valid, StateClose},
		{"inexact, inside the window", Original, 1, tcpRst, Invalid, StateEstablished},
		{"inexact, just behind", Reply, ^uint32(0), tcpRst, Invalid, StateEstablished},
		{"out of window", Original, 1 << 30, tcpRst, Invalid, StateEstablished},
		{"out of window from server", Reply, 0x80000000, tcpRst | tcpAck, Invalid, StateEstablished},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, _ := newTestTable(Config{})
			f := newFlow(t, tab, 40000)
			f.establish()
			f.must(Original, tcpAck, 500, StateEstablished)
			p := f.seg(c.from, c.flags, 0)
			p.Seq += c.delta
			r := tab.Track(p)
			if r.Verdict != c.want || r.State != c.state {
				t.Fatalf("got %v %v, want %v %v", r.Verdict, r.State, c.want, c.state)
			}
			if c.want == Invalid {
				// The connection carries on untouched.
				f.must(Reply, tcpAck, 100, StateEstablished)
				f.must(Original, tcpAck, 0, StateEstablished)
				if tab.Stats().Invalid != 1 {
					t.Fatalf("invalid not counted: %+v", tab.Stats())
				}
			}
		})
	}
}

func TestTCPRSTAnsweringSYN(t *testing.T) {
	cases := []struct {
		name  string
		flags uint8
		ack   uint32 // added to the exact acknowledgement
		want  Verdict
	}{
		{"RST/ACK acknowledging the SYN", tcpRst | tcpAck, 0, Valid},
		{"RST/ACK acknowledging something else", tcpRst | tcpAck, 5, Invalid},
		{"RST without ACK", tcpRst, 0, Invalid},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, _ := newTestTable(Config{})
			f := newFlow(t, tab, 40000)
			f.open(Meta{})
			p := f.seg(Reply, c.flags, 0)
			p.Seq = 0
			p.Ack = f.seq[Original] + c.ack
			r := tab.Track(p)
			if r.Verdict != c.want {
				t.Fatalf("got %v, want %v", r.Verdict, c.want)
			}
			want := StateSynSent
			if c.want == Valid {
				want = StateClose
			}
			if got := f.probe().State; got != want {
				t.Fatalf("state %v, want %v", got, want)
			}
		})
	}
}

func TestTCPWindow(t *testing.T) {
	cases := []struct {
		name   string
		from   Dir
		seq    int64 // added to the next expected sequence number
		ack    int64 // added to the exact acknowledgement
		n      int
		want   Verdict
		window uint16
	}{
		{"next segment", Original, 0, 0, 1000, Valid, 65535},
		{"retransmission", Original, -1000, 0, 1000, Valid, 65535},
		{"partly old", Original, -500, 0, 1000, Valid, 65535},
		{"inside the window, ahead", Original, 60000, 0, 100, Valid, 65535},
		{"beyond the window", Original, 70000, 0, 100, Invalid, 65535},
		{"far beyond", Original, 1 << 31, 0, 100, Invalid, 65535},
		{"older than a window", Original, -200000, 0, 100, Invalid, 65535},
		{"acknowledges unsent data", Reply, 0, 1, 0, Invalid, 65535},
		{"acknowledges far in the past", Reply, 0, -200000, 0, Invalid, 65535},
		{"pure ACK", Reply, 0, 0, 0, Valid, 65535},
		{"zero window probe", Reply, 0, 0, 1, Valid, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, _ := newTestTable(Config{})
			f := newFlow(t, tab, 40000)
			f.establish()
			f.must(Original, tcpAck, 1000, StateEstablished)
			f.must(Reply, tcpAck, 0, StateEstablished)
			p := f.seg(c.from, tcpAck, c.n)
			p.Seq += uint32(c.seq)
			p.Ack += uint32(c.ack)
			p.Window = c.window
			if r := tab.Track(p); r.Verdict != c.want || r.State != StateEstablished {
				t.Fatalf("got %v %v, want %v", r.Verdict, r.State, c.want)
			}
		})
	}
}

func TestTCPInvalidChangesNothing(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	r := f.establish()
	s, e := tab.lockHandle(r.Conn)
	before := *e
	s.mu.Unlock()
	for _, p := range []*Packet{
		{TCPFlags: tcpAck, Seq: f.seq[Original] + 1<<20, PayloadLen: 10},
		{TCPFlags: tcpRst, Seq: f.seq[Original] + 7},
		{TCPFlags: tcpSyn | tcpFin, Seq: f.seq[Original]},
		{TCPFlags: tcpAck, Seq: f.seq[Original], Ack: f.seq[Reply] + 1<<20},
	} {
		p.Key = f.key
		if r := tab.Track(p); r.Verdict != Invalid {
			t.Fatalf("%+v: %v", p, r.Verdict)
		}
	}
	s, e = tab.lockHandle(r.Conn)
	after := *e
	s.mu.Unlock()
	if before != after {
		t.Fatalf("an invalid segment changed the entry:\n%+v\n%+v", before, after)
	}
}

func TestTCPBadFlags(t *testing.T) {
	for _, flags := range []uint8{0, tcpFin, tcpSyn | tcpFin, tcpSyn | tcpRst, tcpFin | tcpSyn | tcpRst | 0x08 | tcpAck | tcpUrg, tcpFin | 0x08 | tcpUrg} {
		tab, _ := newTestTable(Config{})
		f := newFlow(t, tab, 40000)
		f.establish()
		if r := f.send(Original, flags, 0); r.Verdict != Invalid || r.State != StateEstablished {
			t.Errorf("flags %#x: %v %v", flags, r.Verdict, r.State)
		}
	}
}

func TestTCPRetransmittedHandshake(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.open(Meta{})
	syn := f.seg(Original, tcpSyn, 0)
	syn.Seq-- // the same SYN again
	if r := tab.Track(syn); r.Verdict != Valid || r.State != StateSynSent {
		t.Fatalf("retransmitted SYN: %v %v", r.Verdict, r.State)
	}
	synack := f.seg(Reply, tcpSyn|tcpAck, 0)
	if r := tab.Track(synack); r.Verdict != Valid || r.State != StateSynRecv {
		t.Fatalf("SYN/ACK: %v %v", r.Verdict, r.State)
	}
	f.consume(synack, Reply)
	if r := tab.Track(synack); r.Verdict != Valid || r.State != StateSynRecv {
		t.Fatalf("retransmitted SYN/ACK: %v %v", r.Verdict, r.State)
	}
	f.must(Original, tcpAck, 0, StateEstablished)
	// A late SYN/ACK on the established connection still passes.
	if r := tab.Track(synack); r.Verdict != Valid || r.State != StateEstablished {
		t.Fatalf("late SYN/ACK: %v %v", r.Verdict, r.State)
	}
	// A client that restarted with a new ISN before any answer is followed.
	g := newFlow(t, tab, 40001)
	g.open(Meta{})
	g.seq[Original] += 100000
	g.must(Original, tcpSyn, 0, StateSynSent)
	g.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	g.must(Original, tcpAck, 0, StateEstablished)
}

func TestTCPHandshakeChecks(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.open(Meta{})
	// A SYN/ACK that acknowledges something other than the SYN.
	p := f.seg(Reply, tcpSyn|tcpAck, 0)
	p.Ack += 1000
	if r := tab.Track(p); r.Verdict != Invalid || r.State != StateSynSent {
		t.Fatalf("SYN/ACK with a wrong ack: %v %v", r.Verdict, r.State)
	}
	// Data from the server before its SYN/ACK.
	if r := f.send(Reply, tcpAck, 10); r.Verdict != Valid || r.State != StateSynSent {
		// Linux ignores (sIG) an ACK from the reply side in SYN_SENT.
		t.Fatalf("reply ACK in SYN_SENT: %v %v", r.Verdict, r.State)
	}
	if r := f.send(Original, tcpAck, 0); r.Verdict != Invalid {
		t.Fatalf("client ACK before the SYN/ACK: %v", r.Verdict)
	}
	if r := f.send(Reply, tcpFin|tcpAck, 0); r.Verdict != Invalid {
		t.Fatalf("server FIN in SYN_SENT: %v", r.Verdict)
	}
	// The invalid SYN/ACK did not initialise the server side: the real one works.
	f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	f.must(Original, tcpAck, 0, StateEstablished)
}

func TestTCPSimultaneousOpen(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.open(Meta{})
	cISN := f.seq[Original] - 1
	sISN := f.seq[Reply]
	pkt := func(d Dir, flags uint8, seq, ack uint32) *Packet {
		p := f.seg(d, flags, 0)
		p.Seq, p.Ack = seq, ack
		return p
	}
	// Each side sends a SYN, then answers the other's with a SYN/ACK
	// carrying its ISN again (RFC 793 figure 8).
	steps := []struct {
		p    *Packet
		want State
	}{
		{pkt(Reply, tcpSyn, sISN, 0), StateSynSent2},
		{pkt(Original, tcpSyn|tcpAck, cISN, sISN+1), StateSynRecv},
		{pkt(Reply, tcpSyn|tcpAck, sISN, cISN+1), StateSynRecv},
		{pkt(Original, tcpAck, cISN+1, sISN+1), StateEstablished},
		{pkt(Reply, tcpAck, sISN+1, cISN+1), StateEstablished},
	}
	for i, st := range steps {
		if r := tab.Track(st.p); r.Verdict != Valid || r.State != st.want {
			t.Fatalf("step %d: %v %v, want %v", i, r.Verdict, r.State, st.want)
		}
	}
}

func TestTCPWindowScaling(t *testing.T) {
	for _, c := range []struct {
		name string
		ws   [2]int8
		want Verdict
	}{
		{"both sides scale", [2]int8{7, 7}, Valid},
		{"server does not scale", [2]int8{7, -1}, Invalid},
		{"client does not scale", [2]int8{-1, 7}, Invalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, _ := newTestTable(Config{})
			f := newFlow(t, tab, 40000)
			f.ws = c.ws
			f.win = 1000 // 128000 bytes once scaled by 7
			f.establish()
			f.must(Reply, tcpAck, 0, StateEstablished) // the server's first scaled window
			p := f.seg(Original, tcpAck, 1000)
			p.Seq += 100000
			if r := tab.Track(p); r.Verdict != c.want {
				t.Fatalf("data 100000 bytes ahead: %v, want %v", r.Verdict, c.want)
			}
		})
	}
}

func TestTCPPortReuse(t *testing.T) {
	for _, c := range []struct {
		name  string
		close func(f *flow)
	}{
		{"after RST", func(f *flow) {
			f.must(Original, tcpRst, 0, StateClose)
		}},
		{"in TIME_WAIT", func(f *flow) {
			f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
			f.must(Reply, tcpFin|tcpAck, 0, StateLastAck)
			f.must(Original, tcpAck, 0, StateTimeWait)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, _ := newTestTable(Config{})
			f := newFlow(t, tab, 40000)
			old := f.establish()
			c.close(f)
			f.seq = [2]uint32{777, 9999}
			// The new SYN is a new flow for the caller's policy...
			if r := f.send(Original, tcpSyn, 0); r.Verdict != Miss {
				t.Fatalf("SYN on a closed connection: %v", r.Verdict)
			}
			if _, ok := tab.Meta(old.Conn); ok {
				t.Fatal("the old connection's handle still works")
			}
			// ... and Insert starts it afresh.
			r := f.open(Meta{A: 9})
			if r.Conn == old.Conn || r.Meta.A != 9 {
				t.Fatalf("not a fresh connection: %+v", r)
			}
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
			if n := tab.Len(); n != 1 {
				t.Fatalf("%d entries", n)
			}
		})
	}
	// Insert alone (Track not called first) replaces the closed connection too.
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	old := f.establish()
	f.must(Original, tcpRst, 0, StateClose)
	f.seq[Original] = 777
	if r := f.open(Meta{}); r.Conn == old.Conn || tab.Len() != 1 {
		t.Fatalf("Insert did not replace: %+v, %d entries", r, tab.Len())
	}
}

func TestInsertCannotStart(t *testing.T) {
	tab, _ := newTestTable(Config{})
	k := KeyFrom(protoTCP, cliAddr, srvAddr, 40000, 80, 0)
	icmp := KeyFrom(protoICMP, cliAddr, srvAddr, 7, 0, 0)
	icmp6 := KeyFrom(protoICMPv6, cliAddr, srvAddr, 7, 0, 0)
	for _, p := range []Packet{
		{Key: k, TCPFlags: tcpAck},
		{Key: k, TCPFlags: tcpRst},
		{Key: k, TCPFlags: tcpRst | tcpAck},
		{Key: k, TCPFlags: tcpSyn | tcpAck},
		{Key: k, TCPFlags: tcpSyn | tcpFin},
		{Key: k, TCPFlags: tcpFin | tcpAck},
		{Key: k},
		{Key: icmp, ICMPType: icmpEchoReply},
		{Key: icmp, ICMPType: 13}, // timestamp: not tracked
		{Key: icmp6, ICMPType: icmpv6EchoReply},
		{Key: icmp6, ICMPType: icmpEchoRequest}, // an ICMPv4 type number in ICMPv6
	} {
		r, ok := tab.Insert(&p, Meta{})
		if !ok || r.Verdict != Invalid {
			t.Errorf("%v flags %#x type %d: %v %v", p.Key, p.TCPFlags, p.ICMPType, ok, r.Verdict)
		}
	}
	if st := tab.Stats(); st.Entries != 0 || st.Invalid != 11 || st.Inserted != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestInsertRace(t *testing.T) {
	// Two copies of a SYN both missed; the second Insert tracks against the
	// first's entry and keeps its meta.
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	first := f.open(Meta{A: 1})
	p := f.seg(Original, tcpSyn, 0)
	p.Seq--
	r, ok := tab.Insert(p, Meta{A: 2})
	if !ok || r.Verdict != Valid || r.Conn != first.Conn || r.Meta.A != 1 || tab.Len() != 1 {
		t.Fatalf("second insert: %v %+v, %d entries", ok, r, tab.Len())
	}
}

// After a FIN the connection is no longer established, and an RST need
// only lie inside the window, as in Linux: at the FIN's own sequence number
// (the receiver had not seen the FIN yet; Linux resets a closed socket that
// way), or further behind (the sequence number the peer last acknowledged);
// one outside the window is still invalid.
func TestTCPRSTAfterFIN(t *testing.T) {
	for _, c := range []struct {
		name  string
		delta uint32
		want  Verdict
	}{
		{"at the FIN's sequence number", ^uint32(0), Valid},
		{"exact", 0, Valid},
		{"two behind, inside the window", ^uint32(1), Valid},
		{"a window behind", ^uint32(0) - 1<<20, Invalid},
		{"beyond the window", 1 << 30, Invalid},
	} {
		t.Run(c.name, func(t *testing.T) {
			tab, _ := newTestTable(Config{})
			f := newFlow(t, tab, 40000)
			f.establish()
			fin := f.seg(Reply, tcpFin|tcpAck, 0)
			if r := tab.Track(fin); r.Verdict != Valid {
				t.Fatalf("FIN: %v", r.Verdict)
			}
			f.consume(fin, Reply)
			p := f.seg(Reply, tcpRst, 0)
			p.Seq += c.delta
			if r := tab.Track(p); r.Verdict != c.want {
				t.Fatalf("RST: %v, want %v", r.Verdict, c.want)
			}
		})
	}
}
