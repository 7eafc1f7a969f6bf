// Package config is the sgswitch configuration file: its model (security
// groups, rules, instances, the uplink and the switch's own settings), strict
// YAML decoding that remembers where every value came from, and validation
// whose errors name the file, the line and the field.
//
// A *Config returned by Load or Parse is valid and canonical (CIDRs masked,
// defaults filled in). It is treated as immutable by everything that reads it:
// a change is a new Config.
package config

import (
	"net"
	"net/netip"
	"time"
)

// Config is one whole configuration file.
type Config struct {
	// File is the path the configuration was read from ("" when parsed from memory).
	File string

	Switch         Switch
	Uplink         *Uplink  // nil when the file has no uplink section
	Cluster        *Cluster // nil when the file has no cluster section: the file is the policy
	SecurityGroups []SecurityGroup
	Instances      []Instance

	// Warnings are non-fatal remarks (e.g. a CIDR that was canonicalised), each
	// naming file, line and field like an error does.
	Warnings []string
}

// Switch holds the switch-wide settings (the `switch:` section).
type Switch struct {
	Control            string        // `control`: unix socket of the control API
	Metrics            string        // `metrics`: Prometheus listen address, "" = off
	Conntrack          Conntrack     // `conntrack`
	PersistEstablished bool          // `persist-established`
	DHCP               DHCP          // `dhcp`
	Offload            bool          // `offload`: virtio-net header + TSO/GSO on TAPs (default true)
	Queues             int           // `queues`: queues per TAP, each served by its own worker (default 1; more: multi-queue TAPs)
	Poll               Poll          // `poll`: poller threads instead of a worker goroutine per queue
	Line               int           // line of the `switch:` key, 0 if absent
	MaxUplinkMACs      int           // `uplink-macs`: bound of the MAC table learned on the uplink (default 4096)
	MACAgeing          time.Duration // `mac-ageing`: a learned uplink MAC not seen for this long is forgotten (default 300s)
}

// Poll is `switch.poll`: how the ports' queues are waited for. With Threads
// 0 (the default) each queue has a worker goroutine parked on Go's
// netpoller; with Threads > 0 that many OS threads wait on the queues'
// descriptors themselves (epoll) and run their frames, and after work spin
// up to Spin for the next frame before sleeping (adaptive: the spin grows
// while frames keep coming within it and shrinks to nothing when they stop).
type Poll struct {
	Threads int           // `threads`
	Spin    time.Duration // `spin-us`: the longest spin (default 200 µs; 0 = never spin)
}

// Limits and default of `switch.poll`.
const (
	MaxPollThreads  = 16
	MaxPollSpin     = 10000 // µs
	DefaultPollSpin = 200 * time.Microsecond
)

// Conntrack holds the connection-tracking limits (`switch.conntrack`).
type Conntrack struct {
	Max int // `max`: maximum tracked connections (default 1,048,576)
	// PerInstance is `per-instance-max`: the most connections one instance
	// may hold (those it opened, and those opened to it from the uplink), so
	// that one tenant cannot fill the table for all (default 131,072; 0 = no cap).
	PerInstance int
	Timeouts    ConntrackTimeouts // `timeouts`: per state, in seconds in the file; zero = the Linux default
}

// ConntrackTimeouts are the idle timeouts of tracked connections by state
// (`switch.conntrack.timeouts`). A zero field means the default, which
// follows Linux (shared/ATTACKS.md).
type ConntrackTimeouts struct {
	TCPSynSent, TCPSynRecv, TCPEstablished, TCPFinWait, TCPCloseWait, TCPLastAck, TCPTimeWait, TCPClose time.Duration
	UDPUnreplied, UDPReplied, ICMP, Other                                                               time.Duration
}

// TimeoutFields names each field of ConntrackTimeouts as the file spells it.
var TimeoutFields = []struct {
	Name  string
	Field func(*ConntrackTimeouts) *time.Duration
}{
	{"tcp-syn-sent", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPSynSent }},
	{"tcp-syn-recv", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPSynRecv }},
	{"tcp-established", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPEstablished }},
	{"tcp-fin-wait", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPFinWait }},
	{"tcp-close-wait", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPCloseWait }},
	{"tcp-last-ack", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPLastAck }},
	{"tcp-time-wait", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPTimeWait }},
	{"tcp-close", func(t *ConntrackTimeouts) *time.Duration { return &t.TCPClose }},
	{"udp-unreplied", func(t *ConntrackTimeouts) *time.Duration { return &t.UDPUnreplied }},
	{"udp-replied", func(t *ConntrackTimeouts) *time.Duration { return &t.UDPReplied }},
	{"icmp", func(t *ConntrackTimeouts) *time.Duration { return &t.ICMP }},
	{"other", func(t *ConntrackTimeouts) *time.Duration { return &t.Other }},
}

