package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// BootTimeout bounds one guest's boot under TCG on a loaded machine.
const BootTimeout = 90 * time.Second

// Require fails the test unless QEMU, busybox-static and the guest kernel
// are there, saying how to get them; it skips only when not root, as the
// other end-to-end tests do.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("QEMU guests on TAP devices need root")
	}
	if _, err := exec.LookPath(QEMU); err != nil {
		t.Fatalf("%s not found: run `make deps` (it installs qemu-system-x86)", QEMU)
	}
	if _, _, err := kernelTree(GuestDir()); err != nil {
		t.Fatal(err)
	}
}

// TestImage builds a guest image into a temporary directory of the test.
func TestImage(t testing.TB) *Image {
	t.Helper()
	Require(t)
	img, err := BuildImage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// Boot starts a guest for the test and stops it (with every file it made)
// when the test ends, whether it passed or not.
func Boot(t testing.TB, img *Image, cfg Config) *Guest {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	g, err := New(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Kill)
	ctx, cancel := context.WithTimeout(context.Background(), BootTimeout)
	defer cancel()
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return g
}

// BootAll starts several guests at once (their boots overlap, which
// matters under TCG) and stops them when the test ends.
func BootAll(t testing.TB, img *Image, cfgs ...Config) []*Guest {
	t.Helper()
	guests := make([]*Guest, len(cfgs))
	for i, cfg := range cfgs {
		if cfg.Dir == "" {
			cfg.Dir = t.TempDir()
		}
		g, err := New(img, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Kill)
		guests[i] = g
	}
	ctx, cancel := context.WithTimeout(context.Background(), BootTimeout)
	defer cancel()
	errs := make(chan error, len(guests))
	for _, g := range guests {
		go func() { errs <- g.Start(ctx) }()
	}
	var failed []error
	for range guests {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		t.Fatal(errors.Join(failed...))
	}
	return guests
}

// WaitLink waits until the link name exists in the namespace handle h
// (zero: the caller's) and returns it.
func WaitLink(h *netlink.Handle, name string, timeout time.Duration) (netlink.Link, error) {
	deadline := time.Now().Add(timeout)
	for {
		l, err := h.LinkByName(name)
		if err == nil {
			return l, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("link %s did not appear within %v: %w", name, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
