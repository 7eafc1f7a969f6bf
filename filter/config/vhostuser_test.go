package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestVhostUserConfig(t *testing.T) {
	const head = "instances:\n"
	inst := func(port string) string {
		return "  - {name: vm1, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, " + port + "}\n"
	}
	c, err := Parse("x.yaml", []byte(head+inst("vhost-user: {socket: /run/vh/vm1.sock, mode: client}")+
		"  - {name: vm2, mac: \"02:00:00:00:00:02\", ipv4: 10.0.0.3/24, vhost-user: {socket: /run/vh//vm2.sock, mode: server}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Instances[0]; got.TAP != "" || !reflect.DeepEqual(got.VhostUser, &VhostUser{Socket: "/run/vh/vm1.sock", Mode: VhostClient}) {
		t.Fatalf("instance %+v", got)
	}
	if got := c.Instances[1].VhostUser; got.Socket != "/run/vh/vm2.sock" || got.Mode != VhostServer {
		t.Fatalf("second instance %+v", got)
	}
	// Written back, it reads the same.
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse("y.yaml", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !reflect.DeepEqual(withoutPositions(c2).Instances, withoutPositions(c).Instances) {
		t.Fatalf("round trip changed the instances:\n%s", out)
	}

	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"no socket", head + inst("vhost-user: {mode: server}"),
			[]string{"x.yaml:2: instances[0].vhost-user.socket: missing; give the path of the vhost-user unix socket, e.g. /run/sgswitch/web1.sock"}},
		{"relative socket", head + inst("vhost-user: {socket: vm1.sock, mode: server}"),
			[]string{`x.yaml:2: instances[0].vhost-user.socket: "vm1.sock" is not an absolute path; give one, e.g. /run/sgswitch/web1.sock`}},
		{"long socket", head + inst("vhost-user: {socket: /"+strings.Repeat("a", 120)+", mode: server}"),
			[]string{"x.yaml:2: instances[0].vhost-user.socket: 121 bytes long; a unix socket path is at most 107 bytes"}},
		{"no mode", head + inst("vhost-user: {socket: /s}"),
			[]string{"x.yaml:2: instances[0].vhost-user.mode: missing; give server (the switch listens, QEMU connects with reconnect=) or client (QEMU listens with server=on, the switch connects)"}},
		{"bad mode", head + inst("vhost-user: {socket: /s, mode: listen}"),
			[]string{`x.yaml:2: instances[0].vhost-user.mode: "listen"; give server (the switch listens, QEMU connects with reconnect=) or client (QEMU listens with server=on, the switch connects)`}},
		{"unknown field", head + inst("vhost-user: {socket: /s, mode: server, queues: 2}"),
			[]string{"x.yaml:2: instances[0].vhost-user.queues: unknown field; valid fields here are socket, mode"}},
		{"not a mapping", head + inst("vhost-user: /s"),
			[]string{`x.yaml:2: instances[0].vhost-user: want a mapping with fields socket, mode, got "/s"`}},
		{"with a tap", head + inst("tap: t1, vhost-user: {socket: /s, mode: server}"),
			[]string{"x.yaml:2: instances[0].vhost-user: an instance has one port; give one of tap, netdev or vhost-user"}},
		{"with a netdev", head + inst("netdev: t1, vhost-user: {socket: /s, mode: server}"),
			[]string{"x.yaml:2: instances[0].vhost-user: an instance has one port; give one of tap, netdev or vhost-user"}},
		{"long name", "instances:\n  - {name: a-very-long-instance-name, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, vhost-user: {socket: /s, mode: server}}\n", nil},
		{"one socket twice", head + inst("vhost-user: {socket: /s, mode: server}") +
			"  - {name: vm2, mac: \"02:00:00:00:00:02\", ipv4: 10.0.0.3/24, vhost-user: {socket: /s/, mode: client}}\n",
			[]string{`x.yaml:3: instances[1].vhost-user.socket: "/s" is already used by instances[0].vhost-user.socket (line 2)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v, want Errors", err)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Fatalf("errors:\n got: %s\nwant: %s", got, want)
			}
		})
	}
}
