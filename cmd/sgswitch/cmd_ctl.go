package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/source/control"
)

const ctlUsage = `usage: sgswitch ctl [--socket PATH | -c FILE] COMMAND [ARGS] [FLAGS]

Talks to a running switch through its control socket (--socket, else the
socket of the configuration -c FILE, else ` + config.DefaultControl + `).
Every command takes -o table|json (json: the API's answer as is). Changes take
--if-match VERSION: refused if the configuration is no longer at VERSION
(group show and every change print the version). Changes are in force at once
and written back to the switch's configuration file. Every change takes
--dry-run: nothing is changed; ctl prints what would change and the tracked
connections the change would cut, each with the rule that allows it now.
Exit status: 0 done, 1 refused by the switch or switch unreachable, 2 bad
command line.

commands:
  stats                                     counters per port and per reason; in a cluster,
                                            the etcd sync (connected, applied revision, staleness)
  host list                                 in a cluster: every host, live or not, the revision
                                            it applied
  group list                                security groups
  group show NAME                           a group: rules, external sources, instances
  group create NAME [--description D]
  group delete NAME                         refused while instances or rules use it
  rule list GROUP                           the group's rules with their indices
  rule add GROUP --flow-direction ingress|egress --protocol PROTO
                 (--network CIDR | --security-group G)
                 [--start-port N --end-port N] [--icmp-type T [--icmp-code C]]
                 [--description D]
  rule delete GROUP INDEX                   INDEX as rule list shows it; the rules
                                            after it move down by one
  source list GROUP                         the group's external sources
  source set GROUP CIDR...                  replace them
  source clear GROUP
  instance list
  instance show NAME
  instance add NAME --mac MAC --ipv4 ADDR/PREFIX [--ipv6 ADDR/PREFIX] [--tap TAP] [--host HOST]
                 [--security-groups G1,G2] [--smtp-egress]
  instance remove NAME                      its port is closed
  instance groups NAME G1[,G2...]           replace the instance's groups
  conntrack list [--instance NAME] [--protocol PROTO] [--address IP] [--limit N]
  conntrack flush                           forget every tracked connection
  reload FILE                               put the configuration FILE in force (and write it,
                                            canonical, over the switch's file); with --dry-run,
                                            see what it would change and cut first
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
	return &ctlClient{socket: socket, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// apiRefusal is the switch's answer to a request it refused (exit status 1).
type apiRefusal struct {
	status int
	msg    string
}

func (e *apiRefusal) Error() string { return e.msg }

// rawBody is a request body sent as is (a configuration file, YAML).
type rawBody []byte

// do sends one request (body, when not nil, as JSON, or as is when a rawBody; ifMatch, when set, as
// If-Match) and decodes the JSON answer into out (when not nil). It returns
// the answer's raw body and the configuration version of its ETag. A 4xx/5xx
// answer is an *apiRefusal with the API's message.
func (c *ctlClient) do(ctx context.Context, method, path string, body any, ifMatch string, out any) (raw []byte, version string, err error) {
	var rd io.Reader
	contentType := "application/json"
	if raw, ok := body.(rawBody); ok {
		rd, contentType = bytes.NewReader(raw), "application/yaml"
	} else if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, "", err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://sgswitch"+path, rd)
	if err != nil {
		return nil, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", `"`+ifMatch+`"`)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("control socket %s: %w (is sgswitch running? pass --socket PATH or -c FILE)", c.socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, "", &apiRefusal{status: resp.StatusCode, msg: e.Error}
		}
		return nil, "", &apiRefusal{status: resp.StatusCode, msg: fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, "", fmt.Errorf("%s %s: the switch's answer is not what ctl expects: %w", method, path, err)
		}
	}
	return data, strings.Trim(resp.Header.Get("ETag"), `"`), nil
}

// get fetches path and decodes its JSON body into v.
func (c *ctlClient) get(ctx context.Context, path string, v any) error {
	_, _, err := c.do(ctx, http.MethodGet, path, nil, "", v)
	return err
}

