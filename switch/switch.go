// Package vswitch (directory switch) is the switch itself: its ports, the
// forwarding table, the per-frame pipeline, the local responders (ARP, DHCP,
// NDP) and counters: the datapath. Where its configuration comes from (the
// file, the control API, etcd) is the business of the sources of policy,
// switch/source and below, which all end in ApplyAt.
//
// Port ids: at start the instances of the configuration in file order are
// ports 0..n-1 and the uplink, when configured, is port n. A port added later
// gets the next id; a removed port leaves its id unused, so an id means one
// port for the life of the process (connection-tracking entries hold them).
// The pipeline (Process) is a function of the current state and the frame,
// shared by the live switch, replay and tests: there is one implementation.
package vswitch

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
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
	state atomic.Pointer[state]
	fdb   *uplinkFDB
	log   *slog.Logger
	clock *Clock
	ct    *conntrack.Table
	frags *conntrack.Fragments
	open  func(port.Spec) (port.Port, error)

	mu     sync.Mutex         // serialises changes (Apply)
	spawn  func(*portRuntime) // starts a port's worker once Run is serving; nil before
	poll   config.Poll        // how queues are served, fixed at New (poll.go)
	onDrop DropFunc           // optional drop observer (logging); nil = off
}

// DropFunc observes a dropped frame: the port's device name, the verdict and
// the decoded frame (valid only during the call; decoding may have stopped
// early for a malformed frame). It runs on the port's worker, so it must be
// cheap and must not block; it is called only for drops.
type DropFunc func(port string, r Result, f *filter.Frame)

// portRuntime is one port's device and tallies. It outlives state changes:
// a port that stays in the configuration keeps its runtime and its counters.
type portRuntime struct {
	id     int32
	device string
	kind   port.Kind
	mode   string    // a vhost-user port's socket role
	port   port.Port // nil in pipeline-only use (replay, tests)
	// queues are port's queues (port.Queues): one worker reads each, and a
	// worker forwarding a frame here writes it to the queue of its own
	// number, so that workers of different queues do not share a descriptor.
	queues   []port.Port
	vnetLen  int
	counters Counters
	limit    *tokenBucket // budget of the local responders
	removed  atomic.Bool  // set before the port is closed, so its worker exits quietly
}

// state is everything the pipeline reads that a configuration change
// replaces. It is immutable once published; a change builds a new one and
// swaps the pointer, so a frame sees either the old or the new state whole.
type state struct {
	cfg     *config.Config
	policy  *filter.Policy
	gen     uint64               // configuration version: tracked connections re-check when it moves
	compile time.Duration        // how long building this state took
	ports   []*portRuntime       // by port id; nil where a port was removed
	inst    []instancePort       // by port id; cfg < 0 for the uplink and removed ports
	uplink  int32                // port id of the uplink, -1 when there is none
	byMAC   map[[6]byte]int32    // instance MAC → port id (building, control path)
	macs    macIndex             // the same, for the per-frame lookup
	owner4  map[netip.Addr]int32 // IPv4 address → instance port
	owner6  map[netip.Addr]int32 // IPv6 global and link-local → instance port
	// Remote instances (SPEC §9: on another host of the cluster) have no
	// port here: their addresses are group members in the policy, ARP and
	// ND for them are answered with their MAC, and frames to them leave by
	// the uplink, where their own host decides the ingress.
	cluster bool // in a cluster: the uplink may not claim a local instance's address
	*remoteTable
	dhcp dhcpSettings
	mtu  int
}

// instancePort is the identity and settings of one instance port.
type instancePort struct {
	cfg    int32 // index in cfg.Instances (what the policy calls the instance); -1: none
	name   string
	id     filter.Identity
	prefix netip.Prefix // IPv4 with its on-link prefix length
	pfx6   netip.Prefix
}

