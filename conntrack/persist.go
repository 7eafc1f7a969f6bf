package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
)

// The saved state's format, version 1. All integers are little-endian.
//
//	header  24 bytes: magic "SGSWCONN", version u32 (1), record size u32
//	        (124), entry count u64
//	records count × 124 bytes, one per connection (see putRecord)
//	trailer CRC-32C (Castagnoli) u32 of everything before it
//
// A record holds the stored (canonical) key, the state, the flags (which side
// opened the connection, whether it saw a reply, Meta.Allowed, which SYNs
// carried the window-scale option), both directions' TCP window tracking, the
// time left before the connection expires (nanoseconds, relative, since the
// two processes' clocks share no origin), the counters and Meta. Nothing in
// it depends on the saving table's hash seed, shard count or slab layout.
const (
	stateMagic   = "SGSWCONN"
	stateVersion = 1

	headerSize = 24
	recordSize = 124
	crcSize    = 4
)

// Record layout: byte offsets.
const (
	offSrc      = 0  // [16]byte
	offDst      = 16 // [16]byte
	offSrcPort  = 32 // u16
	offDstPort  = 34 // u16
	offProto    = 36 // u8
	offState    = 37 // u8
	offZone     = 38 // u16
	offFlags    = 40 // u8, rec* bits
	offScale    = 41 // [2]u8, by Dir
	offReserved = 43 // u8, zero
	offEnd      = 44 // [2]u32, by Dir
	offMaxend   = 52 // [2]u32
	offMaxwin   = 60 // [2]u32
	offLeft     = 68 // i64, nanoseconds left, > 0
	offPackets  = 76 // [2]u64
	offBytes    = 92 // [2]u64
	offA        = 108
	offB        = 112
	offGen      = 116 // u64, Meta.PolicyGen
)

// Record flag bits. They happen to equal the entry's flags, but the format
// names its own so that the entry's layout may change without a new version.
const (
	recSwapped uint8 = 1 << iota
	recReplied
	recAllowed
	recWScaleOrig
	recWScaleReply
	recFlagsKnown = 1<<iota - 1
)

// maxScale is the largest window scale a SYN can set (RFC 7323).
const maxScale = 14

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Save writes every live (unexpired) connection to w, in the format above:
// its key, originator side, state, both directions' TCP window tracking, the
// time left before it expires, its counters and its Meta. It returns the
// number of connections written.
//
// Save is consistent per shard: it holds each shard's lock while it copies
// that shard, so packets of other shards pass meanwhile, but the file is not
// one snapshot of the whole table (a connection created in a shard already
// copied is missing from it), unless nothing tracks packets meanwhile, as
// when the switch saves on its way out.
//
// The file is built in memory and written with one Write: about 124 bytes
// per connection, the size of the file, until Save returns.
func (t *Table) Save(w io.Writer) (int, error) {
	n, _, err := t.SaveSelected(w, nil, 0)
	return n, err
}

// SaveSelected is Save of the live connections that keep (nil: all)
// accepts, given each one's original-direction key and Meta, at most max of
// them (0: no bound); over counts those accepted beyond max, left out. keep
// runs with a shard locked and must not call the table. The connections of
// one instance handed to another host are saved so (SPEC §9).
func (t *Table) SaveSelected(w io.Writer, keep func(Key, Meta) bool, max int) (n, over int, err error) {
	size := t.Len()
	if keep != nil {
		size = min(size, 64)
	}
	buf := make([]byte, headerSize, headerSize+size*recordSize+crcSize)
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		now := t.clock.Now()
		for ci, c := range s.chunks {
			m := min(chunkSize, int(s.used)-ci*chunkSize)
			for i := range c[:m] {
				e := &c[i]
				if e.state == StateNone || e.expires <= now {
					continue
				}
				if keep != nil && !keep(e.origKey(), e.meta()) {
					continue
				}
				if max > 0 && n == max {
					over++
					continue
				}
				buf = slices.Grow(buf, recordSize)
				putRecord(buf[len(buf):len(buf)+recordSize], e, e.expires-now)
				buf = buf[:len(buf)+recordSize]
				n++
			}
		}
		s.mu.Unlock()
	}
	copy(buf, stateMagic)
	binary.LittleEndian.PutUint32(buf[8:], stateVersion)
	binary.LittleEndian.PutUint32(buf[12:], recordSize)
	binary.LittleEndian.PutUint64(buf[16:], uint64(n))
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	if _, err := w.Write(buf); err != nil {
		return 0, 0, err
	}
	return n, over, nil
}

