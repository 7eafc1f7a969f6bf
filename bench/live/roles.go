package main

// Helper roles: the benchmark binary re-executes itself inside a namespace
// (`ip netns exec NS BENCH -role NAME ...`) to serve or generate traffic there.
// Every role prints its result as one JSON line on stdout (servers print
// "ready" first) and ends by itself after -timeout at the latest.

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// roleMain runs the role named by args[0]; args[1:] are its flags.
func roleMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "-role: missing role name")
		return 2
	}
	name, rest := args[0], args[1:]
	fs := flag.NewFlagSet("role "+name, flag.ContinueOnError)
	listen := fs.String("listen", "", "address to listen on")
	dst := fs.String("dst", "", "address to send to")
	dur := fs.Duration("dur", 3*time.Second, "measured duration")
	warmup := fs.Duration("warmup", 500*time.Millisecond, "time before measuring")
	timeout := fs.Duration("timeout", time.Minute, "the role ends after this at the latest")
	ifname := fs.String("ifname", "", "interface whose counters are read")
	size := fs.Int("size", udpPayload, "UDP payload bytes")
	batch := fs.Int("batch", 64, "datagrams per sendmmsg/recvmmsg")
	threads := fs.Int("threads", 1, "udp-gen: sending threads")
	enable := fs.Bool("enable", false, "offloads: turn TSO/GSO/SG/tx checksum on")
	if err := fs.Parse(rest); err != nil {
		return 2
	}
	// A role never outlives its timeout, whatever happens to the parent.
	time.AfterFunc(*timeout, func() {
		fmt.Fprintf(os.Stderr, "role %s: timed out after %s\n", name, *timeout)
		os.Exit(3)
	})
	var (
		res any
		err error
	)
	switch name {
	case "rr-server":
		err = rrServer(*listen)
	case "rr-client":
		res, err = rrClient(*dst, *warmup, *dur)
	case "udp-sink":
		res, err = udpSink(*listen, *ifname, *warmup, *dur, *batch)
	case "udp-gen":
		res, err = udpGen(*dst, *ifname, *dur, *size, *batch, *threads)
	case "probe":
		res, err = probe(*dst, *dur)
	case "offloads":
		res, err = offloads(*ifname, *enable)
	default:
		err = fmt.Errorf("unknown role %q", name)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "role %s: %v\n", name, err)
		return 1
	}
	if res != nil {
		b, _ := json.Marshal(res)
		fmt.Printf("%s\n", b)
	}
	return 0
}

// rrServer answers every byte it reads with one byte, on every connection.
func rrServer(listen string) error {
	ln, err := net.Listen("tcp4", listen)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			for {
				if _, err := c.Read(b); err != nil {
					return
				}
				if _, err := c.Write(b); err != nil {
					return
				}
			}
		}()
	}
}

