// Package benchproc holds the process and namespace helpers the bench
// programs share (bench-flood, soak): running commands with timeouts,
// background processes whose output can be waited on, and cleanups that run
// in reverse order.
package benchproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func IPNS(ns string, argv ...string) []string {
	return append([]string{"ip", "netns", "exec", ns}, argv...)
}

func NSExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

func LinkExists(name string) bool {
	_, err := os.Stat(filepath.Join("/sys/class/net", name))
	return err == nil
}

// run runs argv to completion within timeout and returns its stdout.
func Run(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	switch {
	case err == nil:
		return out.String(), nil
	case ctx.Err() != nil:
		return out.String(), fmt.Errorf("%s: interrupted", strings.Join(argv, " "))
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return out.String(), fmt.Errorf("%s: timed out after %s", strings.Join(argv, " "), timeout)
	}
	msg := strings.TrimSpace(errb.String() + " " + out.String())
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, msg)
}

// cleanups run in reverse order of registration.
type Cleanups struct {
	mu  sync.Mutex
	fns []func() error
}

func (c *Cleanups) Add(fn func() error) {
	c.mu.Lock()
	c.fns = append(c.fns, fn)
	c.mu.Unlock()
}

func (c *Cleanups) Run() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		if err := c.fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.fns = nil
	return errors.Join(errs...)
}

// proc is a background process whose stdout is kept line by line.
type Proc struct {
	desc   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	stderr bytes.Buffer
	emu    sync.Mutex
	notify chan struct{}
	exited chan struct{}
	err    error
}

type lockedWriter struct{ p *Proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.emu.Lock()
	defer w.p.emu.Unlock()
	if w.p.stderr.Len() < 1<<20 {
		w.p.stderr.Write(b)
	}
	return len(b), nil
}

func (p *Proc) ErrText() string {
	p.emu.Lock()
	defer p.emu.Unlock()
	s := strings.TrimSpace(p.stderr.String())
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// start starts argv in its own process group (so that Ctrl-C reaches only
// the benchmark, which stops it in order); it gets SIGKILL if we die.
func Start(desc string, argv ...string) (*Proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{desc: desc, cmd: cmd, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	cmd.Stderr = lockedWriter{p}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", desc, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		}
		_, _ = io.Copy(io.Discard, out)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *Proc) Output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// waitLine waits for a stdout line starting with prefix.
func (p *Proc) WaitLine(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, l := range p.Output() {
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		}
		select {
		case <-p.notify:
		case <-p.exited:
			for _, l := range p.Output() {
				if strings.HasPrefix(l, prefix) {
					return l, nil
				}
			}
			return "", fmt.Errorf("%s ended (%v) before printing %q: %s", p.desc, p.err, prefix, p.ErrText())
		case <-deadline.C:
			return "", fmt.Errorf("%s: no %q line within %s: %s", p.desc, prefix, timeout, p.ErrText())
		case <-ctx.Done():
			return "", fmt.Errorf("%s: interrupted", p.desc)
		}
	}
}

// wait waits for the process to end by itself.
func (p *Proc) Wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.exited:
		if p.err != nil {
			return fmt.Errorf("%s failed (%v): %s", p.desc, p.err, p.ErrText())
		}
		return nil
	case <-time.After(timeout):
		p.Stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("%s: did not finish within %s", p.desc, timeout)
	case <-ctx.Done():
		return fmt.Errorf("%s: interrupted", p.desc)
	}
}

// stop sends sig, waits up to grace, then kills. It reports whether the
// process ended within grace.
func (p *Proc) Stop(sig syscall.Signal, grace time.Duration) bool {
	select {
	case <-p.exited:
		return true
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return true
	case <-time.After(grace):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
	}
	return false
}

func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func LastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Err is how the process ended (nil while it runs, or after a clean exit).
func (p *Proc) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Desc is the description the process was started with.
func (p *Proc) Desc() string { return p.desc }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }
