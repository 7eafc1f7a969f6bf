package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/source"
)

// controlEnv is a switch of testConfig read from a file in a temporary
// directory, and its control API.
type controlEnv struct {
	t    *testing.T
	sw   *vswitch.Switch
	w    *source.Writer
	file string
	h    http.Handler
}

// newControlEnv builds the switch; stage, when set, replaces the staged
// write of the configuration file. Ports are in-memory; the device "fail0"
// does not open.
func newControlEnv(t *testing.T, stage source.StageFunc) *controlEnv {
	t.Helper()
	file := filepath.Join(t.TempDir(), "sgswitch.yaml")
	if err := os.WriteFile(file, []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := vswitch.New(cfg, vswitch.Options{OpenPort: func(spec port.Spec) (port.Port, error) {
		device := spec.Device
		if device == "fail0" {
			return nil, fmt.Errorf("open %s: device busy", device)
		}
		return port.NewMem(device, 0), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sw.Close)
	w := source.NewWriter(sw, source.Options{Stage: stage})
	return &controlEnv{t: t, sw: sw, w: w, file: file, h: Handler(w)}
}

type response struct {
	code    int
	version uint64 // from the ETag
	body    []byte
}

func (r response) error() string {
	var e struct{ Error string }
	json.Unmarshal(r.body, &e)
	return e.Error
}

// do sends one request; header is "If-Match: ..." style pairs. Every
// response must carry the version as ETag.
func (e *controlEnv) do(method, path, body string, header ...string) response {
	e.t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	var req *http.Request
	if rd != nil {
		req = httptest.NewRequest(method, path, rd)
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	for _, h := range header {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	tag := rec.Header().Get("ETag")
	v, err := strconv.ParseUint(strings.Trim(tag, `"`), 10, 64)
	if err != nil || !strings.HasPrefix(tag, `"`) {
		e.t.Errorf("%s %s: ETag %q is not a quoted version", method, path, tag)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	if !json.Valid(rec.Body.Bytes()) {
		e.t.Errorf("%s %s: body is not JSON: %s", method, path, rec.Body)
	}
	return response{code: rec.Code, version: v, body: rec.Body.Bytes()}
}

// snapshot is the running configuration as the file would hold it, and the
// file's bytes.
func (e *controlEnv) snapshot() (running, file []byte) {
	e.t.Helper()
	running, err := config.Marshal(e.sw.Config())
	if err != nil {
		e.t.Fatal(err)
	}
	file, err = os.ReadFile(e.file)
	if err != nil {
		e.t.Fatal(err)
	}
	return running, file
}

// agree checks that the file holds the configuration in force.
func (e *controlEnv) agree() {
	e.t.Helper()
	running, file := e.snapshot()
	if !bytes.Equal(running, file) {
		e.t.Fatalf("the running configuration and the file differ\nrunning:\n%s\nfile:\n%s", running, file)
	}
	if _, err := config.Load(e.file); err != nil {
		e.t.Fatalf("the file does not load: %v", err)
	}
}

// noTemp checks that no temporary file is left next to the configuration.
func (e *controlEnv) noTemp() {
	e.t.Helper()
	entries, _ := os.ReadDir(filepath.Dir(e.file))
	for _, en := range entries {
		if en.Name() != filepath.Base(e.file) {
			e.t.Errorf("left behind: %s", en.Name())
		}
	}
}

const sshFromWeb1 = `{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.11/32", "description": "ssh from web1"}`

// TestControlRefused: every refusal has its status and a message naming the
// field as the client sent it, and leaves the running configuration and the
// file exactly as they were.
func TestControlRefused(t *testing.T) {
	e := newControlEnv(t, nil)
	rule := func(fields string) string {
		return `{"flow-direction": "ingress", "protocol": "tcp", ` + fields + `}`
	}
	cases := []struct {
		name, method, path, body string
		header                   []string
		code                     int
		want                     []string // substrings of the error
	}{
		{"port out of range", "POST", "/v1/security-groups/db/rules", rule(`"start-port": 70000, "end-port": 70000, "network": "0.0.0.0/0"`),
			nil, 400, []string{"start-port: 70000 is out of range; a port is 1-65535"}},
		{"port out of range in a new group", "POST", "/v1/security-groups", `{"name": "ops", "rules": [` + rule(`"start-port": 70000, "end-port": 70000, "network": "0.0.0.0/0"`) + `]}`,
			nil, 400, []string{"rules[0].start-port: 70000 is out of range; a port is 1-65535"}},
		{"start after end", "POST", "/v1/security-groups/db/rules", rule(`"start-port": 90, "end-port": 80, "network": "0.0.0.0/0"`),
			nil, 400, []string{"start-port: 90 is greater than end-port 80"}},
		{"one port only", "POST", "/v1/security-groups/db/rules", rule(`"start-port": 22, "network": "0.0.0.0/0"`),
			nil, 400, []string{"start-port: given without end-port"}},
		{"bad CIDR", "POST", "/v1/security-groups/db/rules", rule(`"network": "10.0.0.0/33"`), nil, 400, []string{"network:"}},
		{"both peers", "POST", "/v1/security-groups/db/rules", rule(`"network": "0.0.0.0/0", "security-group": "web"`),
			nil, 400, []string{"set exactly one of network and security-group"}},
		{"no peer", "POST", "/v1/security-groups/db/rules", rule(`"start-port": 1, "end-port": 2`), nil, 400, []string{"set exactly one of network and security-group"}},
		{"unknown peer group", "POST", "/v1/security-groups/db/rules", rule(`"security-group": "nope"`),
			nil, 400, []string{`security-group: no group named "nope"; defined groups are web, db, default`}},
		{"unknown protocol", "POST", "/v1/security-groups/db/rules", `{"flow-direction": "ingress", "protocol": "sctp", "network": "0.0.0.0/0"}`,
			nil, 400, []string{`protocol: unknown protocol "sctp"`}},
		{"missing direction", "POST", "/v1/security-groups/db/rules", `{"protocol": "tcp", "network": "0.0.0.0/0"}`, nil, 400, []string{"flow-direction: missing"}},
		{"icmp code without type", "POST", "/v1/security-groups/db/rules", `{"flow-direction": "ingress", "protocol": "icmp", "icmp": {"code": 0}, "network": "0.0.0.0/0"}`,
			nil, 400, []string{"icmp.code: a code needs a type"}},
		{"ports on icmp", "POST", "/v1/security-groups/db/rules", `{"flow-direction": "ingress", "protocol": "icmp", "start-port": 1, "end-port": 2, "network": "0.0.0.0/0"}`,
			nil, 400, []string{"start-port: ports apply to tcp and udp only"}},
		{"duplicate rule", "POST", "/v1/security-groups/web/rules", rule(`"start-port": 80, "end-port": 80, "network": "0.0.0.0/0", "description": "again"`),
			nil, 409, []string{"same rule as rules[0]; a group cannot hold two identical rules"}},
		{"rule for unknown group", "POST", "/v1/security-groups/nope/rules", sshFromWeb1, nil, 404, []string{`no security group named "nope"; the groups are web, db, default`}},
		{"invalid JSON", "POST", "/v1/security-groups/db/rules", `{"flow-direction": `, nil, 400, []string{"invalid JSON"}},
		{"not JSON", "POST", "/v1/security-groups/db/rules", `flow-direction: ingress`, nil, 400, []string{"invalid JSON"}},
		{"empty body", "POST", "/v1/security-groups/db/rules", ``, nil, 400, []string{"no body", "flow-direction, protocol"}},
		{"trailing data", "POST", "/v1/security-groups/db/rules", sshFromWeb1 + ` {}`, nil, 400, []string{"more data after"}},
		{"unknown field", "POST", "/v1/security-groups/db/rules", `{"flow-direction": "ingress", "port": 22}`,
			nil, 400, []string{"port: unknown field; valid fields: flow-direction, protocol, start-port, end-port, network, security-group, icmp, description"}},
		{"unknown nested field", "POST", "/v1/security-groups", `{"name": "ops", "rules": [{"flow-direction": "ingress", "ports": "22"}]}`,
			nil, 400, []string{"ports: unknown field", "rules[]: flow-direction"}},
		{"wrong type", "POST", "/v1/security-groups/db/rules", rule(`"start-port": "22", "end-port": 22, "network": "0.0.0.0/0"`),
			nil, 400, []string{"start-port: want an integer, got a JSON string"}},
		{"rule index out of range", "DELETE", "/v1/security-groups/db/rules/2", "", nil, 404, []string{`security group "db" has 2 rules, indices 0-1`}},
		{"rule index not a number", "DELETE", "/v1/security-groups/db/rules/x", "", nil, 404, []string{"no rule x"}},
		{"rule index with a sign", "DELETE", "/v1/security-groups/db/rules/+0", "", nil, 404, []string{"no rule +0"}},
		{"rule index with a leading zero", "DELETE", "/v1/security-groups/db/rules/00", "", nil, 404, []string{"no rule 00"}},
		{"rule of a group without rules", "DELETE", "/v1/security-groups/default/rules/0", "", nil, 404, []string{`"default" has no rules`}},
		{"rule of unknown group", "DELETE", "/v1/security-groups/nope/rules/0", "", nil, 404, []string{`no security group named "nope"`}},

		{"group exists", "POST", "/v1/security-groups", `{"name": "web"}`, nil, 409, []string{`name: a security group named "web" already exists`}},
		{"default exists", "POST", "/v1/security-groups", `{"name": "default"}`, nil, 409, []string{`"default" already exists`}},
		{"group without name", "POST", "/v1/security-groups", `{"description": "x"}`, nil, 400, []string{"name: missing; every security group needs a name"}},
		{"invalid group name", "POST", "/v1/security-groups", `{"name": "a b"}`, nil, 400, []string{`name: "a b" is not a valid group name`}},
		{"description too long", "POST", "/v1/security-groups", `{"name": "ops", "description": "` + strings.Repeat("x", 256) + `"}`, nil, 400, []string{"description:"}},
		{"bad external source in a new group", "POST", "/v1/security-groups", `{"name": "ops", "external-sources": ["nonsense"]}`, nil, 400, []string{"external-sources[0]:"}},
		{"delete referenced group", "DELETE", "/v1/security-groups/web", "", nil, 409,
			[]string{`security group "web" is in use`, "instances web1 belong to it", "rules db/ingress/0 name it"}},
		{"delete group of an instance", "DELETE", "/v1/security-groups/db", "", nil, 409, []string{"instances db1 belong to it"}},
		{"delete default", "DELETE", "/v1/security-groups/default", "", nil, 409, []string{`"default" cannot be deleted`}},
		{"delete unknown group", "DELETE", "/v1/security-groups/nope", "", nil, 404, []string{`no security group named "nope"`}},
		{"show unknown group", "GET", "/v1/security-groups/nope", "", nil, 404, []string{`no security group named "nope"`}},

		{"bad external source", "PUT", "/v1/security-groups/web/external-sources", `{"external-sources": ["203.0.113.0/24", "10.0.0.0/33"]}`,
			nil, 400, []string{"external-sources[1]:"}},
		{"bad external source, bare list", "PUT", "/v1/security-groups/web/external-sources", `["bogus"]`, nil, 400, []string{"external-sources[0]:"}},
		{"duplicate external source", "PUT", "/v1/security-groups/web/external-sources", `["203.0.113.0/24", "203.0.113.0/24"]`, nil, 400, []string{"external-sources[1]:", "already listed"}},
		{"external sources missing", "PUT", "/v1/security-groups/web/external-sources", `{}`, nil, 400, []string{"external-sources: missing"}},
		{"external sources of unknown group", "PUT", "/v1/security-groups/nope/external-sources", `[]`, nil, 404, []string{`no security group named "nope"`}},

		{"instance exists", "POST", "/v1/instances", `{"name": "web1", "mac": "02:00:00:00:00:99", "ipv4": "10.0.0.99/24"}`, nil, 409, []string{`"web1" already exists`}},
		{"instance MAC taken", "POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:11", "ipv4": "10.0.0.12/24"}`,
			nil, 409, []string{"mac: 02:00:00:00:00:11 is already used by instances[web1].mac"}},
		{"instance address taken", "POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.21/24"}`,
			nil, 409, []string{"ipv4: 10.0.0.21 is already used by instances[db1].ipv4"}},
		{"instance TAP taken by the uplink", "POST", "/v1/instances", `{"name": "web2", "tap": "up0", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			nil, 409, []string{`tap: "up0" is already used by uplink.port`}},
		{"instance bad address", "POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.300/24"}`, nil, 400, []string{"ipv4:"}},
		{"instance multicast MAC", "POST", "/v1/instances", `{"name": "web2", "mac": "01:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`, nil, 400, []string{"mac:", "unicast"}},
		{"instance without MAC", "POST", "/v1/instances", `{"name": "web2", "ipv4": "10.0.0.12/24"}`, nil, 400, []string{"mac: missing"}},
		{"instance reserved name", "POST", "/v1/instances", `{"name": "uplink", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`, nil, 400, []string{`name: "uplink" is reserved`}},
		{"instance unknown group", "POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "security-groups": ["nope"]}`,
			nil, 400, []string{`security-groups[0]: no group named "nope"`}},
		{"instance no groups", "POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "security-groups": []}`,
			nil, 400, []string{"security-groups: must name at least one group"}},
		{"instance smtp not a bool", "POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "smtp-egress": "yes"}`,
			nil, 400, []string{"smtp-egress: want true or false"}},
		{"instance TAP does not open", "POST", "/v1/instances", `{"name": "web2", "tap": "fail0", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			nil, 500, []string{"device busy", "nothing changed"}},
		{"instance vhost-user bad mode", "POST", "/v1/instances", `{"name": "vm2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "vhost-user": {"socket": "/run/vm2.sock", "mode": "both"}}`,
			nil, 400, []string{`vhost-user.mode: "both"; give server`}},
		{"instance vhost-user without socket", "POST", "/v1/instances", `{"name": "vm2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "vhost-user": {"mode": "client"}}`,
			nil, 400, []string{"vhost-user.socket: missing"}},
		{"instance vhost-user and tap", "POST", "/v1/instances", `{"name": "vm2", "tap": "t2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "vhost-user": {"socket": "/run/vm2.sock", "mode": "client"}}`,
			nil, 400, []string{"give one of tap, netdev or vhost-user"}},
		{"remove unknown instance", "DELETE", "/v1/instances/nope", "", nil, 404, []string{`no instance named "nope"; the instances are web1, db1`}},
		{"show unknown instance", "GET", "/v1/instances/nope", "", nil, 404, []string{`no instance named "nope"`}},
		{"groups of unknown instance", "PUT", "/v1/instances/nope/security-groups", `["web"]`, nil, 404, []string{`no instance named "nope"`}},
		{"empty group list", "PUT", "/v1/instances/web1/security-groups", `{"security-groups": []}`, nil, 400, []string{"security-groups: must name at least one group"}},
		{"unknown group in list", "PUT", "/v1/instances/web1/security-groups", `["web", "nope"]`, nil, 400, []string{`security-groups[1]: no group named "nope"`}},
		{"group listed twice", "PUT", "/v1/instances/web1/security-groups", `["web", "web"]`, nil, 400, []string{`security-groups[1]: "web" is already listed`}},
		{"group list missing", "PUT", "/v1/instances/web1/security-groups", `{"groups": ["web"]}`, nil, 400, []string{"groups: unknown field"}},

		{"stale If-Match", "POST", "/v1/security-groups/db/rules", sshFromWeb1, []string{`If-Match: "7"`}, 412, []string{"at version 1, not \"7\""}},
		{"stale If-Match on delete", "DELETE", "/v1/security-groups/db/rules/0", "", []string{`If-Match: "2"`}, 412, []string{"changed since you read it"}},
		{"bad If-Match", "POST", "/v1/security-groups/db/rules", sshFromWeb1, []string{`If-Match: yesterday`}, 400, []string{"If-Match"}},

		{"method not allowed", "PUT", "/v1/stats", "", nil, 405, []string{"PUT is not a method of /v1/stats; it takes GET"}},
		{"no such resource", "GET", "/v1/routers", "", nil, 404, []string{"no such resource"}},
		{"conntrack unknown parameter", "GET", "/v1/conntrack?port=1", "", nil, 400, []string{`unknown query parameter "port"`}},
		{"conntrack unknown instance", "GET", "/v1/conntrack?instance=nope", "", nil, 404, []string{`instance: no instance named "nope"`}},
		{"conntrack bad protocol", "GET", "/v1/conntrack?protocol=sctp", "", nil, 400, []string{`protocol: unknown protocol "sctp"`}},
		{"conntrack bad address", "GET", "/v1/conntrack?address=10.0.0.300", "", nil, 400, []string{"address:"}},
		{"conntrack bad limit", "GET", "/v1/conntrack?limit=-1", "", nil, 400, []string{"limit:"}},
		{"conntrack flush with a filter", "DELETE", "/v1/conntrack?instance=web1", "", nil, 400, []string{"takes no parameters"}},
	}
	running, file := e.snapshot()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.t = t
			r := e.do(c.method, c.path, c.body, c.header...)
			if r.code != c.code {
				t.Errorf("status %d, want %d: %s", r.code, c.code, r.body)
			}
			msg := r.error()
			t.Logf("%d %s", r.code, msg)
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not say %q", msg, w)
				}
			}
			if strings.Contains(msg, "line ") {
				t.Errorf("error %q points at a line of a document the client never saw", msg)
			}
			if r.version != 1 {
				t.Errorf("ETag version %d, want 1", r.version)
			}
			if r.code == 405 && !strings.Contains(string(r.body), "GET") {
				t.Errorf("405 body %s", r.body)
			}
			nowRunning, nowFile := e.snapshot()
			if !bytes.Equal(nowRunning, running) {
				t.Errorf("the running configuration changed:\n%s", nowRunning)
			}
			if !bytes.Equal(nowFile, file) {
				t.Errorf("the file changed:\n%s", nowFile)
			}
			e.noTemp()
		})
	}
	e.t = t
	if e.sw.Version() != 1 {
		t.Errorf("version %d after refused requests, want 1", e.sw.Version())
	}
	if e.sw.PortNamed("web2") != -1 {
		t.Errorf("web2 got a port")
	}
}

func (b response) String() string { return string(b.body) }

// decode is the body of r as a T.
func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%v: %s", err, r.body)
	}
	return v
}

