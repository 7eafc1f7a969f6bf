package vswitch

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sgswitch/sgswitch/filter"
)

// Drop logging defaults: per (port, reason), one line a second sustained
// after a burst of ten. A flood of one reason from one port writes at most
// 86400 lines a day plus one count of what was suppressed per flush.
const (
	DefaultDropLogRate  = 1.0
	DefaultDropLogBurst = 10
)

// maxDropLogPorts bounds the limiter's table. Ports come from the
// configuration, so this is never reached in practice; past it, drops of
// further ports are not logged (and counted as suppressed).
const maxDropLogPorts = 1 << 14

// DropLog writes one log line per dropped frame, rate-limited per (port,
// reason): a flood cannot fill a disk, yet a drop that happens once in a
// while is always seen. Lines a key's limit suppressed are counted and the
// count is reported on that key's next line ("suppressed") and by Flush.
//
// Its Drop method is a DropFunc and runs on the port workers, so it is built
// to be cheap when it does not log: when the logger is not enabled at Info
// it returns at once, and a suppressed line costs a lock-free map lookup by
// port name, one compare-and-swap and one atomic add; it never allocates.
//
// The limiter is a token bucket in its virtual-scheduling form (GCRA): each
// key holds one atomic "theoretical arrival time"; a line is allowed when
// moving it one interval (1/rate) on from max(it, now) keeps it within
// burst intervals of now. That is exactly a bucket of burst tokens refilled
// at rate a second, in one word, without a lock.
type DropLog struct {
	log      *slog.Logger
	now      func() int64 // nanoseconds, any epoch
	interval int64        // nanoseconds per line at the sustained rate
	limit    int64        // burst × interval

	ports    atomic.Pointer[map[string]*dropPort] // copy-on-write: lookups take no lock
	mu       sync.Mutex                           // serialises adding a port
	overflow atomic.Uint64                        // drops of ports past maxDropLogPorts
}

// dropPort is one port's limiters, one per reason, allocated once when the
// port first drops something: the key (port, reason) is a map lookup by the
// port's name and an index, so building it allocates nothing.
type dropPort [filter.NumReasons]dropBucket

type dropBucket struct {
	tat        atomic.Int64  // theoretical arrival time of the next line
	suppressed atomic.Uint64 // lines refused since the last one written or flushed
}

// NewDropLogger is a DropFunc that logs dropped frames to log at Info,
// perSecond lines a second per (port, reason) after a burst of burst (see
// DropLog; values ≤ 0 take the defaults).
func NewDropLogger(log *slog.Logger, perSecond float64, burst int) DropFunc {
	return NewDropLog(log, perSecond, burst, nil).Drop
}

// NewDropLog is a drop logger with its limiter; now is its clock in
// nanoseconds (nil: the monotonic clock; see also Attach).
func NewDropLog(log *slog.Logger, perSecond float64, burst int, now func() int64) *DropLog {
	if perSecond <= 0 {
		perSecond = DefaultDropLogRate
	}
	if burst <= 0 {
		burst = DefaultDropLogBurst
	}
	if now == nil {
		start := time.Now()
		now = func() int64 { return int64(time.Since(start)) }
	}
	interval := max(int64(float64(time.Second)/perSecond), 1)
	d := &DropLog{log: log, now: now, interval: interval, limit: int64(burst) * interval}
	m := map[string]*dropPort{}
	d.ports.Store(&m)
	return d
}

// Attach makes d read the time from s's clock, which Run keeps current to the millisecond: one atomic load
// instead of a clock read (about 25 ns, and several times that on some
// virtual machines) per drop. Call it before s runs.
func (d *DropLog) Attach(s *Switch) {
	d.now = s.clock.Now
}

// Drop logs a dropped frame unless its (port, reason) is over its rate. It
// is a DropFunc.
func (d *DropLog) Drop(port string, r Result, f *filter.Frame) {
	ctx := context.Background()
	if !d.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	p := d.port(port)
	if p == nil {
		d.overflow.Add(1)
		return
	}
	reason := r.Reason
	if reason >= filter.NumReasons {
		reason = filter.ReasonNone
	}
	b := &p[reason]
	if !b.take(d.now(), d.interval, d.limit) {
		b.suppressed.Add(1)
		return
	}
	d.write(ctx, port, r, f, b.suppressed.Swap(0))
}

