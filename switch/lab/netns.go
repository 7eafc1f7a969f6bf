package lab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// runDir is where named network namespaces live, as iproute2 keeps them.
const runDir = "/run/netns"

// errExists marks a namespace that is already there; Up refuses to reuse one
// because it cannot tell a stale lab from somebody else's namespace.
var errExists = errors.New("exists")

// nsPath is the bind-mount file of the named namespace.
func nsPath(name string) string { return filepath.Join(runDir, name) }

// checkName refuses names that are not a single file name in runDir: a name
// is joined to a path that Down unmounts and removes.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return fmt.Errorf("%q cannot name a network namespace: use a non-empty name without '/'", name)
	}
	return nil
}

// nsExists reports whether the named namespace file is present.
func nsExists(name string) (bool, error) {
	_, err := os.Stat(nsPath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// prepareRunDir makes runDir a shared mount point, as `ip netns add` does, so
// that unmounting a namespace file here also unmounts it in mount namespaces
// that were copied from this one and the namespace is really freed.
func prepareRunDir() error {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", runDir, err)
	}
	err := unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one by binding it onto itself.
		if err = unix.Mount(runDir, runDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", runDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", runDir, err)
	}
	return nil
}

// createNamed creates a new network namespace and pins it at nsPath(name).
func createNamed(name string) error {
	path := nsPath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if errors.Is(err, fs.ErrExist) {
		return errExists
	}
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// unshare moves the calling thread into the new namespace; the thread
		// comes back before it is unlocked. Letting the runtime discard it
		// instead is not enough: when it is the main thread, the runtime
		// parks it for good, still in the namespace, which then never dies.
		runtime.LockOSThread()
		origin, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("read the current namespace: %w", err)
			return
		}
		defer origin.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		err = unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind-mount onto %s: %w", path, err)
		}
		if serr := netns.Set(origin); serr != nil {
			// Stays locked: the thread is stuck in the new namespace, and
			// the runtime must not run other goroutines on it. It retires
			// the thread when this goroutine ends.
			errc <- errors.Join(err, fmt.Errorf("return to the original namespace: %w", serr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		removeNamed(name)
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// removeNamed unpins the named namespace like `ip netns del`: the namespace
// itself goes away once nothing else (a process, a socket) holds it. A
// missing namespace is not an error.
func removeNamed(name string) error {
	path := nsPath(name)
	// EINVAL: the file exists but nothing is mounted on it (a create that
	// was interrupted); the file is still removed below.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete namespace %s: unmount %s: %w", name, path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	return nil
}

// openNamed opens a handle on the named namespace.
func openNamed(name string) (netns.NsHandle, error) {
	h, err := netns.GetFromPath(nsPath(name))
	if err != nil {
		return h, fmt.Errorf("open namespace %s: %w (is the lab up?)", name, err)
	}
	return h, nil
}