func cmdCtl(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	socket := fs.String("socket", "", "control socket `PATH` (default: the configuration's, else "+config.DefaultControl+")")
	cfgPath := configFlag(fs)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, ctlUsage)
			return nil
		}
		return usageError("ctl: %v\n%s", err, ctlUsage)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError("ctl: missing command\n%s", ctlUsage)
	}
	if rest[0] == "help" {
		fmt.Fprint(stdout, ctlUsage)
		return nil
	}
	run, name, args, err := ctlLookup(rest)
	if err != nil {
		return err
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
	x := &ctlCmd{ctx: ctx, c: newCtlClient(path), name: "ctl " + name, stdout: stdout, stderr: stderr}
	if err := run(x, args); !errors.Is(err, errHelpShown) {
		return err
	}
	return nil
}

// errHelpShown ends a command whose -h printed its usage.
var errHelpShown = errors.New("help shown")

// ctlCommands are the commands by noun and verb ("" for a noun alone).
var ctlCommands = map[string]map[string]func(*ctlCmd, []string) error{
	"stats":     {"": ctlStats},
	"group":     {"list": ctlGroupList, "show": ctlGroupShow, "create": ctlGroupCreate, "delete": ctlGroupDelete},
	"rule":      {"list": ctlRuleList, "add": ctlRuleAdd, "delete": ctlRuleDelete},
	"source":    {"list": ctlSourceList, "set": ctlSourceSet, "clear": ctlSourceClear},
	"instance":  {"list": ctlInstanceList, "show": ctlInstanceShow, "add": ctlInstanceAdd, "remove": ctlInstanceRemove, "groups": ctlInstanceGroups},
	"conntrack": {"list": ctlConntrackList, "flush": ctlConntrackFlush},
	"reload":    {"": ctlReload},
	"host":      {"list": ctlHostList},
}

func ctlLookup(args []string) (func(*ctlCmd, []string) error, string, []string, error) {
	verbs, ok := ctlCommands[args[0]]
	if !ok {
		return nil, "", nil, usageError("ctl: unknown command %q\n%s", args[0], ctlUsage)
	}
	if run, ok := verbs[""]; ok {
		return run, args[0], args[1:], nil
	}
	var names []string
	for _, v := range []string{"list", "show", "create", "add", "set", "clear", "groups", "delete", "remove", "flush"} {
		if verbs[v] != nil {
			names = append(names, v)
		}
	}
	if len(args) < 2 || verbs[args[1]] == nil {
		got := "nothing"
		if len(args) >= 2 {
			got = strconv.Quote(args[1])
		}
		return nil, "", nil, usageError("ctl %s: say %s (got %s)\n%s", args[0], strings.Join(names, ", "), got, ctlUsage)
	}
	return verbs[args[1]], args[0] + " " + args[1], args[2:], nil
}

// ctlCmd is one command being run: its flags (-o and, for changes,
// --if-match, plus its own) and its positional arguments.
type ctlCmd struct {
	ctx            context.Context
	c              *ctlClient
	name           string
	stdout, stderr io.Writer
	fs             *flag.FlagSet
	output         string
	ifMatch        string
	dryRun         bool
	pos            []string
}

// flags starts the command's flag set; change adds --if-match and --dry-run.
func (x *ctlCmd) flags(change bool) *flag.FlagSet {
	x.fs = flag.NewFlagSet(x.name, flag.ContinueOnError)
	x.fs.SetOutput(io.Discard)
	x.fs.StringVar(&x.output, "o", "table", "output `FORMAT`: table or json")
	if change {
		x.fs.StringVar(&x.ifMatch, "if-match", "", "refuse the change unless the configuration is at `VERSION`")
		x.fs.BoolVar(&x.dryRun, "dry-run", false, "change nothing: show what the change would change and the tracked connections it would cut")
	}
	return x.fs
}

