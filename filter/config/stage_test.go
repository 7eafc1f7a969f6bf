package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStageFileAtomic: until Commit the destination keeps its old content;
// Commit puts the new one in place with the old permissions; Abort leaves
// nothing behind.
func TestStageFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	read := func() string {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	entries := func() int {
		es, _ := os.ReadDir(dir)
		return len(es)
	}

	st, err := StageFileAtomic(path, []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if read() != "old" || entries() != 2 {
		t.Fatalf("before Commit: %q, %d files", read(), entries())
	}
	if renamed, err := st.Commit(); !renamed || err != nil {
		t.Fatalf("Commit: %v %v", renamed, err)
	}
	if fi, _ := os.Stat(path); read() != "new" || fi.Mode().Perm() != 0o600 || entries() != 1 {
		t.Fatalf("after Commit: %q %v, %d files", read(), fi.Mode(), entries())
	}
	if renamed, err := st.Commit(); renamed || err == nil {
		t.Error("second Commit succeeded")
	}
	st.Abort() // after Commit: nothing

	st, err = StageFileAtomic(path, []byte("newer"))
	if err != nil {
		t.Fatal(err)
	}
	st.Abort()
	if read() != "new" || entries() != 1 {
		t.Fatalf("after Abort: %q, %d files", read(), entries())
	}

	// A symbolic link is followed: the link stays, its target changes.
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	st, err = StageFileAtomic(link, []byte("via link"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commit(); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&os.ModeSymlink == 0 || read() != "via link" {
		t.Errorf("link replaced or target unchanged: %v %q", fi.Mode(), read())
	}

	// A directory that does not exist: nothing staged.
	if _, err := StageFileAtomic(filepath.Join(dir, "no", "c.yaml"), nil); err == nil {
		t.Error("staged into a missing directory")
	}
}