// TestControlChanges: each change is answered with the new version, in force
// at once (the pipeline decides by it) and in the file.
func TestControlChanges(t *testing.T) {
	e := newControlEnv(t, nil)
	var sc vswitch.Scratch
	sport := uint16(40000)
	// verdict is what the pipeline does with a new TCP connection.
	verdict := func(in int, src, dst ft.Host, dport uint16) vswitch.Result {
		sport++
		return e.sw.Process(in, ft.TCP(src, dst, sport, dport, "S", 1, 0, nil), &sc)
	}
	loadBack := func() *config.Config {
		t.Helper()
		e.agree()
		cfg, err := config.Load(e.file)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	version := uint64(1)
	expect := func(r response, code int) {
		t.Helper()
		if r.code != code {
			t.Fatalf("status %d, want %d: %s", r.code, code, r.body)
		}
		version++
		if r.version != version || e.sw.Version() != version {
			t.Fatalf("version %d (switch %d), want %d", r.version, e.sw.Version(), version)
		}
	}

	// Reads carry the version.
	if r := e.do("GET", "/v1/security-groups", ""); r.code != 200 || r.version != 1 {
		t.Fatalf("GET groups: %d %s", r.code, r.body)
	} else if groups := decode[[]GroupView](t, r); len(groups) != 3 || groups[2].Name != "default" || !slices.Equal(groups[0].Instances, []string{"web1"}) {
		t.Fatalf("groups %+v", groups)
	}

	// A rule: db1 accepts ssh from web1.
	if r := verdict(pWeb1, web1, db1, 22); r.Verdict != filter.Drop || r.Reason != filter.ReasonIngressPolicy {
		t.Fatalf("before: %v %v", r.Verdict, r.Reason)
	}
	r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1, `If-Match: "1"`)
	expect(r, 201)
	added := decode[RuleAdded](t, r)
	if added.Index != 2 || added.ID != "db/ingress/2" || *added.Rule.Network != "10.0.0.11/32" || *added.Rule.Description != "ssh from web1" {
		t.Errorf("answer %s", r.body)
	}
	if r := verdict(pWeb1, web1, db1, 22); r.Verdict != filter.Forward || e.sw.Policy().RuleName(r.Rule) != "db/ingress/2" {
		t.Fatalf("after adding the rule: %v %v %s", r.Verdict, r.Reason, e.sw.Policy().RuleName(r.Rule))
	}
	if g, _ := loadBack().Group("db"); len(g.Rules) != 3 || g.Rules[2].StartPort != 22 || g.Rules[2].Description != "ssh from web1" {
		t.Fatalf("file's db group: %+v", g)
	}

	// A CIDR that is not canonical is accepted with a warning naming the field.
	r = e.do("POST", "/v1/security-groups/db/rules", `{"flow-direction": "egress", "protocol": "udp", "start-port": 53, "end-port": 53, "network": "10.0.0.53/24"}`)
	expect(r, 201)
	added = decode[RuleAdded](t, r)
	if *added.Rule.Network != "10.0.0.0/24" || len(added.Warnings) != 1 || !strings.HasPrefix(added.Warnings[0], "network: ") {
		t.Errorf("canonicalised rule: %s", r.body)
	}
	// ICMP rule with type and code, on a group shown back as sent.
	r = e.do("POST", "/v1/security-groups/db/rules", `{"flow-direction": "ingress", "protocol": "icmp", "icmp": {"type": 8, "code": 0}, "security-group": "web"}`)
	expect(r, 201)
	if added = decode[RuleAdded](t, r); added.Index != 4 || *added.Rule.ICMP.Type != 8 || *added.Rule.ICMP.Code != 0 || *added.Rule.SecurityGroup != "web" {
		t.Errorf("icmp rule: %s", r.body)
	}
	if r := verdict(pWeb1, web1, db1, 22); r.Verdict != filter.Forward {
		t.Fatal("ssh refused")
	}

	// Deleting rule 2 (ssh): the next connection is refused; later rules move down.
	expect(e.do("DELETE", "/v1/security-groups/db/rules/2", ""), 200)
	if r := verdict(pWeb1, web1, db1, 22); r.Verdict != filter.Drop {
		t.Fatalf("after deleting the rule: %v %v", r.Verdict, r.Reason)
	}
	if g, _ := loadBack().Group("db"); len(g.Rules) != 4 || g.Rules[2].Protocol != config.ProtoUDP {
		t.Fatalf("file's db group: %+v", g.Rules)
	}
	r = e.do("GET", "/v1/security-groups/db", "")
	if r.code != 200 || r.version != version {
		t.Fatalf("GET db: %d %s", r.code, r.body)
	}
	if g := decode[GroupView](t, r); len(g.Rules) != 4 || *g.Rules[3].Protocol != "icmp" {
		t.Fatalf("db shown as %s", r.body)
	}

	// A new group with rules and sources; then an instance of it.
	r = e.do("POST", "/v1/security-groups", `{"name": "mgmt", "description": "bastions", "external-sources": ["198.51.100.0/24"],
		"rules": [{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "0.0.0.0/0"}]}`)
	expect(r, 201)
	if ch := decode[Changed](t, r); ch.Group == nil || ch.Group.Name != "mgmt" || len(ch.Group.Rules) != 1 || ch.Group.ExternalSources[0] != "198.51.100.0/24" {
		t.Fatalf("new group: %s", r.body)
	}
	if g, i := loadBack().Group("mgmt"); g == nil || i != 2 || g.Description != "bastions" {
		t.Fatalf("file's mgmt group: %+v at %d", g, i)
	}

	// A rule of the implicit default group (which the file does not list).
	expect(e.do("POST", "/v1/security-groups/default/rules", `{"flow-direction": "ingress", "protocol": "icmp", "network": "0.0.0.0/0"}`), 201)
	if g, _ := loadBack().Group("default"); len(g.Rules) != 1 {
		t.Fatalf("default: %+v", g)
	}

	// External sources: the outside host becomes a member of web, so db1
	// accepts it on 3306 (db's rule 0 names web).
	outside3306 := func() vswitch.Result { return verdict(pUplink, outside, db1, 3306) }
	if r := outside3306(); r.Verdict != filter.Drop {
		t.Fatalf("outside to db1 before: %v", r.Reason)
	}
	r = e.do("PUT", "/v1/security-groups/web/external-sources", `{"external-sources": ["203.0.113.0/24"]}`)
	expect(r, 200)
	if r := outside3306(); r.Verdict != filter.Forward {
		t.Fatalf("outside to db1 after adding the source: %v", r.Reason)
	}
	if g, _ := loadBack().Group("web"); len(g.ExternalSources) != 1 || g.ExternalSources[0].String() != "203.0.113.0/24" {
		t.Fatalf("file's web sources %v", g.ExternalSources)
	}
	expect(e.do("PUT", "/v1/security-groups/web/external-sources", `[]`), 200)
	if r := outside3306(); r.Verdict != filter.Drop {
		t.Fatalf("outside to db1 after clearing the sources: %v", r.Reason)
	}

	// An instance: it gets a port; removing it closes it.
	r = e.do("POST", "/v1/instances", `{"name": "bastion1", "mac": "02:00:00:00:00:31", "ipv4": "10.0.0.31/24", "ipv6": "fd00::31/64", "security-groups": ["mgmt"], "smtp-egress": true}`)
	expect(r, 201)
	if ch := decode[Changed](t, r); ch.Instance == nil || ch.Instance.TAP != "bastion1" || !ch.Instance.SMTPEgress || ch.Instance.IPv6 != "fd00::31/64" {
		t.Fatalf("new instance: %s", r.body)
	}
	bastion := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:31"), IP: netip.MustParseAddr("10.0.0.31")}
	p := e.sw.PortNamed("bastion1")
	if p < 0 {
		t.Fatal("bastion1 has no port")
	}
	if r := verdict(pWeb1, web1, bastion, 22); r.Verdict != filter.Forward || int(r.Out) != p {
		t.Fatalf("web1 to bastion1:22: %v %v", r.Verdict, r.Reason)
	}
	if in, _ := loadBack().Instance("bastion1"); in == nil || !in.SMTPEgress || in.SecurityGroups[0] != "mgmt" {
		t.Fatalf("file's bastion1 %+v", in)
	}
	// mgmt is now in use.
	if r := e.do("DELETE", "/v1/security-groups/mgmt", ""); r.code != 409 || !strings.Contains(r.error(), "instances bastion1") {
		t.Fatalf("deleting mgmt in use: %d %s", r.code, r.body)
	}
	// Membership: bastion1 moves to default, which lets only icmp in.
	r = e.do("PUT", "/v1/instances/bastion1/security-groups", `{"security-groups": ["default"]}`)
	expect(r, 200)
	if ch := decode[Changed](t, r); !slices.Equal(ch.Instance.SecurityGroups, []string{"default"}) {
		t.Fatalf("membership answer %s", r.body)
	}
	if r := verdict(pWeb1, web1, bastion, 22); r.Verdict != filter.Drop {
		t.Fatalf("web1 to bastion1:22 after leaving mgmt: %v", r.Reason)
	}
	// Now mgmt can go.
	expect(e.do("DELETE", "/v1/security-groups/mgmt", ""), 200)
	if g, _ := loadBack().Group("mgmt"); g != nil {
		t.Fatal("mgmt still in the file")
	}
	expect(e.do("DELETE", "/v1/instances/bastion1", "", `If-Match: "`+strconv.FormatUint(version, 10)+`"`), 200)
	if e.sw.PortNamed("bastion1") != -1 {
		t.Fatal("bastion1 still has a port")
	}
	if in, _ := loadBack().Instance("bastion1"); in != nil {
		t.Fatal("bastion1 still in the file")
	}
	r = e.do("GET", "/v1/instances", "")
	if list := decode[[]InstanceView](t, r); len(list) != 2 || r.version != version {
		t.Fatalf("instances %s", r.body)
	}
	// A group without anything, created and deleted.
	expect(e.do("POST", "/v1/security-groups", `{"name": "empty"}`), 201)
	expect(e.do("DELETE", "/v1/security-groups/empty", ""), 200)
	e.agree()
	e.noTemp()
}

