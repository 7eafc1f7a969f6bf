package conntrack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// mixed is a table with a connection of each kind.
type mixed struct {
	tab  *Table
	clk  *ManualClock
	f    *flow // TCP, established, window scaling on both sides
	syn  *Packet
	udp  *Packet // replied
	udp6 *Packet // unreplied, in zone 9
	ping *Packet // answered
	gre  *Packet
}

func (m *mixed) keys() []Key {
	return []Key{m.f.key, m.syn.Key, m.udp.Key, m.udp6.Key, m.ping.Key, m.gre.Key}
}

func newMixed(t testing.TB) *mixed {
	tab, clk := newTestTable(Config{Shards: 4})
	m := &mixed{tab: tab, clk: clk}
	// TCP, established, window scaling on both sides, data both ways.
	f := newFlow(t, tab, 40000)
	f.ws = [2]int8{7, 3}
	f.open(Meta{A: 1, B: 2, PolicyGen: 10, Allowed: true})
	f.must(Reply, tcpSyn|tcpAck, 0, StateSynRecv)
	f.must(Original, tcpAck, 0, StateEstablished)
	f.must(Original, tcpAck, 1000, StateEstablished)
	f.must(Reply, tcpAck, 3000, StateEstablished)
	m.f = f
	// TCP, SYN sent, from the endpoint that sorts second.
	m.syn = &Packet{Key: KeyFrom(protoTCP, srvAddr, cliAddr, 443, 50000, 0), TCPFlags: tcpSyn, Seq: 77, Window: 1000, WScale: -1, Len: 60}
	mustInsert(t, tab, m.syn, Meta{A: 3, B: 4, PolicyGen: 11})
	m.udp = udpPacket(5353, 53)
	mustInsert(t, tab, m.udp, Meta{A: 5, B: 6, PolicyGen: 12, Allowed: true})
	if r := tab.Track(reversed(m.udp)); r.State != StateReplied {
		t.Fatalf("udp reply: %v", r.State)
	}
	m.udp6 = &Packet{Key: KeyFrom(protoUDP, netip.MustParseAddr("fd00::2"), netip.MustParseAddr("fd00::1"), 7000, 7001, 9), Len: 200}
	mustInsert(t, tab, m.udp6, Meta{A: -1, B: 1 << 30, PolicyGen: 1 << 40})
	m.ping = icmpPacket(protoICMP, icmpEchoRequest, cliAddr, srvAddr, 33)
	mustInsert(t, tab, m.ping, Meta{A: 7, B: 8, PolicyGen: 13, Allowed: true})
	if r := tab.Track(icmpPacket(protoICMP, icmpEchoReply, srvAddr, cliAddr, 33)); r.Verdict != Valid || r.Dir != Reply {
		t.Fatalf("echo reply: %v %v", r.Verdict, r.Dir)
	}
	m.gre = &Packet{Key: KeyFrom(47, srvAddr, cliAddr, 0, 0, 0), Len: 300}
	mustInsert(t, tab, m.gre, Meta{A: 9, B: 10})
	return m
}

// savedFile is the file of newMixed's table: 6 entries.
func savedFile(t testing.TB) []byte {
	return saveAll(t, newMixed(t).tab)
}

// entryOf returns a copy of the entry of the connection whose originator
// sent key k.
func entryOf(tab *Table, k Key) (entry, bool) {
	if !isICMP(k.Proto) {
		canonicalize(&k)
	}
	h := tab.seed.hash(&k)
	s := &tab.shards[h>>tab.shift]
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _, e := s.find(&k, uint32(h))
	if e == nil || e.expires <= tab.clock.Now() {
		return entry{}, false
	}
	return *e, true
}

