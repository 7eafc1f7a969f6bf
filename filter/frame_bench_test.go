package filter_test

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/filter"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// Frames the benchmarks decode, one per kind, as an instance would send them.
var (
	benchVMMAC = ft.MustMAC("02:00:00:00:00:11")
	benchVM    = ft.Host{MAC: benchVMMAC, IP: netip.MustParseAddr("10.0.0.11")}
	benchPeer  = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
	benchVM6   = ft.Host{MAC: benchVMMAC, IP: netip.MustParseAddr("fd00::11")}
	benchPeer6 = ft.Host{MAC: benchPeer.MAC, IP: netip.MustParseAddr("fd00::21")}

	benchTCP4  = ft.TCP(benchVM, benchPeer, 40000, 443, "PA", 1000, 2000, make([]byte, 64))
	benchUDP6  = ft.UDP(benchVM6, benchPeer6, 5000, 53, make([]byte, 32))
	benchARP   = ft.ARP(1, ft.Broadcast, benchVMMAC, benchVM.IP, nil, benchPeer.IP)
	benchICMP4 = ft.ICMPEcho(benchVM, benchPeer, 1, 1, true)
	benchNS6   = ft.NeighborSolicit(benchVMMAC, filter.LinkLocalFromMAC([6]byte(benchVMMAC)), benchPeer6.IP)
)

var (
	benchReason filter.Reason
	benchClass  filter.Class
)

// BenchmarkDecode is Frame.Decode alone, per frame kind.
func BenchmarkDecode(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"tcp4", benchTCP4},
		{"udp6", benchUDP6},
		{"arp", benchARP},
		{"icmp4", benchICMP4},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var f filter.Frame
			if r := f.Decode(bc.frame); r != filter.ReasonNone {
				b.Fatalf("Decode = %v", r)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				benchReason = f.Decode(bc.frame)
			}
		})
	}
}

// BenchmarkGuard is Identity.Guard alone on an already decoded frame.
func BenchmarkGuard(b *testing.B) {
	id := filter.NewIdentity([6]byte(benchVMMAC), benchVM.IP, benchVM6.IP)
	for _, bc := range []struct {
		name  string
		frame []byte
		class filter.Class
	}{
		{"tcp4", benchTCP4, filter.ClassUnicast},
		{"arp", benchARP, filter.ClassARPRequest},
		{"ns6", benchNS6, filter.ClassNeighborSolicit},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var f filter.Frame
			if r := f.Decode(bc.frame); r != filter.ReasonNone {
				b.Fatalf("Decode = %v", r)
			}
			if c, r := id.Guard(&f); c != bc.class {
				b.Fatalf("Guard = %v/%v, want %v", c, r, bc.class)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				benchClass, benchReason = id.Guard(&f)
			}
		})
	}
}

// BenchmarkDecodeGopacket decodes the same frames with gopacket's fastest
// path, a preallocated DecodingLayerParser, for comparison with
// BenchmarkDecode. It decodes the same layers (Ethernet, IP, TCP/UDP/ICMP)
// and stops at the payload.
func BenchmarkDecodeGopacket(b *testing.B) {
	var (
		eth     layers.Ethernet
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		udp     layers.UDP
		icmp4   layers.ICMPv4
		payload gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip4, &ip6, &tcp, &udp, &icmp4, &payload)
	// TCP and UDP name their next layer by port (TLS, DNS); stop there, as
	// Decode does.
	parser.IgnoreUnsupported = true
	decoded := make([]gopacket.LayerType, 0, 8)
	for _, bc := range []struct {
		name  string
		frame []byte
		want  int // layers decoded: Ethernet, IP, TCP/UDP
	}{
		{"tcp4", benchTCP4, 3},
		{"udp6", benchUDP6, 3},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if err := parser.DecodeLayers(bc.frame, &decoded); err != nil || len(decoded) < bc.want {
				b.Fatalf("DecodeLayers = %v, decoded %v", err, decoded)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				_ = parser.DecodeLayers(bc.frame, &decoded)
			}
		})
	}
}
