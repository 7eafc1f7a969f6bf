package conntrack

// State is a connection's state. TCP connections move through the TCP states
// (their order and meaning follow Linux's nf_conntrack_proto_tcp); UDP, ICMP
// echo and other protocols are Unreplied until a packet is seen in the Reply
// direction, then Replied.
type State uint8

// The states. StateNone is the state of no connection (a Miss).
const (
	StateNone State = iota
	StateSynSent
	StateSynRecv
	StateEstablished
	StateFinWait
	StateCloseWait
	StateLastAck
	StateTimeWait
	StateClose
	// StateSynSent2 is a simultaneous open: a SYN seen from both sides. It
	// uses the SYN_SENT timeout, as in Linux.
	StateSynSent2
	StateUnreplied
	StateReplied

	// NumStates sizes arrays indexed by State, such as Stats.States.
	NumStates
)

var stateNames = [NumStates]string{
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2", "UNREPLIED", "REPLIED",
}

func (s State) String() string {
	if s < NumStates {
		return stateNames[s]
	}
	return "INVALID_STATE"
}

// Verdict is what the table says about a packet.
type Verdict uint8

const (
	// Miss: no live connection holds the packet's tuple. For the caller the
	// packet starts a new flow, to be judged by policy.
	Miss Verdict = iota
	// Valid: the packet belongs to a tracked connection and passed its checks.
	Valid
	// Invalid: the packet belongs to a tracked connection but fails a check
	// (outside the TCP window, inexact RST, flags impossible in the state), or,
	// from Insert, cannot start a connection. Nothing was changed.
	Invalid
)

func (v Verdict) String() string {
	switch v {
	case Miss:
		return "miss"
	case Valid:
		return "valid"
	case Invalid:
		return "invalid"
	}
	return "unknown"
}

// Dir is a packet's direction relative to the connection's first packet.
type Dir uint8

const (
	// Original: from the side that opened the connection.
	Original Dir = iota
	// Reply: from the side that answered.
	Reply
)

func (d Dir) String() string {
	if d == Original {
		return "original"
	}
	return "reply"
}
