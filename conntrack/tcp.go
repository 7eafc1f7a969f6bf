package conntrack

// TCP header flags, as in byte 13 of the header.
const (
	tcpFin = 0x01
	tcpSyn = 0x02
	tcpRst = 0x04
	tcpAck = 0x10
	tcpUrg = 0x20
)

// validTCPFlags has bit f set for each combination f of FIN, SYN, RST, ACK and
// URG that a TCP stack sends (Linux tcp_valid_flags; PSH, ECE and CWR do not
// matter). Any other combination (SYN+FIN, no flag at all, FIN without ACK,
// ...) is a scan or an evasion attempt, and Invalid.
const validTCPFlags uint64 = 1<<tcpSyn | 1<<(tcpSyn|tcpUrg) | 1<<(tcpSyn|tcpAck) |
	1<<tcpRst | 1<<(tcpRst|tcpAck) | 1<<(tcpFin|tcpAck) | 1<<(tcpFin|tcpAck|tcpUrg) |
	1<<tcpAck | 1<<(tcpAck|tcpUrg)

func validFlags(f uint8) bool {
	return validTCPFlags>>(f&(tcpFin|tcpSyn|tcpRst|tcpAck|tcpUrg))&1 != 0
}

// Rows of the transition table: the kind of segment, from its flags.
const (
	idxSyn = iota
	idxSynAck
	idxFin
	idxAck
	idxRst
	idxNone
)

func flagIndex(f uint8) int {
	switch {
	case f&tcpRst != 0:
		return idxRst
	case f&tcpSyn != 0:
		if f&tcpAck != 0 {
			return idxSynAck
		}
		return idxSyn
	case f&tcpFin != 0:
		return idxFin
	case f&tcpAck != 0:
		return idxAck
	}
	return idxNone
}

// Short names for the transition table, as in Linux. sIV marks an invalid
// segment; sIG one that may be valid but that the table cannot judge (a late
// retransmission, or one end out of sync with the table): it passes, and
// changes nothing, so that the endpoints' own answer (typically an RST) is what
// moves the connection.
const (
	sNO = StateNone
	sSS = StateSynSent
	sSR = StateSynRecv
	sES = StateEstablished
	sFW = StateFinWait
	sCW = StateCloseWait
	sLA = StateLastAck
	sTW = StateTimeWait
	sCL = StateClose
	sS2 = StateSynSent2
	sIV = State(0xfe)
	sIG = State(0xff)
)

// tcpNext is Linux's tcp_conntracks: the next state by direction, segment kind
// and current state. The sNO column is never used (a connection starts in
// SYN_SENT), and a SYN on TIME_WAIT or CLOSE is handled before the table, by
// replacing the connection.
var tcpNext = [2][6][sS2 + 1]State{
	Original: {
		/*            sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
		idxSyn:    {sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2},
		idxSynAck: {sIV, sIV, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		idxFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		idxAck:    {sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV},
		idxRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		idxNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
	Reply: {
		/*            sNO  sSS  sSR  sES  sFW  sCW  sLA  sTW  sCL  sS2 */
		idxSyn:    {sIV, sS2, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sS2},
		idxSynAck: {sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR},
		idxFin:    {sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV},
		idxAck:    {sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG},
		idxRst:    {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
		idxNone:   {sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV},
	},
}

// step is what one packet does to the connection it belongs to.
type step uint8

const (
	stepInvalid step = iota // fails a check: nothing changes
	stepIgnore              // passes, changes nothing, refreshes nothing (sIG)
	stepAdvance             // passes: state, windows and timeout updated
	stepReopen              // a SYN on a closed connection: replace the entry
)

// tcpSide is one direction's sequence-space view, after Rooij's "Real
// Stateful TCP Packet Filtering in IP Filter" as Linux implements it.
type tcpSide struct {
	end    uint32 // highest seq + len sent
	maxend uint32 // highest ack + window the other side has granted
	maxwin uint32 // largest (scaled) window sent; 0 until the side is seen
	scale  uint8
	wscale bool // the side's SYN carried the window-scale option
}

func (e *entry) side(d Dir) tcpSide {
	return tcpSide{end: e.end[d], maxend: e.maxend[d], maxwin: e.maxwin[d], scale: e.scale[d],
		wscale: e.flags&(flagWScale<<d) != 0}
}

func (e *entry) setSide(d Dir, s tcpSide) {
	e.end[d], e.maxend[d], e.maxwin[d], e.scale[d] = s.end, s.maxend, s.maxwin, s.scale
	if s.wscale {
		e.flags |= flagWScale << d
	} else {
		e.flags &^= flagWScale << d
	}
}

// init starts a side from its SYN (or SYN/ACK).
func (s *tcpSide) init(end uint32, win uint16, wscale int8) {
	s.end, s.maxend = end, end
	s.maxwin = max(uint32(win), 1)
	s.scale, s.wscale = 0, false
	if wscale >= 0 {
		s.scale, s.wscale = uint8(min(wscale, 14)), true // RFC 7323 caps the shift at 14
	}
}

func segmentEnd(p *Packet) uint32 {
	end := p.Seq + uint32(p.PayloadLen)
	if p.TCPFlags&tcpSyn != 0 {
		end++
	}
	if p.TCPFlags&tcpFin != 0 {
		end++
	}
	return end
}

// Sequence-number comparisons modulo 2^32.
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }
func seqGE(a, b uint32) bool { return int32(a-b) >= 0 }
func seqGT(a, b uint32) bool { return int32(a-b) > 0 }

