package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/source"
	"github.com/sgswitch/sgswitch/switch/source/control"
)

const ctlTestConfig = `switch:
  control: %SOCKET%
security-groups:
  - name: web
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, security-groups: [web]}
  - {name: db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db]}
`

// ctlSwitch serves a switch's control API on a unix socket for the test.
type ctlSwitch struct {
	sw             *vswitch.Switch
	socket, config string
}

func startCtlSwitch(t *testing.T) *ctlSwitch {
	t.Helper()
	dir := t.TempDir()
	socket := filepath.Join(dir, "ctl.sock")
	file := filepath.Join(dir, "sgswitch.yaml")
	if err := os.WriteFile(file, []byte(strings.Replace(ctlTestConfig, "%SOCKET%", socket, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := vswitch.New(cfg, vswitch.Options{OpenPort: func(spec port.Spec) (port.Port, error) { return port.NewMem(spec.Device, 0), nil }})
	if err != nil {
		t.Fatal(err)
	}
	l, err := control.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, l, source.NewWriter(sw, source.Options{})) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control.Serve: %v", err)
		}
		sw.Close()
	})
	return &ctlSwitch{sw: sw, socket: socket, config: file}
}

// ctl runs `sgswitch ctl --socket SOCKET args...` in-process: its exit
// status, stdout and stderr (with the message main would print).
func (s *ctlSwitch) ctl(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"ctl", "--socket", s.socket}, args...), &out, &errOut)
	code := 0
	if err != nil {
		code = 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		errOut.WriteString("sgswitch: " + err.Error() + "\n")
	}
	return code, out.String(), errOut.String()
}

