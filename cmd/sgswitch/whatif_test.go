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

	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/source/control"
)

const (
	seedConfig   = "../../testdata/lab/seed.yaml"
	seedProposed = "../../testdata/whatif/seed-proposed.yaml"
	seedCapture  = "../../testdata/pcap/seed-mix.pcap"
)

// exitCode is the exit status main would give err.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

// checkGolden compares got with the golden file (rewritten with -update).
func checkGolden(t *testing.T, golden string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n%s\nwant\n%s", golden, got, want)
	}
}

// TestReplayAgainstGolden: the seed capture under the seed policy and under
// a proposal that removes MySQL from Frontend and narrows HTTP to Frontend
// from 0.0.0.0/0 to 198.51.100.0/24. The golden files are the reviewed
// differences: every MySQL connection from frontend1 and every HTTP
// connection from outside 198.51.100.0/24 is cut, nothing else changes.
func TestReplayAgainstGolden(t *testing.T) {
	for _, format := range []string{"table", "json"} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"replay", "-c", seedConfig, "--against", seedProposed, "-o", format, seedCapture}, &stdout, &stderr)
		if exitCode(err) != 1 {
			t.Fatalf("%s: exit %d (%v), want 1: something differs\n%s", format, exitCode(err), err, stderr.String())
		}
		checkGolden(t, "../../testdata/whatif/seed-mix.against."+format+".golden", stdout.Bytes())
		if format != "json" {
			continue
		}
		var out struct {
			Differences []struct {
				Connection, Change string
				Current, Proposed  struct{ Verdict, Reason, Rule string }
			}
		}
		if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		// What the proposal says, checked independently of the golden file.
		if len(out.Differences) != 16 {
			t.Fatalf("%d differences, want 16", len(out.Differences))
		}
		for _, d := range out.Differences {
			mysql := strings.HasSuffix(d.Connection, "> 10.0.0.21:3306")
			http := strings.HasSuffix(d.Connection, "> 10.0.0.11:80") && !strings.Contains(d.Connection, " 198.51.100.")
			wantRule := "Frontend/ingress/0"
			if mysql {
				wantRule = "Backend/ingress/7"
			}
			if !(mysql || http) || d.Change != "cut" || d.Current.Rule != wantRule || d.Proposed.Verdict != "drop" || d.Proposed.Reason != "ingress-policy" {
				t.Errorf("unexpected difference %+v", d)
			}
		}
	}
}

// TestReplayAgainstExitStatus: 0 when nothing differs, 1 with the changes
// the other way round (all opened), 2 on a broken proposal.
func TestReplayAgainstExitStatus(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"replay", "-c", seedConfig, "--against", seedConfig, seedCapture}, &stdout, &stderr)
	if exitCode(err) != 0 || !strings.Contains(stdout.String(), "differ 0 (opened 0, cut 0)") {
		t.Errorf("same policy: exit %d (%v)\n%s", exitCode(err), err, stdout.String())
	}
	stdout.Reset()
	err = run(context.Background(), []string{"replay", "-c", seedProposed, "--against", seedConfig, seedCapture}, &stdout, &stderr)
	if exitCode(err) != 1 || !strings.Contains(stdout.String(), "differ 16 (opened 16, cut 0)") {
		t.Errorf("reverse: exit %d (%v)\n%s", exitCode(err), err, stdout.String())
	}
	bad := filepath.Join(t.TempDir(), "wi-bad.yaml")
	os.WriteFile(bad, []byte("security-groups:\n  - name: x\n    rules:\n      - {flow-direction: sideways}\n"), 0o644)
	err = run(context.Background(), []string{"replay", "-c", seedConfig, "--against", bad, seedCapture}, &stdout, &stderr)
	if exitCode(err) != 2 || !strings.Contains(err.Error(), "wi-bad.yaml") {
		t.Errorf("broken proposal: exit %d (%v), want 2 naming the file", exitCode(err), err)
	}
	err = run(context.Background(), []string{"replay", "-c", seedConfig, "--against", seedProposed, "--workers", "2", seedCapture}, &stdout, &stderr)
	if exitCode(err) != 2 {
		t.Errorf("--workers with --against: exit %d (%v), want 2", exitCode(err), err)
	}
}

// TestDiffCommand: `sgswitch diff` in the configuration's words, with the
// exit status of a comparison.
func TestDiffCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"diff", seedConfig, seedProposed}, &stdout, &stderr)
	want := "group Backend: rule removed: Backend/ingress/7 {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: Frontend}\n" +
		"group Frontend: rule changed: Frontend/ingress/0 network 0.0.0.0/0 → 198.51.100.0/24: {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 198.51.100.0/24}\n"
	if exitCode(err) != 1 || stdout.String() != want {
		t.Errorf("exit %d (%v), output\n%s\nwant exit 1 and\n%s", exitCode(err), err, stdout.String(), want)
	}
	stdout.Reset()
	err = run(context.Background(), []string{"diff", "-o", "json", seedConfig, seedConfig}, &stdout, &stderr)
	if exitCode(err) != 0 || !strings.Contains(stdout.String(), `"changes": []`) {
		t.Errorf("same file: exit %d (%v)\n%s", exitCode(err), err, stdout.String())
	}
	err = run(context.Background(), []string{"diff", seedConfig, "wi-no-such-file.yaml"}, &stdout, &stderr)
	if exitCode(err) != 2 {
		t.Errorf("missing file: exit %d (%v), want 2", exitCode(err), err)
	}
}

