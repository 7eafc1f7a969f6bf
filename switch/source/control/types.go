package control

import (
	"math"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

// The bodies of the control API use the configuration file's field names
// (SPEC §6), so that what a client sends is what the file will hold. A body
// is decoded strictly (unknown fields refused), turned into the YAML node the
// file would hold, and checked by the configuration parser itself, in place
// in the whole configuration: the API has no validation of its own.

// RuleSpec is one rule, as sent to POST /v1/security-groups/{name}/rules and
// as shown in a group. Absent fields are nil. What GET shows can be sent back
// as is.
type RuleSpec struct {
	FlowDirection *string   `json:"flow-direction,omitempty"`
	Protocol      *string   `json:"protocol,omitempty"`
	StartPort     *int64    `json:"start-port,omitempty"`
	EndPort       *int64    `json:"end-port,omitempty"`
	Network       *string   `json:"network,omitempty"`
	SecurityGroup *string   `json:"security-group,omitempty"`
	ICMP          *ICMPSpec `json:"icmp,omitempty"`
	Description   *string   `json:"description,omitempty"`
}

// ICMPSpec is a rule's `icmp: {type, code}`; absent or -1 means any.
type ICMPSpec struct {
	Type *int64 `json:"type,omitempty"`
	Code *int64 `json:"code,omitempty"`
}

// GroupSpec is the body of POST /v1/security-groups.
type GroupSpec struct {
	Name            *string    `json:"name"`
	Description     *string    `json:"description,omitempty"`
	Rules           []RuleSpec `json:"rules,omitempty"`
	ExternalSources []string   `json:"external-sources,omitempty"`
}

// GroupView is a security group as the API shows it: the file's fields, and
// the instances that belong to it (read only).
type GroupView struct {
	Name            string     `json:"name"`
	Description     string     `json:"description,omitempty"`
	Rules           []RuleSpec `json:"rules"`
	ExternalSources []string   `json:"external-sources"`
	Instances       []string   `json:"instances"`
}

// InstanceSpec is the body of POST /v1/instances. A nil SecurityGroups is an
// absent field (the instance joins `default`); an empty list is refused.
type InstanceSpec struct {
	Name           *string        `json:"name"`
	Host           *string        `json:"host,omitempty"` // in a cluster: the host it runs on
	TAP            *string        `json:"tap,omitempty"`
	Netdev         *string        `json:"netdev,omitempty"`
	VhostUser      *VhostUserSpec `json:"vhost-user,omitempty"`
	MAC            *string        `json:"mac"`
	IPv4           *string        `json:"ipv4"`
	IPv6           *string        `json:"ipv6,omitempty"`
	SecurityGroups []string       `json:"security-groups,omitempty"`
	SMTPEgress     *bool          `json:"smtp-egress,omitempty"`
}

// VhostUserSpec is an instance's vhost-user port, as in the file; a field
// left out is reported missing by the file's own validation.
type VhostUserSpec struct {
	Socket string `json:"socket,omitempty"`
	Mode   string `json:"mode,omitempty"`
}

// ExternalSourcesSpec is the body of PUT .../external-sources (a bare JSON
// list is accepted too).
type ExternalSourcesSpec struct {
	ExternalSources []string `json:"external-sources"`
}

// MembershipSpec is the body of PUT /v1/instances/{name}/security-groups (a
// bare JSON list is accepted too).
type MembershipSpec struct {
	SecurityGroups []string `json:"security-groups"`
}

// RuleAdded answers POST /v1/security-groups/{name}/rules.
type RuleAdded struct {
	Group    string   `json:"group"`
	Index    int      `json:"index"` // position in the group's list, both directions together
	ID       string   `json:"id"`    // group/direction/index, as trace and replay name rules
	Rule     RuleSpec `json:"rule"`  // as the file now holds it (canonical)
	Version  uint64   `json:"version"`
	Warnings []string `json:"warnings,omitempty"`
	// DryRun is set when the change was a dry run (?dry-run=true): the rest
	// of the answer is what it would be, nothing was done.
	DryRun *DryRunView `json:"dry-run,omitempty"`
}

// Changed answers the other changes: what changed and the new version.
type Changed struct {
	Version  uint64        `json:"version"`
	Warnings []string      `json:"warnings,omitempty"`
	Group    *GroupView    `json:"group,omitempty"`
	Instance *InstanceView `json:"instance,omitempty"`
	Deleted  string        `json:"deleted,omitempty"`
	DryRun   *DryRunView   `json:"dry-run,omitempty"` // see RuleAdded.DryRun
}

// Reloaded answers PUT /v1/configuration: the new version and what changed.
type Reloaded struct {
	Version  uint64          `json:"version"`
	Warnings []string        `json:"warnings,omitempty"`
	Changes  []config.Change `json:"changes"`
	DryRun   *DryRunView     `json:"dry-run,omitempty"` // see RuleAdded.DryRun
}

// DryRunView is what a change would do (?dry-run=true on any change):
// nothing is applied, nothing written, the version stays.
type DryRunView struct {
	Version uint64          `json:"version"` // the version in force, unchanged
	Changes []config.Change `json:"changes"` // what would change, in the file's words (sgswitch diff)
	Checked int             `json:"checked"` // tracked connections evaluated
	// Cut lists the tracked connections the change would cut, at most
	// Limit of them (0: all); CutTotal counts them all.
	Cut       []CutView `json:"cut"`
	CutTotal  int       `json:"cut-total"`
	Limit     int       `json:"limit"`
	Truncated bool      `json:"truncated"`
	// PersistEstablished: the switch keeps established connections across
	// policy changes, so the connections marked kept would survive: the
	// change would have cut them.
	PersistEstablished bool    `json:"persist-established"`
	ElapsedMS          float64 `json:"elapsed-ms"`
}

// CutView is one tracked connection a change would cut.
type CutView struct {
	ConnView
	AllowedBy string `json:"allowed-by"` // what allows it now: group/direction/index, or default-egress
	Reason    string `json:"reason"`     // why the change would refuse it (ingress-policy, egress-policy, smtp, unknown-destination, spoof-ip)
	Kept      bool   `json:"kept"`       // persist-established would keep it
}

// ConnView is one tracked connection (GET /v1/conntrack).
type ConnView struct {
	Key             string       `json:"key"` // "tcp 10.0.0.11:40000 > 10.0.0.21:3306", as the originator sent it
	Protocol        string       `json:"protocol"`
	Source          string       `json:"source"`
	Destination     string       `json:"destination"`
	SourcePort      uint16       `json:"source-port,omitempty"`      // tcp, udp; the identifier for ICMP echo
	DestinationPort uint16       `json:"destination-port,omitempty"` // tcp, udp
	State           string       `json:"state"`
	Timeout         int64        `json:"timeout"` // seconds left, rounded up
	From            string       `json:"from"`    // the originator's port: instance name or "uplink"
	To              string       `json:"to"`      // the responder's port
	Allowed         bool         `json:"allowed"` // the policy's answer at its last check
	Packets         ConnCounters `json:"packets"`
	Bytes           ConnCounters `json:"bytes"`
}

// ConnCounters is a pair of counters by direction of a connection.
type ConnCounters struct {
	Original uint64 `json:"original"`
	Reply    uint64 `json:"reply"`
}

// ConntrackView answers GET /v1/conntrack.
type ConntrackView struct {
	Connections []ConnView `json:"connections"`
	// Total is every connection the table holds; Truncated says that more
	// matched than the limit let through.
	Total     int  `json:"total"`
	Limit     int  `json:"limit"`
	Truncated bool `json:"truncated"`
}

// --- views of the configuration ---

func ruleView(r *config.Rule) RuleSpec {
	str := func(s string) *string { return &s }
	num := func(n int64) *int64 { return &n }
	v := RuleSpec{FlowDirection: str(r.FlowDirection.String()), Protocol: str(r.Protocol.String())}
	if r.Protocol == config.ProtoTCP || r.Protocol == config.ProtoUDP {
		v.StartPort, v.EndPort = num(int64(r.StartPort)), num(int64(r.EndPort))
	}
	if r.SecurityGroup != "" {
		v.SecurityGroup = str(r.SecurityGroup)
	} else {
		v.Network = str(r.Network.String())
	}
	if r.ICMPType != -1 || r.ICMPCode != -1 {
		v.ICMP = &ICMPSpec{Type: num(int64(r.ICMPType))}
		if r.ICMPCode != -1 {
			v.ICMP.Code = num(int64(r.ICMPCode))
		}
	}
	if r.Description != "" {
		v.Description = str(r.Description)
	}
	return v
}

func groupView(cfg *config.Config, g *config.SecurityGroup) GroupView {
	v := GroupView{Name: g.Name, Description: g.Description, Rules: []RuleSpec{}, ExternalSources: []string{}, Instances: []string{}}
	for i := range g.Rules {
		v.Rules = append(v.Rules, ruleView(&g.Rules[i]))
	}
	for _, p := range g.ExternalSources {
		v.ExternalSources = append(v.ExternalSources, p.String())
	}
	for _, in := range cfg.Instances {
		for _, name := range in.SecurityGroups {
			if name == g.Name {
				v.Instances = append(v.Instances, in.Name)
				break
			}
		}
	}
	return v
}

func instanceView(in *config.Instance) InstanceView {
	v := InstanceView{Name: in.Name, Host: in.Host, TAP: in.TAP, Netdev: in.Netdev, MAC: in.MAC.String(), IPv4: in.IPv4.String(),
		SecurityGroups: in.SecurityGroups, SMTPEgress: in.SMTPEgress}
	if vu := in.VhostUser; vu != nil {
		v.VhostUser = &VhostUserSpec{Socket: vu.Socket, Mode: vu.Mode}
	}
	if in.IPv6.IsValid() {
		v.IPv6 = in.IPv6.String()
	}
	return v
}

// ruleID names a rule as trace and replay do: group/direction/index.
func ruleID(group string, r *config.Rule, index int) string {
	return group + "/" + r.FlowDirection.String() + "/" + strconv.Itoa(index)
}

func connView(s *vswitch.Switch, ci *conntrack.ConnInfo) ConnView {
	k := ci.Key
	v := ConnView{
		Key:         k.String(),
		Protocol:    ci.Protocol,
		Source:      k.SrcAddr().String(),
		Destination: k.DstAddr().String(),
		State:       ci.State.String(),
		Timeout:     int64(math.Ceil(ci.Timeout.Seconds())),
		From:        s.PortLabel(int(ci.Meta.A)),
		To:          s.PortLabel(int(ci.Meta.B)),
		Allowed:     ci.Meta.Allowed,
		Packets:     ConnCounters{ci.Packets[conntrack.Original], ci.Packets[conntrack.Reply]},
		Bytes:       ConnCounters{ci.Bytes[conntrack.Original], ci.Bytes[conntrack.Reply]},
	}
	switch k.Proto {
	case 6, 17:
		v.SourcePort, v.DestinationPort = k.SrcPort, k.DstPort
	case 1, 58:
		v.SourcePort = k.SrcPort
	}
	return v
}

// --- bodies as the YAML the file would hold ---

func yStr(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func yInt(n int64) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(n, 10)}
}
func yBool(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}
func yMap() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }
func yList(items []string) *yaml.Node {
	l := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle, Content: []*yaml.Node{}}
	for _, s := range items {
		l.Content = append(l.Content, yStr(s))
	}
	return l
}

