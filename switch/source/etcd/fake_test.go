package etcd

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"time"
)

// fakeStore is the Store contract in memory, for unit tests: revisions, a
// history the watches replay, compaction and an outage switch.
type fakeStore struct {
	keys Keys

	mu        sync.Mutex
	rev       int64
	kv        map[string]Record
	history   []Change // every revision, in order
	compacted int64    // revisions up to this one are gone
	down      bool
	watchers  []chan WatchEvent
	hosts     map[string]HostRecord
	handoffs  map[string][]byte
	handoffCh chan struct{} // closed and replaced at every PutHandoff
}

var errDown = errors.New("fake etcd: unreachable")

func newFakeStore(prefix string) *fakeStore {
	return &fakeStore{keys: Keys{prefix}, rev: 1, kv: map[string]Record{}, hosts: map[string]HostRecord{},
		handoffs: map[string][]byte{}, handoffCh: make(chan struct{})}
}

func (f *fakeStore) List(ctx context.Context) (Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return Snapshot{}, errDown
	}
	snap := Snapshot{Rev: f.rev}
	for k, r := range f.kv {
		if strings.HasPrefix(k, f.keys.Policy()) {
			snap.Records = append(snap.Records, r)
		}
	}
	sort.Slice(snap.Records, func(i, j int) bool { return snap.Records[i].Key < snap.Records[j].Key })
	return snap, nil
}

func (f *fakeStore) Watch(ctx context.Context, from int64) <-chan WatchEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan WatchEvent, 1024)
	if f.down {
		ch <- WatchEvent{Err: errDown}
		close(ch)
		return ch
	}
	if from <= f.compacted {
		ch <- WatchEvent{Compacted: true, Err: errors.New("compacted")}
		close(ch)
		return ch
	}
	for _, c := range f.history {
		if c.Rev >= from {
			ch <- WatchEvent{Changes: []Change{c}}
		}
	}
	f.watchers = append(f.watchers, ch)
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, w := range f.watchers {
			if w == ch {
				f.watchers = append(f.watchers[:i], f.watchers[i+1:]...)
				close(ch)
				return
			}
		}
	}()
	return ch
}

func (f *fakeStore) RequestProgress(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	for _, w := range f.watchers {
		w <- WatchEvent{Progress: f.rev}
	}
	return nil
}

func (f *fakeStore) Commit(ctx context.Context, base int64, ops []Op) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return 0, errDown
	}
	for _, r := range f.kv {
		if strings.HasPrefix(r.Key, f.keys.Policy()) && r.ModRev > base {
			return 0, ErrConflict
		}
	}
	if r, ok := f.kv[f.keys.Changed()]; ok && r.ModRev > base {
		return 0, ErrConflict
	}
	for _, op := range ops {
		if f.kv[op.Key].ModRev != op.ModRev {
			return 0, ErrConflict
		}
	}
	f.write(ops)
	return f.rev, nil
}

// write applies ops as one new revision and tells the watchers.
func (f *fakeStore) write(ops []Op) {
	f.rev++
	c := Change{Rev: f.rev}
	for _, op := range ops {
		if op.Value == nil {
			delete(f.kv, op.Key)
			c.Deleted = append(c.Deleted, op.Key)
		} else {
			r := Record{Key: op.Key, Value: op.Value, ModRev: f.rev}
			f.kv[op.Key] = r
			c.Put = append(c.Put, r)
		}
	}
	f.kv[f.keys.Changed()] = Record{Key: f.keys.Changed(), Value: []byte("x"), ModRev: f.rev}
	f.history = append(f.history, c)
	for _, w := range f.watchers {
		w <- WatchEvent{Changes: []Change{c}}
	}
}

// put writes one key as a client without checks would (etcdctl put).
func (f *fakeStore) put(key, value string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.write([]Op{{Key: key, Value: []byte(value)}})
	return f.rev
}

// setDown cuts every client off (and ends the watches) or lets them back.
func (f *fakeStore) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	if down {
		for _, w := range f.watchers {
			w <- WatchEvent{Err: errDown}
		}
	}
}

// compact forgets the history up to the current revision.
func (f *fakeStore) compact() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compacted = f.rev
	f.history = nil
}

func (f *fakeStore) Register(ctx context.Context, rec HostRecord) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	f.hosts[rec.Host] = rec
	return nil
}

func (f *fakeStore) Hosts(ctx context.Context) ([]HostRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errDown
	}
	var out []HostRecord
	for _, h := range f.hosts {
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out, nil
}

func (f *fakeStore) PutHandoff(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	f.handoffs[key] = value
	close(f.handoffCh)
	f.handoffCh = make(chan struct{})
	return nil
}

func (f *fakeStore) TakeHandoff(ctx context.Context, key string) ([]byte, error) {
	for {
		f.mu.Lock()
		v, ok := f.handoffs[key]
		if ok && !f.down {
			delete(f.handoffs, key)
			f.mu.Unlock()
			return v, nil
		}
		ch := f.handoffCh
		f.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(10 * time.Millisecond): // f.down may have changed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
