package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/sgswitch/sgswitch/filter/config"
)

const diffUsage = `usage: sgswitch diff [-o json] OLD NEW

Lists what differs from configuration OLD to NEW, in the file's words: groups
added and removed; in each group, its external sources and rules added,
removed or moved; instances added and removed, and each changed field
(security groups, addresses, port); switch and uplink settings. The same
lines make the "changes" of a reload's log. Exit status: 0 when nothing
differs, 1 when something does, 2 on bad arguments or configurations.`

func cmdDiff(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	out := fs.String("o", "table", "output format: table or json")
	if err := parseFlags(fs, args, nil); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return usageError("diff: need two configuration files, OLD and NEW\n%s", diffUsage)
	}
	if *out != "table" && *out != "json" {
		return usageError("diff: -o %s: the output format is table or json", *out)
	}
	var cfgs [2]*config.Config
	for i := range cfgs {
		cfg, err := config.Load(fs.Arg(i))
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		cfgs[i] = cfg
	}
	changes := config.Changes(cfgs[0], cfgs[1])
	if *out == "json" {
		if changes == nil {
			changes = []config.Change{}
		}
		if err := printJSON(stdout, map[string]any{"old": fs.Arg(0), "new": fs.Arg(1), "changes": changes}); err != nil {
			return err
		}
	} else {
		for _, c := range changes {
			fmt.Fprintln(stdout, c)
		}
	}
	if len(changes) > 0 {
		return &exitError{code: 1, err: errSilent}
	}
	return nil
}
