package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/source/control"
	etcdsrc "github.com/sgswitch/sgswitch/switch/source/etcd"
)

// The `sgswitch ctl` commands, one function each (see ctlUsage).

func esc(s string) string { return url.PathEscape(s) }

func (x *ctlCmd) table() *tabwriter.Writer { return tabwriter.NewWriter(x.stdout, 0, 4, 2, ' ', 0) }

// show fetches path into a T and prints it: as JSON with -o json, else as
// the table draw writes.
func show[T any](x *ctlCmd, path string, draw func(tw io.Writer, v T)) error {
	var v T
	if err := x.c.get(x.ctx, path, &v); err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.stdout, v)
	}
	tw := x.table()
	draw(tw, v)
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// --- stats ---

func ctlStats(x *ctlCmd, args []string) error {
	if err := x.parse(args, 0, 0, "[-o json]"); err != nil {
		return err
	}
	var stats struct {
		Ports   []vswitch.PortStats `json:"ports"`
		Cluster *etcdsrc.Status     `json:"cluster,omitempty"`
	}
	if err := x.c.get(x.ctx, "/v1/stats", &stats); err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.stdout, stats)
	}
	tw := x.table()
	fmt.Fprintln(tw, "PORT\tINSTANCE\tKIND\tSTATE\tRX\tTX\tFORWARD\tLOCAL\tDROP\tREASONS")
	for _, p := range stats.Ports {
		var reasons []string
		for r, n := range p.Reasons {
			reasons = append(reasons, fmt.Sprintf("%s=%d", r, n))
		}
		sort.Strings(reasons)
		state := p.State
		if p.StateReason != "" {
			state += " (" + p.StateReason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Port, p.Instance, p.Kind, state, p.RxFrames, p.TxFrames,
			p.Verdicts["forward"], p.Verdicts["local"], p.Verdicts["drop"], strings.Join(reasons, " "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if c := stats.Cluster; c != nil {
		fmt.Fprintf(x.stdout, "\ncluster host %s: connected %v, applied revision %d, seen %d, staleness %s, relists %d, refused revisions %d\n",
			c.Host, c.Connected, c.Applied, c.Seen, staleness(c.Staleness), c.Relists, c.Refusals)
		if c.Refused != "" {
			fmt.Fprintf(x.stdout, "newest revision refused: %s\n", c.Refused)
		}
	}
	return nil
}

func staleness(s float64) string {
	if s < 0 {
		return "never current"
	}
	return strconv.FormatFloat(s, 'f', 1, 64) + "s"
}

// --- cluster hosts ---

func ctlHostList(x *ctlCmd, args []string) error {
	if err := x.parse(args, 0, 0, "[-o json]"); err != nil {
		return err
	}
	return show(x, "/v1/hosts", func(tw io.Writer, hosts []etcdsrc.HostRecord) {
		fmt.Fprintln(tw, "HOST\tLIVE\tAPPLIED\tSINCE\tREFUSED")
		for _, h := range hosts {
			applied := "-"
			if h.Live {
				applied = strconv.FormatInt(h.Applied, 10)
			}
			fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\n", h.Host, h.Live, applied, dash(h.Since), dash(h.Error))
		}
	})
}

// --- security groups ---

func ctlGroupList(x *ctlCmd, args []string) error {
	if err := x.parse(args, 0, 0, "[-o json]"); err != nil {
		return err
	}
	return show(x, "/v1/security-groups", func(tw io.Writer, groups []control.GroupView) {
		fmt.Fprintln(tw, "NAME\tRULES\tEXTERNAL-SOURCES\tINSTANCES\tDESCRIPTION")
		for _, g := range groups {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", g.Name, len(g.Rules), dash(strings.Join(g.ExternalSources, ",")),
				dash(strings.Join(g.Instances, ",")), g.Description)
		}
	})
}

// getGroup fetches one group and the configuration version it is from.
func (x *ctlCmd) getGroup(name string) (control.GroupView, string, error) {
	var g control.GroupView
	_, version, err := x.c.do(x.ctx, http.MethodGet, "/v1/security-groups/"+esc(name), nil, "", &g)
	return g, version, err
}

func ctlGroupShow(x *ctlCmd, args []string) error {
	if err := x.parse(args, 1, 1, "NAME [-o json]"); err != nil {
		return err
	}
	g, version, err := x.getGroup(x.pos[0])
	if err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.stdout, g)
	}
	tw := x.table()
	fmt.Fprintf(tw, "name:\t%s\n", g.Name)
	if g.Description != "" {
		fmt.Fprintf(tw, "description:\t%s\n", g.Description)
	}
	fmt.Fprintf(tw, "external-sources:\t%s\n", dash(strings.Join(g.ExternalSources, ", ")))
	fmt.Fprintf(tw, "instances:\t%s\n", dash(strings.Join(g.Instances, ", ")))
	fmt.Fprintf(tw, "version:\t%s\n", version)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(x.stdout)
	return x.ruleTable(g)
}

