package vswitch

import (
	"fmt"
	"time"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
)

// Comparison replays frames under two configurations at once — the one in
// force and a proposed one — each frame through both complete pipelines
// (two switches, each with its own connection table), and remembers, per
// connection, whether their verdicts ever differ: `replay --against`.
//
// A connection is an IP flow by its 5-tuple, both directions together (an
// ICMP echo exchange by its identifier; another ICMP message by its type and
// code); a frame that is not IP (ARP) or does not decode is a connection of
// its own.
type Comparison struct {
	sides [2]*comparedSide
	conns map[flowID]int32 // → index in list
	list  []comparedConn
	diffs int
}

type comparedSide struct {
	sw    *Switch
	clock *Clock
	sc    Scratch
	tick  int64
}

// flowID is a connection's identity: its key in one canonical direction,
// plus the ICMP type and code of an ICMP message other than echo.
type flowID struct {
	key  conntrack.Key
	icmp uint16
}

type comparedConn struct {
	id    flowID // as its first frame went (the zero key for a frame that is not IP)
	label string // a frame that is not IP: what it is (IP connections are named when listed)
	first int64  // frame number of its first frame
	// opener is, per side, the result of the first frame that a rule (or
	// default egress) let through: what decided the connection; opened says
	// whether there was one.
	opener [2]Result
	opened [2]bool
	differ int64     // frame number of the first frame the sides disagree on; 0 none
	at     [2]Result // each side's result on that frame
}

// Fate is one side's account of a connection whose fate differs.
type Fate struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Rule    string `json:"rule,omitempty"`
}

// FateDiff is a connection that the two configurations treat differently.
type FateDiff struct {
	Connection string `json:"connection"` // as its first frame went: "tcp 192.0.2.80:40001 > 10.0.0.11:80"
	Frame      int64  `json:"frame"`      // its first frame (counting from 1 over all captures)
	DiffersAt  int64  `json:"differs-at"` // the first frame the two verdicts differ on
	// Change is "opened" when the proposed configuration forwards what the
	// current one drops, "cut" the other way round.
	Change   string `json:"change"`
	Current  Fate   `json:"current"`
	Proposed Fate   `json:"proposed"`
}

// NewComparison builds the two pipelines.
func NewComparison(current, proposed *config.Config) (*Comparison, error) {
	c := &Comparison{conns: map[flowID]int32{}}
	for i, cfg := range []*config.Config{current, proposed} {
		side := &comparedSide{clock: &Clock{}}
		sw, err := New(cfg, Options{Clock: side.clock})
		if err != nil {
			return nil, err
		}
		side.sw = sw
		c.sides[i] = side
	}
	return c, nil
}

// Frame runs frame number n (from 1), captured at ns (nanoseconds since
// the Unix epoch), through both pipelines. Frames must come in capture order.
func (c *Comparison) Frame(n int64, data []byte, ns int64) {
	var res [2]Result
	for i, side := range c.sides {
		// Each switch sees the capture's time to the millisecond, as replay.
		if ns-side.tick >= int64(time.Millisecond) || ns < side.tick {
			side.tick = ns
			side.clock.Set(time.Unix(0, ns))
		}
		if in := side.sw.PortByMAC(sourceMAC(data)); in < 0 {
			res[i] = drop(filter.ReasonUnknownSource)
		} else {
			res[i] = side.sw.Process(in, data, &side.sc)
		}
	}
	cc := c.conn(n, data)
	for i, r := range res {
		if r.Verdict == filter.Forward && (r.HasRule() || r.Reason == filter.ReasonDefaultEgress) && !cc.opened[i] {
			cc.opener[i], cc.opened[i] = r, true
		}
	}
	if cc.differ == 0 && (res[0].Verdict == filter.Forward) != (res[1].Verdict == filter.Forward) {
		cc.differ, cc.at = n, res
		c.diffs++
	}
}

