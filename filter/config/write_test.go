package config

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sgswitch.yaml")

	check := func(path, want string, mode os.FileMode) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil || string(data) != want {
			t.Errorf("%s holds %q (%v), want %q", path, data, err, want)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v (%v), want %v", path, fi.Mode().Perm(), err, mode)
		}
	}

	if err := WriteFileAtomic(path, []byte("one\n")); err != nil {
		t.Fatal(err)
	}
	check(path, "one\n", 0o644)

	// Replacing keeps the permissions the operator gave the file.
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, []byte("two\n")); err != nil {
		t.Fatal(err)
	}
	check(path, "two\n", 0o600)

	// A symbolic link is followed: the link stays, its target changes.
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink("sgswitch.yaml", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(link, []byte("three\n")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer a symbolic link", link)
	}
	check(path, "three\n", 0o600)

	// No temporary file is left behind.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only sgswitch.yaml and link.yaml", names)
	}

	if err := WriteFileAtomic(filepath.Join(dir, "missing", "x.yaml"), []byte("x")); err == nil {
		t.Errorf("writing into a missing directory succeeded")
	}
}
