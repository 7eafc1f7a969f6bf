package config

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	base := `
switch:
  conntrack: {max: 1000}
uplink: {port: up0, gateway: 10.0.0.1/24}
security-groups:
  - name: web
    external-sources: [203.0.113.0/24]
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}
      - {flow-direction: ingress, protocol: icmp, icmp: {type: 8}, security-group: web}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
`
	parse := func(s string) *Config {
		t.Helper()
		c, err := Parse("x.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	edit := func(old, new string) string {
		t.Helper()
		if !strings.Contains(base, old) {
			t.Fatalf("base lacks %q", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	const (
		r80   = "{flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}"
		rICMP = "{flow-direction: ingress, protocol: icmp, icmp: {type: 8}, security-group: web}"
		r22   = "{flow-direction: ingress, protocol: tcp, start-port: 22, end-port: 22, network: 10.0.0.0/8}"
	)
	old := parse(base)
	tests := []struct {
		name, new string
		want      []string
	}{
		{"same", base, nil},
		{"rule added", edit("    rules:\n", "    rules:\n      - "+r22+"\n"), []string{
			"group web: rule added: web/ingress/0 " + r22,
		}},
		{"rule removed", edit("      - "+r80+"\n", ""), []string{
			"group web: rule removed: web/ingress/0 " + r80,
		}},
		{"rules reordered", strings.Replace(edit("      - "+r80+"\n", ""),
			"      - "+rICMP+"\n", "      - "+rICMP+"\n      - "+r80+"\n", 1), []string{
			"group web: rule moved: web/ingress/1 → web/ingress/0 " + rICMP,
			"group web: rule moved: web/ingress/0 → web/ingress/1 " + r80,
		}},
		{"network narrowed", edit("network: 0.0.0.0/0", "network: 10.0.0.0/8"), []string{
			"group web: rule changed: web/ingress/0 network 0.0.0.0/0 → 10.0.0.0/8: " + strings.Replace(r80, "0.0.0.0/0", "10.0.0.0/8", 1),
		}},
		{"ports and peer", edit("start-port: 80, end-port: 80, network: 0.0.0.0/0", "start-port: 8080, end-port: 8081, security-group: web"), []string{
			"group web: rule changed: web/ingress/0 start-port 80 → 8080, end-port 80 → 8081, network 0.0.0.0/0 → absent, security-group web (was absent): " +
				"{flow-direction: ingress, protocol: tcp, start-port: 8080, end-port: 8081, security-group: web}",
		}},
		{"external sources", edit("[203.0.113.0/24]", "[198.51.100.0/24]"), []string{
			"group web: external source added: 198.51.100.0/24",
			"group web: external source removed: 203.0.113.0/24",
		}},
		{"group added and removed", strings.ReplaceAll(base, "web", "front"), []string{
			"group front: added",
			"group front: external source added: 203.0.113.0/24",
			"group front: rule added: front/ingress/0 " + r80,
			"group front: rule added: front/ingress/1 " + strings.Replace(rICMP, "web", "front", 1),
			"group web: removed (2 rules, 1 external sources)",
			`instance front1: added: {name: front1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [front]}`,
			`instance web1: removed: {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}`,
		}},
		{"instance groups", edit("security-groups: [web]}", "security-groups: [web, default]}"),
			[]string{"instance web1: security-groups [web] → [web, default]"}},
		{"instance address and smtp", edit("ipv4: 10.0.0.11/24,", "ipv4: 10.0.0.12/24, smtp-egress: true,"), []string{
			"instance web1: ipv4 10.0.0.11/24 → 10.0.0.12/24",
			"instance web1: smtp-egress true (was the default)",
		}},
		{"switch and uplink", strings.Replace(edit("conntrack: {max: 1000}", "persist-established: true"),
			"gateway: 10.0.0.1/24", "gateway: 10.0.0.254/24", 1), []string{
			"switch: conntrack {max: 1000} → the default",
			"switch: persist-established true (was the default)",
			"uplink: gateway 10.0.0.1/24 → 10.0.0.254/24",
		}},
	}
	for _, tc := range tests {
		var got []string
		for _, c := range Changes(old, parse(tc.new)) {
			got = append(got, c.String())
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
		wantLine := strings.Join(tc.want, "; ")
		if len(tc.want) == 0 {
			wantLine = "no change"
		}
		if line := Diff(old, parse(tc.new)); line != wantLine {
			t.Errorf("%s: Diff %q, want %q", tc.name, line, wantLine)
		}
	}
}