// Options tunes a Switch; the zero value is a pipeline without ports.
type Options struct {
	Logger *slog.Logger
	// Clock is the switch's time; nil means a clock that Run keeps current.
	// Replay and tests pass their own and set it.
	Clock *Clock
	// OpenPort opens the device of a port (a TAP or a netdev, by name); nil
	// means no devices at all: the switch can Process frames but not Run.
	OpenPort func(port.Spec) (port.Port, error)
	// OnDrop, when set, is told about every dropped frame (see DropFunc).
	OnDrop DropFunc
}

// New builds a switch for cfg and opens its ports.
func New(cfg *config.Config, opt Options) (*Switch, error) {
	s := &Switch{log: opt.Logger, clock: opt.Clock, open: opt.OpenPort, onDrop: opt.OnDrop, poll: cfg.Switch.Poll}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.clock == nil {
		s.clock = newLiveClock()
	}
	s.ct = conntrack.New(conntrack.Config{Max: cfg.Switch.Conntrack.Max, MaxPerOwner: cfg.Switch.Conntrack.PerInstance,
		Timeouts: conntrackTimeouts(cfg.Switch.Conntrack.Timeouts)}, s.clock)
	s.frags = conntrack.NewFragments(conntrack.FragConfig{}, s.clock)
	maxMACs, age := cfg.Switch.MaxUplinkMACs, cfg.Switch.MACAgeing
	if maxMACs <= 0 {
		maxMACs = config.DefaultUplinkMACs
	}
	if age <= 0 {
		age = config.DefaultMACAgeing
	}
	s.fdb = newUplinkFDB(maxMACs, age)
	st, _, err := s.buildState(cfg, nil, s.open)
	if err != nil {
		return nil, err
	}
	s.state.Store(st)
	return s, nil
}

// Apply puts cfg in force atomically: the new state — policy, instances,
// ports — is built completely first and published with one pointer swap, so
// a frame sees the old configuration or the new one, never a mix. If
// anything fails (a policy that does not compile, a TAP that does not open)
// nothing changes (fail closed). Instances that stay keep their port, their
// counters and their tracked connections; new instances get new ports,
// removed ones are closed after the swap.
func (s *Switch) Apply(cfg *config.Config) error {
	return s.ApplyAt(cfg, 0)
}

// ErrStale is returned by ApplyAt when the configuration changed since the
// version the change was based on.
var ErrStale = errors.New("the configuration changed since the version this change is based on")

// Version is the version of the configuration in force; it grows by one with
// every change applied (by any source of policy).
func (s *Switch) Version() uint64 { return s.state.Load().gen }

// ApplyAt is Apply for a change based on configuration version: when another
// change came first it returns ErrStale and changes nothing (0 means no
// check). Changes are serialised, so read-modify-ApplyAt is safe.
func (s *Switch) ApplyAt(cfg *config.Config, version uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev := s.state.Load()
	if version != 0 && version != prev.gen {
		return ErrStale
	}
	st, added, err := s.buildState(cfg, prev, s.open)
	if err != nil {
		return err
	}
	s.state.Store(st)
	for _, pr := range prev.ports {
		if pr != nil && (int(pr.id) >= len(st.ports) || st.ports[pr.id] != pr) {
			pr.removed.Store(true)
			if pr.port != nil {
				pr.port.Close()
			}
		}
	}
	if s.spawn != nil {
		for _, pr := range added {
			s.spawn(pr)
		}
	}
	return nil
}