// putRecord encodes e, with left nanoseconds to live, into b.
func putRecord(b []byte, e *entry, left int64) {
	b = b[:recordSize]
	le := binary.LittleEndian
	copy(b[offSrc:], e.key.Src[:])
	copy(b[offDst:], e.key.Dst[:])
	le.PutUint16(b[offSrcPort:], e.key.SrcPort)
	le.PutUint16(b[offDstPort:], e.key.DstPort)
	b[offProto] = e.key.Proto
	b[offState] = uint8(e.state)
	le.PutUint16(b[offZone:], e.key.Zone)
	var f uint8
	if e.flags&flagSwapped != 0 {
		f |= recSwapped
	}
	if e.flags&flagReplied != 0 {
		f |= recReplied
	}
	if e.flags&flagAllowed != 0 {
		f |= recAllowed
	}
	if e.flags&(flagWScale<<Original) != 0 {
		f |= recWScaleOrig
	}
	if e.flags&(flagWScale<<Reply) != 0 {
		f |= recWScaleReply
	}
	b[offFlags] = f
	b[offScale], b[offScale+1] = e.scale[0], e.scale[1]
	b[offReserved] = 0
	for d := range 2 {
		le.PutUint32(b[offEnd+4*d:], e.end[d])
		le.PutUint32(b[offMaxend+4*d:], e.maxend[d])
		le.PutUint32(b[offMaxwin+4*d:], e.maxwin[d])
		le.PutUint64(b[offPackets+8*d:], e.packets[d])
		le.PutUint64(b[offBytes+8*d:], e.bytes[d])
	}
	le.PutUint64(b[offLeft:], uint64(left))
	le.PutUint32(b[offA:], uint32(e.a))
	le.PutUint32(b[offB:], uint32(e.b))
	le.PutUint64(b[offGen:], e.policyGen)
}

// getKey decodes the key of a record.
func getKey(b []byte, k *Key) {
	b = b[:recordSize]
	le := binary.LittleEndian
	copy(k.Src[:], b[offSrc:])
	copy(k.Dst[:], b[offDst:])
	k.SrcPort = le.Uint16(b[offSrcPort:])
	k.DstPort = le.Uint16(b[offDstPort:])
	k.Proto = b[offProto]
	k.Zone = le.Uint16(b[offZone:])
}

// getRecord decodes a record that checkRecord accepted into e (state, flags,
// windows, counters, Meta; not the key, the deadline or the generation) and
// returns the nanoseconds it had left.
func getRecord(b []byte, e *entry) (left int64) {
	b = b[:recordSize]
	le := binary.LittleEndian
	e.state = State(b[offState])
	f := b[offFlags]
	e.flags = 0
	if f&recSwapped != 0 {
		e.flags |= flagSwapped
	}
	if f&recReplied != 0 {
		e.flags |= flagReplied
	}
	if f&recAllowed != 0 {
		e.flags |= flagAllowed
	}
	if f&recWScaleOrig != 0 {
		e.flags |= flagWScale << Original
	}
	if f&recWScaleReply != 0 {
		e.flags |= flagWScale << Reply
	}
	e.scale = [2]uint8{b[offScale], b[offScale+1]}
	for d := range 2 {
		e.end[d] = le.Uint32(b[offEnd+4*d:])
		e.maxend[d] = le.Uint32(b[offMaxend+4*d:])
		e.maxwin[d] = le.Uint32(b[offMaxwin+4*d:])
		e.packets[d] = le.Uint64(b[offPackets+8*d:])
		e.bytes[d] = le.Uint64(b[offBytes+8*d:])
	}
	e.a = int32(le.Uint32(b[offA:]))
	e.b = int32(le.Uint32(b[offB:]))
	e.policyGen = le.Uint64(b[offGen:])
	return int64(le.Uint64(b[offLeft:]))
}

