package config

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustParse(t *testing.T, file, text string) *Config {
	t.Helper()
	c, err := Parse(file, []byte(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, "d.yaml", `security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, network: 0.0.0.0/0}
      - {flow-direction: egress, protocol: icmp, security-group: web}
      - {flow-direction: ingress, protocol: gre, network: 192.0.2.1}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24}
`)
	want := &Config{
		File: "d.yaml",
		Switch: Switch{
			Control:       "/run/sgswitch/control.sock",
			Metrics:       "127.0.0.1:9464",
			Conntrack:     Conntrack{Max: 1048576, PerInstance: 131072},
			DHCP:          DHCP{LeaseTime: 86400 * time.Second},
			Offload:       true,
			Queues:        1,
			Poll:          Poll{Spin: 200 * time.Microsecond},
			MaxUplinkMACs: 4096,
			MACAgeing:     300 * time.Second,
		},
		SecurityGroups: []SecurityGroup{
			{Name: "web", Line: 2, Rules: []Rule{
				{FlowDirection: Ingress, Protocol: ProtoTCP, Network: netip.MustParsePrefix("0.0.0.0/0"), StartPort: 1, EndPort: 65535, ICMPType: -1, ICMPCode: -1, Line: 4},
				{FlowDirection: Egress, Protocol: ProtoICMP, SecurityGroup: "web", ICMPType: -1, ICMPCode: -1, Line: 5},
				{FlowDirection: Ingress, Protocol: ProtoGRE, Network: netip.MustParsePrefix("192.0.2.1/32"), ICMPType: -1, ICMPCode: -1, Line: 6},
			}},
			{Name: "default"},
		},
		Instances: []Instance{{
			Name:           "web1",
			TAP:            "web1",
			MAC:            net.HardwareAddr{2, 0, 0, 0, 0, 0x11},
			IPv4:           netip.MustParsePrefix("10.0.0.11/24"),
			SecurityGroups: []string{"default"},
			Line:           8,
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestEmptyFile(t *testing.T) {
	for _, text := range []string{"", "# nothing yet\n", "---\n", "~\n", "{}\n"} {
		c := mustParse(t, "e.yaml", text)
		if !reflect.DeepEqual(c.Switch, defaultSwitch()) || c.Uplink != nil || len(c.Instances) != 0 {
			t.Errorf("%q: got %+v, want the defaults and nothing else", text, c)
		}
		if len(c.SecurityGroups) != 1 || c.SecurityGroups[0].Name != DefaultGroup {
			t.Errorf("%q: groups %+v, want just default", text, c.SecurityGroups)
		}
	}
}

func TestCanonicalisationWarnings(t *testing.T) {
	// Instances come first so that the warnings, found section by section,
	// have to be put back in line order.
	c := mustParse(t, "w.yaml", `instances:
  - {name: a, mac: 02-00-00-00-00-0A, ipv4: "::ffff:10.0.0.2/120"}
uplink:
  port: up0
  gateway: "::ffff:10.0.0.1/120"
  lab-hosts: ["::ffff:198.51.100.10"]
security-groups:
  - name: a
    external-sources: [10.1.2.3/8, "::ffff:192.0.2.0/120", "2001:db8::1/32", 198.51.100.7]
    rules:
      - {flow-direction: ingress, protocol: tcp, network: 10.0.0.18/24}
      - {flow-direction: ingress, protocol: tcp, network: "::ffff:10.9.0.18/120"}
      - {flow-direction: ingress, protocol: tcp, network: "2001:db8::5"}
`)
	wantWarnings := []string{
		"w.yaml:2: instances[0].ipv4: ::ffff:10.0.0.2/120 is IPv4-mapped; using 10.0.0.2/24",
		"w.yaml:5: uplink.gateway: ::ffff:10.0.0.1/120 is IPv4-mapped; using 10.0.0.1/24",
		"w.yaml:6: uplink.lab-hosts[0]: ::ffff:198.51.100.10 is IPv4-mapped; using 198.51.100.10",
		"w.yaml:9: security-groups[0].external-sources[0]: 10.1.2.3/8 has host bits set; using 10.0.0.0/8",
		"w.yaml:9: security-groups[0].external-sources[1]: ::ffff:192.0.2.0/120 is IPv4-mapped; using 192.0.2.0/24",
		"w.yaml:9: security-groups[0].external-sources[2]: 2001:db8::1/32 has host bits set; using 2001:db8::/32",
		"w.yaml:11: security-groups[0].rules[0].network: 10.0.0.18/24 has host bits set; using 10.0.0.0/24",
		"w.yaml:12: security-groups[0].rules[1].network: ::ffff:10.9.0.18/120 is IPv4-mapped and has host bits set; using 10.9.0.0/24",
	}
	if !reflect.DeepEqual(c.Warnings, wantWarnings) {
		t.Errorf("warnings:\n got %s\nwant %s", strings.Join(c.Warnings, "\n    "), strings.Join(wantWarnings, "\n    "))
	}
	prefixes := func(ss ...string) []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range ss {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		return ps
	}
	g := c.SecurityGroups[0]
	if want := prefixes("10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"); !reflect.DeepEqual(g.ExternalSources, want) {
		t.Errorf("external sources %v, want %v", g.ExternalSources, want)
	}
	var nets []netip.Prefix
	for _, r := range g.Rules {
		nets = append(nets, r.Network)
	}
	if want := prefixes("10.0.0.0/24", "10.9.0.0/24", "2001:db8::5/128"); !reflect.DeepEqual(nets, want) {
		t.Errorf("rule networks %v, want %v", nets, want)
	}
	if got, want := c.Uplink.Gateway, netip.MustParsePrefix("10.0.0.1/24"); got != want {
		t.Errorf("gateway %v, want %v (host address kept)", got, want)
	}
	if got, want := c.Uplink.LabHosts, []netip.Addr{netip.MustParseAddr("198.51.100.10")}; !reflect.DeepEqual(got, want) {
		t.Errorf("lab hosts %v, want %v", got, want)
	}
	in := c.Instances[0]
	if in.IPv4 != netip.MustParsePrefix("10.0.0.2/24") || in.MAC.String() != "02:00:00:00:00:0a" {
		t.Errorf("instance %+v, want 10.0.0.2/24 and 02:00:00:00:00:0a", in)
	}
}

// specExample is SPEC §6 as printed. Its second rule names the group
// `management`, which the example does not define; testdata/config/spec-example.yaml
// is the same file with that group added.
const specExample = `switch:
  control: /run/sgswitch/control.sock  # local API (unix socket, mode 0600)
  metrics: 127.0.0.1:9464               # Prometheus /metrics; empty = off
  conntrack: {max: 1048576}
uplink:                                 # optional
  port: uplink0
  gateway: 10.0.0.1/24                  # handed out by DHCP; in the lab, the internet namespace's address
  lab-hosts: [198.51.100.10, 192.0.2.80] # lab only: outside addresses the internet namespace also answers on
security-groups:
  - name: frontend
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}
      - {flow-direction: ingress, protocol: tcp, start-port: 22, end-port: 22, security-group: management}
  - name: backend
    external-sources: [203.0.113.0/24]
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: frontend}
      - {flow-direction: ingress, protocol: icmp, icmp: {type: 8, code: 0}, network: 10.0.0.0/24}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [frontend]}
  - {name: db1,  mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [backend]}
`

func TestSpecExample(t *testing.T) {
	_, err := Parse("spec.yaml", []byte(specExample))
	want := `spec.yaml:13: security-groups[0].rules[1].security-group: no group named "management"; defined groups are frontend, backend, default`
	if err == nil || err.Error() != want {
		t.Errorf("SPEC text as printed: got %v, want %s", err, want)
	}

	c, err := Load("../../testdata/config/spec-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", c.Warnings)
	}
	if c.Uplink == nil || c.Uplink.Port != "uplink0" || c.Uplink.Gateway != netip.MustParsePrefix("10.0.0.1/24") || len(c.Uplink.LabHosts) != 2 {
		t.Errorf("uplink %+v", c.Uplink)
	}
	var names []string
	for _, g := range c.SecurityGroups {
		names = append(names, g.Name)
	}
	if want := []string{"frontend", "backend", "management", "default"}; !reflect.DeepEqual(names, want) {
		t.Errorf("groups %v, want %v", names, want)
	}
	icmp := c.SecurityGroups[1].Rules[1]
	if icmp.Protocol != ProtoICMP || icmp.ICMPType != 8 || icmp.ICMPCode != 0 || icmp.Network != netip.MustParsePrefix("10.0.0.0/24") {
		t.Errorf("backend rule 1: %+v", icmp)
	}
	if in, _ := c.Instance("db1"); in == nil || in.TAP != "db1" || !reflect.DeepEqual(in.SecurityGroups, []string{"backend"}) {
		t.Errorf("db1: %+v", in)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("../../testdata/config/no-such-file.yaml")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want a not-exist error", err)
	}
}

func TestErrorRendering(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "a.yaml", Line: 3, Field: "instances[0].mac", Msg: "bad"}, "a.yaml:3: instances[0].mac: bad"},
		{Error{File: "a.yaml", Line: 3, Msg: "invalid YAML: x"}, "a.yaml:3: invalid YAML: x"},
		{Error{File: "a.yaml", Field: "switch", Msg: "bad"}, "a.yaml: switch: bad"},
		{Error{Line: 3, Field: "switch", Msg: "bad"}, "line 3: switch: bad"},
		{Error{Field: "switch", Msg: "bad"}, "switch: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
	errs := Errors{{File: "f", Line: 1, Msg: "one"}, {File: "f", Line: 2, Msg: "two"}}
	if got, want := errs.Error(), "f:1: one\nf:2: two"; got != want {
		t.Errorf("Errors: got %q, want %q", got, want)
	}
}

func TestConntrackTimeouts(t *testing.T) {
	c, err := Load("../../testdata/config/rich.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := c.Switch.Conntrack.Timeouts
	want := ConntrackTimeouts{TCPEstablished: 86400 * time.Second, UDPUnreplied: 20 * time.Second, Other: 300 * time.Second}
	if got != want {
		t.Errorf("timeouts %+v, want %+v", got, want)
	}
}

func TestParseCluster(t *testing.T) {
	const file = `cluster:
  host: hv-a
  etcd: {endpoints: [http://127.0.0.1:2379, https://10.0.0.2:2379], prefix: /sg/one}
security-groups:
  - {name: web}
instances:
  - {name: a, host: hv-a, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
  - {name: b, host: hv-b, tap: a, mac: "02:00:00:00:00:12", ipv4: 10.0.0.12/24, security-groups: [web]}
`
	c, err := Parse("c.yaml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster == nil || c.Cluster.Host != "hv-a" || c.Cluster.Etcd.Prefix != "/sg/one" || len(c.Cluster.Etcd.Endpoints) != 2 || c.Cluster.Line != 1 {
		t.Fatalf("cluster %+v", c.Cluster)
	}
	if c.Remote(&c.Instances[0]) || !c.Remote(&c.Instances[1]) {
		t.Error("a is local and b remote on hv-a")
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if back.Cluster.Host != "hv-a" || back.Cluster.Etcd.Prefix != "/sg/one" || back.Instances[1].Host != "hv-b" {
		t.Errorf("marshalled and read back:\n%s", out)
	}
	plain, err := Parse("p.yaml", []byte("cluster: {etcd: {endpoints: [http://127.0.0.1:2379]}}\n"))
	if err != nil || plain.Cluster.Etcd.Prefix != DefaultEtcdPrefix || plain.Cluster.Host != "" {
		t.Errorf("defaults: %+v %v", plain.Cluster, err)
	}
}
