package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/source/control"
)

// whatifLab: three instances without an uplink (so the lab has no
// "internet" namespace and every name is this test's own), an app that
// takes port 7001 from the subnet and port 7002 from the members of wiweb.
const whatifLab = `
switch:
  dhcp: {dns: [10.77.0.1]}
security-groups:
  - name: wiapp
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 7001, end-port: 7001, network: 10.77.0.0/24}
      - {flow-direction: ingress, protocol: tcp, start-port: 7002, end-port: 7002, security-group: wiweb}
  - name: wiweb
instances:
  - {name: wi-web1, mac: "02:00:00:77:00:11", ipv4: 10.77.0.11/24, security-groups: [wiweb]}
  - {name: wi-web2, mac: "02:00:00:77:00:12", ipv4: 10.77.0.12/24, security-groups: [wiweb]}
  - {name: wi-app1, mac: "02:00:00:77:00:21", ipv4: 10.77.0.21/24, security-groups: [wiapp]}
`

// wiConn is one real TCP connection of the lab, kept open across changes.
type wiConn struct {
	from string
	port uint16
	conn net.Conn
	key  string // as the switch names it: "tcp 10.77.0.11:40123 > 10.77.0.21:7001"
}

// echo sends msg and waits for it back.
func (c *wiConn) echo(msg string, timeout time.Duration) error {
	c.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := c.conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c.conn, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo differs")
	}
	return nil
}

