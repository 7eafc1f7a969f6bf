package filter_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// mutate copies frame and applies fn to the copy.
func mutate(frame []byte, fn func(b []byte) []byte) []byte {
	return fn(append([]byte(nil), frame...))
}

// setIPv4Total rewrites the IPv4 total length.
func setIPv4Total(b []byte, n int) { binary.BigEndian.PutUint16(b[14+2:], uint16(n)) }

// TestDecodeMalformed has one row per malformed-header case of ATTACKS.md:
// each is a value, never a panic or a read past the buffer.
func TestDecodeMalformed(t *testing.T) {
	tcp := ft.TCP(web1, db1, 40000, 80, "S", 1, 0, []byte("hello"))
	udp := ft.UDP(web1, db1, 5000, 53, []byte("q"))
	arp := ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP)
	tcp6 := ft.TCP(web1v6, db1v6, 40000, 80, "S", 1, 0, nil)
	ns := ft.NeighborSolicit(web1MAC, web1LL, db1v6.IP)
	tests := []struct {
		name   string
		frame  []byte
		reason filter.Reason
	}{
		{"empty read", []byte{}, filter.ReasonMalformed},
		{"under 14 bytes", tcp[:13], filter.ReasonMalformed},
		{"ipv4 header cut", tcp[:14+19], filter.ReasonMalformed},
		{"ihl below 5", mutate(tcp, func(b []byte) []byte { b[14] = 0x44; return b }), filter.ReasonMalformed},
		{"ihl beyond frame", mutate(tcp, func(b []byte) []byte { b[14] = 0x4f; return b[:14+40] }), filter.ReasonMalformed},
		{"total length below header", mutate(tcp, func(b []byte) []byte { setIPv4Total(b, 19); return b }), filter.ReasonMalformed},
		{"total length beyond frame", mutate(tcp, func(b []byte) []byte { setIPv4Total(b, len(b)); return b }), filter.ReasonMalformed},
		{"wrong ip version", mutate(tcp, func(b []byte) []byte { b[14] = 0x65; return b }), filter.ReasonMalformed},
		{"zero-length ipv4 option", mutate(tcp, func(b []byte) []byte {
			out := append(append(append([]byte(nil), b[:34]...), 0x44, 0, 0, 0), b[34:]...)
			out[14] = 0x46
			setIPv4Total(out, len(out)-14)
			return out
		}), filter.ReasonMalformed},
		{"tcp data offset below 5", mutate(tcp, func(b []byte) []byte { b[34+12] = 0x40; return b }), filter.ReasonMalformed},
		{"tcp data offset past end", mutate(tcp, func(b []byte) []byte { b[34+12] = 0xf0; return b }), filter.ReasonMalformed},
		{"zero-length tcp option", mutate(tcp, func(b []byte) []byte {
			out := append(append(append([]byte(nil), b[:54]...), 2, 0, 0, 0), b[54:]...)
			out[34+12] = 0x60
			setIPv4Total(out, len(out)-14)
			return out
		}), filter.ReasonMalformed},
		{"tcp header cut", mutate(tcp, func(b []byte) []byte { setIPv4Total(b, 20+10); return b[:14+30] }), filter.ReasonMalformed},
		{"udp length below 8", mutate(udp, func(b []byte) []byte { b[34+5] = 4; b[34+4] = 0; return b }), filter.ReasonMalformed},
		{"udp length beyond datagram", mutate(udp, func(b []byte) []byte { b[34+5] = 200; return b }), filter.ReasonMalformed},
		{"arp cut", arp[:14+20], filter.ReasonMalformed},
		{"arp not ethernet/ipv4", mutate(arp, func(b []byte) []byte { b[14+5] = 16; return b }), filter.ReasonMalformed},
		{"arp bad opcode", mutate(arp, func(b []byte) []byte { b[14+7] = 9; return b }), filter.ReasonMalformed},
		{"ipv6 header cut", tcp6[:14+39], filter.ReasonMalformed},
		{"ipv6 payload length beyond frame", mutate(tcp6, func(b []byte) []byte { b[14+5] = 200; return b }), filter.ReasonMalformed},
		{"ipv6 extension header past end", mutate(tcp6, func(b []byte) []byte { b[14+6] = 60; b[54+1] = 200; return b }), filter.ReasonMalformed},
		{"ipv6 extension chain too long", ipv6Chain(tcp6, 20), filter.ReasonMalformed},
		{"nd option of length zero", mutate(ns, func(b []byte) []byte { b[len(b)-7] = 0; return b }), filter.ReasonMalformed},
		{"neighbour solicitation cut", mutate(ns, func(b []byte) []byte {
			b = b[:14+40+12]
			b[14+4], b[14+5] = 0, 12
			return b
		}), filter.ReasonMalformed},
		// RFC 1858: a first fragment too short for the TCP header.
		{"tiny first fragment", mutate(tcp, func(b []byte) []byte {
			b[14+6] = 0x20 // more fragments
			setIPv4Total(b, 20+8)
			return b[:14+28]
		}), filter.ReasonFragment},
		// RFC 7112: an IPv6 first fragment that ends inside its extension headers.
		{"ipv6 first fragment without upper layer", ipv6FirstFragmentNoUpper(tcp6), filter.ReasonFragment},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f filter.Frame
			if r := f.Decode(tc.frame); r != tc.reason {
				t.Errorf("Decode = %v, want %v", r, tc.reason)
			}
		})
	}
}

