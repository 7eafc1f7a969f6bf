// Package etcd is the cluster's source of policy (SPEC §9): the security
// groups and instances of every host kept in etcd, one key each, and the
// loop on each host that lists them, watches them and puts each revision in
// force with the switch's compile-and-swap.
//
// Keys, under the configured prefix P:
//
//	P/policy/security-groups/NAME   a group: the YAML of its entry in the file
//	P/policy/instances/NAME         an instance, with its host
//	P/meta/changed                  written by every change this package makes (see Commit)
//	P/hosts/HOST                    a host's registration, under its lease: JSON HostRecord
//	P/handoff/HOST/INSTANCE         the tracked connections of an instance that moved to HOST,
//	                                written by the host it left, under a lease of its own (handoff.go)
//
// Desired state is never leased; only the hosts' registrations and the
// hand-offs are.
// Membership is not stored: it is the instances' security-groups lists.
package etcd

import (
	"context"
	"errors"
	"strings"
	"time"
)

// Record is one key of the policy and its value.
type Record struct {
	Key    string // the full key
	Value  []byte
	ModRev int64 // revision of its last change
}

// Snapshot is the whole policy at one revision.
type Snapshot struct {
	Rev     int64
	Records []Record // sorted by key
}

// Change is what one revision changed (one transaction's puts and deletes).
type Change struct {
	Rev     int64
	Put     []Record
	Deleted []string
}

// WatchEvent is one answer of a watch: the changes of whole revisions, a
// progress notification (Progress > 0: every revision up to it has been
// sent), or the end of the watch (Err; Compacted when the revision asked
// for is gone and only a new list can continue).
type WatchEvent struct {
	Changes   []Change
	Progress  int64
	Err       error
	Compacted bool
}

// HostRecord is what a host registers about itself under its lease.
type HostRecord struct {
	Host    string `json:"host"`
	Applied int64  `json:"applied-revision"` // the policy revision it enforces
	Since   string `json:"since"`            // when it started (RFC 3339)
	Error   string `json:"error,omitempty"`  // why the newest revision was refused, when it was
	Live    bool   `json:"live"`             // registered: its lease is alive (set by the reader)
}

// Op is one write of a Commit: a put of Value, or a delete when Value is nil.
type Op struct {
	Key   string
	Value []byte
	// ModRev is the key's revision the change was based on (0: the key did
	// not exist); the commit fails if the key moved since.
	ModRev int64
}

// ErrConflict is Commit's answer when the policy changed since the
// revision the change was based on.
var ErrConflict = errors.New("the policy in etcd changed since the revision this change is based on")

// Store is etcd as the sync loop and the writers see it. Client is the
// real one; the tests' fake keeps the same contract in memory.
type Store interface {
	// List reads every policy key at the current revision.
	List(ctx context.Context) (Snapshot, error)
	// Watch streams the policy's changes from revision from on, until
	// ctx ends or the watch fails (its last event then carries Err).
	Watch(ctx context.Context, from int64) <-chan WatchEvent
	// RequestProgress asks the watch for a progress notification.
	RequestProgress(ctx context.Context) error
	// Commit writes ops in one transaction that succeeds only if nothing
	// of the policy changed after revision base and each key is still at
	// its Op's ModRev; it returns the new revision, or ErrConflict.
	Commit(ctx context.Context, base int64, ops []Op) (int64, error)
	// Register writes this host's record under a lease kept alive until
	// ctx ends; later calls update the record under the same lease.
	Register(ctx context.Context, rec HostRecord) error
	// Hosts lists the registered hosts (those whose lease is alive).
	Hosts(ctx context.Context) ([]HostRecord, error)
	// PutHandoff writes value at key under a lease of its own that runs
	// out after ttl.
	PutHandoff(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// TakeHandoff waits until key exists (or ctx ends), then reads and
	// deletes it.
	TakeHandoff(ctx context.Context, key string) ([]byte, error)
}

// Keys of a prefix.
type Keys struct{ Prefix string }

func (k Keys) Policy() string              { return k.Prefix + "/policy/" }
func (k Keys) Groups() string              { return k.Prefix + "/policy/security-groups/" }
func (k Keys) Instances() string           { return k.Prefix + "/policy/instances/" }
func (k Keys) Group(name string) string    { return k.Groups() + name }
func (k Keys) Instance(name string) string { return k.Instances() + name }
func (k Keys) Hosts() string               { return k.Prefix + "/hosts/" }
func (k Keys) Host(name string) string     { return k.Hosts() + name }
func (k Keys) Changed() string             { return k.Prefix + "/meta/changed" }
func (k Keys) Handoff(host, instance string) string {
	return k.Prefix + "/handoff/" + host + "/" + instance
}
func (k Keys) isGroup(key string) bool    { return strings.HasPrefix(key, k.Groups()) }
func (k Keys) isInstance(key string) bool { return strings.HasPrefix(key, k.Instances()) }
func (k Keys) name(key string) string     { return key[strings.LastIndexByte(key, '/')+1:] }
