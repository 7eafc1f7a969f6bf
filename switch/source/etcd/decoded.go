package etcd

import (
	"bytes"
	"errors"
	"strconv"
	"strings"

	"github.com/sgswitch/sgswitch/filter/config"
)

// Decoder keeps every record's decode between revisions, by key and mod
// revision, so that a revision decodes only the records it changed: at
// 100,000 instances re-reading every record's YAML is what made a revision
// take seconds. The checks across records (unique names, MACs, addresses
// and TAPs, references to groups) still run on the whole configuration of
// every revision (config.Assemble), and a revision with an invalid record
// is still refused whole. Build gives the configuration the full decode
// (the package's Build) gives. A Decoder is not safe for concurrent use.
type Decoder struct {
	keys  Keys
	cache map[string]*decoded
	gen   uint64 // Build's count: the records of a snapshot are marked with it
	asm   config.Assembly
}

// decoded is one record as last decoded.
type decoded struct {
	modRev  int64
	value   []byte
	gen     uint64 // the last Build whose snapshot held it
	entry   *config.Entry
	problem []KeyProblem // why the record is invalid; nil when it is valid
}

// NewDecoder is a Decoder with nothing decoded yet.
func NewDecoder(keys Keys) *Decoder {
	return &Decoder{keys: keys, cache: map[string]*decoded{}}
}

// Reset forgets every decode (a relist starts from scratch).
func (d *Decoder) Reset() {
	d.cache = map[string]*decoded{}
	d.asm.Reset()
}

// Incremental says whether the last Build checked only the records it
// changed against the others (config.Assembly).
func (d *Decoder) Incremental() bool { return d.asm.Incremental }

// Build is the configuration of a host: local (its file: switch, uplink,
// cluster) with the records of snap (sorted by key) as its policy,
// decoding only the records not decoded at the same mod revision before.
// Records no longer in snap are forgotten.
func (d *Decoder) Build(local *config.Config, snap Snapshot) (*config.Config, error) {
	head, err := config.Marshal(&config.Config{Switch: local.Switch, Uplink: local.Uplink, Cluster: local.Cluster})
	if err != nil {
		return nil, err
	}
	// Sized for the whole snapshot: nearly every record is an instance.
	instances, ikeys := make([]*config.Entry, 0, len(snap.Records)), make([]string, 0, len(snap.Records))
	var groups []*config.Entry
	var gkeys []string
	var problems []KeyProblem
	d.gen++
	held := 0
	for _, r := range snap.Records {
		group := d.keys.isGroup(r.Key)
		if !group && !d.keys.isInstance(r.Key) {
			continue
		}
		dc := d.cache[r.Key]
		if dc == nil || dc.modRev != r.ModRev || !bytes.Equal(dc.value, r.Value) {
			dc = d.decode(r, group)
			d.cache[r.Key] = dc
		}
		if dc.gen != d.gen {
			dc.gen = d.gen
			held++
		}
		switch {
		case dc.problem != nil:
			problems = append(problems, dc.problem...)
		case group:
			groups, gkeys = append(groups, dc.entry), append(gkeys, r.Key)
		default:
			instances, ikeys = append(instances, dc.entry), append(ikeys, r.Key)
		}
	}
	if held < len(d.cache) { // keys deleted since the last Build
		for k, dc := range d.cache {
			if dc.gen != d.gen {
				delete(d.cache, k)
			}
		}
	}
	if len(problems) > 0 {
		return nil, &RecordError{Rev: snap.Rev, Problems: problems}
	}
	cfg, err := d.asm.Assemble("", head, groups, instances)
	if err != nil {
		var es config.Errors
		if !errors.As(err, &es) {
			return nil, err
		}
		re := &RecordError{Rev: snap.Rev}
		for _, ce := range es {
			re.Problems = append(re.Problems, crossProblem(ce, gkeys, ikeys))
		}
		return nil, re
	}
	cfg.Warnings = nil // the head's, the host's file's: reported when it was loaded
	return cfg, nil
}

// decode decodes one record on its own.
func (d *Decoder) decode(r Record, group bool) *decoded {
	dc := &decoded{modRev: r.ModRev, value: r.Value}
	if p := checkRecord(r, d.keys.name(r.Key)); p != nil {
		dc.problem = []KeyProblem{*p}
		return dc
	}
	parse := config.ParseInstance
	if group {
		parse = config.ParseGroup
	}
	e, err := parse(r.Value)
	if err != nil {
		var es config.Errors
		if !errors.As(err, &es) {
			dc.problem = []KeyProblem{{Key: r.Key, Msg: err.Error()}}
			return dc
		}
		for _, ce := range es {
			dc.problem = append(dc.problem, KeyProblem{Key: r.Key, Field: ce.Field, Msg: lineRef.ReplaceAllString(ce.Msg, "")})
		}
		return dc
	}
	dc.entry = e
	return dc
}

// crossProblem names the record of a problem found across records: its
// field security-groups[i]… or instances[i]… is that entry's key, and so
// are the entries its message refers to.
func crossProblem(ce *config.Error, gkeys, ikeys []string) KeyProblem {
	keyOf := func(list, idx string) (string, bool) {
		i, err := strconv.Atoi(idx)
		keys := ikeys
		if list == "security-groups" {
			keys = gkeys
		}
		if err != nil || i < 0 || i >= len(keys) {
			return "", false
		}
		return keys[i], true
	}
	p := KeyProblem{Key: "(this host's file)", Field: ce.Field, Msg: lineRef.ReplaceAllString(ce.Msg, "")}
	if m := entryRef.FindStringSubmatchIndex(ce.Field); m != nil && m[0] == 0 {
		if k, ok := keyOf(ce.Field[m[2]:m[3]], ce.Field[m[4]:m[5]]); ok {
			p.Key = k
			p.Field = strings.TrimPrefix(ce.Field[m[1]:], ".")
			if m[6] < m[7] { // the "." was part of the match
				p.Field = ce.Field[m[1]:]
			}
		}
	}
	p.Msg = entryRef.ReplaceAllStringFunc(p.Msg, func(s string) string {
		sub := entryRef.FindStringSubmatch(s)
		if k, ok := keyOf(sub[1], sub[2]); ok {
			return k + sub[3]
		}
		return s
	})
	return p
}