// saveAll saves tab and fails the test on an error.
func saveAll(t testing.TB, tab *Table) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := tab.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSaveRestoreRoundTrip(t *testing.T) {
	m := newMixed(t)
	tab, clk, f := m.tab, m.clk, m.f
	syn, u, u6, gre := m.syn, m.udp, m.udp6, m.gre
	expiring := udpPacket(1, 2)
	mustInsert(t, tab, expiring, Meta{})
	keys := m.keys()

	clk.Advance(25 * time.Second)
	tab.Track(u6)                // refresh: 30 s again
	tab.Track(m.ping)            // ICMP: 30 s
	clk.Advance(5 * time.Second) // the other unreplied UDP flow expires
	if tab.Related(expiring.Key).Verdict != Miss {
		t.Fatal("not expired")
	}
	if tab.Sweep(100) != 1 {
		t.Fatal("sweep")
	}

	file := saveAll(t, tab)
	if want := headerSize + 6*recordSize + crcSize; len(file) != want {
		t.Fatalf("file of %d bytes, want %d (6 entries)", len(file), want)
	}

	// The new process's clock has another origin.
	clk2 := &ManualClock{}
	clk2.Advance(1000 * time.Hour)
	tab2 := New(Config{Shards: 16}, clk2)
	n, err := tab2.Restore(bytes.NewReader(file), nil)
	if err != nil || n != 6 || tab2.Len() != 6 {
		t.Fatalf("Restore: %d, %v, Len %d", n, err, tab2.Len())
	}
	for _, k := range keys {
		old, ok1 := entryOf(tab, k)
		got, ok2 := entryOf(tab2, k)
		if !ok1 || !ok2 {
			t.Fatalf("%v: in old %v, in new %v", k, ok1, ok2)
		}
		if old.expires-clk.Now() != got.expires-clk2.Now() {
			t.Errorf("%v: %v left, want %v", k, time.Duration(got.expires-clk2.Now()), time.Duration(old.expires-clk.Now()))
		}
		old.expires, got.expires, old.gen, got.gen = 0, 0, 0, 0
		if old != got {
			t.Errorf("%v:\n got %+v\nwant %+v", k, got, old)
		}
	}
	if _, ok := entryOf(tab2, expiring.Key); ok {
		t.Error("expired connection restored")
	}
	st, st2 := tab.Stats(), tab2.Stats()
	if st2.States != st.States || st2.TCP != 2 || st2.UDP != 2 || st2.ICMP != 1 || st2.Other != 1 || st2.Entries != 6 {
		t.Errorf("stats: %+v, old %+v", st2, st)
	}
	// List agrees too (the view of the control API).
	l1, l2 := tab.List(nil, 0), tab2.List(nil, 0)
	if len(l2) != len(l1) {
		t.Fatalf("List: %d, want %d", len(l2), len(l1))
	}

	// Track carries on in the new table: the established connection
	// accepts in-window data in both directions, with the windows scaled
	// as negotiated (a segment half a megabyte ahead is inside the window
	// the client advertised, 65535<<7, only if the scale survived)...
	f.tab = tab2
	f.must(Original, tcpAck|0x08, 500, StateEstablished)
	f.seq[Reply] += 1 << 19
	f.must(Reply, tcpAck, 100, StateEstablished)
	// ... and refuses an RST that is not at the expected sequence number.
	rst := f.seg(Reply, tcpRst|tcpAck, 0)
	rst.Seq += 100000
	if r := tab2.Track(rst); r.Verdict != Invalid || r.State != StateEstablished {
		t.Errorf("out-of-window RST: %v %v", r.Verdict, r.State)
	}
	rst.Seq -= 1
	if r := tab2.Track(rst); r.Verdict != Invalid {
		t.Errorf("in-window inexact RST: %v", r.Verdict)
	}
	if r := f.probe(); r.State != StateEstablished || r.Meta != (Meta{A: 1, B: 2, PolicyGen: 10, Allowed: true}) {
		t.Errorf("after RSTs: %v %+v", r.State, r.Meta)
	}
	// The SYN_SENT connection takes its SYN/ACK from the side that sorts
	// first.
	synack := &Packet{Key: syn.Key.Reverse(), TCPFlags: tcpSyn | tcpAck, Seq: 9000, Ack: 78, Window: 1000, WScale: -1}
	if r := tab2.Track(synack); r.Verdict != Valid || r.Dir != Reply || r.State != StateSynRecv {
		t.Errorf("SYN/ACK: %v %v %v", r.Verdict, r.Dir, r.State)
	}
	// UDP stays replied, the unreplied one takes its reply, ICMP and GRE
	// keep their directions.
	if r := tab2.Track(u); r.Verdict != Valid || r.Dir != Original || r.State != StateReplied {
		t.Errorf("udp: %v %v %v", r.Verdict, r.Dir, r.State)
	}
	if r := tab2.Track(reversed(u6)); r.Verdict != Valid || r.Dir != Reply || r.State != StateReplied {
		t.Errorf("udp6 reply: %v %v %v", r.Verdict, r.Dir, r.State)
	}
	if r := tab2.Track(icmpPacket(protoICMP, icmpEchoReply, srvAddr, cliAddr, 33)); r.Verdict != Valid || r.Dir != Reply || r.Meta.A != 7 {
		t.Errorf("echo reply: %v %v", r.Verdict, r.Dir)
	}
	if r := tab2.Track(icmpPacket(protoICMP, icmpEchoRequest, srvAddr, cliAddr, 33)); r.Verdict != Miss {
		t.Errorf("echo request from the responder: %v", r.Verdict)
	}
	if r := tab2.Track(reversed(gre)); r.Verdict != Valid || r.Dir != Reply {
		t.Errorf("gre reply: %v %v", r.Verdict, r.Dir)
	}
}

