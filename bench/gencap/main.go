// Command gencap writes a realistic capture of the seed scenario
// (testdata/lab/seed.yaml) for `sgswitch replay`: many TCP connections with
// handshake, data and teardown, DNS over UDP, ICMP, ARP, and a share of
// denied, spoofed and malformed frames. The output is deterministic for a
// given -seed, so a golden verdict file can be checked against it.
//
// -mix allowed writes only traffic the seed policy allows (complete TCP
// connections, DNS, ICMP echo with replies; no ARP, nothing denied, spoofed or
// malformed): every frame of it is forwarded. -size writes rounds until the
// file reaches a size (captures larger than memory: the frames are written as
// they are made). A name ending in .gz is gzip-compressed.
//
//	go run ./bench/gencap -o testdata/pcap/seed-mix.pcap -conns 40
//	go run ./bench/gencap -o /tmp/big.pcap -size 2G
//	go run ./bench/gencap -o /tmp/allowed.pcap -mix allowed -conns 5000   # 20,000 TCP connections
package main

import (
	"bufio"
	"compress/gzip"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
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

// capture writes frames with advancing timestamps as they are made.
type capture struct {
	w      *pcapgo.Writer
	err    error
	frames int
	bytes  int64 // written so far (uncompressed)
	now    time.Time
	rng    *rand.Rand
}

func (c *capture) add(b []byte) {
	c.now = c.now.Add(time.Duration(20+c.rng.IntN(200)) * time.Microsecond)
	if c.err == nil {
		c.err = c.w.WritePacket(gopacket.CaptureInfo{Timestamp: c.now, CaptureLength: len(b), Length: len(b)}, b)
	}
	c.frames++
	c.bytes += 16 + int64(len(b))
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

// parseSize reads 2G, 500M, 64K or a byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, strings.TrimSuffix(s, "K")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("-size %q: want a byte count such as 2G, 500M or 65536", s)
	}
	return n * mult, nil
}

func main() {
	out := flag.String("o", "testdata/pcap/seed-mix.pcap", "output `FILE` (gzip-compressed when it ends in .gz)")
	conns := flag.Int("conns", 40, "rounds of the traffic mix (seed: about 80 frames each; allowed: 4 TCP connections, 2 DNS exchanges and a ping each)")
	size := flag.String("size", "", "instead of -conns: write rounds until the file holds this many bytes (2G, 500M)")
	mix := flag.String("mix", "seed", "traffic mix: seed (the seed scenario with denied, spoofed and malformed frames) or allowed (only traffic the seed policy allows)")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if err := generate(*out, *conns, *size, *mix, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "gencap:", err)
		os.Exit(1)
	}
}

func generate(path string, rounds int, size, mix string, seed uint64) error {
	limit := int64(-1)
	if size != "" {
		n, err := parseSize(size)
		if err != nil {
			return err
		}
		limit, rounds = n, -1
	}
	if mix != "seed" && mix != "allowed" {
		return fmt.Errorf("-mix %q: want seed or allowed", mix)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var sink io.Writer = f
	var gz *gzip.Writer
	if strings.HasSuffix(path, ".gz") {
		gz = gzip.NewWriter(f)
		sink = gz
	}
	bw := bufio.NewWriterSize(sink, 1<<20)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		return err
	}
	c := &capture{w: w, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(seed, seed))}
	if mix == "seed" {
		seedPrologue(c)
	}
	for i := 0; (rounds < 0 || i < rounds) && (limit < 0 || c.bytes < limit) && c.err == nil; i++ {
		if mix == "seed" {
			seedRound(c, i)
		} else {
			allowedRound(c, i)
		}
	}
	if c.err != nil {
		return c.err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if gz != nil {
		if err := gz.Close(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Printf("gencap: %d frames to %s\n", c.frames, path)
	return nil
}

// seedPrologue: the instances find the gateway, and the gateway finds them.
func seedPrologue(c *capture) {
	for _, h := range []ft.Host{frontend1, backend1, backend2, mgmt1} {
		c.add(ft.ARP(1, ft.Broadcast, h.MAC, h.IP, nil, gateway.IP))
		c.add(ft.ARP(2, h.MAC, gwMAC, gateway.IP, h.MAC, h.IP))
	}
	c.add(ft.ARP(1, ft.Broadcast, gwMAC, gateway.IP, nil, frontend1.IP))
}

// allowedRound is one round of traffic the seed policy allows, every frame
// forwarded. It starts with a frame from the uplink, so that the switch has
// learned the gateway's MAC before an instance sends to it.
func allowedRound(c *capture, i int) {
	c.tcpConn(c.outside(), frontend1, 80, true)
	c.tcpConn(frontend1, backend1, 3306, true)
	c.tcpConn(backend1, backend2, 4567, true)
	c.tcpConn(backend2, c.outside(), 443, true)
	c.dns(backend1, backend2, true)
	c.dns(frontend1, c.outside(), true)
	out := c.outside()
	c.add(ft.ICMPEcho(frontend1, out, uint16(i), 1, true))  // egress is open for frontend1
	c.add(ft.ICMPEcho(out, frontend1, uint16(i), 1, false)) // and its reply is tracked
}

func seedRound(c *capture, i int) {
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