// buildState compiles cfg into a pipeline state, reusing what it can of prev
// (the compiled policy's unchanged parts, the ports of unchanged instances).
// It opens the devices of new ports with open (nil: it opens nothing, as a
// dry run wants) and returns those ports; on error it closes them again.
func (s *Switch) buildState(cfg *config.Config, prev *state, open func(port.Spec) (port.Port, error)) (st *state, added []*portRuntime, err error) {
	start := time.Now()
	defer func() {
		if st != nil {
			st.compile = time.Since(start)
		}
	}()
	var pol *filter.Policy
	gen := uint64(1)
	if prev != nil {
		gen = prev.gen + 1
		pol, err = filter.Recompile(prev.policy, cfg)
	} else {
		pol, err = filter.Compile(cfg)
	}
	if err != nil {
		return nil, nil, err
	}
	local := len(cfg.Instances)
	if cfg.Cluster != nil { // most instances of a cluster run elsewhere
		local = 0
		for i := range cfg.Instances {
			if !cfg.Remote(&cfg.Instances[i]) {
				local++
			}
		}
	}
	st = &state{cfg: cfg, policy: pol, gen: gen, uplink: -1, mtu: DefaultMTU,
		byMAC:       make(map[[6]byte]int32, local),
		owner4:      make(map[netip.Addr]int32, local),
		owner6:      make(map[netip.Addr]int32, 2*local),
		dhcp:        newDHCPSettings(cfg),
		cluster:     cfg.Cluster != nil,
		remoteTable: remotesOf(prev, cfg),
	}
	// Carry over every port id, then reuse or drop them one by one.
	var keep map[string]*portRuntime // instance name (or "" for the uplink) → runtime
	if prev != nil {
		st.ports = make([]*portRuntime, len(prev.ports))
		st.inst = make([]instancePort, len(prev.ports))
		keep = make(map[string]*portRuntime, len(prev.ports))
		for id, pr := range prev.ports {
			st.inst[id].cfg = -1
			if pr == nil {
				continue
			}
			if int32(id) == prev.uplink {
				keep[""] = pr
			} else if ip := prev.inst[id]; ip.cfg >= 0 {
				keep[prev.cfg.Instances[ip.cfg].Name] = pr
			}
		}
	}
	defer func() {
		if err != nil {
			for _, pr := range added {
				if pr.port != nil {
					pr.port.Close()
				}
			}
			added = nil
		}
	}()
	place := func(key string, spec port.Spec, same bool) (int32, error) {
		if pr := keep[key]; pr != nil && pr.device == spec.Device && pr.kind == spec.Kind && pr.mode == spec.Mode && same {
			st.ports[pr.id] = pr
			return pr.id, nil
		}
		pr := &portRuntime{id: int32(len(st.ports)), device: spec.Device, kind: spec.Kind, mode: spec.Mode, limit: newTokenBucket(responderRate, responderBurst)}
		if open != nil {
			spec.Poll = s.poll.Threads > 0
			p, err := open(spec)
			if err != nil {
				return -1, err
			}
			pr.port, pr.queues, pr.vnetLen = p, port.Queues(p), p.VnetHdrLen()
		}
		added = append(added, pr)
		st.ports = append(st.ports, pr)
		st.inst = append(st.inst, instancePort{cfg: -1})
		return pr.id, nil
	}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		if cfg.Remote(in) {
			continue // in st.remoteTable
		}
		mac := [6]byte(in.MAC)
		// A port stays when its instance keeps its device and its MAC.
		same := true
		if pr := keep[in.Name]; pr != nil && prev.inst[pr.id].cfg >= 0 {
			same = prev.inst[pr.id].id.MAC == mac
		}
		id, err := place(in.Name, instanceSpec(in), same)
		if err != nil {
			return nil, nil, err
		}
		var v6 netip.Addr
		if in.IPv6.IsValid() {
			v6 = in.IPv6.Addr()
		}
		ip := instancePort{cfg: int32(i), name: in.Name, id: filter.NewIdentity(mac, in.IPv4.Addr(), v6), prefix: in.IPv4, pfx6: in.IPv6}
		st.inst[id] = ip
		st.byMAC[mac] = id
		st.owner4[in.IPv4.Addr()] = id
		st.owner6[ip.id.LinkLocal] = id
		if v6.IsValid() {
			st.owner6[v6] = id
		}
	}
	if cfg.Uplink != nil {
		if st.uplink, err = place("", uplinkSpec(cfg.Uplink), true); err != nil {
			return nil, nil, err
		}
	}
	st.macs = newMACIndex(st.byMAC)
	return st, added, nil
}

// instanceSpec is the port of an instance (SPEC §1a).
func instanceSpec(in *config.Instance) port.Spec {
	if vu := in.VhostUser; vu != nil {
		return port.Spec{Kind: port.KindVhostUser, Device: vu.Socket, Mode: vu.Mode}
	}
	if in.Netdev != "" {
		return port.Spec{Kind: port.KindNetdev, Device: in.Netdev}
	}
	return port.Spec{Kind: port.KindTAP, Device: in.TAP}
}