func TestRestoreTimeoutContinues(t *testing.T) {
	tab, clk := newTestTable(Config{})
	u := udpPacket(1000, 53)
	mustInsert(t, tab, u, Meta{})
	clk.Advance(20 * time.Second) // unreplied UDP: 30 s, so 10 s left
	file := saveAll(t, tab)

	clk2 := &ManualClock{}
	clk2.Advance(12345 * time.Second)
	tab2 := New(Config{}, clk2)
	if n, err := tab2.Restore(bytes.NewReader(file), nil); n != 1 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	if l := tab2.List(nil, 0); len(l) != 1 || l[0].Timeout != 10*time.Second {
		t.Fatalf("List: %+v", l)
	}
	clk2.Advance(9 * time.Second)
	if r := tab2.Related(u.Key); r.Verdict != Valid {
		t.Fatalf("after 9 s: %v", r.Verdict)
	}
	clk2.Advance(2 * time.Second)
	if r := tab2.Track(u); r.Verdict != Miss {
		t.Fatalf("after 11 s: %v", r.Verdict)
	}

	// A table configured with a shorter timeout caps what was left.
	tab3, clk3 := newTestTable(Config{Timeouts: Timeouts{UDPUnreplied: 5 * time.Second}})
	if n, err := tab3.Restore(bytes.NewReader(file), nil); n != 1 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	if l := tab3.List(nil, 0); len(l) != 1 || l[0].Timeout != 5*time.Second {
		t.Fatalf("capped: %+v", l)
	}
	clk3.Advance(5 * time.Second)
	if r := tab3.Track(u); r.Verdict != Miss {
		t.Fatalf("after 5 s: %v", r.Verdict)
	}
}

func TestRestoreRemap(t *testing.T) {
	tab, _ := newTestTable(Config{})
	for i := range 10 {
		mustInsert(t, tab, udpPacket(uint16(1000+i), 53), Meta{A: int32(i), B: 100, PolicyGen: 7, Allowed: true})
	}
	file := saveAll(t, tab)
	tab2, _ := newTestTable(Config{})
	calls := 0
	n, err := tab2.Restore(bytes.NewReader(file), func(m Meta) (Meta, bool) {
		calls++
		if m.PolicyGen != 7 || !m.Allowed || m.B != 100 {
			t.Errorf("remap got %+v", m)
		}
		if m.A%3 == 0 {
			return Meta{}, false
		}
		return Meta{A: m.A + 1000, B: 200, PolicyGen: 0, Allowed: true}, true
	})
	if err != nil || n != 6 || tab2.Len() != 6 || calls != 10 {
		t.Fatalf("Restore: %d, %v, Len %d, %d calls", n, err, tab2.Len(), calls)
	}
	for i := range 10 {
		r := tab2.Track(udpPacket(uint16(1000+i), 53))
		if i%3 == 0 {
			if r.Verdict != Miss {
				t.Errorf("%d: dropped, but %v", i, r.Verdict)
			}
			continue
		}
		if want := (Meta{A: int32(i + 1000), B: 200, Allowed: true}); r.Verdict != Valid || r.Meta != want {
			t.Errorf("%d: %v %+v, want %+v", i, r.Verdict, r.Meta, want)
		}
	}
}

func TestRestoreMax(t *testing.T) {
	tab, _ := newTestTable(Config{})
	for i := range 10 {
		mustInsert(t, tab, udpPacket(uint16(1000+i), 53), Meta{})
	}
	file := saveAll(t, tab)
	tab2, _ := newTestTable(Config{Max: 7, Shards: 2})
	mustInsert(t, tab2, udpPacket(1000, 53), Meta{A: 42}) // already there: kept
	mustInsert(t, tab2, udpPacket(9, 9), Meta{})
	n, err := tab2.Restore(bytes.NewReader(file), nil)
	if err != nil || n != 5 || tab2.Len() != 7 {
		t.Fatalf("Restore: %d, %v, Len %d", n, err, tab2.Len())
	}
	if st := tab2.Stats(); st.Refused != 4 || st.Entries != 7 || st.States[StateUnreplied] != 7 {
		t.Fatalf("stats: %+v", st)
	}
	if r := tab2.Related(udpPacket(1000, 53).Key); r.Meta.A != 42 {
		t.Fatalf("live connection replaced: %+v", r.Meta)
	}
}

