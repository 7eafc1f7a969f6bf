package config

import (
	"net/netip"
	"reflect"
	"testing"
)

// withoutPositions clears what Marshal does not carry: where the
// configuration came from.
func withoutPositions(c *Config) *Config {
	d := *c
	d.File, d.Warnings = "", nil
	d.Switch.Line = 0
	if c.Uplink != nil {
		u := *c.Uplink
		u.Line = 0
		d.Uplink = &u
	}
	d.SecurityGroups = append([]SecurityGroup(nil), c.SecurityGroups...)
	for i := range d.SecurityGroups {
		g := &d.SecurityGroups[i]
		g.Line = 0
		g.Rules = append([]Rule(nil), g.Rules...)
		for j := range g.Rules {
			g.Rules[j].Line = 0
		}
	}
	d.Instances = append([]Instance(nil), c.Instances...)
	for i := range d.Instances {
		d.Instances[i].Line = 0
	}
	return &d
}

func TestMarshalRoundTrip(t *testing.T) {
	for _, file := range []string{"rich.yaml", "spec-example.yaml"} {
		t.Run(file, func(t *testing.T) {
			c, err := Load("../../testdata/config/" + file)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c)
		})
	}
	t.Run("defaults", func(t *testing.T) {
		roundTrip(t, mustParse(t, "d.yaml", ""))
	})
	t.Run("poll", func(t *testing.T) {
		for _, text := range []string{"switch: {poll: {threads: 1}}\n", "switch: {poll: {threads: 2, spin-us: 0}}\n", "switch: {poll: {spin-us: 50}}\n"} {
			roundTrip(t, mustParse(t, "p.yaml", text))
		}
	})
	t.Run("empty default group first", func(t *testing.T) {
		// Only a trailing empty `default` may be left out: Parse adds it at
		// the end, so one elsewhere must be written to keep the order.
		roundTrip(t, mustParse(t, "g.yaml", "security-groups: [{name: default}, {name: web}]\n"))
	})
	t.Run("changed through the API", func(t *testing.T) {
		// What the control API does: copy, change, write back.
		c, err := Load("../../testdata/config/spec-example.yaml")
		if err != nil {
			t.Fatal(err)
		}
		backend, _ := c.Group("backend")
		backend.Rules = append(backend.Rules[:1:1], Rule{
			FlowDirection: Egress, Protocol: ProtoUDP, Network: netip.MustParsePrefix("192.0.2.53/32"),
			StartPort: 53, EndPort: 53, ICMPType: -1, ICMPCode: -1, Description: "DNS",
		})
		backend.ExternalSources = append(backend.ExternalSources, netip.MustParsePrefix("2001:db8::/32"))
		web1, _ := c.Instance("web1")
		web1.SecurityGroups = []string{"frontend", "management"}
		roundTrip(t, c)
	})
}

// roundTrip checks that Parse(Marshal(c)) equals c and that Marshal is
// stable (a write-back of an unchanged configuration changes nothing).
func roundTrip(t *testing.T, c *Config) {
	t.Helper()
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse("out.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
	}
	if len(back.Warnings) != 0 {
		t.Errorf("Marshal output is not canonical: %v", back.Warnings)
	}
	if got, want := withoutPositions(back), withoutPositions(c); !reflect.DeepEqual(got, want) {
		t.Errorf("round trip changed the configuration\n got %+v\nwant %+v\n%s", got, want, out)
	}
	again, err := Marshal(back)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(out) {
		t.Errorf("Marshal is not stable:\n%s\n---\n%s", out, again)
	}
}
