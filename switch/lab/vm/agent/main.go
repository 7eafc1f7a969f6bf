// Command agent is /init of the test guests that package vm boots: it mounts
// the pseudo file systems, loads the virtio modules the initramfs carries,
// brings the interfaces up, and then serves the host's requests (package
// wire) on a virtio-serial port: traffic (ping, TCP and UDP echo clients and
// servers), DHCP through busybox udhcpc, commands through busybox, and raw
// forged frames through an AF_PACKET socket. It is built with CGO_ENABLED=0
// and is the only Go program in the guest.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab/vm/wire"
	"golang.org/x/sys/unix"
)

// Paths inside the initramfs that package vm writes.
const (
	busybox     = "/bin/busybox"
	moduleList  = "/lib/modules/load.list"
	udhcpScript = "/etc/udhcpc.sh"
)

func main() {
	if err := boot(); err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		powerOff()
	}
	port, err := openPort(10 * time.Second)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agent: %v\n", err)
		powerOff()
	}
	fmt.Fprintf(os.Stderr, "agent: serving at %s s of uptime\n", uptime())
	a := &agent{port: port, listening: map[string]bool{}}
	a.serve()
}

// boot prepares the guest: file systems, modules, links.
func boot() error {
	mounts := []struct{ fs, dir string }{
		{"proc", "/proc"}, {"sysfs", "/sys"}, {"devtmpfs", "/dev"}, {"tmpfs", "/tmp"}, {"tmpfs", "/run"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fs, m.dir, err)
		}
	}
	list, err := os.ReadFile(moduleList)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "agent: started at %s s of uptime\n", uptime())
	for _, path := range strings.Fields(string(list)) {
		if err := loadModule(path); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "agent: modules loaded at %s s\n", uptime())
	if err := bb("ip", "link", "set", "lo", "up"); err != nil {
		return err
	}
	// The NICs appear as their drivers probe them, right after the load;
	// the kernel command line says how many to wait for.
	want := nicCount()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ifs, _ := net.Interfaces()
		var eths []string
		for _, ifc := range ifs {
			if strings.HasPrefix(ifc.Name, "eth") {
				eths = append(eths, ifc.Name)
			}
		}
		if len(eths) >= want {
			for _, name := range eths {
				if err := bb("ip", "link", "set", name, "up"); err != nil {
					return err
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d NICs appeared", len(eths), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// nicCount reads sgswitch.nics=N from the kernel command line.
func nicCount() int {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "sgswitch.nics="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// uptime is the guest's /proc/uptime, for the console log of boot phases.
func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load %s: %w", path, err)
	}
	return nil
}

// openPort finds the virtio-serial port named wire.PortName.
func openPort(wait time.Duration) (*os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err == nil && strings.TrimSpace(string(b)) == wire.PortName {
				dev := "/dev/" + filepath.Base(filepath.Dir(n))
				return os.OpenFile(dev, os.O_RDWR, 0)
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no virtio-serial port named %s", wire.PortName)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func bb(args ...string) error {
	out, err := exec.Command(busybox, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func powerOff() {
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

type agent struct {
	port *os.File
	wmu  sync.Mutex

	lmu       sync.Mutex
	listening map[string]bool // "tcp/80": an echo server runs
}

// serve reads requests line by line. A read of zero bytes means the host
// side is not connected (between two harness connections): wait and read
// again on the same port.
func (a *agent) serve() {
	r := bufio.NewReaderSize(a.port, 1<<20)
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "agent: read: %v\n", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		var req wire.Request
		if err := json.Unmarshal(line, &req); err != nil {
			fmt.Fprintf(os.Stderr, "agent: bad request %q: %v\n", line, err)
			line = line[:0]
			continue
		}
		line = nil
		go a.handle(req)
	}
}

func (a *agent) reply(rep wire.Reply) {
	b, _ := json.Marshal(rep)
	b = append(b, '\n')
	a.wmu.Lock()
	defer a.wmu.Unlock()
	if _, err := a.port.Write(b); err != nil {
		fmt.Fprintf(os.Stderr, "agent: write: %v\n", err)
	}
}

func (a *agent) handle(req wire.Request) {
	out, err := a.do(req)
	rep := wire.Reply{ID: req.ID, Output: out}
	if err != nil {
		rep.Error = err.Error()
	}
	a.reply(rep)
	if req.Op == wire.OpPowerOff {
		time.Sleep(50 * time.Millisecond) // let the reply leave the ring
		powerOff()
	}
}

func (a *agent) timeout(req wire.Request) time.Duration {
	if req.TimeoutMS <= 0 {
		return 5 * time.Second
	}
	return time.Duration(req.TimeoutMS) * time.Millisecond
}

func (a *agent) do(req wire.Request) (string, error) {
	switch req.Op {
	case wire.OpHello, wire.OpPowerOff:
		return "", nil
	case wire.OpExec:
		out, err := exec.Command(busybox, req.Args...).CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("%s: %v", strings.Join(req.Args, " "), err)
		}
		return string(out), nil
	case wire.OpDHCP:
		return dhcp(req.Iface, a.timeout(req))
	case wire.OpPing:
		return ping(req.Addr, req.Count, a.timeout(req))
	case wire.OpListen:
		return "", a.listen(req.Proto, req.Port)
	case wire.OpDial:
		return "", dial(req.Proto, req.Addr, req.Payload, a.timeout(req))
	case wire.OpSendRaw:
		return "", sendRaw(req.Iface, req.Frame)
	}
	return "", fmt.Errorf("unknown op %q", req.Op)
}

// dhcp runs one DHCP exchange with busybox udhcpc (its script configures
// the address and the default route) and answers the interface's IPv4
// prefixes.
func dhcp(iface string, timeout time.Duration) (string, error) {
	tries := int(timeout / time.Second)
	if tries < 1 {
		tries = 1
	}
	out, err := exec.Command(busybox, "udhcpc", "-i", iface, "-f", "-q", "-n",
		"-t", fmt.Sprint(tries), "-T", "1", "-A", "1", "-s", udhcpScript).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("udhcpc on %s: %v: %s", iface, err, bytes.TrimSpace(out))
	}
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return "", err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", err
	}
	var v4 []string
	for _, ad := range addrs {
		if n, ok := ad.(*net.IPNet); ok && n.IP.To4() != nil {
			v4 = append(v4, n.String())
		}
	}
	return strings.Join(v4, " "), nil
}

func ping(addr string, count int, timeout time.Duration) (string, error) {
	if count <= 0 {
		count = 1
	}
	secs := int((timeout + time.Second - 1) / time.Second)
	// -w bounds the whole run, -W the wait for an answer after the last
	// request (busybox waits 10s by default, whatever -w says).
	out, err := exec.Command(busybox, "ping", "-c", fmt.Sprint(count), "-w", fmt.Sprint(secs), "-W", fmt.Sprint(secs), addr).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ping %s: no reply within %v", addr, timeout)
	}
	return string(out), nil
}

// listen starts an echo server; a second call for the same port is a no-op.
func (a *agent) listen(proto string, port int) error {
	key := fmt.Sprintf("%s/%d", proto, port)
	a.lmu.Lock()
	defer a.lmu.Unlock()
	if a.listening[key] {
		return nil
	}
	addr := fmt.Sprintf(":%d", port)
	switch proto {
	case "tcp":
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return err
		}
		go wire.ServeEcho(l)
	case "udp":
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return err
		}
		go wire.ServeEchoPackets(c)
	default:
		return fmt.Errorf("listen: protocol %q is not tcp or udp", proto)
	}
	a.listening[key] = true
	return nil
}

