package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/capture"
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

// TestReplayLoop: --loop 3 replays the capture three times, numbering frames
// on; each loop is shifted past every timeout, so each gives the first
// loop's verdicts.
func TestReplayLoop(t *testing.T) {
	out := filepath.Join(t.TempDir(), "verdicts.jsonl")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"replay", "-c", "../../testdata/lab/seed.yaml", "--loop", "3",
		"../../testdata/pcap/seed-mix.pcap", "--verdicts", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	want, err := os.ReadFile("../../testdata/pcap/seed-mix.verdicts.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	w := strings.Split(strings.TrimSpace(string(want)), "\n")
	g := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(g) != 3*len(w) {
		t.Fatalf("%d verdict lines, want 3 × %d", len(g), len(w))
	}
	for i, line := range g {
		// The golden line of the same frame in the first loop, renumbered.
		first := w[i%len(w)]
		renum := strings.Replace(first, fmt.Sprintf(`{"frame":%d,`, i%len(w)+1), fmt.Sprintf(`{"frame":%d,`, i+1), 1)
		if line != renum {
			t.Fatalf("verdict line %d:\n got %s\nwant %s", i+1, line, renum)
		}
	}
	if !strings.Contains(stdout.String(), fmt.Sprintf("frames %d in", len(g))) {
		t.Errorf("summary does not count %d frames:\n%s", len(g), stdout.String())
	}
	for _, s := range []string{"for the whole command", "pipeline alone", "peak memory"} {
		if !strings.Contains(stdout.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, stdout.String())
		}
	}
}

// TestReplayWorkersSameCounts: two workers count the same frames as one.
func TestReplayWorkersSameCounts(t *testing.T) {
	var out [2]bytes.Buffer
	for i, w := range []string{"1", "2"} {
		var stderr bytes.Buffer
		if err := run(context.Background(), []string{"replay", "-c", "../../testdata/lab/seed.yaml", "--workers", w,
			"../../testdata/pcap/seed-mix.pcap", "../../testdata/pcap/seed-mix.pcap"}, &out[i], &stderr); err != nil {
			t.Fatalf("replay --workers %s: %v\n%s", w, err, stderr.String())
		}
	}
	for _, s := range []string{"frames 1338 in"} {
		for i := range out {
			if !strings.Contains(out[i].String(), s) {
				t.Errorf("summary %d lacks %q:\n%s", i, s, out[i].String())
			}
		}
	}
}

// TestReplayDamagedCapture: a capture cut in the middle of a frame is
// reported with the file and the offset of the frame's record.
func TestReplayDamagedCapture(t *testing.T) {
	b, err := os.ReadFile("../../testdata/pcap/seed-mix.pcap")
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "cut.pcap")
	os.WriteFile(cut, b[:len(b)-10], 0o644)
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"replay", "-c", "../../testdata/lab/seed.yaml", cut}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), cut+": offset ") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("err = %v, want a truncation naming %s and the offset", err, cut)
	}
}

// TestReplayConstantMemory replays captures of 1× and 64× the seed mix
// (each copy shifted in time, so all its connections are new) through the
// binary and compares their peak resident memory: streaming keeps it flat,
// where loading the capture grew it by the file's size (~20 MB here).
func TestReplayConstantMemory(t *testing.T) {
	seed, err := os.ReadFile("../../testdata/pcap/seed-mix.pcap")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(copies int) string {
		b := append([]byte(nil), seed[:24]...)
		for c := range copies {
			for rec := seed[24:]; len(rec) >= 16; {
				n := 16 + int(binary.LittleEndian.Uint32(rec[8:]))
				r := append([]byte(nil), rec[:n]...)
				sec := binary.LittleEndian.Uint32(r) + uint32(c)*7*86400
				binary.LittleEndian.PutUint32(r, sec)
				b = append(b, r...)
				rec = rec[n:]
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("pf-x%d.pcap", copies))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	peak := func(path string) float64 {
		out, err := exec.Command(sgswitchBin, "replay", "-c", "../../testdata/lab/seed.yaml", path).CombinedOutput()
		if err != nil {
			t.Fatalf("replay %s: %v\n%s", path, err, out)
		}
		var mb float64
		for _, line := range strings.Split(string(out), "\n") {
			if _, err := fmt.Sscanf(line, "peak memory %f MB resident", &mb); err == nil {
				return mb
			}
		}
		t.Fatalf("no peak memory in:\n%s", out)
		return 0
	}
	small, large := write(1), write(64)
	fi, _ := os.Stat(large)
	ps, pl := peak(small), peak(large)
	t.Logf("peak RSS: %.1f MB for %d bytes, %.1f MB for %d bytes", ps, len(seed), pl, fi.Size())
	if grow := pl - ps; grow > 8 {
		t.Fatalf("peak memory grew by %.1f MB for a capture %.0f MB larger", grow, float64(fi.Size()-int64(len(seed)))/1e6)
	}
}

// TestReplaySweepsExpired: a capture of 20,000 DNS queries from backend1 to
// backend2, one every 100 ms (33 minutes of capture; an unreplied UDP
// connection times out after 30 s), replays with every query allowed and a
// connection table that holds about the last 30 s of them, as a running
// switch's sweep keeps it, not all 20,000.
func TestReplaySweepsExpired(t *testing.T) {
	const queries = 20000
	path := filepath.Join(t.TempDir(), "rp-dns.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65536, layers.LinkTypeEthernet)
	b1 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
	b2 := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:22"), IP: netip.MustParseAddr("10.0.0.22")}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range queries {
		frame := ft.UDP(b1, b2, uint16(10000+i), 53, make([]byte, 30))
		ci := gopacket.CaptureInfo{Timestamp: start.Add(time.Duration(i) * 100 * time.Millisecond), CaptureLength: len(frame), Length: len(frame)}
		if err := w.WritePacket(ci, frame); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load("../../testdata/lab/seed.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := newReplaySource([]string{path}, 1, capture.Options{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	clock := &vswitch.Clock{}
	sw, err := vswitch.New(cfg, vswitch.Options{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Close()
	rp := &replayer{sw: sw, clock: clock, src: src, ports: portCache{sw: sw}}
	st, err := rp.runOne(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.frames != queries || st.byVerdict[filter.Forward] != queries {
		t.Fatalf("%d frames, %d forwarded; want all %d forwarded", st.frames, st.byVerdict[filter.Forward], queries)
	}
	// 300 queries are live at a time; the sweep runs when the table has
	// grown by a quarter plus 1,024 entries since the last one left it.
	if n := sw.Conntrack().Len(); n > 2000 {
		t.Fatalf("the table holds %d connections at the end, want the last 30 s of queries (300) plus what waits for the next sweep", n)
	}
}
