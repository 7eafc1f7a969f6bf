package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

const traceUsage = `usage: sgswitch trace -c FILE --from INSTANCE|uplink [-o json] 'PACKET'

PACKET is one of
  tcp|udp SRC:PORT > DST:PORT        e.g. 'tcp 10.0.0.11:40000 > 10.0.0.21:3306'
  icmp|icmpv6 SRC > DST [type T code C]
  ah|esp|gre|ipip|NUMBER SRC > DST
IPv6 with ports: [fd00::11]:40000. Exit status: 0 forwarded, 1 dropped, 2 bad arguments.`

// tracePacket is a parsed PACKET argument.
type tracePacket struct {
	proto      uint8
	src, dst   netip.Addr
	sport      uint16
	dport      uint16
	icmpType   uint8
	icmpCode   uint8
	icmpGiven  bool
	protoLabel string
}

func parseTracePacket(s string) (tracePacket, error) {
	var p tracePacket
	f := strings.Fields(s)
	if len(f) < 4 || f[2] != ">" {
		return p, fmt.Errorf("packet %q: expected 'PROTO SRC > DST'", s)
	}
	p.protoLabel = f[0]
	if pr, ok := config.ParseProtocol(f[0]); ok && pr != config.ProtoAll {
		p.proto = pr.IPProto()
	} else if n, err := strconv.ParseUint(f[0], 10, 8); err == nil {
		p.proto = uint8(n)
	} else {
		return p, fmt.Errorf("packet %q: unknown protocol %q (tcp, udp, icmp, icmpv6, ah, esp, gre, ipip or a number 0-255)", s, f[0])
	}
	switch p.proto {
	case 6, 17:
		src, err1 := netip.ParseAddrPort(f[1])
		dst, err2 := netip.ParseAddrPort(f[3])
		if err1 != nil || err2 != nil || len(f) != 4 {
			return p, fmt.Errorf("packet %q: %s needs SRC:PORT > DST:PORT (IPv6 as [addr]:port)", s, f[0])
		}
		p.src, p.sport, p.dst, p.dport = src.Addr().Unmap(), src.Port(), dst.Addr().Unmap(), dst.Port()
	default:
		src, err1 := netip.ParseAddr(f[1])
		dst, err2 := netip.ParseAddr(f[3])
		if err1 != nil || err2 != nil {
			return p, fmt.Errorf("packet %q: SRC and DST must be addresses", s)
		}
		p.src, p.dst = src.Unmap(), dst.Unmap()
		rest := f[4:]
		if p.proto == 1 || p.proto == 58 {
			p.icmpType, p.icmpCode = 8, 0
			if p.proto == 58 {
				p.icmpType = 128
			}
			for len(rest) >= 2 {
				n, err := strconv.ParseUint(rest[1], 10, 8)
				if err != nil || (rest[0] != "type" && rest[0] != "code") {
					return p, fmt.Errorf("packet %q: expected 'type T code C' with numbers 0-255", s)
				}
				if rest[0] == "type" {
					p.icmpType = uint8(n)
				} else {
					p.icmpCode = uint8(n)
				}
				rest = rest[2:]
			}
		}
		if len(rest) != 0 {
			return p, fmt.Errorf("packet %q: unexpected %q", s, strings.Join(rest, " "))
		}
	}
	if p.src.Is4() != p.dst.Is4() {
		return p, fmt.Errorf("packet %q: SRC and DST must both be IPv4 or both IPv6", s)
	}
	return p, nil
}

// frame builds the packet as an Ethernet frame arriving on port from.
func (p tracePacket) frame(cfg *config.Config, from string) []byte {
	srcMAC, dstMAC := net.HardwareAddr(vswitch.TraceUplinkMAC[:]), net.HardwareAddr(vswitch.TraceUplinkMAC[:])
	if in, _ := cfg.Instance(from); in != nil {
		srcMAC = in.MAC
	}
	for _, in := range cfg.Instances {
		if in.IPv4.Addr() == p.dst || (in.IPv6.IsValid() && in.IPv6.Addr() == p.dst) {
			dstMAC = in.MAC
		}
	}
	src, dst := ft.Host{MAC: srcMAC, IP: p.src}, ft.Host{MAC: dstMAC, IP: p.dst}
	switch p.proto {
	case 6:
		return ft.TCP(src, dst, p.sport, p.dport, "S", 1, 0, nil)
	case 17:
		return ft.UDP(src, dst, p.sport, p.dport, []byte("trace"))
	case 1:
		if p.icmpType == 8 || p.icmpType == 0 {
			return ft.ICMPEcho(src, dst, 1, 1, p.icmpType == 8)
		}
		return ft.ICMP(src, dst, p.icmpType, p.icmpCode, make([]byte, 4))
	case 58:
		if (p.icmpType == 128 || p.icmpType == 129) && p.icmpCode == 0 {
			return ft.ICMPEcho(src, dst, 1, 1, p.icmpType == 128)
		}
		return ft.ICMPv6(src, dst, p.icmpType, p.icmpCode, make([]byte, 4))
	}
	return ft.IPPacket(src, dst, p.proto, make([]byte, 16))
}

func cmdTrace(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	from := fs.String("from", "", "the `PORT` the packet arrives on: an instance name or uplink")
	out := fs.String("o", "table", "output format: table or json")
	if err := parseFlags(fs, args, cfgPath); err != nil {
		return err
	}
	if fs.NArg() != 1 || *from == "" {
		return usageError("trace: need --from and one PACKET argument\n%s", traceUsage)
	}
	if *out != "table" && *out != "json" {
		return usageError("trace: -o %s: the output format is table or json", *out)
	}
	pkt, err := parseTracePacket(fs.Arg(0))
	if err != nil {
		return usageError("trace: %v\n%s", err, traceUsage)
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	sw, err := vswitch.New(cfg, nil, vswitch.Options{})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	in := sw.PortNamed(*from)
	if in < 0 {
		var names []string
		for _, i := range cfg.Instances {
			names = append(names, i.Name)
		}
		if cfg.Uplink != nil {
			names = append(names, "uplink")
		}
		return usageError("trace: --from %s: no such port; use one of %s", *from, strings.Join(names, ", "))
	}
	tr := sw.Trace(in, pkt.frame(cfg, *from))
	if *out == "json" {
		if err := printJSON(stdout, tr); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "packet\t\t%s from %s\n", fs.Arg(0), tr.From)
		for _, s := range tr.Stages {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Stage, s.Result, s.Detail)
		}
		verdict := "reason " + tr.Reason
		if tr.Rule != "" {
			verdict += ", rule " + tr.Rule
		}
		if tr.Out != "" {
			verdict += ", out " + tr.Out
		}
		fmt.Fprintf(tw, "verdict\t%s\t%s\n", tr.Verdict, verdict)
		tw.Flush()
	}
	if tr.Verdict != "forward" {
		return &exitError{code: 1, err: errSilent}
	}
	return nil
}
