package config

import (
	"math"
	"net"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// The fields allowed in each mapping, in the order the file format lists them
// (unknown-field messages quote these lists).
var (
	topFields       = []string{"switch", "uplink", "cluster", "security-groups", "instances"}
	switchFields    = []string{"control", "metrics", "conntrack", "persist-established", "offload", "queues", "poll", "uplink-macs", "mac-ageing", "dhcp"}
	pollFields      = []string{"threads", "spin-us"}
	conntrackFields = []string{"max", "per-instance-max", "timeouts"}
	dhcpFields      = []string{"dns", "lease-time"}
	uplinkFields    = []string{"tap", "port", "netdev", "gateway", "lab-hosts"}
	groupFields     = []string{"name", "description", "rules", "external-sources"}
	ruleFields      = []string{"flow-direction", "protocol", "network", "security-group", "start-port", "end-port", "icmp", "description"}
	icmpFields      = []string{"type", "code"}
	instanceFields  = []string{"name", "host", "tap", "netdev", "vhost-user", "mac", "ipv4", "ipv6", "security-groups", "smtp-egress"}
)

// Ranges of the numeric fields, with the wording the error messages use.
const (
	maxCount   = math.MaxInt32
	countRule  = "give a number from 1 to 2147483647"
	maxSeconds = math.MaxUint32 // DHCP carries lease times as 32-bit seconds
	secsRule   = "give a number of seconds from 1 to 4294967295"
	portRule   = "a port is 1-65535"
	typeRule   = "an ICMP type is 0-255, or -1 for any"
	codeRule   = "an ICMP code is 0-255, or -1 for any"
	// maxSocketPath is sun_path (108 bytes) less its terminating NUL.
	maxSocketPath = 107
)

func (p *parser) decodeConfig(root *yaml.Node, c *Config) {
	c.Switch = defaultSwitch()
	if root == nil {
		return
	}
	m, ok := p.mapping(root, "", topFields)
	if !ok {
		return
	}
	if v := m.val("switch"); v != nil {
		p.decodeSwitch(v, &c.Switch)
		c.Switch.Line = m.keys["switch"].Line
	}
	if v := m.val("uplink"); v != nil {
		c.Uplink = p.decodeUplink(v)
		c.Uplink.Line = m.keys["uplink"].Line
	}
	if v := m.val("cluster"); v != nil {
		c.Cluster = p.decodeCluster(v)
		c.Cluster.Line = m.keys["cluster"].Line
	}
	if v := m.val("security-groups"); v != nil {
		items, _ := p.list(v, "security-groups", "security groups")
		for i, item := range items {
			c.SecurityGroups = append(c.SecurityGroups, p.decodeGroup(item, index("security-groups", i)))
		}
	}
	if v := m.val("instances"); v != nil {
		items, _ := p.list(v, "instances", "instances")
		for i, item := range items {
			c.Instances = append(c.Instances, p.decodeInstance(item, index("instances", i)))
		}
	}
}

func defaultSwitch() Switch {
	return Switch{
		Control:       DefaultControl,
		Metrics:       DefaultMetrics,
		Conntrack:     Conntrack{Max: DefaultConntrackMax, PerInstance: DefaultPerInstance},
		DHCP:          DHCP{LeaseTime: DefaultLeaseTime},
		Offload:       true,
		Queues:        1,
		Poll:          Poll{Spin: DefaultPollSpin},
		MaxUplinkMACs: DefaultUplinkMACs,
		MACAgeing:     DefaultMACAgeing,
	}
}

// decodeSwitch overwrites the defaults in s with the fields the file sets.
func (p *parser) decodeSwitch(n *yaml.Node, s *Switch) {
	m, ok := p.mapping(n, "switch", switchFields)
	if !ok {
		return
	}
	if v := m.val("control"); v != nil {
		if path, ok := p.str(v, m.field("control")); ok {
			switch {
			case path == "":
				p.errorf(v.Line, m.field("control"), "must not be empty; give the control socket's path, or omit the field for %s", DefaultControl)
			case len(path) > maxSocketPath:
				p.errorf(v.Line, m.field("control"), "is %d bytes long; a unix socket path is at most %d bytes", len(path), maxSocketPath)
			default:
				s.Control = path
			}
		}
	}
	if v := m.val("metrics"); v != nil {
		if addr, ok := p.str(v, m.field("metrics")); ok {
			if addr != "" && !validListen(addr) {
				p.errorf(v.Line, m.field("metrics"), "%q is not a listen address; want host:port like %s, or \"\" for no metrics", addr, DefaultMetrics)
			} else {
				s.Metrics = addr
			}
		}
	}
	if v := m.val("conntrack"); v != nil {
		if cm, ok := p.mapping(v, m.field("conntrack"), conntrackFields); ok {
			if v := cm.val("max"); v != nil {
				if n, ok := p.integer(v, cm.field("max"), 1, maxCount, countRule); ok {
					s.Conntrack.Max = int(n)
				}
			}
			if v := cm.val("per-instance-max"); v != nil {
				if n, ok := p.integer(v, cm.field("per-instance-max"), 0, maxCount, "give a number of connections from 0 (no cap) to 2147483647"); ok {
					s.Conntrack.PerInstance = int(n)
				}
			}
			if v := cm.val("timeouts"); v != nil {
				p.decodeTimeouts(v, cm.field("timeouts"), &s.Conntrack.Timeouts)
			}
		}
	}
	if v := m.val("persist-established"); v != nil {
		s.PersistEstablished, _ = p.boolean(v, m.field("persist-established"))
	}
	if v := m.val("offload"); v != nil {
		if b, ok := p.boolean(v, m.field("offload")); ok {
			s.Offload = b
		}
	}
	if v := m.val("queues"); v != nil {
		if n, ok := p.integer(v, m.field("queues"), 1, MaxQueues, "give a number of queues per TAP from 1 to 16 (about one per core)"); ok {
			s.Queues = int(n)
		}
	}
	if v := m.val("poll"); v != nil {
		if pm, ok := p.mapping(v, m.field("poll"), pollFields); ok {
			if v := pm.val("threads"); v != nil {
				if n, ok := p.integer(v, pm.field("threads"), 0, MaxPollThreads, "give a number of poller threads from 1 to 16 (about one per core), or 0 for a worker goroutine per queue"); ok {
					s.Poll.Threads = int(n)
				}
			}
			if v := pm.val("spin-us"); v != nil {
				if n, ok := p.integer(v, pm.field("spin-us"), 0, MaxPollSpin, "give the longest busy-poll in microseconds from 0 (never spin) to 10000"); ok {
					s.Poll.Spin = time.Duration(n) * time.Microsecond
				}
			}
		}
	}
	if v := m.val("uplink-macs"); v != nil {
		if n, ok := p.integer(v, m.field("uplink-macs"), 1, maxCount, countRule); ok {
			s.MaxUplinkMACs = int(n)
		}
	}
	if v := m.val("mac-ageing"); v != nil {
		if n, ok := p.integer(v, m.field("mac-ageing"), 1, maxSeconds, secsRule); ok {
			s.MACAgeing = time.Duration(n) * time.Second
		}
	}
	if v := m.val("dhcp"); v != nil {
		p.decodeDHCP(v, m.field("dhcp"), &s.DHCP)
	}
}

func validListen(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

func (p *parser) decodeDHCP(n *yaml.Node, path string, d *DHCP) {
	m, ok := p.mapping(n, path, dhcpFields)
	if !ok {
		return
	}
	if v := m.val("dns"); v != nil {
		items, _ := p.list(v, m.field("dns"), "IPv4 addresses")
		for i, item := range items {
			field := index(m.field("dns"), i)
			a, ok := p.addr(item, field)
			switch {
			case !ok:
			case !a.Is4():
				p.errorf(item.Line, field, "%s is not an IPv4 address; DHCPv4 hands out IPv4 DNS servers only", a)
			default:
				d.DNS = append(d.DNS, a)
			}
		}
	}
	if v := m.val("lease-time"); v != nil {
		if n, ok := p.integer(v, m.field("lease-time"), 1, maxSeconds, secsRule); ok {
			d.LeaseTime = time.Duration(n) * time.Second
		}
	}
}

func (p *parser) decodeUplink(n *yaml.Node) *Uplink {
	u := &Uplink{}
	m, ok := p.mapping(n, "uplink", uplinkFields)
	if !ok {
		return u
	}
	// The port: `tap` (or its old name `port`) or `netdev`, exactly one.
	var given []string
	for _, k := range []string{"tap", "port", "netdev"} {
		if m.val(k) != nil {
			given = append(given, k)
		}
	}
	switch len(given) {
	case 0:
		p.errorf(m.line, m.field("tap"), "missing; give the uplink's device: tap: NAME (a TAP the switch opens) or netdev: NAME (an existing device: a NIC, a bond, a VXLAN device, a veth end)")
	case 1:
		v := m.val(given[0])
		if s, ok := p.str(v, m.field(given[0])); ok {
			if err := checkIfName(s); err != nil {
				p.errorf(v.Line, m.field(given[0]), "%v", err)
			} else if given[0] == "netdev" {
				u.Netdev = s
			} else {
				u.Port = s
			}
		}
	default:
		p.errorf(m.val(given[1]).Line, m.field(given[1]), "the uplink has one device; give only one of tap (old name: port) and netdev, not %s and %s", given[0], given[1])
	}
	if v := m.val("gateway"); v == nil {
		p.errorf(m.line, m.field("gateway"), "missing; give the gateway's address with its on-link prefix, e.g. 10.0.0.1/24")
	} else {
		u.Gateway, _ = p.ifAddr(v, m.field("gateway"), "10.0.0.1/24")
	}
	if v := m.val("lab-hosts"); v != nil {
		items, _ := p.list(v, m.field("lab-hosts"), "addresses")
		for i, item := range items {
			// Invalid entries stay as zero addresses so that indices keep
			// matching the file in later messages.
			a, _ := p.addr(item, index(m.field("lab-hosts"), i))
			u.LabHosts = append(u.LabHosts, a)
		}
	}
	return u
}

// description decodes a description of at most MaxDescriptionLength characters.
func (p *parser) description(n *yaml.Node, path string) (string, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return "", false
	}
	if l := utf8.RuneCountInString(s); l > MaxDescriptionLength {
		p.errorf(n.Line, path, "is %d characters long; a description is at most %d", l, MaxDescriptionLength)
		return "", false
	}
	return s, true
}

// network decodes a peer CIDR and warns when it had to be canonicalised.
func (p *parser) network(n *yaml.Node, path string) (netip.Prefix, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	pfx, note, err := parseNetwork(s)
	if err != nil {
		p.errorf(n.Line, path, "%v", err)
		return netip.Prefix{}, false
	}
	if note != "" {
		p.warnf(n.Line, path, "%s", note)
	}
	return pfx, true
}

func (p *parser) ifAddr(n *yaml.Node, path, example string) (netip.Prefix, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return netip.Prefix{}, false
	}
	pfx, note, err := parseIfAddr(s, example)
	if err != nil {
		p.errorf(n.Line, path, "%v", err)
		return netip.Prefix{}, false
	}
	if note != "" {
		p.warnf(n.Line, path, "%s", note)
	}
	return pfx, true
}

func (p *parser) addr(n *yaml.Node, path string) (netip.Addr, bool) {
	s, ok := p.str(n, path)
	if !ok {
		return netip.Addr{}, false
	}
	a, note, err := parseAddr(s)
	if err != nil {
		p.errorf(n.Line, path, "%v", err)
		return netip.Addr{}, false
	}
	if note != "" {
		p.warnf(n.Line, path, "%s", note)
	}
	return a, true
}

// decodeTimeouts reads `switch.conntrack.timeouts`: seconds per state.
func (p *parser) decodeTimeouts(n *yaml.Node, path string, t *ConntrackTimeouts) {
	names := make([]string, len(TimeoutFields))
	for i, f := range TimeoutFields {
		names[i] = f.Name
	}
	m, ok := p.mapping(n, path, names)
	if !ok {
		return
	}
	for _, f := range TimeoutFields {
		if v := m.val(f.Name); v != nil {
			if secs, ok := p.integer(v, m.field(f.Name), 1, maxSeconds, secsRule); ok {
				*f.Field(t) = time.Duration(secs) * time.Second
			}
		}
	}
}