func ctlGroupCreate(x *ctlCmd, args []string) error {
	fs := x.flags(true)
	desc := fs.String("description", "", "the group's `DESCRIPTION`")
	if err := x.parse(args, 1, 1, "NAME [--description D]"); err != nil {
		return err
	}
	spec := control.GroupSpec{Name: &x.pos[0]}
	if x.set("description") {
		spec.Description = desc
	}
	var out control.Changed
	return x.change(http.MethodPost, "/v1/security-groups", spec, &out, func() {
		fmt.Fprintf(x.stdout, "created security group %s (version %d)\n", x.pos[0], out.Version)
	})
}

func ctlGroupDelete(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 1, 1, "NAME"); err != nil {
		return err
	}
	var out control.Changed
	return x.change(http.MethodDelete, "/v1/security-groups/"+esc(x.pos[0]), nil, &out, func() {
		fmt.Fprintf(x.stdout, "deleted security group %s (version %d)\n", x.pos[0], out.Version)
	})
}

// --- rules ---

// indexedRule is a rule with its index, as `rule list -o json` prints it.
type indexedRule struct {
	Index int    `json:"index"`
	ID    string `json:"id"`
	control.RuleSpec
}

func indexRules(g control.GroupView) []indexedRule {
	out := []indexedRule{}
	for i, r := range g.Rules {
		out = append(out, indexedRule{Index: i, ID: g.Name + "/" + deref(r.FlowDirection) + "/" + strconv.Itoa(i), RuleSpec: r})
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func (x *ctlCmd) ruleTable(g control.GroupView) error {
	if len(g.Rules) == 0 {
		fmt.Fprintf(x.stdout, "security group %s has no rules\n", g.Name)
		return nil
	}
	tw := x.table()
	fmt.Fprintln(tw, "INDEX\tDIRECTION\tPROTOCOL\tPORTS\tICMP\tPEER\tDESCRIPTION")
	for i, r := range g.Rules {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", i, deref(r.FlowDirection), deref(r.Protocol), rulePorts(r), ruleICMP(r), rulePeer(r), deref(r.Description))
	}
	return tw.Flush()
}

func rulePorts(r control.RuleSpec) string {
	switch {
	case r.StartPort == nil || r.EndPort == nil:
		return "-"
	case *r.StartPort == 1 && *r.EndPort == 65535:
		return "all"
	case *r.StartPort == *r.EndPort:
		return strconv.FormatInt(*r.StartPort, 10)
	}
	return fmt.Sprintf("%d-%d", *r.StartPort, *r.EndPort)
}

func ruleICMP(r control.RuleSpec) string {
	p := deref(r.Protocol)
	switch {
	case r.ICMP != nil && r.ICMP.Code != nil:
		return fmt.Sprintf("type %d code %d", deref(r.ICMP.Type), *r.ICMP.Code)
	case r.ICMP != nil && r.ICMP.Type != nil:
		return fmt.Sprintf("type %d", *r.ICMP.Type)
	case p == "icmp" || p == "icmpv6":
		return "any"
	}
	return "-"
}

func rulePeer(r control.RuleSpec) string {
	if r.SecurityGroup != nil {
		return "group " + *r.SecurityGroup
	}
	return deref(r.Network)
}

func ctlRuleList(x *ctlCmd, args []string) error {
	if err := x.parse(args, 1, 1, "GROUP [-o json]"); err != nil {
		return err
	}
	g, _, err := x.getGroup(x.pos[0])
	if err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.stdout, indexRules(g))
	}
	return x.ruleTable(g)
}

const ruleAddUsage = "GROUP --flow-direction ingress|egress --protocol PROTO (--network CIDR | --security-group G) [--start-port N --end-port N] [--icmp-type T [--icmp-code C]] [--description D]"

