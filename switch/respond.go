package vswitch

import (
	"net"
	"net/netip"
	"sync"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/filter"
)

// The local responders answer ARP, neighbour and router solicitations and
// DHCP themselves, so that no broadcast or multicast ever has to leave an
// instance. Their replies are built with gopacket: this is the control path
// of a few frames per VM boot, not the forwarding path, and it is bounded by
// a per-port token bucket so that a flood of requests cannot turn into CPU
// burnt on answers (DHCP starvation, ARP storms).
const (
	responderRate  = 50  // answers per second per port, sustained
	responderBurst = 200 // and in a burst (a VM boot asks a handful)
)

// replyBuffer is a worker's reusable serialisation buffer.
type replyBuffer struct {
	buf gopacket.SerializeBuffer
}

func (r *replyBuffer) build(ls ...gopacket.SerializableLayer) ([]byte, error) {
	if r.buf == nil {
		r.buf = gopacket.NewSerializeBuffer()
	}
	err := gopacket.SerializeLayers(r.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...)
	return r.buf.Bytes(), err
}

// answerFunc builds the reply to the frame in sc; a nil reply with a nil
// error means "consumed, nothing to say" and a non-zero Reason overrides
// the default local verdict (e.g. a DHCP request for another MAC).
type answerFunc func(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error)

func (s *Switch) respond(st *state, in int32, sc *Scratch, answer answerFunc) Result {
	if !st.ports[in].limit.take(s.clock.Now()) {
		return drop(filter.ReasonRateLimit)
	}
	reply, reason, err := answer(st, in, sc)
	if err != nil {
		s.log.Warn("building a local reply failed", "port", st.ports[in].device, "err", err)
		return drop(filter.ReasonMalformed)
	}
	switch reason {
	case filter.ReasonARPReply, filter.ReasonNDReply, filter.ReasonDHCPReply, filter.ReasonAnnounce:
	default:
		return drop(reason) // e.g. a DHCP request for another MAC: not answered
	}
	if reply == nil {
		return Result{Verdict: filter.Local, Reason: reason, Out: -1}
	}
	return Result{Verdict: filter.Local, Reason: reason, Out: in}
}

// answerARP answers a request for an address the switch knows, on behalf of its owner.
func (s *Switch) answerARP(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error) {
	f := &sc.frame
	var mac net.HardwareAddr
	if owner, ok := st.owner4[f.ARPTPA]; ok {
		mac = net.HardwareAddr(st.inst[owner].id.MAC[:])
	} else {
		m := st.remote4[f.ARPTPA]
		mac = net.HardwareAddr(m[:])
	}
	asker := net.HardwareAddr(f.ARPSHA[:])
	b, err := sc.reply.build(
		&layers.Ethernet{SrcMAC: mac, DstMAC: asker, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPReply, SourceHwAddress: mac, SourceProtAddress: f.ARPTPA.AsSlice(),
			DstHwAddress: asker, DstProtAddress: f.ARPSPA.AsSlice()})
	return b, filter.ReasonARPReply, err
}

var allNodes = netip.MustParseAddr("ff02::1")

// answerNS answers a neighbour solicitation for a known address with the owner's MAC.
func (s *Switch) answerNS(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error) {
	f := &sc.frame
	var mac net.HardwareAddr
	if owner, ok := st.owner6[f.NDTarget]; ok {
		mac = net.HardwareAddr(st.inst[owner].id.MAC[:])
	} else {
		m := st.remote6[f.NDTarget]
		mac = net.HardwareAddr(m[:])
	}
	dstIP, dstMAC := f.SrcIP, net.HardwareAddr(f.Src[:])
	flags := uint8(0x60) // solicited + override
	if f.SrcIP.IsUnspecified() {
		// A DAD probe for someone else's address: tell everyone it is taken (RFC 4861 §7.2.4).
		dstIP, dstMAC, flags = allNodes, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, 0x20
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: f.NDTarget.AsSlice(), DstIP: dstIP.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		return nil, 0, err
	}
	b, err := sc.reply.build(&layers.Ethernet{SrcMAC: mac, DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6}, ip6, icmp,
		&layers.ICMPv6NeighborAdvertisement{Flags: flags, TargetAddress: f.NDTarget.AsSlice(),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: mac}}})
	return b, filter.ReasonNDReply, err
}

// answerRS answers a router solicitation with a router advertisement that
// makes no claim to be a router (lifetime 0) but tells the instance its
// on-link IPv6 prefix. The default route comes from the real gateway.
func (s *Switch) answerRS(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error) {
	ip := &st.inst[in]
	if !ip.pfx6.IsValid() {
		return nil, filter.ReasonUnanswered, nil
	}
	f := &sc.frame
	src := filter.LinkLocalFromMAC(SwitchMAC)
	dstIP, dstMAC := f.SrcIP, net.HardwareAddr(f.Src[:])
	if f.SrcIP.IsUnspecified() {
		dstIP, dstMAC = allNodes, net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
	}
	ip6 := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: src.AsSlice(), DstIP: dstIP.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)}
	if err := icmp.SetNetworkLayerForChecksum(ip6); err != nil {
		return nil, 0, err
	}
	pfx := ip.pfx6.Masked()
	pi := make([]byte, 30)
	pi[0] = byte(pfx.Bits())
	pi[1] = 0x80                                  // on-link; not autonomous: the address is configured, not derived
	copy(pi[2:6], []byte{0xff, 0xff, 0xff, 0xff}) // valid lifetime: infinite
	copy(pi[6:10], []byte{0xff, 0xff, 0xff, 0xff})
	a := pfx.Addr().As16()
	copy(pi[14:30], a[:])
	b, err := sc.reply.build(&layers.Ethernet{SrcMAC: SwitchMAC[:], DstMAC: dstMAC, EthernetType: layers.EthernetTypeIPv6}, ip6, icmp,
		&layers.ICMPv6RouterAdvertisement{HopLimit: 64,
			Options: layers.ICMPv6Options{
				{Type: layers.ICMPv6OptSourceAddress, Data: SwitchMAC[:]},
				{Type: layers.ICMPv6OptPrefixInfo, Data: pi},
			}})
	return b, filter.ReasonNDReply, err
}

// tokenBucket limits a port's local answers. The port's workers (one per
// queue) take from it; the mutex is rarely contended (answers are few).
type tokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   int64 // nanoseconds
}

func newTokenBucket(rate, burst float64) *tokenBucket {
	return &tokenBucket{rate: rate, burst: burst, tokens: burst}
}

func (b *tokenBucket) take(now int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Workers of one port read the clock at different moments: time that
	// seems to run backwards refills nothing.
	if b.last != 0 && now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)/1e9*b.rate)
	}
	b.last = max(b.last, now)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
