package control

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/source"
)

// FuzzControlRequest sends one arbitrary request to the control API of a
// switch in its initial state (fuzzControlConfig, read from a file in a
// temporary directory, so that changes are written back).
//
// Input: a method (fuzzMethods[m%5]), the request target as a client puts it
// on the request line (path and query), an If-Match header ("" sends none)
// and the body. The request is parsed from its wire form with
// http.ReadRequest, as the server reads it; a target or header value the
// server would not accept (control bytes, spaces) is skipped.
//
// Invariants:
//
//   - ServeHTTP does not panic;
//   - the status is one of 200, 201, 400, 404, 405, 409, 412 (413 only for a
//     body over maxBody); never 500: OpenPort never fails here;
//   - the body is JSON (Content-Type application/json), and a 4xx has a
//     non-empty "error" string; a 405's Allow header lists the methods the
//     resource takes (GET, POST, PUT, DELETE), not the one refused;
//   - the response carries an ETag that is the switch's current version;
//   - after a 4xx the running configuration (config.Marshal) and the file's
//     bytes are as before, the version too, and no temporary file is left;
//   - after a 2xx that changed the version, it moved by exactly one, the
//     body's "version" is the ETag's, the file loads and holds the running
//     configuration (the same bytes as its Marshal, and Marshal of what Load
//     reads back is the same again), and no temporary file is left; after a
//     2xx that did not, the running configuration and the file are as
//     before;
//   - after every request exactly one port is open per instance, on its
//     TAP, and one for the uplink: no port leaks, none is missing;
//   - a 2xx to a change with dry-run=true carries "dry-run" at the version
//     in force, and changed nothing (the version, the running
//     configuration, the file: as above).
//
// It found two bugs, both fixed: ServeMux answered unclean paths and "*"
// itself (a redirect or a bare 400, without ETag or JSON), and a 405's Allow
// header was parsed out of a message that holds the client's path.
//
// Replay the corpus with go test -run FuzzControlRequest ./switch/; fuzz
// with go test -run '^$' -fuzz FuzzControlRequest -parallel 1 ./switch/.
func FuzzControlRequest(f *testing.F) {
	for _, s := range controlFuzzSeeds() {
		f.Add(s.m, s.path, s.ifMatch, []byte(s.body))
	}
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	f.Cleanup(func() {
		if controlFuzzReused != nil {
			controlFuzzReused.close()
			controlFuzzReused = nil
		}
	})
	f.Fuzz(func(t *testing.T, m byte, target, ifMatch string, body []byte) {
		env := controlFuzzEnvFor(t, fuzzing)
		defer func() {
			if fuzzing && !t.Failed() {
				controlFuzzReused = env
			} else {
				env.close()
			}
		}()
		env.run(t, fuzzMethods[int(m)%len(fuzzMethods)], target, ifMatch, body)
	})
}

// controlFuzzReused is the switch a fuzzing worker reuses from input to
// input, reset by controlFuzzEnv.reset: a new switch costs a millisecond
// (New allocates its fragment table), more than the rest of an input.
// Inputs the fuzzer reports are replayed as tests, on a new switch
// (TestFuzzControlReset checks that the two answer alike).
var controlFuzzReused *controlFuzzEnv

// controlFuzzEnvFor is a switch in its initial state for one input: the
// reused one, reset, when reuse is set, else a new one.
func controlFuzzEnvFor(t *testing.T, reuse bool) *controlFuzzEnv {
	env := controlFuzzReused
	controlFuzzReused = nil
	if !reuse || env == nil {
		return newControlFuzzEnv(t)
	}
	if err := env.reset(); err != nil {
		env.close()
		t.Fatal(err)
	}
	return env
}