// dial sends payload to an echo server and checks that it comes back. UDP
// is resent every 300ms until the timeout, as a datagram may be lost.
func dial(proto, addr string, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	switch proto {
	case "tcp":
		c, err := net.DialTimeout("tcp4", addr, timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		if _, err := c.Write(payload); err != nil {
			return err
		}
		got := make([]byte, len(payload))
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("tcp %s: echo: %w", addr, err)
		}
		if !bytes.Equal(got, payload) {
			return fmt.Errorf("tcp %s: echo %q, want %q", addr, got, payload)
		}
		return nil
	case "udp":
		c, err := net.Dial("udp4", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		got := make([]byte, 65536)
		for time.Now().Before(deadline) {
			if _, err := c.Write(payload); err != nil && !errors.Is(err, unix.ECONNREFUSED) {
				return err
			}
			try := time.Now().Add(300 * time.Millisecond)
			if try.After(deadline) {
				try = deadline
			}
			c.SetReadDeadline(try)
			n, err := c.Read(got)
			if err == nil && bytes.Equal(got[:n], payload) {
				return nil
			}
		}
		return fmt.Errorf("udp %s: no echo within %v", addr, timeout)
	}
	return fmt.Errorf("dial: protocol %q is not tcp or udp", proto)
}

func htons(v uint16) uint16 { return binary.BigEndian.Uint16([]byte{byte(v), byte(v >> 8)}) }

// sendRaw writes one whole Ethernet frame on iface.
func sendRaw(iface string, frame []byte) error {
	ifc, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}
	if err := unix.Bind(fd, sa); err != nil {
		return err
	}
	_, err = unix.Write(fd, frame)
	return err
}