// checkRecord refuses a record that no table could have saved: one that the
// checksum let through only because it was written so. Beyond tidiness, it
// keeps states in the ranges Track indexes its tables with.
func checkRecord(b []byte) error {
	b = b[:recordSize]
	proto, st := b[offProto], State(b[offState])
	if proto == protoTCP {
		if st < StateSynSent || st > StateSynSent2 {
			return fmt.Errorf("state %v (%d) is not a TCP state", st, uint8(st))
		}
	} else if st != StateUnreplied && st != StateReplied {
		return fmt.Errorf("state %v (%d) for protocol %s", st, uint8(st), ProtoName(proto))
	}
	if f := b[offFlags]; f&^recFlagsKnown != 0 {
		return fmt.Errorf("unknown flags %#x", f)
	}
	if b[offScale] > maxScale || b[offScale+1] > maxScale {
		return fmt.Errorf("window scale %d/%d above %d", b[offScale], b[offScale+1], maxScale)
	}
	if b[offReserved] != 0 {
		return errors.New("reserved byte not zero")
	}
	if left := int64(binary.LittleEndian.Uint64(b[offLeft:])); left <= 0 {
		return fmt.Errorf("time left %d ns", left)
	}
	if !isICMP(proto) {
		var k Key
		getKey(b, &k)
		if canonicalize(&k) {
			return errors.New("key not in canonical order")
		}
	}
	return nil
}

// Restore reads what Save wrote and adds its connections to the table, and
// returns how many it added.
//
// It reads and checks the whole input before it changes anything (magic,
// version, record size, length, checksum, and every record): a damaged or
// truncated file leaves the table as it was, and the error says what is wrong
// ("conntrack state: bad magic", "version 2 not supported", "checksum
// mismatch", "truncated after N of M entries", ...). Bytes after the checksum
// are an error too. Meanwhile the connections are decoded into private slabs
// laid out as the table's own (same hash seed, same shards), so that a shard
// of a new table simply adopts its slab and an index built for it: the file is
// never held in memory, and a restart's Restore costs about what the table
// itself costs.
//
// remap (nil: keep) is called with each connection's Meta, without any lock
// held, once the input is known sound: it may renumber the ports, and should
// reset PolicyGen so that the next packet of every restored connection is
// checked against the current policy; returning false drops the connection.
//
// A connection continues with the time it had left when it was saved,
// counted on this table's clock from the call (the time the switch was down
// is not counted), and at most its state's timeout in this table's
// configuration. Connections that would take the table beyond Max are not
// added; they are counted in Stats.Refused. Nor are those that would take
// their owner (Meta.A after remap) beyond MaxPerOwner, counted in
// Stats.OwnerRefused; the others count for their owner. A connection whose
// tuple the table already holds live is not added either: the table's own is
// newer.
func (t *Table) Restore(r io.Reader, remap func(Meta) (Meta, bool)) (int, error) {
	var admit func(Key, Meta) (Meta, bool)
	if remap != nil {
		admit = func(_ Key, m Meta) (Meta, bool) { return remap(m) }
	}
	return t.RestoreSelected(r, admit)
}

// RestoreSelected is Restore whose admit (nil: keep all) is also given each
// connection's original-direction key: a host importing another host's
// connections checks whose they are and what the policy says of them.
func (t *Table) RestoreSelected(r io.Reader, admit func(Key, Meta) (Meta, bool)) (int, error) {
	remap := admit
	staged, err := t.stage(r)
	if err != nil {
		return 0, err
	}
	n := 0
	for si := range staged {
		n += t.merge(&t.shards[si], &staged[si], remap)
	}
	return n, nil
}