// parse parses args, flags and positional arguments in any order ("--"
// ends the flags), and wants between min and max (-1: any number)
// positional arguments, described by usage.
func (x *ctlCmd) parse(args []string, min, max int, usage string) error {
	if x.fs == nil {
		x.flags(false)
	}
	for {
		if err := x.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(x.stdout, "usage: sgswitch %s %s\n", x.name, usage)
				x.fs.SetOutput(x.stdout)
				x.fs.PrintDefaults()
				return errHelpShown
			}
			return usageError("%s: %v (usage: sgswitch %s %s)", x.name, err, x.name, usage)
		}
		rest := x.fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			x.pos = append(x.pos, rest...)
			break
		}
		x.pos = append(x.pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(x.pos) < min:
		return usageError("%s: missing arguments (usage: sgswitch %s %s)", x.name, x.name, usage)
	case max >= 0 && len(x.pos) > max:
		return usageError("%s: unexpected argument %q (usage: sgswitch %s %s)", x.name, x.pos[max], x.name, usage)
	}
	if x.output != "table" && x.output != "json" {
		return usageError("%s: -o %s: the output format is table or json", x.name, x.output)
	}
	if x.ifMatch != "" {
		v := strings.Trim(x.ifMatch, `"`)
		if n, err := strconv.ParseUint(v, 10, 64); err != nil || n == 0 {
			return usageError("%s: --if-match %s: want a configuration version, a positive number as group show or a change printed", x.name, x.ifMatch)
		}
		x.ifMatch = v
	}
	return nil
}

func (x *ctlCmd) json() bool { return x.output == "json" }

// set reports whether the flag name was given on the command line.
func (x *ctlCmd) set(name string) bool {
	found := false
	x.fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			found = true
		}
	})
	return found
}

// change sends a change and prints its answer: as JSON with -o json, else
// through done — or, with --dry-run, what the change would do. Warnings go
// to stderr.
func (x *ctlCmd) change(method, path string, body any, out any, done func()) error {
	if x.dryRun {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "dry-run=true"
	}
	raw, _, err := x.c.do(x.ctx, method, path, body, x.ifMatch, out)
	if err != nil {
		return err
	}
	if x.json() {
		_, err := x.stdout.Write(raw)
		return err
	}
	var w struct {
		Warnings []string
		DryRun   *control.DryRunView `json:"dry-run"`
	}
	json.Unmarshal(raw, &w)
	for _, m := range w.Warnings {
		fmt.Fprintln(x.stderr, "warning:", m)
	}
	if x.dryRun {
		if w.DryRun == nil {
			return fmt.Errorf("%s --dry-run: the switch's answer has no dry run; is it an older sgswitch?", x.name)
		}
		return x.printDryRun(w.DryRun)
	}
	done()
	return nil
}

// printDryRun prints what a change would do.
func (x *ctlCmd) printDryRun(d *control.DryRunView) error {
	fmt.Fprintf(x.stdout, "dry run: nothing changed (version %d)\n", d.Version)
	if len(d.Changes) == 0 {
		fmt.Fprintln(x.stdout, "the change would change nothing")
	}
	for _, c := range d.Changes {
		fmt.Fprintf(x.stdout, "would change %s\n", c)
	}
	verb := "would cut"
	if d.PersistEstablished {
		verb = "would cut (or, marked kept, would have cut: persist-established keeps them)"
	}
	fmt.Fprintf(x.stdout, "%s %d of %d tracked connections (checked in %.1f ms)\n", verb, d.CutTotal, d.Checked, d.ElapsedMS)
	if len(d.Cut) == 0 {
		return nil
	}
	tw := tabwriter.NewWriter(x.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tCONNECTION\tSTATE\tALLOWED-BY\tCUT-BY")
	for _, c := range d.Cut {
		cut := c.Reason
		if c.Kept {
			cut += " (kept)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.From, c.To, c.Key, c.State, c.AllowedBy, cut)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if d.Truncated {
		fmt.Fprintf(x.stderr, "showing %d of the %d connections the change would cut (the API's limit; -o json and ?limit=0 for all)\n", len(d.Cut), d.CutTotal)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
