package config

import (
	"net/url"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// Cluster is the `cluster:` section: this switch is one host of several that
// share their security groups and instances through etcd (SPEC §9). Without
// it the file is the policy.
type Cluster struct {
	Host string      // `host`: this host's name, as instances' `host` fields name it
	Etcd ClusterEtcd // `etcd`
	Line int         // line of the `cluster:` key
}

// ClusterEtcd is `cluster.etcd`: where the shared policy is kept.
type ClusterEtcd struct {
	Endpoints []string    // `endpoints`: client URLs, http:// or https://
	Prefix    string      // `prefix`: the keys' common prefix (default /sgswitch)
	TLS       *ClusterTLS // `tls`: client certificates; nil = plain connections
}

// ClusterTLS is `cluster.etcd.tls`: PEM files.
type ClusterTLS struct {
	CA   string // `ca`: the CA that signed the etcd servers' certificates
	Cert string // `cert`: this host's client certificate
	Key  string // `key`: its private key
}

// DefaultEtcdPrefix is `cluster.etcd.prefix` when absent.
const DefaultEtcdPrefix = "/sgswitch"

var (
	clusterFields = []string{"host", "etcd"}
	etcdFields    = []string{"endpoints", "prefix", "tls"}
	tlsFields     = []string{"ca", "cert", "key"}
)

func (p *parser) decodeCluster(n *yaml.Node) *Cluster {
	c := &Cluster{Etcd: ClusterEtcd{Prefix: DefaultEtcdPrefix}}
	m, ok := p.mapping(n, "cluster", clusterFields)
	if !ok {
		return c
	}
	if v := m.val("host"); v != nil {
		if s, ok := p.str(v, m.field("host")); ok {
			if err := checkHostName(s); err != nil {
				p.errorf(v.Line, m.field("host"), "%v", err)
			} else {
				c.Host = s
			}
		}
	}
	v := m.val("etcd")
	if v == nil {
		p.errorf(m.line, m.field("etcd"), "missing; give the etcd cluster, e.g. etcd: {endpoints: [http://10.0.0.2:2379]}")
		return c
	}
	em, ok := p.mapping(v, m.field("etcd"), etcdFields)
	if !ok {
		return c
	}
	if ev := em.val("endpoints"); ev == nil {
		p.errorf(em.line, em.field("endpoints"), "missing; list the etcd members' client URLs, e.g. [http://10.0.0.2:2379]")
	} else if items, ok := p.list(ev, em.field("endpoints"), "URLs"); ok {
		if len(items) == 0 {
			p.errorf(ev.Line, em.field("endpoints"), "must list at least one client URL, e.g. [http://10.0.0.2:2379]")
		}
		for i, item := range items {
			field := index(em.field("endpoints"), i)
			s, ok := p.str(item, field)
			if !ok {
				continue
			}
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
				p.errorf(item.Line, field, "%q is not an etcd client URL; write scheme://host:port, e.g. http://10.0.0.2:2379", s)
				continue
			}
			c.Etcd.Endpoints = append(c.Etcd.Endpoints, s)
		}
	}
	if pv := em.val("prefix"); pv != nil {
		if s, ok := p.str(pv, em.field("prefix")); ok {
			if !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.ContainsAny(s, " \t\n") {
				p.errorf(pv.Line, em.field("prefix"), "%q: a key prefix starts with / and does not end with one, e.g. /sgswitch", s)
			} else {
				c.Etcd.Prefix = s
			}
		}
	}
	if tv := em.val("tls"); tv != nil {
		tm, ok := p.mapping(tv, em.field("tls"), tlsFields)
		if ok {
			t := &ClusterTLS{}
			for _, f := range []struct {
				name string
				to   *string
			}{{"ca", &t.CA}, {"cert", &t.Cert}, {"key", &t.Key}} {
				fv := tm.val(f.name)
				if fv == nil {
					p.errorf(tm.line, tm.field(f.name), "missing; tls needs ca, cert and key (PEM files)")
					continue
				}
				if s, ok := p.str(fv, tm.field(f.name)); ok {
					if _, err := os.Stat(s); err != nil {
						p.errorf(fv.Line, tm.field(f.name), "%q: %v; give a readable PEM file", s, err)
					}
					*f.to = s
				}
			}
			c.Etcd.TLS = t
		}
	}
	return c
}

// checkHostName: a host name is what instances' `host` fields and the keys
// under PREFIX/hosts/ hold: letters, digits, '.', '-' and '_'.
func checkHostName(s string) error {
	if s == "" {
		return errorString("must not be empty; give the host's name, e.g. hv-a")
	}
	if len(s) > 63 {
		return errorString("longer than 63 characters")
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return errorString("a host name holds letters, digits, '.', '-' and '_' only")
		}
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

// Remote reports whether instance in lives on another host than the one
// running this configuration: in a cluster, an instance whose host is not
// cluster.host. Without a cluster every instance is local.
func (c *Config) Remote(in *Instance) bool {
	return c.Cluster != nil && in.Host != c.Cluster.Host
}

func marshalCluster(c *Cluster) *yaml.Node {
	m := mapNode(false)
	if c.Host != "" {
		put(m, "host", strNode(c.Host))
	}
	e := mapNode(false)
	eps := listNode(true)
	for _, ep := range c.Etcd.Endpoints {
		eps.Content = append(eps.Content, strNode(ep))
	}
	put(e, "endpoints", eps)
	if c.Etcd.Prefix != DefaultEtcdPrefix {
		put(e, "prefix", strNode(c.Etcd.Prefix))
	}
	if t := c.Etcd.TLS; t != nil {
		tm := mapNode(true)
		put(tm, "ca", strNode(t.CA))
		put(tm, "cert", strNode(t.Cert))
		put(tm, "key", strNode(t.Key))
		put(e, "tls", tm)
	}
	put(m, "etcd", e)
	return m
}