// ipv6Chain puts n destination-options headers in front of the payload.
func ipv6Chain(frame []byte, n int) []byte {
	out := append([]byte(nil), frame[:54]...)
	next := out[14+6]
	out[14+6] = 60
	for i := 0; i < n; i++ {
		nx := byte(60)
		if i == n-1 {
			nx = next
		}
		out = append(out, nx, 0, 1, 4, 0, 0, 0, 0)
	}
	out = append(out, frame[54:]...)
	binary.BigEndian.PutUint16(out[14+4:], uint16(len(out)-54))
	return out
}

// ipv6FirstFragmentNoUpper is a first fragment whose destination-options
// header runs past the fragment's end.
func ipv6FirstFragmentNoUpper(frame []byte) []byte {
	out := append([]byte(nil), frame[:54]...)
	out[14+6] = 44
	out = append(out, 60, 0, 0, 1, 0, 0, 0, 7) // fragment: offset 0, more, next = dest opts
	out = append(out, 6, 10, 0, 0, 0, 0, 0, 0) // dest opts claiming 88 bytes
	binary.BigEndian.PutUint16(out[14+4:], uint16(len(out)-54))
	return out
}

func TestDecodeFields(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		var f filter.Frame
		if r := f.Decode(ft.TCP(web1, db1, 40000, 3306, "SA", 7, 9, []byte("abc"))); r != filter.ReasonNone {
			t.Fatal(r)
		}
		if f.SrcIP != web1.IP || f.DstIP != db1.IP || f.Proto != filter.ProtoTCP || f.SrcPort != 40000 || f.DstPort != 3306 ||
			f.TCPFlags != filter.TCPSyn|filter.TCPAck || f.TCPSeq != 7 || f.TCPAck != 9 || f.PayloadLen != 3 || f.Src != [6]byte(web1MAC) {
			t.Errorf("decoded %+v", f)
		}
	})
	t.Run("ethernet padding is trimmed", func(t *testing.T) {
		frame := append(ft.UDP(web1, db1, 1, 2, nil), make([]byte, 18)...) // padded to 60 bytes
		var f filter.Frame
		if r := f.Decode(frame); r != filter.ReasonNone {
			t.Fatal(r)
		}
		if len(f.Buf) != 14+28 || f.PayloadLen != 0 {
			t.Errorf("len(Buf) = %d, payload %d; want 42, 0", len(f.Buf), f.PayloadLen)
		}
	})
	t.Run("later fragment has no l4", func(t *testing.T) {
		frame := mutate(ft.TCP(web1, db1, 1, 2, "A", 1, 1, make([]byte, 64)), func(b []byte) []byte {
			b[14+6], b[14+7] = 0x00, 0x08 // offset 64 bytes
			return b
		})
		var f filter.Frame
		if r := f.Decode(frame); r != filter.ReasonNone {
			t.Fatal(r)
		}
		if !f.Fragment || f.FragOff != 64 || f.L4 != 0 || f.SrcPort != 0 {
			t.Errorf("decoded %+v", f)
		}
	})
	t.Run("icmp echo id", func(t *testing.T) {
		var f filter.Frame
		f.Decode(ft.ICMPEcho(web1, db1, 77, 1, true))
		if f.ICMPType != 8 || f.ICMPID != 77 {
			t.Errorf("type %d id %d", f.ICMPType, f.ICMPID)
		}
	})
	t.Run("neighbour solicitation", func(t *testing.T) {
		var f filter.Frame
		f.Decode(ft.NeighborSolicit(web1MAC, web1LL, db1v6.IP))
		if f.NDTarget != db1v6.IP || !f.NDHasLinkAddr || f.NDLinkAddr != [6]byte(web1MAC) {
			t.Errorf("decoded %+v", f)
		}
	})
	t.Run("arp", func(t *testing.T) {
		var f filter.Frame
		f.Decode(ft.ARP(2, gwMAC, web1MAC, web1.IP, gwMAC, netip.MustParseAddr("10.0.0.1")))
		if f.ARPOp != 2 || f.ARPSPA != web1.IP || f.ARPTHA != [6]byte(gwMAC) {
			t.Errorf("decoded %+v", f)
		}
	})
}

func TestDecodeAllocs(t *testing.T) {
	for name, b := range map[string][]byte{
		"tcp":   ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil),
		"udp":   ft.UDP(web1v6, db1v6, 5000, 53, []byte("q")),
		"icmp":  ft.ICMPEcho(web1, db1, 1, 1, true),
		"arp":   ft.ARP(1, ft.Broadcast, web1MAC, web1.IP, nil, db1.IP),
		"icmp6": ft.ICMPEcho(web1v6, db1v6, 1, 1, true),
	} {
		var f filter.Frame
		if n := testing.AllocsPerRun(100, func() { f.Decode(b) }); n != 0 {
			t.Errorf("%s: Decode allocates %v times", name, n)
		}
	}
}