func ctlRuleAdd(x *ctlCmd, args []string) error {
	fs := x.flags(true)
	dir := fs.String("flow-direction", "", "`DIRECTION`: ingress or egress")
	proto := fs.String("protocol", "", "`PROTO`: tcp, udp, icmp, icmpv6, ah, esp, gre, ipip or all")
	network := fs.String("network", "", "the peer as a `CIDR`")
	group := fs.String("security-group", "", "the peer as a security `GROUP`")
	start := fs.Int64("start-port", 0, "first `PORT` (tcp, udp)")
	end := fs.Int64("end-port", 0, "last `PORT` (tcp, udp)")
	icmpType := fs.Int64("icmp-type", -1, "ICMP `TYPE` (icmp, icmpv6; -1 any)")
	icmpCode := fs.Int64("icmp-code", -1, "ICMP `CODE` (needs --icmp-type; -1 any)")
	desc := fs.String("description", "", "the rule's `DESCRIPTION`")
	if err := x.parse(args, 1, 1, ruleAddUsage); err != nil {
		return err
	}
	for _, f := range []string{"flow-direction", "protocol"} {
		if !x.set(f) {
			return usageError("%s: --%s is missing (usage: sgswitch %s %s)", x.name, f, x.name, ruleAddUsage)
		}
	}
	if x.set("network") == x.set("security-group") {
		return usageError("%s: give the peer as exactly one of --network CIDR and --security-group GROUP", x.name)
	}
	spec := control.RuleSpec{FlowDirection: dir, Protocol: proto}
	if x.set("network") {
		spec.Network = network
	}
	if x.set("security-group") {
		spec.SecurityGroup = group
	}
	if x.set("start-port") {
		spec.StartPort = start
	}
	if x.set("end-port") {
		spec.EndPort = end
	}
	if x.set("icmp-type") || x.set("icmp-code") {
		spec.ICMP = &control.ICMPSpec{}
		if x.set("icmp-type") {
			spec.ICMP.Type = icmpType
		}
		if x.set("icmp-code") {
			spec.ICMP.Code = icmpCode
		}
	}
	if x.set("description") {
		spec.Description = desc
	}
	var out control.RuleAdded
	return x.change(http.MethodPost, "/v1/security-groups/"+esc(x.pos[0])+"/rules", spec, &out, func() {
		fmt.Fprintf(x.stdout, "added rule %s: index %d of security group %s (version %d)\n", out.ID, out.Index, out.Group, out.Version)
	})
}

func ctlRuleDelete(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 2, 2, "GROUP INDEX"); err != nil {
		return err
	}
	if n, err := strconv.Atoi(x.pos[1]); err != nil || n < 0 {
		return usageError("%s: INDEX %q: want the rule's index as `sgswitch ctl rule list %s` shows it", x.name, x.pos[1], x.pos[0])
	}
	var out control.Changed
	return x.change(http.MethodDelete, "/v1/security-groups/"+esc(x.pos[0])+"/rules/"+x.pos[1], nil, &out, func() {
		fmt.Fprintf(x.stdout, "deleted rule %s (version %d); the rules after it moved down by one\n", out.Deleted, out.Version)
	})
}

// --- external sources ---

func ctlSourceList(x *ctlCmd, args []string) error {
	if err := x.parse(args, 1, 1, "GROUP [-o json]"); err != nil {
		return err
	}
	g, _, err := x.getGroup(x.pos[0])
	if err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.stdout, g.ExternalSources)
	}
	for _, s := range g.ExternalSources {
		fmt.Fprintln(x.stdout, s)
	}
	return nil
}

func (x *ctlCmd) setSources(group string, sources []string) error {
	var out control.Changed
	return x.change(http.MethodPut, "/v1/security-groups/"+esc(group)+"/external-sources",
		control.ExternalSourcesSpec{ExternalSources: sources}, &out, func() {
			list := "none"
			if out.Group != nil && len(out.Group.ExternalSources) > 0 {
				list = strings.Join(out.Group.ExternalSources, ", ")
			}
			fmt.Fprintf(x.stdout, "security group %s: external sources %s (version %d)\n", group, list, out.Version)
		})
}

func ctlSourceSet(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 1, -1, "GROUP CIDR..."); err != nil {
		return err
	}
	if len(x.pos) < 2 {
		return usageError("%s: give at least one CIDR (to remove them all: sgswitch ctl source clear %s)", x.name, x.pos[0])
	}
	return x.setSources(x.pos[0], x.pos[1:])
}

func ctlSourceClear(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 1, 1, "GROUP"); err != nil {
		return err
	}
	return x.setSources(x.pos[0], []string{})
}

// --- instances ---

