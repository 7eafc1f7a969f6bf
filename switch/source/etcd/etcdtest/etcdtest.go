// Package etcdtest runs a real etcd cluster of several members on loopback
// for the tests and the lab: etcd server processes (Debian's etcd-server,
// installed by make deps), each started, stopped and killed on demand.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Binary is the etcd server the cluster runs.
var Binary = "etcd"

// Available reports whether an etcd server binary is installed.
func Available() error {
	if _, err := exec.LookPath(Binary); err != nil {
		return fmt.Errorf("no etcd server (%s): install Debian's etcd-server (make deps): %w", Binary, err)
	}
	return nil
}

// Cluster is a running etcd cluster.
type Cluster struct {
	Dir     string
	Members []*Member
	opts    Options
}

// Member is one etcd server of the cluster.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dir       string
	cmd       *exec.Cmd
	done      chan struct{}
	args      []string
	log       *os.File
}

// Options tune a cluster.
type Options struct {
	// Name prefixes the members' names (and the data directories).
	Name string
	// MaxTxnOps is etcd's --max-txn-ops (0: etcd's default, 128).
	MaxTxnOps int
	// ProgressNotify is the interval of the watches' progress notifications (0: 1s).
	ProgressNotify time.Duration
	// Host is the address the members listen on (default 127.0.0.1).
	Host string
	// Ports, when set, are the members' client and peer ports in pairs,
	// else free ones are picked.
	Ports []int
}

// Start starts an n-member cluster with its data under dir (on tmpfs when
// dir is "": the tests' etcd needs no durability, and fsync on a busy disk
// makes every write slow) and waits until it has a leader.
func Start(dir string, n int, opts Options) (*Cluster, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = "etcd"
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.ProgressNotify == 0 {
		opts.ProgressNotify = time.Second
	}
	if dir == "" {
		base := ""
		if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
			base = "/dev/shm"
		}
		var err error
		if dir, err = os.MkdirTemp(base, opts.Name+"-"); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, opts: opts}
	var initial []string
	for i := 0; i < n; i++ {
		var cp, pp int
		if len(opts.Ports) >= 2*(i+1) {
			cp, pp = opts.Ports[2*i], opts.Ports[2*i+1]
		} else {
			var err error
			if cp, err = freePort(opts.Host); err != nil {
				return nil, err
			}
			if pp, err = freePort(opts.Host); err != nil {
				return nil, err
			}
		}
		m := &Member{Name: fmt.Sprintf("%s%d", opts.Name, i), ClientURL: fmt.Sprintf("http://%s:%d", opts.Host, cp),
			PeerURL: fmt.Sprintf("http://%s:%d", opts.Host, pp)}
		m.dir = filepath.Join(dir, m.Name)
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{"--name", m.Name, "--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", opts.Name,
			"--experimental-watch-progress-notify-interval", opts.ProgressNotify.String(),
			"--heartbeat-interval", "100", "--election-timeout", "1000",
			"--logger", "zap", "--log-outputs", filepath.Join(dir, m.Name+".log")}
		if opts.MaxTxnOps > 0 {
			m.args = append(m.args, "--max-txn-ops", fmt.Sprint(opts.MaxTxnOps))
		}
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitHealthy(30 * time.Second); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

// Client is a client of the whole cluster (the caller closes it).
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// WaitHealthy waits until every running member answers a linearizable read.
func (c *Cluster) WaitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		for {
			err := m.healthy()
			if err == nil {
				break
			}
			if !m.Running() {
				log, _ := os.ReadFile(filepath.Join(c.Dir, m.Name+".log"))
				return fmt.Errorf("etcd member %s exited: %s", m.Name, tail(string(log), 2000))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("etcd member %s not healthy after %v: %w (log: %s)", m.Name, timeout, err, filepath.Join(c.Dir, m.Name+".log"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (m *Member) healthy() error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "health")
	return err
}

// Start starts a member (again, after Stop or Kill, with its data).
func (m *Member) Start() error {
	if m.Running() {
		return nil
	}
	cmd := exec.Command(Binary, m.args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd member %s: %w", m.Name, err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait()
		close(done)
	}(cmd, m.done)
	return nil
}

// Running reports whether the member's process runs.
func (m *Member) Running() bool {
	if m.done == nil {
		return false
	}
	select {
	case <-m.done:
		return false
	default:
		return true
	}
}

// Stop stops the member (SIGTERM, then SIGKILL after 5s) and waits for it.
func (m *Member) Stop() { m.signal(syscall.SIGTERM) }

// Kill kills the member at once, as a crash would.
func (m *Member) Kill() { m.signal(syscall.SIGKILL) }

func (m *Member) signal(sig syscall.Signal) {
	if !m.Running() {
		return
	}
	m.cmd.Process.Signal(sig)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.done
	}
}

// Stop stops every member and removes the data.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
	}
	os.RemoveAll(c.Dir)
}

// Compact compacts the cluster's history up to its current revision.
func (c *Cluster) Compact(ctx context.Context) (int64, error) {
	cli, err := c.Client()
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, "compact-probe")
	if err != nil {
		return 0, err
	}
	rev := resp.Header.Revision
	_, err = cli.Compact(ctx, rev, clientv3.WithCompactPhysical())
	return rev, err
}

// MemoryRSS is the sum of the running members' resident memory, in bytes.
func (c *Cluster) MemoryRSS() (int64, error) {
	var total int64
	for _, m := range c.Members {
		if !m.Running() {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
		if err != nil {
			return 0, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				var kb int64
				fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
				total += kb * 1024
			}
		}
	}
	if total == 0 {
		return 0, errors.New("no running member")
	}
	return total, nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
