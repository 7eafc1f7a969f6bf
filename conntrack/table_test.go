package conntrack

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func udpPacket(sport, dport uint16) *Packet {
	return &Packet{Key: KeyFrom(protoUDP, cliAddr, srvAddr, sport, dport, 0), Len: 100}
}

func icmpPacket(proto uint8, typ uint8, src, dst netip.Addr, id uint16) *Packet {
	return &Packet{Key: KeyFrom(proto, src, dst, id, 0, 0), ICMPType: typ, Len: 84}
}

func mustInsert(t testing.TB, tab *Table, p *Packet, m Meta) Result {
	t.Helper()
	r, ok := tab.Insert(p, m)
	if !ok || r.Verdict != Valid {
		t.Fatalf("insert %v: %v %v", p.Key, ok, r.Verdict)
	}
	return r
}

func reversed(p *Packet) *Packet {
	q := *p
	q.Key = p.Key.Reverse()
	return &q
}

// TestTimeouts puts a connection in each state, then checks that it lives
// exactly its state's timeout.
func TestTimeouts(t *testing.T) {
	d := DefaultTimeouts()
	gre := &Packet{Key: KeyFrom(47, cliAddr, srvAddr, 0, 0, 0)}
	tcpTo := func(steps func(f *flow)) func(t *testing.T, tab *Table) Key {
		return func(t *testing.T, tab *Table) Key {
			f := newFlow(t, tab, 40000)
			f.open(Meta{})
			steps(f)
			return f.key
		}
	}
	other := func(p *Packet, replied bool) func(t *testing.T, tab *Table) Key {
		return func(t *testing.T, tab *Table) Key {
			mustInsert(t, tab, p, Meta{})
			if replied {
				q := reversed(p)
				if isICMP(p.Key.Proto) {
					q.ICMPType = icmpEchoReply
				}
				if r := tab.Track(q); r.Verdict != Valid || r.Dir != Reply || r.State != StateReplied {
					t.Fatalf("reply: %+v", r)
				}
			}
			return p.Key
		}
	}
	cases := []struct {
		name    string
		setup   func(t *testing.T, tab *Table) Key
		state   State
		timeout time.Duration
	}{
		{"tcp SYN_SENT", tcpTo(func(f *flow) {}), StateSynSent, d.TCPSynSent},
		{"tcp SYN_SENT2", tcpTo(func(f *flow) { f.must(Reply, tcpSyn, 0, StateSynSent2) }), StateSynSent2, d.TCPSynSent},
		{"tcp SYN_RECV", tcpTo(func(f *flow) { f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv) }), StateSynRecv, d.TCPSynRecv},
		{"tcp ESTABLISHED", tcpTo(func(f *flow) {
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
		}), StateEstablished, d.TCPEstablished},
		{"tcp FIN_WAIT", tcpTo(func(f *flow) {
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
			f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
		}), StateFinWait, d.TCPFinWait},
		{"tcp CLOSE_WAIT", tcpTo(func(f *flow) {
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
			f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
			f.must(Reply, tcpAck, 0, StateCloseWait)
		}), StateCloseWait, d.TCPCloseWait},
		{"tcp LAST_ACK", tcpTo(func(f *flow) {
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
			f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
			f.must(Reply, tcpFin|tcpAck, 0, StateLastAck)
		}), StateLastAck, d.TCPLastAck},
		{"tcp TIME_WAIT", tcpTo(func(f *flow) {
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
			f.must(Original, tcpFin|tcpAck, 0, StateFinWait)
			f.must(Reply, tcpFin|tcpAck, 0, StateLastAck)
			f.must(Original, tcpAck, 0, StateTimeWait)
		}), StateTimeWait, d.TCPTimeWait},
		{"tcp CLOSE", tcpTo(func(f *flow) {
			f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
			f.must(Original, tcpAck, 0, StateEstablished)
			f.must(Reply, tcpRst, 0, StateClose)
		}), StateClose, d.TCPClose},
		{"udp unreplied", other(udpPacket(40000, 53), false), StateUnreplied, d.UDPUnreplied},
		{"udp replied", other(udpPacket(40000, 53), true), StateReplied, d.UDPReplied},
		{"icmp unreplied", other(icmpPacket(protoICMP, icmpEchoRequest, cliAddr, srvAddr, 7), false), StateUnreplied, d.ICMP},
		{"icmp replied", other(icmpPacket(protoICMP, icmpEchoRequest, cliAddr, srvAddr, 7), true), StateReplied, d.ICMP},
		{"icmpv6", other(icmpPacket(protoICMPv6, icmpv6EchoRequest, cliAddr, srvAddr, 7), false), StateUnreplied, d.ICMP},
		{"other unreplied", other(gre, false), StateUnreplied, d.Other},
		{"other replied", other(gre, true), StateReplied, d.Other},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tab, clk := newTestTable(Config{})
			k := c.setup(t, tab)
			if r := tab.Related(k); r.Verdict != Valid || r.State != c.state {
				t.Fatalf("state %v %v, want %v", r.Verdict, r.State, c.state)
			}
			if got := tab.List(nil, 0)[0].Timeout; got != c.timeout {
				t.Fatalf("timeout %v, want %v", got, c.timeout)
			}
			clk.Advance(c.timeout - 1)
			if r := tab.Related(k); r.Verdict != Valid {
				t.Fatalf("gone 1ns before its timeout")
			}
			clk.Advance(1)
			if r := tab.Related(k); r.Verdict != Miss {
				t.Fatalf("still there at its timeout: %v", r.State)
			}
			if n := tab.List(nil, 0); len(n) != 0 {
				t.Fatalf("List shows an expired connection")
			}
		})
	}
}

