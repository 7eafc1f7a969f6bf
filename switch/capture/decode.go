package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// The formats: pcap (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap)
// and pcapng (draft-ietf-opsawg-pcapng), decoded from the bytes in place.
const (
	pcapMagicMicro = 0xa1b2c3d4
	pcapMagicNano  = 0xa1b23c4d
	ngSHB          = 0x0a0d0d0a // section header block (a palindrome: same in both orders)
	ngByteOrder    = 0x1a2b3c4d
	ngIDB          = 1 // interface description
	ngOPB          = 2 // packet block (obsolete, still written by old tools)
	ngSPB          = 3 // simple packet block
	ngEPB          = 6 // enhanced packet block

	linkEthernet = 1
)

// iface is a pcapng interface: its link type and how to read its timestamps.
type iface struct {
	linkType uint16
	snapLen  uint32
	// A timestamp in the interface's units is ts*mul/div nanoseconds for a
	// decimal resolution, (ts*1e9)>>shift for a binary one (shift > 0).
	mul, div uint64
	shift    uint
	offset   int64 // if_tsoffset, in nanoseconds
}

func (f *iface) nanos(ts uint64) int64 {
	var ns uint64
	if f.shift > 0 {
		hi, lo := bits.Mul64(ts, 1e9)
		ns = hi<<(64-f.shift) | lo>>f.shift
	} else {
		ns = ts * f.mul / f.div
	}
	return int64(ns) + f.offset
}

// decoder decodes the records of one file: pcap or pcapng.
type decoder struct {
	ng     bool
	big    bool // big-endian file (pcap) or section (pcapng)
	nanos  bool // pcap: nanosecond timestamps
	ifaces []iface
	lastTS int64 // for pcapng simple packet blocks, which carry none
	seen   bool  // pcapng: a section header was read
}

func (d *decoder) u16(b []byte) uint16 {
	if d.big {
		return binary.BigEndian.Uint16(b)
	}
	return binary.LittleEndian.Uint16(b)
}

func (d *decoder) u32(b []byte) uint32 {
	if d.big {
		return binary.BigEndian.Uint32(b)
	}
	return binary.LittleEndian.Uint32(b)
}

func (d *decoder) what() string {
	if d.ng {
		return "block"
	}
	return "frame record"
}

// start reads the file header from b (at least 24 bytes unless the file is
// shorter) and returns its length.
func (d *decoder) start(b []byte, eof bool) (int, error) {
	*d = decoder{}
	if len(b) < 4 {
		return 0, fmt.Errorf("not a capture file: %d bytes long", len(b))
	}
	if binary.LittleEndian.Uint32(b) == ngSHB {
		d.ng = true
		return 0, nil // the section header is a block like the others
	}
	switch {
	case binary.LittleEndian.Uint32(b) == pcapMagicMicro:
	case binary.LittleEndian.Uint32(b) == pcapMagicNano:
		d.nanos = true
	case binary.BigEndian.Uint32(b) == pcapMagicMicro:
		d.big = true
	case binary.BigEndian.Uint32(b) == pcapMagicNano:
		d.big, d.nanos = true, true
	default:
		return 0, fmt.Errorf("not a pcap or pcapng file (it starts with % x)", b[:4])
	}
	if len(b) < 24 {
		return 0, fmt.Errorf("truncated: the pcap file header needs 24 bytes, the file ends after %d", len(b))
	}
	// The link type's upper bits may carry FCS information.
	if lt := d.u32(b[20:]) & 0xffff; lt != linkEthernet {
		return 0, fmt.Errorf("link type %d; sgswitch replays Ethernet captures (link type 1) only", lt)
	}
	return 24, nil
}

// need is how many bytes the record starting at b takes (its header's, if
// even that is not all there).
func (d *decoder) need(b []byte) (int, error) {
	if !d.ng {
		if len(b) < 16 {
			return 16, nil
		}
		n := d.u32(b[8:])
		if n > maxRecord {
			return 0, fmt.Errorf("frame record claims %d captured bytes (damaged file?)", n)
		}
		return 16 + int(n), nil
	}
	if len(b) < 12 {
		return 12, nil
	}
	if binary.LittleEndian.Uint32(b) == ngSHB {
		if err := d.order(b); err != nil {
			return 0, err
		}
	}
	n := d.u32(b[4:])
	if n < 12 || n%4 != 0 || n > maxRecord {
		return 0, fmt.Errorf("block of type %#x has an invalid length %d (a multiple of 4 from 12 to %d)", d.u32(b), n, maxRecord)
	}
	return int(n), nil
}

// order sets the byte order from a section header block.
func (d *decoder) order(b []byte) error {
	switch {
	case binary.LittleEndian.Uint32(b[8:]) == ngByteOrder:
		d.big = false
	case binary.BigEndian.Uint32(b[8:]) == ngByteOrder:
		d.big = true
	default:
		return fmt.Errorf("section header block with an unknown byte-order magic % x", b[8:12])
	}
	return nil
}

