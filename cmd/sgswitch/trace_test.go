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
)

var update = flag.Bool("update", false, "rewrite golden files")

// seedMatrix is the connectivity matrix of the seed scenario
// (testdata/lab/seed.yaml, shared/seeds/001): one hypothetical packet per row.
var seedMatrix = []struct {
	from, packet string
	forwarded    bool
}{
	{"uplink", "tcp 192.0.2.80:50000 > 10.0.0.11:80", true},          // internet → frontend:80 open
	{"uplink", "tcp 192.0.2.80:50000 > 10.0.0.11:22", false},         // internet → frontend:22 closed
	{"uplink", "tcp 192.0.2.80:50000 > 10.0.0.21:3306", false},       // internet → backend:3306 closed
	{"uplink", "tcp 198.51.100.10:50000 > 10.0.0.31:22", true},       // admin → management:22 open
	{"uplink", "tcp 192.0.2.80:50000 > 10.0.0.31:22", false},         // anyone else → management:22 closed
	{"mgmt1", "tcp 10.0.0.31:40000 > 10.0.0.21:22", true},            // management → backend:22 open
	{"mgmt1", "tcp 10.0.0.31:40000 > 10.0.0.11:22", true},            // management → frontend:22 open
	{"frontend1", "tcp 10.0.0.11:40000 > 10.0.0.21:3306", true},      // frontend → backend:3306 open
	{"frontend1", "tcp 10.0.0.11:40000 > 10.0.0.21:22", false},       // frontend → backend:22 closed
	{"backend1", "tcp 10.0.0.21:40000 > 10.0.0.22:5432", true},       // backend → backend any TCP open
	{"backend1", "udp 10.0.0.21:40000 > 10.0.0.22:9999", true},       // backend → backend any UDP open
	{"backend1", "icmp 10.0.0.21 > 10.0.0.22 type 8 code 0", false},  // backend → backend ICMP closed
	{"backend1", "tcp 10.0.0.21:40000 > 10.0.0.11:22", false},        // backend → frontend:22 closed (egress)
	{"backend1", "tcp 10.0.0.21:40000 > 192.0.2.80:443", true},       // backend → internet:443 open
	{"backend1", "tcp 10.0.0.21:40000 > 192.0.2.80:80", true},        // backend → internet:80 open
	{"backend1", "tcp 10.0.0.21:40000 > 192.0.2.80:8443", false},     // backend → internet:8443 closed
	{"backend1", "udp 10.0.0.21:40000 > 192.0.2.80:53", false},       // backend → DNS over UDP closed (the text allows TCP 53 only)
	{"frontend1", "tcp 10.0.0.11:40000 > 192.0.2.80:443", true},      // frontend → internet: default egress
	{"frontend1", "tcp 10.0.0.11:40000 > 192.0.2.80:25", false},      // frontend → internet:25 closed by SMTP default
	{"frontend1", "icmp 10.0.0.11 > 10.0.0.31 type 8 code 0", false}, // frontend → management ping closed
}

// TestTraceSeedGolden runs `sgswitch trace` over the seed matrix and compares
// every explanation with testdata/lab/seed.trace.golden (go test -update rewrites it).
func TestTraceSeedGolden(t *testing.T) {
	var all bytes.Buffer
	for _, row := range seedMatrix {
		var out, errOut bytes.Buffer
		err := run(context.Background(), []string{"trace", "-c", "../../testdata/lab/seed.yaml", "--from", row.from, row.packet}, &out, &errOut)
		code := 0
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		} else if err != nil {
			t.Fatalf("%s: %v", row.packet, err)
		}
		want := 1
		if row.forwarded {
			want = 0
		}
		if code != want {
			t.Errorf("%s from %s: exit %d, want %d\n%s%s", row.packet, row.from, code, want, out.String(), errOut.String())
		}
		fmt.Fprintf(&all, "$ sgswitch trace --from %s '%s'  # exit %d\n%s\n", row.from, row.packet, code, out.String())
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
