package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/source"
)

// A configuration change through the control API goes:
//
//  1. under the switch's change lock (source.Writer: every source of policy),
//     take the configuration in force and its version in one load;
//  2. refuse with 412 when If-Match names another version;
//  3. edit the configuration as the YAML document Marshal writes, putting
//     the client's body where the file would hold it;
//  4. check the edited document with config.Parse — the very code that
//     checks the file — and refuse with its errors, their field paths made
//     relative to the client's body;
//  5. write the canonical file (config.Marshal) to a synced temporary file
//     next to the configuration file;
//  6. put it in force with ApplyAt(version), which refuses with ErrStale if
//     anything changed the configuration since step 1;
//  7. rename the temporary file over the configuration file. If the rename
//     fails, put the previous configuration back in force.
//
// With ?dry-run=true a change stops after step 4: instead of writing and
// applying, it answers what the change would do (the tracked connections it
// would cut, vswitch.Switch.DryRun) with the version unchanged.
//
// A refused or failed change leaves the running configuration and the file
// as they were; a crash leaves the old file or the new one, never a torn one,
// and the running configuration is never one the file does not hold for
// longer than steps 6-7 take.

// controlServer answers the control API of one switch.
type controlServer struct {
	sw *vswitch.Switch
	w  *source.Writer // the switch's writer: its change lock, the file write-back
}

// apiError is a refused request: its status and the message for the client.
type apiError struct {
	status int
	msg    string
	allow  []string     // for a 405: the methods the resource takes
	fields []FieldError // the configuration's own errors, when it refused
}

// FieldError is one problem the configuration check found, with the field
// named as the client's body names it ("start-port", "rules[0].network").
type FieldError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e *apiError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// ifMatch reads the If-Match header: the versions the client based its change
// on, none when the header is absent or "*".
func ifMatch(r *http.Request) ([]uint64, *apiError) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" || h == "*" {
		return nil, nil
	}
	var versions []uint64
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		tag = strings.TrimPrefix(tag, "W/")
		tag = strings.Trim(tag, `"`)
		v, err := strconv.ParseUint(tag, 10, 64)
		if err != nil || v == 0 {
			return nil, refuse(http.StatusBadRequest, "If-Match: %q is not a configuration version; send the ETag of a response, e.g. If-Match: \"7\"", h)
		}
		versions = append(versions, v)
	}
	return versions, nil
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// editFunc makes one change to the document of cur. It returns the path of
// the client's body in the document ("security-groups[2].rules[4]"), against
// which the configuration's error paths are made relative, or a refusal.
type editFunc func(cur *config.Config, d *cfgDoc) (bodyPath string, err *apiError)

// changed is a change that is in force and in the file — or, for a dry
// run, one that would be: then version is the version in force, which
// stays, and dryRun says what the change would do.
type changed struct {
	cfg      *config.Config
	version  uint64
	warnings []string
	dryRun   *DryRunView
}

// status is the status of a change's answer: created for one that creates,
// but a dry run creates nothing.
func (out *changed) status(created bool) int {
	if created && out.dryRun == nil {
		return http.StatusCreated
	}
	return http.StatusOK
}

// dryRunQuery reads ?dry-run=true (and, with it, ?limit=N: how many of the
// connections the change would cut to list; 0 for all). A change takes no
// other query parameter but those its handler reads (extra).
func dryRunQuery(r *http.Request, extra ...string) (dry bool, limit int, aerr *apiError) {
	q := r.URL.Query()
	for key := range q {
		if key != "dry-run" && key != "limit" && !slices.Contains(extra, key) {
			return false, 0, refuse(http.StatusBadRequest, "unknown query parameter %q; a change takes dry-run=true (and limit=N with it)", key)
		}
	}
	switch v := q.Get("dry-run"); v {
	case "", "false":
	case "true":
		dry = true
	default:
		return false, 0, refuse(http.StatusBadRequest, "dry-run: %q; say dry-run=true to see what the change would do without making it", v)
	}
	limit = defaultConnLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 || !dry {
			return false, 0, refuse(http.StatusBadRequest, "limit: %q; with dry-run=true, the number of connections the change would cut to list, 0 for all", l)
		}
		limit = n
	}
	return dry, limit, nil
}