func TestConfiguredTimeouts(t *testing.T) {
	tab, clk := newTestTable(Config{Timeouts: Timeouts{UDPUnreplied: 5 * time.Second, TCPSynSent: time.Second}})
	mustInsert(t, tab, udpPacket(1, 2), Meta{})
	newFlow(t, tab, 40000).open(Meta{})
	clk.Advance(time.Second)
	if got := len(tab.List(nil, 0)); got != 1 {
		t.Fatalf("after 1s: %d connections, want the UDP one", got)
	}
	clk.Advance(4 * time.Second)
	if got := len(tab.List(nil, 0)); got != 0 {
		t.Fatalf("after 5s: %d connections", got)
	}
	// The other timeouts keep their defaults.
	mustInsert(t, tab, icmpPacket(protoICMP, icmpEchoRequest, cliAddr, srvAddr, 1), Meta{})
	if got := tab.List(nil, 0)[0].Timeout; got != 30*time.Second {
		t.Fatalf("ICMP timeout %v", got)
	}
}

func TestUDP(t *testing.T) {
	tab, clk := newTestTable(Config{})
	p := udpPacket(40000, 53)
	// Tailscale's TestUDPState: a "reply" to a port that never sent is not
	// part of anything; for the caller it is a new flow.
	if r := tab.Track(reversed(p)); r.Verdict != Miss {
		t.Fatalf("unsolicited reply: %v", r.Verdict)
	}
	r := mustInsert(t, tab, p, Meta{A: 1, B: 2})
	if r.State != StateUnreplied || r.Dir != Original {
		t.Fatalf("insert: %+v", r)
	}
	if r := tab.Track(p); r.Verdict != Valid || r.State != StateUnreplied {
		t.Fatalf("second datagram: %+v", r)
	}
	r = tab.Track(reversed(p))
	if r.Verdict != Valid || r.Dir != Reply || r.State != StateReplied || r.Meta.B != 2 {
		t.Fatalf("reply: %+v", r)
	}
	// Another port of the same peer is another flow.
	if r := tab.Track(udpPacket(40001, 53)); r.Verdict != Miss {
		t.Fatalf("other port: %v", r.Verdict)
	}
	clk.Advance(119 * time.Second)
	if r := tab.Track(p); r.Verdict != Valid {
		t.Fatalf("replied flow expired early")
	}
	clk.Advance(120 * time.Second)
	if r := tab.Track(reversed(p)); r.Verdict != Miss {
		t.Fatalf("replied flow outlived its timeout")
	}
}

