// Command sgswitch is the userspace security-group switch: one binary for the
// hypervisor bridge (run), lab topologies (lab), offline replay (replay),
// explaining a verdict (trace), validating a configuration (check),
// comparing two configurations (diff) and talking to a running switch (ctl).
// This file only dispatches; each subcommand is a function from its
// arguments to an error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: sgswitch COMMAND [flags]

commands:
  run    -c FILE                 serve the configured TAP devices (the hypervisor bridge)
  lab    up|down -c FILE         a lab topology of network namespaces around the switch
  replay -c FILE PCAP...         feed captures through the pipeline offline
  trace  -c FILE --from PORT PKT explain the verdict of one hypothetical packet
  check  -c FILE                 validate a configuration
  diff   OLD NEW                 what differs between two configurations
  ctl    [--socket PATH] ...     talk to a running switch (ctl help for more)
  cluster import|export          move a whole policy into or out of etcd (SPEC §9)

Run "sgswitch COMMAND -h" for a command's flags.
`

// exitError carries a specific exit status out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a mistake on the command line: exit status 2.
func usageError(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		code := 1
		var ee *exitError
		if errors.As(err, &ee) {
			code = ee.code
		}
		if ee == nil || ee.err != errSilent {
			fmt.Fprintln(os.Stderr, "sgswitch:", err)
		}
		os.Exit(code)
	}
}

// errSilent is an exit status without a message (the command already said why).
var errSilent = errors.New("")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: 2, err: errSilent}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(ctx, rest, stderr)
	case "lab":
		return cmdLab(ctx, rest, stdout, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "ctl":
		return cmdCtl(ctx, rest, stdout, stderr)
	case "replay":
		return cmdReplay(ctx, rest, stdout, stderr)
	case "trace":
		return cmdTrace(ctx, rest, stdout, stderr)
	case "diff":
		return cmdDiff(rest, stdout, stderr)
	case "cluster":
		return cmdCluster(ctx, rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError("unknown command %q\n%s", cmd, usage)
}
