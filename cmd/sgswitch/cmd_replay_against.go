package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/capture"
)

// replayAgainst is `replay --against`: the captures under the current and
// the proposed configuration in one pass (vswitch.Comparison), and the
// connections whose fate differs. Exit status 1 when some do, 2 on errors.
func replayAgainst(ctx context.Context, cur *config.Config, curPath, propPath string, captures []string, loops int, format string, stdout, stderr io.Writer) error {
	prop, err := loadConfig(propPath, stderr)
	if err != nil {
		return err
	}
	cmp, err := vswitch.NewComparison(cur, prop)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	src, err := newReplaySource(captures, loops, capture.Options{}, cur)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer src.close()
	batch := make([]capture.Frame, replayBatch)
	var n int64
	for {
		if ctx.Err() != nil {
			return &exitError{code: 2, err: ctx.Err()}
		}
		k, err := src.next(batch)
		if err == io.EOF {
			break
		}
		if err != nil {
			return &exitError{code: 2, err: err}
		}
		for i := range batch[:k] {
			cmp.Frame(batch[i].Num, batch[i].Data, batch[i].Time)
		}
		n += int64(k)
	}
	diffs := cmp.Differences()
	if format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // "tcp a:p > b:q" stays readable
		if err := enc.Encode(struct {
			Current     string             `json:"current"`
			Proposed    string             `json:"proposed"`
			Captures    []string           `json:"captures"`
			Frames      int64              `json:"frames"`
			Connections int                `json:"connections"`
			Differences []vswitch.FateDiff `json:"differences"`
		}{curPath, propPath, captures, n, cmp.Connections(), diffs}); err != nil {
			return &exitError{code: 2, err: err}
		}
	} else {
		opened := 0
		for _, d := range diffs {
			if d.Change == "opened" {
				opened++
			}
		}
		fmt.Fprintf(stdout, "frames %d, connections %d, differ %d (opened %d, cut %d)\n", n, cmp.Connections(), len(diffs), opened, len(diffs)-opened)
		if len(diffs) > 0 {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "frame\tdiffers-at\tchange\tconnection\tcurrent\tproposed")
			for _, d := range diffs {
				fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", d.Frame, d.DiffersAt, d.Change, d.Connection, fateText(d.Current), fateText(d.Proposed))
			}
			tw.Flush()
		}
	}
	if len(diffs) > 0 {
		return &exitError{code: 1, err: errSilent}
	}
	return nil
}

func fateText(f vswitch.Fate) string {
	if f.Rule != "" {
		return f.Verdict + " " + f.Rule
	}
	return f.Verdict + " " + f.Reason
}