func TestUDPUnrepliedExpiry(t *testing.T) {
	tab, clk := newTestTable(Config{})
	p := udpPacket(40000, 53)
	mustInsert(t, tab, p, Meta{})
	clk.Advance(20 * time.Second)
	tab.Track(p) // refreshes
	clk.Advance(29 * time.Second)
	if r := tab.Track(reversed(p)); r.Verdict != Valid {
		t.Fatalf("refreshed flow expired")
	}
	// Now replied: a reply 30 s later still matches.
	clk.Advance(30 * time.Second)
	if r := tab.Track(p); r.Verdict != Valid {
		t.Fatalf("replied flow expired at 30s")
	}
	q := udpPacket(40001, 53)
	mustInsert(t, tab, q, Meta{})
	clk.Advance(30 * time.Second)
	if r := tab.Track(reversed(q)); r.Verdict != Miss {
		t.Fatalf("a reply after the unreplied timeout matched: %v", r.Verdict)
	}
}

func TestICMPEcho(t *testing.T) {
	for _, c := range []struct {
		proto      uint8
		req, reply uint8
		a, b       netip.Addr
	}{
		{protoICMP, icmpEchoRequest, icmpEchoReply, cliAddr, srvAddr},
		// The requester has the larger address: direction comes from the type.
		{protoICMP, icmpEchoRequest, icmpEchoReply, srvAddr, cliAddr},
		{protoICMPv6, icmpv6EchoRequest, icmpv6EchoReply, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8::1")},
	} {
		tab, _ := newTestTable(Config{})
		req := icmpPacket(c.proto, c.req, c.a, c.b, 7)
		rep := icmpPacket(c.proto, c.reply, c.b, c.a, 7)
		if r := tab.Track(rep); r.Verdict != Miss {
			t.Fatalf("reply without request: %v", r.Verdict)
		}
		if r, ok := tab.Insert(rep, Meta{}); !ok || r.Verdict != Invalid {
			t.Fatalf("a reply must not start a connection: %v", r.Verdict)
		}
		mustInsert(t, tab, req, Meta{})
		if r := tab.Track(rep); r.Verdict != Valid || r.Dir != Reply || r.State != StateReplied {
			t.Fatalf("reply: %+v", r)
		}
		if r := tab.Track(req); r.Verdict != Valid || r.Dir != Original {
			t.Fatalf("next request: %+v", r)
		}
		// An echo request from the answering side, even with the same
		// identifier, is its own flow: it must pass policy.
		if r := tab.Track(icmpPacket(c.proto, c.req, c.b, c.a, 7)); r.Verdict != Miss {
			t.Fatalf("request from the responder: %v", r.Verdict)
		}
		if r := tab.Track(icmpPacket(c.proto, c.reply, c.b, c.a, 8)); r.Verdict != Miss {
			t.Fatalf("reply with another identifier: %v", r.Verdict)
		}
		// Unknown ICMP types are not tracked.
		if r := tab.Track(icmpPacket(c.proto, 13, c.a, c.b, 7)); r.Verdict != Miss {
			t.Fatalf("timestamp: %v", r.Verdict)
		}
	}
}

func TestOtherProtocol(t *testing.T) {
	tab, _ := newTestTable(Config{})
	p := &Packet{Key: KeyFrom(50, cliAddr, srvAddr, 0, 0, 0), Len: 1400}
	mustInsert(t, tab, p, Meta{})
	if r := tab.Track(reversed(p)); r.Verdict != Valid || r.Dir != Reply || r.State != StateReplied {
		t.Fatalf("reply: %+v", r)
	}
	if r := tab.Track(&Packet{Key: KeyFrom(51, cliAddr, srvAddr, 0, 0, 0)}); r.Verdict != Miss {
		t.Fatalf("another protocol between the same hosts matched")
	}
	if r := tab.Track(&Packet{Key: KeyFrom(50, cliAddr, srvAddr, 0, 0, 1)}); r.Verdict != Miss {
		t.Fatalf("another zone matched")
	}
	if st := tab.Stats(); st.Other != 1 || st.States[StateReplied] != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestRelated(t *testing.T) {
	tab, clk := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	est := f.establish()
	ping := icmpPacket(protoICMP, icmpEchoRequest, cliAddr, srvAddr, 7)
	mustInsert(t, tab, ping, Meta{})
	cases := []struct {
		name  string
		inner Key
		want  Verdict
		dir   Dir
	}{
		// A router tells the client its segment could not be delivered:
		// the error quotes the client's segment.
		{"tcp, quoting the client", f.key, Valid, Original},
		{"tcp, quoting the server", f.key.Reverse(), Valid, Reply},
		{"tcp, another port", KeyFrom(protoTCP, cliAddr, srvAddr, 40001, 80, 0), Miss, 0},
		{"udp with the tcp tuple", KeyFrom(protoUDP, cliAddr, srvAddr, 40000, 80, 0), Miss, 0},
		{"echo request", ping.Key, Valid, Original},
		{"echo reply", ping.Key.Reverse(), Valid, Reply},
		{"echo, other identifier", KeyFrom(protoICMP, cliAddr, srvAddr, 8, 0, 0), Miss, 0},
	}
	for _, c := range cases {
		r := tab.Related(c.inner)
		if r.Verdict != c.want || (c.want == Valid && r.Dir != c.dir) {
			t.Errorf("%s: %v %v, want %v %v", c.name, r.Verdict, r.Dir, c.want, c.dir)
		}
	}
	if r := tab.Related(f.key); r.Conn != est.Conn || r.State != StateEstablished {
		t.Fatalf("related result: %+v", r)
	}
	// Related refreshes nothing.
	clk.Advance(30 * time.Second)
	tab.Related(ping.Key)
	if r := tab.Related(ping.Key); r.Verdict != Miss {
		t.Fatalf("Related kept the echo alive")
	}
}

func TestBothDirectionsOneEntry(t *testing.T) {
	tab, _ := newTestTable(Config{Shards: 4})
	f := newFlow(t, tab, 40000)
	a := f.open(Meta{})
	b := f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	if a.Conn != b.Conn {
		t.Fatalf("directions found different entries: %+v %+v", a.Conn, b.Conn)
	}
	slots := 0
	for i := range tab.shards {
		for _, s := range tab.shards[i].index {
			if s != 0 {
				slots++
			}
		}
	}
	if slots != 1 || tab.Len() != 1 {
		t.Fatalf("%d index slots, %d entries: want one of each", slots, tab.Len())
	}
}

func TestMetaAndStaleHandles(t *testing.T) {
	tab, clk := newTestTable(Config{Shards: 1})
	p := udpPacket(1, 2)
	r := mustInsert(t, tab, p, Meta{A: 1, B: 2, PolicyGen: 3, Allowed: true})
	if m, ok := tab.Meta(r.Conn); !ok || m != (Meta{A: 1, B: 2, PolicyGen: 3, Allowed: true}) {
		t.Fatalf("Meta: %+v %v", m, ok)
	}
	want := Meta{A: 1, B: 2, PolicyGen: 4}
	if !tab.SetMeta(r.Conn, want) {
		t.Fatal("SetMeta on a live handle failed")
	}
	if got := tab.Track(p).Meta; got != want {
		t.Fatalf("Track after SetMeta: %+v", got)
	}
	// The connection expires and its entry goes to another connection.
	clk.Advance(31 * time.Second)
	if tab.Track(p).Verdict != Miss {
		t.Fatal("expired entry hit")
	}
	q := udpPacket(3, 4)
	r2 := mustInsert(t, tab, q, Meta{A: 7})
	if r2.Conn.idx != r.Conn.idx {
		t.Fatalf("test premise: the slab entry was not reused (%d, %d)", r.Conn.idx, r2.Conn.idx)
	}
	if tab.SetMeta(r.Conn, Meta{A: 666}) {
		t.Fatal("SetMeta through a stale handle succeeded")
	}
	if _, ok := tab.Meta(r.Conn); ok {
		t.Fatal("Meta through a stale handle succeeded")
	}
	if m, _ := tab.Meta(r2.Conn); m.A != 7 {
		t.Fatalf("the new connection's meta was overwritten: %+v", m)
	}
	for _, h := range []Handle{{}, {shard: 99}, {idx: 1 << 30, gen: 1}} {
		if _, ok := tab.Meta(h); ok || tab.SetMeta(h, Meta{}) {
			t.Fatalf("bogus handle %+v accepted", h)
		}
	}
}

func TestEvictionWhenFull(t *testing.T) {
	t.Run("established are never evicted", func(t *testing.T) {
		tab, _ := newTestTable(Config{Max: 8, Shards: 1})
		var conns []Result
		for i := range 8 {
			conns = append(conns, newFlow(t, tab, uint16(1000+i)).establish())
		}
		if _, ok := tab.Insert(udpPacket(1, 2), Meta{}); ok {
			t.Fatal("inserted into a table full of established connections")
		}
		f := newFlow(t, tab, 2000)
		if _, ok := tab.Insert(f.seg(Original, tcpSyn, 0), Meta{}); ok {
			t.Fatal("inserted a SYN into a full table")
		}
		st := tab.Stats()
		if st.Refused != 2 || st.Evicted != 0 || st.Entries != 8 {
			t.Fatalf("stats: %+v", st)
		}
		for _, c := range conns {
			if _, ok := tab.Meta(c.Conn); !ok {
				t.Fatal("an established connection was dropped")
			}
		}
	})
	t.Run("oldest unreplied goes first", func(t *testing.T) {
		tab, clk := newTestTable(Config{Max: 8, Shards: 1})
		var est []Result
		for i := range 4 {
			est = append(est, newFlow(t, tab, uint16(1000+i)).establish())
		}
		replied := udpPacket(7, 7)
		mustInsert(t, tab, replied, Meta{})
		tab.Track(reversed(replied))
		var udp []Result
		for i := range 3 {
			clk.Advance(time.Second)
			udp = append(udp, mustInsert(t, tab, udpPacket(uint16(10+i), 53), Meta{}))
		}
		// Refresh the first so that the second is now the least recently active.
		clk.Advance(time.Second)
		tab.Track(udpPacket(10, 53))
		r, ok := tab.Insert(udpPacket(99, 53), Meta{})
		if !ok || r.Verdict != Valid {
			t.Fatal("no room made")
		}
		if _, ok := tab.Meta(udp[1].Conn); ok {
			t.Fatal("the least recently active unreplied flow survived")
		}
		for _, c := range append(est, udp[0], udp[2]) {
			if _, ok := tab.Meta(c.Conn); !ok {
				t.Fatalf("the wrong connection was evicted")
			}
		}
		if st := tab.Stats(); st.Evicted != 1 || st.Entries != 8 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("expired entries make room first", func(t *testing.T) {
		tab, clk := newTestTable(Config{Max: 2, Shards: 1})
		mustInsert(t, tab, udpPacket(1, 1), Meta{})
		newFlow(t, tab, 1000).establish()
		clk.Advance(time.Minute)
		mustInsert(t, tab, udpPacket(2, 2), Meta{})
		if st := tab.Stats(); st.Expired != 1 || st.Evicted != 0 {
			t.Fatalf("stats: %+v", st)
		}
	})
	t.Run("SYN flood", func(t *testing.T) {
		tab, _ := newTestTable(Config{Max: 256, Shards: 4})
		var est []Result
		for i := range 100 {
			est = append(est, newFlow(t, tab, uint16(1000+i)).establish())
		}
		inserted := 0
		for i := range 5000 {
			p := &Packet{Key: KeyFrom(protoTCP, netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), srvAddr, 1234, 80, 0), TCPFlags: tcpSyn, Seq: uint32(i), WScale: -1}
			if _, ok := tab.Insert(p, Meta{}); ok {
				inserted++
			}
		}
		for _, c := range est {
			if _, ok := tab.Meta(c.Conn); !ok {
				t.Fatal("an established connection was evicted by the flood")
			}
		}
		st := tab.Stats()
		if st.Entries > 256 || uint64(inserted) != st.Inserted-100 || st.Refused != uint64(5000-inserted) || inserted < 4000 {
			t.Fatalf("inserted %d of 5000: %+v", inserted, st)
		}
		// A legitimate new connection still gets in.
		newFlow(t, tab, 3000).establish()
	})
}

func TestSweep(t *testing.T) {
	tab, clk := newTestTable(Config{Shards: 4})
	for i := range 100 {
		mustInsert(t, tab, udpPacket(uint16(i), 53), Meta{})
	}
	clk.Advance(10 * time.Second)
	keep := udpPacket(1000, 53)
	mustInsert(t, tab, keep, Meta{})
	if n := tab.Sweep(1000); n != 0 {
		t.Fatalf("swept %d live entries", n)
	}
	clk.Advance(20 * time.Second)
	if n := tab.Sweep(10); n != 10 || tab.Len() != 91 {
		t.Fatalf("Sweep(10) freed %d, %d left", n, tab.Len())
	}
	if n := tab.Sweep(1000); n != 90 || tab.Len() != 1 {
		t.Fatalf("Sweep(1000) freed %d, %d left", n, tab.Len())
	}
	if tab.Track(keep).Verdict != Valid {
		t.Fatal("the live entry was swept")
	}
	if st := tab.Stats(); st.Expired != 100 || st.States[StateUnreplied] != 1 || st.UDP != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestSlabReuse(t *testing.T) {
	tab, clk := newTestTable(Config{Shards: 1})
	for i := range 100 {
		mustInsert(t, tab, udpPacket(uint16(i), 53), Meta{})
	}
	clk.Advance(time.Minute)
	tab.Sweep(1000)
	for i := range 100 {
		mustInsert(t, tab, udpPacket(uint16(2000+i), 53), Meta{})
	}
	if used := tab.shards[0].used; used != 100 {
		t.Fatalf("slab grew to %d entries instead of reusing freed ones", used)
	}
}

func TestRun(t *testing.T) {
	tab, clk := newTestTable(Config{})
	mustInsert(t, tab, udpPacket(1, 2), Meta{})
	clk.Advance(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		tab.Run(ctx, time.Millisecond)
		close(done)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for tab.Len() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if tab.Len() != 0 {
		t.Fatal("Run did not sweep")
	}
}

func TestFlush(t *testing.T) {
	tab, _ := newTestTable(Config{Shards: 2})
	var hs []Handle
	for i := range 50 {
		hs = append(hs, mustInsert(t, tab, udpPacket(uint16(i), 53), Meta{}).Conn)
	}
	f := newFlow(t, tab, 40000)
	f.establish()
	tab.Flush()
	if st := tab.Stats(); st.Entries != 0 || tab.Len() != 0 || st.States != [NumStates]int{} || st.UDP+st.TCP != 0 {
		t.Fatalf("after Flush: %+v", st)
	}
	for _, h := range hs {
		if _, ok := tab.Meta(h); ok {
			t.Fatal("a handle survived Flush")
		}
	}
	if f.send(Original, tcpAck, 0).Verdict != Miss {
		t.Fatal("a connection survived Flush")
	}
	mustInsert(t, tab, udpPacket(1, 53), Meta{})
	if tab.Len() != 1 {
		t.Fatal("insert after Flush")
	}
}

func TestList(t *testing.T) {
	tab, clk := newTestTable(Config{})
	for i := range 10 {
		mustInsert(t, tab, udpPacket(uint16(i), 53), Meta{A: int32(i)})
	}
	// A connection whose originator sorts second in the stored key.
	rev := reversed(udpPacket(5000, 53))
	mustInsert(t, tab, rev, Meta{A: 100})
	if got := len(tab.List(nil, 0)); got != 11 {
		t.Fatalf("List all: %d", got)
	}
	if got := len(tab.List(nil, 4)); got != 4 {
		t.Fatalf("List max 4: %d", got)
	}
	odd := tab.List(func(c ConnInfo) bool { return c.Meta.A%2 == 1 }, 0)
	if len(odd) != 5 {
		t.Fatalf("filtered: %d", len(odd))
	}
	one := tab.List(func(c ConnInfo) bool { return c.Meta.A == 100 }, 0)
	if len(one) != 1 || one[0].Key != rev.Key || one[0].Protocol != "udp" || one[0].Packets != [2]uint64{1, 0} || one[0].Bytes[Original] != 100 {
		t.Fatalf("ConnInfo: %+v", one)
	}
	clk.Advance(10 * time.Second)
	if got := tab.List(nil, 1)[0].Timeout; got != 20*time.Second {
		t.Fatalf("timeout left: %v", got)
	}
}

// TestIndexRandom checks the open-addressing index (growth, backward-shift
// deletion) against a map, through inserts and removals in random order.
func TestIndexRandom(t *testing.T) {
	tab, _ := newTestTable(Config{Shards: 1})
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[Key]bool{}
	key := func(i int) Key { return KeyFrom(protoUDP, cliAddr, srvAddr, uint16(i), 53, 0) }
	remove := func(k Key) {
		c := k
		canonicalize(&c)
		s := &tab.shards[0]
		pos, idx, e := s.find(&c, uint32(tab.seed.hash(&c)))
		if e == nil {
			t.Fatalf("%v missing", k)
		}
		tab.release(s, pos, idx, e)
	}
	for op := range 50000 {
		i := rng.IntN(3000)
		k := key(i)
		if model[k] {
			remove(k)
			delete(model, k)
		} else {
			mustInsert(t, tab, &Packet{Key: k}, Meta{})
			model[k] = true
		}
		if op%5000 == 0 || op == 49999 {
			for j := range 3000 {
				hit := tab.Related(key(j)).Verdict == Valid
				if hit != model[key(j)] {
					t.Fatalf("op %d: key %d found=%v, model %v", op, j, hit, model[key(j)])
				}
			}
			if tab.Len() != len(model) || tab.shards[0].live != len(model) {
				t.Fatalf("op %d: %d entries, model %d", op, tab.Len(), len(model))
			}
		}
	}
}

func TestConcurrent(t *testing.T) {
	tab, clk := newTestTable(Config{Max: 2000, Shards: 8})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			for range 5000 {
				p := udpPacket(uint16(rng.IntN(3000)), 53)
				if rng.IntN(2) == 0 {
					p = reversed(p)
				}
				r := tab.Track(p)
				switch {
				case r.Verdict == Miss:
					tab.Insert(p, Meta{A: int32(g)})
				case rng.IntN(4) == 0:
					tab.SetMeta(r.Conn, Meta{PolicyGen: 1})
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			clk.Advance(time.Second)
			tab.Sweep(100)
			tab.Stats()
		}
	}()
	wg.Wait()
	st := tab.Stats()
	if st.Entries != tab.Len() || st.Entries > 2000 || st.UDP != st.Entries {
		t.Fatalf("inconsistent: Len %d, %+v", tab.Len(), st)
	}
	checkOwners(t, tab)
}

func TestTrackAllocs(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.establish()
	hit := f.seg(Original, tcpAck, 0)
	miss := udpPacket(1, 2)
	reply := reversed(hit)
	reply.Seq, reply.Ack = f.seq[Reply], f.seq[Original]
	for name, p := range map[string]*Packet{"hit": hit, "reply": reply, "miss": miss} {
		want := Valid
		if p == miss {
			want = Miss
		}
		if n := testing.AllocsPerRun(1000, func() {
			if tab.Track(p).Verdict != want {
				t.Fatal("unexpected verdict")
			}
		}); n != 0 {
			t.Errorf("Track %s: %v allocations", name, n)
		}
	}
}

func TestNewConfig(t *testing.T) {
	for _, c := range []struct{ shards, want int }{{0, DefaultShards}, {1, 1}, {3, 4}, {64, 64}, {100, 128}} {
		if got := len(New(Config{Shards: c.shards}, nil).shards); got != c.want {
			t.Errorf("Shards %d: %d shards, want %d", c.shards, got, c.want)
		}
	}
	if tab := New(Config{}, nil); tab.max != DefaultMax || tab.timeouts[classTCP][StateEstablished] != int64(432000*time.Second) {
		t.Fatalf("defaults: max %d", tab.max)
	}
}

func TestClocks(t *testing.T) {
	sys := SystemClock()
	a := sys.Now()
	if b := sys.Now(); b < a {
		t.Fatal("SystemClock went backwards")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := NewCoarseClock(ctx, time.Millisecond)
	t0 := c.Now()
	deadline := time.Now().Add(5 * time.Second)
	for c.Now() == t0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if c.Now() <= t0 {
		t.Fatal("CoarseClock does not advance")
	}
	var m ManualClock
	m.Advance(time.Second)
	if m.Now() != int64(time.Second) {
		t.Fatalf("ManualClock: %d", m.Now())
	}
}

// TestScan: Scan shows every live connection once, in batches no larger
// than scanBatch, skips expired and freed ones, stops when asked, and
// changes nothing.
func TestScan(t *testing.T) {
	tab, clk := newTestTable(Config{Shards: 2})
	const n = 3*scanBatch + 17 // more than a batch in each shard
	for i := range n {
		mustInsert(t, tab, udpPacket(uint16(i), 53), Meta{A: int32(i)})
	}
	clk.Advance(time.Second)
	mustInsert(t, tab, udpPacket(60000, 53), Meta{A: -1}) // expires a second after the others
	before := tab.Stats()
	seen := map[int32]int{}
	batches := 0
	tab.Scan(func(b []ConnInfo) bool {
		batches++
		if len(b) == 0 || len(b) > scanBatch {
			t.Fatalf("batch of %d", len(b))
		}
		for _, c := range b {
			seen[c.Meta.A]++
		}
		return true
	})
	if len(seen) != n+1 || batches < 4 {
		t.Fatalf("%d connections in %d batches, want %d in at least 4", len(seen), batches, n+1)
	}
	for a, k := range seen {
		if k != 1 {
			t.Fatalf("connection %d shown %d times", a, k)
		}
	}
	if after := tab.Stats(); after != before {
		t.Fatalf("Scan changed the table's counters: %+v, was %+v", after, before)
	}
	clk.Advance(29*time.Second + 500*time.Millisecond) // the first n expire (30 s), not the last
	var live []int32
	tab.Scan(func(b []ConnInfo) bool {
		for _, c := range b {
			live = append(live, c.Meta.A)
		}
		return true
	})
	if len(live) != 1 || live[0] != -1 {
		t.Fatalf("after expiry Scan shows %v, want [-1]", live)
	}
	calls := 0
	tab.Scan(func([]ConnInfo) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("visit called %d times after returning false", calls)
	}
}
