package config

import (
	"strconv"
	"strings"
)

// A policy kept one entry per record (the cluster's etcd keys) is decoded
// one entry at a time, so that a change decodes only the entries it
// touched, and then checked as a whole: ParseGroup and ParseInstance do
// what Parse does for one entry of the file, Assemble what it does across
// entries. Parse of the same entries in one file gives the same
// configuration and refuses the same policies.

// Entry is one security group or instance decoded from its own YAML
// document (the entry as Marshal writes it in a file's list).
type Entry struct {
	Group    *SecurityGroup // set by ParseGroup
	Instance *Instance      // set by ParseInstance
	lines    map[string]int // the entry's fields, relative to it ("rules[0].network")
}

// ParseGroup decodes one security group's entry. Errors name fields
// relative to the entry; references to other groups are checked by Assemble.
func ParseGroup(data []byte) (*Entry, error) {
	p := &parser{lines: map[string]int{}}
	root := p.document(data)
	if root == nil && len(p.errs) == 0 {
		p.errorf(1, "", "empty; want the group's mapping, e.g. name: web")
	}
	e := &Entry{lines: p.lines}
	if len(p.errs) == 0 {
		g := p.decodeGroup(root, "")
		e.Group = &g
	}
	return e, p.entryErrors()
}

// ParseInstance decodes one instance's entry. Errors name fields relative
// to the entry; uniqueness and group references are checked by Assemble.
func ParseInstance(data []byte) (*Entry, error) {
	p := &parser{lines: map[string]int{}}
	root := p.document(data)
	if root == nil && len(p.errs) == 0 {
		p.errorf(1, "", "empty; want the instance's mapping, e.g. name: web1")
	}
	e := &Entry{lines: p.lines}
	if len(p.errs) == 0 {
		in := p.decodeInstance(root, "")
		e.Instance = &in
	}
	return e, p.entryErrors()
}

func (p *parser) entryErrors() error {
	if len(p.errs) == 0 {
		return nil
	}
	p.errs.sortByLine()
	return p.errs
}

// Assemble is the configuration of head (a file's switch, uplink and
// cluster sections, without groups or instances) with groups and
// instances, in this order, as its lists, after the checks across entries
// that Parse makes (unique names, TAPs, MACs and addresses, references to
// groups, the default group). Errors name fields as a file holding the
// entries in this order would: instances[3].mac. The entries are shared,
// not copied: the returned configuration must not be modified.
func Assemble(file string, head []byte, groups, instances []*Entry) (*Config, error) {
	c, _, err := assemble(file, head, groups, instances)
	return c, err
}

func assemble(file string, head []byte, groups, instances []*Entry) (*Config, *claims, error) {
	p := &parser{file: file, lines: map[string]int{}}
	root := p.document(head)
	c := &Config{File: file}
	if len(p.errs) == 0 {
		p.decodeConfig(root, c)
	}
	if len(p.errs) == 0 && (len(c.SecurityGroups) > 0 || len(c.Instances) > 0) {
		p.errorf(1, "", "the head of an assembled policy holds no security-groups or instances")
	}
	if len(p.errs) > 0 {
		return nil, nil, p.errs
	}
	c.SecurityGroups = make([]SecurityGroup, len(groups), len(groups)+1)
	for i, e := range groups {
		c.SecurityGroups[i] = *e.Group
	}
	c.Instances = make([]Instance, len(instances))
	for i, e := range instances {
		c.Instances[i] = *e.Instance
	}
	p.entryLine = func(path string) (int, bool) {
		list, entries := "instances[", instances
		if strings.HasPrefix(path, "security-groups[") {
			list, entries = "security-groups[", groups
		} else if !strings.HasPrefix(path, list) {
			return 0, false
		}
		rest := path[len(list):]
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return 0, false
		}
		i, err := strconv.Atoi(rest[:end])
		if err != nil || i < 0 || i >= len(entries) {
			return 0, false
		}
		l, ok := entries[i].lines[strings.TrimPrefix(rest[end+1:], ".")]
		return l, ok
	}
	cl := p.crossCheck(c)
	if len(p.errs) > 0 {
		return nil, nil, p.errs
	}
	p.warns.sortByLine()
	for _, w := range p.warns {
		c.Warnings = append(c.Warnings, w.Error())
	}
	return c, cl, nil
}
