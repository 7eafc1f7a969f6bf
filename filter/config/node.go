package config

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// parser walks the YAML node tree of one file. The tree (rather than
// yaml.Unmarshal into structs) is what lets every message carry the line of
// the offending key or value and lets unknown fields be reported where they
// are. The parser never stops at the first problem: each decoder records what
// is wrong and returns ok=false, and callers only rely on values decoded ok.
type parser struct {
	file  string
	errs  Errors
	warns Errors // same form as errors, rendered into Config.Warnings
	// lines holds the line of every mapping and string decoded, by field
	// path, for the checks that compare entries after the walk.
	lines map[string]int
	// entryLine, when set, finds the lines of fields inside entries decoded
	// on their own (Assemble); lines then holds only the head's.
	entryLine func(path string) (int, bool)
}

// lookup is the line of the field at path, if it was given.
func (p *parser) lookup(path string) (int, bool) {
	if l, ok := p.lines[path]; ok {
		return l, true
	}
	if p.entryLine != nil {
		return p.entryLine(path)
	}
	return 0, false
}

// line is the line of the value at path or, when that field is absent (a
// default applies), of the closest enclosing entry.
func (p *parser) line(path string) int {
	for path != "" {
		if l, ok := p.lookup(path); ok {
			return l
		}
		path = path[:max(strings.LastIndexAny(path, ".["), 0)]
	}
	return 0
}

func (p *parser) errorf(line int, field, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) warnf(line int, field, format string, args ...any) {
	p.warns = append(p.warns, &Error{File: p.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// join builds a field path: join("instances[0]", "mac") = "instances[0].mac".
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// describe names what a node holds, for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "nothing"
	}
	v := n.Value
	if utf8.RuneCountInString(v) > 40 {
		v = string([]rune(v)[:40]) + "..."
	}
	return fmt.Sprintf("%q", v)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// noAlias refuses YAML aliases. Following them would make one value appear
// at several paths with the line of its anchor, and would let a small file
// expand into an enormous configuration.
func (p *parser) noAlias(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		p.errorf(n.Line, path, "YAML aliases (*%s) are not supported; write the value out", n.Value)
		return false
	}
	return true
}

// mapping is a YAML mapping whose keys were checked against the fields
// allowed at its place.
type mapping struct {
	path string
	line int
	keys map[string]*yaml.Node
	vals map[string]*yaml.Node
}

func (m *mapping) val(name string) *yaml.Node { return m.vals[name] }
func (m *mapping) field(name string) string   { return join(m.path, name) }

// mapping decodes n as a mapping with the given allowed fields. Unknown and
// repeated fields are reported and skipped; the mapping is still returned so
// that the known fields get checked too. A null value counts as an empty
// mapping (`switch:` with nothing under it).
func (p *parser) mapping(n *yaml.Node, path string, allowed []string) (*mapping, bool) {
	if !p.noAlias(n, path) {
		return nil, false
	}
	m := &mapping{path: path, line: n.Line, keys: map[string]*yaml.Node{}, vals: map[string]*yaml.Node{}}
	p.lines[path] = n.Line
	if isNull(n) {
		return m, true
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, path, "want a mapping with fields %s, got %s", strings.Join(allowed, ", "), describe(n))
		return nil, false
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k.Line, path, "a field name must be a plain word, got %s", describe(k))
			continue
		}
		field := join(path, k.Value)
		if !contains(allowed, k.Value) {
			p.errorf(k.Line, field, "unknown field; valid fields here are %s", strings.Join(allowed, ", "))
			continue
		}
		if first := m.keys[k.Value]; first != nil {
			p.errorf(k.Line, field, "given twice (first at line %d)", first.Line)
			continue
		}
		m.keys[k.Value], m.vals[k.Value] = k, v
	}
	return m, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// list decodes n as a sequence; null counts as an empty list. what describes
// the expected items, e.g. "group names".
func (p *parser) list(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	if !p.noAlias(n, path) {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, path, "want a list of %s, got %s", what, describe(n))
		return nil, false
	}
	return n.Content, true
}

// str decodes a scalar as a string. Any scalar is accepted (a group may be
// called 2024) and null is the empty string, which callers that need a value
// refuse with their own, more useful, message.
func (p *parser) str(n *yaml.Node, path string) (string, bool) {
	if !p.noAlias(n, path) {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n.Line, path, "want a string, got %s", describe(n))
		return "", false
	}
	p.lines[path] = n.Line
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

func (p *parser) boolean(n *yaml.Node, path string) (bool, bool) {
	if !p.noAlias(n, path) {
		return false, false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
		p.errorf(n.Line, path, "want true or false, got %s", describe(n))
		return false, false
	}
	return b, true
}

// digits matches integers too large for int64, which YAML resolves as floats.
var digits = regexp.MustCompile(`^[-+]?[0-9][0-9_]*$`)

// integer decodes an integer in [lo, hi]; valid says what the range means
// ("a port is 1-65535") so the message tells how to fix the value.
func (p *parser) integer(n *yaml.Node, path string, lo, hi int64, valid string) (int64, bool) {
	if !p.noAlias(n, path) {
		return 0, false
	}
	var v int64
	switch {
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" && n.Decode(&v) == nil:
		if v >= lo && v <= hi {
			return v, true
		}
	case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!float" && digits.MatchString(n.Value):
		// Too large for int64: out of any range we accept.
	default:
		p.errorf(n.Line, path, "want an integer, got %s", describe(n))
		return 0, false
	}
	p.errorf(n.Line, path, "%s is out of range; %s", n.Value, valid)
	return 0, false
}
