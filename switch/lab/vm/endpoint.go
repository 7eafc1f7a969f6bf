package vm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/lab/vm/wire"
)

// Endpoint is one end of a connectivity check: a guest (*Guest) or a
// network namespace (*Namespace), so that the same checks run between VMs,
// lab instances and the internet namespace.
type Endpoint interface {
	Name() string
	// Ping succeeds when dst answers an ICMP echo within timeout.
	Ping(dst netip.Addr, timeout time.Duration) error
	// Exchange sends payload to an echo server at dst and succeeds when it
	// comes back within timeout (UDP is resent every 300ms).
	Exchange(proto string, dst netip.AddrPort, payload []byte, timeout time.Duration) error
	// Listen starts a TCP or UDP echo server on port, once per port.
	Listen(proto string, port int) error
}

var (
	_ Endpoint = (*Guest)(nil)
	_ Endpoint = (*Namespace)(nil)
)

// Namespace is a network namespace as an Endpoint. Src, when set, is the
// source address of its connections (the internet namespace has several).
type Namespace struct {
	NS  string
	Src netip.Addr

	mu      sync.Mutex
	servers map[string]io.Closer
}

// Name is the namespace's name.
func (n *Namespace) Name() string { return n.NS }

// Ping sends one echo request from the namespace.
func (n *Namespace) Ping(dst netip.Addr, timeout time.Duration) error {
	return lab.Ping(n.NS, dst, timeout)
}

// Exchange connects from the namespace (from Src when set) and checks the echo.
func (n *Namespace) Exchange(proto string, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var c net.Conn
	err := lab.Do(n.NS, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		if n.Src.IsValid() {
			if proto == "tcp" {
				d.LocalAddr = &net.TCPAddr{IP: n.Src.AsSlice()}
			} else {
				d.LocalAddr = &net.UDPAddr{IP: n.Src.AsSlice()}
			}
		}
		c, err = d.Dial(proto, dst.String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	got := make([]byte, len(payload))
	for {
		if _, err := c.Write(payload); err != nil {
			return err
		}
		if proto == "tcp" {
			if _, err := io.ReadFull(c, got); err != nil {
				return fmt.Errorf("tcp %s: echo: %w", dst, err)
			}
			if !bytes.Equal(got, payload) {
				return fmt.Errorf("tcp %s: the echo differs", dst)
			}
			return nil
		}
		try := time.Now().Add(300 * time.Millisecond)
		if try.After(deadline) {
			try = deadline
		}
		c.SetReadDeadline(try)
		if k, err := c.Read(got); err == nil && bytes.Equal(got[:k], payload) {
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("udp %s: no echo within %v", dst, timeout)
		}
	}
}

// Listen starts an echo server in the namespace on port (on Src when set,
// so that UDP answers leave from the address that was asked).
func (n *Namespace) Listen(proto string, port int) error {
	key := fmt.Sprintf("%s/%d", proto, port)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.servers[key] != nil {
		return nil
	}
	addr := fmt.Sprintf(":%d", port)
	if n.Src.IsValid() {
		addr = netip.AddrPortFrom(n.Src, uint16(port)).String()
	}
	var closer io.Closer
	err := lab.Do(n.NS, func() error {
		switch proto {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			go wire.ServeEcho(l)
			closer = l
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			go wire.ServeEchoPackets(pc)
			closer = pc
		default:
			return fmt.Errorf("listen: protocol %q is not tcp or udp", proto)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if n.servers == nil {
		n.servers = map[string]io.Closer{}
	}
	n.servers[key] = closer
	return nil
}

// Close stops the namespace's echo servers.
func (n *Namespace) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	for k, c := range n.servers {
		errs = append(errs, c.Close())
		delete(n.servers, k)
	}
	return errors.Join(errs...)
}
