package lab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

// Probe is one reachability question for the lab: does a connection from
// namespace From (optionally from address Src, for the internet namespace's
// several addresses) to Dst, served in namespace To, get through?
type Probe struct {
	From  string
	Src   netip.Addr // zero: let the kernel choose
	To    string
	Proto string // "tcp" or "udp"
	Dst   netip.AddrPort
}

func (p Probe) String() string {
	return fmt.Sprintf("%s %s → %s %s", p.Proto, p.From, p.To, p.Dst)
}

// Run listens in p.To, connects from p.From and exchanges a few bytes both
// ways. It returns nil when the exchange completed, an error wrapping
// ErrBlocked when nothing came through within timeout, and any other error
// for a lab that is not working (a namespace missing, an address not there).
func (p Probe) Run(timeout time.Duration) error {
	switch p.Proto {
	case "tcp":
		return p.tcp(timeout)
	case "udp":
		return p.udp(timeout)
	}
	return fmt.Errorf("probe %s: protocol must be tcp or udp", p)
}

// ErrBlocked means the probe's traffic did not get through.
var ErrBlocked = errors.New("blocked")

var probeMsg = []byte("sgswitch lab probe")

func (p Probe) tcp(timeout time.Duration) error {
	var ln net.Listener
	if err := Do(p.To, func() (err error) {
		ln, err = net.Listen("tcp", p.Dst.String())
		return err
	}); err != nil {
		return fmt.Errorf("probe %s: listen: %w", p, err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(timeout))
		io.Copy(c, io.LimitReader(c, int64(len(probeMsg))))
	}()
	var conn net.Conn
	err := Do(p.From, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		if p.Src.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: p.Src.AsSlice()}
		}
		conn, err = d.Dial("tcp", p.Dst.String())
		return err
	})
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("probe %s: %w (connect timed out)", p, ErrBlocked)
		}
		return fmt.Errorf("probe %s: %w", p, err)
	}
	defer conn.Close()
	return exchange(p, conn, timeout)
}

func (p Probe) udp(timeout time.Duration) error {
	var srv net.PacketConn
	if err := Do(p.To, func() (err error) {
		srv, err = net.ListenPacket("udp", p.Dst.String())
		return err
	}); err != nil {
		return fmt.Errorf("probe %s: listen: %w", p, err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 1500)
		srv.SetDeadline(time.Now().Add(timeout))
		n, from, err := srv.ReadFrom(buf)
		if err == nil {
			srv.WriteTo(buf[:n], from)
		}
	}()
	var conn net.Conn
	if err := Do(p.From, func() (err error) {
		d := net.Dialer{}
		if p.Src.IsValid() {
			d.LocalAddr = &net.UDPAddr{IP: p.Src.AsSlice()}
		}
		conn, err = d.Dial("udp", p.Dst.String())
		return err
	}); err != nil {
		return fmt.Errorf("probe %s: %w", p, err)
	}
	defer conn.Close()
	return exchange(p, conn, timeout)
}

func exchange(p Probe, conn net.Conn, timeout time.Duration) error {
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(probeMsg); err != nil {
		return fmt.Errorf("probe %s: %w", p, err)
	}
	got := make([]byte, len(probeMsg))
	if _, err := io.ReadFull(conn, got); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("probe %s: %w (no answer)", p, ErrBlocked)
		}
		return fmt.Errorf("probe %s: %w", p, err)
	}
	if !bytes.Equal(got, probeMsg) {
		return fmt.Errorf("probe %s: answer differs", p)
	}
	return nil
}