// conn finds (or starts) the connection of frame n.
func (c *Comparison) conn(n int64, data []byte) *comparedConn {
	var f filter.Frame
	if f.Decode(data) != filter.ReasonNone || !f.IsIP() || f.L4 == 0 {
		c.list = append(c.list, comparedConn{label: frameLabel(&f, data), first: n})
		return &c.list[len(c.list)-1]
	}
	var id flowID
	sport, dport := f.SrcPort, f.DstPort
	switch {
	case f.Proto != filter.ProtoICMP && f.Proto != filter.ProtoICMPv6:
	case isEchoRequest(&f) || (f.Proto == filter.ProtoICMP && f.ICMPType == 0) || (f.Proto == filter.ProtoICMPv6 && f.ICMPType == 129):
		sport, dport = f.ICMPID, 0
	default:
		sport, dport = 0, 0
		id.icmp = uint16(f.ICMPType)<<8 | uint16(f.ICMPCode)
	}
	id.key = conntrack.KeyFrom(f.Proto, f.SrcIP, f.DstIP, sport, dport, 0)
	if i, ok := c.conns[id]; ok {
		return &c.list[i]
	}
	rev := flowID{id.key.Reverse(), id.icmp}
	if i, ok := c.conns[rev]; ok {
		return &c.list[i]
	}
	c.conns[id] = int32(len(c.list))
	c.list = append(c.list, comparedConn{id: id, first: n})
	return &c.list[len(c.list)-1]
}

func frameLabel(f *filter.Frame, data []byte) string {
	switch {
	case len(data) < 14:
		return "frame shorter than an Ethernet header"
	case f.EtherType == filter.EtherTypeARP && f.ARPSPA.IsValid():
		op := "request"
		if f.ARPOp == 2 {
			op = "reply"
		}
		return fmt.Sprintf("arp %s %s > %s", op, f.ARPSPA, f.ARPTPA)
	}
	return fmt.Sprintf("frame ethertype 0x%04x %02x > %02x", f.EtherType, data[6:12], data[0:6])
}

// Connections is how many connections the frames so far made.
func (c *Comparison) Connections() int { return len(c.list) }

// Differences lists the connections whose fate differs, in the order of
// their first frames.
func (c *Comparison) Differences() []FateDiff {
	out := make([]FateDiff, 0, c.diffs)
	for i := range c.list {
		cc := &c.list[i]
		if cc.differ == 0 {
			continue
		}
		d := FateDiff{Connection: cc.name(), Frame: cc.first, DiffersAt: cc.differ, Change: "opened"}
		if cc.at[0].Verdict == filter.Forward {
			d.Change = "cut"
		}
		d.Current = c.sides[0].fate(cc.at[0], cc.opener[0], cc.opened[0])
		d.Proposed = c.sides[1].fate(cc.at[1], cc.opener[1], cc.opened[1])
		out = append(out, d)
	}
	return out
}

// name is the connection as its first frame went: "tcp 10.0.0.11:40000 >
// 10.0.0.21:3306", "icmp 10.0.0.11 > 10.0.0.21 id 7", "icmp 10.0.0.1 >
// 10.0.0.11 type 3 code 1", or the label of a frame that is not IP.
func (cc *comparedConn) name() string {
	k := cc.id.key
	switch {
	case cc.label != "":
		return cc.label
	case cc.id.icmp != 0: // only echo has type 0 (a reply)
		return fmt.Sprintf("%s %s > %s type %d code %d", conntrack.ProtoName(k.Proto), k.SrcAddr(), k.DstAddr(), cc.id.icmp>>8, cc.id.icmp&0xff)
	}
	return k.String()
}

// fate names what decided r: the rule (or reason) that let the connection
// through when r merely follows it (established, related, a later
// fragment), else r's own rule or reason.
func (side *comparedSide) fate(r, opener Result, opened bool) Fate {
	if r.Verdict == filter.Forward && opened {
		switch r.Reason {
		case filter.ReasonEstablished, filter.ReasonRelated, filter.ReasonFragmentOf:
			r = opener
		}
	}
	f := Fate{Verdict: r.Verdict.String(), Reason: r.Reason.String()}
	if r.HasRule() {
		f.Rule = side.sw.Policy().RuleName(r.Rule)
	}
	return f
}

func sourceMAC(b []byte) []byte {
	if len(b) < 12 {
		return nil
	}
	return b[6:12]
}
