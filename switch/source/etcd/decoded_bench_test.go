package etcd

import (
	"fmt"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/port"
)

// scaleSnapshot is the scale benchmark's policy (bench/clusterscale):
// groups groups, each with a rule naming the next, and n instances over
// hosts hosts, one group each.
func scaleSnapshot(keys Keys, n, hosts, groups int) Snapshot {
	snap := Snapshot{Rev: 1}
	for g := 0; g < groups; g++ {
		name := fmt.Sprintf("g%04d", g)
		snap.Records = append(snap.Records, Record{Key: keys.Group(name), ModRev: 1, Value: []byte(fmt.Sprintf(
			"name: %s\nrules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, security-group: g%04d}\n", name, (g+1)%groups))})
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("i%06d", i)
		snap.Records = append(snap.Records, Record{Key: keys.Instance(name), ModRev: 1, Value: []byte(fmt.Sprintf(
			"name: %s\nhost: h%04d\nmac: \"02:ec:%02x:%02x:%02x:%02x\"\nipv4: 10.%d.%d.%d/8\nsecurity-groups: [g%04d]\n",
			name, i%hosts, byte(i>>24), byte(i>>16), byte(i>>8), byte(i), byte((i+1)>>16), byte((i+1)>>8), byte(i+1), i%groups))})
	}
	return snap
}

const scaleHost = "cluster: {host: h0000, etcd: {endpoints: [http://127.0.0.1:2379], prefix: /ei}}\nuplink: {port: up0, gateway: 10.255.255.254/8}\n"

// BenchmarkRevisionAtScale is one membership change at 100,000 instances
// in 1,000 groups, phase by phase: the decoder's build (one record decoded,
// the configuration assembled and checked), the full decode it replaces,
// and the switch's compile and swap.
func BenchmarkRevisionAtScale(b *testing.B) {
	keys := Keys{"/ei"}
	local, err := config.Parse("", []byte(scaleHost))
	if err != nil {
		b.Fatal(err)
	}
	snap := scaleSnapshot(keys, 100000, 1000, 1000)
	dec := NewDecoder(keys)
	cfg, err := dec.Build(local, snap)
	if err != nil {
		b.Fatal(err)
	}
	// One instance changes group at each revision.
	change := func(k int) {
		i := 1000 + (k*7919)%99000
		r := &snap.Records[i]
		r.ModRev = int64(k + 2)
		r.Value = []byte(fmt.Sprintf("name: i%06d\nhost: h0001\nmac: \"02:ec:00:%02x:%02x:%02x\"\nipv4: 10.%d.%d.%d/8\nsecurity-groups: [g%04d]\n",
			i-1000, byte((i-1000)>>16), byte((i-1000)>>8), byte(i-1000), byte((i-999)>>16), byte((i-999)>>8), byte(i-999), k%1000))
	}
	b.Run("decoder", func(b *testing.B) {
		for k := 0; k < b.N; k++ {
			change(k)
			if _, err := dec.Build(local, snap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("full", func(b *testing.B) {
		for k := 0; k < b.N; k++ {
			change(k)
			if _, err := Build(local, keys, snap); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compile-and-swap", func(b *testing.B) {
		sw, err := vswitch.New(local, vswitch.Options{OpenPort: func(s port.Spec) (port.Port, error) { return port.NewMem(s.Device, 0), nil }})
		if err != nil {
			b.Fatal(err)
		}
		defer sw.Close()
		if err := sw.Apply(cfg); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		for k := 0; k < b.N; k++ {
			change(k)
			next, err := dec.Build(local, snap)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := sw.Apply(next); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
		}
	})
}