// TestControlConntrack lists tracked connections with the instance names of
// both ends, filters them, and flushes the table.
func TestControlConntrack(t *testing.T) {
	e := newControlEnv(t, nil)
	var sc vswitch.Scratch
	e.sw.Process(pWeb1, ft.TCP(web1, db1, 40000, 3306, "S", 100, 0, nil), &sc)
	e.sw.Process(pDB1, ft.TCP(db1, web1, 3306, 40000, "SA", 500, 101, nil), &sc)
	e.sw.Process(pUplink, ft.TCP(outside, web1, 5555, 80, "S", 1, 0, nil), &sc)
	e.sw.Process(pWeb1, ft.ICMPEcho(web1, outside, 7, 1, true), &sc)

	list := func(query string) ConntrackView {
		t.Helper()
		r := e.do("GET", "/v1/conntrack"+query, "")
		if r.code != 200 {
			t.Fatalf("GET conntrack%s: %d %s", query, r.code, r.body)
		}
		return decode[ConntrackView](t, r)
	}
	all := list("")
	if len(all.Connections) != 3 || all.Total != 3 || all.Truncated || all.Limit != 1000 {
		t.Fatalf("all: %+v", all)
	}
	var db ConnView
	for _, c := range all.Connections {
		if c.To == "db1" {
			db = c
		}
	}
	if db.Key != "tcp 10.0.0.11:40000 > 10.0.0.21:3306" || db.From != "web1" || db.Protocol != "tcp" || db.State != "SYN_RECV" ||
		db.Packets != (ConnCounters{1, 1}) || db.Bytes.Original == 0 || db.Timeout <= 0 || !db.Allowed || db.SourcePort != 40000 || db.DestinationPort != 3306 {
		t.Errorf("web1 → db1: %+v", db)
	}
	for _, c := range []struct {
		query string
		n     int
	}{
		{"?instance=db1", 1}, {"?instance=web1", 3}, {"?instance=uplink", 2},
		{"?protocol=tcp", 2}, {"?protocol=icmp", 1}, {"?protocol=udp", 0}, {"?protocol=6", 2}, {"?protocol=all", 3},
		{"?address=10.0.0.21", 1}, {"?address=203.0.113.5", 2}, {"?address=10.0.0.11&protocol=icmp", 1},
		{"?instance=web1&limit=2", 2}, {"?limit=0", 3},
	} {
		got := list(c.query)
		if len(got.Connections) != c.n {
			t.Errorf("%s: %d connections, want %d: %+v", c.query, len(got.Connections), c.n, got.Connections)
		}
		if got.Truncated != (c.query == "?instance=web1&limit=2") {
			t.Errorf("%s: truncated %v", c.query, got.Truncated)
		}
	}
	r := e.do("DELETE", "/v1/conntrack", "")
	if r.code != 200 || decode[map[string]int](t, r)["flushed"] != 3 {
		t.Fatalf("flush: %d %s", r.code, r.body)
	}
	if got := list(""); len(got.Connections) != 0 || got.Total != 0 {
		t.Fatalf("after the flush: %+v", got)
	}
	if r := e.do("GET", "/v1/stats", ""); r.code != 200 || len(decode[map[string][]vswitch.PortStats](t, r)["ports"]) != 3 {
		t.Fatalf("stats: %s", r.body)
	}
}

// TestControlConcurrent: changes from many clients are serialised: each
// lands exactly once with its own version, none is lost, and the file
// never reads torn. Reloads in between do not lose them either.
func TestControlConcurrent(t *testing.T) {
	e := newControlEnv(t, nil)
	const n = 8
	// addRules adds n rules (ports base..base+n-1) to web from n clients at
	// once, with If-Match when ifMatch is set, and returns the answers.
	addRules := func(base int, ifMatch string) []response {
		var wg sync.WaitGroup
		results := make([]response, n)
		for i := range n {
			wg.Go(func() {
				body := fmt.Sprintf(`{"flow-direction": "ingress", "protocol": "tcp", "start-port": %d, "end-port": %d, "network": "0.0.0.0/0"}`, base+i, base+i)
				var h []string
				if ifMatch != "" {
					h = append(h, "If-Match: "+ifMatch)
				}
				results[i] = e.do("POST", "/v1/security-groups/web/rules", body, h...)
			})
		}
		wg.Wait()
		return results
	}
	// landed checks that each rule of ports base..base+n-1 is in force and
	// in the file exactly once.
	landed := func(base int) {
		t.Helper()
		e.agree()
		g, _ := e.sw.Config().Group("web")
		count := map[uint16]int{}
		for _, r := range g.Rules {
			count[r.StartPort]++
		}
		for i := range n {
			if c := count[uint16(base+i)]; c != 1 {
				t.Errorf("rule for port %d is there %d times", base+i, c)
			}
		}
	}
	versions := func(results []response) []uint64 {
		t.Helper()
		var vs []uint64
		for i, r := range results {
			if r.code != 201 {
				t.Errorf("client %d: %d %s", i, r.code, r.body)
				continue
			}
			if v := decode[RuleAdded](t, r).Version; v != r.version {
				t.Errorf("client %d: version %d in the body, %d in the ETag", i, v, r.version)
			}
			vs = append(vs, r.version)
		}
		slices.Sort(vs)
		return vs
	}

	// Alone: consecutive versions, one per change.
	if vs := versions(addRules(1000, "")); !slices.Equal(vs, []uint64{2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("versions %v, want 2-9", vs)
	}
	landed(1000)

	// With reloads (SIGHUP) and readers of the file in between: still each
	// change exactly once, and the file is always whole.
	stop := make(chan struct{})
	var others sync.WaitGroup
	others.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := config.Load(e.file); err != nil {
				t.Errorf("the file read torn: %v", err)
				return
			}
		}
	})
	others.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.w.ReloadFile(e.file); err != nil {
				t.Errorf("reload: %v", err)
				return
			}
		}
	})
	vs := versions(addRules(1100, ""))
	close(stop)
	others.Wait()
	if len(slices.Compact(vs)) != n {
		t.Errorf("versions %v are not distinct", vs)
	}
	landed(1100)
	if g, _ := e.sw.Config().Group("web"); len(g.Rules) != 2+2*n {
		t.Errorf("web has %d rules, want %d", len(g.Rules), 2+2*n)
	}

	// With the same If-Match, exactly one wins; the others are stale.
	base := e.sw.Version()
	won := 0
	for _, r := range addRules(2000, `"`+strconv.FormatUint(base, 10)+`"`) {
		switch r.code {
		case 201:
			won++
			if r.version != base+1 {
				t.Errorf("winner's version %d, want %d", r.version, base+1)
			}
		case 412:
		default:
			t.Errorf("%d %s", r.code, r.body)
		}
	}
	if won != 1 || e.sw.Version() != base+1 {
		t.Errorf("%d changes won (version %d → %d), want exactly 1", won, base, e.sw.Version())
	}
	e.agree()
	e.noTemp()
}

