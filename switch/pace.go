package vswitch

import (
	"time"

	"github.com/sgswitch/sgswitch/filter"
)

// Flood pacing: a port whose frames are mostly not established traffic
// (drops, new connections, resets) at a high rate is read in bursts
// instead of a frame at a time. Each frame read the moment it arrives costs
// a wake-up of the port's worker (netpoller, scheduler, a thread switch: on
// a flood of small frames that is nearly all of the switch's work, 40 µs of
// CPU a frame measured on this project's VM), while frames that have
// queued are read back to back. So once a port floods, its worker, having
// emptied its queue, waits paceInterval before reading again: one wake-up
// per burst instead of per frame; what does not fit the TAP's queue meanwhile
// is dropped by the kernel in the sender's own context, the cheapest drop
// there is (the TAP's tx_dropped). Its neighbours keep their share of the
// CPU, and established traffic — of other ports, and of this one when it
// stops flooding — is never delayed. The cost falls on the flooding port:
// its frames wait up to paceInterval.
const (
	paceWindow    = 10 * time.Millisecond // the rate is judged over this
	paceMinFrames = 50                    // frames per window (5,000 frames/s) before a port is paced; half that keeps it paced
	paceInterval  = time.Millisecond      // how long a paced worker lets frames queue
	// A read that had to wait (the queue was empty) takes at least a
	// wake-up; one that found a frame queued returns within a system call.
	paceWaited = 30 * time.Microsecond
)

// pacer is one worker's flood pacing state.
type pacer struct {
	windowStart int64 // clock ns
	frames      int   // frames read in this window
	unusual     int   // of which not forwarded as established
	paced       bool  // this port floods: read in bursts
}

// tcpRST is the RST flag of a TCP header.
const tcpRST = 0x04

// count records one frame's result. Unusual is anything but established
// traffic, and the RSTs that answer a SYN flood (established replies, but
// a flood of them is the flood's echo).
func (p *pacer) count(r Result, f *filter.Frame) {
	p.frames++
	if r.Reason != filter.ReasonEstablished || (f.Proto == 6 && f.TCPFlags&tcpRST != 0) {
		p.unusual++
	}
}

// judge closes the window when it is over: the port is paced for the next
// window when it read paceMinFrames or more (half as many when it is paced
// already), three quarters of them unusual.
func (p *pacer) judge(now int64) {
	if now-p.windowStart < int64(paceWindow) {
		return
	}
	min := paceMinFrames
	if p.paced {
		min /= 2 // hysteresis: a flood hovering about the rate is not paced one window in two
	}
	p.paced = p.frames >= min && 4*p.unusual >= 3*p.frames
	p.windowStart, p.frames, p.unusual = now, 0, 0
}

// beforeRead is called before each read: it notes the time when the port
// is paced (and only then: reading the clock twice a read is 0.1 µs a
// frame on a TAP, for nothing when no port floods).
func (p *pacer) beforeRead() time.Time {
	if !p.paced {
		return time.Time{}
	}
	return time.Now()
}

// afterRead is called after each read with what beforeRead returned: when
// the port is paced and the read had to wait for its frame, the queue was
// empty, and the worker lets the next frames queue before reading again.
func (p *pacer) afterRead(start time.Time) {
	if p.paced && !start.IsZero() && time.Since(start) >= paceWaited {
		time.Sleep(paceInterval)
	}
}