// stage reads a saved table and checks all of it, decoding its connections
// into private shards (slabs only, no index) laid out as t's. An entry's
// expires holds the nanoseconds it had left.
func (t *Table) stage(r io.Reader) ([]shard, error) {
	var hdr [headerSize]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("conntrack state: %w", err)
		}
		if m := min(n, len(stateMagic)); string(hdr[:m]) != stateMagic[:m] {
			return nil, errors.New("conntrack state: bad magic")
		}
		return nil, fmt.Errorf("conntrack state: truncated header (%d of %d bytes)", n, headerSize)
	}
	if string(hdr[:len(stateMagic)]) != stateMagic {
		return nil, errors.New("conntrack state: bad magic")
	}
	if v := binary.LittleEndian.Uint32(hdr[8:]); v != stateVersion {
		return nil, fmt.Errorf("conntrack state: version %d not supported", v)
	}
	if rs := binary.LittleEndian.Uint32(hdr[12:]); rs != recordSize {
		return nil, fmt.Errorf("conntrack state: record size %d, want %d", rs, recordSize)
	}
	count := binary.LittleEndian.Uint64(hdr[16:])
	if count > math.MaxUint32 {
		// Far beyond anything a table holds (a shard indexes its slab
		// with 32 bits); an error rather than a long read.
		return nil, fmt.Errorf("conntrack state: entry count %d too large", count)
	}
	crc := crc32.Checksum(hdr[:], castagnoli)
	var staged []shard
	if count > 0 {
		staged = make([]shard, len(t.shards))
	}
	var buf []byte
	for done := uint64(0); done < count; {
		// The buffer grows with what actually arrives, up to 1 MiB: a
		// damaged count costs no more than the data behind it.
		if len(buf) < 8192*recordSize {
			buf = make([]byte, min(max(2*len(buf), 64*recordSize), 8192*recordSize))
		}
		b := buf[:min(uint64(len(buf)/recordSize), count-done)*recordSize]
		n, err := io.ReadFull(r, b)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("conntrack state: truncated after %d of %d entries", done+uint64(n/recordSize), count)
		}
		if err != nil {
			return nil, fmt.Errorf("conntrack state: %w", err)
		}
		crc = crc32.Update(crc, castagnoli, b)
		for off := 0; off < len(b); off += recordSize {
			rec := b[off : off+recordSize]
			done++
			if err := checkRecord(rec); err != nil {
				return nil, fmt.Errorf("conntrack state: entry %d of %d: %w", done, count, err)
			}
			var k Key
			getKey(rec, &k)
			s := &staged[t.seed.hash(&k)>>t.shift]
			_, e := s.alloc()
			e.key = k
			e.expires = getRecord(rec, e)
		}
	}
	var sum [crcSize]byte
	if _, err := io.ReadFull(r, sum[:]); err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, fmt.Errorf("conntrack state: truncated after %d of %d entries", count, count)
	} else if err != nil {
		return nil, fmt.Errorf("conntrack state: %w", err)
	}
	if crc != binary.LittleEndian.Uint32(sum[:]) {
		return nil, errors.New("conntrack state: checksum mismatch")
	}
	if n, err := io.ReadFull(r, sum[:1]); n > 0 {
		return nil, errors.New("conntrack state: data after the checksum")
	} else if err != io.EOF {
		return nil, fmt.Errorf("conntrack state: %w", err)
	}
	return staged, nil
}

// reserve counts n more entries, unless that would take the table beyond
// Max.
func (t *Table) reserve(n int) bool {
	for {
		c := t.count.Load()
		if c+int64(n) > t.max {
			return false
		}
		if t.count.CompareAndSwap(c, c+int64(n)) {
			return true
		}
	}
}

