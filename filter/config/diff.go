package config

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Change is one difference between two configurations, in the file's words:
// what it is about (Subject: "group web", "instance web1", "switch",
// "uplink") and what changed (What), values written as Marshal writes them.
type Change struct {
	Subject string `json:"subject"`
	What    string `json:"change"`
}

func (c Change) String() string { return c.Subject + ": " + c.What }

// Changes lists what differs from old to new: groups added and removed, and
// in each group that stays its description, external sources (members) and
// rules, added or removed (and moved, when the rules that stay change order);
// instances added and removed, and each field of an instance that stays
// (its security groups, addresses, port); the switch's and the uplink's
// settings. Groups come first, in new's order, then instances, then the
// rest. It serves `sgswitch diff` and the log line of a reload (Diff).
func Changes(old, new *Config) []Change {
	var out []Change
	add := func(subject, format string, args ...any) {
		out = append(out, Change{subject, fmt.Sprintf(format, args...)})
	}
	for i := range new.SecurityGroups {
		g := &new.SecurityGroups[i]
		subject := "group " + g.Name
		o, _ := old.Group(g.Name)
		if o == nil {
			add(subject, "added")
			o = &SecurityGroup{Name: g.Name}
		}
		if o.Description != g.Description {
			add(subject, "description %q → %q", o.Description, g.Description)
		}
		for _, p := range g.ExternalSources {
			if !slices.Contains(o.ExternalSources, p) {
				add(subject, "external source added: %s", p)
			}
		}
		for _, p := range o.ExternalSources {
			if !slices.Contains(g.ExternalSources, p) {
				add(subject, "external source removed: %s", p)
			}
		}
		out = append(out, ruleChanges(subject, o, g)...)
	}
	for i := range old.SecurityGroups {
		g := &old.SecurityGroups[i]
		if n, _ := new.Group(g.Name); n == nil {
			add("group "+g.Name, "removed (%d rules, %d external sources)", len(g.Rules), len(g.ExternalSources))
		}
	}
	for i := range new.Instances {
		in := &new.Instances[i]
		subject := "instance " + in.Name
		o, _ := old.Instance(in.Name)
		if o == nil {
			add(subject, "added: %s", flowText(marshalInstance(in)))
			continue
		}
		out = append(out, fieldChanges(subject, marshalInstance(o), marshalInstance(in), "the default")...)
	}
	for i := range old.Instances {
		in := &old.Instances[i]
		if n, _ := new.Instance(in.Name); n == nil {
			add("instance "+in.Name, "removed: %s", flowText(marshalInstance(in)))
		}
	}
	out = append(out, fieldChanges("switch", marshalSwitch(&old.Switch), marshalSwitch(&new.Switch), "the default")...)
	out = append(out, fieldChanges("uplink", marshalUplink(old.Uplink), marshalUplink(new.Uplink), "absent")...)
	return out
}

// Diff says what changed from old to new on one line (the Changes joined by
// "; "), for the log line of a reload; "no change" when nothing did.
func Diff(old, new *Config) string {
	cs := Changes(old, new)
	if len(cs) == 0 {
		return "no change"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, "; ")
}

