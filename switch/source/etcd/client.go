package etcd

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sgswitch/sgswitch/filter/config"
)

// leaseTTL is how long a host stays listed after it stops renewing its lease.
const leaseTTL = 10 // seconds

// Client is the Store of a real etcd cluster.
type Client struct {
	cli  *clientv3.Client
	keys Keys

	mu    sync.Mutex
	lease clientv3.LeaseID // this host's registration lease; 0 before Register
}

// Dial connects to the etcd cluster of c (config's cluster.etcd). It does not
// wait for the cluster: an unreachable etcd shows in the calls' errors.
func Dial(c config.ClusterEtcd) (*Client, error) {
	cfg := clientv3.Config{
		Endpoints:            c.Endpoints,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
		AutoSyncInterval:     30 * time.Second,
		Logger:               zap.NewNop(),
	}
	if c.TLS != nil {
		info := transport.TLSInfo{TrustedCAFile: c.TLS.CA, CertFile: c.TLS.Cert, KeyFile: c.TLS.Key}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("cluster.etcd.tls: %w", err)
		}
		tc.MinVersion = tls.VersionTLS12
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("cluster.etcd: %w", err)
	}
	return &Client{cli: cli, keys: Keys{c.Prefix}}, nil
}

// Close closes the connection; the host's lease then runs out.
func (c *Client) Close() error { return c.cli.Close() }

// Keys are the client's keys.
func (c *Client) Keys() Keys { return c.keys }

// Raw is the etcd client itself (tests compact and defragment with it).
func (c *Client) Raw() *clientv3.Client { return c.cli }