// take reports whether a line may be written at now, and if so spends it.
func (b *dropBucket) take(now, interval, limit int64) bool {
	for {
		tat := b.tat.Load()
		t := max(tat, now)
		if t-now > limit {
			t = now // the clock went back: start afresh rather than stay silent
		}
		next := t + interval
		if next-now > limit {
			return false
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// port is port's limiters, added on first use.
func (d *DropLog) port(name string) *dropPort {
	if p := (*d.ports.Load())[name]; p != nil {
		return p
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	old := *d.ports.Load()
	if p := old[name]; p != nil {
		return p
	}
	if len(old) >= maxDropLogPorts {
		return nil
	}
	m := make(map[string]*dropPort, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	p := new(dropPort)
	m[name] = p
	d.ports.Store(&m)
	return p
}

// write is one line: the port, the verdict and its reason, then what the
// frame's decoding reached — Ethernet, ARP, IP, the transport header.
// Fields a frame does not have are left out (decoding stops early for a
// malformed frame and leaves the rest zero).
func (d *DropLog) write(ctx context.Context, port string, r Result, f *filter.Frame, suppressed uint64) {
	attrs := make([]slog.Attr, 0, 16)
	attrs = append(attrs, slog.String("port", port), slog.String("verdict", r.Verdict.String()), slog.String("reason", r.Reason.String()))
	if f != nil {
		attrs = append(attrs, slog.Int("len", len(f.Buf)))
		if len(f.Buf) >= 14 {
			attrs = append(attrs,
				slog.String("ethertype", "0x"+hex4(f.EtherType)),
				slog.String("src_mac", net.HardwareAddr(f.Src[:]).String()),
				slog.String("dst_mac", net.HardwareAddr(f.Dst[:]).String()))
		}
		if f.EtherType == filter.EtherTypeARP && f.ARPOp != 0 {
			attrs = append(attrs, slog.Int("arp_op", int(f.ARPOp)),
				slog.String("arp_sha", net.HardwareAddr(f.ARPSHA[:]).String()))
			if f.ARPSPA.IsValid() {
				attrs = append(attrs, slog.String("arp_spa", f.ARPSPA.String()), slog.String("arp_tpa", f.ARPTPA.String()))
			}
		}
		if f.SrcIP.IsValid() {
			attrs = append(attrs, slog.String("src_ip", f.SrcIP.String()), slog.String("dst_ip", f.DstIP.String()),
				slog.String("proto", protoName(f.Proto)))
			if f.Fragment {
				attrs = append(attrs, slog.Int("frag_off", int(f.FragOff)), slog.Bool("more_frags", f.MoreFrags))
			}
			if f.L4 != 0 {
				switch f.Proto {
				case filter.ProtoTCP, filter.ProtoUDP:
					attrs = append(attrs, slog.Int("src_port", int(f.SrcPort)), slog.Int("dst_port", int(f.DstPort)))
					if f.Proto == filter.ProtoTCP {
						attrs = append(attrs, slog.String("tcp_flags", tcpFlags(f.TCPFlags)))
					}
				case filter.ProtoICMP, filter.ProtoICMPv6:
					attrs = append(attrs, slog.Int("icmp_type", int(f.ICMPType)), slog.Int("icmp_code", int(f.ICMPCode)))
				}
			}
			if f.NDTarget.IsValid() {
				attrs = append(attrs, slog.String("nd_target", f.NDTarget.String()))
			}
		}
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Uint64("suppressed", suppressed))
	}
	d.log.LogAttrs(ctx, slog.LevelInfo, "frame dropped", attrs...)
}

// Flush logs, for every (port, reason) that suppressed lines since its last
// line, how many: so a flood that stopped is still accounted for.
func (d *DropLog) Flush() {
	ctx := context.Background()
	for port, p := range *d.ports.Load() {
		for r := range p {
			if n := p[r].suppressed.Swap(0); n > 0 {
				d.log.LogAttrs(ctx, slog.LevelInfo, "drop log lines suppressed",
					slog.String("port", port), slog.String("reason", filter.Reason(r).String()), slog.Uint64("suppressed", n))
			}
		}
	}
	if n := d.overflow.Swap(0); n > 0 {
		d.log.LogAttrs(ctx, slog.LevelWarn, "drop log lines suppressed: too many ports", slog.Uint64("suppressed", n))
	}
}

// Run flushes the suppression counts every interval until ctx ends, and once
// more then.
func (d *DropLog) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			d.Flush()
			return
		case <-t.C:
			d.Flush()
		}
	}
}

func hex4(v uint16) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[v>>12], digits[v>>8&15], digits[v>>4&15], digits[v&15]})
}

func protoName(p uint8) string {
	switch p {
	case filter.ProtoTCP:
		return "tcp"
	case filter.ProtoUDP:
		return "udp"
	case filter.ProtoICMP:
		return "icmp"
	case filter.ProtoICMPv6:
		return "icmpv6"
	case filter.ProtoGRE:
		return "gre"
	case filter.ProtoESP:
		return "esp"
	case filter.ProtoAH:
		return "ah"
	}
	return strconv.Itoa(int(p))
}

// tcpFlags is the flags in tcpdump's letters (S SYN, . ACK, F FIN, R RST,
// P PSH, U URG), e.g. "S" or "S.".
func tcpFlags(fl uint8) string {
	var b []byte
	for _, x := range [...]struct {
		bit uint8
		c   byte
	}{{filter.TCPSyn, 'S'}, {filter.TCPFin, 'F'}, {filter.TCPRst, 'R'}, {filter.TCPPsh, 'P'}, {filter.TCPUrg, 'U'}, {filter.TCPAck, '.'}} {
		if fl&x.bit != 0 {
			b = append(b, x.c)
		}
	}
	if len(b) == 0 {
		return "none"
	}
	return string(b)
}
