// Package vswitch (directory switch) is the switch itself: its ports, the
// forwarding table, the per-frame pipeline, the local responders (ARP, DHCP,
// NDP), counters and the control API.
//
// Port numbering: the instances of the configuration in file order are ports
// 0..n-1, and the uplink, when configured, is port n. The pipeline (Process)
// is a pure function of the current state and the frame, shared by the live
// switch, replay and tests, so there is exactly one implementation of it.
package vswitch

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/switch/port"
)

// SwitchMAC is the source MAC of frames the switch originates itself (DHCP
// replies, router advertisements). Locally administered ("02:"), "sg" in it.
var SwitchMAC = [6]byte{0x02, 0x73, 0x67, 0x00, 0x00, 0x01}

// DefaultMTU is the largest IP packet a port accepts without offload headers.
const DefaultMTU = 1500

// Switch is a running (or replaying) switch.
type Switch struct {
	ports    []port.Port // nil entries in replay and pipeline tests
	names    []string
	vnetLen  []int
	counters []*Counters
	state    atomic.Pointer[state]
	fdb      *uplinkFDB
	log      *slog.Logger
	clock    *Clock
	limits   []*tokenBucket // per-port budget for the local responders
	ct       *conntrack.Table
	frags    *conntrack.Fragments
}

// state is everything the pipeline reads that a configuration change
// replaces. It is immutable once published; a change builds a new one and
// swaps the pointer, so a frame sees either the old or the new state whole.
type state struct {
	cfg    *config.Config
	policy *filter.Policy
	gen    uint64 // policy generation: tracked connections re-check when it moves
	inst   []instancePort
	uplink int32 // port id of the uplink, -1 when there is none
	byMAC  map[[6]byte]int32
	owner4 map[netip.Addr]int32 // IPv4 address → instance port
	owner6 map[netip.Addr]int32 // IPv6 global and link-local → instance port
	dhcp   dhcpSettings
	mtu    int
}

// instancePort is the identity and settings of one instance port.
type instancePort struct {
	name   string
	id     filter.Identity
	prefix netip.Prefix // IPv4 with its on-link prefix length
	pfx6   netip.Prefix
}

// Options tunes a Switch; the zero value is fine.
type Options struct {
	Logger *slog.Logger
	// Clock is the switch's time; nil means a clock that Run keeps current.
	// Replay and tests pass their own and set it.
	Clock *Clock
}

// New builds a switch for cfg. ports holds one port per instance in
// configuration order, then the uplink's when cfg has one; entries may be nil
// for pipeline-only use (replay, tests), and ports may be nil altogether.
func New(cfg *config.Config, ports []port.Port, opt Options) (*Switch, error) {
	n := len(cfg.Instances)
	if cfg.Uplink != nil {
		n++
	}
	if ports == nil {
		ports = make([]port.Port, n)
	}
	if len(ports) != n {
		return nil, fmt.Errorf("switch: %d ports for %d instances and uplink", len(ports), n)
	}
	s := &Switch{ports: ports, log: opt.Logger, clock: opt.Clock}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = &Clock{}
		s.clock.Set(time.Now())
	}
	s.ct = conntrack.New(conntrack.Config{Max: cfg.Switch.Conntrack.Max, Timeouts: conntrackTimeouts(cfg.Switch.Conntrack.Timeouts)}, s.clock)
	s.frags = conntrack.NewFragments(conntrack.FragConfig{}, s.clock)
	for i := 0; i < n; i++ {
		name := ""
		if i < len(cfg.Instances) {
			name = cfg.Instances[i].TAP
		} else {
			name = cfg.Uplink.Port
		}
		s.names = append(s.names, name)
		hl := 0
		if ports[i] != nil {
			hl = ports[i].VnetHdrLen()
		}
		s.vnetLen = append(s.vnetLen, hl)
		s.counters = append(s.counters, &Counters{})
		s.limits = append(s.limits, newTokenBucket(responderRate, responderBurst))
	}
	maxMACs, age := cfg.Switch.MaxUplinkMACs, cfg.Switch.MACAgeing
	if maxMACs <= 0 {
		maxMACs = config.DefaultUplinkMACs
	}
	if age <= 0 {
		age = config.DefaultMACAgeing
	}
	s.fdb = newUplinkFDB(maxMACs, age)
	st, err := buildState(cfg, nil)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	return s, nil
}

