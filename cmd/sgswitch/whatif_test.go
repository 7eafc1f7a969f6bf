package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
