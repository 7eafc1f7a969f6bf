// Package source holds what every source of policy shares. A source is
// anything that changes the configuration a switch enforces: the file (read
// at start and on SIGHUP), the control API (switch/source/control), the etcd
// sync of a cluster. They all end in the switch's compile-and-swap
// (vswitch.Switch.ApplyAt) and go through one Writer, which serialises
// them: a change reads the configuration in force, checks and edits it, and
// puts it in force with nothing else slipping in between.
//
// The datapath (package vswitch, directory switch) knows nothing of where a
// configuration comes from; the sources know nothing of frames.
package source

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

// StagedWrite is a configuration file written aside (synced), waiting to be
// renamed into place.
type StagedWrite interface {
	// Commit renames the file into place; renamed is false when the
	// file still holds the previous configuration. An error with renamed
	// true is a failed sync of the directory: the new file is in place.
	Commit() (renamed bool, err error)
	// Abort removes the staged file; the configuration file is untouched.
	Abort()
}

// StageFunc writes data aside for the configuration file at path.
type StageFunc func(path string, data []byte) (StagedWrite, error)

// StageConfigFile is the real StageFunc: config.StageFileAtomic.
func StageConfigFile(path string, data []byte) (StagedWrite, error) {
	st, err := config.StageFileAtomic(path, data)
	if err != nil {
		return nil, err
	}
	return st, nil
}

// Remote is a store of policy shared with other hosts (etcd): a change
// through the control API is written there, and comes back to every host,
// this one included, through its sync loop.
type Remote interface {
	// Snapshot is the configuration in force and the store's revision it
	// was built from, read together.
	Snapshot() (*config.Config, uint64)
	// Commit writes the change from cur (in force, at version) to next to
	// the store in one transaction, refused with ErrStale when the store
	// moved since version, and waits until this host applied it; it
	// returns the store's new revision.
	Commit(ctx context.Context, cur, next *config.Config, version uint64) (uint64, error)
	// ClusterStatus is the sync's state, for GET /v1/stats.
	ClusterStatus() any
	// ClusterHosts lists the hosts sharing the store, for GET /v1/hosts.
	ClusterHosts(ctx context.Context) (any, error)
}

// ErrStale is a change refused because the policy moved since the version
// it was based on (vswitch.ErrStale for the switch's own versions).
var ErrStale = errors.New("the policy changed since the version this change is based on")

// Writer is the one way into a switch's configuration: every source of
// policy takes its lock for the whole of a change (read, check, write back,
// apply).
type Writer struct {
	sw    *vswitch.Switch
	log   *slog.Logger
	stage StageFunc
	mu    sync.Mutex

	remote Remote // nil: the file is the policy
}

// Options tunes a Writer; the zero value writes the configuration file back
// with StageConfigFile and logs nowhere.
type Options struct {
	Logger *slog.Logger
	// Stage replaces the staged write of the configuration file (tests
	// inject failures).
	Stage StageFunc
}

// NewWriter is the writer of sw's configuration. A switch has one.
func NewWriter(sw *vswitch.Switch, opt Options) *Writer {
	w := &Writer{sw: sw, log: opt.Logger, stage: opt.Stage}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if w.stage == nil {
		w.stage = StageConfigFile
	}
	return w
}

// SetRemote makes r the policy's store: changes go there instead of to the
// configuration file, and versions are r's revisions. Set before serving.
func (w *Writer) SetRemote(r Remote) { w.remote = r }

// Remote is the policy's store, nil when the file is the policy.
func (w *Writer) Remote() Remote { return w.remote }

// Snapshot is the configuration in force and its version (the switch's, or
// the store's revision in a cluster), read together.
func (w *Writer) Snapshot() (*config.Config, uint64) {
	if w.remote != nil {
		return w.remote.Snapshot()
	}
	return w.sw.Snapshot()
}

// Version is the version of the configuration in force.
func (w *Writer) Version() uint64 {
	_, v := w.Snapshot()
	return v
}

// Switch is the switch the writer changes.
func (w *Writer) Switch() *vswitch.Switch { return w.sw }

// Logger is where changes are logged.
func (w *Writer) Logger() *slog.Logger { return w.log }

// Stage writes data aside for the configuration file at path, to be renamed
// into place once the change is in force.
func (w *Writer) Stage(path string, data []byte) (StagedWrite, error) { return w.stage(path, data) }

// Lock takes the change lock: no other source changes the configuration
// until Unlock.
func (w *Writer) Lock() { w.mu.Lock() }

// Unlock releases the change lock.
func (w *Writer) Unlock() { w.mu.Unlock() }

// ReloadFile re-reads the configuration file at path and puts it in force
// (the SIGHUP reload), serialised with the other sources: a change is never
// half-way between checking and writing the file while a reload reads it,
// and a change based on the configuration before a reload fails as stale
// instead of undoing the reload. Nothing changes on error.
func (w *Writer) ReloadFile(path string) (*config.Config, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := w.sw.Apply(cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}