// record decodes the record at the start of b. It returns its size (0 when
// b does not hold all of it yet) and the frame it carries (nil for pcapng
// blocks that carry none).
func (d *decoder) record(b []byte) (size int, data []byte, ts int64, err error) {
	if !d.ng {
		if len(b) < 16 {
			return 0, nil, 0, nil
		}
		capLen, origLen := d.u32(b[8:]), d.u32(b[12:])
		if capLen > maxRecord {
			return 0, nil, 0, fmt.Errorf("frame record claims %d captured bytes (damaged file?)", capLen)
		}
		end := 16 + int(capLen)
		if len(b) < end {
			return 0, nil, 0, nil
		}
		if capLen < origLen {
			return 0, nil, 0, fmt.Errorf("frame captured %d of %d bytes; replay needs whole frames (capture with a larger snap length)", capLen, origLen)
		}
		frac := int64(d.u32(b[4:]))
		if !d.nanos {
			frac *= 1000
		}
		return end, b[16:end:end], int64(d.u32(b))*1e9 + frac, nil
	}
	n, err := d.need(b)
	if err != nil || len(b) < n {
		return 0, nil, 0, err
	}
	typ := d.u32(b)
	if t := d.u32(b[n-4:]); t != uint32(n) {
		return 0, nil, 0, fmt.Errorf("block of type %#x: length %d at its start but %d at its end", typ, n, t)
	}
	body := b[8 : n-4]
	if !d.seen && typ != ngSHB {
		return 0, nil, 0, errors.New("pcapng file does not start with a section header block")
	}
	switch typ {
	case ngSHB:
		if n < 28 {
			return 0, nil, 0, fmt.Errorf("section header block of %d bytes (at least 28)", n)
		}
		d.seen = true
		d.ifaces = d.ifaces[:0]
		return n, nil, 0, nil
	case ngIDB:
		if len(body) < 8 {
			return 0, nil, 0, fmt.Errorf("interface description block of %d bytes (at least 20)", n)
		}
		f := iface{linkType: d.u16(body), snapLen: d.u32(body[4:]), mul: 1000, div: 1}
		if err := d.ifaceOptions(&f, body[8:]); err != nil {
			return 0, nil, 0, err
		}
		d.ifaces = append(d.ifaces, f)
		return n, nil, 0, nil
	case ngEPB, ngOPB:
		if len(body) < 20 {
			return 0, nil, 0, fmt.Errorf("packet block of %d bytes (at least 32)", n)
		}
		var id uint32
		if typ == ngEPB {
			id = d.u32(body)
		} else {
			id = uint32(d.u16(body))
		}
		capLen, origLen := d.u32(body[12:]), d.u32(body[16:])
		if uint64(capLen) > uint64(len(body)-20) {
			return 0, nil, 0, fmt.Errorf("packet block claims %d captured bytes in a block of %d", capLen, n)
		}
		f, err := d.iface(id)
		if err != nil {
			return 0, nil, 0, err
		}
		if capLen < origLen {
			return 0, nil, 0, fmt.Errorf("frame captured %d of %d bytes; replay needs whole frames (capture with a larger snap length)", capLen, origLen)
		}
		ts := f.nanos(uint64(d.u32(body[4:]))<<32 | uint64(d.u32(body[8:])))
		d.lastTS = ts
		end := 20 + int(capLen)
		return n, body[20:end:end], ts, nil
	case ngSPB:
		if len(body) < 4 {
			return 0, nil, 0, fmt.Errorf("simple packet block of %d bytes (at least 16)", n)
		}
		f, err := d.iface(0)
		if err != nil {
			return 0, nil, 0, err
		}
		origLen := d.u32(body)
		capLen := min(uint64(origLen), uint64(len(body)-4))
		if f.snapLen > 0 {
			capLen = min(capLen, uint64(f.snapLen))
		}
		if capLen < uint64(origLen) {
			return 0, nil, 0, fmt.Errorf("frame captured %d of %d bytes; replay needs whole frames (capture with a larger snap length)", capLen, origLen)
		}
		end := 4 + int(capLen)
		return n, body[4:end:end], d.lastTS, nil
	default:
		return n, nil, 0, nil // name resolution, statistics, custom blocks: nothing to replay
	}
}

func (d *decoder) iface(id uint32) (*iface, error) {
	if int64(id) >= int64(len(d.ifaces)) {
		return nil, fmt.Errorf("packet on interface %d, but the section describes %d", id, len(d.ifaces))
	}
	f := &d.ifaces[id]
	if f.linkType != linkEthernet {
		return nil, fmt.Errorf("packet on interface %d of link type %d; sgswitch replays Ethernet captures (link type 1) only", id, f.linkType)
	}
	return f, nil
}

// ifaceOptions reads the options of an interface description block that
// change how its timestamps read: if_tsresol (9) and if_tsoffset (14).
func (d *decoder) ifaceOptions(f *iface, opts []byte) error {
	for len(opts) >= 4 {
		code, l := d.u16(opts), int(d.u16(opts[2:]))
		if code == 0 {
			return nil
		}
		padded := (l + 3) &^ 3
		if 4+padded > len(opts) {
			return fmt.Errorf("interface option %d of %d bytes runs past its block", code, l)
		}
		v := opts[4 : 4+l]
		switch {
		case code == 9 && l == 1:
			r := uint(v[0])
			if r&0x80 != 0 {
				r &= 0x7f
				if r == 0 || r > 63 {
					return fmt.Errorf("interface timestamp resolution 2^-%d is not supported", r)
				}
				f.shift = r
			} else {
				if r > 19 {
					return fmt.Errorf("interface timestamp resolution 10^-%d is not supported", r)
				}
				f.mul, f.div = 1, 1
				for i := r; i < 9; i++ {
					f.mul *= 10
				}
				for i := uint(9); i < r; i++ {
					f.div *= 10
				}
			}
		case code == 14 && l == 8:
			var s uint64
			if d.big {
				s = binary.BigEndian.Uint64(v)
			} else {
				s = binary.LittleEndian.Uint64(v)
			}
			f.offset = int64(s) * 1e9
		}
		opts = opts[4+padded:]
	}
	return nil
}