func (c *Client) List(ctx context.Context) (Snapshot, error) {
	resp, err := c.cli.Get(ctx, c.keys.Policy(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{Rev: resp.Header.Revision, Records: make([]Record, 0, len(resp.Kvs))}
	for _, kv := range resp.Kvs {
		snap.Records = append(snap.Records, Record{Key: string(kv.Key), Value: kv.Value, ModRev: kv.ModRevision})
	}
	return snap, nil
}

func (c *Client) Watch(ctx context.Context, from int64) <-chan WatchEvent {
	out := make(chan WatchEvent, 16)
	// WithRequireLeader: a member cut off from its quorum ends the watch
	// instead of going silent, so the loop relists through another.
	wctx := clientv3.WithRequireLeader(ctx)
	wch := c.cli.Watch(wctx, c.keys.Policy(), clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify(), clientv3.WithPrevKV())
	go func() {
		defer close(out)
		for wr := range wch {
			if wr.CompactRevision != 0 {
				out <- WatchEvent{Compacted: true, Err: fmt.Errorf("revision %d was compacted (oldest kept: %d)", from, wr.CompactRevision)}
				return
			}
			if err := wr.Err(); err != nil {
				out <- WatchEvent{Err: err}
				return
			}
			if wr.IsProgressNotify() {
				out <- WatchEvent{Progress: wr.Header.Revision}
				continue
			}
			var ev WatchEvent
			for _, e := range wr.Events {
				rev := e.Kv.ModRevision
				if n := len(ev.Changes); n == 0 || ev.Changes[n-1].Rev != rev {
					ev.Changes = append(ev.Changes, Change{Rev: rev})
				}
				ch := &ev.Changes[len(ev.Changes)-1]
				if e.Type == clientv3.EventTypeDelete {
					ch.Deleted = append(ch.Deleted, string(e.Kv.Key))
				} else {
					ch.Put = append(ch.Put, Record{Key: string(e.Kv.Key), Value: e.Kv.Value, ModRev: e.Kv.ModRevision})
				}
			}
			if len(ev.Changes) > 0 {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
		if ctx.Err() == nil {
			out <- WatchEvent{Err: errors.New("the watch ended")}
		}
	}()
	return out
}

func (c *Client) RequestProgress(ctx context.Context) error {
	return c.cli.RequestProgress(clientv3.WithRequireLeader(ctx))
}

func (c *Client) Commit(ctx context.Context, base int64, ops []Op) (int64, error) {
	cmps := []clientv3.Cmp{
		// Nothing of the policy changed after base: not the keys that
		// remain (their mod revisions) nor by a deletion (every change
		// made here also writes meta/changed).
		clientv3.Compare(clientv3.ModRevision(c.keys.Policy()).WithPrefix(), "<", base+1),
		clientv3.Compare(clientv3.ModRevision(c.keys.Changed()), "<", base+1),
	}
	var thens []clientv3.Op
	for _, op := range ops {
		if op.ModRev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.Version(op.Key), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(op.Key), "=", op.ModRev))
		}
		if op.Value == nil {
			thens = append(thens, clientv3.OpDelete(op.Key))
		} else {
			thens = append(thens, clientv3.OpPut(op.Key, string(op.Value)))
		}
	}
	thens = append(thens, clientv3.OpPut(c.keys.Changed(), time.Now().UTC().Format(time.RFC3339Nano)))
	resp, err := c.cli.Txn(ctx).If(cmps...).Then(thens...).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrTooManyOps) {
			return 0, fmt.Errorf("%w: the change touches %d keys, more than etcd's --max-txn-ops; raise it on the etcd members", err, len(ops))
		}
		return 0, err
	}
	if !resp.Succeeded {
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

func (c *Client) Register(ctx context.Context, rec HostRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	c.mu.Lock()
	lease := c.lease
	c.mu.Unlock()
	if lease != 0 {
		_, err = c.cli.Put(ctx, c.keys.Host(rec.Host), string(data), clientv3.WithLease(lease))
		if err == nil || !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return err
		}
	}
	// A new lease: the first registration, or the old one expired while
	// etcd was out of reach.
	g, err := c.cli.Grant(ctx, leaseTTL)
	if err != nil {
		return err
	}
	ka, err := c.cli.KeepAlive(context.WithoutCancel(ctx), g.ID)
	if err != nil {
		return err
	}
	go func() {
		for range ka { // drained until the lease is lost or the client closes
		}
		c.mu.Lock()
		if c.lease == g.ID {
			c.lease = 0
		}
		c.mu.Unlock()
	}()
	c.mu.Lock()
	c.lease = g.ID
	c.mu.Unlock()
	_, err = c.cli.Put(ctx, c.keys.Host(rec.Host), string(data), clientv3.WithLease(g.ID))
	return err
}

func (c *Client) Hosts(ctx context.Context) ([]HostRecord, error) {
	resp, err := c.cli.Get(ctx, c.keys.Hosts(), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, err
	}
	var out []HostRecord
	for _, kv := range resp.Kvs {
		var h HostRecord
		if err := json.Unmarshal(kv.Value, &h); err != nil {
			h = HostRecord{Host: c.keys.name(string(kv.Key)), Error: "unreadable record: " + err.Error()}
		}
		out = append(out, h)
	}
	return out, nil
}

func (c *Client) PutHandoff(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	g, err := c.cli.Grant(ctx, int64(max(ttl/time.Second, 1)))
	if err != nil {
		return err
	}
	_, err = c.cli.Put(ctx, key, string(value), clientv3.WithLease(g.ID))
	return err
}

func (c *Client) TakeHandoff(ctx context.Context, key string) ([]byte, error) {
	for {
		resp, err := c.cli.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) > 0 {
			kv := resp.Kvs[0]
			// Deleted only as read: a newer hand-off written meanwhile stays.
			c.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).Then(clientv3.OpDelete(key)).Commit()
			return kv.Value, nil
		}
		// Not there yet: wait for its put from the revision read on.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := c.cli.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterDelete())
		put := false
		for wr := range wch {
			if wr.Err() != nil {
				break
			}
			if len(wr.Events) > 0 {
				put = true
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !put {
			// The watch failed: back off a little, then read again.
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}