// TestRestoreExpiredDuplicate: an expired entry of the same tuple gives way.
func TestRestoreExpiredDuplicate(t *testing.T) {
	tab, _ := newTestTable(Config{})
	mustInsert(t, tab, udpPacket(1000, 53), Meta{A: 1})
	file := saveAll(t, tab)
	tab2, clk2 := newTestTable(Config{})
	mustInsert(t, tab2, udpPacket(1000, 53), Meta{A: 2})
	clk2.Advance(time.Hour)
	if n, err := tab2.Restore(bytes.NewReader(file), nil); n != 1 || err != nil || tab2.Len() != 1 {
		t.Fatalf("Restore: %d, %v, Len %d", n, err, tab2.Len())
	}
	if r := tab2.Related(udpPacket(1000, 53).Key); r.Verdict != Valid || r.Meta.A != 1 {
		t.Fatalf("%v %+v", r.Verdict, r.Meta)
	}
}

func TestSaveEmpty(t *testing.T) {
	tab, _ := newTestTable(Config{})
	file := saveAll(t, tab)
	if len(file) != headerSize+crcSize {
		t.Fatalf("%d bytes", len(file))
	}
	n, err := tab.Restore(bytes.NewReader(file), nil)
	if n != 0 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
}

// refuses restores file into a table holding one connection and checks
// that it fails with an error containing want and adds nothing.
func refuses(t *testing.T, file []byte, want string) {
	t.Helper()
	tab, _ := newTestTable(Config{})
	mustInsert(t, tab, udpPacket(1, 1), Meta{})
	n, err := tab.Restore(bytes.NewReader(file), func(Meta) (Meta, bool) {
		t.Fatal("remap called")
		return Meta{}, false
	})
	if err == nil || n != 0 || tab.Len() != 1 || tab.Stats().Entries != 1 {
		t.Fatalf("damaged file accepted: %d, %v, Len %d", n, err, tab.Len())
	}
	if !strings.HasPrefix(err.Error(), "conntrack state: ") || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want %q", err, want)
	}
}

// resum rewrites the checksum of a file after a deliberate change.
func resum(file []byte) []byte {
	binary.LittleEndian.PutUint32(file[len(file)-crcSize:], crc32.Checksum(file[:len(file)-crcSize], castagnoli))
	return file
}

