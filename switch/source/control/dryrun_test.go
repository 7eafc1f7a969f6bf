package control

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

// TestControlDryRun: every change of the API with ?dry-run=true answers as
// the change would, plus what it would change and the tracked connections it
// would cut, each with the rule that allows it now — and changes nothing:
// not the configuration in force, not the file, not the version, not the
// counters, not the connection table, no port opened.
func TestControlDryRun(t *testing.T) {
	e := newControlEnv(t, nil)
	if r := e.do("POST", "/v1/security-groups", `{"name": "spare"}`); r.code != http.StatusCreated {
		t.Fatalf("create spare: %d %s", r.code, r.body)
	}
	var sc vswitch.Scratch
	for _, f := range []struct {
		in    int
		frame []byte
	}{
		{pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil)},
		{pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil)},
		{pUplink, ft.TCP(outside, web1, 5555, 80, "S", 100, 0, nil)},
		{pWeb1, ft.TCP(web1, outside, 80, 5555, "SA", 500, 101, nil)},
	} {
		if r := e.sw.Process(f.in, f.frame, &sc); r.Verdict.String() != "forward" {
			t.Fatalf("setting up the connections: %v", r.Reason)
		}
	}
	const (
		mysql = "tcp 10.0.0.11:40000 > 10.0.0.21:3306"
		web   = "tcp 203.0.113.5:5555 > 10.0.0.11:80"
	)
	withoutHTTP := strings.Replace(testConfig, "      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 80, network: 0.0.0.0/0}\n", "", 1)
	tests := []struct {
		name, method, path, body string
		status                   int
		cut                      []string // key allowed-by reason from to
		change                   string   // one of the changes it lists
	}{
		{"rule delete", "DELETE", "/v1/security-groups/db/rules/0", "", 200,
			[]string{mysql + " db/ingress/0 ingress-policy web1 db1"}, "group db: rule removed: db/ingress/0"},
		{"rule add", "POST", "/v1/security-groups/web/rules", `{"flow-direction": "egress", "protocol": "tcp", "start-port": 443, "end-port": 443, "network": "0.0.0.0/0"}`, 200,
			[]string{mysql + " db/ingress/0 egress-policy web1 db1"}, "group web: rule added: web/egress/2"},
		{"external sources", "PUT", "/v1/security-groups/web/external-sources", `["198.51.100.0/24"]`, 200,
			nil, "group web: external source added: 198.51.100.0/24"},
		{"instance groups", "PUT", "/v1/instances/web1/security-groups", `["db"]`, 200,
			[]string{mysql + " db/ingress/0 egress-policy web1 db1", web + " web/ingress/0 ingress-policy uplink web1"}, "instance web1: security-groups [web] → [db]"},
		{"instance remove", "DELETE", "/v1/instances/db1", "", 200,
			[]string{mysql + " db/ingress/0 unknown-destination web1 db1"}, "instance db1: removed"},
		{"instance add", "POST", "/v1/instances", `{"name": "app1", "mac": "02:00:00:00:00:31", "ipv4": "10.0.0.31/24"}`, 200,
			nil, "instance app1: added"},
		{"group create", "POST", "/v1/security-groups", `{"name": "extra"}`, 200, nil, "group extra: added"},
		{"group delete", "DELETE", "/v1/security-groups/spare", "", 200, nil, "group spare: removed"},
		{"reload", "PUT", "/v1/configuration?file=new.yaml", withoutHTTP, 200,
			[]string{web + " web/ingress/0 ingress-policy uplink web1"}, "group web: rule removed: web/ingress/0"},
		{"invalid rule", "POST", "/v1/security-groups/web/rules", `{"flow-direction": "ingress", "protocol": "tcp", "start-port": 70000, "end-port": 70000, "network": "0.0.0.0/0"}`, 400, nil, ""},
		{"invalid file", "PUT", "/v1/configuration?file=new.yaml", "instances: 7\n", 400, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			running, file := e.snapshot()
			version, stats, conns, ports := e.sw.Version(), e.sw.Stats(), e.sw.Conntrack().List(nil, 0), e.sw.NumPorts()
			sep := "?"
			if strings.Contains(tc.path, "?") {
				sep = "&"
			}
			r := e.do(tc.method, tc.path+sep+"dry-run=true", tc.body)
			if r.code != tc.status {
				t.Fatalf("%d %s, want %d", r.code, r.body, tc.status)
			}
			if r.version != version {
				t.Errorf("ETag %d, the version is %d", r.version, version)
			}
			if r2, f2 := e.snapshot(); !bytes.Equal(r2, running) || !bytes.Equal(f2, file) {
				t.Errorf("a dry run changed the configuration in force or the file")
			}
			if e.sw.Version() != version || !reflect.DeepEqual(e.sw.Stats(), stats) || e.sw.NumPorts() != ports {
				t.Errorf("a dry run changed the version (%d, was %d), the counters or the ports (%d, were %d)", e.sw.Version(), version, e.sw.NumPorts(), ports)
			}
			if after := e.sw.Conntrack().List(nil, 0); len(after) != len(conns) {
				t.Errorf("a dry run changed the connection table")
			} else {
				for i := range after {
					if after[i].Meta != conns[i].Meta || after[i].State != conns[i].State || after[i].Packets != conns[i].Packets {
						t.Errorf("a dry run changed connection %v", after[i].Key)
					}
				}
			}
			if tc.status != 200 {
				if !strings.Contains(string(r.body), `"errors"`) {
					t.Errorf("a refused dry run lists no errors: %s", r.body)
				}
				return
			}
			var out struct {
				Version uint64      `json:"version"`
				DryRun  *DryRunView `json:"dry-run"`
			}
			if err := json.Unmarshal(r.body, &out); err != nil {
				t.Fatal(err)
			}
			dr := out.DryRun
			if dr == nil {
				t.Fatalf("no dry-run in the answer: %s", r.body)
			}
			if out.Version != version || dr.Version != version || dr.Checked != len(conns) || dr.CutTotal != len(tc.cut) || dr.Truncated {
				t.Errorf("version %d/%d, checked %d, cut %d (truncated %v); want %d, %d, %d", out.Version, dr.Version, dr.Checked, dr.CutTotal, dr.Truncated, version, len(conns), len(tc.cut))
			}
			var got []string
			for _, c := range dr.Cut {
				got = append(got, strings.Join([]string{c.Key, c.AllowedBy, c.Reason, c.From, c.To}, " "))
			}
			slices.Sort(got)
			want := slices.Clone(tc.cut)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("cut\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			found := false
			for _, c := range dr.Changes {
				found = found || strings.HasPrefix(c.String(), tc.change)
			}
			if !found {
				t.Errorf("changes %v lack %q", dr.Changes, tc.change)
			}
		})
	}
	t.Run("bad parameters", func(t *testing.T) {
		for _, q := range []string{"dry-run=yes", "limit=5", "dry-run=true&limit=-1", "dryrun=true"} {
			if r := e.do("DELETE", "/v1/security-groups/db/rules/0?"+q, ""); r.code != http.StatusBadRequest {
				t.Errorf("?%s: %d %s, want 400", q, r.code, r.body)
			}
		}
		if e.sw.Version() != 2 {
			t.Errorf("version %d after refused requests, want 2", e.sw.Version())
		}
	})
	t.Run("limit", func(t *testing.T) {
		r := e.do("PUT", "/v1/instances/web1/security-groups?dry-run=true&limit=1", `["db"]`)
		var out Changed
		json.Unmarshal(r.body, &out)
		if out.DryRun == nil || len(out.DryRun.Cut) != 1 || out.DryRun.CutTotal != 2 || !out.DryRun.Truncated {
			t.Errorf("limit=1: %s", r.body)
		}
	})
}

