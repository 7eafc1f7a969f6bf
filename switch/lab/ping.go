package lab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"
)

// ICMP echo types.
const (
	echoRequest4 = 8
	echoReply4   = 0
	echoRequest6 = 128
	echoReply6   = 129
)

// Ping sends one ICMP echo request (ICMPv6 for an IPv6 dst) from inside the
// namespace ns and returns nil when the matching reply arrives within
// timeout. It uses a raw socket opened in ns, not a ping binary; replies are
// matched by source, identifier, sequence and a random payload, so
// concurrent pings do not answer each other.
func Ping(ns string, dst netip.Addr, timeout time.Duration) error {
	network, local, request, reply := "ip4:icmp", "0.0.0.0", byte(echoRequest4), byte(echoReply4)
	if dst.Is6() && !dst.Is4In6() {
		network, local, request, reply = "ip6:ipv6-icmp", "::", echoRequest6, echoReply6
	}
	dst = dst.Unmap()
	var c net.PacketConn
	err := Do(ns, func() (err error) {
		c, err = net.ListenPacket(network, local)
		return err
	})
	if err != nil {
		return fmt.Errorf("ping %s from namespace %s: %w", dst, ns, err)
	}
	defer c.Close()

	msg := make([]byte, 8+16)
	msg[0] = request
	id, seq := uint16(rand.Uint32()), uint16(rand.Uint32())
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	for i := 8; i < len(msg); i += 8 {
		binary.BigEndian.PutUint64(msg[i:], rand.Uint64())
	}
	// The kernel fills in the ICMPv6 checksum itself (it covers a pseudo
	// header this socket does not build); ICMPv4's is ours to compute.
	if dst.Is4() {
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	}

	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("ping %s from namespace %s: %w", dst, ns, err)
	}
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: net.IP(dst.AsSlice()), Zone: dst.Zone()}); err != nil {
		return fmt.Errorf("ping %s from namespace %s: %w", dst, ns, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("ping %s from namespace %s: no reply within %v", dst, ns, timeout)
		}
		if err != nil {
			return fmt.Errorf("ping %s from namespace %s: %w", dst, ns, err)
		}
		// The raw socket sees every ICMP message of the namespace; only our
		// echo's reply counts. IPv4 reads come without the IP header.
		got := buf[:n]
		src, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		if src.Unmap() == dst.WithZone("") && len(got) == len(msg) && got[0] == reply && got[1] == 0 &&
			bytes.Equal(got[4:8], msg[4:8]) && bytes.Equal(got[8:], msg[8:]) {
			return nil
		}
	}
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
