package port

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// frameOf returns an n-byte frame whose every byte is b.
func frameOf(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestMemReadInjectedInOrder(t *testing.T) {
	m := NewMem("vm1", 0)
	if m.Name() != "vm1" || m.VnetHdrLen() != 0 {
		t.Fatalf("Name, VnetHdrLen = %q, %d; want vm1, 0", m.Name(), m.VnetHdrLen())
	}
	frames := [][]byte{frameOf(1, 60), frameOf(2, 1514), frameOf(3, 64)}
	for _, f := range frames {
		m.Inject(f)
	}
	// Inject copies: changing the caller's frame afterwards changes nothing.
	frames[0][0] = 0xff
	want := [][]byte{frameOf(1, 60), frameOf(2, 1514), frameOf(3, 64)}
	buf := make([]byte, BufSize)
	for i, w := range want {
		n, err := m.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], w) {
			t.Fatalf("Read %d = %d bytes (%x...), %v; want %d bytes of %x", i, n, buf[0], err, len(w), w[0])
		}
	}
}

func TestMemReadBlocksUntilInject(t *testing.T) {
	m := NewMem("vm1", 0)
	type result struct {
		frame []byte
		err   error
	}
	got := make(chan result, 1)
	go func() {
		buf := make([]byte, BufSize)
		n, err := m.Read(buf)
		got <- result{buf[:n], err}
	}()
	select {
	case r := <-got:
		t.Fatalf("Read returned %d bytes, %v before any frame was injected", len(r.frame), r.err)
	case <-time.After(50 * time.Millisecond):
	}
	m.Inject(frameOf(7, 60))
	select {
	case r := <-got:
		if r.err != nil || !bytes.Equal(r.frame, frameOf(7, 60)) {
			t.Fatalf("Read = %x, %v; want the injected frame", r.frame, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still blocked 5s after Inject")
	}
}

func TestMemReadShortBuffer(t *testing.T) {
	m := NewMem("vm1", 0)
	m.Inject(frameOf(1, 100))
	buf := make([]byte, 60)
	n, err := m.Read(buf)
	if n != 60 || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("Read of 100 bytes into 60 = %d, %v; want 60, io.ErrShortBuffer", n, err)
	}
}

// readErr reads from m in a goroutine and delivers the error.
func readErr(m *Mem) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := m.Read(make([]byte, BufSize))
		errc <- err
	}()
	return errc
}

func TestMemClose(t *testing.T) {
	m := NewMem("vm1", 0)
	m.Inject(frameOf(1, 60))
	if err := m.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := <-readErr(m); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read after Close = %v; want net.ErrClosed (queued frames dropped)", err)
	}
}

func TestMemCloseUnblocksRead(t *testing.T) {
	m := NewMem("vm1", 0)
	errc := readErr(m)
	select {
	case err := <-errc:
		t.Fatalf("Read returned %v before Close", err)
	case <-time.After(50 * time.Millisecond):
	}
	m.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked Read after Close = %v; want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

func TestMemCloseState(t *testing.T) {
	m := NewMem("vm1", 0)
	if _, err := m.Write(frameOf(2, 60)); err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := m.Write(frameOf(3, 60)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write after Close = %v; want net.ErrClosed", err)
	}
	if err := m.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v; want net.ErrClosed", err)
	}
	if sent := m.Sent(); len(sent) != 1 || !bytes.Equal(sent[0], frameOf(2, 60)) {
		t.Errorf("Sent after Close = %d frames; want the one written before Close", len(sent))
	}
}

func TestMemWrite(t *testing.T) {
	tests := []struct {
		name       string
		vnetHdrLen int
		frame      []byte
		wantErr    bool
	}{
		{"minimal Ethernet frame", 0, frameOf(1, 14), false},
		{"full frame", 0, frameOf(1, 1514), false},
		{"shorter than Ethernet header", 0, frameOf(1, 13), true},
		{"empty", 0, nil, true},
		{"with virtio-net header", VnetHdrSize, frameOf(1, VnetHdrSize+14), false},
		{"TSO super-frame", VnetHdrSize, frameOf(1, VnetHdrSize+65000), false},
		{"header but no Ethernet header", VnetHdrSize, frameOf(1, VnetHdrSize+13), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMem("vm1", tc.vnetHdrLen)
			n, err := m.Write(tc.frame)
			if tc.wantErr {
				if err == nil || n != 0 {
					t.Fatalf("Write(%d bytes) = %d, %v; want an error", len(tc.frame), n, err)
				}
				if sent := m.Sent(); len(sent) != 0 {
					t.Fatalf("rejected frame recorded: %d frames", len(sent))
				}
				return
			}
			if err != nil || n != len(tc.frame) {
				t.Fatalf("Write(%d bytes) = %d, %v", len(tc.frame), n, err)
			}
			// Write copies: the caller may reuse its buffer at once.
			want := append([]byte(nil), tc.frame...)
			tc.frame[0] ^= 0xff
			sent := m.Sent()
			if len(sent) != 1 || !bytes.Equal(sent[0], want) {
				t.Fatalf("Sent = %d frames; want the one written", len(sent))
			}
			if again := m.Sent(); len(again) != 0 {
				t.Fatalf("Sent did not take the frames: %d again", len(again))
			}
		})
	}
}

func TestMemWaitSent(t *testing.T) {
	m := NewMem("vm1", 0)
	go func() {
		for i := range 3 {
			time.Sleep(5 * time.Millisecond)
			m.Write(frameOf(byte(i), 60))
		}
	}()
	got, err := m.WaitSent(3, 5*time.Second)
	if err != nil || len(got) != 3 {
		t.Fatalf("WaitSent(3) = %d frames, %v", len(got), err)
	}
	for i, f := range got {
		if !bytes.Equal(f, frameOf(byte(i), 60)) {
			t.Errorf("frame %d = %x...; want %x...", i, f[0], i)
		}
	}

	m.Write(frameOf(9, 60))
	got, err = m.WaitSent(2, 30*time.Millisecond)
	if err == nil || len(got) != 1 {
		t.Fatalf("WaitSent(2) with 1 written = %d frames, %v; want 1 frame and a timeout error", len(got), err)
	}
	if got, err := m.WaitSent(0, time.Millisecond); err != nil || len(got) != 0 {
		t.Fatalf("WaitSent(0) after taking all = %d frames, %v; want none, nil", len(got), err)
	}
}

func TestMemConcurrent(t *testing.T) {
	const writers, perWriter = 4, 200
	m := NewMem("vm1", 0)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range perWriter {
				m.Write(frameOf(byte(w), 64))
				m.Inject(frameOf(byte(w), 64))
			}
		})
	}
	read := make(chan int)
	go func() {
		buf := make([]byte, BufSize)
		n := 0
		for n < writers*perWriter {
			if _, err := m.Read(buf); err != nil {
				break
			}
			n++
		}
		read <- n
	}()
	var sent int
	for sent < writers*perWriter {
		got, err := m.WaitSent(1, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sent += len(got)
	}
	wg.Wait()
	if n := <-read; n != writers*perWriter || sent != writers*perWriter {
		t.Fatalf("read %d and sent %d frames; want %d each", n, sent, writers*perWriter)
	}
}
