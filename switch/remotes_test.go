package vswitch

import (
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/port"
)

// TestRemoteTableIncremental applies a sequence of cluster revisions to one
// switch and checks after each that the remote-instance table it kept or
// edited is the table built whole from the revision, and that a revision
// that changes no remote instance's addresses shares the previous table.
func TestRemoteTableIncremental(t *testing.T) {
	type inst struct{ name, host, mac, v4, v6, group string }
	base := []inst{
		{"a1", "hv-a", "02:00:00:00:00:01", "10.0.0.1/24", "fd00::1/64", "web"},
		{"b1", "hv-b", "02:00:00:00:00:02", "10.0.0.2/24", "", "web"},
		{"b2", "hv-b", "02:00:00:00:00:03", "10.0.0.3/24", "fd00::3/64", "db"},
		{"c1", "hv-c", "02:00:00:00:00:04", "10.0.0.4/24", "", "db"},
		{"c2", "hv-c", "02:00:00:00:00:05", "10.0.0.5/24", "fd00::5/64", "web"},
	}
	text := func(list []inst) string {
		var b strings.Builder
		b.WriteString("cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}\nuplink: {port: up0, gateway: 10.0.0.254/24}\n")
		b.WriteString("security-groups:\n  - {name: web, rules: [{flow-direction: ingress, protocol: tcp, security-group: db}]}\n  - {name: db}\ninstances:\n")
		for _, in := range list {
			fmt.Fprintf(&b, "  - {name: %s, host: %s, mac: %q, ipv4: %s, security-groups: [%s]", in.name, in.host, in.mac, in.v4, in.group)
			if in.v6 != "" {
				fmt.Fprintf(&b, ", ipv6: %q", in.v6)
			}
			b.WriteString("}\n")
		}
		return b.String()
	}
	edit := func(list []inst, f func([]inst) []inst) []inst { return f(append([]inst(nil), list...)) }
	steps := []struct {
		name   string
		list   []inst
		shared bool // the previous table is shared
	}{
		{"start", base, false},
		{"membership change of a remote instance", edit(base, func(l []inst) []inst { l[2].group = "web"; return l }), true},
		{"a remote instance's IPv4 changes", edit(base, func(l []inst) []inst { l[1].v4 = "10.0.0.12/24"; return l }), false},
		{"a remote instance gains an IPv6 address", edit(base, func(l []inst) []inst { l[1].v4, l[1].v6 = "10.0.0.12/24", "fd00::2/64"; return l }), false},
		{"two remote instances swap addresses", edit(base, func(l []inst) []inst { l[1].v4, l[3].v4 = l[3].v4, l[1].v4; return l }), false},
		{"a remote instance's MAC changes", edit(base, func(l []inst) []inst { l[3].mac = "02:00:00:00:00:44"; return l }), false},
		{"a remote instance moves here", edit(base, func(l []inst) []inst { l[4].host = "hv-a"; return l }), false},
		{"and moves away again", base, false},
		{"the local instance moves away", edit(base, func(l []inst) []inst { l[0].host = "hv-b"; return l }), false},
		{"an instance is added", append(edit(base, func(l []inst) []inst { return l }), inst{"d1", "hv-d", "02:00:00:00:00:06", "10.0.0.6/24", "", "db"}), false},
		{"an instance is deleted", base[:4], false},
		{"unchanged", base[:4], true},
	}
	var s *Switch
	for _, step := range steps {
		cfg, err := config.Parse("hv-a.yaml", []byte(text(step.list)))
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if s == nil {
			if s, err = New(cfg, Options{OpenPort: func(spec port.Spec) (port.Port, error) { return port.NewMem(spec.Device, 0), nil }}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
		} else {
			before := s.state.Load().remoteTable
			if err := s.Apply(cfg); err != nil {
				t.Fatalf("%s: %v", step.name, err)
			}
			if shared := s.state.Load().remoteTable == before; shared != step.shared {
				t.Errorf("%s: previous table shared %v, want %v", step.name, shared, step.shared)
			}
		}
		got, want := s.state.Load().remoteTable, buildRemotes(cfg)
		if got.count != want.count || !maps.Equal(got.remoteMAC, want.remoteMAC) || !maps.Equal(got.remote4, want.remote4) || !maps.Equal(got.remote6, want.remote6) {
			t.Errorf("%s: table\n %+v\nwant the full build's\n %+v", step.name, got, want)
		}
		if n := len(want.remote4); n != want.count {
			t.Errorf("%s: %d remote IPv4 addresses for %d remote instances", step.name, n, want.count)
		}
	}
}