// takeOwner counts one more entry for owner, unless that would take it
// beyond MaxPerOwner. Unlike Insert's count-then-back-out, it never lets the
// count pass the cap even for a moment, so that a concurrent Insert of the
// owner does not evict for it.
func (t *Table) takeOwner(owner int32) bool {
	c := t.owners.counter(owner)
	if t.maxOwner <= 0 {
		c.Add(1)
		return true
	}
	for {
		n := c.Load()
		if n >= t.maxOwner {
			return false
		}
		if c.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// merge adds the connections staged for shard s to it, and returns how many
// it added. A shard that never held an entry (a new table's) adopts the
// staged slab with an index built for it; otherwise the connections are
// copied in one by one.
func (t *Table) merge(s, sg *shard, remap func(Key, Meta) (Meta, bool)) int {
	// Remap, drop and set the deadlines, without any lock held (sg is
	// private); dropped entries go to sg's free list.
	now := t.clock.Now()
	kept := 0
	for i := range sg.used {
		e := sg.at(i)
		if remap != nil {
			m, ok := remap(e.origKey(), e.meta())
			if !ok {
				e.state = StateNone
				e.expires = int64(sg.freeHead)
				sg.freeHead = i + 1
				continue
			}
			e.setMeta(m)
		}
		e.expires = now + min(e.expires, t.timeout(e.key.Proto, e.state))
		kept++
	}
	if kept == 0 {
		return 0
	}
	s.mu.Lock()
	fresh := s.used == 0
	s.mu.Unlock()
	if fresh {
		// Index sg the way put would have, had the entries come one by
		// one, but sized once; a tuple found twice keeps its first entry.
		size := minIndex
		for kept*4 > size*3 {
			size *= 2
		}
		sg.index = make([]uint64, size)
		for i := range sg.used {
			e := sg.at(i)
			if e.state == StateNone {
				continue
			}
			h := uint32(t.seed.hash(&e.key))
			_, _, old := sg.find(&e.key, h)
			refused := old == nil && !t.takeOwner(e.a)
			if refused {
				sg.ownerRefused++
			}
			if old != nil || refused {
				e.state = StateNone
				e.expires = int64(sg.freeHead)
				sg.freeHead = i + 1
				continue
			}
			sg.place(uint64(h)<<32 | uint64(i+1))
			sg.live++
			sg.states[e.state]++
			sg.protos[protoClass(e.key.Proto)]++
		}
		s.mu.Lock()
		if s.used == 0 && t.reserve(sg.live) {
			s.index, s.chunks, s.used, s.freeHead, s.live = sg.index, sg.chunks, sg.used, sg.freeHead, sg.live
			s.states, s.protos = sg.states, sg.protos
			s.evictAt, s.sweepAt = 0, 0
			s.ownerRefused += sg.ownerRefused
			s.mu.Unlock()
			return sg.live
		}
		s.mu.Unlock()
		// Not adopted: give the owners' counts back, the copy below
		// takes them again. (Those refused for their owner stay out.)
		for i := range sg.used {
			if e := sg.at(i); e.state != StateNone {
				t.owners.held(e.a).Add(-1)
			}
		}
	}
	// Copy the entries in, one lock hold for the shard.
	n := 0
	s.mu.Lock()
	s.ownerRefused += sg.ownerRefused
	now = t.clock.Now()
	for i := range sg.used {
		e := sg.at(i)
		if e.state == StateNone {
			continue
		}
		h := t.seed.hash(&e.key)
		if pos, idx, old := s.find(&e.key, uint32(h)); old != nil {
			if old.expires > now {
				continue
			}
			s.expired++
			t.release(s, pos, idx, old)
		}
		if !t.takeOwner(e.a) {
			s.ownerRefused++
			continue
		}
		if t.count.Add(1) > t.max {
			t.count.Add(-1)
			t.owners.held(e.a).Add(-1)
			s.refused++
			continue
		}
		idx, slot := s.alloc()
		gen := slot.gen
		*slot = *e
		slot.gen = gen
		s.put(uint32(h), idx)
		s.states[e.state]++
		s.protos[protoClass(e.key.Proto)]++
		n++
	}
	s.mu.Unlock()
	return n
}
