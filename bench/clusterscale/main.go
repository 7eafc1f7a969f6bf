// Command clusterscale is the cluster's scale benchmark (issue 13): a real
// three-member etcd holding HOSTS×PER instances in GROUPS groups, HOSTS-1
// hosts simulated as watchers in this process (each its own client and
// watch, applying every change to its copy of the policy), and one real
// host: the sync loop and switch of `sgswitch run` (in-memory ports). It
// writes one membership change at a time and measures the time from the
// write to each host having it applied, the real host's rebuild (parse,
// check, compile, swap) and etcd's memory.
//
//	go run ./bench/clusterscale [-hosts 1000] [-instances 100000] [-groups 1000] [-writes 30] [-state]
//
// With -state the real host keeps its state file (cluster.state, in a
// temporary directory) as `sgswitch run` does, and the write of it after
// each revision is reported.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/source"
	etcdsrc "github.com/sgswitch/sgswitch/switch/source/etcd"
	"github.com/sgswitch/sgswitch/switch/source/etcd/etcdtest"
)

func main() {
	hosts := flag.Int("hosts", 1000, "hosts: one real, the others simulated watchers")
	instances := flag.Int("instances", 100000, "instances, spread evenly over the hosts")
	groups := flag.Int("groups", 1000, "security groups")
	writes := flag.Int("writes", 30, "membership writes measured")
	clients := flag.Int("clients", 0, "etcd clients the simulated hosts share (0: one each)")
	state := flag.Bool("state", false, "the real host keeps its state file, as sgswitch run does")
	flag.Parse()
	if err := run(*hosts, *instances, *groups, *writes, *clients, *state); err != nil {
		log.Fatal(err)
	}
}

const prefix = "/ec-scale"

func instanceRecord(i, hosts, groups int, group int) (string, string) {
	name := fmt.Sprintf("i%06d", i)
	v := fmt.Sprintf("name: %s\nhost: h%04d\nmac: \"02:ec:%02x:%02x:%02x:%02x\"\nipv4: 10.%d.%d.%d/8\nsecurity-groups: [g%04d]\n",
		name, i%hosts, byte(i>>24), byte(i>>16), byte(i>>8), byte(i), byte((i+1)>>16), byte((i+1)>>8), byte(i+1), group)
	return etcdsrc.Keys{Prefix: prefix}.Instance(name), v
}