// TestFuzzControlReset: a reused switch, once reset, answers every seed as a
// new one does, and ends up with the same configuration file.
func TestFuzzControlReset(t *testing.T) {
	reused := newControlFuzzEnv(t)
	defer reused.close()
	type outcome struct {
		code       int
		etag, body string
		file       string
	}
	play := func(env *controlFuzzEnv, s controlFuzzSeed) outcome {
		req, ok := controlFuzzRequest(fuzzMethods[int(s.m)%len(fuzzMethods)], s.path, s.ifMatch, []byte(s.body))
		if !ok {
			return outcome{}
		}
		rec := httptest.NewRecorder()
		env.h.ServeHTTP(rec, req)
		file, err := os.ReadFile(env.file)
		if err != nil {
			t.Fatal(err)
		}
		// A dry run's time is the clock's, not the switch's state.
		body := elapsedField.ReplaceAllString(rec.Body.String(), `"elapsed-ms": 0`)
		return outcome{rec.Code, rec.Header().Get("ETag"), body, string(file)}
	}
	for i, s := range controlFuzzSeeds() {
		fresh := newControlFuzzEnv(t)
		want := play(fresh, s)
		fresh.close()
		if err := reused.reset(); err != nil {
			t.Fatal(err)
		}
		if got := play(reused, s); got != want {
			t.Errorf("seed %d (%d %s): on a new switch %+v\non a reset one %+v", i, s.m, s.path, want, got)
		}
	}
}

var elapsedField = regexp.MustCompile(`"elapsed-ms": [0-9.e+-]+`)

var fuzzMethods = [...]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch}

// fuzzControlConfig is small but has one of everything a request can touch:
// a group with a description, external sources and rules of several kinds
// (one naming another group), a group no one uses (deletable), the implicit
// default group with a member, and instances with and without TAP, IPv6,
// smtp-egress and several groups.
const fuzzControlConfig = `
switch:
  dhcp: {dns: [10.0.0.53], lease-time: 3600}
uplink: {port: up0, gateway: 10.0.0.1/24}
security-groups:
  - name: web
    description: front ends
    external-sources: [203.0.113.0/24]
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 80, end-port: 443, network: 0.0.0.0/0, description: http}
      - {flow-direction: ingress, protocol: icmp, icmp: {type: 8, code: 0}, network: 0.0.0.0/0}
      - {flow-direction: egress, protocol: icmpv6, icmp: {type: 128}, network: "fd00::/64"}
  - name: db
    rules:
      - {flow-direction: ingress, protocol: tcp, start-port: 3306, end-port: 3306, security-group: web}
      - {flow-direction: egress, protocol: udp, start-port: 53, end-port: 53, network: 10.0.0.53/32}
  - name: spare
    description: unused
instances:
  - {name: web1, mac: "02:00:00:00:00:11", ipv4: 10.0.0.11/24, ipv6: "fd00::11/64", security-groups: [web]}
  - {name: db1, tap: tap-db1, mac: "02:00:00:00:00:21", ipv4: 10.0.0.21/24, security-groups: [db, web], smtp-egress: true}
  - {name: lone, mac: "02:00:00:00:00:31", ipv4: 10.0.0.31/24}
`

// controlFuzzEnv is a switch of fuzzControlConfig read from a file of its
// own, its control API, and the devices it holds open.
type controlFuzzEnv struct {
	sw   *vswitch.Switch
	h    http.Handler
	dir  string
	file string

	mu   sync.Mutex
	open map[string]int // device name → ports open on it

	cfg           *config.Config // the initial configuration
	running, data []byte         // the same as Marshal writes it, and the file's bytes
}

func newControlFuzzEnv(t *testing.T) *controlFuzzEnv {
	t.Helper()
	dir, err := controlFuzzDir()
	if err != nil {
		t.Fatal(err)
	}
	env := &controlFuzzEnv{dir: dir, file: filepath.Join(dir, "sgswitch.yaml"), open: map[string]int{}, data: []byte(fuzzControlConfig)}
	if err := os.WriteFile(env.file, env.data, 0o644); err != nil {
		env.close()
		t.Fatal(err)
	}
	cfg, err := config.Load(env.file)
	if err != nil {
		env.close()
		t.Fatal(err)
	}
	env.sw, err = vswitch.New(cfg, vswitch.Options{OpenPort: func(spec port.Spec) (port.Port, error) {
		device := spec.Device
		env.mu.Lock()
		defer env.mu.Unlock()
		env.open[device]++
		return &controlFuzzPort{Mem: port.NewMem(device, 0), env: env}, nil
	}})
	if err != nil {
		env.close()
		t.Fatal(err)
	}
	env.cfg, env.h = cfg, Handler(source.NewWriter(env.sw, source.Options{}))
	if env.running, err = config.Marshal(cfg); err != nil {
		env.close()
		t.Fatal(err)
	}
	return env
}

