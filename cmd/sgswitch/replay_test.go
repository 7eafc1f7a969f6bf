package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplayGolden replays the generated seed capture through the pipeline
// and compares every frame's verdict with the reviewed golden file
// (go test -run ReplayGolden -update rewrites it).
func TestReplayGolden(t *testing.T) {
	out := filepath.Join(t.TempDir(), "verdicts.jsonl")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"replay", "-c", "../../testdata/lab/seed.yaml",
		"../../testdata/pcap/seed-mix.pcap", "--verdicts", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "frames/s") || !strings.Contains(stdout.String(), "established") {
		t.Errorf("summary lacks frames/s or reasons:\n%s", stdout.String())
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	golden := "../../testdata/pcap/seed-mix.verdicts.jsonl"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (go test -run ReplayGolden -update writes it)", err)
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			t.Fatalf("verdict line %d differs:\n got %s\nwant %s", i+1, g[i], w[i])
		}
	}
	if len(g) != len(w) {
		t.Fatalf("%d verdict lines, golden has %d", len(g), len(w))
	}
}

func TestReplayBadCapture(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pcap")
	os.WriteFile(bad, []byte("this is not a capture"), 0o644)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"replay", "-c", "../../testdata/lab/seed.yaml", bad}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "bad.pcap") {
		t.Fatalf("err = %v, want an error naming the file", err)
	}
}
