package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// StagedFile is WriteFileAtomic cut in two: the new content is already in a
// synced temporary file next to the destination, and Commit renames it into
// place. Between the two a caller can do what must happen only if the write
// can happen (the control API puts a configuration in force there), so that
// a full disk refuses a change before anything changed. Whatever happens in
// between, the destination holds the old content or, after Commit, the new
// one — never a mix.
type StagedFile struct {
	tmp, path, dir string
	done           bool
}

// StageFileAtomic writes data to a temporary file in the directory of path
// (following a symbolic link at path, keeping the file's permissions, 0644
// for a new file, as WriteFileAtomic does) and syncs it. The caller must call
// Commit or Abort.
func StageFileAtomic(path string, data []byte) (*StagedFile, error) {
	mode := fs.FileMode(0o644)
	if target, err := filepath.EvalSymlinks(path); err == nil {
		path = target
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := writeSynced(tmp, data, mode); err != nil {
		os.Remove(tmp.Name())
		return nil, err
	}
	return &StagedFile{tmp: tmp.Name(), path: path, dir: dir}, nil
}

// Commit renames the staged file over the destination and syncs the
// directory. renamed reports whether the new content is in place: when it is
// false the destination still holds the old content (and the temporary file
// is gone); when it is true but err is set, only making the rename durable
// (the directory sync) failed.
func (s *StagedFile) Commit() (renamed bool, err error) {
	if s.done {
		return false, errors.New("staged file already committed or aborted")
	}
	s.done = true
	if err := os.Rename(s.tmp, s.path); err != nil {
		os.Remove(s.tmp)
		return false, err
	}
	return true, syncDir(s.dir)
}

// Abort removes the staged file; the destination keeps its old content.
// Calling it after Commit does nothing.
func (s *StagedFile) Abort() {
	if !s.done {
		s.done = true
		os.Remove(s.tmp)
	}
}
