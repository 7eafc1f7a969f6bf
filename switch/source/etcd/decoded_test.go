package etcd

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
)

// TestDecoderMatchesFullBuild writes revisions into the fake store one
// after the other and checks, after each, that the decoder — which decodes
// only what the revision changed — gives the very configuration the full
// decode (Build) of every record gives, or refuses the revision as it does,
// naming the same key.
func TestDecoderMatchesFullBuild(t *testing.T) {
	f := newFakeStore(config.DefaultEtcdPrefix)
	importInto(t, f, policyFile)
	keys := f.keys
	local := mustParse(t, hostFile)
	inst := func(name, host, mac, ip, groups string) Op {
		return Op{Key: keys.Instance(name), Value: []byte("name: " + name + "\nhost: " + host + "\nmac: \"" + mac + "\"\nipv4: " + ip + "\nsecurity-groups: [" + groups + "]\n")}
	}
	del := func(key string) Op { return Op{Key: key} }
	steps := []struct {
		name    string
		ops     []Op
		refused string // the key the refusal names; "" when the revision is valid
	}{
		{"nothing changed", nil, ""},
		{"put a new instance", []Op{inst("web2", "hv-b", "02:00:00:00:00:12", "10.0.0.12/24", "web")}, ""},
		{"change an instance's groups", []Op{inst("ops1", "hv-a", "02:00:00:00:00:31", "10.0.0.31/24", "ops, web")}, ""},
		{"move an instance to another host", []Op{inst("web1", "hv-c", "02:00:00:00:00:11", "10.0.0.11/24", "web")}, ""},
		{"put a new group and a member, one revision", []Op{
			{Key: keys.Group("cache"), Value: []byte("name: cache\nrules:\n  - {flow-direction: ingress, protocol: tcp, start-port: 6379, end-port: 6379, security-group: web}\n")},
			inst("cache1", "hv-b", "02:00:00:00:00:41", "10.0.0.41/24", "cache")}, ""},
		{"delete an instance", []Op{del(keys.Instance("web2"))}, ""},
		{"invalid record: bad address", []Op{inst("db2", "hv-b", "02:00:00:00:00:22", "10.0.0.300/24", "db")}, keys.Instance("db2")},
		{"fixed again", []Op{inst("db2", "hv-b", "02:00:00:00:00:22", "10.0.0.22/24", "db")}, ""},
		{"invalid record: not YAML", []Op{{Key: keys.Group("ops"), Value: []byte("name: [ops\n")}}, keys.Group("ops")},
		{"invalid record: name differs from key", []Op{{Key: keys.Group("ops"), Value: []byte("name: opz\n")}}, keys.Group("ops")},
		{"valid again", []Op{{Key: keys.Group("ops"), Value: []byte("name: ops\ndescription: operators\n")}}, ""},
		{"duplicate MAC across records", []Op{inst("web3", "hv-b", "02:00:00:00:00:11", "10.0.0.13/24", "web")}, keys.Instance("web3")},
		{"duplicate address across records", []Op{del(keys.Instance("web3")), inst("web4", "hv-b", "02:00:00:00:00:14", "10.0.0.22/24", "web")}, keys.Instance("web4")},
		{"delete the duplicate", []Op{del(keys.Instance("web4"))}, ""},
		{"delete a group still referenced", []Op{del(keys.Group("cache"))}, keys.Instance("cache1")},
		{"delete its member too", []Op{del(keys.Instance("cache1"))}, ""},
		{"reference a missing group from a rule", []Op{{Key: keys.Group("ops"), Value: []byte("name: ops\nrules:\n  - {flow-direction: ingress, protocol: tcp, security-group: nosuch}\n")}}, keys.Group("ops")},
		{"delete that group", []Op{del(keys.Group("ops")), del(keys.Instance("ops1"))}, ""},
	}
	// The valid revisions that follow a valid one (records with problems of
	// their own are refused before the check across records) and delete no
	// group check only their changed records against the others; the rest
	// check the whole. Either way the result is the full decode's.
	incremental := map[string]bool{"put a new instance": true, "change an instance's groups": true, "move an instance to another host": true,
		"put a new group and a member, one revision": true, "delete an instance": true, "fixed again": true, "valid again": true}
	dec := NewDecoder(keys)
	for _, st := range steps {
		f.mu.Lock()
		f.write(st.ops)
		f.mu.Unlock()
		snap, err := f.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		inc, incErr := dec.Build(local, snap)
		full, fullErr := Build(local, keys, snap)
		if st.refused != "" {
			var re *RecordError
			if !errors.As(incErr, &re) || !strings.Contains(incErr.Error(), "etcd key "+st.refused+":") {
				t.Errorf("%s: the decoder gives %v; want the revision refused naming %s", st.name, incErr, st.refused)
			}
			if fullErr == nil {
				t.Errorf("%s: the full decode accepts what the decoder refuses", st.name)
			}
			continue
		}
		if incErr != nil || fullErr != nil {
			t.Errorf("%s: decoder: %v; full decode: %v", st.name, incErr, fullErr)
			continue
		}
		if dec.Incremental() != incremental[st.name] {
			t.Errorf("%s: checked incrementally %v, want %v", st.name, dec.Incremental(), incremental[st.name])
		}
		a, err := config.Marshal(inc)
		if err != nil {
			t.Fatal(err)
		}
		b, err := config.Marshal(full)
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%s: the decoder's configuration differs from the full decode's:\n%s\nwant\n%s", st.name, a, b)
		}
		if ch := config.Changes(full, inc); len(ch) != 0 {
			t.Errorf("%s: the decoder's configuration differs from the full decode's: %v", st.name, ch)
		}
		if len(dec.cache) != countPolicy(snap, keys) {
			t.Errorf("%s: %d records decoded, the revision holds %d: deleted keys are kept", st.name, len(dec.cache), countPolicy(snap, keys))
		}
	}
}

func countPolicy(snap Snapshot, keys Keys) int {
	n := 0
	for _, r := range snap.Records {
		if keys.isGroup(r.Key) || keys.isInstance(r.Key) {
			n++
		}
	}
	return n
}

// TestDecoderDecodesOnlyChanges: a record kept at the same mod revision is
// not decoded again; a put is.
func TestDecoderDecodesOnlyChanges(t *testing.T) {
	f := newFakeStore(config.DefaultEtcdPrefix)
	importInto(t, f, policyFile)
	local := mustParse(t, hostFile)
	dec := NewDecoder(f.keys)
	snap, _ := f.List(context.Background())
	if _, err := dec.Build(local, snap); err != nil {
		t.Fatal(err)
	}
	before := map[string]*decoded{}
	for k, d := range dec.cache {
		before[k] = d
	}
	changed := f.keys.Instance("db2")
	f.put(changed, "name: db2\nhost: hv-b\nmac: \"02:00:00:00:00:22\"\nipv4: 10.0.0.23/24\nsecurity-groups: [db]\n")
	snap, _ = f.List(context.Background())
	if _, err := dec.Build(local, snap); err != nil {
		t.Fatal(err)
	}
	for k, d := range dec.cache {
		if (k == changed) == (before[k] == d) {
			t.Errorf("%s: decoded again %v; want only %s decoded again", k, before[k] != d, changed)
		}
	}
}