// change runs one configuration change (see the top of this file). what
// names it in the log.
func (c *controlServer) change(r *http.Request, what string, edit editFunc) (*changed, *apiError) {
	return c.changeTo(r, what, nil, func(cur *config.Config) (*config.Config, []byte, []string, *apiError) {
		d, err := newCfgDoc(cur)
		if err != nil {
			return nil, nil, nil, refuse(http.StatusInternalServerError, "internal error: %v", err)
		}
		bodyPath, aerr := edit(cur, d)
		if aerr != nil {
			return nil, nil, nil, aerr
		}
		data, err := d.encode()
		if err != nil {
			return nil, nil, nil, refuse(http.StatusInternalServerError, "internal error: %v", err)
		}
		checked, err := config.Parse("", data)
		if err != nil {
			return nil, nil, nil, d.refusal(err, bodyPath)
		}
		warnings := d.warnings(checked.Warnings, bodyPath)
		// The configuration put in force is the one read back from the very
		// bytes the file will hold, so that its line numbers are the file's.
		file, err := config.Marshal(checked)
		if err != nil {
			return nil, nil, nil, refuse(http.StatusInternalServerError, "internal error: writing the configuration: %v", err)
		}
		next, err := config.Parse("", file)
		if err != nil {
			return nil, nil, nil, refuse(http.StatusInternalServerError, "internal error: the changed configuration does not read back: %v", err)
		}
		return next, file, warnings, nil
	})
}

// prepareFunc makes the configuration a change would put in force from the
// one in force: the checked configuration, the bytes the file will hold,
// warnings for the client, or a refusal.
type prepareFunc func(cur *config.Config) (next *config.Config, file []byte, warnings []string, aerr *apiError)

// changeTo runs a change whose new configuration prepare makes (steps 3-4
// of the top of this file), or with ?dry-run=true says what it would do:
// the tracked connections it would cut (vswitch.DryRun), nothing applied,
// nothing written, the version unchanged.
// query lists the query parameters the handler reads itself.
func (c *controlServer) changeTo(r *http.Request, what string, query []string, prepare prepareFunc) (*changed, *apiError) {
	want, aerr := ifMatch(r)
	if aerr != nil {
		return nil, aerr
	}
	dry, limit, aerr := dryRunQuery(r, query...)
	if aerr != nil {
		return nil, aerr
	}
	c.w.Lock()
	defer c.w.Unlock()
	cur, version := c.w.Snapshot()
	if len(want) > 0 && !slices.Contains(want, version) {
		return nil, refuse(http.StatusPreconditionFailed,
			"the configuration is at version %d, not %s: it changed since you read it; read it again and retry", version, r.Header.Get("If-Match"))
	}
	next, file, warnings, aerr := prepare(cur)
	if aerr != nil {
		return nil, aerr
	}
	next.File = cur.File
	if dry {
		dr, err := c.sw.DryRun(next, limit)
		if err != nil {
			return nil, refuse(http.StatusInternalServerError, "the change would fail to be put in force: %v; nothing changed", err)
		}
		return &changed{cfg: next, version: version, warnings: warnings, dryRun: dryRunView(c.sw, cur, next, dr, limit)}, nil
	}
	if remote := c.w.Remote(); remote != nil {
		return c.commitRemote(r, remote, what, cur, next, version, warnings)
	}

	var staged source.StagedWrite
	var err error
	if cur.File != "" {
		if staged, err = c.w.Stage(cur.File, file); err != nil {
			return nil, refuse(http.StatusInternalServerError, "writing %s: %v; nothing changed", cur.File, err)
		}
	}
	if err := c.sw.ApplyAt(next, version); err != nil {
		if staged != nil {
			staged.Abort()
		}
		if errors.Is(err, vswitch.ErrStale) {
			return nil, refuse(http.StatusPreconditionFailed, "the configuration was reloaded while this change was being made; nothing changed; read it again and retry")
		}
		return nil, refuse(http.StatusInternalServerError, "putting the change in force failed: %v; nothing changed", err)
	}
	version++
	if staged != nil {
		renamed, err := staged.Commit()
		switch {
		case !renamed:
			// The file still holds the previous configuration: put that
			// back in force so that the two agree.
			if rerr := c.sw.ApplyAt(cur, version); rerr != nil {
				c.w.Logger().Error("control API: the configuration file could not be replaced and the change could not be undone: the configuration in force differs from the file",
					"change", what, "file", cur.File, "version", version, "write", err, "undo", rerr)
				return nil, refuse(http.StatusInternalServerError,
					"replacing %s failed (%v) and undoing the change failed too (%v): version %d is in force, the file holds the previous configuration; fix the problem and reload",
					cur.File, err, rerr, version)
			}
			return nil, refuse(http.StatusInternalServerError,
				"replacing %s failed: %v; the change was undone and the file's configuration is in force (version %d)", cur.File, err, version+1)
		case err != nil:
			c.w.Logger().Warn("control API: configuration file replaced but syncing its directory failed", "file", cur.File, "err", err)
		}
	}
	c.w.Logger().Info("configuration changed through the control API", "change", what, "version", version, "file", cur.File)
	return &changed{cfg: next, version: version, warnings: warnings}, nil
}

