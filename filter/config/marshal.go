package config

import (
	"bytes"
	"net/netip"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes cfg in the file format of SPEC §6: canonical values, fields
// that hold their default left out, rules and instances one per line in flow
// style. Parse(file, Marshal(cfg)) gives back cfg except for File, Warnings
// and the Line fields. The original file's comments are not kept: this is
// the write-back of a configuration changed through the control API.
func Marshal(cfg *Config) ([]byte, error) {
	top := mapNode(false)
	if sw := marshalSwitch(&cfg.Switch); len(sw.Content) > 0 {
		put(top, "switch", sw)
	}
	if u := marshalUplink(cfg.Uplink); u != nil {
		put(top, "uplink", u)
	}
	if c := cfg.Cluster; c != nil {
		put(top, "cluster", marshalCluster(c))
	}
	if groups := cfg.SecurityGroups; len(groups) > 0 {
		// Parse adds an empty `default` at the end when the file has none,
		// so writing that one out would only add noise.
		if last := groups[len(groups)-1]; last.Name == DefaultGroup && last.Description == "" && len(last.Rules) == 0 && len(last.ExternalSources) == 0 {
			groups = groups[:len(groups)-1]
		}
		if len(groups) > 0 {
			l := listNode(false)
			for i := range groups {
				l.Content = append(l.Content, marshalGroup(&groups[i]))
			}
			put(top, "security-groups", l)
		}
	}
	if len(cfg.Instances) > 0 {
		l := listNode(false)
		for i := range cfg.Instances {
			l.Content = append(l.Content, marshalInstance(&cfg.Instances[i]))
		}
		put(top, "instances", l)
	}

	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(top); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func marshalSwitch(s *Switch) *yaml.Node {
	m := mapNode(false)
	if s.Control != DefaultControl {
		put(m, "control", strNode(s.Control))
	}
	if s.Metrics != DefaultMetrics {
		put(m, "metrics", strNode(s.Metrics))
	}
	if s.Conntrack.Max != DefaultConntrackMax || s.Conntrack.PerInstance != DefaultPerInstance || s.Conntrack.Timeouts != (ConntrackTimeouts{}) {
		ct := mapNode(false)
		if s.Conntrack.Max != DefaultConntrackMax {
			put(ct, "max", intNode(int64(s.Conntrack.Max)))
		}
		if s.Conntrack.PerInstance != DefaultPerInstance {
			put(ct, "per-instance-max", intNode(int64(s.Conntrack.PerInstance)))
		}
		if s.Conntrack.Timeouts != (ConntrackTimeouts{}) {
			to := mapNode(true)
			for _, f := range TimeoutFields {
				if d := *f.Field(&s.Conntrack.Timeouts); d != 0 {
					put(to, f.Name, intNode(int64(d/time.Second)))
				}
			}
			put(ct, "timeouts", to)
		}
		put(m, "conntrack", ct)
	}
	if s.PersistEstablished {
		put(m, "persist-established", boolNode(true))
	}
	if !s.Offload {
		put(m, "offload", boolNode(false))
	}
	if s.Queues != 1 {
		put(m, "queues", intNode(int64(s.Queues)))
	}
	if s.Poll != (Poll{Spin: DefaultPollSpin}) {
		pm := mapNode(true)
		if s.Poll.Threads != 0 {
			put(pm, "threads", intNode(int64(s.Poll.Threads)))
		}
		if s.Poll.Spin != DefaultPollSpin {
			put(pm, "spin-us", intNode(int64(s.Poll.Spin/time.Microsecond)))
		}
		put(m, "poll", pm)
	}
	if s.MaxUplinkMACs != DefaultUplinkMACs {
		put(m, "uplink-macs", intNode(int64(s.MaxUplinkMACs)))
	}
	if s.MACAgeing != DefaultMACAgeing {
		put(m, "mac-ageing", intNode(int64(s.MACAgeing/time.Second)))
	}
	dhcp := mapNode(true)
	if len(s.DHCP.DNS) > 0 {
		put(dhcp, "dns", addrList(s.DHCP.DNS))
	}
	if s.DHCP.LeaseTime != DefaultLeaseTime {
		put(dhcp, "lease-time", intNode(int64(s.DHCP.LeaseTime/time.Second)))
	}
	if len(dhcp.Content) > 0 {
		put(m, "dhcp", dhcp)
	}
	return m
}

func marshalGroup(g *SecurityGroup) *yaml.Node {
	m := mapNode(false)
	put(m, "name", strNode(g.Name))
	if g.Description != "" {
		put(m, "description", strNode(g.Description))
	}
	if len(g.ExternalSources) > 0 {
		l := listNode(true)
		for _, p := range g.ExternalSources {
			l.Content = append(l.Content, strNode(p.String()))
		}
		put(m, "external-sources", l)
	}
	if len(g.Rules) > 0 {
		l := listNode(false)
		for i := range g.Rules {
			l.Content = append(l.Content, marshalRule(&g.Rules[i]))
		}
		put(m, "rules", l)
	}
	return m
}

// marshalRule writes the fields in the order of the SPEC's example.
func marshalRule(r *Rule) *yaml.Node {
	m := mapNode(true)
	put(m, "flow-direction", strNode(r.FlowDirection.String()))
	put(m, "protocol", strNode(r.Protocol.String()))
	if (r.Protocol == ProtoTCP || r.Protocol == ProtoUDP) && (r.StartPort != 1 || r.EndPort != 65535) {
		put(m, "start-port", intNode(int64(r.StartPort)))
		put(m, "end-port", intNode(int64(r.EndPort)))
	}
	if r.ICMPType != -1 || r.ICMPCode != -1 {
		icmp := mapNode(true)
		put(icmp, "type", intNode(int64(r.ICMPType)))
		if r.ICMPCode != -1 {
			put(icmp, "code", intNode(int64(r.ICMPCode)))
		}
		put(m, "icmp", icmp)
	}
	if r.SecurityGroup != "" {
		put(m, "security-group", strNode(r.SecurityGroup))
	} else {
		put(m, "network", strNode(r.Network.String()))
	}
	if r.Description != "" {
		put(m, "description", strNode(r.Description))
	}
	return m
}

func marshalInstance(in *Instance) *yaml.Node {
	m := mapNode(true)
	put(m, "name", strNode(in.Name))
	if in.Host != "" {
		put(m, "host", strNode(in.Host))
	}
	switch {
	case in.VhostUser != nil:
		put(m, "vhost-user", marshalVhostUser(in.VhostUser))
	case in.Netdev != "":
		put(m, "netdev", strNode(in.Netdev))
	case in.TAP != in.Name:
		put(m, "tap", strNode(in.TAP))
	}
	mac := strNode(in.MAC.String())
	// Quoted: a YAML 1.1 reader would take 02:00:00:00:00:11 for a number.
	mac.Style = yaml.DoubleQuotedStyle
	put(m, "mac", mac)
	put(m, "ipv4", strNode(in.IPv4.String()))
	if in.IPv6.IsValid() {
		put(m, "ipv6", strNode(in.IPv6.String()))
	}
	// Written even when it is just [default]: membership is what decides the
	// policy, so the file shows it.
	groups := listNode(true)
	for _, g := range in.SecurityGroups {
		groups.Content = append(groups.Content, strNode(g))
	}
	put(m, "security-groups", groups)
	if in.SMTPEgress {
		put(m, "smtp-egress", boolNode(true))
	}
	return m
}

func addrList(addrs []netip.Addr) *yaml.Node {
	l := listNode(true)
	for _, a := range addrs {
		l.Content = append(l.Content, strNode(a.String()))
	}
	return l
}

func mapNode(flow bool) *yaml.Node  { return &yaml.Node{Kind: yaml.MappingNode, Style: style(flow)} }
func listNode(flow bool) *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode, Style: style(flow)} }

func style(flow bool) yaml.Style {
	if flow {
		return yaml.FlowStyle
	}
	return 0
}

// strNode is tagged !!str so that the encoder quotes values that would
// otherwise read back as another type (a group called "true" or "123").
func strNode(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func intNode(n int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(n, 10)}
}
func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

func put(m *yaml.Node, key string, v *yaml.Node) { m.Content = append(m.Content, strNode(key), v) }