// trackTCP judges one segment of connection e travelling in direction dir and
// returns the state it moves to. It writes e only when the segment is valid,
// which is what keeps a connection ESTABLISHED through a forged RST or an
// out-of-window segment.
func trackTCP(e *entry, p *Packet, dir Dir) (step, State) {
	f := p.TCPFlags
	if !validFlags(f) {
		return stepInvalid, e.state
	}
	kind := flagIndex(f)
	if kind == idxSyn && (e.state == StateTimeWait || e.state == StateClose) {
		// Port reuse (RFC 1122 4.2.2.13): a new connection, which the
		// caller must judge as one.
		return stepReopen, e.state
	}
	next := tcpNext[dir][kind][e.state]
	switch next {
	case sIV:
		return stepInvalid, e.state
	case sIG:
		return stepIgnore, e.state
	}
	snd, rcv := e.side(dir), e.side(1-dir)
	if kind == idxRst {
		if !validRST(e.state, dir, &snd, &rcv, p) {
			return stepInvalid, e.state
		}
		return stepAdvance, next
	}
	if !inWindow(e.state, dir, &snd, &rcv, p) {
		return stepInvalid, e.state
	}
	e.setSide(dir, snd)
	e.setSide(1-dir, rcv)
	return stepAdvance, next
}

// validRST judges an RST as Linux does. On an ESTABLISHED connection it must
// be exact: at the sequence number its receiver expects next (RFC 5961 3.2);
// anything else, even inside the window, may be a blind injection, and
// Linux's conntrack selftests expect it to leave the connection alone. In
// every other state (opening or closing) an RST inside the window is enough
// (nf_conntrack_proto_tcp checks exactness only when the connection is
// established): a stack resets a half-closed connection with the sequence
// number its peer last acknowledged, which may lie behind the exact one.
// The window copies inWindow updates are discarded by the caller.
func validRST(state State, dir Dir, snd, rcv *tcpSide, p *Packet) bool {
	if exactRST(state, dir, snd, rcv, p) {
		return true
	}
	switch state {
	case StateEstablished, StateSynSent:
		return false
	}
	s, r := *snd, *rcv
	return inWindow(state, dir, &s, &r, p)
}

// exactRST reports whether an RST carries exactly the sequence number its
// receiver expects next.
func exactRST(state State, dir Dir, snd, rcv *tcpSide, p *Packet) bool {
	if state == StateSynSent && dir == Reply {
		// The answer to a SYN sent to a closed port carries no usable
		// sequence number; RFC 793 makes it acceptable when it acknowledges
		// the SYN exactly.
		return p.TCPFlags&tcpAck != 0 && p.Ack == rcv.end
	}
	if snd.maxwin == 0 {
		return false
	}
	if p.Seq == snd.end {
		return true
	}
	// Once a FIN is on its way the receiver may not have seen it yet: its
	// next expected sequence number is still the FIN's own, one below end.
	// Linux answers a segment for a closed socket with exactly that RST.
	switch state {
	case StateFinWait, StateCloseWait, StateLastAck, StateTimeWait:
		return p.Seq == snd.end-1
	}
	return false
}

// inWindow is Linux's tcp_in_window without SACK and NAT and without loose
// pick-up of connections seen mid-stream. It checks, then updates snd and rcv
// (copies: the caller commits them only when it returns true):
//
//	I.   seq <= snd.maxend                  the data starts inside the window
//	II.  end >= snd.end - rcv.maxwin        and is not older than a window
//	III. ack <= rcv.end                     it acknowledges nothing unsent
//	IV.  ack >= rcv.end - max(snd.maxwin, 66000)
func inWindow(state State, dir Dir, snd, rcv *tcpSide, p *Packet) bool {
	f := p.TCPFlags
	seq, ack, win := p.Seq, p.Ack, uint32(p.Window)
	end := segmentEnd(p)
	switch {
	case snd.maxwin == 0:
		// The first segment from this side: only its SYN may introduce it.
		if f&tcpSyn == 0 {
			return false
		}
		snd.init(end, p.Window, p.WScale)
		// RFC 7323: scaling applies only when both SYNs carry the option.
		if !snd.wscale || !rcv.wscale {
			snd.scale, rcv.scale = 0, 0
		}
		if f&tcpAck == 0 {
			return true // a simultaneous open: nothing to check yet
		}
	case state == StateSynSent && dir == Original && f&tcpSyn != 0 && seqGT(end, snd.end):
		// A SYN with a later sequence number: the client restarted the
		// connection (RFC 793 3.3); follow it.
		snd.init(end, p.Window, p.WScale)
	}
	if f&tcpAck == 0 {
		ack = rcv.end
	}
	if seq == end && f&tcpRst == 0 {
		// No data: only the acknowledgement can be checked. An RST is
		// always checked by its sequence number too (as in Linux).
		seq, end = snd.end, snd.end
	}
	maxack := max(snd.maxwin, 66000)
	if !seqLE(seq, snd.maxend) || !seqGE(end, snd.end-rcv.maxwin) ||
		!seqLE(ack, rcv.end) || !seqGE(ack, rcv.end-maxack) {
		return false
	}
	if f&tcpSyn == 0 {
		win <<= snd.scale
	}
	snd.maxwin = max(snd.maxwin, win)
	if seqGT(end, snd.end) {
		snd.end = end
	}
	if rcv.maxwin != 0 && seqGT(end, snd.maxend) {
		rcv.maxwin += end - snd.maxend
	}
	if seqGE(ack+win, rcv.maxend) {
		rcv.maxend = ack + win
		if win == 0 {
			rcv.maxend++
		}
	}
	return true
}

// initTCP starts a connection's window tracking from its SYN.
func (e *entry) initTCP(p *Packet) {
	var s tcpSide
	s.init(segmentEnd(p), p.Window, p.WScale)
	e.setSide(Original, s)
	e.setSide(Reply, tcpSide{})
}
