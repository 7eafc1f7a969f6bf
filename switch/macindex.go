package vswitch

import "math/bits"

// macIndex maps the instances' MAC addresses to their port ids: the one
// lookup every unicast frame makes. It is an open-addressing table over the
// MACs as integers, built once per state and read without locks; a Go map
// with a [6]byte key costs about three times as much per lookup here.
type macIndex struct {
	keys  []uint64 // MAC in the low 48 bits, bit 63 set: a used slot
	vals  []int32
	shift uint8
}

const macUsed = 1 << 63

func macKey(m [6]byte) uint64 {
	return macUsed | uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// newMACIndex builds the index of m, sized at most half full.
func newMACIndex(m map[[6]byte]int32) macIndex {
	size := 8
	for size < 2*len(m) {
		size *= 2
	}
	x := macIndex{keys: make([]uint64, size), vals: make([]int32, size), shift: uint8(64 - bits.TrailingZeros(uint(size)))}
	for mac, id := range m {
		k := macKey(mac)
		i := x.slot(k)
		for x.keys[i] != 0 {
			i = (i + 1) & uint64(size-1)
		}
		x.keys[i], x.vals[i] = k, id
	}
	return x
}

func (x *macIndex) slot(k uint64) uint64 { return (k * 0x9E3779B97F4A7C15) >> x.shift }

// lookup returns the port id of mac.
func (x *macIndex) lookup(mac [6]byte) (int32, bool) {
	k := macKey(mac)
	mask := uint64(len(x.keys) - 1)
	for i := x.slot(k); ; i = (i + 1) & mask {
		switch x.keys[i] {
		case k:
			return x.vals[i], true
		case 0:
			return -1, false
		}
	}
}