// yPut appends key: v to mapping m.
func yPut(m *yaml.Node, key string, v *yaml.Node) { m.Content = append(m.Content, yStr(key), v) }

// yGet is the value of key in mapping m, nil when absent.
func yGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// ySet replaces the value of key in mapping m, or appends it; a nil v
// removes the key.
func ySet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			if v == nil {
				m.Content = append(m.Content[:i], m.Content[i+2:]...)
			} else {
				m.Content[i+1] = v
			}
			return
		}
	}
	if v != nil {
		yPut(m, key, v)
	}
}

func (r *RuleSpec) node() *yaml.Node {
	m := yMap()
	m.Style = yaml.FlowStyle
	putStr := func(k string, s *string) {
		if s != nil {
			yPut(m, k, yStr(*s))
		}
	}
	putInt := func(k string, n *int64) {
		if n != nil {
			yPut(m, k, yInt(*n))
		}
	}
	putStr("flow-direction", r.FlowDirection)
	putStr("protocol", r.Protocol)
	putInt("start-port", r.StartPort)
	putInt("end-port", r.EndPort)
	if r.ICMP != nil {
		icmp := yMap()
		icmp.Style = yaml.FlowStyle
		if r.ICMP.Type != nil {
			yPut(icmp, "type", yInt(*r.ICMP.Type))
		}
		if r.ICMP.Code != nil {
			yPut(icmp, "code", yInt(*r.ICMP.Code))
		}
		yPut(m, "icmp", icmp)
	}
	putStr("security-group", r.SecurityGroup)
	putStr("network", r.Network)
	putStr("description", r.Description)
	return m
}

