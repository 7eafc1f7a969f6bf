// Command gencap writes a realistic capture of the seed scenario
// (testdata/lab/seed.yaml) for `sgswitch replay`: many TCP connections with
// handshake, data and teardown, DNS over UDP, ICMP, ARP, and a share of
// denied, spoofed and malformed frames. The output is deterministic for a
// given -seed, so a golden verdict file can be checked against it.
//
//	go run ./bench/gencap -o testdata/pcap/seed-mix.pcap -conns 40
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"time"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

var (
	gwMAC     = ft.MustMAC("02:00:00:00:00:01")
	frontend1 = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
	backend1  = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
	backend2  = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:22"), IP: netip.MustParseAddr("10.0.0.22")}
	mgmt1     = ft.Host{MAC: ft.MustMAC("02:00:00:00:00:31"), IP: netip.MustParseAddr("10.0.0.31")}
	gateway   = ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("10.0.0.1")}
	admin     = ft.Host{MAC: gwMAC, IP: netip.MustParseAddr("198.51.100.10")}
)

// capture accumulates frames with advancing timestamps.
type capture struct {
	frames []vswitch.CapturedFrame
	now    time.Time
	rng    *rand.Rand
}

func (c *capture) add(b []byte) {
	c.now = c.now.Add(time.Duration(20+c.rng.IntN(200)) * time.Microsecond)
	c.frames = append(c.frames, vswitch.CapturedFrame{Data: b, Time: c.now})
}

// outside returns a random internet client behind the gateway.
func (c *capture) outside() ft.Host {
	return ft.Host{MAC: gwMAC, IP: netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + c.rng.IntN(250))})}
}

// tcpConn writes one whole TCP connection from client to server: handshake,
// request and response segments, and an orderly close. A connection that the
// policy denies shows as SYN retransmissions instead.
func (c *capture) tcpConn(client, server ft.Host, dport uint16, allowed bool) {
	sport := uint16(32768 + c.rng.IntN(28000))
	cs, ss := c.rng.Uint32(), c.rng.Uint32()
	if !allowed {
		for i := 0; i < 2; i++ {
			c.add(ft.TCP(client, server, sport, dport, "S", cs, 0, nil))
		}
		return
	}
	c.add(ft.TCP(client, server, sport, dport, "S", cs, 0, nil))
	c.add(ft.TCP(server, client, dport, sport, "SA", ss, cs+1, nil))
	cs++
	ss++
	c.add(ft.TCP(client, server, sport, dport, "A", cs, ss, nil))
	for i, n := 0, 1+c.rng.IntN(4); i < n; i++ {
		req := make([]byte, 64+c.rng.IntN(400))
		c.add(ft.TCP(client, server, sport, dport, "PA", cs, ss, req))
		cs += uint32(len(req))
		for j, m := 0, 1+c.rng.IntN(3); j < m; j++ {
			resp := make([]byte, 1000+c.rng.IntN(400))
			c.add(ft.TCP(server, client, dport, sport, "PA", ss, cs, resp))
			ss += uint32(len(resp))
		}
		c.add(ft.TCP(client, server, sport, dport, "A", cs, ss, nil))
	}
	c.add(ft.TCP(client, server, sport, dport, "FA", cs, ss, nil))
	cs++
	c.add(ft.TCP(server, client, dport, sport, "FA", ss, cs, nil))
	ss++
	c.add(ft.TCP(client, server, sport, dport, "A", cs, ss, nil))
}

func (c *capture) dns(client, server ft.Host, allowed bool) {
	sport := uint16(32768 + c.rng.IntN(28000))
	c.add(ft.UDP(client, server, sport, 53, make([]byte, 30)))
	if allowed {
		c.add(ft.UDP(server, client, 53, sport, make([]byte, 90)))
	}
}

func main() {
	out := flag.String("o", "testdata/pcap/seed-mix.pcap", "output `FILE`")
	conns := flag.Int("conns", 40, "rounds of the traffic mix (each about 60 frames)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	c := &capture{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(*seed, *seed))}

	// The instances find the gateway, and the gateway finds them.
	for _, h := range []ft.Host{frontend1, backend1, backend2, mgmt1} {
		c.add(ft.ARP(1, ft.Broadcast, h.MAC, h.IP, nil, gateway.IP))
		c.add(ft.ARP(2, h.MAC, gwMAC, gateway.IP, h.MAC, h.IP))
	}
	c.add(ft.ARP(1, ft.Broadcast, gwMAC, gateway.IP, nil, frontend1.IP))

	for i := 0; i < *conns; i++ {
		c.tcpConn(c.outside(), frontend1, 80, true)                    // web traffic
		c.tcpConn(frontend1, backend1, 3306, true)                     // the web tier queries MySQL
		c.tcpConn(backend1, backend2, 4567, true)                      // the backend island talks
		c.tcpConn(backend2, c.outside(), 443, true)                    // OS updates
		c.dns(backend1, backend2, true)                                // UDP inside the island
		c.dns(frontend1, c.outside(), true)                            // default egress
		c.add(ft.ICMPEcho(c.outside(), frontend1, uint16(i), 1, true)) // no ICMP rule: dropped
		if i%4 == 0 {
			c.tcpConn(admin, mgmt1, 22, true)    // the admin's SSH
			c.tcpConn(mgmt1, backend2, 22, true) // and on to a backend
			c.tcpConn(c.outside(), backend1, 3306, false)
			c.tcpConn(frontend1, backend1, 22, false)
			c.tcpConn(backend1, c.outside(), 8443, false)
			c.tcpConn(frontend1, c.outside(), 25, false) // SMTP
			c.add(ft.ARP(1, ft.Broadcast, frontend1.MAC, frontend1.IP, nil, backend1.IP))
		}
		if i%8 == 0 { // a tenant misbehaving
			c.add(ft.UDP(ft.Host{MAC: frontend1.MAC, IP: netip.MustParseAddr("10.0.0.99")}, backend1, 1, 2, nil))
			c.add(ft.ARP(2, gwMAC, frontend1.MAC, backend1.IP, gwMAC, gateway.IP))
			c.add(ft.DHCPServerReply(frontend1, backend1.IP, backend1.MAC))
			c.add(ft.VLAN(ft.UDP(frontend1, backend1, 1, 2, nil), 9, false))
			c.add(ft.TCP(frontend1, backend1, 1, 3306, "A", 1, 1, nil)) // no connection: invalid
			c.add(ft.TCP(frontend1, backend1, 1, 3306, "S", 1, 0, nil)[:30])
		}
	}
	if err := vswitch.WriteCapture(*out, c.frames); err != nil {
		fmt.Fprintln(os.Stderr, "gencap:", err)
		os.Exit(1)
	}
	fmt.Printf("gencap: %d frames to %s\n", len(c.frames), *out)
}
