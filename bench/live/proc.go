package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cmdline renders argv for messages.
func cmdline(argv []string) string { return strings.Join(argv, " ") }

// run runs argv to completion within timeout and returns its stdout. The
// error names the command, its exit and its stderr, or says it timed out or
// was interrupted.
func run(ctx context.Context, timeout time.Duration, argv ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	if verbose {
		logf("$ %s", cmdline(argv))
	}
	err := cmd.Run()
	switch {
	case err == nil:
		return out.String(), nil
	case ctx.Err() != nil:
		return out.String(), fmt.Errorf("%s: interrupted", cmdline(argv))
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return out.String(), fmt.Errorf("%s: timed out after %s", cmdline(argv), timeout)
	}
	msg := strings.TrimSpace(errb.String())
	if msg == "" {
		msg = strings.TrimSpace(out.String())
	}
	if len(msg) > 2000 {
		msg = msg[len(msg)-2000:]
	}
	return out.String(), fmt.Errorf("%s: %w: %s", cmdline(argv), err, msg)
}

// proc is a background process: its stdout is kept line by line, its stderr
// in a buffer, and it is stopped with a signal and a grace period.
type proc struct {
	desc   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string
	stderr syncBuffer
	notify chan struct{}
	exited chan struct{}
	err    error // of Wait, valid after exited
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start starts argv in the background. ownGroup puts it in its own process
// group, so that a Ctrl-C on the terminal reaches only the benchmark, which
// then stops it in order. The process gets deathSig if the benchmark dies.
func start(desc string, ownGroup bool, deathSig syscall.Signal, argv ...string) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: ownGroup, Pdeathsig: deathSig}
	p := &proc{desc: desc, cmd: cmd, notify: make(chan struct{}, 1), exited: make(chan struct{})}
	cmd.Stderr = &p.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if verbose {
		logf("$ %s &", cmdline(argv))
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: start %s: %w", desc, cmdline(argv), err)
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

// output is everything the process printed on stdout so far.
func (p *proc) output() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// failure describes an unexpected exit with the end of stderr.
func (p *proc) failure(what string) error {
	msg := strings.TrimSpace(p.stderr.String())
	if len(msg) > 2000 {
		msg = "..." + msg[len(msg)-2000:]
	}
	if msg == "" {
		msg = "(no output on stderr)"
	}
	return fmt.Errorf("%s %s (%v):\n%s", p.desc, what, p.err, msg)
}

// waitLine waits for a stdout line starting with prefix.
func (p *proc) waitLine(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		lines := p.output()
		for _, l := range lines[seen:] {
			if strings.HasPrefix(l, prefix) {
				return l, nil
			}
		}
		seen = len(lines)
		select {
		case <-p.notify:
		case <-p.exited:
			// Drain lines printed right before exiting.
			for _, l := range p.output()[seen:] {
				if strings.HasPrefix(l, prefix) {
					return l, nil
				}
			}
			return "", p.failure("ended before printing " + strconvQuote(prefix))
		case <-deadline.C:
			return "", fmt.Errorf("%s: no %q line within %s; stderr:\n%s", p.desc, prefix, timeout, strings.TrimSpace(p.stderr.String()))
		case <-ctx.Done():
			return "", fmt.Errorf("%s: interrupted", p.desc)
		}
	}
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// wait waits for the process to end by itself within timeout.
func (p *proc) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-p.exited:
		if p.err != nil {
			return p.failure("failed")
		}
		return nil
	case <-time.After(timeout):
		p.stop(syscall.SIGKILL, time.Second)
		return fmt.Errorf("%s: did not finish within %s", p.desc, timeout)
	case <-ctx.Done():
		return fmt.Errorf("%s: interrupted", p.desc)
	}
}

// stop sends sig and waits up to grace, then kills the process. It reports
// whether the process ended within grace.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) bool {
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

// running reports whether the process is still alive.
func (p *proc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}