func run(hosts, instances, groups, writes, clients int, keepState bool) error {
	ctx := context.Background()
	fmt.Printf("starting a 3-member etcd\n")
	ec, err := etcdtest.Start("", 3, etcdtest.Options{Name: "ec-scale", MaxTxnOps: 10000})
	if err != nil {
		return err
	}
	defer ec.Stop()
	cli, err := ec.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	keys := etcdsrc.Keys{Prefix: prefix}

	// The policy: group g(i) admits tcp/80 from group g(i+1); instance i
	// is in group i mod groups, on host i mod hosts (h0000 is the real one).
	load := time.Now()
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for g := 0; g < groups; g++ {
		v := fmt.Sprintf("name: g%04d\nrules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, security-group: g%04d}\n  - {flow-direction: egress, protocol: tcp, network: 0.0.0.0/0}\n", g, (g+1)%groups)
		ops = append(ops, clientv3.OpPut(keys.Group(fmt.Sprintf("g%04d", g)), v))
		if len(ops) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	for i := 0; i < instances; i++ {
		k, v := instanceRecord(i, hosts, groups, i%groups)
		ops = append(ops, clientv3.OpPut(k, v))
		if len(ops) == 500 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	fmt.Printf("loaded %d groups and %d instances in %v\n", groups, instances, time.Since(load).Round(time.Millisecond))

	// The real host.
	local, err := config.Parse("h0000.yaml", []byte(fmt.Sprintf("cluster: {host: h0000, etcd: {endpoints: [%s], prefix: %s}}\nuplink: {port: up0, gateway: 10.255.255.254/8}\n",
		strings.Join(ec.Endpoints(), ", "), prefix)))
	if err != nil {
		return err
	}
	sw, err := vswitch.New(local, vswitch.Options{OpenPort: func(s port.Spec) (port.Port, error) { return port.NewMem(s.Device, 0), nil }})
	if err != nil {
		return err
	}
	defer sw.Close()
	store, err := etcdsrc.Dial(local.Cluster.Etcd)
	if err != nil {
		return err
	}
	defer store.Close()
	w := source.NewWriter(sw, source.Options{})
	statePath := ""
	if keepState {
		dir, err := os.MkdirTemp("", "clusterscale-state-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		statePath = filepath.Join(dir, "cluster.state")
	}
	sync0 := etcdsrc.NewSync(store, w, local, statePath, nil)
	w.SetRemote(sync0)
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	first := time.Now()
	go sync0.Run(rctx)
	for sync0.Applied() == 0 {
		if st := sync0.Status(); st.Refused != "" {
			return fmt.Errorf("the real host refused the policy: %s", st.Refused)
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Printf("real host: first list and build of %d instances: %v (build and swap %.2fs), %d ports\n",
		instances, time.Since(first).Round(time.Millisecond), sync0.Status().LastApply, sw.NumPorts())

	// The simulated hosts: each its own watch from the current revision,
	// applying changes to its own copy of the records.
	resp, err := cli.Get(ctx, keys.Policy(), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return err
	}
	from := resp.Header.Revision + 1
	if clients <= 0 || clients > hosts-1 {
		clients = hosts - 1
	}
	var conns []*clientv3.Client
	for i := 0; i < clients; i++ {
		c, err := clientv3.New(clientv3.Config{Endpoints: ec.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer c.Close()
		conns = append(conns, c)
	}
	type arrival struct {
		rev int64
		at  time.Time
	}
	var mu sync.Mutex
	var rewatches atomic.Int64
	arrivals := map[int64][]time.Time{}
	ready := make(chan struct{}, hosts)
	for h := 1; h < hosts; h++ {
		c := conns[h%len(conns)]
		go func(h int) {
			copyOf := map[string]string{}
			next, created := from, false
			for rctx.Err() == nil {
				wctx := clientv3.WithRequireLeader(rctx)
				wch := c.Watch(wctx, keys.Policy(), clientv3.WithPrefix(), clientv3.WithRev(next), clientv3.WithCreatedNotify())
				for wr := range wch {
					if wr.Created {
						if !created {
							created = true
							ready <- struct{}{}
						}
						continue
					}
					if wr.Err() != nil {
						break
					}
					for _, e := range wr.Events {
						if e.Type == clientv3.EventTypeDelete {
							delete(copyOf, string(e.Kv.Key))
						} else {
							copyOf[string(e.Kv.Key)] = string(e.Kv.Value)
						}
						next = e.Kv.ModRevision + 1
					}
					now := time.Now()
					mu.Lock()
					arrivals[wr.Header.Revision] = append(arrivals[wr.Header.Revision], now)
					mu.Unlock()
				}
				// The watch ended (an etcd leader election on the loaded
				// machine ends watches that require a leader): watch again
				// from the next revision, as a host's sync loop would.
				if rctx.Err() == nil {
					rewatches.Add(1)
					time.Sleep(100 * time.Millisecond)
				}
			}
		}(h)
	}
	for h := 1; h < hosts; h++ {
		<-ready
	}
	rss, _ := ec.MemoryRSS()
	fmt.Printf("%d simulated hosts watching over %d clients; etcd members' resident memory: %.0f MiB in all (%.0f MiB each)\n",
		hosts-1, clients, float64(rss)/(1<<20), float64(rss)/3/(1<<20))

	// The writes: instance j moves to group j+1's.
	var all []time.Duration
	var real []time.Duration
	var rebuild, build, saves []float64
	for k := 0; k < writes; k++ {
		i := (k * 7919) % instances
		key, v := instanceRecord(i, hosts, groups, (i+k+1)%groups)
		t0 := time.Now()
		pr, err := cli.Put(ctx, key, v)
		if err != nil {
			return err
		}
		rev := pr.Header.Revision
		if err := sync0.WaitApplied(ctx, rev); err != nil {
			return err
		}
		real = append(real, time.Since(t0))
		st := sync0.Status()
		rebuild, build = append(rebuild, st.LastApply), append(build, st.LastBuild)
		if keepState {
			sync0.FlushState() // the write of the state file after it, for its time
			saves = append(saves, sync0.Status().LastSave)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := len(arrivals[rev])
			mu.Unlock()
			if n >= hosts-1 || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		mu.Lock()
		for _, at := range arrivals[rev] {
			all = append(all, at.Sub(t0))
		}
		missing := hosts - 1 - len(arrivals[rev])
		mu.Unlock()
		all = append(all, real[len(real)-1])
		if missing > 0 {
			fmt.Printf("write %d: %d simulated hosts had not applied it after 30s\n", k, missing)
		}
	}
	rss2, _ := ec.MemoryRSS()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	sort.Slice(real, func(i, j int) bool { return real[i] < real[j] })
	sort.Float64s(rebuild)
	sort.Float64s(build)
	q := func(d []time.Duration, p float64) time.Duration { return d[int(p*float64(len(d)-1))] }
	fmt.Printf("write → applied over %d writes × %d hosts: p50 %v, p99 %v, max %v\n", writes, hosts, q(all, .5).Round(time.Microsecond), q(all, .99).Round(time.Microsecond), all[len(all)-1].Round(time.Microsecond))
	fmt.Printf("the real host: write → applied p50 %v, p99 %v; rebuild (decode, check, compile, swap) median %.3fs, max %.3fs; of it decode and check median %.3fs\n",
		q(real, .5).Round(time.Millisecond), q(real, .99).Round(time.Millisecond), rebuild[len(rebuild)/2], rebuild[len(rebuild)-1], build[len(build)/2])
	if keepState {
		sort.Float64s(saves)
		fi, _ := os.Stat(statePath)
		fmt.Printf("the real host's state file (%.1f MiB): written after each revision in median %.3fs, max %.3fs (off the apply path)\n",
			float64(fi.Size())/(1<<20), saves[len(saves)/2], saves[len(saves)-1])
	}
	fmt.Printf("etcd members' resident memory after the writes: %.0f MiB in all\n", float64(rss2)/(1<<20))
	if n := rewatches.Load(); n > 0 {
		fmt.Printf("simulated hosts' watches ended and started again: %d times\n", n)
	}
	if q(all, .99) > time.Second {
		// An error, not an exit here: the deferred stops of etcd and the
		// clients run first, leaving no data directory behind.
		return errors.New("goal missed: p99 write → applied > 1 s")
	}
	return nil
}