// reset puts the switch back in the state New leaves it in, as far as the
// control API can tell (the configuration, version 1, one new port per
// instance and the uplink, with the same ids), and the file back to its
// initial bytes.
func (env *controlFuzzEnv) reset() error {
	s := env.sw
	if s.Version() == 1 {
		// Nothing changed it (a refused change leaves the file alone, as
		// run checks); nothing the API shows depends on anything else.
		return nil
	}
	if err := s.Reset(env.cfg); err != nil {
		return err
	}
	entries, err := os.ReadDir(env.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(env.dir, e.Name())); err != nil {
			return err
		}
	}
	return os.WriteFile(env.file, env.data, 0o644)
}

func (env *controlFuzzEnv) close() {
	if env.sw != nil {
		env.sw.Close()
	}
	os.RemoveAll(env.dir)
}

// controlFuzzPort is an in-memory port that tells its switch's env when it
// is closed.
type controlFuzzPort struct {
	*port.Mem
	env  *controlFuzzEnv
	once sync.Once
}

func (p *controlFuzzPort) Close() error {
	p.once.Do(func() {
		p.env.mu.Lock()
		defer p.env.mu.Unlock()
		p.env.open[p.Name()]--
	})
	return p.Mem.Close()
}

// controlFuzzDir is a new empty directory for the input's configuration
// file: on tmpfs (/dev/shm) when there is one, because every change syncs
// the file and its directory, which on a busy disk costs tens of
// milliseconds — a hundred times the rest of an input.
func controlFuzzDir() (string, error) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "sgswitch-fuzz-"); err == nil {
			return dir, nil
		}
	}
	return os.MkdirTemp("", "sgswitch-fuzz-")
}

// controlFuzzRequest builds the request as the server would read it off the
// socket; ok is false when the server would not get that far.
func controlFuzzRequest(method, target, ifMatch string, body []byte) (*http.Request, bool) {
	if target == "" || strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, false
	}
	if strings.ContainsFunc(ifMatch, func(r rune) bool { return (r < ' ' && r != '\t') || r == 0x7f }) {
		return nil, false
	}
	var raw bytes.Buffer
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: sgswitch\r\nContent-Length: %d\r\n", method, target, len(body))
	if ifMatch != "" {
		fmt.Fprintf(&raw, "If-Match: %s\r\n", ifMatch)
	}
	raw.WriteString("\r\n")
	raw.Write(body)
	req, err := http.ReadRequest(bufio.NewReader(&raw))
	if err != nil || req.RequestURI != target {
		return nil, false
	}
	return req, true
}