// rrResult is one TCP_RR run.
type rrResult struct {
	N      int     `json:"n"`
	Secs   float64 `json:"secs"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P99US  float64 `json:"p99_us"`
	MaxUS  float64 `json:"max_us"`
	TPS    float64 `json:"tps"`
}

// rrClient does 1-byte request / 1-byte response round trips over one TCP
// connection for dur after warmup and reports their times.
func rrClient(dst string, warmup, dur time.Duration) (*rrResult, error) {
	c, err := net.DialTimeout("tcp4", dst, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	if err := tc.SetNoDelay(true); err != nil {
		return nil, err
	}
	req, resp := []byte{'x'}, make([]byte, 1)
	once := func() error {
		if _, err := tc.Write(req); err != nil {
			return err
		}
		_, err := tc.Read(resp)
		return err
	}
	if err := tc.SetDeadline(time.Now().Add(warmup + dur + 10*time.Second)); err != nil {
		return nil, err
	}
	for end := time.Now().Add(warmup); time.Now().Before(end); {
		if err := once(); err != nil {
			return nil, fmt.Errorf("warm-up round trip: %w", err)
		}
	}
	samples := make([]time.Duration, 0, 1<<18)
	start := time.Now()
	end := start.Add(dur)
	for {
		t0 := time.Now()
		if !t0.Before(end) {
			break
		}
		if err := once(); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", len(samples), err)
		}
		samples = append(samples, time.Since(t0))
	}
	elapsed := time.Since(start)
	if len(samples) == 0 {
		return nil, errors.New("no round trip completed")
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	pct := func(p float64) time.Duration { return samples[min(len(samples)-1, int(p*float64(len(samples))))] }
	return &rrResult{
		N: len(samples), Secs: elapsed.Seconds(),
		MeanUS: us(sum) / float64(len(samples)), P50US: us(pct(0.50)), P99US: us(pct(0.99)),
		MaxUS: us(samples[len(samples)-1]), TPS: float64(len(samples)) / elapsed.Seconds(),
	}, nil
}

// mmsghdr is struct mmsghdr of <sys/socket.h>.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

func mmsg(fd int, trap uintptr, msgs []mmsghdr, flags int) (int, error) {
	n, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags), 0, 0)
	runtime.KeepAlive(msgs)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func udpSocket() (int, error) {
	return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
}

func sockaddr(s string) (*unix.SockaddrInet4, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("%q is not an IPv4 address:port", s)
	}
	return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}, nil
}

// udpSinkResult is what reached the receiver during the measured window.
type udpSinkResult struct {
	Secs      float64 `json:"secs"`
	AppPkts   uint64  `json:"app_pkts"`
	IfPkts    uint64  `json:"if_pkts"`
	IfDrops   uint64  `json:"if_drops"`
	AppPPS    float64 `json:"app_pps"`
	IfPPS     float64 `json:"if_pps"`
	SockDrops uint64  `json:"sock_drops"`
}

// udpSink receives datagrams as fast as it can (recvmmsg) and, from warmup
// after the first one for dur, counts both the datagrams it read and the
// packets the interface received.
func udpSink(listen, ifname string, warmup, dur time.Duration, batch int) (*udpSinkResult, error) {
	sa, err := sockaddr(listen)
	if err != nil {
		return nil, err
	}
	fd, err := udpSocket()
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 32<<20)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000}); err != nil {
		return nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		return nil, fmt.Errorf("bind %s: %w", listen, err)
	}
	if _, err := ifCounters(ifname); err != nil {
		return nil, err
	}
	var count atomic.Uint64
	var stop atomic.Bool
	recvErr := make(chan error, 1)
	go func() {
		bufs := make([]byte, batch*2048)
		iovs := make([]unix.Iovec, batch)
		msgs := make([]mmsghdr, batch)
		for i := range msgs {
			iovs[i].Base = &bufs[i*2048]
			iovs[i].SetLen(2048)
			msgs[i].hdr.Iov = &iovs[i]
			msgs[i].hdr.SetIovlen(1)
		}
		for !stop.Load() {
			n, err := mmsg(fd, unix.SYS_RECVMMSG, msgs, unix.MSG_WAITFORONE)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				recvErr <- err
				return
			}
			count.Add(uint64(n))
		}
	}()
	fmt.Println("ready")
	first := time.Now().Add(15 * time.Second)
	for count.Load() == 0 {
		if time.Now().After(first) {
			return nil, errors.New("no datagram arrived within 15s: is the traffic blocked?")
		}
		select {
		case err := <-recvErr:
			return nil, err
		case <-time.After(5 * time.Millisecond):
		}
	}
	time.Sleep(warmup)
	c0, if0, t0 := count.Load(), must(ifCounters(ifname)), time.Now()
	time.Sleep(dur)
	c1, if1, t1 := count.Load(), must(ifCounters(ifname)), time.Now()
	stop.Store(true)
	secs := t1.Sub(t0).Seconds()
	return &udpSinkResult{
		Secs: secs, AppPkts: c1 - c0, IfPkts: if1.rxPackets - if0.rxPackets, IfDrops: if1.rxDrop - if0.rxDrop,
		AppPPS: float64(c1-c0) / secs, IfPPS: float64(if1.rxPackets-if0.rxPackets) / secs,
		SockDrops: udpSockDrops(sa.Port),
	}, nil
}

func must[T any](v T, _ error) T { return v }

// udpGenResult is what the generator offered.
type udpGenResult struct {
	Sent    uint64  `json:"sent"`
	Secs    float64 `json:"secs"`
	PPS     float64 `json:"pps"`
	Errors  uint64  `json:"errors"`
	IfTx    uint64  `json:"if_tx"`
	IfTxDrp uint64  `json:"if_tx_drop"`
}

// udpGen sends size-byte datagrams to dst with sendmmsg for dur, as fast as
// threads threads can, each from its own socket (own source port).
func udpGen(dst, ifname string, dur time.Duration, size, batch, threads int) (*udpGenResult, error) {
	sa, err := sockaddr(dst)
	if err != nil {
		return nil, err
	}
	c0, err := ifCounters(ifname)
	if err != nil {
		return nil, err
	}
	type result struct {
		sent, errs uint64
		err        error
	}
	results := make(chan result, threads)
	start := time.Now()
	end := start.Add(dur)
	for t := 0; t < max(threads, 1); t++ {
		go func() {
			runtime.LockOSThread()
			sent, errs, err := udpSend(sa, end, size, batch)
			results <- result{sent, errs, err}
		}()
	}
	var sent, errs uint64
	for t := 0; t < max(threads, 1); t++ {
		r := <-results
		if r.err != nil {
			return nil, r.err
		}
		sent, errs = sent+r.sent, errs+r.errs
	}
	secs := time.Since(start).Seconds()
	c1, _ := ifCounters(ifname)
	return &udpGenResult{Sent: sent, Secs: secs, PPS: float64(sent) / secs, Errors: errs,
		IfTx: c1.txPackets - c0.txPackets, IfTxDrp: c1.txDrop - c0.txDrop}, nil
}

func udpSend(sa *unix.SockaddrInet4, end time.Time, size, batch int) (sent, errs uint64, err error) {
	fd, err := udpSocket()
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 8<<20); err != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<20)
	}
	if err := unix.Connect(fd, sa); err != nil {
		return 0, 0, fmt.Errorf("connect %s:%d: %w", netip.AddrFrom4(sa.Addr), sa.Port, err)
	}
	payload := make([]byte, max(size, 1))
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(size)
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	for i := 0; ; i++ {
		if i%16 == 0 && !time.Now().Before(end) {
			return sent, errs, nil
		}
		n, err := mmsg(fd, unix.SYS_SENDMMSG, msgs, 0)
		if err != nil {
			// ENOBUFS/EAGAIN: a full queue; ECONNREFUSED: an ICMP error
			// came back. Count and go on; other errors are fatal.
			if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ECONNREFUSED) || errors.Is(err, unix.EINTR) {
				errs++
				continue
			}
			return sent, errs, fmt.Errorf("sendmmsg: %w", err)
		}
		sent += uint64(n)
	}
}

// probeResult says what happened to a TCP connection attempt.
type probeResult struct {
	Result string `json:"result"` // open, refused, timeout, error
	Detail string `json:"detail,omitempty"`
}

func probe(dst string, timeout time.Duration) (*probeResult, error) {
	c, err := net.DialTimeout("tcp4", dst, timeout)
	switch {
	case err == nil:
		c.Close()
		return &probeResult{Result: "open"}, nil
	case errors.Is(err, unix.ECONNREFUSED):
		return &probeResult{Result: "refused"}, nil
	case os.IsTimeout(err):
		return &probeResult{Result: "timeout"}, nil
	}
	return &probeResult{Result: "error", Detail: err.Error()}, nil
}

// counters are one interface's line of /proc/net/dev (per namespace).
type counters struct {
	rxPackets, rxDrop, txPackets, txDrop uint64
}

func ifCounters(ifname string) (counters, error) {
	f, err := os.Open("/proc/net/dev")
	if err != nil {
		return counters{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) != ifname {
			continue
		}
		fs := strings.Fields(rest)
		if len(fs) < 16 {
			break
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(fs[i], 10, 64); return v }
		return counters{rxPackets: n(1), rxDrop: n(3), txPackets: n(9), txDrop: n(11)}, nil
	}
	return counters{}, fmt.Errorf("interface %q not found in /proc/net/dev", ifname)
}

// udpSockDrops reads the drop count of the UDP socket bound to port from
// /proc/net/udp (last column); 0 when unknown.
func udpSockDrops(port int) uint64 {
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	want := fmt.Sprintf(":%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		fs := strings.Fields(line)
		if len(fs) > 12 && strings.HasSuffix(fs[1], want) {
			v, _ := strconv.ParseUint(fs[len(fs)-1], 10, 64)
			return v
		}
	}
	return 0
}

// Offloads through the legacy ethtool ioctls (no ethtool binary needed).
const (
	siocEthtool    = 0x8946
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
	ethtoolGSG     = 0x18
	ethtoolSSG     = 0x19
	ethtoolGTSO    = 0x1e
	ethtoolSTSO    = 0x1f
	ethtoolGGSO    = 0x23
	ethtoolSGSO    = 0x24
	ethtoolGGRO    = 0x2b
)

type ethtoolValue struct{ cmd, data uint32 }

type ifreqPtr struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [16]byte
}

func ethtool(fd int, ifname string, cmd, data uint32) (uint32, error) {
	v := ethtoolValue{cmd: cmd, data: data}
	var ifr ifreqPtr
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), siocEthtool, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&v)
	if e != 0 {
		return 0, e
	}
	return v.data, nil
}

// offloads reports (and with enable, first turns on) an interface's
// segmentation and checksum offloads.
func offloads(ifname string, enable bool) (map[string]string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if enable {
		for _, set := range []uint32{ethtoolSTXCSUM, ethtoolSSG, ethtoolSTSO, ethtoolSGSO} {
			if _, err := ethtool(fd, ifname, set, 1); err != nil {
				return nil, fmt.Errorf("%s: enable offload (ethtool cmd %#x): %w", ifname, set, err)
			}
		}
	}
	out := map[string]string{}
	for _, g := range []struct {
		name string
		cmd  uint32
	}{{"tx-csum", ethtoolGTXCSUM}, {"sg", ethtoolGSG}, {"tso", ethtoolGTSO}, {"gso", ethtoolGGSO}, {"gro", ethtoolGGRO}} {
		v, err := ethtool(fd, ifname, g.cmd, 0)
		switch {
		case err != nil:
			out[g.name] = "?"
		case v != 0:
			out[g.name] = "on"
		default:
			out[g.name] = "off"
		}
	}
	return out, nil
}
