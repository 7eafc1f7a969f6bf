package config

import "testing"

// TestPortKinds: an instance or the uplink is attached by a TAP the switch
// opens (tap, default; the uplink's old `port`) or by an existing device
// (netdev), and the write-back keeps the kind.
func TestPortKinds(t *testing.T) {
	tests := []struct {
		name, yaml      string
		tap, netdev     string // instance a
		upTAP, upNetdev string
	}{
		{"defaults", "uplink: {port: up0, gateway: 10.0.0.1/24}\ninstances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", "a", "", "up0", ""},
		{"uplink tap", "uplink: {tap: up0, gateway: 10.0.0.1/24}\ninstances:\n  - {name: a, tap: t0, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", "t0", "", "up0", ""},
		{"netdevs", "uplink: {netdev: eth1, gateway: 10.0.0.1/24}\ninstances:\n  - {name: a, netdev: vnet3, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24}\n", "", "vnet3", "", "eth1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("x.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for round := range 2 {
				in, u := c.Instances[0], c.Uplink
				if in.TAP != tc.tap || in.Netdev != tc.netdev || u.Port != tc.upTAP || u.Netdev != tc.upNetdev {
					t.Fatalf("round %d: instance tap %q netdev %q, uplink tap %q netdev %q; want %q %q %q %q",
						round, in.TAP, in.Netdev, u.Port, u.Netdev, tc.tap, tc.netdev, tc.upTAP, tc.upNetdev)
				}
				b, err := Marshal(c)
				if err != nil {
					t.Fatal(err)
				}
				if c, err = Parse("x.yaml", b); err != nil {
					t.Fatalf("written back:\n%s\n%v", b, err)
				}
			}
		})
	}
}
