package config

import (
	"fmt"
	"sort"
	"strings"
)

// Error is one problem found in a configuration file. It renders as
// "FILE:LINE: FIELD: MESSAGE", the form editors and CI logs recognise, where
// FIELD is a path such as security-groups[1].rules[0].start-port.
type Error struct {
	File  string
	Line  int // 1-based; 0 when unknown
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		fmt.Fprintf(&b, "%s: ", e.File)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in line order: a configuration
// is checked completely so that one run of `sgswitch check` shows them all.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// sortByLine orders errors as they appear in the file. The sort is stable so
// that several problems on one line keep the order they were found in.
func (es Errors) sortByLine() {
	sort.SliceStable(es, func(i, j int) bool { return es[i].Line < es[j].Line })
}