// TestE2EDryRun: real connections through the real binary. A membership
// change's dry run lists exactly the connections of the member concerned
// that the change cuts; a rule delete's dry run lists exactly the
// connections that the real delete then cuts (checked by sending on every
// connection); and during a dry run nothing changes on the switch: counters,
// connection table, version.
func TestE2EDryRun(t *testing.T) {
	l := startLab(t, whatifLab)
	app := l.instance("wi-app1").IPv4.Addr()
	// Without an uplink nobody answers the namespaces' IPv6 router
	// solicitations, which their kernels then repeat, backing off, for an
	// hour: the test has no use for IPv6, and wants a quiet switch.
	for _, ns := range []string{"wi-web1", "wi-web2", "wi-app1"} {
		if err := lab.Do(ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+ns+"/disable_ipv6", []byte("1"), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	// No TCP keepalives: the connections stay silent unless the test
	// speaks, so that the counters stand still around a dry run.
	for _, port := range []uint16{7001, 7002} {
		var ln net.Listener
		addr := netip.AddrPortFrom(app, port).String()
		if err := lab.Do("wi-app1", func() (err error) {
			ln, err = (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", addr)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	}
	var conns []*wiConn
	for _, c := range []struct {
		from string
		port uint16
	}{{"wi-web1", 7001}, {"wi-web1", 7002}, {"wi-web2", 7001}, {"wi-web2", 7002}} {
		wc := &wiConn{from: c.from, port: c.port}
		if err := lab.Do(c.from, func() (err error) {
			wc.conn, err = (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: -1}).Dial("tcp", netip.AddrPortFrom(app, c.port).String())
			return err
		}); err != nil {
			t.Fatalf("%s → %d: %v", c.from, c.port, err)
		}
		t.Cleanup(func() { wc.conn.Close() })
		local := netip.MustParseAddrPort(wc.conn.LocalAddr().String())
		wc.key = "tcp " + local.String() + " > " + netip.AddrPortFrom(app, c.port).String()
		if err := wc.echo("hello", 3*time.Second); err != nil {
			t.Fatalf("%s: %v", wc.key, err)
		}
		conns = append(conns, wc)
	}

	// dryRun runs a ctl change with --dry-run -o json while nothing else
	// happens on the switch, and checks that the switch is as it was.
	dryRun := func(args ...string) *control.DryRunView {
		t.Helper()
		type state struct {
			stats   json.RawMessage
			conns   []control.ConnView
			version string
		}
		// The snapshots go straight to the control socket (ctl's client,
		// in-process): an exec of the race-built binary takes a second here.
		api := newCtlClient(l.socket)
		snap := func() state {
			var ct control.ConntrackView
			var st state
			if err := api.get(context.Background(), "/v1/conntrack?limit=0", &ct); err != nil {
				t.Fatal(err)
			}
			for i := range ct.Connections {
				ct.Connections[i].Timeout = 0 // the clock's, not the switch's doing
			}
			st.conns = ct.Connections
			raw, version, err := api.do(context.Background(), "GET", "/v1/stats", nil, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			st.stats, st.version = raw, version
			return st
		}
		// Wait until the switch is quiet (a stray frame of the namespaces'
		// own stacks, an ARP refresh, may still come), and try again when
		// one slipped in around the dry run.
		for attempt := 0; ; attempt++ {
			before := snap()
			for quiet := 0; quiet < 10; quiet++ {
				time.Sleep(300 * time.Millisecond)
				now := snap()
				if reflect.DeepEqual(now, before) {
					break
				}
				before = now
			}
			var out control.Changed
			raw := l.ctl(t, append(args, "--dry-run", "-o", "json")...)
			if err := json.Unmarshal(raw, &out); err != nil || out.DryRun == nil {
				t.Fatalf("%v: %v\n%s", args, err, raw)
			}
			after := snap()
			if reflect.DeepEqual(after, before) {
				if before.version != strconv.FormatUint(out.DryRun.Version, 10) {
					t.Errorf("%v: dry run at version %d, the switch is at %s", args, out.DryRun.Version, before.version)
				}
				return out.DryRun
			}
			if attempt == 2 {
				t.Fatalf("%v: the switch changed during the dry run:\nbefore %+v\nafter  %+v", args, before, after)
			}
		}
	}
	cutKeys := func(d *control.DryRunView) []string {
		var keys []string
		for _, c := range d.Cut {
			keys = append(keys, c.Key)
		}
		slices.Sort(keys)
		return keys
	}
	// works says which connections still carry data.
	works := func() (alive, dead []string) {
		for _, c := range conns {
			if err := c.echo("ping", 3*time.Second); err != nil {
				dead = append(dead, c.key)
			} else {
				alive = append(alive, c.key)
			}
		}
		slices.Sort(dead)
		return alive, dead
	}

	// A membership change: wi-web2 leaves wiweb. Of its connections only the
	// one that port 7002's rule allowed through the group goes; wi-web1's
	// stay.
	d := dryRun("instance", "groups", "wi-web2", "default")
	want := []string{conns[3].key}
	if got := cutKeys(d); !slices.Equal(got, want) || d.Cut[0].AllowedBy != "wiapp/ingress/1" || d.Cut[0].From != "wi-web2" {
		t.Errorf("membership dry run cuts %v (%+v), want %v allowed by wiapp/ingress/1", got, d.Cut, want)
	}
	l.ctl(t, "instance", "groups", "wi-web2", "default")
	if _, dead := works(); !slices.Equal(dead, want) {
		t.Errorf("the membership change cut %v, its dry run said %v", dead, want)
	}
	// Abort the cut connection (RST, no retransmissions of its last
	// message) so that the next dry run sees a quiet switch.
	conns[3].conn.(*net.TCPConn).SetLinger(0)
	conns[3].conn.Close()
	conns = conns[:3]

	// A rule delete: wiapp/ingress/0 (port 7001 from the subnet).
	d = dryRun("rule", "delete", "wiapp", "0")
	want = []string{conns[0].key, conns[2].key}
	slices.Sort(want)
	if got := cutKeys(d); !slices.Equal(got, want) {
		t.Errorf("rule delete dry run cuts %v, want %v", got, want)
	}
	for _, c := range d.Cut {
		if c.AllowedBy != "wiapp/ingress/0" || c.Reason != "ingress-policy" {
			t.Errorf("%s: allowed by %s, cut by %s; want wiapp/ingress/0, ingress-policy", c.Key, c.AllowedBy, c.Reason)
		}
	}
	l.ctl(t, "rule", "delete", "wiapp", "0")
	if _, dead := works(); !slices.Equal(dead, want) {
		t.Errorf("the delete cut %v, its dry run said %v", dead, want)
	}
}