func TestRestoreErrors(t *testing.T) {
	file := savedFile(t)
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(file)) }
	rec := func(i int) int { return headerSize + i*recordSize }

	refuses(t, nil, "truncated header (0 of 24 bytes)")
	refuses(t, []byte("SGSW"), "truncated header (4 of 24 bytes)")
	refuses(t, []byte("GIF89a"), "bad magic")
	refuses(t, mod(func(b []byte) []byte { b[0] = 'X'; return b }), "bad magic")
	refuses(t, mod(func(b []byte) []byte { b[8] = 2; return resum(b) }), "version 2 not supported")
	refuses(t, mod(func(b []byte) []byte { b[12] = 128; return resum(b) }), "record size 128, want 124")
	refuses(t, mod(func(b []byte) []byte { b[rec(1)+offA] ^= 1; return b }), "checksum mismatch")
	refuses(t, file[:rec(3)+10], "truncated after 3 of 6 entries")
	refuses(t, file[:len(file)-1], "truncated after 6 of 6 entries")
	refuses(t, mod(func(b []byte) []byte { b[16] = 200; return b }), "truncated after 6 of 200 entries")
	refuses(t, mod(func(b []byte) []byte { b[16] = 5; return b }), "checksum mismatch")
	refuses(t, mod(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[16:], 1<<62); return b }), "entry count 4611686018427387904 too large")
	refuses(t, append(bytes.Clone(file), 0), "data after the checksum")

	// Records that a checksum does not catch, because they were written so.
	for _, c := range []struct {
		name string
		f    func(r []byte)
		want string
	}{
		{"TCP state", func(r []byte) { r[offProto] = protoTCP; r[offState] = uint8(StateReplied) }, "state REPLIED (11) is not a TCP state"},
		{"no state", func(r []byte) { r[offProto] = protoUDP; r[offState] = 0 }, "state NONE (0) for protocol udp"},
		{"UDP state", func(r []byte) { r[offProto] = protoUDP; r[offState] = uint8(StateEstablished) }, "state ESTABLISHED (3) for protocol udp"},
		{"state range", func(r []byte) { r[offProto] = 47; r[offState] = 200 }, "state INVALID_STATE (200) for protocol gre"},
		{"flags", func(r []byte) { r[offFlags] |= 0x80 }, "unknown flags"},
		{"scale", func(r []byte) { r[offScale+1] = 15 }, "window scale"},
		{"reserved", func(r []byte) { r[offReserved] = 1 }, "reserved byte"},
		{"time left", func(r []byte) { binary.LittleEndian.PutUint64(r[offLeft:], 0) }, "time left 0 ns"},
		{"negative time", func(r []byte) { binary.LittleEndian.PutUint64(r[offLeft:], 1<<63) }, "time left -"},
		{"order", func(r []byte) {
			r[offProto], r[offState] = protoUDP, uint8(StateReplied)
			var src, dst [16]byte
			copy(src[:], r[offSrc:offSrc+16])
			copy(dst[:], r[offDst:offDst+16])
			copy(r[offSrc:], dst[:])
			copy(r[offDst:], src[:])
			binary.LittleEndian.PutUint16(r[offSrcPort:], 1)
			binary.LittleEndian.PutUint16(r[offDstPort:], 2)
			if bytes.Equal(src[:], dst[:]) {
				panic("same addresses")
			}
			// One of the two orders is not canonical.
			k := Key{Src: dst, Dst: src, SrcPort: 1, DstPort: 2}
			if !canonicalize(&k) {
				copy(r[offSrc:], src[:])
				copy(r[offDst:], dst[:])
			}
		}, "key not in canonical order"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(file)
			c.f(b[rec(4):rec(5)])
			refuses(t, resum(b), "entry 5 of 6: "+c.want)
		})
	}
}

// errReader fails after n bytes.
type errReader struct {
	b []byte
	n int
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	n := copy(p[:min(len(p), r.n)], r.b)
	r.b, r.n = r.b[n:], r.n-n
	return n, nil
}

func TestRestoreReadError(t *testing.T) {
	file := savedFile(t)
	for _, n := range []int{0, 10, 100, len(file) - 1, len(file)} {
		tab, _ := newTestTable(Config{})
		_, err := tab.Restore(&errReader{file, n}, nil)
		if err == nil || !strings.Contains(err.Error(), "disk on fire") || tab.Len() != 0 {
			t.Errorf("after %d bytes: %v, Len %d", n, err, tab.Len())
		}
	}
}

