package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/source"
)

// The control API (SPEC §8). Every response carries the configuration's
// version as ETag; a change with If-Match of another version is refused
// with 412. Errors are {"error": "..."} with a 4xx status (5xx when the
// switch could not carry out a valid change); refusals by the configuration
// check also list {"errors": [{"field", "message"}]}.
//
//	GET    /v1/stats                                  counters per port; the cluster sync's state in a cluster
//	GET    /v1/hosts                                  in a cluster: the hosts, their applied revisions
//	GET    /v1/security-groups                        []GroupView
//	POST   /v1/security-groups                        GroupSpec → 201 Changed{group}
//	GET    /v1/security-groups/{name}                 GroupView
//	DELETE /v1/security-groups/{name}                 409 while instances or rules reference it
//	POST   /v1/security-groups/{name}/rules           RuleSpec → 201 RuleAdded{index}
//	DELETE /v1/security-groups/{name}/rules/{index}   later rules move down by one
//	PUT    /v1/security-groups/{name}/external-sources {"external-sources": [CIDR...]} or [CIDR...]
//	GET    /v1/instances                              []InstanceView
//	POST   /v1/instances                              InstanceSpec → 201 Changed{instance}; opens its TAP
//	GET    /v1/instances/{name}                       InstanceView
//	DELETE /v1/instances/{name}                       closes its port
//	PUT    /v1/instances/{name}/security-groups       {"security-groups": [...]} or [...]
//	GET    /v1/conntrack?instance=&protocol=&address=&limit=  ConntrackView
//	DELETE /v1/conntrack                              flush: {"flushed": N}
//	PUT    /v1/configuration?file=NAME                the whole configuration file (YAML) → Reloaded
//
// Every change takes ?dry-run=true: nothing is applied or written, the
// version stays, and the answer — the usual one, as it would be — carries
// "dry-run": the changes in the file's words and the tracked connections
// the change would cut (DryRunView; ?limit=N of them, default 1000, 0 all).

// maxBody bounds a request body.
const maxBody = 1 << 20

// defaultConnLimit is how many connections GET /v1/conntrack lists by default.
const defaultConnLimit = 1000

// handlerFunc answers one request: status, body and the configuration
// version the body shows (0: the current one), or a refusal.
type handlerFunc func(r *http.Request) (int, any, uint64, *apiError)

func handler(w *source.Writer) http.Handler {
	c := &controlServer{sw: w.Switch(), w: w}
	mux := http.NewServeMux()
	routes := []struct {
		pattern string
		h       handlerFunc
	}{
		{"GET /v1/stats", c.stats},
		{"GET /v1/hosts", c.hosts},
		{"GET /v1/security-groups", c.listGroups},
		{"POST /v1/security-groups", c.createGroup},
		{"GET /v1/security-groups/{name}", c.showGroup},
		{"DELETE /v1/security-groups/{name}", c.deleteGroup},
		{"POST /v1/security-groups/{name}/rules", c.addRule},
		{"DELETE /v1/security-groups/{name}/rules/{index}", c.deleteRule},
		{"PUT /v1/security-groups/{name}/external-sources", c.setSources},
		{"GET /v1/instances", c.listInstances},
		{"POST /v1/instances", c.addInstance},
		{"GET /v1/instances/{name}", c.showInstance},
		{"DELETE /v1/instances/{name}", c.deleteInstance},
		{"PUT /v1/instances/{name}/security-groups", c.setMembership},
		{"GET /v1/conntrack", c.listConns},
		{"DELETE /v1/conntrack", c.flushConns},
		{"PUT /v1/configuration", c.putConfiguration},
	}
	for _, rt := range routes {
		mux.HandleFunc(rt.pattern, c.handle(rt.h))
	}
	notFound := c.handle(func(r *http.Request) (int, any, uint64, *apiError) {
		return 0, nil, 0, noRoute(mux, r)
	})
	mux.HandleFunc("/", notFound)
	unclean := c.handle(func(r *http.Request) (int, any, uint64, *apiError) {
		return 0, nil, 0, refuse(http.StatusNotFound, "no such resource: %s %q is not a clean path (no empty, . or .. segments)", r.Method, r.URL.Path)
	})
	// ServeMux answers paths that are not clean ("/v1//stats", "*") itself,
	// with a redirect or a bare 400 and no ETag; the API answers them as
	// unknown resources, in JSON, like every other refusal.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "" || p[0] != '/' || path.Clean(p) != p {
			unclean(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func (c *controlServer) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		code, body, version, err := h(r)
		if err != nil {
			if err.status == http.StatusMethodNotAllowed {
				w.Header().Set("Allow", strings.Join(err.allow, ", "))
			}
			out := map[string]any{"error": err.msg}
			if len(err.fields) > 0 {
				out["errors"] = err.fields
			}
			code, body, version = err.status, out, 0
		}
		if version == 0 {
			version = c.w.Version()
		}
		w.Header().Set("ETag", etag(version))
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, code, body)
	}
}

