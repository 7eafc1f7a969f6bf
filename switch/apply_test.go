package vswitch

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	"github.com/sgswitch/sgswitch/switch/port"
)

// TestApplyPorts: instances added and removed while the switch runs get and
// lose their ports; the others keep theirs, their counters and their
// connections; a change that cannot be applied changes nothing.
func TestApplyPorts(t *testing.T) {
	ports := map[string]port.Port{"web1": port.NewMem("web1", 0), "db1": port.NewMem("db1", 0), "up0": port.NewMem("up0", 0)}
	s := newTestSwitch(t, ports)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	web, db := ports["web1"].(*port.Mem), ports["db1"].(*port.Mem)

	// A connection web1 → db1 before the change.
	web.Inject(ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil))
	if _, err := db.WaitSent(1, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	db.Inject(ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil))
	if _, err := web.WaitSent(1, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	apply := func(text string) error {
		cfg, err := config.Parse("test.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return s.Apply(cfg)
	}

	// Adding web2 with a device that does not open: refused, nothing changes.
	withWeb2 := testConfig + `  - {name: web2, mac: "02:00:00:00:00:12", ipv4: 10.0.0.12/24, security-groups: [web]}` + "\n"
	if err := apply(withWeb2); err == nil {
		t.Fatal("Apply with a port that cannot open succeeded")
	}
	if got := s.PortNamed("web2"); got != -1 {
		t.Fatalf("web2 is port %d after a failed Apply", got)
	}
	// Now it opens: web2 gets a new port id and traffic.
	web2Port := port.NewMem("web2", 0)
	ports["web2"] = web2Port
	if err := apply(withWeb2); err != nil {
		t.Fatal(err)
	}
	if got := s.PortNamed("web2"); got != 3 {
		t.Fatalf("web2 is port %d, want the next id, 3", got)
	}
	web2 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:12"), IP: web1.IP.Next()}
	web2Port.Inject(ft.TCP(web2, db1, 40001, 3306, "S", 1, 0, nil))
	if _, err := db.WaitSent(1, 2*time.Second); err != nil {
		t.Fatalf("web2's SYN did not reach db1: %v", err)
	}
	// The old connection goes on; web1 kept its counters.
	web.Inject(ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil))
	if _, err := db.WaitSent(1, 2*time.Second); err != nil {
		t.Fatalf("web1's connection after the change: %v", err)
	}
	if st := s.Stats()[pWeb1]; st.RxFrames < 2 {
		t.Errorf("web1 counters reset: %+v", st)
	}

	// Removing db1 closes its port; frames for it have nowhere to go.
	without := strings.Replace(withWeb2, `  - {name: db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db]}`+"\n", "", 1)
	if without == withWeb2 {
		t.Fatal("test config lost its db1 line")
	}
	if err := apply(without); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Read(make([]byte, 100)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("db1's port after removal: Read = %v, want closed", err)
	}
	var sc Scratch
	if r := s.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), &sc); r.Reason != filter.ReasonUnknownDestination {
		t.Errorf("frame for removed db1: %v", r.Reason)
	}
	for _, st := range s.Stats() {
		if st.Instance == "db1" {
			t.Errorf("removed db1 still in stats")
		}
	}
}