func ctlInstanceList(x *ctlCmd, args []string) error {
	if err := x.parse(args, 0, 0, "[-o json]"); err != nil {
		return err
	}
	return show(x, "/v1/instances", func(tw io.Writer, list []control.InstanceView) {
		fmt.Fprintln(tw, "NAME\tPORT\tMAC\tIPV4\tIPV6\tSECURITY-GROUPS\tSMTP-EGRESS")
		for _, in := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\n", in.Name, portOf(in), in.MAC, in.IPv4, dash(in.IPv6), strings.Join(in.SecurityGroups, ","), in.SMTPEgress)
		}
	})
}

func ctlInstanceShow(x *ctlCmd, args []string) error {
	if err := x.parse(args, 1, 1, "NAME [-o json]"); err != nil {
		return err
	}
	return show(x, "/v1/instances/"+esc(x.pos[0]), func(tw io.Writer, in control.InstanceView) {
		for _, kv := range [][2]string{{"name", in.Name}, {"port", portOf(in)}, {"mac", in.MAC}, {"ipv4", in.IPv4}, {"ipv6", dash(in.IPv6)},
			{"security-groups", strings.Join(in.SecurityGroups, ", ")}, {"smtp-egress", strconv.FormatBool(in.SMTPEgress)}} {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
	})
}

const instanceAddUsage = "NAME --mac MAC --ipv4 ADDR/PREFIX [--ipv6 ADDR/PREFIX] [--tap TAP | --netdev DEV | --vhost-user-socket PATH --vhost-user-mode server|client] [--security-groups G1,G2] [--smtp-egress]"

// portOf says how an instance is attached, in the file's words.
func portOf(in control.InstanceView) string {
	switch {
	case in.VhostUser != nil:
		return "vhost-user " + in.VhostUser.Socket + " (" + in.VhostUser.Mode + ")"
	case in.Netdev != "":
		return "netdev " + in.Netdev
	}
	return "tap " + in.TAP
}

// splitList splits comma- (or space-) separated names.
func splitList(args ...string) []string {
	out := []string{}
	for _, a := range args {
		for _, s := range strings.FieldsFunc(a, func(r rune) bool { return r == ',' || r == ' ' }) {
			out = append(out, s)
		}
	}
	return out
}

func ctlInstanceAdd(x *ctlCmd, args []string) error {
	fs := x.flags(true)
	mac := fs.String("mac", "", "the instance's `MAC`")
	ipv4 := fs.String("ipv4", "", "IPv4 `ADDR/PREFIX`, e.g. 10.0.0.11/24")
	ipv6 := fs.String("ipv6", "", "IPv6 `ADDR/PREFIX` (optional)")
	tap := fs.String("tap", "", "TAP device `NAME` (default: the instance's name)")
	host := fs.String("host", "", "in a cluster: the `HOST` it runs on")
	netdev := fs.String("netdev", "", "an existing `DEVICE` to serve (e.g. the TAP QEMU made)")
	vuSocket := fs.String("vhost-user-socket", "", "the VM's vhost-user socket `PATH`")
	vuMode := fs.String("vhost-user-mode", "", "`server` (the switch listens) or client (QEMU listens)")
	groups := fs.String("security-groups", "", "comma-separated `GROUPS` (default: default)")
	smtp := fs.Bool("smtp-egress", false, "allow SMTP (port 25) out")
	if err := x.parse(args, 1, 1, instanceAddUsage); err != nil {
		return err
	}
	for _, f := range []string{"mac", "ipv4"} {
		if !x.set(f) {
			return usageError("%s: --%s is missing (usage: sgswitch %s %s)", x.name, f, x.name, instanceAddUsage)
		}
	}
	spec := control.InstanceSpec{Name: &x.pos[0], MAC: mac, IPv4: ipv4}
	if x.set("ipv6") {
		spec.IPv6 = ipv6
	}
	if x.set("tap") {
		spec.TAP = tap
	}
	if x.set("host") {
		spec.Host = host
	}
	if x.set("netdev") {
		spec.Netdev = netdev
	}
	if x.set("vhost-user-socket") || x.set("vhost-user-mode") {
		spec.VhostUser = &control.VhostUserSpec{Socket: *vuSocket, Mode: *vuMode}
	}
	if x.set("security-groups") {
		spec.SecurityGroups = splitList(*groups)
	}
	if x.set("smtp-egress") {
		spec.SMTPEgress = smtp
	}
	var out control.Changed
	return x.change(http.MethodPost, "/v1/instances", spec, &out, func() {
		in := out.Instance
		fmt.Fprintf(x.stdout, "added instance %s on %s in security groups %s (version %d)\n", in.Name, portOf(*in), strings.Join(in.SecurityGroups, ", "), out.Version)
	})
}

func ctlInstanceRemove(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 1, 1, "NAME"); err != nil {
		return err
	}
	var out control.Changed
	return x.change(http.MethodDelete, "/v1/instances/"+esc(x.pos[0]), nil, &out, func() {
		fmt.Fprintf(x.stdout, "removed instance %s (version %d)\n", x.pos[0], out.Version)
	})
}

