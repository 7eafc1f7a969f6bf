package etcd

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sgswitch/sgswitch/switch/source/control"
)

// TestControlWritesThrough: the control API of a cluster host writes its
// changes to the store, answers once they are in force here with the
// store's revision as ETag, refuses a stale If-Match, lists the hosts and
// refuses to put a whole file in force.
func TestControlWritesThrough(t *testing.T) {
	f := newFakeStore("/sgswitch")
	rev := importInto(t, f, policyFile)
	e := newSyncEnv(t, f, "")
	e.run()
	e.waitFor("the first list", func() bool { return e.s.Applied() == rev })
	h := control.Handler(e.w)
	do := func(method, path, body string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	if r := do("GET", "/v1/security-groups/db", ""); r.Code != 200 || r.Header().Get("ETag") != `"`+itoa(rev)+`"` {
		t.Fatalf("GET: %d ETag %s, want the revision %d", r.Code, r.Header().Get("ETag"), rev)
	}
	r := do("POST", "/v1/security-groups/db/rules", `{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "security-group": "ops"}`)
	if r.Code != 201 {
		t.Fatalf("POST rule: %d %s", r.Code, r.Body)
	}
	var added control.RuleAdded
	json.Unmarshal(r.Body.Bytes(), &added)
	if int64(added.Version) != f.rev || e.s.Applied() != f.rev {
		t.Errorf("version %d, applied %d, store at %d", added.Version, e.s.Applied(), f.rev)
	}
	if v := string(f.kv["/sgswitch/policy/security-groups/db"].Value); !strings.Contains(v, "start-port: 22") {
		t.Errorf("the store holds:\n%s", v)
	}
	if r := do("POST", "/v1/security-groups", `{"name": "late"}`, "If-Match", `"`+itoa(rev)+`"`); r.Code != 412 {
		t.Errorf("stale If-Match: %d %s", r.Code, r.Body)
	}
	if r := do("POST", "/v1/instances", `{"name": "x1", "mac": "02:00:00:00:00:41", "ipv4": "10.0.0.41/24"}`); r.Code != 400 || !strings.Contains(r.Body.String(), "host") {
		t.Errorf("an instance without its host: %d %s", r.Code, r.Body)
	}
	if r := do("POST", "/v1/instances", `{"name": "x1", "host": "hv-c", "mac": "02:00:00:00:00:41", "ipv4": "10.0.0.41/24"}`); r.Code != 201 {
		t.Errorf("an instance of hv-c: %d %s", r.Code, r.Body)
	}
	if e.sw.PortNamed("x1") >= 0 {
		t.Error("hv-a opened a port for hv-c's instance")
	}
	e.waitFor("the registration", func() bool { hs, _ := f.Hosts(t.Context()); return len(hs) == 1 && hs[0].Applied == f.rev })
	r = do("GET", "/v1/hosts", "")
	var hosts []HostRecord
	json.Unmarshal(r.Body.Bytes(), &hosts)
	if r.Code != 200 || len(hosts) != 3 || !hosts[0].Live || hosts[0].Host != "hv-a" || hosts[1].Live || hosts[2].Host != "hv-c" {
		t.Errorf("hosts: %d %s", r.Code, r.Body)
	}
	if r := do("PUT", "/v1/configuration", "switch: {}\n"); r.Code != 409 {
		t.Errorf("PUT configuration in a cluster: %d %s", r.Code, r.Body)
	}
	var stats struct{ Cluster Status }
	if r := do("GET", "/v1/stats", ""); json.Unmarshal(r.Body.Bytes(), &stats) != nil || !stats.Cluster.Connected || stats.Cluster.Applied != f.rev || stats.Cluster.Host != "hv-a" {
		t.Errorf("stats: %s", r.Body)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