// run sends one request and checks the invariants (see FuzzControlRequest).
func (env *controlFuzzEnv) run(t *testing.T, method, target, ifMatch string, body []byte) {
	req, ok := controlFuzzRequest(method, target, ifMatch, body)
	if !ok {
		return
	}
	version := env.sw.Version()
	if version != 1 {
		t.Fatalf("the switch is at version %d before the request", version)
	}

	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	code, out := rec.Code, rec.Body.Bytes()
	shown := body
	if len(shown) > 1024 {
		shown = shown[:1024]
	}
	what := fmt.Sprintf("%s %q If-Match %q body %q (%d bytes): %d %s", method, target, ifMatch, shown, len(body), code, out)
	t.Log(what)

	now := env.sw.Version()
	running, err := config.Marshal(env.sw.Config())
	if err != nil {
		t.Fatalf("%s: Marshal of the running configuration: %v", what, err)
	}
	file, err := os.ReadFile(env.file)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	env.checkPorts(t, what)
	if entries, err := os.ReadDir(env.dir); err != nil || len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("%s: the directory holds %q (%v), want only the configuration file", what, names, err)
	}

	switch code {
	case 200, 201, 400, 404, 405, 409, 412:
	case 413:
		if len(body) <= maxBody {
			t.Fatalf("%s: 413 for a body of %d bytes", what, len(body))
		}
	default:
		t.Fatalf("status %d: %s", code, what)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if !json.Valid(out) {
		t.Fatalf("%s: the body is not JSON", what)
	}
	if code >= 400 {
		var e struct {
			Error *string `json:"error"`
		}
		if err := json.Unmarshal(out, &e); err != nil || e.Error == nil || strings.TrimSpace(*e.Error) == "" {
			t.Fatalf("%s: no \"error\" (%v)", what, err)
		}
		if code == 405 {
			// Allow lists the methods the resource takes, and not this one.
			allow := rec.Header().Get("Allow")
			for _, m := range strings.Split(allow, ", ") {
				if m == method || !slices.Contains([]string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}, m) {
					t.Errorf("%s: 405 with Allow %q", what, allow)
					break
				}
			}
		}
	}
	if tag := rec.Header().Get("ETag"); tag != etag(now) {
		t.Errorf("%s: ETag %q, the version is %d", what, tag, now)
	}

	// A dry run is a change that is not made; a read has nothing to try and
	// answers as always.
	if dry := req.URL.Query().Get("dry-run") == "true"; dry && method != http.MethodGet && code < 300 {
		var d struct {
			DryRun *DryRunView `json:"dry-run"`
		}
		if err := json.Unmarshal(out, &d); err != nil || d.DryRun == nil || d.DryRun.Version != version || now != version {
			t.Errorf("%s: a dry run answered without its dry run at version %d, or changed the version to %d (%v)", what, version, now, err)
		}
	}
	if code >= 400 || now == version {
		if now != version {
			t.Errorf("%s: version %d → %d", what, version, now)
		}
		if !bytes.Equal(running, env.running) {
			t.Errorf("%s: the running configuration changed:\n%s", what, running)
		}
		if !bytes.Equal(file, env.data) {
			t.Errorf("%s: the file changed:\n%s", what, file)
		}
		return
	}

	if now != version+1 {
		t.Errorf("%s: version %d → %d, want one change", what, version, now)
	}
	var ch struct {
		Version *uint64 `json:"version"`
	}
	if err := json.Unmarshal(out, &ch); err != nil || ch.Version == nil || *ch.Version != now {
		t.Errorf("%s: the body's version is not %d (%v)", what, now, err)
	}
	if !bytes.Equal(file, running) {
		t.Errorf("%s: the file and the running configuration differ\nfile:\n%s\nrunning:\n%s", what, file, running)
	}
	loaded, err := config.Load(env.file)
	if err != nil {
		t.Fatalf("%s: the file does not load: %v\n%s", what, err, file)
	}
	if again, err := config.Marshal(loaded); err != nil || !bytes.Equal(again, running) {
		t.Errorf("%s: the file loads as another configuration (%v):\n%s\nrunning:\n%s", what, err, again, running)
	}
}

// checkPorts: the switch holds exactly one open port per instance (on its
// TAP) and one for the uplink, and no other device is open.
func (env *controlFuzzEnv) checkPorts(t *testing.T, what string) {
	t.Helper()
	want := map[string]int{}
	cfg := env.sw.Config()
	for _, in := range cfg.Instances {
		want[in.TAP]++
		if env.sw.PortNamed(in.Name) < 0 {
			t.Errorf("%s: instance %s has no port", what, in.Name)
		}
	}
	if cfg.Uplink != nil {
		want[cfg.Uplink.Port]++
	}
	env.mu.Lock()
	defer env.mu.Unlock()
	for dev, n := range env.open {
		if n != want[dev] {
			t.Errorf("%s: %d ports open on %q, want %d", what, n, dev, want[dev])
		}
	}
	for dev, n := range want {
		if env.open[dev] != n {
			t.Errorf("%s: %d ports open on %q, want %d", what, env.open[dev], dev, n)
		}
	}
}

type controlFuzzSeed struct {
	m             byte
	path, ifMatch string
	body          string
}