// TestCtlCommands runs every ctl command against a served switch, in an
// order where each builds on the last: exit status, output and, for
// changes, the configuration in force and in the file.
func TestCtlCommands(t *testing.T) {
	s := startCtlSwitch(t)
	steps := []struct {
		args     string
		code     int
		out, err []string // substrings of stdout, stderr
	}{
		{"group list", 0, []string{"NAME", "web", "db", "default", "web1", "db1"}, nil},
		{"group show web", 0, []string{"name:", "instances:", "web1", "version:", "1", "INDEX", "0      ingress    tcp       80"}, nil},
		{"group show nope", 1, nil, []string{`no security group named "nope"`}},
		{"group create ops --description operators", 0, []string{"created security group ops (version 2)"}, nil},
		{"group create ops", 1, nil, []string{`security group named "ops" already exists`}},
		{"group create", 2, nil, []string{"missing arguments"}},
		{"rule add ops --flow-direction ingress --protocol tcp --start-port 22 --end-port 22 --network 0.0.0.0/0", 0,
			[]string{"added rule ops/ingress/0: index 0 of security group ops (version 3)"}, nil},
		{"rule add ops --flow-direction ingress --protocol tcp --start-port 70000 --end-port 70000 --network 0.0.0.0/0", 1,
			nil, []string{"start-port: 70000 is out of range; a port is 1-65535"}},
		{"rule add ops --protocol tcp --network 0.0.0.0/0", 2, nil, []string{"--flow-direction is missing"}},
		{"rule add ops --flow-direction ingress --protocol tcp", 2, nil, []string{"exactly one of --network"}},
		{"rule add ops --flow-direction ingress --protocol tcp --start-port x --end-port 22 --network 0.0.0.0/0", 2, nil, []string{"start-port"}},
		{"rule add --flow-direction ingress --protocol icmp --icmp-type 8 --icmp-code 0 ops --security-group web --description ping", 0,
			[]string{"added rule ops/ingress/1"}, nil},
		{"rule add ops --flow-direction egress --protocol udp --network 10.0.0.53/24", 0, []string{"added rule ops/egress/2"},
			[]string{"warning: network: 10.0.0.53/24 has host bits set"}},
		{"rule add nope --flow-direction ingress --protocol udp --network 10.0.0.0/24", 1, nil, []string{`no security group named "nope"`}},
		{"rule list ops", 0, []string{"INDEX", "0      ingress    tcp       22     -              0.0.0.0/0",
			"1      ingress    icmp      -      type 8 code 0  group web    ping", "2      egress     udp       all    -              10.0.0.0/24"}, nil},
		{"rule delete ops 0 --if-match 1", 1, nil, []string{"the configuration is at version 5"}},
		{"rule delete ops 0 --if-match 5", 0, []string{"deleted rule ops/ingress/0 (version 6)"}, nil},
		{"rule delete ops 9", 1, nil, []string{"no rule 9"}},
		{"rule delete ops x", 2, nil, []string{"INDEX"}},
		{"rule delete ops 0 --if-match soon", 2, nil, []string{"--if-match"}},
		{"source set web 203.0.113.0/24 198.51.100.0/24", 0, []string{"security group web: external sources 203.0.113.0/24, 198.51.100.0/24 (version 7)"}, nil},
		{"source list web", 0, []string{"203.0.113.0/24\n198.51.100.0/24\n"}, nil},
		{"source set web", 2, nil, []string{"source clear web"}},
		{"source set web 203.0.113.0/33", 1, nil, []string{"external-sources[0]:"}},
		{"source clear web", 0, []string{"external sources none (version 8)"}, nil},
		{"instance add web2 --mac 02:00:00:00:00:12 --ipv4 10.0.0.12/24 --security-groups web,ops --smtp-egress", 0,
			[]string{"added instance web2 on tap web2 in security groups web, ops (version 9)"}, nil},
		{"instance add vm3 --mac 02:00:00:00:00:13 --ipv4 10.0.0.13/24 --vhost-user-socket /run/vh/vm3.sock --vhost-user-mode both", 1, nil,
			[]string{`vhost-user.mode: "both"; give server`}},
		{"instance add web3 --ipv4 10.0.0.13/24", 2, nil, []string{"--mac is missing"}},
		{"instance add web3 --mac 02:00:00:00:00:12 --ipv4 10.0.0.13/24", 1, nil, []string{"mac: 02:00:00:00:00:12 is already used by instances[web2].mac"}},
		{"instance list", 0, []string{"web2  ", "10.0.0.12/24", "web,ops", "true"}, nil},
		{"instance show web2", 0, []string{"smtp-egress:      true", "security-groups:  web, ops"}, nil},
		{"instance show nope", 1, nil, []string{`no instance named "nope"`}},
		{"group delete ops", 1, nil, []string{"instances web2 belong to it"}},
		{"instance groups web2 web", 0, []string{"instance web2 is in security groups web (version 10)"}, nil},
		{"instance groups web2 nope", 1, nil, []string{`security-groups[0]: no group named "nope"`}},
		{"group delete ops", 0, []string{"deleted security group ops (version 11)"}, nil},
		{"group delete web", 1, nil, []string{`security group "web" is in use`}},
		{"group delete default", 1, nil, []string{"cannot be deleted"}},
		{"instance remove web2", 0, []string{"removed instance web2 (version 12)"}, nil},
		{"instance remove web2", 1, nil, []string{`no instance named "web2"`}},
		{"conntrack list", 0, []string{"FROM", "web1  db1  tcp 10.0.0.11:40000 > 10.0.0.21:3306  SYN_SENT", "1/0", "allowed"}, nil},
		{"conntrack list --instance db1 --protocol tcp --address 10.0.0.21", 0, []string{"tcp 10.0.0.11:40000 > 10.0.0.21:3306"}, nil},
		{"conntrack list --instance nope", 1, nil, []string{`instance: no instance named "nope"`}},
		{"conntrack list --address 10.0.0.300", 1, nil, []string{"address:"}},
		{"conntrack flush", 0, []string{"flushed 1 tracked connections"}, nil},
		{"stats", 0, []string{"PORT", "web1", "db1"}, nil},
		{"frobnicate", 2, nil, []string{`unknown command "frobnicate"`}},
		{"group frob", 2, nil, []string{"ctl group: say list, show, create, delete"}},
		{"group", 2, nil, []string{"got nothing"}},
		{"group list -o yaml", 2, nil, []string{"table or json"}},
		{"group list extra", 2, nil, []string{`unexpected argument "extra"`}},
		{"help", 0, []string{"rule add GROUP --flow-direction"}, nil},
		{"rule add -h", 0, []string{"usage: sgswitch ctl rule add GROUP", "-flow-direction"}, nil},
	}
	for _, st := range steps {
		if st.args == "conntrack list" {
			var sc vswitch.Scratch
			web1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
			db1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
			s.sw.Process(s.sw.PortNamed("web1"), ft.TCP(web1, db1, 40000, 3306, "S", 1, 0, nil), &sc)
		}
		code, out, errOut := s.ctl(strings.Fields(st.args)...)
		if code != st.code {
			t.Errorf("ctl %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", st.args, code, st.code, out, errOut)
			continue
		}
		for _, w := range st.out {
			if !strings.Contains(out, w) {
				t.Errorf("ctl %s: stdout does not say %q:\n%s", st.args, w, out)
			}
		}
		for _, w := range st.err {
			if !strings.Contains(errOut, w) {
				t.Errorf("ctl %s: stderr does not say %q:\n%s", st.args, w, errOut)
			}
		}
	}

	// The changes are in the file, and it is what is in force.
	cfg, err := config.Load(s.config)
	if err != nil {
		t.Fatal(err)
	}
	running, _ := config.Marshal(s.sw.Config())
	file, _ := os.ReadFile(s.config)
	if !bytes.Equal(running, file) {
		t.Errorf("file and running configuration differ:\n%s\n%s", file, running)
	}
	if g, _ := cfg.Group("ops"); g != nil {
		t.Error("ops still in the file")
	}
	if len(cfg.Instances) != 2 || cfg.Switch.Control != s.socket {
		t.Errorf("file: %+v", cfg)
	}
}

