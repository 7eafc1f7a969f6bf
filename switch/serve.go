package vswitch

import (
	"context"
	"errors"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/switch/port"
)

// headroom is reserved in front of every read so that a frame from a port
// without a virtio-net header can get one prepended in place when it leaves
// by a port that has one.
const headroom = port.VnetHdrSize

// Run serves every port until ctx is cancelled or a port fails. Each queue
// of a port (one, or those of a multi-queue TAP) has one worker goroutine
// that reads a frame, runs the pipeline and writes the result, run to
// completion: no channel hand-off per frame. Ports added by Apply while Run
// serves get their workers at once. Run closes the ports when it returns.
func (s *Switch) Run(ctx context.Context) error {
	if s.open == nil {
		return errPortsClosed
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.clock.run(ctx, time.Millisecond); return nil })
	g.Go(func() error { s.ct.Run(ctx, time.Second); return nil })
	s.mu.Lock()
	s.spawn = func(pr *portRuntime) {
		for q := range pr.queues {
			g.Go(func() error { return s.serve(pr, q) })
		}
	}
	for _, pr := range s.state.Load().ports {
		if pr != nil {
			s.spawn(pr)
		}
	}
	s.mu.Unlock()
	g.Go(func() error {
		<-ctx.Done()
		s.mu.Lock()
		s.spawn = nil
		for _, pr := range s.state.Load().ports {
			if pr != nil {
				pr.port.Close()
			}
		}
		s.mu.Unlock()
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// serve is the worker of queue q of a port.
func (s *Switch) serve(pr *portRuntime, q int) error {
	buf := make([]byte, headroom+port.BufSize)
	var sc Scratch
	var pace pacer
	src := pr.queues[q]
	for {
		t0 := time.Now()
		n, err := src.Read(buf[headroom:])
		if err != nil {
			if pr.removed.Load() {
				return nil // taken out of the configuration
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// A device that fails (its VM gone, its namespace deleted) takes
			// only its own worker down, never the switch and its other ports.
			s.log.Error("port failed; it is not served until it is re-added", "port", pr.device, "err", err)
			return nil
		}
		took := time.Since(t0)
		s.clock.Touch()
		r := s.Process(int(pr.id), buf[headroom:headroom+n], &sc)
		switch {
		case r.Verdict == filter.Forward:
			// What leaves is the frame as decoded: Ethernet padding after the
			// IP datagram is trimmed (OVS CVE-2020-35498).
			s.forward(pr, sc.st.ports[r.Out], q, buf, pr.vnetLen+len(sc.frame.Buf))
		case r.Replied():
			s.reply(pr, q, &sc)
		}
		pace.count(r, &sc.frame)
		pace.judge(s.clock.Now())
		pace.afterRead(took)
	}
}

// forward writes the frame in buf[headroom:headroom+n], read from port in,
// to port out through its queue q, adding or removing the virtio-net header
// as the two ports need.
func (s *Switch) forward(in, out *portRuntime, q int, buf []byte, n int) {
	frame := buf[headroom : headroom+n]
	inHL, outHL := in.vnetLen, out.vnetLen
	switch {
	case inHL == outHL:
	case inHL == 0: // prepend an empty header: nothing to offload
		frame = buf[headroom-outHL : headroom+n]
		clear(frame[:outHL])
	case outHL == 0:
		// Only a header that asks for nothing can be dropped: a TSO
		// super-frame or a partial checksum needs the kernel's help, which a
		// port without the header cannot give. Ports of one switch share the
		// offload setting, so this is for mixed test setups only.
		if h, _ := port.DecodeVnetHdr(frame); h.GSOType != port.VnetGSONone || h.Flags&port.VnetFlagNeedsCsum != 0 {
			out.counters.TxErrors.Add(1)
			return
		}
		frame = frame[inHL:]
	default:
		out.counters.TxErrors.Add(1)
		return
	}
	s.write(out, q, frame)
}

// reply sends a local responder's answer back out of port in, through its queue q.
func (s *Switch) reply(in *portRuntime, q int, sc *Scratch) {
	b := sc.reply.buf
	if hl := in.vnetLen; hl > 0 {
		h, err := b.PrependBytes(hl)
		if err != nil {
			return
		}
		clear(h)
	}
	s.write(in, q, b.Bytes())
}

// write sends frame out of port out through the queue that the worker of
// queue q of the ingress port uses: the same number, modulo out's queues.
func (s *Switch) write(out *portRuntime, q int, frame []byte) {
	c := &out.counters
	if _, err := out.queues[q%len(out.queues)].Write(frame); err != nil {
		c.TxErrors.Add(1)
		return
	}
	c.TxFrames.Add(1)
	c.TxBytes.Add(uint64(len(frame)))
}