// buildState compiles cfg into a pipeline state, reusing what it can of prev.
func buildState(cfg *config.Config, prev *state) (*state, error) {
	var pol *filter.Policy
	var err error
	gen := uint64(1)
	if prev != nil {
		gen = prev.gen + 1
		pol, err = filter.Recompile(prev.policy, cfg)
	} else {
		pol, err = filter.Compile(cfg)
	}
	if err != nil {
		return nil, err
	}
	st := &state{cfg: cfg, policy: pol, gen: gen, uplink: -1, mtu: DefaultMTU,
		byMAC:  make(map[[6]byte]int32, len(cfg.Instances)),
		owner4: make(map[netip.Addr]int32, len(cfg.Instances)),
		owner6: make(map[netip.Addr]int32, 2*len(cfg.Instances)),
		dhcp:   newDHCPSettings(cfg),
	}
	if cfg.Uplink != nil {
		st.uplink = int32(len(cfg.Instances))
	}
	for i, in := range cfg.Instances {
		mac := [6]byte(in.MAC)
		var v6 netip.Addr
		if in.IPv6.IsValid() {
			v6 = in.IPv6.Addr()
		}
		ip := instancePort{name: in.Name, id: filter.NewIdentity(mac, in.IPv4.Addr(), v6), prefix: in.IPv4, pfx6: in.IPv6}
		st.inst = append(st.inst, ip)
		st.byMAC[mac] = int32(i)
		st.owner4[in.IPv4.Addr()] = int32(i)
		st.owner6[ip.id.LinkLocal] = int32(i)
		if v6.IsValid() {
			st.owner6[v6] = int32(i)
		}
	}
	return st, nil
}

// Config is the configuration currently in force.
func (s *Switch) Config() *config.Config { return s.state.Load().cfg }

// Policy is the compiled policy currently in force.
func (s *Switch) Policy() *filter.Policy { return s.state.Load().policy }

// PortName is the device name of port id.
func (s *Switch) PortName(id int) string { return s.names[id] }

// PortLabel is how people name port id: its instance's name, or "uplink".
func (s *Switch) PortLabel(id int) string { return s.portLabel(s.state.Load(), int32(id)) }

// NumPorts is the number of ports, the uplink included.
func (s *Switch) NumPorts() int { return len(s.names) }

// PortByMAC is the instance port whose MAC is mac, or the uplink's (-1 when
// there is none): how replay picks a captured frame's ingress port.
func (s *Switch) PortByMAC(mac net.HardwareAddr) int {
	st := s.state.Load()
	if len(mac) == 6 {
		if p, ok := st.byMAC[[6]byte(mac)]; ok {
			return int(p)
		}
	}
	return int(st.uplink)
}

// PortNamed is the port id of an instance (by instance name) or of the
// uplink (by "uplink" or its device name); -1 when there is none.
func (s *Switch) PortNamed(name string) int {
	st := s.state.Load()
	for i, in := range st.inst {
		if in.name == name {
			return i
		}
	}
	if st.uplink >= 0 && (name == "uplink" || name == s.names[st.uplink]) {
		return int(st.uplink)
	}
	return -1
}

// Stats is a snapshot of every port's counters.
func (s *Switch) Stats() []PortStats {
	st := s.state.Load()
	out := make([]PortStats, len(s.names))
	for i := range s.names {
		inst := ""
		if i < len(st.inst) {
			inst = st.inst[i].name
		}
		out[i] = s.counters[i].snapshot(s.names[i], inst)
		if int32(i) == st.uplink {
			out[i].LearnedMACs = s.fdb.size()
		}
	}
	return out
}

// Apply puts cfg in force atomically: the new state is built completely
// first and published with one pointer swap, so a frame sees the old policy
// or the new one, never a mix; if building fails the old one stays (fail
// closed). The set of ports is fixed while the switch runs: cfg must have the
// same instances (name, TAP, MAC) in the same order and the same uplink.
func (s *Switch) Apply(cfg *config.Config) error {
	prev := s.state.Load()
	if err := samePorts(prev.cfg, cfg); err != nil {
		return err
	}
	st, err := buildState(cfg, prev)
	if err != nil {
		return err
	}
	s.state.Store(st)
	return nil
}

func samePorts(old, cfg *config.Config) error {
	if len(old.Instances) != len(cfg.Instances) || (old.Uplink == nil) != (cfg.Uplink == nil) ||
		(old.Uplink != nil && old.Uplink.Port != cfg.Uplink.Port) {
		return fmt.Errorf("%s: the instances or the uplink changed; adding or removing ports needs a restart of the switch", cfg.File)
	}
	for i, in := range cfg.Instances {
		o := old.Instances[i]
		if o.Name != in.Name || o.TAP != in.TAP || o.MAC.String() != in.MAC.String() {
			return fmt.Errorf("%s:%d: instances[%d]: instance %s changed its name, tap or mac; that needs a restart of the switch", cfg.File, in.Line, i, in.Name)
		}
	}
	return nil
}
