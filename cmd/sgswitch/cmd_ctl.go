package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

const ctlUsage = `usage: sgswitch ctl [--socket PATH | -c FILE] COMMAND [-o table|json]

commands:
  stats              counters per port and per reason
  instance list      the instances and their groups
`

// ctlClient talks HTTP to the control socket.
type ctlClient struct {
	socket string
	http   *http.Client
}

func newCtlClient(socket string) *ctlClient {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &ctlClient{socket: socket, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// get fetches path and decodes its JSON body into v; a 4xx/5xx is an error
// carrying the API's message.
func (c *ctlClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://sgswitch"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("control socket %s: %w (is sgswitch running? pass --socket PATH or -c FILE)", c.socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s", e.Error)
		}
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, v)
}

func cmdCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	socket := fs.String("socket", "", "control socket `PATH` (default: the configuration's, else "+config.DefaultControl+")")
	cfgPath := configFlag(fs)
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError("ctl: missing command\n%s", ctlUsage)
	}
	path := *socket
	if path == "" && *cfgPath != "" {
		cfg, err := loadConfig(*cfgPath, stderr)
		if err != nil {
			return err
		}
		path = cfg.Switch.Control
	}
	if path == "" {
		path = config.DefaultControl
	}
	c := newCtlClient(path)
	switch rest[0] {
	case "stats":
		return ctlStats(ctx, c, rest[1:], stdout)
	case "instance":
		if len(rest) < 2 || rest[1] != "list" {
			return usageError("ctl instance: say list\n%s", ctlUsage)
		}
		return ctlInstances(ctx, c, rest[2:], stdout)
	case "help":
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}
	return usageError("ctl: unknown command %q\n%s", rest[0], ctlUsage)
}

// outputFlag parses the -o flag of a listing.
func outputFlag(name string, args []string) (json bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	o := fs.String("o", "table", "output format: table or json")
	if err := parseFlags(fs, args, nil); err != nil {
		return false, err
	}
	switch *o {
	case "table":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usageError("%s: -o %s: the output format is table or json", name, *o)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func ctlStats(ctx context.Context, c *ctlClient, args []string, stdout io.Writer) error {
	asJSON, err := outputFlag("ctl stats", args)
	if err != nil {
		return err
	}
	var stats struct {
		Ports []vswitch.PortStats `json:"ports"`
	}
	if err := c.get(ctx, "/v1/stats", &stats); err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, stats)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tINSTANCE\tRX\tTX\tFORWARD\tLOCAL\tDROP\tREASONS")
	for _, p := range stats.Ports {
		var reasons []string
		for r, n := range p.Reasons {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
		}
		sort.Strings(reasons)
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Port, p.Instance, p.RxFrames, p.TxFrames,
			p.Verdicts["forward"], p.Verdicts["local"], p.Verdicts["drop"], strings.Join(reasons, " "))
	}
	return tw.Flush()
}

func ctlInstances(ctx context.Context, c *ctlClient, args []string, stdout io.Writer) error {
	asJSON, err := outputFlag("ctl instance list", args)
	if err != nil {
		return err
	}
	var list []vswitch.InstanceView
	if err := c.get(ctx, "/v1/instances", &list); err != nil {
		return err
	}
	if asJSON {
		return printJSON(stdout, list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTAP\tMAC\tIPV4\tIPV6\tSECURITY-GROUPS")
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.TAP, in.MAC, in.IPv4, in.IPv6, strings.Join(in.SecurityGroups, ","))
	}
	return tw.Flush()
}