func (g *GroupSpec) node() *yaml.Node {
	m := yMap()
	if g.Name != nil {
		yPut(m, "name", yStr(*g.Name))
	}
	if g.Description != nil {
		yPut(m, "description", yStr(*g.Description))
	}
	if g.ExternalSources != nil {
		yPut(m, "external-sources", yList(g.ExternalSources))
	}
	if g.Rules != nil {
		l := &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{}}
		for i := range g.Rules {
			l.Content = append(l.Content, g.Rules[i].node())
		}
		yPut(m, "rules", l)
	}
	return m
}

func (in *InstanceSpec) node() *yaml.Node {
	m := yMap()
	m.Style = yaml.FlowStyle
	for _, f := range []struct {
		key string
		val *string
	}{{"name", in.Name}, {"host", in.Host}, {"tap", in.TAP}, {"netdev", in.Netdev}, {"mac", in.MAC}, {"ipv4", in.IPv4}, {"ipv6", in.IPv6}} {
		if f.val != nil {
			yPut(m, f.key, yStr(*f.val))
		}
	}
	if vu := in.VhostUser; vu != nil {
		n := yMap()
		n.Style = yaml.FlowStyle
		if vu.Socket != "" {
			yPut(n, "socket", yStr(vu.Socket))
		}
		if vu.Mode != "" {
			yPut(n, "mode", yStr(vu.Mode))
		}
		yPut(m, "vhost-user", n)
	}
	if in.SecurityGroups != nil {
		yPut(m, "security-groups", yList(in.SecurityGroups))
	}
	if in.SMTPEgress != nil {
		yPut(m, "smtp-egress", yBool(*in.SMTPEgress))
	}
	return m
}

func yListNode() *yaml.Node { return &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{}} }