// failingStage wraps the real staged write with injected failures.
type failingStage struct {
	stageErr  error // the write of the temporary file fails
	renameErr error // the rename fails (renamed = false)
	syncErr   error // the rename succeeds, the directory sync fails
	crash     bool  // the temporary file is written, then nothing (a crash)
	before    func()
}

func (f *failingStage) stage(path string, data []byte) (source.StagedWrite, error) {
	if f.before != nil {
		f.before()
	}
	if f.stageErr != nil {
		return nil, f.stageErr
	}
	st, err := config.StageFileAtomic(path, data)
	if err != nil {
		return nil, err
	}
	return &failingCommit{st: st, f: f}, nil
}

type failingCommit struct {
	st *config.StagedFile
	f  *failingStage
}

func (c *failingCommit) Commit() (bool, error) {
	switch {
	case c.f.crash:
		return false, errors.New("crashed")
	case c.f.renameErr != nil:
		c.st.Abort()
		return false, c.f.renameErr
	case c.f.syncErr != nil:
		c.st.Commit()
		return true, c.f.syncErr
	}
	return c.st.Commit()
}

func (c *failingCommit) Abort() { c.st.Abort() }

// TestControlWriteFailures: the file and the policy in force never disagree
// after a failed write; a crash between writing and renaming leaves the
// old file whole.
func TestControlWriteFailures(t *testing.T) {
	t.Run("write fails", func(t *testing.T) {
		f := &failingStage{stageErr: errors.New("no space left on device")}
		e := newControlEnv(t, f.stage)
		running, file := e.snapshot()
		r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1)
		if r.code != 500 || !strings.Contains(r.error(), "no space left on device; nothing changed") {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if nr, nf := e.snapshot(); !bytes.Equal(nr, running) || !bytes.Equal(nf, file) || e.sw.Version() != 1 {
			t.Fatal("changed")
		}
		e.noTemp()
	})
	t.Run("rename fails", func(t *testing.T) {
		f := &failingStage{renameErr: errors.New("read-only file system")}
		e := newControlEnv(t, f.stage)
		running, file := e.snapshot()
		r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1)
		if r.code != 500 || !strings.Contains(r.error(), "the change was undone") {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if nr, nf := e.snapshot(); !bytes.Equal(nr, running) || !bytes.Equal(nf, file) {
			t.Fatal("the running configuration or the file changed")
		}
		// Applied then undone: two versions on, and the policy is the old one.
		if e.sw.Version() != 3 || r.version != 3 {
			t.Errorf("version %d (ETag %d), want 3", e.sw.Version(), r.version)
		}
		var sc vswitch.Scratch
		if res := e.sw.Process(pWeb1, ft.TCP(web1, db1, 40000, 22, "S", 1, 0, nil), &sc); res.Verdict != filter.Drop {
			t.Errorf("the undone rule is in force")
		}
		e.noTemp()
	})
	t.Run("rename fails after adding an instance", func(t *testing.T) {
		f := &failingStage{renameErr: errors.New("read-only file system")}
		e := newControlEnv(t, f.stage)
		r := e.do("POST", "/v1/instances", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "security-groups": ["web"]}`)
		if r.code != 500 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if e.sw.PortNamed("web2") != -1 {
			t.Error("web2 kept its port")
		}
		if cfg, _ := config.Load(e.file); cfg == nil || len(cfg.Instances) != 2 {
			t.Error("the file changed")
		}
	})
	t.Run("directory sync fails", func(t *testing.T) {
		f := &failingStage{syncErr: errors.New("EIO")}
		e := newControlEnv(t, f.stage)
		r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1)
		if r.code != 201 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		e.agree() // the new file is in place and in force
	})
	t.Run("crash between write and rename", func(t *testing.T) {
		// What a crash leaves: the temporary file written and synced, not
		// renamed. The file is the old one, whole.
		dir := t.TempDir()
		path := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(path, []byte(testConfig), 0o640); err != nil {
			t.Fatal(err)
		}
		if _, err := config.StageFileAtomic(path, []byte("garbage: [")); err != nil {
			t.Fatal(err)
		}
		if data, _ := os.ReadFile(path); string(data) != testConfig {
			t.Fatal("the file changed before the rename")
		}
		// A switch restarted on it comes back with the old policy, and the
		// leftover does not stop the next change.
		e := newControlEnv(t, nil)
		if _, err := config.StageFileAtomic(e.file, []byte("garbage: [")); err != nil {
			t.Fatal(err)
		}
		if r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1); r.code != 201 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		e.agree()
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("mode %v %v", fi.Mode(), err)
		}
	})
	t.Run("reload in between", func(t *testing.T) {
		// A reload that does not take the change lock (sw.Apply) slips in
		// after the change read the configuration: the change fails as
		// stale instead of overwriting it, and the file is untouched.
		var e *controlEnv
		f := &failingStage{}
		f.before = func() {
			cfg, err := config.Load(e.file)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.sw.Apply(cfg); err != nil {
				t.Fatal(err)
			}
		}
		e = newControlEnv(t, f.stage)
		_, file := e.snapshot()
		r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1)
		if r.code != 412 || !strings.Contains(r.error(), "reloaded") {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if _, nf := e.snapshot(); !bytes.Equal(nf, file) {
			t.Error("the file changed")
		}
		if g, _ := e.sw.Config().Group("db"); len(g.Rules) != 2 {
			t.Error("the rule is in force")
		}
		e.noTemp()
	})
	t.Run("no file", func(t *testing.T) {
		cfg, err := config.Parse("", []byte(testConfig))
		if err != nil {
			t.Fatal(err)
		}
		sw, err := vswitch.New(cfg, vswitch.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w := source.NewWriter(sw, source.Options{})
		e := &controlEnv{t: t, sw: sw, w: w, h: Handler(w)}
		if r := e.do("POST", "/v1/security-groups/db/rules", sshFromWeb1); r.code != 201 {
			t.Fatalf("%d %s", r.code, r.body)
		}
		if g, _ := sw.Config().Group("db"); len(g.Rules) != 3 {
			t.Error("not in force")
		}
	})
}

// TestControlVhostUserInstance: an instance with a vhost-user port is added
// through the API with the file's field names, shown, and written back.
func TestControlVhostUserInstance(t *testing.T) {
	e := newControlEnv(t, nil)
	r := e.do("POST", "/v1/instances", `{"name": "vm2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "vhost-user": {"socket": "/run/vh/vm2.sock", "mode": "client"}}`)
	if r.code != 201 {
		t.Fatalf("POST: %d %s", r.code, r.body)
	}
	var ch Changed
	if err := json.Unmarshal([]byte(r.body), &ch); err != nil {
		t.Fatal(err)
	}
	if vu := ch.Instance.VhostUser; vu == nil || vu.Socket != "/run/vh/vm2.sock" || vu.Mode != "client" || ch.Instance.TAP != "" {
		t.Fatalf("instance view %+v", ch.Instance)
	}
	e.agree()
	cfg, err := config.Load(e.file)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := cfg.Instance("vm2")
	if in == nil || in.VhostUser == nil || in.VhostUser.Mode != config.VhostClient || in.TAP != "" {
		t.Fatalf("written back as %+v", in)
	}
}
