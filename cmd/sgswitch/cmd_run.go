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
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/lab"
	"github.com/sgswitch/sgswitch/switch/lab/cluster"
	"github.com/sgswitch/sgswitch/switch/port"
	"github.com/sgswitch/sgswitch/switch/port/vhostuser"
	"github.com/sgswitch/sgswitch/switch/source"
	"github.com/sgswitch/sgswitch/switch/source/control"
	etcdsrc "github.com/sgswitch/sgswitch/switch/source/etcd"
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

// logOptions are the logging and profiling flags of the commands that serve
// (run, lab up).
type logOptions struct {
	format     string
	drops      bool
	cpuProfile string
}

// logFlags registers --log-format, --log-drops and --cpuprofile on fs.
func logFlags(fs *flag.FlagSet) *logOptions {
	o := &logOptions{}
	fs.StringVar(&o.format, "log-format", "text", "log `FORMAT`: text or json")
	fs.BoolVar(&o.drops, "log-drops", false, "log dropped frames, at most one a second per port and reason after a burst of ten")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (go tool pprof) to `FILE` when the switch stops")
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
//
// persist keeps the TAP devices in the kernel when the switch exits (`run`:
// a restart must not take the VMs' NICs away); the lab's die with it.
//
// inLab opens each TAP inside its lab namespace instead (`run --lab`, `lab up`).
func newSwitch(cfg *config.Config, log *slog.Logger, drops *vswitch.DropLog, persist, inLab bool) (*vswitch.Switch, error) {
	opt := vswitch.Options{Logger: log, OpenPort: func(spec port.Spec) (port.Port, error) {
		device := spec.Device
		if spec.Kind == port.KindVhostUser {
			// The VM's queues over shared memory: no device, a socket.
			return vhostuser.Open(device, vhostuser.Options{Socket: device, Mode: vhostuser.Mode(spec.Mode),
				QueuePairs: cfg.Switch.Queues, NoOffload: !cfg.Switch.Offload, Logger: log})
		}
		if spec.Kind == port.KindNetdev {
			// An existing device, in the switch's own namespace (in a lab
			// too: the host end of the instance's veth pair).
			return port.OpenNetdev(device, port.NetdevOptions{Queues: cfg.Switch.Queues, Promisc: spec.Uplink, Log: log, Raw: spec.Poll})
		}
		o := port.TAPOptions{Offload: cfg.Switch.Offload, Persist: persist, Queues: cfg.Switch.Queues, Raw: spec.Poll}
		if inLab {
			return lab.OpenTAP(cfg, device, o)
		}
		return port.OpenTAP(device, o)
	}}
	if drops != nil {
		opt.OnDrop = drops.Drop
	}
	sw, err := vswitch.New(cfg, opt)
	if err == nil && drops != nil {
		drops.Attach(sw) // the switch's clock
	}
	return sw, err
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	logOpt := logFlags(fs)
	inLab := fs.Bool("lab", false, "attach to the TAPs of a lab built with `sgswitch lab up --keep` (each inside its namespace)")
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
	var cluster *etcdsrc.Client
	if cfg.Cluster != nil {
		if err := etcdsrc.CheckLocal(cfg); err != nil {
			return err
		}
		if cluster, err = etcdsrc.Dial(cfg.Cluster.Etcd); err != nil {
			return fmt.Errorf("%s:%d: %w", cfg.File, cfg.Cluster.Line, err)
		}
		defer cluster.Close()
	}
	sw, err := newSwitch(cfg, log, drops, true, *inLab)
	if err != nil {
		return err
	}
	writer := source.NewWriter(sw, source.Options{Logger: log})
	var sync *etcdsrc.Sync
	if cluster != nil {
		// The policy last applied, kept across restarts: enforced from
		// the start even when etcd is out of reach.
		sync = etcdsrc.NewSync(cluster, writer, cfg, etcdsrc.StatePath(cfg.Switch.Control), log)
		if rev, err := sync.Restore(); err != nil {
			log.Error("cluster: the saved policy is not restored; nothing is enforced until etcd answers", "err", err)
		} else if rev > 0 {
			log.Info("cluster: enforcing the saved policy until etcd answers", "revision", rev)
		}
		writer.SetRemote(sync)
	}
	// Hitless restart: the previous process left its tracked connections in
	// the state file on the way out; take them over before serving.
	state := vswitch.StatePath(cfg.Switch.Control)
	if n, err := sw.RestoreState(state); err != nil {
		log.Warn("tracked connections of the previous run not restored", "file", state, "err", err)
	} else if n > 0 {
		log.Info("tracked connections restored", "file", state, "connections", n)
	}
	err = serve(ctx, sw, log, serveOptions{drops: drops, cpuProfile: logOpt.cpuProfile, writer: writer, sync: sync})
	if n, serr := sw.SaveState(state); serr != nil {
		log.Error("tracked connections not saved", "file", state, "err", serr)
	} else {
		log.Info("tracked connections saved for the next start", "file", state, "connections", n)
	}
	return err
}

// serveOptions are what run and lab up serve differently.
type serveOptions struct {
	// drops is the switch's drop logger, whose suppression counts are
	// flushed periodically; nil when drops are not logged.
	drops *vswitch.DropLog
	// ready, when set, is called once the switch is serving.
	ready func() error
	// optionalMetrics: a metrics address that cannot be listened on is a
	// warning (a lab next to another switch) rather than an error (run).
	optionalMetrics bool
	// cpuProfile, when set, is where a CPU profile of the run is written.
	cpuProfile string
	// writer is the switch's writer; nil: serve makes one.
	writer *source.Writer
	// sync, in a cluster, is the etcd sync loop, run alongside.
	sync *etcdsrc.Sync
}

// serve runs the switch with its control socket and its metrics endpoint
// (switch.metrics, when set) until ctx ends.
func serve(ctx context.Context, sw *vswitch.Switch, log *slog.Logger, opt serveOptions) error {
	cfg := sw.Config()
	drops, ready := opt.drops, opt.ready
	if opt.cpuProfile != "" {
		f, err := os.Create(opt.cpuProfile)
		if err == nil {
			defer f.Close()
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			sw.Close()
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	var metrics net.Listener
	if addr := cfg.Switch.Metrics; addr != "" {
		var err error
		if metrics, err = vswitch.ListenMetrics(addr); err != nil {
			if !opt.optionalMetrics {
				sw.Close()
				return fmt.Errorf("metrics endpoint (switch.metrics): %w", err)
			}
			log.Warn("no metrics endpoint", "metrics", addr, "err", err)
		}
	}
	ctl, err := control.Listen(cfg.Switch.Control)
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
	// One writer for every source of policy: the control API, the SIGHUP
	// reload and the cluster sync take turns.
	writer := opt.writer
	if writer == nil {
		writer = source.NewWriter(sw, source.Options{Logger: log})
	}
	g.Go(func() error { return control.Serve(ctx, ctl, writer) })
	reload := writer.ReloadFile
	var extra []prometheus.Collector
	if opt.sync != nil {
		reload = opt.sync.ReloadLocal
		extra = append(extra, opt.sync)
		g.Go(func() error { return opt.sync.Run(ctx) })
	}
	// SIGHUP is caught from here on, before anyone is told the switch is
	// ready: one sent right after the readiness line must reload, not kill
	// the process (the default action) or go unseen (under nohup).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	g.Go(func() error { return reloadOnHUP(ctx, hup, sw, reload, cfg.File, log) })
	if metrics != nil {
		g.Go(func() error { return sw.ServeMetrics(ctx, metrics, extra...) })
	}
	if drops != nil {
		g.Go(func() error { drops.Run(ctx, 10*time.Second); return nil })
	}
	if ready != nil {
		g.Go(ready)
	}
	metricsAddr := ""
	if metrics != nil {
		metricsAddr = metrics.Addr().String()
	}
	log.Info("sgswitch serving", "ports", sw.NumPorts(), "control", cfg.Switch.Control, "metrics", metricsAddr, "log-drops", drops != nil)
	err = g.Wait()
	log.Info("sgswitch stopped")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// reloadOnHUP re-reads the configuration file on each SIGHUP that hup
// receives (registered by the caller). A file that does not
// load, or that cannot be applied, leaves the running policy in force.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, sw *vswitch.Switch, reload func(path string) (*config.Config, error), path string, log *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
		}
		// Through the writer's lock: a reload never lands between an API
		// change being applied and its file being renamed into place.
		before := sw.Config()
		after, err := reload(path)
		if err != nil {
			log.Error("reload refused; the previous configuration stays in force", "file", path, "err", err)
			continue
		}
		log.Info("configuration reloaded", "file", path, "version", sw.Version(), "changes", config.Diff(before, after))
	}
}

func cmdLab(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down") {
		return usageError("lab: say up or down: sgswitch lab up -c FILE")
	}
	fs := flag.NewFlagSet("lab "+args[0], flag.ContinueOnError)
	cfgPath := configFlag(fs)
	var logOpt *logOptions
	var keep *bool
	if args[0] == "up" {
		logOpt = logFlags(fs)
		keep = fs.Bool("keep", false, "build the lab and leave it, without a switch: serve it with `sgswitch run --lab -c FILE`, remove it with `lab down`")
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
	if cfg.Cluster != nil {
		return clusterLab(ctx, args[0], cfg, stdout)
	}
	if args[0] == "down" {
		return lab.Down(cfg)
	}
	// The TAPs are created persistent in this namespace, moved into the
	// lab's namespaces, and opened there: the same path as `run --lab`.
	if err := createTAPs(cfg); err != nil {
		return err
	}
	l, err := lab.Up(cfg)
	if err != nil {
		lab.Down(cfg)
		return err
	}
	if *keep {
		fmt.Fprintf(stdout, "lab kept: namespaces %v; serve it with sgswitch run --lab -c %s\n", l.Namespaces(), *cfgPath)
		return nil
	}
	drops := logOpt.dropLog(log)
	sw, err := newSwitch(cfg, log, drops, true, true)
	if err != nil {
		l.Down()
		return err
	}
	defer func() {
		if err := l.Down(); err != nil {
			log.Error("lab teardown", "err", err)
		}
	}()
	return serve(ctx, sw, log, serveOptions{drops: drops, cpuProfile: logOpt.cpuProfile, optionalMetrics: true, ready: func() error {
		fmt.Fprintf(stdout, "lab up: namespaces %v; stop with Ctrl-C (or sgswitch lab down -c %s)\n", l.Namespaces(), *cfgPath)
		return nil
	}})
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

// createTAPs creates every TAP of cfg as a persistent device in the current
// namespace, with no descriptor attached, for the lab to move.
func createTAPs(cfg *config.Config) error {
	var devices []string
	for _, in := range cfg.Instances {
		if in.TAP != "" {
			devices = append(devices, in.TAP)
		}
	}
	if cfg.Uplink != nil && cfg.Uplink.Port != "" {
		devices = append(devices, cfg.Uplink.Port)
	}
	for _, d := range devices {
		p, err := port.OpenTAP(d, port.TAPOptions{Offload: cfg.Switch.Offload, Persist: true, Queues: cfg.Switch.Queues})
		if err != nil {
			lab.Down(cfg)
			return err
		}
		p.Close()
	}
	return nil
}

// clusterLab is `lab up|down` of a cluster's policy file (instances with
// their hosts): the multi-host lab of switch/lab/cluster, one `sgswitch run`
// of this binary per host, until ctx ends.
func clusterLab(ctx context.Context, verb string, cfg *config.Config, stdout io.Writer) error {
	spec := cluster.Spec{Prefix: "sgc", Policy: cfg}
	if verb == "down" {
		return (&cluster.Lab{Spec: spec}).Down()
	}
	bin, err := os.Executable()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "sgswitch-cluster-lab-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	spec.Binary, spec.Dir = bin, dir
	l, err := cluster.Up(ctx, spec)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lab up: etcd %s; hosts:", strings.Join(l.Etcd.Endpoints(), ","))
	for _, h := range l.Hosts {
		fmt.Fprintf(stdout, " %s (namespace %s, socket %s)", h.Name, h.NS, h.Socket)
	}
	fmt.Fprintf(stdout, "; the internet is namespace %s\n", l.Fabric())
	<-ctx.Done()
	return l.Down()
}