// TestControlReload: PUT /v1/configuration puts a whole file in force and
// writes it over the switch's file (canonical, as every API change); errors
// name the file, line and field; If-Match applies.
func TestControlReload(t *testing.T) {
	e := newControlEnv(t, nil)
	next := strings.Replace(testConfig, "start-port: 80, end-port: 80", "start-port: 8080, end-port: 8080", 1) + "# comment kept\n"
	if r := e.do("PUT", "/v1/configuration?file=next.yaml", next, `If-Match: "7"`); r.code != http.StatusPreconditionFailed {
		t.Errorf("stale If-Match: %d %s", r.code, r.body)
	}
	r := e.do("PUT", "/v1/configuration?file=next.yaml", next, `If-Match: "1"`)
	if r.code != http.StatusOK || r.version != 2 {
		t.Fatalf("reload: %d version %d %s", r.code, r.version, r.body)
	}
	var out Reloaded
	json.Unmarshal(r.body, &out)
	if len(out.Changes) != 1 || !strings.Contains(out.Changes[0].String(), "start-port 80 → 8080") {
		t.Errorf("changes %v", out.Changes)
	}
	if running, file := e.snapshot(); !bytes.Equal(running, file) || !strings.Contains(string(file), "start-port: 8080") {
		t.Errorf("the file holds\n%s\nwant the configuration in force\n%s", file, running)
	}
	if g, _ := e.sw.Config().Group("web"); g.Rules[0].StartPort != 8080 {
		t.Errorf("not in force: %+v", g.Rules[0])
	}
	r = e.do("PUT", "/v1/configuration?file=next.yaml", "security-groups:\n  - {name: web, rules: [{flow-direction: up}]}\n")
	if r.code != http.StatusBadRequest || !strings.Contains(r.error(), "next.yaml:2: security-groups[0].rules[0].flow-direction") {
		t.Errorf("bad file: %d %s", r.code, r.body)
	}
}
