package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/port"
)

// configFlag registers -c/--config on fs.
func configFlag(fs *flag.FlagSet) *string {
	p := fs.String("c", "", "configuration `FILE`")
	fs.StringVar(p, "config", "", "configuration `FILE` (same as -c)")
	return p
}

// parseFlags parses args with fs and requires a configuration file.
func parseFlags(fs *flag.FlagSet, args []string, cfgPath *string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		return usageError("%s: %v (see sgswitch %s -h)", fs.Name(), err, fs.Name())
	}
	if cfgPath != nil && *cfgPath == "" {
		return usageError("%s: the configuration file is missing: pass -c FILE", fs.Name())
	}
	return nil
}

// loadConfig reads and validates the configuration; invalid is exit status 2.
func loadConfig(path string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	return cfg, nil
}

// logOptions are the logging flags of the commands that serve (run, lab up).
type logOptions struct {
	format string
	drops  bool
}

// logFlags registers --log-format and --log-drops on fs.
func logFlags(fs *flag.FlagSet) *logOptions {
	o := &logOptions{}
	fs.StringVar(&o.format, "log-format", "text", "log `FORMAT`: text or json")
	fs.BoolVar(&o.drops, "log-drops", false, "log dropped frames, at most one a second per port and reason after a burst of ten")
	return o
}

// logger is the logger the flags ask for, writing to w.
func (o *logOptions) logger(w io.Writer) (*slog.Logger, error) {
	switch o.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageError("--log-format: %q is not a log format; want text or json", o.format)
}

// dropLog is the drop logger the flags ask for; nil when drops are not logged.
func (o *logOptions) dropLog(log *slog.Logger) *vswitch.DropLog {
	if !o.drops {
		return nil
	}
	return vswitch.NewDropLog(log, vswitch.DefaultDropLogRate, vswitch.DefaultDropLogBurst, nil)
}

// newSwitch builds the switch of cfg with its TAP devices opened (created
// when they do not exist); drops, when set, is told about dropped frames.
func newSwitch(cfg *config.Config, log *slog.Logger, drops *vswitch.DropLog) (*vswitch.Switch, error) {
	opt := vswitch.Options{Logger: log, OpenPort: func(device string) (port.Port, error) {
		return port.OpenTAP(device, port.TAPOptions{Offload: cfg.Switch.Offload})
	}}
	if drops != nil {
		opt.OnDrop = drops.Drop
	}
	sw, err := vswitch.New(cfg, opt)
	if err == nil && drops != nil {
		drops.Attach(sw) // rule names and the switch's clock
	}
	return sw, err
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	logOpt := logFlags(fs)
	if err := parseFlags(fs, args, cfgPath); err != nil {
		return err
	}
	log, err := logOpt.logger(stderr)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	drops := logOpt.dropLog(log)
	sw, err := newSwitch(cfg, log, drops)
	if err != nil {
		return err
	}
	return serve(ctx, sw, log, drops, nil)
}

// serve runs the switch with its control socket and its metrics endpoint
// (switch.metrics, when set) until ctx ends. drops, when set, is the switch's
// drop logger, whose suppression counts are flushed periodically. ready,
// when set, is called once the switch is serving.
func serve(ctx context.Context, sw *vswitch.Switch, log *slog.Logger, drops *vswitch.DropLog, ready func() error) error {
	cfg := sw.Config()
	var metrics net.Listener
	if cfg.Switch.Metrics != "" {
		var err error
		if metrics, err = vswitch.ListenMetrics(cfg.Switch.Metrics); err != nil {
			sw.Close()
			return fmt.Errorf("metrics endpoint (switch.metrics): %w", err)
		}
	}
	ctl, err := vswitch.ListenControl(cfg.Switch.Control)
	if err != nil {
		if metrics != nil {
			metrics.Close()
		}
		sw.Close()
		return err
	}
	defer os.Remove(cfg.Switch.Control)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return sw.Run(ctx) })
	g.Go(func() error { return sw.ServeControl(ctx, ctl) })
	g.Go(func() error { return reloadOnHUP(ctx, sw, cfg.File, log) })
	if metrics != nil {
		g.Go(func() error { return sw.ServeMetrics(ctx, metrics) })
	}
	if drops != nil {
		g.Go(func() error { drops.Run(ctx, 10*time.Second); return nil })
	}
	if ready != nil {
		g.Go(ready)
	}
	log.Info("sgswitch serving", "ports", sw.NumPorts(), "control", cfg.Switch.Control, "metrics", cfg.Switch.Metrics, "log-drops", drops != nil)
	err = g.Wait()
	log.Info("sgswitch stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// reloadOnHUP re-reads the configuration file on SIGHUP. A file that does not
// load, or that cannot be applied, leaves the running policy in force.
func reloadOnHUP(ctx context.Context, sw *vswitch.Switch, path string, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		}
		cfg, err := config.Load(path)
		if err == nil {
			err = sw.Apply(cfg)
		}
		if err != nil {
			log.Error("reload refused; the previous configuration stays in force", "file", path, "err", err)
			continue
		}
		log.Info("configuration reloaded", "file", path)
	}
}

func cmdLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down") {
		return usageError("lab: say up or down: sgswitch lab up -c FILE")
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	cfgPath := configFlag(fs)
	var logOpt *logOptions
	if args[0] == "up" {
		logOpt = logFlags(fs)
	}
	if err := parseFlags(fs, args[1:], cfgPath); err != nil {
		return err
	}
	var log *slog.Logger
	if logOpt != nil {
		var err error
		if log, err = logOpt.logger(stderr); err != nil {
			return err
		}
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	if args[0] == "down" {
		return lab.Down(cfg)
	}
	drops := logOpt.dropLog(log)
	sw, err := newSwitch(cfg, log, drops)
	if err != nil {
		return err
	}
	l, err := lab.Up(cfg)
	if err != nil {
		sw.Close()
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			log.Error("lab teardown", "err", err)
		}
	}()
	return serve(ctx, sw, log, drops, func() error {
		fmt.Fprintf(stdout, "lab up: namespaces %v; stop with Ctrl-C (or sgswitch lab down -c %s)\n", l.Namespaces(), *cfgPath)
		return nil
	})
}

func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if err := parseFlags(fs, args, cfgPath); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, stderr)
	if err != nil {
		return err
	}
	groups, rules := len(cfg.SecurityGroups), 0
	for _, g := range cfg.SecurityGroups {
		rules += len(g.Rules)
	}
	fmt.Fprintf(stdout, "%s: ok: %d security groups, %d rules, %d instances\n", *cfgPath, groups, rules, len(cfg.Instances))
	return nil
}
