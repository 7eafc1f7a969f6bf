package config

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	base := `
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
`
	parse := func(s string) *Config {
		c, err := Parse("x.yaml", []byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	old := parse(base)
	tests := []struct{ name, new, want string }{
		{"same", base, "no change"},
		{"rule added", strings.Replace(base, "    rules:\n", "    rules:\n      - {flow-direction: ingress, protocol: tcp, start-port: 22, end-port: 22, network: 10.0.0.0/8}\n", 1),
			"group web changed (1 → 2 rules, 0 → 0 external sources)"},
		{"instance added", base + `  - {name: web2, mac: "02:00:00:00:00:12", ipv4: 10.0.0.12/24, security-groups: [web]}` + "\n",
			"instance web2 added"},
		{"instance groups", strings.Replace(base, "security-groups: [web]}", "security-groups: [web, default]}", 1),
			"instance web1 groups [web] → [web default]"},
	}
	for _, tc := range tests {
		if got := Diff(old, parse(tc.new)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
