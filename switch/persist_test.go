package vswitch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// TestStateAcrossRestart: connections saved by one switch continue in the
// next, even when its instances are numbered differently; a state file is
// used once; a damaged one is refused and restores nothing.
func TestStateAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "conntrack.state")
	a := newTestSwitch(t, nil)
	runSteps(t, a, []step{
		{"syn", pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), filter.ReasonRule},
		{"syn-ack", pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), filter.ReasonEstablished},
	})
	if n, err := a.SaveState(path); err != nil || n != 1 {
		t.Fatalf("SaveState = %d, %v; want 1 connection", n, err)
	}

	// The next process lists db1 before web1: port ids differ.
	reordered := strings.Replace(testConfig,
		`  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [web]}`+"\n", "", 1) +
		`  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [web]}` + "\n"
	cfg, err := config.Parse("test.yaml", []byte(reordered))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.RestoreState(path); err != nil || n != 1 {
		t.Fatalf("RestoreState = %d, %v; want 1 connection", n, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("state file still there after restore: %v", err)
	}
	web, db := b.PortNamed("web1"), b.PortNamed("db1")
	var sc Scratch
	if r := b.Process(web, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), &sc); r.Reason != filter.ReasonEstablished {
		t.Errorf("web1's ACK after the restart: %v", r.Reason)
	}
	if r := b.Process(db, ft.TCP(db1, web1, 3306, 40000, "A", 501, 101, nil), &sc); r.Reason != filter.ReasonEstablished {
		t.Errorf("db1's reply after the restart: %v", r.Reason)
	}

	// A damaged file restores nothing.
	if _, err := a.SaveState(path); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	data[len(data)-3] ^= 0xff
	os.WriteFile(path, data, 0o600)
	c := newTestSwitch(t, nil)
	if n, err := c.RestoreState(path); err == nil || n != 0 || c.Conntrack().Len() != 0 {
		t.Errorf("damaged state: restored %d (table %d), err %v", n, c.Conntrack().Len(), err)
	}
}
