// Package vm boots real QEMU guests for the end-to-end tests and the demo:
// Debian's kernel (taken out of linux-image-cloud-amd64 by `make deps`,
// never installed), an initramfs of busybox-static, the virtio modules and
// a static Go agent (./agent) that the host drives over a virtio-serial
// port: DHCP, ping, TCP and UDP echo, raw forged frames, power off.
//
// A guest's NICs are virtio-net devices on a TAP that QEMU creates itself
// (-netdev tap,ifname=NAME: the device a hypervisor hands to sgswitch as a
// netdev port) or on a vhost-user socket, in either server or client mode.
// Guests run under KVM only when a probe guest proves it works (Accel), and
// under TCG otherwise: on the machines this was written on /dev/kvm either
// is absent or lets a guest hang, and TCG boots one in a few seconds.
package vm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/lab/vm/wire"
)

// QEMU is the emulator every guest runs in (package qemu-system-x86).
const QEMU = "qemu-system-x86_64"

// memoryMB is each guest's RAM; vhost-user shares all of it with the backend.
const memoryMB = 256

// NIC is one virtio-net device of a guest. Exactly one of TAP and VhostUser is set.
type NIC struct {
	MAC net.HardwareAddr
	// TAP makes QEMU create (and on exit delete) the TAP device of this name,
	// without any script: nobody configures it on the host side.
	TAP string
	// VhostUser attaches the NIC to a vhost-user backend through a socket.
	VhostUser *VhostUser
}

// VhostUser is a vhost-user NIC's socket. Server true: QEMU listens on
// Socket and the backend connects (sgswitch mode client); false: the backend
// listens and QEMU connects, reconnecting every second while it is gone.
type VhostUser struct {
	Socket string
	Server bool
}

// Config describes a guest.
type Config struct {
	Name string // short, for file names and errors
	NICs []NIC  // eth0, eth1, ... in the guest, in this order
	// Netns runs QEMU in this network namespace (its TAPs are made there);
	// empty is the caller's namespace.
	Netns string
	// Dir holds the guest's control socket and console log.
	Dir string
}

// Guest is a guest that can be started, powered off and started again.
type Guest struct {
	img   *Image
	cfg   Config
	accel string // "tcg" or "kvm", chosen by Start (see Accel)

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
	agent  *client
}

// New prepares a guest; Start boots it.
func New(img *Image, cfg Config) (*Guest, error) {
	if cfg.Name == "" || cfg.Dir == "" {
		return nil, errors.New("vm: a guest needs a Name and a Dir")
	}
	for i, n := range cfg.NICs {
		if (n.TAP == "") == (n.VhostUser == nil) {
			return nil, fmt.Errorf("vm %s: NIC %d needs exactly one of TAP and VhostUser", cfg.Name, i)
		}
		if len(n.MAC) != 6 {
			return nil, fmt.Errorf("vm %s: NIC %d has no MAC", cfg.Name, i)
		}
	}
	return &Guest{img: img, cfg: cfg}, nil
}

// Config returns the guest's configuration.
func (g *Guest) Config() Config { return g.cfg }

func (g *Guest) controlPath() string { return filepath.Join(g.cfg.Dir, g.cfg.Name+".agent.sock") }

// ConsolePath is the file the guest's serial console is written to.
func (g *Guest) ConsolePath() string { return filepath.Join(g.cfg.Dir, g.cfg.Name+".console") }

