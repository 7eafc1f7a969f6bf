package config

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Diff says in a few words what changed from old to new: groups and
// instances added, removed or changed, for the log line of a reload.
func Diff(old, new *Config) string {
	var parts []string
	oldGroups := map[string]*SecurityGroup{}
	for i := range old.SecurityGroups {
		oldGroups[old.SecurityGroups[i].Name] = &old.SecurityGroups[i]
	}
	newGroups := map[string]bool{}
	for i := range new.SecurityGroups {
		g := &new.SecurityGroups[i]
		newGroups[g.Name] = true
		switch o := oldGroups[g.Name]; {
		case o == nil:
			parts = append(parts, fmt.Sprintf("group %s added (%d rules)", g.Name, len(g.Rules)))
		case !sameGroup(o, g):
			parts = append(parts, fmt.Sprintf("group %s changed (%d → %d rules, %d → %d external sources)",
				g.Name, len(o.Rules), len(g.Rules), len(o.ExternalSources), len(g.ExternalSources)))
		}
	}
	for _, g := range old.SecurityGroups {
		if !newGroups[g.Name] {
			parts = append(parts, "group "+g.Name+" removed")
		}
	}
	oldInst := map[string]*Instance{}
	for i := range old.Instances {
		oldInst[old.Instances[i].Name] = &old.Instances[i]
	}
	newInst := map[string]bool{}
	for i := range new.Instances {
		in := &new.Instances[i]
		newInst[in.Name] = true
		switch o := oldInst[in.Name]; {
		case o == nil:
			parts = append(parts, "instance "+in.Name+" added")
		case !slices.Equal(o.SecurityGroups, in.SecurityGroups):
			parts = append(parts, fmt.Sprintf("instance %s groups %v → %v", in.Name, o.SecurityGroups, in.SecurityGroups))
		case o.SMTPEgress != in.SMTPEgress || o.IPv4 != in.IPv4 || o.IPv6 != in.IPv6 || o.MAC.String() != in.MAC.String() || o.TAP != in.TAP || o.Netdev != in.Netdev:
			parts = append(parts, "instance "+in.Name+" changed")
		}
	}
	for _, in := range old.Instances {
		if !newInst[in.Name] {
			parts = append(parts, "instance "+in.Name+" removed")
		}
	}
	if !reflect.DeepEqual(old.Switch, new.Switch) || !reflect.DeepEqual(old.Uplink, new.Uplink) {
		parts = append(parts, "switch or uplink settings changed")
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

func sameGroup(a, b *SecurityGroup) bool {
	if a.Description != b.Description || !slices.Equal(a.ExternalSources, b.ExternalSources) || len(a.Rules) != len(b.Rules) {
		return false
	}
	for i := range a.Rules {
		x, y := a.Rules[i], b.Rules[i]
		x.Line, y.Line = 0, 0
		if x != y {
			return false
		}
	}
	return true
}
