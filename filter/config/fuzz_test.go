package config

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
)

// FuzzConfig feeds arbitrary bytes to Parse. On every input:
//
//   - Parse does not panic;
//   - it returns either a *Config and a nil error, or a nil *Config and an
//     error of type Errors with at least one element, every one of which
//     names the file ("fuzz.yaml"), a line that is 0 (unknown) or within the
//     file (or the end of the stream just after it), and a non-empty message;
//   - a Config it accepts survives Marshal: Parse(Marshal(c)) succeeds
//     without warnings and gives back c (compared as marshal_test.go's
//     roundTrip does: reflect.DeepEqual after withoutPositions), and
//     Marshal of that is byte for byte the same file (a write-back of an
//     unchanged configuration changes nothing).
//
// The seeds are the project's configurations (testdata/config,
// testdata/lab/seed.yaml) and every input of parse_errors_test.go's table.
//
// Replay the committed corpus with go test -run FuzzConfig ./filter/config/;
// fuzz with go test -run '^$' -fuzz FuzzConfig -fuzztime 5m ./filter/config/.
func FuzzConfig(f *testing.F) {
	files, err := filepath.Glob("../../testdata/config/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	files = append(files, "../../testdata/lab/seed.yaml")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tc := range errorCases {
		f.Add([]byte(tc.yaml))
	}
	f.Add([]byte(""))
	f.Add([]byte("instances:\n  - {name: a, mac: \"02:00:00:00:00:01\", ipv4: 10.0.0.2/24, ipv6: \"2001:db8::2/64\", smtp-egress: true}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		const file = "fuzz.yaml"
		c, err := Parse(file, data)
		if err != nil {
			if c != nil {
				t.Fatalf("Parse returned a configuration along with an error: %v", err)
			}
			errs, ok := err.(Errors)
			if !ok {
				t.Fatalf("Parse error is %T, want config.Errors: %v", err, err)
			}
			if len(errs) == 0 {
				t.Fatalf("Parse returned an empty Errors")
			}
			// yaml.v3 places the end of the stream on a line of its own after
			// the last one, and reports problems found there (an unclosed
			// flow collection) on it: one line past the file is tolerated.
			lines := yamlLines(data) + 1
			for _, e := range errs {
				if e == nil {
					t.Fatalf("a nil *Error in %q", err)
				}
				if e.File != file || e.Line < 0 || e.Line > lines || strings.TrimSpace(e.Msg) == "" {
					t.Fatalf("error %q: File %q, Line %d (at most %d), Msg %q; want %s, a line in the file and a message",
						e.Error(), e.File, e.Line, lines, e.Msg, file)
				}
			}
			return
		}
		if c == nil {
			t.Fatalf("Parse returned neither a configuration nor an error")
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a configuration Parse accepted: %v", err)
		}
		back, err := Parse(file, out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n--- input\n%s\n--- marshalled\n%s", err, data, out)
		}
		if len(back.Warnings) != 0 {
			t.Errorf("Marshal output is not canonical: %v\n--- marshalled\n%s", back.Warnings, out)
		}
		if got, want := withoutPositions(back), withoutPositions(c); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip changed the configuration\n got %+v\nwant %+v\n--- input\n%s\n--- marshalled\n%s", got, want, data, out)
		}
		again, err := Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("Marshal is not stable:\n%s\n---\n%s", out, again)
		}
	})
}

// yamlLines is the number of lines of data as YAML counts them: line breaks
// are LF, CR, CR LF, and NEL, LS and PS (YAML 1.1, which yaml.v3 follows),
// in a file of UTF-8 or, after a byte order mark, UTF-16.
func yamlLines(data []byte) int {
	if len(data) >= 2 && (data[0] == 0xfe && data[1] == 0xff || data[0] == 0xff && data[1] == 0xfe) {
		order := binary.ByteOrder(binary.BigEndian)
		if data[0] == 0xff {
			order = binary.LittleEndian
		}
		units := make([]uint16, 0, len(data)/2)
		for i := 2; i+1 < len(data); i += 2 {
			units = append(units, order.Uint16(data[i:]))
		}
		data = []byte(string(utf16.Decode(units)))
	}
	n := 1
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '\n':
			n++
		case data[i] == '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			n++
		case bytes.HasPrefix(data[i:], []byte("\u0085")), bytes.HasPrefix(data[i:], []byte("\u2028")), bytes.HasPrefix(data[i:], []byte("\u2029")):
			n++
		}
	}
	return n
}