// DHCP holds the options the built-in DHCPv4 server hands out (`switch.dhcp`).
// The router option is the uplink's gateway address.
type DHCP struct {
	DNS       []netip.Addr  // `dns`
	LeaseTime time.Duration // `lease-time` in seconds in the file (default 86400)
}

// Uplink is the optional port towards the rest of the network (`uplink:`).
type Uplink struct {
	Port     string       // `tap` (old name `port`): TAP device name; "" with Netdev
	Netdev   string       // `netdev`: an existing device served from its host side (NIC, bond, VXLAN, veth end)
	Gateway  netip.Prefix // `gateway`: the gateway's address with the on-link prefix (e.g. 10.0.0.1/24)
	LabHosts []netip.Addr // `lab-hosts`: lab only: outside addresses the internet namespace answers on
	Line     int          // line of the `uplink:` key
}

// SecurityGroup is a named allow-list with its static external members.
type SecurityGroup struct {
	Name            string
	Description     string
	Rules           []Rule
	ExternalSources []netip.Prefix // `external-sources`, canonical
	Line            int            // line of the list entry; 0 for the implicit `default`
}

// Direction is a rule's `flow-direction`.
type Direction uint8

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Protocol is a rule's `protocol`.
type Protocol uint8

const (
	ProtoTCP Protocol = iota
	ProtoUDP
	ProtoICMP
	ProtoICMPv6
	ProtoAH
	ProtoESP
	ProtoGRE
	ProtoIPIP
	ProtoAll
)

var protocolNames = [...]string{"tcp", "udp", "icmp", "icmpv6", "ah", "esp", "gre", "ipip", "all"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "unknown"
}

// IPProto is the IP protocol number the rule matches; 0 for ProtoAll (any).
func (p Protocol) IPProto() uint8 {
	switch p {
	case ProtoTCP:
		return 6
	case ProtoUDP:
		return 17
	case ProtoICMP:
		return 1
	case ProtoICMPv6:
		return 58
	case ProtoAH:
		return 51
	case ProtoESP:
		return 50
	case ProtoGRE:
		return 47
	case ProtoIPIP:
		return 4
	}
	return 0
}

// ParseProtocol maps a protocol name of the file to its value.
func ParseProtocol(s string) (Protocol, bool) {
	for i, n := range protocolNames {
		if n == s {
			return Protocol(i), true
		}
	}
	return 0, false
}

// Rule is one entry of a security group's rule list.
//
// Exactly one of Network (valid) and SecurityGroup (non-empty) is set.
// Ports are meaningful for tcp/udp only: a tcp/udp rule always holds its
// range (1-65535 when the file gives no ports), any other protocol holds 0-0.
// ICMPType/ICMPCode are -1 for "any", and always -1 unless the protocol is
// icmp or icmpv6. Two rules are the same rule when they are equal with
// Description and Line cleared.
type Rule struct {
	FlowDirection Direction
	Protocol      Protocol
	Network       netip.Prefix // peer as a CIDR, canonical; invalid when SecurityGroup is set
	SecurityGroup string       // peer as a group name
	StartPort     uint16
	EndPort       uint16
	ICMPType      int16
	ICMPCode      int16
	Description   string
	Line          int // line of the list entry
}

// Instance is one VM port.
type Instance struct {
	Name           string
	Host           string           // `host`: the cluster host it runs on ("" without a cluster)
	TAP            string           // `tap`: TAP device name (default: Name, unless Netdev is set); "" with Netdev
	Netdev         string           // `netdev`: an existing device (a QEMU VM's TAP, a veth end) served from its host side
	MAC            net.HardwareAddr // `mac`: exactly 6 bytes, unicast
	IPv4           netip.Prefix     // `ipv4`: address with on-link prefix (not masked)
	IPv6           netip.Prefix     // `ipv6`: optional; invalid when absent
	SecurityGroups []string         // `security-groups`: ["default"] when the field is absent
	SMTPEgress     bool             // `smtp-egress`
	VhostUser      *VhostUser       // `vhost-user`: the VM's virtio-net queues over shared memory; nil for a TAP
	Line           int              // line of the list entry
}

// Defaults applied when a field is absent.
const (
	DefaultControl       = "/run/sgswitch/control.sock"
	DefaultMetrics       = "127.0.0.1:9464"
	DefaultConntrackMax  = 1 << 20
	DefaultPerInstance   = 1 << 17
	DefaultUplinkMACs    = 4096
	DefaultMACAgeing     = 300 * time.Second
	DefaultLeaseTime     = 86400 * time.Second
	DefaultGroup         = "default"
	MaxDescriptionLength = 255
	// MaxQueues bounds `queues` (port.MaxQueues, which config does not import).
	MaxQueues = 16
)
