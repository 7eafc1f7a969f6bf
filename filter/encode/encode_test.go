package encode

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

var (
	macA = [6]byte{2, 0, 0, 0, 0, 0x11}
	macB = [6]byte{2, 0, 0, 0, 0, 0x21}
)

// TestPacketMatchesGopacket builds the same frames with Packet and with
// framegen (gopacket's serialisation) and compares them byte for byte; the
// only difference allowed is the IPv4 identification, which framegen sets
// to 1 (and the header checksum that covers it, checked on its own).
func TestPacketMatchesGopacket(t *testing.T) {
	for _, fam := range []struct {
		name     string
		src, dst netip.Addr
	}{
		{"v4", netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("192.0.2.7")},
		{"v6", netip.MustParseAddr("2001:db8::11"), netip.MustParseAddr("2001:db8::7")},
	} {
		a, b := ft.Host{MAC: macA[:], IP: fam.src}, ft.Host{MAC: macB[:], IP: fam.dst}
		icmp, echoReq := uint8(ProtoICMP), uint8(8)
		hops := uint8(64)
		if fam.src.Is6() {
			icmp, echoReq, hops = ProtoICMPv6, 128, 255
		}
		tcp := TCPHeader(40000, 443, SYN|ACK, 7, 9, 65535)
		udp := UDPHeader(5353, 53)
		ih := ICMPHeader(echoReq, 0)
		echo := Echo(3, 4)
		cases := []struct {
			name      string
			got, want []byte
		}{
			{"tcp", Packet(nil, macB, macA, fam.src, fam.dst, ProtoTCP, 64, tcp[:], []byte("hello")),
				ft.TCP(a, b, 40000, 443, "SA", 7, 9, []byte("hello"))},
			{"udp", Packet(nil, macB, macA, fam.src, fam.dst, ProtoUDP, 64, udp[:], make([]byte, 31)),
				ft.UDP(a, b, 5353, 53, make([]byte, 31))},
			{"echo", Packet(nil, macB, macA, fam.src, fam.dst, icmp, hops, ih[:], echo[:], []byte("ping")),
				ft.ICMPEcho(a, b, 3, 4, true)},
			{"other protocol", Packet(nil, macB, macA, fam.src, fam.dst, 47, 64, make([]byte, 16)),
				ft.IPPacket(a, b, 47, make([]byte, 16))},
		}
		for _, c := range cases {
			got, want := append([]byte(nil), c.got...), append([]byte(nil), c.want...)
			if fam.src.Is4() {
				checkIPv4Header(t, fam.name+" "+c.name, got[14:34])
				for _, i := range []int{18, 19, 24, 25} { // identification, header checksum
					got[i], want[i] = 0, 0
				}
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s %s:\n got % x\nwant % x", fam.name, c.name, got, want)
			}
		}
	}
}

func checkIPv4Header(t *testing.T, name string, h []byte) {
	t.Helper()
	if fold(sum(0, h)) != 0xffff {
		t.Errorf("%s: IPv4 header checksum does not verify: % x", name, h)
	}
}

func TestARPMatchesGopacket(t *testing.T) {
	spa, tpa := netip.MustParseAddr("10.0.0.21"), netip.MustParseAddr("10.0.0.11")
	got := ARP(nil, macA, macB, 2, macB, spa, macA, tpa)
	want := ft.ARPFrom(macB[:], 2, macA[:], macB[:], spa, macA[:], tpa)
	if !bytes.Equal(got, want) {
		t.Fatalf("\n got % x\nwant % x", got, want)
	}
}

