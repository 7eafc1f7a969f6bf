package etcd

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sgswitch/sgswitch/filter/config"
)

// A record's value is the YAML of its entry as the configuration file holds
// it (config.Marshal's form). The configuration a host enforces is its own
// file's switch, uplink and cluster sections with every record of the
// policy as its security-groups and instances, checked by config.Parse — the
// very code that checks a file — so a record is valid in etcd exactly when
// it would be valid in a file.

// RecordError is an invalid policy: the key of each bad record and what is
// wrong with it.
type RecordError struct {
	Rev      int64
	Problems []KeyProblem
}

// KeyProblem is one problem of one record.
type KeyProblem struct {
	Key   string
	Field string // relative to the record ("rules[0].network"); "" for the whole record
	Msg   string
}

func (e *RecordError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the policy at revision %d is refused; the last good revision stays in force:", e.Rev)
	for _, p := range e.Problems {
		b.WriteString("\n  etcd key ")
		b.WriteString(p.Key)
		b.WriteString(": ")
		if p.Field != "" {
			b.WriteString(p.Field)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Build is the configuration of a host: local (its file: switch, uplink,
// cluster) with the records of snap as its policy.
func Build(local *config.Config, keys Keys, snap Snapshot) (*config.Config, error) {
	base := &config.Config{Switch: local.Switch, Uplink: local.Uplink, Cluster: local.Cluster}
	head, err := config.Marshal(base)
	if err != nil {
		return nil, err
	}
	// Marshal leaves out an empty default group; nothing else here.
	head = bytes.TrimSuffix(head, []byte("{}\n"))
	var doc bytes.Buffer
	doc.Write(head)
	line := bytes.Count(head, []byte("\n")) + 1
	type span struct {
		key        string
		start, end int // lines [start, end)
		list       string
		index      int
	}
	var spans []span
	var problems []KeyProblem
	section := func(title, prefix string) {
		n := 0
		first := true
		for _, r := range snap.Records {
			if !strings.HasPrefix(r.Key, prefix) {
				continue
			}
			name := keys.name(r.Key)
			if p := checkRecord(r, name); p != nil {
				problems = append(problems, *p)
				continue
			}
			if first {
				doc.WriteString(title + ":\n")
				line++
				first = false
			}
			text := strings.TrimRight(string(r.Value), "\n")
			lines := strings.Split(text, "\n")
			for i, l := range lines {
				if i == 0 {
					doc.WriteString("  - ")
				} else {
					doc.WriteString("    ")
				}
				doc.WriteString(l)
				doc.WriteByte('\n')
			}
			spans = append(spans, span{r.Key, line, line + len(lines), title, n})
			line += len(lines)
			n++
		}
	}
	section("security-groups", keys.Groups())
	section("instances", keys.Instances())
	if len(problems) > 0 {
		return nil, &RecordError{Rev: snap.Rev, Problems: problems}
	}
	cfg, err := config.Parse("", doc.Bytes())
	if err != nil {
		var es config.Errors
		if !errors.As(err, &es) {
			return nil, err
		}
		re := &RecordError{Rev: snap.Rev}
		for _, ce := range es {
			p := KeyProblem{Key: "(this host's file)", Field: ce.Field, Msg: lineRef.ReplaceAllString(ce.Msg, "")}
			for _, sp := range spans {
				if ce.Line >= sp.start && ce.Line < sp.end {
					p.Key = sp.key
					p.Field = strings.TrimPrefix(strings.TrimPrefix(ce.Field, fmt.Sprintf("%s[%d]", sp.list, sp.index)), ".")
					break
				}
			}
			p.Msg = entryRef.ReplaceAllStringFunc(p.Msg, func(m string) string {
				sub := entryRef.FindStringSubmatch(m)
				for _, sp := range spans {
					if sp.list == sub[1] && fmt.Sprint(sp.index) == sub[2] {
						return sp.key + sub[3]
					}
				}
				return m
			})
			re.Problems = append(re.Problems, p)
		}
		return nil, re
	}
	cfg.File = "" // the policy is not the file's: nothing writes it back there
	cfg.Warnings = nil
	return cfg, nil
}

var (
	lineRef  = regexp.MustCompile(` \((?:first at )?line \d+\)`)
	entryRef = regexp.MustCompile(`(security-groups|instances)\[(\d+)\](\.?)`)
)

// checkRecord checks what Parse cannot see: that a record is one YAML
// mapping whose name is its key's.
func checkRecord(r Record, name string) *KeyProblem {
	// The common case without a YAML parse (config.Parse reads every
	// record anyway): a block mapping whose first line is its name.
	if first, _, _ := strings.Cut(string(r.Value), "\n"); strings.HasPrefix(first, "name: ") {
		if v := strings.Trim(strings.TrimSpace(first[len("name: "):]), `"'`); v == name {
			return nil
		}
	}
	var n yaml.Node
	if err := yaml.Unmarshal(r.Value, &n); err != nil {
		return &KeyProblem{Key: r.Key, Msg: "not YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if n.Kind != yaml.DocumentNode || len(n.Content) != 1 || n.Content[0].Kind != yaml.MappingNode {
		return &KeyProblem{Key: r.Key, Msg: "want one YAML mapping, the entry as the configuration file writes it"}
	}
	m := n.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "name" {
			if m.Content[i+1].Value != name {
				return &KeyProblem{Key: r.Key, Field: "name", Msg: fmt.Sprintf("%q differs from the key's name %q; a record is stored under its own name", m.Content[i+1].Value, name)}
			}
			return nil
		}
	}
	return &KeyProblem{Key: r.Key, Field: "name", Msg: fmt.Sprintf("missing; write name: %s", name)}
}

// Records are the policy of cfg (its groups and instances) as etcd holds
// it, sorted by key. The implicit default group is left out unless it has
// something of its own, as the file does.
func Records(cfg *config.Config, keys Keys) ([]Record, error) {
	var out []Record
	for i := range cfg.SecurityGroups {
		g := &cfg.SecurityGroups[i]
		if g.Name == config.DefaultGroup && g.Description == "" && len(g.Rules) == 0 && len(g.ExternalSources) == 0 {
			continue
		}
		v, err := entry(&config.Config{SecurityGroups: []config.SecurityGroup{*g}}, "security-groups")
		if err != nil {
			return nil, err
		}
		out = append(out, Record{Key: keys.Group(g.Name), Value: v})
	}
	for i := range cfg.Instances {
		v, err := entry(&config.Config{Cluster: cfg.Cluster, Instances: []config.Instance{cfg.Instances[i]}}, "instances")
		if err != nil {
			return nil, err
		}
		out = append(out, Record{Key: keys.Instance(cfg.Instances[i].Name), Value: v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// entry is the YAML of the one entry of list in c, block style.
func entry(c *config.Config, list string) ([]byte, error) {
	data, err := config.Marshal(c)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == list {
			n := top.Content[i+1].Content[0]
			n.Style = 0
			var buf bytes.Buffer
			enc := yaml.NewEncoder(&buf)
			enc.SetIndent(2)
			if err := enc.Encode(n); err != nil {
				return nil, err
			}
			enc.Close()
			return buf.Bytes(), nil
		}
	}
	return nil, fmt.Errorf("no %s entry", list)
}