// Args is QEMU's command line for this guest (without the program name).
func (g *Guest) Args() []string {
	args := []string{
		"-name", g.cfg.Name,
		"-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
		"-accel", g.accelName(), "-cpu", g.cpuModel(), "-smp", "1",
		"-kernel", g.img.Kernel, "-initrd", g.img.Initramfs,
		"-append", fmt.Sprintf("console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off sgswitch.nics=%d", len(g.cfg.NICs)),
		"-serial", "file:" + g.ConsolePath(),
		"-device", "virtio-serial-pci",
		"-chardev", "socket,id=agent,path=" + g.controlPath() + ",server=on,wait=off",
		"-device", "virtserialport,chardev=agent,name=" + wire.PortName,
	}
	vhost := false
	for _, n := range g.cfg.NICs {
		vhost = vhost || n.VhostUser != nil
	}
	if vhost {
		// A vhost-user backend maps the guest's whole memory: it must be a
		// shared file descriptor.
		args = append(args, "-m", fmt.Sprintf("%dM", memoryMB),
			"-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", memoryMB),
			"-machine", "pc,memory-backend=mem")
	} else {
		args = append(args, "-m", fmt.Sprintf("%dM", memoryMB), "-machine", "pc")
	}
	for i, n := range g.cfg.NICs {
		id := fmt.Sprintf("n%d", i)
		if n.TAP != "" {
			args = append(args, "-netdev", fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", id, n.TAP))
		} else {
			chr := "socket,id=c" + id + ",path=" + n.VhostUser.Socket
			if n.VhostUser.Server {
				chr += ",server=on,wait=off"
			} else {
				chr += ",reconnect=1"
			}
			args = append(args, "-chardev", chr, "-netdev", fmt.Sprintf("vhost-user,id=%s,chardev=c%s", id, id))
		}
		dev := fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,romfile=", id, n.MAC)
		if n.VhostUser != nil {
			// QEMU 7.2 under TCG dereferences a NULL irqfd table when a
			// vhost device's MSI-X vectors are set up (segfault in
			// msix_set_vector_notifiers as the guest's driver starts the
			// device); without MSI-X the device interrupts through INTx.
			dev += ",vectors=0"
		}
		args = append(args, "-device", dev)
	}
	return args
}

func (g *Guest) accelName() string {
	if g.accel == "" {
		return "tcg"
	}
	return g.accel
}

// cpuModel is the host's CPU under KVM, and everything TCG emulates otherwise.
func (g *Guest) cpuModel() string {
	if g.accelName() == "kvm" {
		return "host"
	}
	return "max"
}

var (
	accelOnce   sync.Once
	accelChosen string
)

// Accel is the accelerator guests boot with: "kvm" when /dev/kvm exists
// and a probe guest boots under it within 20 s, else "tcg" (on machines
// where /dev/kvm exists but a KVM guest hangs, the probe fails and costs
// its 20 s once). The answer is kept for the host's current boot in
// GuestDir (a file named after /proc/sys/kernel/random/boot_id), so that
// test binaries after the first do not probe again.
func Accel(img *Image) string {
	accelOnce.Do(func() { accelChosen = probeAccel(img) })
	return accelChosen
}

func probeAccel(img *Image) string {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg"
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return "tcg"
	}
	memo := filepath.Join(GuestDir(), ".accel-"+strings.TrimSpace(string(boot)))
	if b, err := os.ReadFile(memo); err == nil && (string(b) == "kvm" || string(b) == "tcg") {
		return string(b)
	}
	dir, err := os.MkdirTemp("", "sgswitch-kvm-probe-")
	if err != nil {
		return "tcg"
	}
	defer os.RemoveAll(dir)
	g := &Guest{img: img, cfg: Config{Name: "kvmprobe", Dir: dir}, accel: "kvm"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	chosen := "tcg"
	if g.Start(ctx) == nil {
		chosen = "kvm"
	}
	g.Kill()
	os.WriteFile(memo, []byte(chosen), 0o644)
	return chosen
}

