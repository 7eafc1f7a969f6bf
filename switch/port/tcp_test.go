package port

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// frameStats counts what a forwarder saw.
type frameStats struct {
	mu        sync.Mutex
	frames    int
	gso       int    // TCPv4 super-frames
	maxLen    int    // longest frame, without its virtio-net header
	gsoSizes  []int  // distinct GSOSize values of the super-frames
	badHeader []byte // a frame whose virtio-net header did not decode, if any
}

func (s *frameStats) record(f []byte, vnetHdrLen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frames++
	if vnetHdrLen == 0 {
		s.maxLen = max(s.maxLen, len(f))
		return
	}
	h, ok := DecodeVnetHdr(f)
	if !ok {
		s.badHeader = append([]byte(nil), f...)
		return
	}
	s.maxLen = max(s.maxLen, len(f)-vnetHdrLen)
	if h.GSOType&^VnetGSOECN == VnetGSOTCPv4 {
		s.gso++
		if !slices.Contains(s.gsoSizes, int(h.GSOSize)) {
			s.gsoSizes = append(s.gsoSizes, int(h.GSOSize))
		}
	}
}

// forward copies frames, virtio-net header and all, from src to dst until a
// port closes: the TSO pass-through the switch does.
func forward(src, dst Port, stats *frameStats) {
	buf := make([]byte, BufSize)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		stats.record(buf[:n], src.VnetHdrLen())
		if _, err := dst.Write(buf[:n]); errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// TestTAPTCP runs a TCP connection between two namespaces whose only link is
// two TAPs and a forwarder between their ports. With offloads the sender's
// kernel hands over TSO super-frames longer than the MTU and the receiver's
// kernel accepts them as they are; without, every frame fits the MTU and has
// its checksum filled in, even on TAPs that were last opened with offloads.
func TestTAPTCP(t *testing.T) {
	needTAP(t)
	tests := []struct {
		name string
		// before, if set, opens and closes the TAPs first with these options.
		before  *TAPOptions
		opt     TAPOptions
		wantTSO bool
	}{
		{"offload", nil, TAPOptions{Offload: true}, true},
		{"plain", nil, TAPOptions{}, false},
		{"plain after offload", &TAPOptions{Offload: true, Persist: true}, TAPOptions{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nsA, nsB := newNetns(t), newNetns(t)
			nameA, nameB := tapName(), tapName()
			if tc.before != nil {
				for _, name := range []string{nameA, nameB} {
					deleteAtEnd(t, name)
					p, err := OpenTAP(name, *tc.before)
					if err != nil {
						t.Fatal(err)
					}
					p.Close()
				}
			}
			pa, pb := openTAP(t, nameA, tc.opt), openTAP(t, nameB, tc.opt)
			ipA, ipB := netip.MustParseAddr("10.99.1.1"), netip.MustParseAddr("10.99.1.2")
			plug(t, nameA, nsA, netip.PrefixFrom(ipA, 24))
			plug(t, nameB, nsB, netip.PrefixFrom(ipB, 24))

			var stats frameStats
			var wg sync.WaitGroup
			wg.Go(func() { forward(pa, pb, &stats) })
			wg.Go(func() { forward(pb, pa, &stats) })
			t.Cleanup(func() {
				pa.Close()
				pb.Close()
				wg.Wait()
			})

			data := make([]byte, 8<<20)
			rand.NewChaCha8([32]byte{1}).Read(data)
			got, err := sendTCP(nsA, nsB, ipB, data)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("received %d bytes that differ from the %d sent", len(got), len(data))
			}

			stats.mu.Lock()
			defer stats.mu.Unlock()
			t.Logf("%d frames forwarded, %d TCPv4 super-frames, longest frame %d bytes, GSO sizes %v",
				stats.frames, stats.gso, stats.maxLen, stats.gsoSizes)
			if stats.badHeader != nil {
				t.Errorf("frame without a virtio-net header: % x", stats.badHeader)
			}
			if tso := stats.gso > 0 && stats.maxLen > 1514; tso != tc.wantTSO {
				t.Errorf("saw %d TCPv4 super-frames, longest frame %d bytes; want TSO frames longer than 1514: %v", stats.gso, stats.maxLen, tc.wantTSO)
			}
			if !tc.wantTSO && stats.maxLen > 1514 {
				t.Errorf("longest frame %d bytes; want at most 1514 without offloads", stats.maxLen)
			}
		})
	}
}

// sendTCP sends data over a TCP connection from namespace a to a listener on
// ipB in namespace b and returns what arrived.
func sendTCP(a, b netns.NsHandle, ipB netip.Addr, data []byte) ([]byte, error) {
	deadline := time.Now().Add(60 * time.Second)
	var ln net.Listener
	if err := inNetns(b, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(ipB, 0).String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen in namespace B: %w", err)
	}
	defer ln.Close()

	type result struct {
		data []byte
		err  error
	}
	received := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			received <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(deadline)
		b, err := io.ReadAll(c)
		received <- result{b, err}
	}()

	var c net.Conn
	if err := inNetns(a, func() (err error) {
		c, err = (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp4", ln.Addr().String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("dial from namespace A: %w", err)
	}
	c.SetDeadline(deadline)
	_, werr := c.Write(data)
	c.Close()
	if werr != nil {
		return nil, fmt.Errorf("send: %w", werr)
	}
	r := <-received
	if r.err != nil {
		return nil, fmt.Errorf("receive: %w", r.err)
	}
	return r.data, nil
}