// noRoute is 405 for a known resource asked with another method, else 404.
func noRoute(mux *http.ServeMux, r *http.Request) *apiError {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := mux.Handler(r2); pattern != "" && pattern != "/" {
			allowed = append(allowed, m)
		}
	}
	if len(allowed) > 0 {
		return &apiError{status: http.StatusMethodNotAllowed, allow: allowed,
			msg: fmt.Sprintf("%s is not a method of %s; it takes %s", r.Method, r.URL.Path, strings.Join(allowed, ", "))}
	}
	return refuse(http.StatusNotFound, "no such resource: %s %s; the API's resources are /v1/security-groups, /v1/instances, /v1/conntrack, /v1/configuration and /v1/stats", r.Method, r.URL.Path)
}

// --- bodies ---

// decodeBody decodes the JSON body of r into v strictly: no unknown fields,
// no trailing data. list, when not nil, accepts a bare JSON list instead of
// the object (for the PUTs that replace one list).
func decodeBody(r *http.Request, v any, list *[]string) *apiError {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return refuse(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if len(data) > maxBody {
		return refuse(http.StatusRequestEntityTooLarge, "the request body is over %d bytes", maxBody)
	}
	if trimmed := bytes.TrimSpace(data); list != nil && len(trimmed) > 0 && trimmed[0] == '[' {
		v = list
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonRefusal(err, v)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return refuse(http.StatusBadRequest, "invalid JSON: more data after the body's value; send one JSON value")
	}
	if list != nil && v == list && *list == nil {
		*list = []string{} // a bare null is no list, but not absent either
	}
	return nil
}

func jsonRefusal(err error, v any) *apiError {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return refuse(http.StatusBadRequest, "the request has no body; send a JSON value with the fields %s", validFields(reflect.TypeOf(v)))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return refuse(http.StatusBadRequest, "invalid JSON: the body ends in the middle of a value")
	case errors.As(err, &syn):
		return refuse(http.StatusBadRequest, "invalid JSON at byte %d: %s", syn.Offset, strings.TrimPrefix(syn.Error(), "json: "))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "the body"
		}
		return refuse(http.StatusBadRequest, "%s: want %s, got a JSON %s", field, kindWords(typ.Type), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return refuse(http.StatusBadRequest, "%s: unknown field; valid fields: %s", strings.Trim(name, `"`), validFields(reflect.TypeOf(v)))
	}
	return refuse(http.StatusBadRequest, "invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
}

func kindWords(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32, reflect.Uint16:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	}
	return t.String()
}

// validFields lists the JSON fields of the body type t and of the objects
// nested in it: "name, description, rules, external-sources; rules[]:
// flow-direction, ...; icmp: type, code".
func validFields(t reflect.Type) string {
	var parts []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, label string)
	walk = func(t reflect.Type, label string) {
		suffix := ""
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			if t.Kind() == reflect.Slice {
				suffix = "[]"
			}
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		var names []string
		type nested struct {
			t     reflect.Type
			label string
		}
		var inner []nested
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names = append(names, name)
			inner = append(inner, nested{f.Type, name})
		}
		s := strings.Join(names, ", ")
		if label != "" {
			s = label + suffix + ": " + s
		}
		parts = append(parts, s)
		for _, n := range inner {
			walk(n.t, n.label)
		}
	}
	walk(t, "")
	return strings.Join(parts, "; ")
}

// --- reads ---

func (c *controlServer) snapshot() (*config.Config, uint64) {
	return c.w.Snapshot()
}

func (c *controlServer) stats(r *http.Request) (int, any, uint64, *apiError) {
	ports := c.sw.Stats()
	if ports == nil {
		ports = []vswitch.PortStats{}
	}
	out := map[string]any{"ports": ports}
	if remote := c.w.Remote(); remote != nil {
		out["cluster"] = remote.ClusterStatus()
	}
	return http.StatusOK, out, 0, nil
}