func ctlInstanceGroups(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 2, -1, "NAME G1[,G2...]"); err != nil {
		return err
	}
	groups := splitList(x.pos[1:]...)
	var out control.Changed
	return x.change(http.MethodPut, "/v1/instances/"+esc(x.pos[0])+"/security-groups", control.MembershipSpec{SecurityGroups: groups}, &out, func() {
		fmt.Fprintf(x.stdout, "instance %s is in security groups %s (version %d)\n", x.pos[0], strings.Join(out.Instance.SecurityGroups, ", "), out.Version)
	})
}

// --- connection tracking ---

func ctlConntrackList(x *ctlCmd, args []string) error {
	fs := x.flags(false)
	instance := fs.String("instance", "", "only connections of instance `NAME` (or uplink), either end")
	proto := fs.String("protocol", "", "only `PROTO` (tcp, udp, icmp, ... or a number)")
	address := fs.String("address", "", "only connections with `IP` at either end")
	limit := fs.String("limit", "", "at most `N` connections (default 1000, 0 for all)")
	if err := x.parse(args, 0, 0, "[--instance NAME] [--protocol PROTO] [--address IP] [--limit N] [-o json]"); err != nil {
		return err
	}
	q := url.Values{}
	for _, f := range []struct{ key, val string }{{"instance", *instance}, {"protocol", *proto}, {"address", *address}, {"limit", *limit}} {
		if f.val != "" {
			q.Set(f.key, f.val)
		}
	}
	path := "/v1/conntrack"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var ct control.ConntrackView
	if err := x.c.get(x.ctx, path, &ct); err != nil {
		return err
	}
	if x.json() {
		return printJSON(x.stdout, ct)
	}
	tw := x.table()
	fmt.Fprintln(tw, "FROM\tTO\tCONNECTION\tSTATE\tTIMEOUT\tPACKETS\tBYTES\tPOLICY")
	for _, c := range ct.Connections {
		policy := "allowed"
		if !c.Allowed {
			policy = "denied"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%ds\t%d/%d\t%d/%d\t%s\n", c.From, c.To, c.Key, c.State, c.Timeout,
			c.Packets.Original, c.Packets.Reply, c.Bytes.Original, c.Bytes.Reply, policy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if ct.Truncated {
		fmt.Fprintf(x.stderr, "showing the first %d matching connections of %d tracked; --limit N for more, 0 for all\n", len(ct.Connections), ct.Total)
	}
	return nil
}

func ctlConntrackFlush(x *ctlCmd, args []string) error {
	if err := x.parse(args, 0, 0, ""); err != nil {
		return err
	}
	var out struct {
		Flushed int `json:"flushed"`
	}
	return x.change(http.MethodDelete, "/v1/conntrack", nil, &out, func() {
		fmt.Fprintf(x.stdout, "flushed %d tracked connections\n", out.Flushed)
	})
}

// --- the whole configuration ---

// ctlReload sends a configuration file to the switch, which puts it in
// force and writes it over its own file (PUT /v1/configuration); with
// --dry-run it says what the file would change and cut.
func ctlReload(x *ctlCmd, args []string) error {
	x.flags(true)
	if err := x.parse(args, 1, 1, "FILE [--dry-run]"); err != nil {
		return err
	}
	file := x.pos[0]
	data, err := os.ReadFile(file)
	if err != nil {
		return usageError("%s: %v", x.name, err)
	}
	// Check it here first: the errors then name the file as the user knows it.
	if _, err := config.Parse(file, data); err != nil {
		return &exitError{code: 2, err: err}
	}
	var out control.Reloaded
	return x.change(http.MethodPut, "/v1/configuration?file="+url.QueryEscape(filepath.Base(file)), rawBody(data), &out, func() {
		fmt.Fprintf(x.stdout, "reloaded %s (version %d)\n", file, out.Version)
		for _, c := range out.Changes {
			fmt.Fprintf(x.stdout, "changed %s\n", c)
		}
	})
}
