package filter

// Verdict is what becomes of a frame. Every frame ends in exactly one.
type Verdict uint8

const (
	// Drop discards the frame; its Reason says why.
	Drop Verdict = iota
	// Forward sends the frame to exactly one port.
	Forward
	// Local means the switch consumed the frame itself (and may have answered it).
	Local
	NumVerdicts
)

var verdictNames = [...]string{"drop", "forward", "local"}

func (v Verdict) String() string {
	if v < NumVerdicts {
		return verdictNames[v]
	}
	return "invalid"
}

// Reason explains a verdict. The names are the fixed vocabulary of SPEC §5;
// they appear in counters, logs, replay verdict files and trace output, so
// they never change once published.
type Reason uint8

const (
	ReasonNone Reason = iota

	// Forwarding reasons.
	ReasonRule          // a security-group rule allowed the flow
	ReasonEstablished   // part of a tracked connection
	ReasonRelated       // ICMP error about a tracked connection
	ReasonDefaultEgress // egress allowed: the instance's groups have no egress rule
	ReasonARP           // unicast ARP that passed the guard (ARP is not subject to security groups)
	ReasonND            // unicast neighbour discovery that passed the guard
	ReasonResolve       // ARP/ND request for an address the switch does not know, sent to the uplink
	ReasonFragmentOf    // a later IP fragment following the verdict of its datagram's first fragment

	// Local reasons.
	ReasonARPReply  // the switch answered an ARP request
	ReasonDHCPReply // the switch answered a DHCP client message
	ReasonNDReply   // the switch answered a neighbour or router solicitation
	ReasonAnnounce  // the port's own gratuitous ARP / DAD probe: absorbed, nothing to answer

	// Drop reasons.
	ReasonMalformed
	ReasonVLANTagged
	ReasonEtherType // neither ARP, IPv4 nor IPv6: nothing a security group could judge
	ReasonSpoofMAC
	ReasonSpoofIP
	ReasonSpoofARP
	ReasonDHCPServer
	ReasonRouterAdvert
	ReasonNDSpoof
	ReasonBUM
	ReasonUnknownDestination
	ReasonHairpin // a frame would leave by the port it came in on
	ReasonIngressPolicy
	ReasonEgressPolicy
	ReasonSMTP
	ReasonFragment
	ReasonConntrackInvalid
	ReasonConntrackFull
	ReasonConntrackInstanceFull // the instance holds its cap of tracked connections (per-instance-max)
	ReasonRateLimit             // a local responder's per-port budget was exhausted
	ReasonUnanswered            // a request the local responder had no answer for (e.g. DHCP for another MAC)
	ReasonUnknownSource         // replay: a frame from no instance's MAC and no uplink to blame

	NumReasons
)

var reasonNames = [...]string{
	ReasonNone:                  "none",
	ReasonRule:                  "rule",
	ReasonEstablished:           "established",
	ReasonRelated:               "related",
	ReasonDefaultEgress:         "default-egress",
	ReasonARP:                   "arp",
	ReasonND:                    "nd",
	ReasonResolve:               "resolve",
	ReasonFragmentOf:            "fragment-follows",
	ReasonARPReply:              "arp-reply",
	ReasonDHCPReply:             "dhcp-reply",
	ReasonNDReply:               "nd-reply",
	ReasonAnnounce:              "announce",
	ReasonMalformed:             "malformed",
	ReasonVLANTagged:            "vlan-tagged",
	ReasonEtherType:             "unsupported-ethertype",
	ReasonSpoofMAC:              "spoof-mac",
	ReasonSpoofIP:               "spoof-ip",
	ReasonSpoofARP:              "spoof-arp",
	ReasonDHCPServer:            "dhcp-server",
	ReasonRouterAdvert:          "router-advert",
	ReasonNDSpoof:               "nd-spoof",
	ReasonBUM:                   "bum",
	ReasonUnknownDestination:    "unknown-destination",
	ReasonHairpin:               "hairpin",
	ReasonIngressPolicy:         "ingress-policy",
	ReasonEgressPolicy:          "egress-policy",
	ReasonSMTP:                  "smtp",
	ReasonFragment:              "fragment",
	ReasonConntrackInvalid:      "conntrack-invalid",
	ReasonConntrackFull:         "conntrack-full",
	ReasonConntrackInstanceFull: "conntrack-instance-full",
	ReasonRateLimit:             "rate-limit",
	ReasonUnanswered:            "unanswered",
	ReasonUnknownSource:         "unknown-source",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "invalid"
}

// Verdict is the verdict a reason belongs to: every reason names the fate
// of a frame, so counting reasons counts verdicts too.
func (r Reason) Verdict() Verdict {
	switch r {
	case ReasonRule, ReasonEstablished, ReasonRelated, ReasonDefaultEgress, ReasonARP, ReasonND, ReasonResolve, ReasonFragmentOf:
		return Forward
	case ReasonARPReply, ReasonDHCPReply, ReasonNDReply, ReasonAnnounce:
		return Local
	}
	return Drop
}

// ParseReason is the inverse of Reason.String.
func ParseReason(s string) (Reason, bool) {
	for i, n := range reasonNames {
		if n == s {
			return Reason(i), true
		}
	}
	return 0, false
}