// dryRunView is the API's account of a dry run.
func dryRunView(sw *vswitch.Switch, cur, next *config.Config, dr *vswitch.DryRun, limit int) *DryRunView {
	v := &DryRunView{Version: dr.Version, Changes: config.Changes(cur, next), Checked: dr.Checked, Cut: []CutView{},
		CutTotal: dr.CutTotal, Limit: limit, Truncated: len(dr.Cut) < dr.CutTotal,
		PersistEstablished: dr.PersistEstablished, ElapsedMS: float64(dr.Elapsed.Microseconds()) / 1000}
	if v.Changes == nil {
		v.Changes = []config.Change{}
	}
	for i := range dr.Cut {
		c := &dr.Cut[i]
		cv := CutView{ConnView: connView(sw, &c.Conn), AllowedBy: c.Allowed, Reason: c.Reason.String(), Kept: c.Kept}
		cv.From, cv.To = c.From, c.To
		v.Cut = append(v.Cut, cv)
	}
	return v
}

// cfgDoc is a configuration as the YAML document config.Marshal writes,
// being edited.
type cfgDoc struct {
	root *yaml.Node // the top mapping
}

func newCfgDoc(cfg *config.Config) (*cfgDoc, error) {
	data, err := config.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	root := yMap()
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 && doc.Content[0].Kind == yaml.MappingNode {
		root = doc.Content[0]
	}
	root.Style = 0
	return &cfgDoc{root: root}, nil
}

func (d *cfgDoc) encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(d.root); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// list is the top-level list under key, created empty when absent.
func (d *cfgDoc) list(key string) *yaml.Node {
	l := yGet(d.root, key)
	if l == nil || l.Kind != yaml.SequenceNode {
		l = &yaml.Node{Kind: yaml.SequenceNode}
		ySet(d.root, key, l)
	}
	l.Style = 0
	return l
}

// items are the entries of the top-level list under key.
func (d *cfgDoc) items(key string) []*yaml.Node {
	if l := yGet(d.root, key); l != nil && l.Kind == yaml.SequenceNode {
		return l.Content
	}
	return nil
}

// entry finds the entry called name in the top-level list under key.
func (d *cfgDoc) entry(key, name string) (*yaml.Node, int) {
	for i, n := range d.items(key) {
		if v := yGet(n, "name"); v != nil && v.Value == name {
			return n, i
		}
	}
	return nil, -1
}

// group is the entry of group name, which cur holds. The implicit `default`
// that Marshal leaves out is written out first.
func (d *cfgDoc) group(cur *config.Config, name string) (*yaml.Node, int) {
	if n, i := d.entry("security-groups", name); n != nil {
		return n, i
	}
	if g, _ := cur.Group(name); g == nil {
		return nil, -1
	}
	l := d.list("security-groups")
	n := yMap()
	yPut(n, "name", yStr(name))
	l.Content = append(l.Content, n)
	return n, len(l.Content) - 1
}

// remove deletes entry i of the top-level list under key (the key too when
// the list becomes empty).
func (d *cfgDoc) remove(key string, i int) {
	l := yGet(d.root, key)
	l.Content = slices.Delete(l.Content, i, i+1)
	if len(l.Content) == 0 {
		ySet(d.root, key, nil)
	}
}

