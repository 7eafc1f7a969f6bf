package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	vswitch "github.com/sgswitch/sgswitch/switch"
)

const traceUsage = `usage: sgswitch trace -c FILE --from INSTANCE|uplink [-o json] 'PACKET'

PACKET is one of
  tcp|udp SRC:PORT > DST:PORT        e.g. 'tcp 10.0.0.11:40000 > 10.0.0.21:3306'
  icmp|icmpv6 SRC > DST [type T code C]
  ah|esp|gre|ipip|NUMBER SRC > DST
IPv6 with ports: [fd00::11]:40000. Exit status: 0 forwarded, 1 dropped, 2 bad arguments.`

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
	pkt, err := vswitch.ParsePacket(fs.Arg(0))
	if err != nil {
		return usageError("trace: %v\n%s", err, traceUsage)
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	sw, err := vswitch.New(cfg, vswitch.Options{})
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
	tr := sw.Trace(in, pkt.Frame(cfg, *from))
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