// Start boots the guest and returns once its agent answers (or ctx ends).
// A guest that was powered off may be started again.
func (g *Guest) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd != nil {
		return fmt.Errorf("vm %s: already running", g.cfg.Name)
	}
	if g.accel == "" {
		g.accel = Accel(g.img)
	}
	os.Remove(g.controlPath())
	var cmd *exec.Cmd
	if g.cfg.Netns != "" {
		cmd = lab.Exec(g.cfg.Netns, QEMU, g.Args()...)
	} else {
		cmd = exec.Command(QEMU, g.Args()...)
	}
	log, err := os.Create(filepath.Join(g.cfg.Dir, g.cfg.Name+".qemu.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	// QEMU must not outlive the test binary that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("vm %s: start %s: %w", g.cfg.Name, QEMU, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	g.cmd, g.exited = cmd, exited

	c, err := g.connect(ctx, exited)
	if err != nil {
		g.killLocked()
		return fmt.Errorf("vm %s: %w\n%s", g.cfg.Name, err, g.diagnostics())
	}
	g.agent = c
	return nil
}

// connect dials the agent's socket and says hello until the agent answers.
func (g *Guest) connect(ctx context.Context, exited <-chan struct{}) (*client, error) {
	var conn net.Conn
	for {
		var err error
		conn, err = net.Dial("unix", g.controlPath())
		if err == nil {
			break
		}
		select {
		case <-exited:
			return nil, errors.New("QEMU exited during boot")
		case <-ctx.Done():
			return nil, fmt.Errorf("QEMU's agent socket: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	c := newClient(conn)
	for {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.call(hctx, wire.Request{Op: wire.OpHello})
		cancel()
		if err == nil {
			return c, nil
		}
		select {
		case <-exited:
			c.close()
			return nil, errors.New("QEMU exited during boot")
		case <-ctx.Done():
			c.close()
			return nil, fmt.Errorf("the guest agent did not answer: %w", ctx.Err())
		default:
		}
	}
}

// diagnostics is the end of QEMU's log and the console, for failures.
func (g *Guest) diagnostics() string {
	var b strings.Builder
	for _, p := range []string{filepath.Join(g.cfg.Dir, g.cfg.Name+".qemu.log"), g.ConsolePath()} {
		data, _ := os.ReadFile(p)
		if len(data) > 3000 {
			data = data[len(data)-3000:]
		}
		fmt.Fprintf(&b, "--- %s\n%s", filepath.Base(p), data)
	}
	return b.String()
}

// Running reports whether QEMU runs.
func (g *Guest) Running() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.cmd != nil
}

// PowerOff asks the guest to power off and waits for QEMU to exit; QEMU is
// killed when the guest does not go within the timeout. QEMU deletes the
// TAPs it created.
func (g *Guest) PowerOff(timeout time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.cmd == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, err := g.agent.call(ctx, wire.Request{Op: wire.OpPowerOff})
	if err == nil {
		select {
		case <-g.exited:
		case <-ctx.Done():
			err = fmt.Errorf("vm %s: still running %v after poweroff", g.cfg.Name, timeout)
		}
	}
	g.killLocked()
	return err
}

// Kill stops QEMU at once (pulling the plug) and waits for it.
func (g *Guest) Kill() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.killLocked()
}

func (g *Guest) killLocked() {
	if g.agent != nil {
		g.agent.close()
		g.agent = nil
	}
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Kill()
	<-g.exited
	g.cmd = nil
	os.Remove(g.controlPath())
}

func (g *Guest) client() (*client, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.agent == nil {
		return nil, fmt.Errorf("vm %s is not running", g.cfg.Name)
	}
	return g.agent, nil
}

// Do sends one request to the guest's agent and waits for its reply, at
// most the request's own timeout plus a margin for the channel.
func (g *Guest) Do(req wire.Request) (string, error) {
	c, err := g.client()
	if err != nil {
		return "", err
	}
	wait := 5 * time.Second
	if req.TimeoutMS > 0 {
		wait = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait+10*time.Second)
	defer cancel()
	rep, err := c.call(ctx, req)
	if err != nil {
		return "", fmt.Errorf("vm %s: %s: %w", g.cfg.Name, req.Op, err)
	}
	if rep.Error != "" {
		return rep.Output, fmt.Errorf("vm %s: %s", g.cfg.Name, rep.Error)
	}
	return rep.Output, nil
}

// Exec runs busybox with args in the guest and returns its output.
func (g *Guest) Exec(args ...string) (string, error) {
	return g.Do(wire.Request{Op: wire.OpExec, Args: args})
}

// DHCP runs a DHCP client on iface and returns the IPv4 prefix it configured.
func (g *Guest) DHCP(iface string, timeout time.Duration) (string, error) {
	return g.Do(wire.Request{Op: wire.OpDHCP, Iface: iface, TimeoutMS: int(timeout / time.Millisecond)})
}

// Name is the guest's name.
func (g *Guest) Name() string { return g.cfg.Name }

// Ping succeeds when dst answers an ICMP echo within timeout.
func (g *Guest) Ping(dst netip.Addr, timeout time.Duration) error {
	_, err := g.Do(wire.Request{Op: wire.OpPing, Addr: dst.String(), Count: 1, TimeoutMS: int(timeout / time.Millisecond)})
	return err
}

// Listen starts a TCP or UDP echo server on port in the guest.
func (g *Guest) Listen(proto string, port int) error {
	_, err := g.Do(wire.Request{Op: wire.OpListen, Proto: proto, Port: port})
	return err
}

// Exchange sends payload over TCP or UDP to dst from the guest and
// succeeds when the echo comes back within timeout.
func (g *Guest) Exchange(proto string, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	_, err := g.Do(wire.Request{Op: wire.OpDial, Proto: proto, Addr: dst.String(), Payload: payload, TimeoutMS: int(timeout / time.Millisecond)})
	return err
}

// SendRaw writes a whole Ethernet frame on iface from inside the guest.
func (g *Guest) SendRaw(iface string, frame []byte) error {
	_, err := g.Do(wire.Request{Op: wire.OpSendRaw, Iface: iface, Frame: frame})
	return err
}

// client is one connection to a guest's agent; calls run concurrently and
// are matched to replies by id.
type client struct {
	conn net.Conn
	wmu  sync.Mutex

	mu      sync.Mutex
	next    uint64
	pending map[uint64]chan wire.Reply
	err     error // set when the connection broke
}

func newClient(conn net.Conn) *client {
	c := &client{conn: conn, pending: map[uint64]chan wire.Reply{}}
	go c.read()
	return c
}

func (c *client) read() {
	r := bufio.NewReaderSize(c.conn, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			c.mu.Lock()
			c.err = fmt.Errorf("agent connection: %w", err)
			for id, ch := range c.pending {
				close(ch)
				delete(c.pending, id)
			}
			c.mu.Unlock()
			return
		}
		var rep wire.Reply
		if json.Unmarshal(line, &rep) != nil {
			continue // console noise or a torn line: not a reply
		}
		c.mu.Lock()
		ch := c.pending[rep.ID]
		delete(c.pending, rep.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

func (c *client) call(ctx context.Context, req wire.Request) (wire.Reply, error) {
	ch := make(chan wire.Reply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return wire.Reply{}, c.err
	}
	c.next++
	req.ID = c.next
	c.pending[req.ID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, req.ID)
		c.mu.Unlock()
	}()
	b, err := json.Marshal(req)
	if err != nil {
		return wire.Reply{}, err
	}
	c.wmu.Lock()
	_, err = c.conn.Write(append(b, '\n'))
	c.wmu.Unlock()
	if err != nil {
		return wire.Reply{}, err
	}
	select {
	case rep, ok := <-ch:
		if !ok {
			c.mu.Lock()
			defer c.mu.Unlock()
			return wire.Reply{}, c.err
		}
		return rep, nil
	case <-ctx.Done():
		return wire.Reply{}, ctx.Err()
	}
}

func (c *client) close() { c.conn.Close() }