// TestRestoreCorrupt flips every bit of every byte of a small file, and
// cuts it at every length: each is refused, leaving the table as it was.
func TestRestoreCorrupt(t *testing.T) {
	file := savedFile(t)
	for i := range file {
		for bit := range 8 {
			b := bytes.Clone(file)
			b[i] ^= 1 << bit
			refuses(t, b, "")
		}
		b := bytes.Clone(file)
		b[i] ^= 0xff
		refuses(t, b, "")
	}
	for n := range len(file) {
		refuses(t, file[:n], "")
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestSaveWriteError(t *testing.T) {
	tab, _ := newTestTable(Config{})
	mustInsert(t, tab, udpPacket(1, 2), Meta{})
	if n, err := tab.Save(failWriter{}); err == nil || n != 0 {
		t.Fatalf("Save: %d, %v", n, err)
	}
}

// TestSaveConcurrent saves and restores while packets flow (for -race).
func TestSaveConcurrent(t *testing.T) {
	tab, _ := newTestTable(Config{Shards: 8})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 20000 {
			p := udpPacket(uint16(i), 53)
			if r := tab.Track(p); r.Verdict == Miss {
				tab.Insert(p, Meta{})
			}
			tab.Track(reversed(p))
		}
	}()
	tab2, _ := newTestTable(Config{Shards: 8})
	for range 20 {
		file := saveAll(t, tab)
		var m Meta
		n, err := tab2.Restore(bytes.NewReader(file), func(Meta) (Meta, bool) { return m, true })
		if err != nil || n > tab2.Len() {
			t.Fatalf("Restore: %d, %v", n, err)
		}
	}
	<-done
}

func TestRestoredTrackAllocs(t *testing.T) {
	tab, _ := newTestTable(Config{})
	f := newFlow(t, tab, 40000)
	f.establish()
	tab2, _ := newTestTable(Config{})
	if n, err := tab2.Restore(bytes.NewReader(saveAll(t, tab)), nil); n != 1 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	hit := f.seg(Original, tcpAck, 0)
	reply := f.seg(Reply, tcpAck, 0)
	for name, p := range map[string]*Packet{"hit": hit, "reply": reply} {
		if n := testing.AllocsPerRun(1000, func() {
			if r := tab2.Track(p); r.Verdict != Valid || r.State != StateEstablished {
				t.Fatalf("%v %v", r.Verdict, r.State)
			}
		}); n != 0 {
			t.Errorf("Track %s: %v allocations", name, n)
		}
	}
}

// FuzzRestore feeds Restore anything: it never panics, and either fails
// leaving the table empty or adds exactly what it says. Each input is also
// tried with its checksum made right, so that the fuzzer reaches the checks
// of the records; a table restored so is then driven with packets.
func FuzzRestore(f *testing.F) {
	file := savedFile(f)
	f.Add(file)
	f.Add(file[:headerSize+recordSize])
	tab, _ := newTestTable(Config{})
	f.Add(saveAll(f, tab))
	f.Fuzz(func(t *testing.T, data []byte) {
		try := func(data []byte) {
			tab, clk := newTestTable(Config{Max: 4, MaxPerOwner: 2, Shards: 2})
			n, err := tab.Restore(bytes.NewReader(data), func(m Meta) (Meta, bool) { return m, m.A != 5 })
			if err != nil {
				if n != 0 || tab.Len() != 0 {
					t.Fatalf("error %v, but %d restored, Len %d", err, n, tab.Len())
				}
				return
			}
			if tab.Len() != n || n > 4 {
				t.Fatalf("restored %d, Len %d", n, tab.Len())
			}
			checkOwners(t, tab)
			for _, c := range tab.List(nil, 0) {
				for _, flags := range []uint8{tcpAck, tcpSyn, tcpSyn | tcpAck, tcpRst, tcpFin | tcpAck} {
					for _, k := range []Key{c.Key, c.Key.Reverse()} {
						for _, typ := range []uint8{icmpEchoRequest, icmpEchoReply, icmpv6EchoRequest, icmpv6EchoReply} {
							p := &Packet{Key: k, TCPFlags: flags, ICMPType: typ, Seq: uint32(c.Bytes[0]), Ack: uint32(c.Bytes[1]), Window: 1000, WScale: 14, PayloadLen: 10}
							tab.Track(p)
						}
					}
				}
			}
			clk.Advance(1 << 62)
			tab.Sweep(1 << 30)
			if tab.Len() != 0 {
				t.Fatalf("Len %d after everything expired", tab.Len())
			}
			checkOwners(t, tab)
		}
		try(data)
		if len(data) >= headerSize+crcSize {
			try(resum(bytes.Clone(data)))
		}
	})
}

// BenchmarkSaveRestore saves a table of established TCP connections and
// restores it into a new table.
func BenchmarkSaveRestore(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			tab := establishedTable(b, n)
			var buf bytes.Buffer
			var save, restore time.Duration
			b.ResetTimer()
			for b.Loop() {
				buf.Reset()
				t0 := time.Now()
				if k, err := tab.Save(&buf); err != nil || k != n {
					b.Fatalf("Save: %d, %v", k, err)
				}
				t1 := time.Now()
				tab2 := New(Config{Max: n}, &ManualClock{})
				if k, err := tab2.Restore(bytes.NewReader(buf.Bytes()), func(m Meta) (Meta, bool) {
					m.PolicyGen = 0
					return m, true
				}); err != nil || k != n {
					b.Fatalf("Restore: %d, %v", k, err)
				}
				save += t1.Sub(t0)
				restore += time.Since(t1)
			}
			b.ReportMetric(float64(save.Nanoseconds())/float64(b.N)/float64(n), "save-ns/entry")
			b.ReportMetric(float64(restore.Nanoseconds())/float64(b.N)/float64(n), "restore-ns/entry")
			b.ReportMetric(float64(buf.Len()), "file-bytes")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestRestorePaths covers both ways in: a shard that never held an entry
// adopts the staged slab, any other takes the connections one by one.
func TestRestorePaths(t *testing.T) {
	m := newMixed(t)
	file := saveAll(t, m.tab)
	check := func(name string, tab *Table, want int) {
		t.Helper()
		st := tab.Stats()
		if tab.Len() != want || st.Entries != want || st.TCP+st.UDP+st.ICMP+st.Other != want {
			t.Fatalf("%s: Len %d, %+v, want %d", name, tab.Len(), st, want)
		}
		checkOwners(t, tab)
		for _, k := range m.keys() {
			if _, ok := entryOf(tab, k); !ok {
				t.Fatalf("%s: %v missing", name, k)
			}
		}
	}

	// Restoring the same file again adds nothing: every tuple is held.
	tab, _ := newTestTable(Config{Shards: 1})
	if n, err := tab.Restore(bytes.NewReader(file), nil); n != 6 || err != nil {
		t.Fatalf("Restore: %d, %v", n, err)
	}
	check("first", tab, 6)
	if n, err := tab.Restore(bytes.NewReader(file), nil); n != 0 || err != nil {
		t.Fatalf("again: %d, %v", n, err)
	}
	check("again", tab, 6)

	// After a Flush the shard's slab has been used: handles from before
	// must stay stale, so the entries are copied in.
	tab, _ = newTestTable(Config{Shards: 1})
	h := mustInsert(t, tab, udpPacket(1, 2), Meta{}).Conn
	tab.Flush()
	if n, err := tab.Restore(bytes.NewReader(file), nil); n != 6 || err != nil {
		t.Fatalf("after Flush: %d, %v", n, err)
	}
	check("after Flush", tab, 6)
	if _, ok := tab.Meta(h); ok {
		t.Fatal("stale handle matches a restored connection")
	}
	// The table goes on working: insert, track, sweep.
	mustInsert(t, tab, udpPacket(3, 4), Meta{})
	check("insert", tab, 7)

	// The same connection twice in a file: the first is kept, by either way.
	b := bytes.Clone(file)
	b = append(b[:len(b)-crcSize], b[headerSize:headerSize+2*recordSize]...)
	binary.LittleEndian.PutUint64(b[16:], 8)
	b = resum(append(b, 0, 0, 0, 0))
	for _, shards := range []int{1, 4} {
		tab, _ = newTestTable(Config{Shards: shards})
		if n, err := tab.Restore(bytes.NewReader(b), nil); n != 6 || err != nil {
			t.Fatalf("duplicates: %d, %v", n, err)
		}
		check("duplicates", tab, 6)
		mustInsert(t, tab, udpPacket(1, 2), Meta{})
		tab2, _ := newTestTable(Config{Shards: shards})
		mustInsert(t, tab2, udpPacket(1, 2), Meta{})
		if n, err := tab2.Restore(bytes.NewReader(b), nil); n != 6 || err != nil {
			t.Fatalf("duplicates: %d, %v", n, err)
		}
		check("duplicates", tab2, 7)
	}

	// A table with room for only part of the file.
	tab, _ = newTestTable(Config{Shards: 1, Max: 4})
	if n, err := tab.Restore(bytes.NewReader(file), nil); n != 4 || err != nil || tab.Len() != 4 {
		t.Fatalf("Max 4: %d, %v, Len %d", n, err, tab.Len())
	}
	if st := tab.Stats(); st.Refused != 2 || st.Entries != 4 {
		t.Fatalf("Max 4: %+v", st)
	}
	// Sweep and evict work on restored (adopted) slabs.
	tab, clk := newTestTable(Config{Shards: 1})
	tab.Restore(bytes.NewReader(file), nil)
	clk.Advance(time.Hour)
	if n := tab.Sweep(100); n != 5 || tab.Len() != 1 {
		t.Fatalf("Sweep freed %d, Len %d", n, tab.Len())
	}
}

// TestRestoreMany restores thousands of connections into tables of a few
// shards, each index sized at once, and checks every one.
func TestRestoreMany(t *testing.T) {
	tab, _ := newTestTable(Config{Shards: 8})
	const n = 5000
	for i := range n {
		p := &Packet{Key: benchKey(protoUDP, i), Len: i}
		mustInsert(t, tab, p, Meta{A: int32(i)})
		if i%2 == 0 {
			tab.Track(reversed(p))
		}
	}
	file := saveAll(t, tab)
	for _, shards := range []int{1, 2, 64} {
		tab2, _ := newTestTable(Config{Shards: shards})
		if k, err := tab2.Restore(bytes.NewReader(file), nil); k != n || err != nil {
			t.Fatalf("Restore: %d, %v", k, err)
		}
		for i := range n {
			p := &Packet{Key: benchKey(protoUDP, i)}
			want := StateUnreplied
			if i%2 == 0 {
				want = StateReplied
			}
			if r := tab2.Track(p); r.Verdict != Valid || r.State != want || r.Meta.A != int32(i) || r.Dir != Original {
				t.Fatalf("%d: %v %v %+v", i, r.Verdict, r.State, r.Meta)
			}
		}
		for i := n; i < 2*n; i++ {
			mustInsert(t, tab2, &Packet{Key: benchKey(protoUDP, i)}, Meta{})
		}
		if st := tab2.Stats(); st.Entries != 2*n || st.States[StateReplied] != n/2 {
			t.Fatalf("%+v", st)
		}
	}
}

// SaveSelected writes only the connections keep accepts, at most max, and
// RestoreSelected's admit sees each one's original-direction key: what a
// host hands over of one instance, and how the next host checks it.
func TestSaveRestoreSelected(t *testing.T) {
	tab, _ := newTestTable(Config{})
	for i := range 10 {
		mustInsert(t, tab, udpPacket(uint16(1000+i), 53), Meta{A: int32(i % 2), B: 100, Allowed: true})
	}
	// A connection whose originator sorts second: its stored key is swapped.
	back := &Packet{Key: KeyFrom(protoUDP, srvAddr, cliAddr, 53, 999, 0), Len: 100}
	mustInsert(t, tab, back, Meta{A: 0, B: 100, Allowed: true})
	var buf bytes.Buffer
	n, over, err := tab.SaveSelected(&buf, func(k Key, m Meta) bool { return m.A == 0 }, 5)
	if err != nil || n != 5 || over != 1 {
		t.Fatalf("SaveSelected: %d written, %d over, %v; want 5 of the 6 of owner 0", n, over, err)
	}
	buf.Reset()
	if n, over, err = tab.SaveSelected(&buf, func(k Key, m Meta) bool { return m.A == 0 }, 0); err != nil || n != 6 || over != 0 {
		t.Fatalf("SaveSelected without a bound: %d, %d, %v", n, over, err)
	}
	tab2, _ := newTestTable(Config{})
	var seen []Key
	got, err := tab2.RestoreSelected(bytes.NewReader(buf.Bytes()), func(k Key, m Meta) (Meta, bool) {
		seen = append(seen, k)
		return Meta{A: 7, B: 8, Allowed: true}, k.SrcPort != 1002
	})
	if err != nil || got != 5 || len(seen) != 6 {
		t.Fatalf("RestoreSelected: %d, %v, %d keys seen", got, err, len(seen))
	}
	found := false
	for _, k := range seen {
		if k.SrcAddr() == srvAddr && k.SrcPort == 53 && k.DstPort == 999 {
			found = true
		}
		if k.SrcPort != 53 && k.SrcAddr() != cliAddr {
			t.Errorf("key %v is not in its original direction", k)
		}
	}
	if !found {
		t.Errorf("the swapped connection's original-direction key is not among %v", seen)
	}
	if r := tab2.Track(back); r.Verdict != Valid || r.Dir != Original || r.Meta.A != 7 {
		t.Errorf("the swapped connection after the import: %v %v %+v", r.Verdict, r.Dir, r.Meta)
	}
	if r := tab2.Track(udpPacket(1002, 53)); r.Verdict != Miss {
		t.Errorf("a connection admit refused: %v", r.Verdict)
	}
}

// Forget removes exactly the connections drop accepts, and the table then
// takes the same tuples again.
func TestForget(t *testing.T) {
	tab, _ := newTestTable(Config{})
	for i := range 600 { // more than a batch of one shard
		mustInsert(t, tab, udpPacket(uint16(1000+i), 53), Meta{A: int32(i % 3), B: 100, Allowed: true})
	}
	if n := tab.Forget(func(k Key, m Meta) bool { return m.A == 1 }); n != 200 || tab.Len() != 400 || tab.OwnerCount(1) != 0 {
		t.Fatalf("Forget: %d removed, %d left, owner 1 holds %d; want 200, 400, 0", n, tab.Len(), tab.OwnerCount(1))
	}
	for i := range 600 {
		r := tab.Track(udpPacket(uint16(1000+i), 53))
		if want := i%3 != 1; (r.Verdict == Valid) != want {
			t.Fatalf("connection %d: %v after Forget", i, r.Verdict)
		}
	}
	mustInsert(t, tab, udpPacket(1001, 53), Meta{A: 1, B: 100, Allowed: true})
	if st := tab.Stats(); st.Entries != 401 || st.UDP != 401 {
		t.Errorf("stats after Forget and an insert: %+v", st)
	}
}