// hosts lists the hosts of the cluster (SPEC §9): each one's applied
// revision, as it registered it under its lease (a host that stopped
// renewing it is gone from the list).
func (c *controlServer) hosts(r *http.Request) (int, any, uint64, *apiError) {
	remote := c.w.Remote()
	if remote == nil {
		return 0, nil, 0, refuse(http.StatusNotFound, "this switch is not in a cluster (no cluster: section in its file): it has no hosts to list")
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	hosts, err := remote.ClusterHosts(ctx)
	if err != nil {
		return 0, nil, 0, refuse(http.StatusServiceUnavailable, "reading the hosts from etcd: %v", err)
	}
	return http.StatusOK, hosts, 0, nil
}

func (c *controlServer) listGroups(r *http.Request) (int, any, uint64, *apiError) {
	cfg, version := c.snapshot()
	out := []GroupView{}
	for i := range cfg.SecurityGroups {
		out = append(out, groupView(cfg, &cfg.SecurityGroups[i]))
	}
	return http.StatusOK, out, version, nil
}

func (c *controlServer) showGroup(r *http.Request) (int, any, uint64, *apiError) {
	cfg, version := c.snapshot()
	g, err := findGroup(cfg, r.PathValue("name"))
	if err != nil {
		return 0, nil, 0, err
	}
	return http.StatusOK, groupView(cfg, g), version, nil
}

func (c *controlServer) listInstances(r *http.Request) (int, any, uint64, *apiError) {
	cfg, version := c.snapshot()
	out := []InstanceView{}
	for i := range cfg.Instances {
		out = append(out, instanceView(&cfg.Instances[i]))
	}
	return http.StatusOK, out, version, nil
}

func (c *controlServer) showInstance(r *http.Request) (int, any, uint64, *apiError) {
	cfg, version := c.snapshot()
	in, err := findInstance(cfg, r.PathValue("name"))
	if err != nil {
		return 0, nil, 0, err
	}
	return http.StatusOK, instanceView(in), version, nil
}

func findGroup(cfg *config.Config, name string) (*config.SecurityGroup, *apiError) {
	if g, _ := cfg.Group(name); g != nil {
		return g, nil
	}
	var names []string
	for _, g := range cfg.SecurityGroups {
		names = append(names, g.Name)
	}
	return nil, refuse(http.StatusNotFound, "no security group named %q; the groups are %s", name, strings.Join(names, ", "))
}

func findInstance(cfg *config.Config, name string) (*config.Instance, *apiError) {
	if in, _ := cfg.Instance(name); in != nil {
		return in, nil
	}
	var names []string
	for _, in := range cfg.Instances {
		names = append(names, in.Name)
	}
	if len(names) == 0 {
		return nil, refuse(http.StatusNotFound, "no instance named %q; there are no instances", name)
	}
	return nil, refuse(http.StatusNotFound, "no instance named %q; the instances are %s", name, strings.Join(names, ", "))
}

// --- security groups ---

func (c *controlServer) createGroup(r *http.Request) (int, any, uint64, *apiError) {
	var spec GroupSpec
	if err := decodeBody(r, &spec, nil); err != nil {
		return 0, nil, 0, err
	}
	out, err := c.change(r, "create security group", func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if spec.Name != nil {
			if g, _ := cur.Group(*spec.Name); g != nil {
				return "", refuse(http.StatusConflict, "name: a security group named %q already exists", *spec.Name)
			}
		}
		l := d.list("security-groups")
		l.Content = append(l.Content, spec.node())
		return fmt.Sprintf("security-groups[%d]", len(l.Content)-1), nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	g, _ := out.cfg.Group(*spec.Name)
	v := groupView(out.cfg, g)
	return out.status(true), Changed{Version: out.version, Warnings: out.warnings, Group: &v, DryRun: out.dryRun}, out.version, nil
}

func (c *controlServer) deleteGroup(r *http.Request) (int, any, uint64, *apiError) {
	name := r.PathValue("name")
	out, err := c.change(r, "delete security group "+name, func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if _, err := findGroup(cur, name); err != nil {
			return "", err
		}
		if name == config.DefaultGroup {
			return "", refuse(http.StatusConflict, "the group %q cannot be deleted: an instance without a security-groups list belongs to it, so it always exists", name)
		}
		var insts, rules []string
		for _, in := range cur.Instances {
			if slices.Contains(in.SecurityGroups, name) {
				insts = append(insts, in.Name)
			}
		}
		for _, g := range cur.SecurityGroups {
			for i := range g.Rules {
				if g.Name != name && g.Rules[i].SecurityGroup == name {
					rules = append(rules, ruleID(g.Name, &g.Rules[i], i))
				}
			}
		}
		if len(insts)+len(rules) > 0 {
			var uses, fixes []string
			if len(insts) > 0 {
				uses = append(uses, "instances "+strings.Join(insts, ", ")+" belong to it")
				fixes = append(fixes, "change their groups (PUT /v1/instances/{name}/security-groups)")
			}
			if len(rules) > 0 {
				uses = append(uses, "rules "+strings.Join(rules, ", ")+" name it")
				fixes = append(fixes, "delete those rules")
			}
			return "", refuse(http.StatusConflict, "security group %q is in use: %s; %s first", name, strings.Join(uses, " and "), strings.Join(fixes, " and "))
		}
		_, i := d.group(cur, name)
		d.remove("security-groups", i)
		return "", nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	return out.status(false), Changed{Version: out.version, Warnings: out.warnings, Deleted: name, DryRun: out.dryRun}, out.version, nil
}

func (c *controlServer) addRule(r *http.Request) (int, any, uint64, *apiError) {
	name := r.PathValue("name")
	var spec RuleSpec
	if err := decodeBody(r, &spec, nil); err != nil {
		return 0, nil, 0, err
	}
	index := -1
	out, err := c.change(r, "add a rule to "+name, func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if _, err := findGroup(cur, name); err != nil {
			return "", err
		}
		g, gi := d.group(cur, name)
		rules := yGet(g, "rules")
		if rules == nil {
			rules = yListNode()
			ySet(g, "rules", rules)
		}
		rules.Content = append(rules.Content, spec.node())
		index = len(rules.Content) - 1
		return fmt.Sprintf("security-groups[%d].rules[%d]", gi, index), nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	g, _ := out.cfg.Group(name)
	rule := &g.Rules[index]
	return out.status(true), RuleAdded{Group: name, Index: index, ID: ruleID(name, rule, index), Rule: ruleView(rule),
		Version: out.version, Warnings: out.warnings, DryRun: out.dryRun}, out.version, nil
}

func (c *controlServer) deleteRule(r *http.Request) (int, any, uint64, *apiError) {
	name, index := r.PathValue("name"), r.PathValue("index")
	var id string
	out, err := c.change(r, "delete rule "+name+"/"+index, func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		cg, err := findGroup(cur, name)
		if err != nil {
			return "", err
		}
		// Only the index as the API writes it (ruleID): "+1" and "01"
		// are not other names for rule 1.
		i, perr := strconv.Atoi(index)
		if perr != nil || i < 0 || i >= len(cg.Rules) || strconv.Itoa(i) != index {
			if len(cg.Rules) == 0 {
				return "", refuse(http.StatusNotFound, "no rule %s: security group %q has no rules", index, name)
			}
			return "", refuse(http.StatusNotFound, "no rule %s: security group %q has %d rules, indices 0-%d (both directions together, in list order)", index, name, len(cg.Rules), len(cg.Rules)-1)
		}
		id = ruleID(name, &cg.Rules[i], i)
		g, _ := d.group(cur, name)
		rules := yGet(g, "rules")
		rules.Content = slices.Delete(rules.Content, i, i+1)
		if len(rules.Content) == 0 {
			ySet(g, "rules", nil)
		}
		return "", nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	return out.status(false), Changed{Version: out.version, Warnings: out.warnings, Deleted: id, DryRun: out.dryRun}, out.version, nil
}

func (c *controlServer) setSources(r *http.Request) (int, any, uint64, *apiError) {
	name := r.PathValue("name")
	var spec ExternalSourcesSpec
	if err := decodeBody(r, &spec, &spec.ExternalSources); err != nil {
		return 0, nil, 0, err
	}
	if spec.ExternalSources == nil {
		return 0, nil, 0, refuse(http.StatusBadRequest, `external-sources: missing; send {"external-sources": ["203.0.113.0/24", ...]} (an empty list clears it)`)
	}
	out, err := c.change(r, "set the external sources of "+name, func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if _, err := findGroup(cur, name); err != nil {
			return "", err
		}
		g, gi := d.group(cur, name)
		if len(spec.ExternalSources) == 0 {
			ySet(g, "external-sources", nil)
		} else {
			ySet(g, "external-sources", yList(spec.ExternalSources))
		}
		return fmt.Sprintf("security-groups[%d]", gi), nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	g, _ := out.cfg.Group(name)
	v := groupView(out.cfg, g)
	return out.status(false), Changed{Version: out.version, Warnings: out.warnings, Group: &v, DryRun: out.dryRun}, out.version, nil
}

// --- instances ---

func (c *controlServer) addInstance(r *http.Request) (int, any, uint64, *apiError) {
	var spec InstanceSpec
	if err := decodeBody(r, &spec, nil); err != nil {
		return 0, nil, 0, err
	}
	out, err := c.change(r, "add an instance", func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if spec.Name != nil {
			if in, _ := cur.Instance(*spec.Name); in != nil {
				return "", refuse(http.StatusConflict, "name: an instance named %q already exists", *spec.Name)
			}
		}
		l := d.list("instances")
		l.Content = append(l.Content, spec.node())
		return fmt.Sprintf("instances[%d]", len(l.Content)-1), nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	in, _ := out.cfg.Instance(*spec.Name)
	v := instanceView(in)
	return out.status(true), Changed{Version: out.version, Warnings: out.warnings, Instance: &v, DryRun: out.dryRun}, out.version, nil
}

func (c *controlServer) deleteInstance(r *http.Request) (int, any, uint64, *apiError) {
	name := r.PathValue("name")
	out, err := c.change(r, "remove instance "+name, func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if _, err := findInstance(cur, name); err != nil {
			return "", err
		}
		_, i := d.entry("instances", name)
		d.remove("instances", i)
		return "", nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	return out.status(false), Changed{Version: out.version, Warnings: out.warnings, Deleted: name, DryRun: out.dryRun}, out.version, nil
}

func (c *controlServer) setMembership(r *http.Request) (int, any, uint64, *apiError) {
	name := r.PathValue("name")
	var spec MembershipSpec
	if err := decodeBody(r, &spec, &spec.SecurityGroups); err != nil {
		return 0, nil, 0, err
	}
	if spec.SecurityGroups == nil {
		return 0, nil, 0, refuse(http.StatusBadRequest, `security-groups: missing; send {"security-groups": ["web", ...]} (at least one group)`)
	}
	out, err := c.change(r, "set the security groups of "+name, func(cur *config.Config, d *cfgDoc) (string, *apiError) {
		if _, err := findInstance(cur, name); err != nil {
			return "", err
		}
		n, i := d.entry("instances", name)
		ySet(n, "security-groups", yList(spec.SecurityGroups))
		return fmt.Sprintf("instances[%d]", i), nil
	})
	if err != nil {
		return 0, nil, 0, err
	}
	in, _ := out.cfg.Instance(name)
	v := instanceView(in)
	return out.status(false), Changed{Version: out.version, Warnings: out.warnings, Instance: &v, DryRun: out.dryRun}, out.version, nil
}

// --- connection tracking ---

func (c *controlServer) listConns(r *http.Request) (int, any, uint64, *apiError) {
	q := r.URL.Query()
	for key := range q {
		if !slices.Contains([]string{"instance", "protocol", "address", "limit"}, key) {
			return 0, nil, 0, refuse(http.StatusBadRequest, "unknown query parameter %q; valid: instance, protocol, address, limit", key)
		}
	}
	port := int32(-1)
	if name := q.Get("instance"); name != "" {
		id := c.sw.PortNamed(name)
		if id < 0 {
			cfg, _ := c.snapshot()
			_, err := findInstance(cfg, name)
			if err == nil {
				err = refuse(http.StatusNotFound, "instance %q has no port", name)
			}
			err.msg = "instance: " + err.msg
			return 0, nil, 0, err
		}
		port = int32(id)
	}
	proto := ""
	if p := q.Get("protocol"); p != "" && p != "all" {
		if pr, ok := config.ParseProtocol(p); ok {
			proto = conntrack.ProtoName(pr.IPProto())
		} else if n, err := strconv.ParseUint(p, 10, 8); err == nil {
			proto = conntrack.ProtoName(uint8(n))
		} else {
			return 0, nil, 0, refuse(http.StatusBadRequest, "protocol: unknown protocol %q; valid: tcp, udp, icmp, icmpv6, ah, esp, gre, ipip, all, or a protocol number", p)
		}
	}
	var addr netip.Addr
	if a := q.Get("address"); a != "" {
		var err error
		if addr, err = netip.ParseAddr(a); err != nil {
			return 0, nil, 0, refuse(http.StatusBadRequest, "address: %q is not an IP address; give one address, e.g. 10.0.0.11 or fd00::11", a)
		}
		addr = addr.Unmap().WithZone("")
	}
	limit := defaultConnLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return 0, nil, 0, refuse(http.StatusBadRequest, "limit: %q is not a count; give a number of connections, 0 for all", l)
		}
		limit = n
	}

	ct := c.sw.Conntrack()
	total := ct.Len()
	match := func(ci conntrack.ConnInfo) bool {
		return (port < 0 || ci.Meta.A == port || ci.Meta.B == port) &&
			(proto == "" || ci.Protocol == proto) &&
			(!addr.IsValid() || ci.Key.SrcAddr() == addr || ci.Key.DstAddr() == addr)
	}
	max := 0
	if limit > 0 {
		max = limit + 1
	}
	conns := ct.List(match, max)
	out := ConntrackView{Connections: []ConnView{}, Total: total, Limit: limit}
	if limit > 0 && len(conns) > limit {
		conns, out.Truncated = conns[:limit], true
	}
	for i := range conns {
		out.Connections = append(out.Connections, connView(c.sw, &conns[i]))
	}
	sort.SliceStable(out.Connections, func(i, j int) bool {
		a, b := &out.Connections[i], &out.Connections[j]
		if a.From != b.From {
			return a.From < b.From
		}
		return a.Key < b.Key
	})
	return http.StatusOK, out, 0, nil
}

func (c *controlServer) flushConns(r *http.Request) (int, any, uint64, *apiError) {
	if len(r.URL.Query()) > 0 {
		return 0, nil, 0, refuse(http.StatusBadRequest, "DELETE /v1/conntrack takes no parameters: it flushes the whole table")
	}
	ct := c.sw.Conntrack()
	n := ct.Len()
	ct.Flush()
	c.w.Logger().Info("connection table flushed through the control API", "connections", n)
	return http.StatusOK, map[string]int{"flushed": n}, 0, nil
}

// --- the whole configuration ---

// maxConfigBody bounds the configuration file PUT /v1/configuration takes.
const maxConfigBody = 64 << 20

// putConfiguration puts a whole configuration file in force, as a reload of
// the switch's own file would (`sgswitch ctl reload FILE`), and writes it
// over the switch's file, canonical (config.Marshal) as every change through
// the API. ?file=NAME names it in error messages.
func (c *controlServer) putConfiguration(r *http.Request) (int, any, uint64, *apiError) {
	if c.w.Remote() != nil {
		return 0, nil, 0, refuse(http.StatusConflict, "this switch is a host of a cluster: its policy is in etcd, not in a file; put a whole policy there with sgswitch cluster import -c FILE (this host's own file is re-read on SIGHUP)")
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxConfigBody+1))
	if err != nil {
		return 0, nil, 0, refuse(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if len(data) > maxConfigBody {
		return 0, nil, 0, refuse(http.StatusRequestEntityTooLarge, "the configuration is over %d bytes", maxConfigBody)
	}
	name := r.URL.Query().Get("file")
	if name == "" {
		name = "configuration"
	}
	var changes []config.Change
	out, aerr := c.changeTo(r, "reload "+name, []string{"file"}, func(cur *config.Config) (*config.Config, []byte, []string, *apiError) {
		checked, err := config.Parse(name, data)
		if err != nil {
			return nil, nil, nil, configRefusal(err)
		}
		// Written back canonical, as every change through the API: the
		// configuration in force is read back from the very bytes the file
		// will hold, so that its line numbers are the file's.
		file, err := config.Marshal(checked)
		if err != nil {
			return nil, nil, nil, refuse(http.StatusInternalServerError, "internal error: writing the configuration: %v", err)
		}
		next, err := config.Parse("", file)
		if err != nil {
			return nil, nil, nil, refuse(http.StatusInternalServerError, "internal error: the configuration does not read back: %v", err)
		}
		changes = config.Changes(cur, next)
		return next, file, checked.Warnings, nil
	})
	if aerr != nil {
		return 0, nil, 0, aerr
	}
	if changes == nil {
		changes = []config.Change{}
	}
	return http.StatusOK, Reloaded{Version: out.version, Warnings: out.warnings, Changes: changes, DryRun: out.dryRun}, out.version, nil
}

// configRefusal is the configuration's own errors, each with its file,
// line and field, for a whole file sent to the API.
func configRefusal(err error) *apiError {
	var es config.Errors
	if !errors.As(err, &es) {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	e := &apiError{status: http.StatusBadRequest, msg: es.Error()}
	for _, ce := range es {
		e.fields = append(e.fields, FieldError{Field: ce.Field, Message: ce.Error()})
	}
	return e
}
