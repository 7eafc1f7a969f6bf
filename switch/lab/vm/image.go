package vm

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultGuestDir is where `make deps` unpacks (dpkg-deb -x, not installed)
// the kernel package that Debian's linux-image-cloud-amd64 depends on.
// SGSWITCH_GUEST_DIR overrides it.
const DefaultGuestDir = "/var/cache/sgswitch/guest"

// Busybox is busybox-static's binary, copied into every guest.
const Busybox = "/bin/busybox"

// guestModules are the modules a guest needs besides what the cloud kernel
// builds in: the virtio PCI transport, virtio-net and virtio-serial (the
// agent's channel). Their dependencies are found and loaded first.
var guestModules = []string{"virtio_pci", "virtio_net", "virtio_console"}

// Image is a bootable guest: a kernel and an initramfs holding busybox, the
// virtio modules and the agent as /init.
type Image struct {
	Kernel    string
	Initramfs string
}

// GuestDir is the directory that holds the unpacked kernel package.
func GuestDir() string {
	if d := os.Getenv("SGSWITCH_GUEST_DIR"); d != "" {
		return d
	}
	return DefaultGuestDir
}

// kernelTree finds the kernel image and its module directory under dir.
func kernelTree(dir string) (kernel, modules string, err error) {
	kernels, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(kernels) == 0 {
		return "", "", fmt.Errorf("no kernel under %s/boot: run `make deps` (it unpacks linux-image-cloud-amd64's kernel there), or set SGSWITCH_GUEST_DIR", dir)
	}
	sort.Strings(kernels)
	kernel = kernels[len(kernels)-1]
	version := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	modules = filepath.Join(dir, "lib", "modules", version)
	if _, err := os.Stat(modules); err != nil {
		return "", "", fmt.Errorf("kernel %s has no modules: %w", kernel, err)
	}
	return kernel, modules, nil
}

// moduleDeps reads a module's "depends=" entry from its .modinfo section
// (the package carries no modules.dep: depmod runs only when it is installed).
func moduleDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}

// moduleOrder lists the files of wanted and of everything they depend on,
// each after its dependencies (virtio_ring before virtio before virtio_pci).
func moduleOrder(modDir string, wanted []string) ([]string, error) {
	byName := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			name := strings.TrimSuffix(d.Name(), ".ko")
			byName[strings.ReplaceAll(name, "-", "_")] = p
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string) error
	visit = func(name string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s depends on itself", name)
		case 2:
			return nil
		}
		path, ok := byName[name]
		if !ok {
			return fmt.Errorf("module %s not found under %s", name, modDir)
		}
		state[name] = 1
		deps, err := moduleDeps(path)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(strings.ReplaceAll(d, "-", "_")); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, path)
		return nil
	}
	for _, w := range wanted {
		if err := visit(w); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// udhcpcScript configures what busybox udhcpc obtained ($mask is the prefix length).
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	if [ -n "$router" ]; then ip route replace default via "${router%% *}" dev "$interface"; fi
	;;
esac
exit 0
`

// BuildImage builds the agent (CGO_ENABLED=0, with the go command on PATH)
// and writes an initramfs into dir; the kernel comes from GuestDir.
func BuildImage(dir string) (*Image, error) {
	kernel, modDir, err := kernelTree(GuestDir())
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(Busybox); err != nil {
		return nil, fmt.Errorf("%s: %w (install busybox-static: `make deps`)", Busybox, err)
	}
	mods, err := moduleOrder(modDir, guestModules)
	if err != nil {
		return nil, err
	}
	agent := filepath.Join(dir, "agent")
	build := exec.Command("go", "build", "-trimpath", "-o", agent, "github.com/sgswitch/sgswitch/switch/lab/vm/agent")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the guest agent: %v\n%s", err, out)
	}
	img := &Image{Kernel: kernel, Initramfs: filepath.Join(dir, "initramfs.cpio")}
	f, err := os.Create(img.Initramfs)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(f)
	c := &cpioWriter{w: w, ino: 1}
	for _, d := range []string{"bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "run"} {
		c.dir(d)
	}
	c.char("dev/console", 5, 1)
	c.fileFrom("init", agent, 0o755)
	c.fileFrom("bin/busybox", Busybox, 0o755)
	for _, l := range []string{"sh", "ip", "ping", "udhcpc"} {
		c.symlink("bin/"+l, "busybox")
	}
	c.file("etc/udhcpc.sh", []byte(udhcpcScript), 0o755)
	var list strings.Builder
	for i, m := range mods {
		name := fmt.Sprintf("lib/modules/%02d-%s", i, filepath.Base(m))
		c.fileFrom(name, m, 0o644)
		fmt.Fprintf(&list, "/%s\n", name)
	}
	c.file("lib/modules/load.list", []byte(list.String()), 0o644)
	c.trailer()
	err = errors.Join(c.err, w.Flush(), f.Close())
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", img.Initramfs, err)
	}
	return img, nil
}

// cpioWriter writes the "newc" cpio format the kernel unpacks as initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst).
type cpioWriter struct {
	w   io.Writer
	ino int
	n   int64
	err error
}

func (c *cpioWriter) entry(name string, mode uint32, rdevMajor, rdevMinor int, data []byte) {
	if c.err != nil {
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string) { c.entry(name, 0o040755, 0, 0, nil) }
func (c *cpioWriter) char(name string, major, minor int) {
	c.entry(name, 0o020600, major, minor, nil)
}
func (c *cpioWriter) symlink(name, target string) { c.entry(name, 0o120777, 0, 0, []byte(target)) }
func (c *cpioWriter) file(name string, data []byte, perm uint32) {
	c.entry(name, 0o100000|perm, 0, 0, data)
}
func (c *cpioWriter) fileFrom(name, src string, perm uint32) {
	data, err := os.ReadFile(src)
	if err != nil && c.err == nil {
		c.err = err
	}
	c.file(name, data, perm)
}
func (c *cpioWriter) trailer() { c.entry("TRAILER!!!", 0, 0, 0, nil) }
