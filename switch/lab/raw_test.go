package lab

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"testing"
	"time"
)

// testEtherType is the IEEE "local experimental" EtherType: no stack in the
// namespaces reacts to it.
var testEtherType = []byte{0x88, 0xb5}

// frame builds an Ethernet frame from src to dst carrying a random token.
func frame(t *testing.T, dst, src []byte) []byte {
	t.Helper()
	token := make([]byte, 46)
	rand.Read(token)
	return bytes.Join([][]byte{dst, src, testEtherType, token}, nil)
}

// await receives on r until frame arrives, skipping the namespaces' own
// chatter (IPv6 router solicitations, MLD reports).
func await(t *testing.T, r *Raw, frame []byte) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := r.Recv(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for the test frame: %v", err)
		}
		if bytes.Equal(got, frame) {
			return
		}
	}
}

func contains(frames [][]byte, frame []byte) bool {
	for _, f := range frames {
		if bytes.Equal(f, frame) {
			return true
		}
	}
	return false
}

func TestRawSocketAndCapture(t *testing.T) {
	tl := newTestLab(t, "rw")
	tl.up(t)
	hub(t, tl.tap(0), tl.tap(1))
	a, b := tl.inst(0), tl.inst(1)

	rec, err := Capture(b.Name, b.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	rawA, err := RawSocket(a.Name, a.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer rawA.Close()
	rawB, err := RawSocket(b.Name, b.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer rawB.Close()

	toB := frame(t, b.MAC, a.MAC)
	if err := rawA.Send(toB); err != nil {
		t.Fatal(err)
	}
	await(t, rawB, toB)

	// B's own transmissions are not arrivals: neither socket on B sees one.
	fromB := frame(t, a.MAC, b.MAC)
	if err := rawB.Send(fromB); err != nil {
		t.Fatal(err)
	}
	await(t, rawA, fromB)

	frames := rec.Stop()
	if !contains(frames, toB) {
		t.Errorf("the capture on %s missed the frame from %s (%d frames)", b.TAP, a.Name, len(frames))
	}
	if contains(frames, fromB) {
		t.Errorf("the capture on %s recorded a frame %s sent", b.TAP, b.Name)
	}
	if again := rec.Stop(); len(again) != len(frames) {
		t.Errorf("second Stop returned %d frames, first %d", len(again), len(frames))
	}
}

func TestRawRecvTimesOut(t *testing.T) {
	tl := newTestLab(t, "rt")
	tl.up(t) // no hub: nothing arrives on any TAP
	c := tl.inst(2)
	r, err := RawSocket(c.Name, c.TAP)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Recv(100 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv: %v, want a deadline error", err)
	}
	if _, err := RawSocket(c.Name, "labt-none"); err == nil {
		t.Error("RawSocket on a missing interface succeeded")
	}
}