// uplinkSpec is the uplink's port.
func uplinkSpec(u *config.Uplink) port.Spec {
	if u.Netdev != "" {
		return port.Spec{Kind: port.KindNetdev, Device: u.Netdev, Uplink: true}
	}
	return port.Spec{Kind: port.KindTAP, Device: u.Port, Uplink: true}
}

// Config is the configuration currently in force.
func (s *Switch) Config() *config.Config { return s.state.Load().cfg }

// Snapshot is the configuration in force and its version, read together: a
// source of policy bases a change on them (ApplyAt).
func (s *Switch) Snapshot() (*config.Config, uint64) {
	st := s.state.Load()
	return st.cfg, st.gen
}

// Reset puts the switch back as New(cfg) leaves it: version 1, every port
// reopened with the ids New gives them, the connection table empty. It
// reuses the tables New allocates, for a fuzzer that replays thousands of
// inputs each from the initial state. Not for a switch that is running.
func (s *Switch) Reset(cfg *config.Config) error {
	st, _, err := s.buildState(cfg, nil, s.open)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old := s.state.Swap(st)
	s.mu.Unlock()
	for _, pr := range old.ports {
		if pr != nil && pr.port != nil {
			pr.removed.Store(true)
			pr.port.Close()
		}
	}
	s.ct.Flush()
	return nil
}

// Policy is the compiled policy currently in force.
func (s *Switch) Policy() *filter.Policy { return s.state.Load().policy }

// CompileTime is how long building the configuration in force took
// (policy compilation included).
func (s *Switch) CompileTime() time.Duration { return s.state.Load().compile }

// FragmentStats are the fragment table's counters.
func (s *Switch) FragmentStats() conntrack.FragStats { return s.frags.Stats() }

// Conntrack is the connection table.
func (s *Switch) Conntrack() *conntrack.Table { return s.ct }

// PortLabel is how people name port id: its instance's name, or "uplink".
func (s *Switch) PortLabel(id int) string { return s.portLabel(s.state.Load(), int32(id)) }

// NumPorts is the number of port ids in use so far (removed ports included).
func (s *Switch) NumPorts() int { return len(s.state.Load().ports) }

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
	for id, in := range st.inst {
		if in.cfg >= 0 && in.name == name {
			return id
		}
	}
	if st.uplink >= 0 && (name == "uplink" || name == st.ports[st.uplink].device) {
		return int(st.uplink)
	}
	return -1
}

// Stats is a snapshot of every port's counters.
func (s *Switch) Stats() []PortStats {
	st := s.state.Load()
	var out []PortStats
	for id, pr := range st.ports {
		if pr == nil {
			continue
		}
		ps := pr.counters.snapshot(pr.device, st.inst[id].name)
		ps.Kind, ps.State = pr.kind.String(), port.StateUp.String()
		if pr.port != nil {
			status := port.StatusOf(pr.port)
			ps.State, ps.StateReason, ps.Losses = status.State.String(), status.Reason, status.Losses
		}
		if int32(id) == st.uplink {
			ps.LearnedMACs = s.fdb.size()
		}
		out = append(out, ps)
	}
	return out
}

// errPortsClosed is returned by Run when the switch has no devices.
var errPortsClosed = errors.New("switch: built without OpenPort, it has no devices to serve")

func (s *Switch) portLabel(st *state, p int32) string {
	switch {
	case p == st.uplink:
		return "uplink"
	case p >= 0 && int(p) < len(st.inst) && st.inst[p].cfg >= 0:
		return st.inst[p].name
	}
	return fmt.Sprintf("port%d", p)
}

// Close closes every port's device; for a switch that will not Run (Run
// closes its ports itself when it returns).
func (s *Switch) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pr := range s.state.Load().ports {
		if pr != nil && pr.port != nil {
			pr.removed.Store(true)
			pr.port.Close()
		}
	}
}
