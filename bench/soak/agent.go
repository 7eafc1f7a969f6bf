package main

// The agent role: `ip netns exec s-N BENCH -role agent ...` serves TCP echo
// (7001 short connections, 7002 long-lived streams) and UDP echo (7003) and
// runs the traffic loops of its instance until SIGTERM, then prints its
// result as one JSON line.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// streamResult is one long-lived TCP stream as its client saw it.
type streamResult struct {
	Peer       string  `json:"peer"`
	Sent       uint64  `json:"sent"`
	Verified   uint64  `json:"verified"`
	MaxStall   float64 `json:"max_stall_s"`
	Err        string  `json:"err,omitempty"`
	Reconnects int     `json:"reconnects"` // always 0: a stream is never re-dialled
}

type agentResult struct {
	Name       string         `json:"name"`
	Streams    []streamResult `json:"streams"`
	EchoOK     uint64         `json:"echo_ok"`
	EchoFail   uint64         `json:"echo_fail"`
	EchoErr    string         `json:"echo_err,omitempty"`
	UDPSent    uint64         `json:"udp_sent"`
	UDPOK      uint64         `json:"udp_ok"`
	PingSent   uint64         `json:"ping_sent"`
	PingOK     uint64         `json:"ping_ok"`
	ServerErrs uint64         `json:"server_errs"`
}

// pattern is the byte at offset o of a stream with seed s.
func pattern(s, o uint64) byte {
	x := (o/8 + s) * 0x9E3779B97F4A7C15
	x ^= x >> 29
	return byte(x >> (8 * (o % 8)))
}

func roleMain(args []string) int {
	if len(args) == 0 || args[0] != "agent" {
		fmt.Fprintln(os.Stderr, "usage: -role agent FLAGS")
		return 2
	}
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	name := fs.String("name", "", "instance name")
	peers := fs.String("peers", "", "comma-separated peer IPv4 addresses for short traffic")
	streams := fs.String("streams", "", "comma-separated peer IPv4 addresses for long-lived streams")
	rate := fs.Int("stream-rate", 200000, "bytes/s per long-lived stream")
	timeout := fs.Duration("timeout", 2*time.Hour, "the agent ends after this at the latest")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	time.AfterFunc(*timeout, func() { fmt.Fprintln(os.Stderr, "agent: timed out"); os.Exit(3) })
	res, err := agent(*name, split(*peers), split(*streams), *rate)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent %s: %v\n", *name, err)
		return 1
	}
	b, _ := json.Marshal(res)
	fmt.Printf("%s\n", b)
	return 0
}

func split(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func agent(name string, peers, streamPeers []string, rate int) (*agentResult, error) {
	res := &agentResult{Name: name}
	var serverErrs atomic.Uint64
	for _, port := range []string{":7001", ":7002"} {
		ln, err := net.Listen("tcp4", port)
		if err != nil {
			return nil, err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if _, err := io.Copy(c, c); err != nil {
						serverErrs.Add(1)
					}
				}()
			}
		}()
	}
	uc, err := net.ListenPacket("udp4", ":7003")
	if err != nil {
		return nil, err
	}
	go func() {
		b := make([]byte, 2048)
		for {
			n, a, err := uc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = uc.WriteTo(b[:n], a)
		}
	}()
	fmt.Println("ready")

	stop := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	var wg sync.WaitGroup
	time.Sleep(2 * time.Second) // the other agents start listening

	// Long-lived streams.
	res.Streams = make([]streamResult, len(streamPeers))
	for i, p := range streamPeers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res.Streams[i] = stream(p, uint64(i+1)*1000+uint64(len(name)), rate, stop)
		}()
	}
	// Short TCP echo connections.
	var echoMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		msg := make([]byte, 64)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			for i := range msg {
				msg[i] = byte(r.IntN(256))
			}
			err := func() error {
				c, err := net.DialTimeout("tcp4", peers[r.IntN(len(peers))]+":7001", 5*time.Second)
				if err != nil {
					return err
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write(msg); err != nil {
					return err
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil {
					return err
				}
				if string(got) != string(msg) {
					return errors.New("echo differs")
				}
				return nil
			}()
			echoMu.Lock()
			if err != nil {
				res.EchoFail++
				res.EchoErr = err.Error()
			} else {
				res.EchoOK++
			}
			echoMu.Unlock()
		}
	}()
	// UDP request/response.
	var udpOK atomic.Uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return
		}
		defer c.Close()
		go func() {
			b := make([]byte, 64)
			for {
				if _, _, err := c.ReadFrom(b); err != nil {
					return
				}
				udpOK.Add(1)
			}
		}()
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
		b := make([]byte, 32)
		for seq := uint64(0); ; seq++ {
			select {
			case <-stop:
				time.Sleep(time.Second) // late replies
				return
			case <-time.After(50 * time.Millisecond):
			}
			binary.BigEndian.PutUint64(b, seq)
			a, _ := net.ResolveUDPAddr("udp4", peers[r.IntN(len(peers))]+":7003")
			if _, err := c.WriteTo(b, a); err == nil {
				res.UDPSent++
			}
		}
	}()
	// Pings.
	var pingOK atomic.Uint64
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return
		}
		defer c.Close()
		id := uint16(os.Getpid())
		go func() {
			b := make([]byte, 1500)
			for {
				n, _, err := c.ReadFrom(b)
				if err != nil {
					return
				}
				if n >= 8 && b[0] == 0 && binary.BigEndian.Uint16(b[4:]) == id {
					pingOK.Add(1)
				}
			}
		}()
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
		for seq := uint16(0); ; seq++ {
			select {
			case <-stop:
				time.Sleep(time.Second)
				return
			case <-time.After(200 * time.Millisecond):
			}
			m := make([]byte, 16)
			m[0] = 8
			binary.BigEndian.PutUint16(m[4:], id)
			binary.BigEndian.PutUint16(m[6:], seq)
			binary.BigEndian.PutUint16(m[2:], icmpChecksum(m))
			a, _ := net.ResolveIPAddr("ip4", peers[r.IntN(len(peers))])
			if _, err := c.WriteTo(m, a); err == nil {
				res.PingSent++
			}
		}
	}()

	<-sig
	close(stop)
	wg.Wait()
	res.UDPOK, res.PingOK, res.ServerErrs = udpOK.Load(), pingOK.Load(), serverErrs.Load()
	return res, nil
}

func icmpChecksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// stream keeps one TCP connection to peer:7002 for the whole run, writing
// the pattern at rate and checking every echoed byte, until stop; then it
// waits for the echo of everything it sent.
func stream(peer string, seed uint64, rate int, stop <-chan struct{}) streamResult {
	r := streamResult{Peer: peer}
	var c net.Conn
	var err error
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		c, err = net.DialTimeout("tcp4", peer+":7002", 3*time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		r.Err = "dial: " + err.Error()
		return r
	}
	defer c.Close()
	var sent, verified atomic.Uint64
	var lastProgress atomic.Int64
	lastProgress.Store(time.Now().UnixNano())
	var maxStall atomic.Int64
	errc := make(chan error, 2)
	readDone := make(chan struct{})
	go func() { // reader
		defer close(readDone)
		b := make([]byte, 64<<10)
		var off uint64
		for {
			n, err := c.Read(b)
			for i := 0; i < n; i++ {
				if b[i] != pattern(seed, off+uint64(i)) {
					errc <- fmt.Errorf("data corrupted at offset %d", off+uint64(i))
					return
				}
			}
			if n > 0 {
				off += uint64(n)
				verified.Store(off)
				now := time.Now().UnixNano()
				if st := now - lastProgress.Swap(now); st > maxStall.Load() {
					maxStall.Store(st)
				}
			}
			if err != nil {
				errc <- fmt.Errorf("read after %d bytes: %w", off, err)
				return
			}
		}
	}()
	chunk := max(rate/20, 1)
	buf := make([]byte, chunk)
	var off uint64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-stop:
			break loop
		case err := <-errc:
			r.Err = err.Error()
			break loop
		case <-tick.C:
			for i := range buf {
				buf[i] = pattern(seed, off+uint64(i))
			}
			_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
			if _, err := c.Write(buf); err != nil {
				r.Err = "write: " + err.Error()
				break loop
			}
			off += uint64(chunk)
			sent.Store(off)
		}
	}
	if r.Err == "" {
		// Wait for the echo of everything sent.
		for deadline := time.Now().Add(30 * time.Second); verified.Load() < sent.Load() && time.Now().Before(deadline); {
			select {
			case err := <-errc:
				r.Err = err.Error()
			case <-time.After(20 * time.Millisecond):
				continue
			}
			break
		}
		if r.Err == "" && verified.Load() < sent.Load() {
			r.Err = fmt.Sprintf("only %d of %d bytes echoed 30s after the end", verified.Load(), sent.Load())
		}
	}
	now := time.Now().UnixNano()
	if st := now - lastProgress.Load(); st > maxStall.Load() && r.Err != "" {
		maxStall.Store(st)
	}
	r.Sent, r.Verified = sent.Load(), verified.Load()
	r.MaxStall = time.Duration(maxStall.Load()).Seconds()
	return r
}