// controlFuzzSeeds are every route with valid and invalid bodies, the
// routes with odd names, indices and escapes, and If-Match variants.
func controlFuzzSeeds() []controlFuzzSeed {
	const (
		get, post, put, del, patch = 0, 1, 2, 3, 4
	)
	var seeds []controlFuzzSeed
	add := func(m byte, path, ifMatch, body string) {
		seeds = append(seeds, controlFuzzSeed{m, path, ifMatch, body})
	}

	// Every route, every method, no body.
	paths := []string{
		"/v1/stats", "/v1/security-groups", "/v1/security-groups/web", "/v1/security-groups/spare",
		"/v1/security-groups/default", "/v1/security-groups/web/rules", "/v1/security-groups/web/rules/0",
		"/v1/security-groups/db/rules/1", "/v1/security-groups/web/external-sources",
		"/v1/instances", "/v1/instances/web1", "/v1/instances/lone", "/v1/instances/db1/security-groups",
		"/v1/conntrack", "/v1/conntrack?instance=web1&protocol=tcp&address=10.0.0.11&limit=5",
	}
	for _, p := range paths {
		for m := range byte(len(fuzzMethods)) {
			add(m, p, "", "")
		}
	}
	// Odd targets.
	for _, p := range []string{
		"/", "/v1", "/v1/", "/v2/stats", "/v1/stats/", "/v1/security-groups/", "/v1/instances/",
		"/v1/security-groups/nope", "/v1/security-groups/WEB", "/v1/security-groups/web%2Fx",
		"/v1/security-groups/%77eb", "/v1/security-groups/%", "/v1/security-groups/%zz",
		"/v1/security-groups/web/rules/", "/v1/security-groups/web/rules/-1", "/v1/security-groups/web/rules/01",
		"/v1/security-groups/web/rules/+1", "/v1/security-groups/web/rules/3", "/v1/security-groups/web/rules/99999999999999999999",
		"/v1/security-groups/web/rules/0x1", "/v1/security-groups/web/rules/0/", "/v1/security-groups/default/rules/0",
		"/v1/instances/web1/", "/v1/instances/uplink", "/v1/instances/%00", "/v1/instances/web1%20",
		"/v1//stats", "//v1/stats", "/v1/./stats", "/v1/instances/../stats", "/v1/security-groups/%2e%2e",
		"/v1/stats?x=1", "/v1/conntrack?port=1", "/v1/conntrack?limit=-1", "/v1/conntrack?protocol=300",
		"/v1/conntrack?protocol=icmpv6&address=fd00::11", "/v1/conntrack?address=10.0.0.300", "/v1/conntrack?instance=nope",
		"/v1/conntrack?instance=lone", "/v1/conntrack?%zz", "/v1/conntrack?limit=0",
		"http://sgswitch/v1/stats", "*", "v1/stats",
		"/v1/security-groups/a;%20it%20takes%20PATCH", "/v1/instances/%0d%0aX:%20y",
	} {
		add(get, p, "", "")
		add(del, p, "", "")
	}
	add(patch, "/v1/security-groups/web", "", `{"description": "x"}`)
	add(patch, "/v1/security-groups/a;%20it%20takes%20PATCH", "", "")
	add(put, "/v1/instances/%0d%0aX:%20y;%20it%20takes%20", "", "")

	rule := `{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.0/8", "description": "ssh"}`
	full := `{"flow-direction": "egress", "protocol": "icmp", "icmp": {"type": 3, "code": 4}, "security-group": "db", "description": "frag needed"}`
	bodies := map[string][]string{
		"/v1/security-groups": {
			`{"name": "ops"}`,
			`{"name": "ops", "description": "operators", "external-sources": ["198.51.100.0/24", "2001:db8::/32"], "rules": [` + rule + `, ` + full + `]}`,
			`{"name": "ops", "rules": [{"flow-direction": "ingress", "protocol": "udp", "start-port": 53, "end-port": 53, "security-group": "ops"}]}`,
			`{"name": "ops", "rules": []}`, `{"name": "ops", "external-sources": []}`, `{"name": "ops", "external-sources": null}`,
			`{"name": "web"}`, `{"name": "default"}`, `{"name": ""}`, `{"name": "a b"}`, `{"name": "uplink"}`, `{"description": "x"}`,
			`{"name": "ops", "rules": [{"flow-direction": "ingress"}]}`, `{"name": "ops", "rules": [` + rule + `, ` + rule + `]}`,
			`{"name": "ops", "external-sources": ["10.0.0.1/8"]}`, `{"name": "ops", "external-sources": ["x"]}`,
			`{"name": "ops", "bogus": 1}`, `{"name": 7}`, `[]`, `null`, `{}`, `{"name": "ops"} {}`, `{"name": "ops"`, ``, "\xff",
			`{"name": "ops", "description": "` + strings.Repeat("d", 300) + `"}`,
		},
		"/v1/security-groups/web/rules": {
			rule, full,
			`{"flow-direction": "ingress", "protocol": "all", "network": "::/0"}`,
			`{"flow-direction": "egress", "protocol": "udp", "start-port": 1, "end-port": 65535, "network": "10.0.0.53/24"}`,
			`{"flow-direction": "ingress", "protocol": "icmpv6", "icmp": {"type": -1, "code": -1}, "network": "fd00::/8"}`,
			`{"flow-direction": "ingress", "protocol": "icmp", "icmp": {}, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "ingress", "protocol": "icmp", "icmp": {"type": 256}, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "ingress", "protocol": "icmp", "icmp": {"code": 1}, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "ingress", "protocol": "gre", "security-group": "web"}`,
			`{"flow-direction": "ingress", "protocol": "esp", "security-group": "default"}`,
			`{"flow-direction": "ingress", "protocol": "ah", "network": "0.0.0.0/0", "security-group": "web"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 80, "end-port": 443, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 0, "end-port": 70000, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 9223372036854775807, "end-port": -9223372036854775808, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 1e3, "end-port": 1.5, "network": "0.0.0.0/0"}`,
			`{"flow-direction": "sideways", "protocol": "TCP", "network": "0.0.0.0/0"}`,
			`{"flow-direction": null, "protocol": null, "network": null}`,
			`{"flow-direction": "ingress", "protocol": "ipip", "network": "10.0.0.0/33"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.11"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.0/8", "description": "\u0000\n: ': {x}"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.0/8", "description": "#"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.0/8", "description": "` + strings.Repeat("é", 200) + `"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.0/8", "Description": "case"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": 22, "end-port": 22, "security-group": "nope"}`,
			`{"flow-direction": "ingress", "flow-direction": "egress", "protocol": "tcp", "start-port": 22, "end-port": 22, "network": "10.0.0.0/8"}`,
			`{"flow-direction": "ingress", "protocol": "tcp", "start-port": "22", "end-port": 22, "network": "10.0.0.0/8"}`,
			`{"icmp": 5}`, `{"icmp": {"type": "8"}}`, `[` + rule + `]`, `"x"`, `1`, `true`,
		},
		"/v1/security-groups/web/external-sources": {
			`{"external-sources": ["198.51.100.0/24"]}`, `["198.51.100.7/24", "2001:db8::/32"]`, `[]`, `{"external-sources": []}`,
			`{"external-sources": null}`, `null`, `{}`, `["x"]`, `["10.0.0.0/8", "10.0.0.0/8"]`, `["0.0.0.0/0"]`, `[1]`,
			`{"external-sources": "198.51.100.0/24"}`, `["198.51.100.0/24"] []`, `[ "::ffff:10.0.0.0/104" ]`, ` [] `,
		},
		"/v1/instances": {
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "tap": "tap-web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "ipv6": "fd00::12/64", "security-groups": ["web", "db"], "smtp-egress": true}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "security-groups": ["default"], "smtp-egress": false}`,
			`{"name": "web2", "mac": "02:00:00:00:00:11", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.11/24"}`,
			`{"name": "web2", "tap": "up0", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "tap": "tap-db1", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "ipv6": "fd00::11/64"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "192.168.0.1/24"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.1/24"}`,
			`{"name": "web2", "mac": "02-00-00-00-00-12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "mac": "00:00:00:00:00:00", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "security-groups": []}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "security-groups": ["nope"]}`,
			`{"name": "web1", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "uplink", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "a-very-long-instance-name-that-is-no-tap", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "tap": "", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`,
			`{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24", "smtp-egress": "yes"}`,
			`{"mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`, `{"name": "web2"}`, `{"name": null}`, `{}`, `[]`,
		},
		"/v1/instances/web1/security-groups": {
			`{"security-groups": ["db"]}`, `["web", "db", "spare", "default"]`, `["default"]`, `[]`, `{"security-groups": []}`,
			`null`, `{}`, `{"security-groups": null}`, `["nope"]`, `["web", "web"]`, `[""]`, `{"groups": ["web"]}`, `["web"] x`,
		},
	}
	for path, list := range bodies {
		m := byte(post)
		if strings.HasSuffix(path, "external-sources") || strings.HasSuffix(path, "/security-groups") && path != "/v1/security-groups" {
			m = put
		}
		for _, b := range list {
			add(m, path, "", b)
		}
	}
	// The same bodies elsewhere: groups and rules of other groups, other instances.
	add(post, "/v1/security-groups/default/rules", "", rule)
	add(post, "/v1/security-groups/spare/rules", "", full)
	add(post, "/v1/security-groups/nope/rules", "", rule)
	add(put, "/v1/security-groups/default/external-sources", "", `["198.51.100.0/24"]`)
	add(put, "/v1/security-groups/spare/external-sources", "", `[]`)
	add(put, "/v1/instances/lone/security-groups", "", `["spare"]`)
	add(put, "/v1/instances/nope/security-groups", "", `["web"]`)
	add(post, "/v1/security-groups/web", "", rule)
	add(put, "/v1/instances/web1", "", `{"name": "web1"}`)
	// Bodies at and over the limit.
	add(post, "/v1/security-groups/web/rules", "", rule[:len(rule)-1]+strings.Repeat(" ", maxBody-len(rule))+"}")
	add(post, "/v1/security-groups/web/rules", "", rule[:len(rule)-1]+strings.Repeat(" ", maxBody+1-len(rule))+"}")

	// If-Match: the current version, another one, lists, weak tags, nonsense.
	for _, im := range []string{`"1"`, `1`, `"2"`, `W/"1"`, `"2", "1"`, `*`, `"0"`, `""`, `yesterday`, `"18446744073709551616"`, ` "1" `, `"1",`} {
		add(post, "/v1/security-groups", im, `{"name": "ops"}`)
		add(del, "/v1/security-groups/spare", im, "")
	}
	add(del, "/v1/security-groups/web/rules/2", `"1"`, "")
	add(del, "/v1/instances/lone", `"1"`, "")
	add(get, "/v1/security-groups", `"7"`, "")
	add(put, "/v1/instances/db1/security-groups", `"1"`, `["db"]`)

	// Dry runs of every change, and their parameters.
	for _, dr := range []string{"?dry-run=true", "?dry-run=true&limit=0", "?dry-run=true&limit=1", "?dry-run=false", "?dry-run=1", "?limit=2", "?dry-run=true&dry-run=false", "?dry-run=true&x=1"} {
		add(del, "/v1/security-groups/db/rules/0"+dr, "", "")
		add(post, "/v1/security-groups/web/rules"+dr, "", rule)
		add(post, "/v1/security-groups"+dr, "", `{"name": "ops"}`)
		add(del, "/v1/security-groups/spare"+dr, `"1"`, "")
		add(put, "/v1/security-groups/web/external-sources"+dr, "", `[]`)
		add(put, "/v1/instances/web1/security-groups"+dr, "", `["db"]`)
		add(post, "/v1/instances"+dr, "", `{"name": "web2", "mac": "02:00:00:00:00:12", "ipv4": "10.0.0.12/24"}`)
		add(del, "/v1/instances/lone"+dr, "", "")
	}
	add(post, "/v1/security-groups/web/rules?dry-run=true", "", `{"flow-direction": "sideways"}`)
	add(post, "/v1/security-groups/web/rules?dry-run=true", `"2"`, rule)
	// Whole files (PUT /v1/configuration), as they are, changed, broken.
	for _, q := range []string{"", "?dry-run=true", "?file=new.yaml", "?file=new.yaml&dry-run=true", "?file=", "?dry-run=true&limit=0"} {
		add(put, "/v1/configuration"+q, "", fuzzControlConfig)
		add(put, "/v1/configuration"+q, "", strings.Replace(fuzzControlConfig, "  - {name: lone, mac: \"02:00:00:00:00:31\", ipv4: 10.0.0.31/24}\n", "", 1))
		add(put, "/v1/configuration"+q, "", fuzzControlConfig+"  - {name: web2, mac: \"02:00:00:00:00:12\", ipv4: 10.0.0.12/24}\n")
		add(put, "/v1/configuration"+q, "", "instances: 7\n")
		add(put, "/v1/configuration"+q, "", "")
	}
	add(put, "/v1/configuration", `"1"`, strings.Replace(fuzzControlConfig, "start-port: 3306, end-port: 3306", "start-port: 3307, end-port: 3307", 1))
	add(put, "/v1/configuration", `"2"`, fuzzControlConfig)
	add(get, "/v1/configuration", "", "")
	return seeds
}
