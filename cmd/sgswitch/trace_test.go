package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sgswitch/sgswitch/switch/lab"
)

var update = flag.Bool("update", false, "rewrite golden files")

// seedMatrix loads testdata/lab/seed.matrix, the connectivity matrix of the
// seed scenario, shared with the end-to-end test and the demo.
func seedMatrix(t *testing.T) []lab.MatrixRow {
	t.Helper()
	rows, err := lab.LoadMatrix("../../testdata/lab/seed.matrix")
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestTraceSeedGolden runs `sgswitch trace` over the seed matrix and compares
// every explanation with testdata/lab/seed.trace.golden (go test -update rewrites it).
func TestTraceSeedGolden(t *testing.T) {
	var all bytes.Buffer
	for _, row := range seedMatrix(t) {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"trace", "-c", "../../testdata/lab/seed.yaml", "--from", row.From, row.Packet}, &out, &errOut)
		code := 0
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		} else if err != nil {
			t.Fatalf("%s: %v", row.Packet, err)
		}
		want := 1
		if row.Open {
			want = 0
		}
		if code != want {
			t.Errorf("%s from %s: exit %d, want %d\n%s%s", row.Packet, row.From, code, want, out.String(), errOut.String())
		}
		fmt.Fprintf(&all, "$ sgswitch trace --from %s '%s'  # exit %d\n%s\n", row.From, row.Packet, code, out.String())
	}
	golden := filepath.Join("..", "..", "testdata", "lab", "seed.trace.golden")
	if *update {
		if err := os.WriteFile(golden, all.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TraceSeedGolden -update)", err)
	}
	if !bytes.Equal(all.Bytes(), want) {
		t.Errorf("trace output differs from %s (go test -update rewrites it after review):\n%s", golden, all.String())
	}
}

func TestTraceArguments(t *testing.T) {
	for _, args := range [][]string{
		{"trace", "-c", "../../testdata/lab/seed.yaml", "--from", "nobody", "tcp 10.0.0.11:1 > 10.0.0.21:2"},
		{"trace", "-c", "../../testdata/lab/seed.yaml", "--from", "frontend1", "tcp 10.0.0.11 > 10.0.0.21"},
		{"trace", "-c", "../../testdata/lab/seed.yaml", "--from", "frontend1", "quic 10.0.0.11 > 10.0.0.21"},
		{"trace", "-c", "../../testdata/lab/seed.yaml", "--from", "frontend1", "tcp 10.0.0.11:1 > [fd00::1]:2"},
		{"trace", "--from", "frontend1", "tcp 10.0.0.11:1 > 10.0.0.21:2"},
		{"trace", "-c", "/nonexistent.yaml", "--from", "frontend1", "tcp 10.0.0.11:1 > 10.0.0.21:2"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), args, &out, &errOut)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 {
			t.Errorf("%v: err %v, want exit status 2", args, err)
		}
	}
}
