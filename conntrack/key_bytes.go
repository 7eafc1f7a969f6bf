package conntrack

import "encoding/binary"

// SetFromBytes sets k from addresses as they lie in a packet: 4 bytes each
// for IPv4 (stored IPv4-mapped), 16 for IPv6. It is KeyFrom for the packet
// path, which has the header bytes at hand: it writes the key in place, a
// machine word at a time, so that Track's word-wise reads of it are served
// from the store buffer (a 40-byte Key built and then copied cost about 9 ns
// a frame, most of it a failed store-to-load forward).
func (k *Key) SetFromBytes(proto uint8, src, dst []byte, sport, dport uint16, zone uint16) {
	k.SrcPort, k.DstPort, k.Proto, k.Zone = sport, dport, proto, zone
	if len(src) == 4 && len(dst) == 4 {
		// ::ffff:a.b.c.d: eight zero bytes, then 00 00 ff ff a b c d.
		const mapped = 0xffff << 16
		binary.LittleEndian.PutUint64(k.Src[:8], 0)
		binary.LittleEndian.PutUint64(k.Src[8:], mapped|uint64(binary.LittleEndian.Uint32(src))<<32)
		binary.LittleEndian.PutUint64(k.Dst[:8], 0)
		binary.LittleEndian.PutUint64(k.Dst[8:], mapped|uint64(binary.LittleEndian.Uint32(dst))<<32)
		return
	}
	copy(k.Src[:], src)
	copy(k.Dst[:], dst)
}