// TestNeighborDiscovery decodes an advertisement built here with gopacket.
func TestNeighborDiscovery(t *testing.T) {
	target := netip.MustParseAddr("fe80::21")
	dst := netip.MustParseAddr("fe80::11")
	ih := ICMPHeader(ICMPv6NeighborAdvert, 0)
	na := NeighborAdvertBody(0x60, target, macB)
	frame := Packet(nil, macA, macB, target, dst, ProtoICMPv6, 255, ih[:], na[:])
	want := ft.NeighborAdvert(macB[:], target, target, macB[:], ft.Host{MAC: macA[:], IP: dst})
	if !bytes.Equal(frame, want) {
		t.Fatalf("\n got % x\nwant % x", frame, want)
	}

	rh := ICMPHeader(ICMPv6RouterAdvert, 0)
	ra := RouterAdvertBody(64, 0, 1800)
	sll := NDLinkAddrOption(NDOptSourceLinkAddr, macA)
	pi := PrefixInfoOption(netip.MustParsePrefix("2001:db8:1::5/64"), 0x80, 0xffffffff, 0xffffffff)
	frame = Packet(nil, [6]byte{0x33, 0x33, 0, 0, 0, 1}, macA, dst, netip.MustParseAddr("ff02::1"), ProtoICMPv6, 255, rh[:], ra[:], sll[:], pi[:])
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	r, _ := p.Layer(layers.LayerTypeICMPv6RouterAdvertisement).(*layers.ICMPv6RouterAdvertisement)
	if r == nil || r.HopLimit != 64 || r.RouterLifetime != 1800 || len(r.Options) != 2 ||
		r.Options[0].Type != layers.ICMPv6OptSourceAddress || !bytes.Equal(r.Options[0].Data, macA[:]) ||
		r.Options[1].Type != layers.ICMPv6OptPrefixInfo || r.Options[1].Data[0] != 64 ||
		!bytes.Equal(r.Options[1].Data[14:30], netip.MustParseAddr("2001:db8:1::").AsSlice()) {
		t.Fatalf("router advertisement decodes as %v", p)
	}
	want = ft.RouterAdvert(macA[:], dst)
	noPrefix := Packet(nil, [6]byte{0x33, 0x33, 0, 0, 0, 1}, macA, dst, netip.MustParseAddr("ff02::1"), ProtoICMPv6, 255, rh[:], ra[:], sll[:])
	if !bytes.Equal(noPrefix, want) {
		t.Fatalf("router advertisement\n got % x\nwant % x", noPrefix, want)
	}
}

// TestDHCP builds an offer and decodes it with gopacket.
func TestDHCP(t *testing.T) {
	m := DHCP{Op: 2, Xid: 42, Flags: 0x8000, YIAddr: netip.MustParseAddr("10.0.0.11"), CHAddr: macA}
	b := m.Append(nil)
	b = DHCPOption(b, DHCPOptMessageType, DHCPOffer)
	b = DHCPOption(b, DHCPOptRouter, 10, 0, 0, 1)
	b = DHCPEnd(b, 0)
	if len(b) != 300 {
		t.Fatalf("message of %d bytes, want the 300 of a minimal BOOTP message", len(b))
	}
	udp := UDPHeader(67, 68)
	frame := Packet(nil, macA, macB, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("255.255.255.255"), ProtoUDP, 64, udp[:], b)
	checkIPv4Header(t, "dhcp", frame[14:34])
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	d, _ := p.Layer(layers.LayerTypeDHCPv4).(*layers.DHCPv4)
	if d == nil || d.Operation != layers.DHCPOpReply || d.Xid != 42 || d.Flags != 0x8000 || !bytes.Equal(d.ClientHWAddr, macA[:]) ||
		!d.YourClientIP.Equal(netip.MustParseAddr("10.0.0.11").AsSlice()) || len(d.Options) != 2 ||
		d.Options[0].Type != layers.DHCPOptMessageType || d.Options[0].Data[0] != byte(layers.DHCPMsgTypeOffer) ||
		d.Options[1].Type != layers.DHCPOptRouter || !bytes.Equal(d.Options[1].Data, []byte{10, 0, 0, 1}) {
		t.Fatalf("offer decodes as %v", p)
	}
	u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if u == nil || int(u.Length) != 8+len(b) || u.Checksum != udpChecksum(frame) {
		t.Fatalf("udp header %+v", u)
	}
}

// udpChecksum recomputes an IPv4 UDP frame's checksum the long way.
func udpChecksum(frame []byte) uint16 {
	ip, l4 := frame[14:34], frame[34:]
	var s uint32
	for i := 12; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	s += ProtoUDP + uint32(len(l4))
	seg := append([]byte(nil), l4...)
	seg[6], seg[7] = 0, 0
	if len(seg)%2 == 1 {
		seg = append(seg, 0)
	}
	for i := 0; i < len(seg); i += 2 {
		s += uint32(binary.BigEndian.Uint16(seg[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

func TestAppendAllocatesNothing(t *testing.T) {
	buf := make([]byte, 0, 1500)
	src, dst := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.0.0.21")
	if n := testing.AllocsPerRun(100, func() {
		h := TCPHeader(1, 2, SYN, 1, 0, 65535)
		buf = Packet(buf[:0], macB, macA, src, dst, ProtoTCP, 64, h[:])
		buf = ARP(buf[:0], macB, macA, 1, macA, src, [6]byte{}, dst)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