var (
	// lineRef is how messages point at another line of the file; the
	// client never saw the document the lines count in.
	lineRef = regexp.MustCompile(` \((?:first at )?line \d+\)`)
	// entryRef is a path into the top-level lists, by index.
	entryRef = regexp.MustCompile(`(^|[\s(])(security-groups|instances)\[(\d+)\]\.`)
	warnLine = regexp.MustCompile(`^line \d+: `)
)

// relative names field as the client knows it: relative to its body when it
// is inside it, else with the entries of the top-level lists by name
// (instances[web1].mac).
func (d *cfgDoc) relative(field, bodyPath string) string {
	switch {
	case bodyPath == "":
	case field == bodyPath:
		return ""
	case strings.HasPrefix(field, bodyPath+"."):
		return field[len(bodyPath)+1:]
	}
	return d.byName(field)
}

// byName replaces the indices of top-level entries in s by their names.
func (d *cfgDoc) byName(s string) string {
	return entryRef.ReplaceAllStringFunc(s, func(m string) string {
		sub := entryRef.FindStringSubmatch(m)
		i, _ := strconv.Atoi(sub[3])
		items := d.items(sub[2])
		if i >= len(items) {
			return m
		}
		name := yGet(items[i], "name")
		if name == nil || name.Value == "" {
			return m
		}
		return sub[1] + sub[2] + "[" + name.Value + "]."
	})
}

// refusal turns the configuration's errors into the API's: 409 when the
// change conflicts with what is there (a MAC, address or TAP another
// instance has, a rule the group already holds), else 400.
func (d *cfgDoc) refusal(err error, bodyPath string) *apiError {
	var es config.Errors
	if !errors.As(err, &es) {
		return refuse(http.StatusBadRequest, "%v", err)
	}
	e := &apiError{status: http.StatusConflict}
	var lines []string
	for _, ce := range es {
		fe := FieldError{Field: d.relative(ce.Field, bodyPath), Message: d.byName(lineRef.ReplaceAllString(ce.Msg, ""))}
		if !strings.Contains(fe.Message, "already used by") && !strings.Contains(fe.Message, "same rule as") {
			e.status = http.StatusBadRequest
		}
		e.fields = append(e.fields, fe)
		if fe.Field != "" {
			lines = append(lines, fe.Field+": "+fe.Message)
		} else {
			lines = append(lines, fe.Message)
		}
	}
	e.msg = strings.Join(lines, "\n")
	return e
}

// warnings renders the configuration's warnings (Parse without a file name
// renders them "line N: FIELD: MESSAGE") relative to the body.
func (d *cfgDoc) warnings(ws []string, bodyPath string) []string {
	var out []string
	for _, w := range ws {
		w = lineRef.ReplaceAllString(warnLine.ReplaceAllString(w, ""), "")
		if field, msg, ok := strings.Cut(w, ": "); ok && !strings.Contains(field, " ") {
			if f := d.relative(field, bodyPath); f != "" {
				w = f + ": " + d.byName(msg)
			} else {
				w = d.byName(msg)
			}
		}
		out = append(out, w)
	}
	return out
}

// commitRemote writes a checked change to the cluster's store (SPEC §9),
// whence every host, this one included, applies it; it answers once this
// host has. The writer's lock is let go meanwhile, since the sync loop puts
// the change in force through it; a change made through another host (or
// this one) in between makes the transaction fail as stale.
func (c *controlServer) commitRemote(r *http.Request, remote source.Remote, what string, cur, next *config.Config, version uint64, warnings []string) (*changed, *apiError) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	c.w.Unlock() // the sync loop applies the change through the writer
	rev, err := remote.Commit(ctx, cur, next, version)
	c.w.Lock()
	switch {
	case errors.Is(err, source.ErrStale):
		return nil, refuse(http.StatusPreconditionFailed, "the policy in etcd changed since revision %d this change is based on; nothing changed; read it again and retry", version)
	case err != nil:
		return nil, refuse(http.StatusServiceUnavailable, "writing the change to etcd: %v; read the policy again before retrying", err)
	}
	applied, _ := c.w.Snapshot()
	c.w.Logger().Info("configuration changed through the control API, in etcd", "change", what, "revision", rev)
	return &changed{cfg: applied, version: rev, warnings: warnings}, nil
}
