package main

// The flood role: `ip netns exec fl-x BENCH -role flood ...` sends
// prebuilt Ethernet frames through an AF_PACKET socket on the attacker's
// interface at a paced rate and prints what it achieved as one JSON line.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sgswitch/sgswitch/filter/framegen"
	"golang.org/x/sys/unix"
)

// floodResult is what the flood role prints.
type floodResult struct {
	Kind     string  `json:"kind"`
	Sent     uint64  `json:"sent"`
	Errors   uint64  `json:"errors"`
	Secs     float64 `json:"secs"`
	PPS      float64 `json:"pps"`
	IfTx     uint64  `json:"if_tx"`
	IfTxDrop uint64  `json:"if_tx_drop"`
}

func roleMain(args []string) int {
	fs := flag.NewFlagSet("role", flag.ContinueOnError)
	kind := fs.String("kind", "syn", "syn: SYNs from the attacker's own addresses, random source ports; spoof: random foreign source IPs and MACs")
	ifname := fs.String("ifname", "", "interface to send on")
	srcMAC := fs.String("src-mac", "", "attacker MAC")
	srcIP := fs.String("src-ip", "", "attacker IPv4")
	dstMAC := fs.String("dst-mac", "", "target MAC")
	dstIP := fs.String("dst-ip", "", "target IPv4")
	dport := fs.Int("dport", 5301, "destination port")
	rate := fs.Float64("rate", 30000, "frames per second")
	dur := fs.Duration("dur", 5*time.Second, "how long to send")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	time.AfterFunc(*dur+30*time.Second, func() { fmt.Fprintln(os.Stderr, "flood: timed out"); os.Exit(3) })
	res, err := flood(*kind, *ifname, *srcMAC, *srcIP, *dstMAC, *dstIP, uint16(*dport), *rate, *dur)
	if err != nil {
		fmt.Fprintf(os.Stderr, "flood: %v\n", err)
		return 1
	}
	b, _ := json.Marshal(res)
	fmt.Printf("%s\n", b)
	return 0
}

// frames prebuilds n distinct frames of the flood.
func frames(kind string, n int, src, dst framegen.Host, dport uint16) [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([][]byte, n)
	for i := range out {
		sport := uint16(1024 + r.IntN(64000))
		s := src
		if kind == "spoof" {
			// Half with a random foreign MAC (and IP), half with the
			// attacker's own MAC but a random foreign IP.
			ip := netip.AddrFrom4([4]byte{172, byte(16 + r.IntN(16)), byte(r.IntN(256)), byte(1 + r.IntN(254))})
			s = framegen.Host{MAC: src.MAC, IP: ip}
			if i%2 == 0 {
				mac := make(net.HardwareAddr, 6)
				binary.BigEndian.PutUint32(mac[2:], r.Uint32())
				mac[0], mac[1] = 0x02, byte(r.IntN(256))
				s.MAC = mac
			}
		}
		out[i] = framegen.TCP(s, dst, sport, dport, "S", r.Uint32(), 0, nil)
	}
	return out
}

func flood(kind, ifname, srcMAC, srcIP, dstMAC, dstIP string, dport uint16, rate float64, dur time.Duration) (*floodResult, error) {
	if kind != "syn" && kind != "spoof" {
		return nil, fmt.Errorf("unknown -kind %q", kind)
	}
	sip, err1 := netip.ParseAddr(srcIP)
	dip, err2 := netip.ParseAddr(dstIP)
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	src := framegen.Host{MAC: framegen.MustMAC(srcMAC), IP: sip}
	dst := framegen.Host{MAC: framegen.MustMAC(dstMAC), IP: dip}
	fr := frames(kind, 8192, src, dst, dport)

	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	sll := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_IP)}
	if err := unix.Bind(fd, sll); err != nil {
		return nil, fmt.Errorf("bind %s: %w", ifname, err)
	}
	tx0, drop0 := ifStat(ifname, "tx_packets"), ifStat(ifname, "tx_dropped")
	fmt.Println("ready")
	res := &floodResult{Kind: kind}
	start := time.Now()
	end := start.Add(dur)
	for i := 0; ; {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		due := uint64(rate * now.Sub(start).Seconds())
		if res.Sent+res.Errors >= due {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		for n := 0; n < 256 && res.Sent+res.Errors < due; n++ {
			if err := unix.Sendto(fd, fr[i%len(fr)], 0, sll); err != nil {
				if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					res.Errors++
					continue
				}
				return nil, fmt.Errorf("send: %w", err)
			}
			res.Sent++
			i++
		}
	}
	res.Secs = time.Since(start).Seconds()
	res.PPS = float64(res.Sent) / res.Secs
	res.IfTx = ifStat(ifname, "tx_packets") - tx0
	res.IfTxDrop = ifStat(ifname, "tx_dropped") - drop0
	return res, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func ifStat(ifname, name string) uint64 {
	b, err := os.ReadFile("/sys/class/net/" + ifname + "/statistics/" + name)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}
