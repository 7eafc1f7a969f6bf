package conntrack

// KeyFromBytes builds a key from addresses as they lie in a packet: 4 bytes
// each for IPv4 (stored IPv4-mapped), 16 for IPv6. It is KeyFrom for the
// packet path, which has the header bytes at hand and need not round-trip
// them through netip.Addr.
func KeyFromBytes(proto uint8, src, dst []byte, sport, dport uint16, zone uint16) Key {
	k := Key{SrcPort: sport, DstPort: dport, Proto: proto, Zone: zone}
	if len(src) == 4 && len(dst) == 4 {
		k.Src[10], k.Src[11] = 0xff, 0xff
		k.Dst[10], k.Dst[11] = 0xff, 0xff
		copy(k.Src[12:], src)
		copy(k.Dst[12:], dst)
		return k
	}
	copy(k.Src[:], src)
	copy(k.Dst[:], dst)
	return k
}
