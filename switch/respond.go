package vswitch

import (
	"net/netip"
	"sync"

	"github.com/google/gopacket"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/encode"
)

// The local responders answer ARP, neighbour and router solicitations and
// DHCP themselves, so that no broadcast or multicast ever has to leave an
// instance. This is the control path of a few frames per VM boot, not the
// forwarding path, and it is bounded by a per-port token bucket so that a
// flood of requests cannot turn into CPU burnt on answers (DHCP starvation,
// ARP storms).
const (
	responderRate  = 50  // answers per second per port, sustained
	responderBurst = 200 // and in a burst (a VM boot asks a handful)
)

// replyBuffer is a worker's reusable reply memory: the answer is built in
// raw (filter/encode, no gopacket layers: their package initialisation
// cost every sgswitch command 20–45 ms) and handed to the ports in buf, a
// gopacket serialisation buffer, whose PrependBytes makes room for a
// virtio-net header in front of it.
type replyBuffer struct {
	raw []byte
	buf gopacket.SerializeBuffer
}

// frame returns raw emptied, for an answer to be appended to.
func (r *replyBuffer) frame() []byte {
	if r.raw == nil {
		r.raw = make([]byte, 0, 1024)
	}
	return r.raw[:0]
}

// done makes b, appended to frame(), the reply, and returns it.
func (r *replyBuffer) done(b []byte) []byte {
	r.raw = b[:0]
	if r.buf == nil {
		r.buf = gopacket.NewSerializeBuffer()
	}
	r.buf.Clear()
	out, _ := r.buf.AppendBytes(len(b)) // cannot fail: the buffer grows
	copy(out, b)
	return out
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
	var mac [6]byte
	if owner, ok := st.owner4[f.ARPTPA]; ok {
		mac = st.inst[owner].id.MAC
	} else {
		mac = st.remote4[f.ARPTPA]
	}
	b := encode.ARP(sc.reply.frame(), f.ARPSHA, mac, 2, mac, f.ARPTPA, f.ARPSHA, f.ARPSPA)
	return sc.reply.done(b), filter.ReasonARPReply, nil
}

var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = [6]byte{0x33, 0x33, 0, 0, 0, 1}
)

// answerNS answers a neighbour solicitation for a known address with the owner's MAC.
func (s *Switch) answerNS(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error) {
	f := &sc.frame
	var mac [6]byte
	if owner, ok := st.owner6[f.NDTarget]; ok {
		mac = st.inst[owner].id.MAC
	} else {
		mac = st.remote6[f.NDTarget]
	}
	dstIP, dstMAC := f.SrcIP, f.Src
	flags := uint8(0x60) // solicited + override
	if f.SrcIP.IsUnspecified() {
		// A DAD probe for someone else's address: tell everyone it is taken (RFC 4861 §7.2.4).
		dstIP, dstMAC, flags = allNodes, allNodesMAC, 0x20
	}
	icmp := encode.ICMPHeader(encode.ICMPv6NeighborAdvert, 0)
	na := encode.NeighborAdvertBody(flags, f.NDTarget, mac)
	b := encode.Packet(sc.reply.frame(), dstMAC, mac, f.NDTarget, dstIP, encode.ProtoICMPv6, 255, icmp[:], na[:])
	return sc.reply.done(b), filter.ReasonNDReply, nil
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
	dstIP, dstMAC := f.SrcIP, f.Src
	if f.SrcIP.IsUnspecified() {
		dstIP, dstMAC = allNodes, allNodesMAC
	}
	icmp := encode.ICMPHeader(encode.ICMPv6RouterAdvert, 0)
	ra := encode.RouterAdvertBody(64, 0, 0)
	sll := encode.NDLinkAddrOption(encode.NDOptSourceLinkAddr, SwitchMAC)
	// On-link, not autonomous: the address is configured, not derived;
	// infinite lifetimes.
	pi := encode.PrefixInfoOption(ip.pfx6, 0x80, 0xffffffff, 0xffffffff)
	b := encode.Packet(sc.reply.frame(), dstMAC, SwitchMAC, src, dstIP, encode.ProtoICMPv6, 255, icmp[:], ra[:], sll[:], pi[:])
	return sc.reply.done(b), filter.ReasonNDReply, nil
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
