package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads and parses the configuration file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse decodes, checks and canonicalises a configuration. file names the
// source in messages ("" for none). On failure the error is an Errors holding
// every problem found, in line order; the returned Config is then nil, so a
// caller cannot half-apply an invalid file.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file, lines: map[string]int{}}
	root := p.document(data)
	c := &Config{File: file}
	if len(p.errs) == 0 {
		p.decodeConfig(root, c)
		p.crossCheck(c)
	}
	if len(p.errs) > 0 {
		p.errs.sortByLine()
		return nil, p.errs
	}
	p.warns.sortByLine()
	for _, w := range p.warns {
		c.Warnings = append(c.Warnings, w.Error())
	}
	return c, nil
}

// document returns the top node of the file's single YAML document, or nil
// when the file is empty.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.syntax(err, data)
		}
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		p.syntax(err, data)
	default:
		p.errorf(next.Line, "", "a second YAML document; the configuration is one document")
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil
	}
	return doc.Content[0]
}

var (
	yamlError     = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)
	unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)
)

// parserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner). For these it reports a 0-based line, so they are one line short.
var parserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// syntax reports a YAML syntax error with the best line yaml.v3 lets us know.
// yaml.v3 omits the line when the problem is on the first one.
func (p *parser) syntax(err error, data []byte) {
	m := yamlError.FindStringSubmatch(err.Error())
	if m == nil {
		p.errorf(1, "", "invalid YAML: %v", err)
		return
	}
	line, msg := 1, m[2]
	if m[1] != "" {
		line, _ = strconv.Atoi(m[1])
		if contains(parserProblems, msg) {
			line++
		}
	}
	if a := unknownAnchor.FindStringSubmatch(msg); a != nil {
		// The decoder does not say where the alias is; find its first use.
		for i, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, "*"+a[1]) {
				line = i + 1
				break
			}
		}
	}
	p.errorf(line, "", "invalid YAML: %s", msg)
}