// ruleChanges compares the rules of group o (old) and g (new) by content:
// a rule of g that o does not hold is added, one of o that g does not hold
// is removed (one removed and one added at the same index and direction is
// an edit: its changed fields are listed), and, when the rules both hold are
// not in the same order, each
// of them at another index moved. Each is named group/direction/index, the
// index in the list it is in.
func ruleChanges(subject string, o, g *SecurityGroup) []Change {
	text := func(rs []Rule) []string {
		t := make([]string, len(rs))
		for i := range rs {
			t[i] = flowText(marshalRule(&rs[i]))
		}
		return t
	}
	ot, nt := text(o.Rules), text(g.Rules)
	name := func(grp *SecurityGroup, i int) string {
		return grp.Name + "/" + grp.Rules[i].FlowDirection.String() + "/" + strconv.Itoa(i)
	}
	// Pair equal rules in order, so that duplicates of one text (which a
	// group cannot hold, but an old file might) pair one to one.
	used := make([]bool, len(ot))
	pair := make([]int, len(nt))
	for j, t := range nt {
		pair[j] = -1
		for i := range ot {
			if !used[i] && ot[i] == t {
				used[i], pair[j] = true, i
				break
			}
		}
	}
	// A rule that only shifted because others came or went is not news;
	// moves are listed when the rules that stay changed their order.
	reordered, last := false, -1
	for _, i := range pair {
		if i >= 0 {
			reordered = reordered || i < last
			last = i
		}
	}
	// A rule removed and another added at the same index, in the same
	// direction, is one rule edited: say which fields changed.
	edited := func(j int) bool {
		return pair[j] < 0 && j < len(ot) && !used[j] && o.Rules[j].FlowDirection == g.Rules[j].FlowDirection
	}
	var out []Change
	for i, t := range ot {
		if !used[i] && !(i < len(nt) && edited(i)) {
			out = append(out, Change{subject, "rule removed: " + name(o, i) + " " + t})
		}
	}
	for j, t := range nt {
		switch i := pair[j]; {
		case edited(j):
			var what []string
			for _, c := range fieldChanges("", marshalRule(&o.Rules[j]), marshalRule(&g.Rules[j]), "absent") {
				what = append(what, c.What)
			}
			out = append(out, Change{subject, "rule changed: " + name(g, j) + " " + strings.Join(what, ", ") + ": " + t})
		case i < 0:
			out = append(out, Change{subject, "rule added: " + name(g, j) + " " + t})
		case i != j && reordered:
			out = append(out, Change{subject, "rule moved: " + name(o, i) + " → " + name(g, j) + " " + t})
		}
	}
	return out
}

// fieldChanges compares two mappings as Marshal writes them, field by field;
// absent says what a field that Marshal leaves out holds.
func fieldChanges(subject string, o, n *yaml.Node, absent string) []Change {
	ov, nv := fields(o), fields(n)
	var keys []string
	for _, m := range []*yaml.Node{o, n} {
		for i := 0; m != nil && i+1 < len(m.Content); i += 2 {
			if k := m.Content[i].Value; !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	var out []Change
	for _, k := range keys {
		a, aok := ov[k]
		b, bok := nv[k]
		switch {
		case !aok:
			out = append(out, Change{subject, k + " " + b + " (was " + absent + ")"})
		case !bok:
			out = append(out, Change{subject, k + " " + a + " → " + absent})
		case a != b:
			out = append(out, Change{subject, k + " " + a + " → " + b})
		}
	}
	return out
}

func fields(m *yaml.Node) map[string]string {
	out := map[string]string{}
	for i := 0; m != nil && i+1 < len(m.Content); i += 2 {
		out[m.Content[i].Value] = flowText(m.Content[i+1])
	}
	return out
}

// marshalUplink is the uplink section as Marshal writes it; nil without one.
func marshalUplink(u *Uplink) *yaml.Node {
	if u == nil {
		return nil
	}
	m := mapNode(false)
	if u.Netdev != "" {
		put(m, "netdev", strNode(u.Netdev))
	} else {
		put(m, "port", strNode(u.Port))
	}
	put(m, "gateway", strNode(u.Gateway.String()))
	if len(u.LabHosts) > 0 {
		put(m, "lab-hosts", addrList(u.LabHosts))
	}
	return m
}

// flowText writes a node on one line, in flow style.
func flowText(n *yaml.Node) string {
	c := *n
	flowAll(&c)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	if err := enc.Encode(&c); err != nil {
		return "?"
	}
	enc.Close()
	// The encoder folds lines past 80 columns, between tokens: one change,
	// one line.
	return strings.Join(strings.Fields(buf.String()), " ")
}

// flowAll sets flow style on n and every collection under it, copying the
// collections it changes so that n's owner is untouched.
func flowAll(n *yaml.Node) {
	if n.Kind != yaml.MappingNode && n.Kind != yaml.SequenceNode {
		return
	}
	n.Style = yaml.FlowStyle
	content := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		cc := *c
		flowAll(&cc)
		content[i] = &cc
	}
	n.Content = content
}