// TestCtlDryRun: every change command takes --dry-run, changes nothing, and
// prints what it would change and the connections it would cut; reload
// FILE puts a whole file in force, --dry-run first.
func TestCtlDryRun(t *testing.T) {
	s := startCtlSwitch(t)
	var sc vswitch.Scratch
	web1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
	db1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
	for _, f := range []struct {
		in    int
		frame []byte
	}{{0, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil)}, {1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil)}} {
		if r := s.sw.Process(f.in, f.frame, &sc); r.Verdict.String() != "forward" {
			t.Fatalf("setting up the connection: %v", r.Reason)
		}
	}
	file, _ := os.ReadFile(s.config)
	proposed := filepath.Join(t.TempDir(), "wi-proposed.yaml")
	os.WriteFile(proposed, []byte(strings.Replace(string(file),
		"      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}\n", "", 1)), 0o644)
	steps := []struct {
		args string
		out  []string
	}{
		{"rule delete db 0 --dry-run", []string{"dry run: nothing changed (version 1)",
			"would change group db: rule removed: db/ingress/0 {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}",
			"would cut 1 of 1 tracked connections", "FROM  TO   CONNECTION", "web1  db1  tcp 10.0.0.11:40000 > 10.0.0.21:3306  SYN_RECV  db/ingress/0  ingress-policy"}},
		{"instance groups web1 db --dry-run", []string{"would change instance web1: security-groups [web] → [db]", "would cut 1 of 1", "db/ingress/0  ingress-policy"}},
		{"rule add web --flow-direction egress --protocol tcp --start-port 443 --end-port 443 --network 0.0.0.0/0 --dry-run",
			[]string{"would change group web: rule added: web/egress/1", "db/ingress/0  egress-policy"}},
		{"source set web 203.0.113.0/24 --dry-run", []string{"would change group web: external source added: 203.0.113.0/24", "would cut 0 of 1"}},
		{"source clear web --dry-run", []string{"the change would change nothing", "would cut 0 of 1"}},
		{"group create ops --dry-run", []string{"would change group ops: added", "would cut 0 of 1"}},
		{"group delete default --dry-run", nil}, // refused as usual: below
		{"instance add web2 --mac 02:00:00:00:00:12 --ipv4 10.0.0.12/24 --dry-run", []string{"would change instance web2: added", "would cut 0"}},
		{"instance remove db1 --dry-run", []string{"would change instance db1: removed", "db/ingress/0  unknown-destination"}},
		{"reload --dry-run " + proposed, []string{"would change group db: rule removed: db/ingress/0", "would cut 1 of 1", "db/ingress/0  ingress-policy"}},
	}
	for _, st := range steps {
		code, out, errOut := s.ctl(strings.Fields(st.args)...)
		want := 0
		if st.out == nil {
			want = 1
		}
		if code != want {
			t.Errorf("%s: exit %d, want %d\n%s%s", st.args, code, want, out, errOut)
		}
		for _, w := range st.out {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output lacks %q:\n%s", st.args, w, out)
			}
		}
		if v := s.sw.Version(); v != 1 {
			t.Fatalf("%s: version %d after a dry run", st.args, v)
		}
		if now, _ := os.ReadFile(s.config); string(now) != string(file) {
			t.Fatalf("%s: a dry run wrote the file", st.args)
		}
	}
	code, out, _ := s.ctl("rule", "delete", "db", "0", "--dry-run", "-o", "json")
	var answer control.Changed
	if err := json.Unmarshal([]byte(out), &answer); code != 0 || err != nil || answer.DryRun == nil || answer.DryRun.CutTotal != 1 ||
		answer.DryRun.Cut[0].AllowedBy != "db/ingress/0" || answer.DryRun.Cut[0].From != "web1" {
		t.Errorf("-o json: exit %d, %v\n%s", code, err, out)
	}
	// The real reload, then: in force, written over the switch's file, and
	// it cuts what its dry run said.
	code, out, errOut := s.ctl("reload", proposed)
	if code != 0 || !strings.Contains(out, "reloaded "+proposed+" (version 2)") || !strings.Contains(out, "changed group db: rule removed") {
		t.Fatalf("reload: exit %d\n%s%s", code, out, errOut)
	}
	if now, _ := os.ReadFile(s.config); string(now) == string(file) {
		t.Error("reload did not write the switch's file")
	}
	if r := s.sw.Process(0, ft.TCP(web1, db1, 40000, 3306, "A", 101, 501, nil), &sc); r.Reason.String() != "ingress-policy" {
		t.Errorf("after the reload the connection got %v, its dry run said ingress-policy", r.Reason)
	}
	bad := filepath.Join(t.TempDir(), "wi-bad.yaml")
	os.WriteFile(bad, []byte("instances: 7\n"), 0o644)
	if code, _, errOut := s.ctl("reload", "--dry-run", bad); code != 2 || !strings.Contains(errOut, "wi-bad.yaml:1: instances") {
		t.Errorf("reload of a bad file: exit %d\n%s", code, errOut)
	}
}
