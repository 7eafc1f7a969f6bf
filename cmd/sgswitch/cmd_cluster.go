package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	etcdsrc "github.com/sgswitch/sgswitch/switch/source/etcd"
)

const clusterUsage = `usage: sgswitch cluster import -c FILE [--etcd URL[,URL...]] [--prefix P]
       sgswitch cluster export [-c FILE | --etcd URL[,URL...]] [--prefix P]

import puts the security groups and instances of FILE (every instance with
its host:) in etcd as the whole policy of the cluster, in one transaction:
records FILE does not hold are deleted. export prints the policy in etcd as
a configuration file that import reads back. The etcd endpoints and prefix are
FILE's cluster.etcd unless --etcd and --prefix say otherwise.
`

func cmdCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "import" && args[0] != "export") {
		return usageError("cluster: say import or export\n%s", clusterUsage)
	}
	verb := args[0]
	fs := flag.NewFlagSet("cluster "+verb, flag.ContinueOnError)
	cfgPath := configFlag(fs)
	endpoints := fs.String("etcd", "", "etcd client `URLs`, comma-separated")
	prefix := fs.String("prefix", "", "the keys' `PREFIX` (default: the file's, else "+config.DefaultEtcdPrefix+")")
	if err := parseFlags(fs, args[1:], nil); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError("cluster %s: unexpected argument %q\n%s", verb, fs.Arg(0), clusterUsage)
	}
	var cfg *config.Config
	etcd := config.ClusterEtcd{Prefix: config.DefaultEtcdPrefix}
	if *cfgPath != "" {
		var err error
		if cfg, err = loadConfig(*cfgPath, stderr); err != nil {
			return err
		}
		if cfg.Cluster != nil {
			etcd = cfg.Cluster.Etcd
		}
	} else if verb == "import" {
		return usageError("cluster import: the configuration file is missing: pass -c FILE\n%s", clusterUsage)
	}
	if *endpoints != "" {
		etcd.Endpoints = strings.Split(*endpoints, ",")
	}
	if *prefix != "" {
		etcd.Prefix = *prefix
	}
	if len(etcd.Endpoints) == 0 {
		return usageError("cluster %s: no etcd endpoints: pass --etcd URL or a file with cluster.etcd.endpoints\n%s", verb, clusterUsage)
	}
	if cfg != nil && verb == "import" && cfg.Cluster == nil && len(cfg.Instances) > 0 {
		return fmt.Errorf("%s: no cluster: section, so its instances name no host; add cluster: {etcd: {endpoints: [...]}} and host: to every instance", cfg.File)
	}
	cli, err := etcdsrc.Dial(etcd)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if verb == "export" {
		return clusterExport(ctx, cli, etcd, stdout)
	}
	return clusterImport(ctx, cli, cfg, stdout)
}

func clusterImport(ctx context.Context, cli *etcdsrc.Client, cfg *config.Config, stdout io.Writer) error {
	recs, err := etcdsrc.Records(cfg, cli.Keys())
	if err != nil {
		return err
	}
	snap, err := cli.List(ctx)
	if err != nil {
		return fmt.Errorf("reading the policy in etcd: %w", err)
	}
	stored := map[string]etcdsrc.Record{}
	for _, r := range snap.Records {
		stored[r.Key] = r
	}
	var ops []etcdsrc.Op
	puts, deletes := 0, 0
	for _, r := range recs {
		old, ok := stored[r.Key]
		delete(stored, r.Key)
		if ok && string(old.Value) == string(r.Value) {
			continue
		}
		ops = append(ops, etcdsrc.Op{Key: r.Key, Value: r.Value, ModRev: old.ModRev})
		puts++
	}
	for k, r := range stored {
		ops = append(ops, etcdsrc.Op{Key: k, ModRev: r.ModRev})
		deletes++
	}
	if len(ops) == 0 {
		fmt.Fprintf(stdout, "the policy in etcd is already %s's (revision %d)\n", cfg.File, snap.Rev)
		return nil
	}
	rev, err := cli.Commit(ctx, snap.Rev, ops)
	if err != nil {
		return fmt.Errorf("writing the policy to etcd: %w", err)
	}
	fmt.Fprintf(stdout, "imported %s: %d records written, %d deleted, in revision %d\n", cfg.File, puts, deletes, rev)
	return nil
}

func clusterExport(ctx context.Context, cli *etcdsrc.Client, etcd config.ClusterEtcd, stdout io.Writer) error {
	snap, err := cli.List(ctx)
	if err != nil {
		return fmt.Errorf("reading the policy in etcd: %w", err)
	}
	local := &config.Config{Cluster: &config.Cluster{Host: "export", Etcd: etcd}}
	cfg, err := etcdsrc.Build(local, cli.Keys(), snap)
	if err != nil {
		return err
	}
	cfg.Cluster.Host = ""
	data, err := config.Marshal(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# the policy in etcd at revision %d (sgswitch cluster export)\n", snap.Rev)
	_, err = stdout.Write(data)
	return err
}
