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
// copied is missing from it). The switch stops tracking before it saves.
//
// The file is built in memory and written with one Write: about 124 bytes
// per connection, the size of the file, until Save returns.
func (t *Table) Save(w io.Writer) (int, error) {
	buf := make([]byte, headerSize, headerSize+t.Len()*recordSize+crcSize)
	n := 0
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
		return 0, err
	}
	return n, nil
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

// getRecord decodes a record that checkRecord accepted into e (key, state,
// flags, windows, counters, Meta; not the deadline or the generation) and
// returns the nanoseconds it had left.
func getRecord(b []byte, e *entry) (left int64) {
	b = b[:recordSize]
	le := binary.LittleEndian
	copy(e.key.Src[:], b[offSrc:])
	copy(e.key.Dst[:], b[offDst:])
	e.key.SrcPort = le.Uint16(b[offSrcPort:])
	e.key.DstPort = le.Uint16(b[offDstPort:])
	e.key.Proto = b[offProto]
	e.key.Zone = le.Uint16(b[offZone:])
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
		copy(k.Src[:], b[offSrc:])
		copy(k.Dst[:], b[offDst:])
		k.SrcPort = binary.LittleEndian.Uint16(b[offSrcPort:])
		k.DstPort = binary.LittleEndian.Uint16(b[offDstPort:])
		if canonicalize(&k) {
			return errors.New("key not in canonical order")
		}
	}
	return nil
}

// Restore reads what Save wrote and adds its connections to the table, and
// returns how many it added.
//
// It reads and checks the whole input first (magic, version, record size,
// length, checksum, and every record) and adds nothing unless all of it is
// sound: a damaged or truncated file leaves the table as it was, and the
// error says what is wrong ("conntrack state: bad magic", "version 2 not
// supported", "checksum mismatch", "truncated after N of M entries", ...).
// Bytes after the checksum are an error too.
//
// remap (nil: keep) is called with each connection's Meta, outside any lock,
// before it is added: it may renumber the ports, and should reset PolicyGen so
// that the next packet of every restored connection is checked against the
// current policy; returning false drops the connection.
//
// A connection continues with the time it had left when it was saved,
// counted from now on this table's clock (the time the switch was down is not
// counted), and at most its state's timeout in this table's configuration.
// Connections that would take the table beyond Max are not added; they are
// counted in Stats.Refused. A connection whose tuple the table already holds
// live is not added either: the table's own is newer.
func (t *Table) Restore(r io.Reader, remap func(Meta) (Meta, bool)) (int, error) {
	recs, err := readState(r)
	if err != nil {
		return 0, err
	}
	restored := 0
	var e entry
	for off := 0; off < len(recs); off += recordSize {
		left := getRecord(recs[off:], &e)
		if remap != nil {
			m, keep := remap(e.meta())
			if !keep {
				continue
			}
			e.setMeta(m)
		}
		if t.restoreEntry(&e, left) {
			restored++
		}
	}
	return restored, nil
}

// restoreEntry adds connection e, with left nanoseconds to live, unless the
// table holds its tuple already or is full.
func (t *Table) restoreEntry(e *entry, left int64) bool {
	h := t.seed.hash(&e.key)
	s := &t.shards[h>>t.shift]
	s.mu.Lock()
	now := t.clock.Now()
	if pos, idx, old := s.find(&e.key, uint32(h)); old != nil {
		if old.expires > now {
			s.mu.Unlock()
			return false
		}
		s.expired++
		t.release(s, pos, idx, old)
	}
	if t.count.Add(1) > t.max {
		t.count.Add(-1)
		s.refused++
		s.mu.Unlock()
		return false
	}
	idx, slot := s.alloc()
	gen := slot.gen
	*slot = *e
	slot.gen = gen
	slot.expires = now + min(left, t.timeout(e.key.Proto, e.state))
	s.put(uint32(h), idx)
	s.states[e.state]++
	s.protos[protoClass(e.key.Proto)]++
	s.mu.Unlock()
	return true
}

// readState reads a saved table, checks all of it and returns its records.
func readState(r io.Reader) ([]byte, error) {
	var hdr [headerSize]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("conntrack state: %w", err)
		}
		if string(hdr[:min(n, len(stateMagic))]) != stateMagic[:min(n, len(stateMagic))] {
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
	if count > (math.MaxInt-headerSize-crcSize)/recordSize {
		return nil, fmt.Errorf("conntrack state: entry count %d too large", count)
	}
	total := headerSize + int(count)*recordSize + crcSize

	// Grow the buffer as the data comes rather than trusting the count.
	buf := make([]byte, headerSize, min(total, 1<<20))
	copy(buf, hdr[:])
	for len(buf) < total {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(total-len(buf), len(buf)))
		}
		n, err := io.ReadFull(r, buf[len(buf):min(cap(buf), total)])
		buf = buf[:len(buf)+n]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("conntrack state: truncated after %d of %d entries",
				(len(buf)-headerSize)/recordSize, count)
		}
		if err != nil {
			return nil, fmt.Errorf("conntrack state: %w", err)
		}
	}
	var extra [1]byte
	if n, err := io.ReadFull(r, extra[:]); n > 0 {
		return nil, errors.New("conntrack state: data after the checksum")
	} else if err != io.EOF {
		return nil, fmt.Errorf("conntrack state: %w", err)
	}
	body := buf[:total-crcSize]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(buf[total-crcSize:]) {
		return nil, errors.New("conntrack state: checksum mismatch")
	}
	recs := body[headerSize:]
	for off := 0; off < len(recs); off += recordSize {
		if err := checkRecord(recs[off:]); err != nil {
			return nil, fmt.Errorf("conntrack state: entry %d of %d: %w", off/recordSize+1, count, err)
		}
	}
	return recs, nil
}