// TestCtlJSON: -o json prints what the API answers, on listings and changes.
func TestCtlJSON(t *testing.T) {
	s := startCtlSwitch(t)
	jsonOf := func(v any, args ...string) {
		t.Helper()
		code, out, errOut := s.ctl(append(args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("ctl %v: exit %d: %s", args, code, errOut)
		}
		if err := json.Unmarshal([]byte(out), v); err != nil {
			t.Fatalf("ctl %v: %v\n%s", args, err, out)
		}
	}
	var groups []control.GroupView
	jsonOf(&groups, "group", "list")
	if len(groups) != 3 || groups[1].Name != "db" || *groups[1].Rules[0].SecurityGroup != "web" {
		t.Errorf("group list: %+v", groups)
	}
	var added control.RuleAdded
	jsonOf(&added, "rule", "add", "db", "--flow-direction", "ingress", "--protocol", "icmp", "--icmp-type", "8", "--network", "10.0.0.0/24")
	if added.Index != 1 || added.ID != "db/ingress/1" || added.Version != 2 || *added.Rule.ICMP.Type != 8 || added.Rule.ICMP.Code != nil {
		t.Errorf("rule add: %+v", added)
	}
	var rules []indexedRule
	jsonOf(&rules, "rule", "list", "db")
	if len(rules) != 2 || rules[1].Index != 1 || rules[1].ID != "db/ingress/1" || *rules[1].Protocol != "icmp" {
		t.Errorf("rule list: %+v", rules)
	}
	var group control.GroupView
	jsonOf(&group, "group", "show", "web")
	if group.Name != "web" || len(group.Instances) != 1 {
		t.Errorf("group show: %+v", group)
	}
	var sources []string
	jsonOf(&sources, "source", "list", "web")
	if sources == nil || len(sources) != 0 {
		t.Errorf("source list: %#v", sources)
	}
	var instances []control.InstanceView
	jsonOf(&instances, "instance", "list")
	if len(instances) != 2 || instances[0].MAC != "02:00:00:00:00:11" {
		t.Errorf("instance list: %+v", instances)
	}
	var in control.InstanceView
	jsonOf(&in, "instance", "show", "db1")
	if in.IPv4 != "10.0.0.21/24" {
		t.Errorf("instance show: %+v", in)
	}
	var ct control.ConntrackView
	jsonOf(&ct, "conntrack", "list")
	if ct.Connections == nil || ct.Limit != 1000 {
		t.Errorf("conntrack list: %+v", ct)
	}
	var stats struct{ Ports []vswitch.PortStats }
	jsonOf(&stats, "stats")
	if len(stats.Ports) != 2 {
		t.Errorf("stats: %+v", stats)
	}
}

// TestCtlSocketSelection: -c FILE finds the socket in the configuration; a
// socket nobody answers on is exit status 1 with a hint.
func TestCtlSocketSelection(t *testing.T) {
	s := startCtlSwitch(t)
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"ctl", "-c", s.config, "instance", "list"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "db1") {
		t.Errorf("ctl -c: %v\n%s%s", err, out.String(), errOut.String())
	}
	dead := &ctlSwitch{socket: filepath.Join(t.TempDir(), "none.sock")}
	code, _, errOut2 := dead.ctl("stats")
	if code != 1 || !strings.Contains(errOut2, "is sgswitch running?") {
		t.Errorf("dead socket: exit %d: %s", code, errOut2)
	}
	if err := run(context.Background(), []string{"ctl", "-c", filepath.Join(t.TempDir(), "missing.yaml"), "stats"}, &out, &errOut); err == nil {
		t.Error("ctl -c with a missing file succeeded")
	}
}
