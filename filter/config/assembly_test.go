package config

import (
	"fmt"
	"sort"
	"testing"
)

// TestAssemblyMatchesAssemble puts a sequence of revisions through one
// Assembly and checks each against Assemble of the same entries from
// scratch: the same configuration, or the same refusal; and that the
// revisions that only change, add or remove a few valid instances took the
// incremental path.
func TestAssemblyMatchesAssemble(t *testing.T) {
	head := []byte("cluster: {host: hv-a, etcd: {endpoints: [http://127.0.0.1:2379]}}\nuplink: {port: up0, gateway: 10.0.0.1/16}\n")
	groups := map[string]*Entry{}
	setGroup := func(text string) {
		e, err := ParseGroup([]byte(text))
		if err != nil {
			t.Fatal(err)
		}
		groups[e.Group.Name] = e
	}
	insts := map[string]*Entry{}
	setInst := func(name, host, mac, v4, extra string) {
		e, err := ParseInstance(fmt.Appendf(nil, "name: %s\nhost: %s\nmac: %q\nipv4: %s\n%s", name, host, mac, v4, extra))
		if err != nil {
			t.Fatal(err)
		}
		insts[name] = e
	}
	setGroup("name: web\nrules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, security-group: db}\n")
	setGroup("name: db\n")
	for i := range 200 {
		setInst(fmt.Sprintf("i%03d", i), fmt.Sprintf("hv-%c", 'a'+i%3), fmt.Sprintf("02:00:00:00:01:%02x", i), fmt.Sprintf("10.0.1.%d/16", i),
			fmt.Sprintf("security-groups: [%s]\n", []string{"web", "db"}[i%2]))
	}
	sorted := func(m map[string]*Entry, group bool) []*Entry {
		var names []string
		for n := range m {
			names = append(names, n)
		}
		sort.Strings(names)
		var out []*Entry
		for _, n := range names {
			out = append(out, m[n])
		}
		return out
	}
	steps := []struct {
		name        string
		change      func()
		incremental bool
	}{
		{"start", func() {}, false},
		{"unchanged", func() {}, true},
		{"a membership change", func() { setInst("i007", "hv-b", "02:00:00:00:01:07", "10.0.1.7/16", "security-groups: [web, db]\n") }, true},
		{"an instance moves host and address", func() { setInst("i008", "hv-a", "02:00:00:00:01:08", "10.0.2.8/16", "") }, true},
		{"two instances swap addresses", func() {
			setInst("i010", "hv-b", "02:00:00:00:01:0a", "10.0.1.11/16", "")
			setInst("i011", "hv-c", "02:00:00:00:01:0b", "10.0.1.10/16", "")
		}, true},
		{"an instance added in the middle", func() { setInst("i050a", "hv-c", "02:00:00:00:02:01", "10.0.2.1/16", "tap: t50a\n") }, true},
		{"an instance added at the end and one removed", func() {
			setInst("z1", "hv-a", "02:00:00:00:02:02", "10.0.2.2/16", "ipv6: fd00::2/64\n")
			delete(insts, "i000")
		}, true},
		{"a new instance takes a removed one's address and MAC", func() {
			delete(insts, "i001")
			setInst("a1", "hv-a", "02:00:00:00:01:01", "10.0.1.1/16", "")
		}, true},
		{"a duplicate MAC", func() { setInst("i020", "hv-c", "02:00:00:00:01:15", "10.0.1.20/16", "") }, false},
		{"fixed", func() { setInst("i020", "hv-c", "02:00:00:00:01:14", "10.0.1.20/16", "") }, false},
		{"a duplicate address", func() { setInst("i021", "hv-a", "02:00:00:00:01:15", "10.0.1.22/16", "") }, false},
		{"the gateway's address", func() { setInst("i021", "hv-a", "02:00:00:00:01:15", "10.0.0.1/16", "") }, false},
		{"fixed again", func() { setInst("i021", "hv-a", "02:00:00:00:01:15", "10.0.1.21/16", "") }, false},
		{"a TAP used twice on a host", func() { setInst("i030", "hv-c", "02:00:00:00:01:1e", "10.0.1.30/16", "tap: t50a\n") }, false},
		{"on another host it is fine", func() { setInst("i030", "hv-a", "02:00:00:00:01:1e", "10.0.1.30/16", "tap: t50a\n") }, false},
		{"an instance names a missing group", func() { setInst("i040", "hv-a", "02:00:00:00:01:28", "10.0.1.40/16", "security-groups: [nosuch]\n") }, false},
		{"the group is added", func() { setGroup("name: nosuch\n") }, false},
		{"a group's rules change", func() {
			setGroup("name: db\nrules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 5432, end-port: 5432, security-group: web}\n")
		}, true},
		{"a group is added", func() { setGroup("name: ops\n") }, true},
		{"a group still named is deleted", func() { delete(groups, "nosuch") }, false},
		{"its member leaves it", func() { setInst("i040", "hv-a", "02:00:00:00:01:28", "10.0.1.40/16", "") }, false},
		{"many changes at once", func() {
			for i := 100; i < 200; i++ {
				setInst(fmt.Sprintf("i%03d", i), "hv-b", fmt.Sprintf("02:00:00:00:01:%02x", i), fmt.Sprintf("10.0.3.%d/16", i), "")
			}
		}, false},
		{"one more change", func() { setInst("i150", "hv-c", "02:00:00:00:01:96", "10.0.3.150/16", "") }, true},
	}
	var a Assembly
	for _, step := range steps {
		step.change()
		ge, ie := sorted(groups, true), sorted(insts, false)
		want, werr := Assemble("", head, ge, ie)
		got, gerr := a.Assemble("", head, ge, ie)
		switch {
		case (werr == nil) != (gerr == nil):
			t.Fatalf("%s: the assembly says %v, Assemble %v", step.name, gerr, werr)
		case werr != nil:
			if werr.Error() != gerr.Error() {
				t.Errorf("%s: refused with\n%v\nwant\n%v", step.name, gerr, werr)
			}
		default:
			a1, _ := Marshal(want)
			b1, _ := Marshal(got)
			if string(a1) != string(b1) || len(Changes(want, got)) != 0 {
				t.Errorf("%s: assembled\n%s\nwant\n%s", step.name, b1, a1)
			}
		}
		if a.Incremental != step.incremental {
			t.Errorf("%s: incremental %v, want %v", step.name, a.Incremental, step.incremental)
		}
	}
	// A changed head checks the whole.
	head2 := append([]byte(nil), head...)
	head2 = append(head2, "switch: {queues: 2}\n"...)
	if _, err := a.Assemble("", head2, sorted(groups, true), sorted(insts, false)); err != nil || a.Incremental {
		t.Errorf("a changed head: %v, incremental %v", err, a.Incremental)
	}
}
