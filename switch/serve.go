package vswitch

import (
	"context"
	"errors"
	"fmt"
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
// completion: no channel hand-off per frame. With switch.poll.threads > 0,
// poller threads (poll.go) serve the queues that can be polled (TAPs and
// netdevs) instead. Ports added by Apply while Run serves get their workers
// at once. Run closes the ports when it returns.
func (s *Switch) Run(ctx context.Context) error {
	if s.open == nil {
		return errPortsClosed
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.clock.run(ctx, time.Millisecond); return nil })
	g.Go(func() error { s.ct.Run(ctx, time.Second); return nil })
	pollers := make([]*poller, 0, s.poll.Threads)
	for range s.poll.Threads {
		pl, err := newPoller(s, s.poll.Spin)
		if err != nil {
			for _, pl := range pollers {
				pl.shutdown()
			}
			g.Wait()
			for _, pl := range pollers {
				pl.close()
			}
			return fmt.Errorf("switch.poll: start a poller thread: %w", err)
		}
		pollers = append(pollers, pl)
		g.Go(func() error { pl.run(); return nil })
	}
	s.mu.Lock()
	s.spawn = func(pr *portRuntime) {
		for q := range pr.queues {
			if src, ok := pr.queues[q].(port.Pollable); ok && len(pollers) > 0 {
				// The poller with the fewest queues takes it.
				pl := pollers[0]
				for _, o := range pollers[1:] {
					if o.load() < pl.load() {
						pl = o
					}
				}
				pl.add(pr, q, src)
				continue
			}
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
		for _, pl := range pollers {
			pl.shutdown()
		}
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

// worker is the memory of one queue's worker, reused for every batch: the
// read buffers (each with headroom in front), and the frames waiting to be
// written, grouped by output port so that each port gets one WriteBatch per
// batch read (one sendmmsg for a netdev).
type worker struct {
	bufs  [][]byte // headroom + port.BufSize each
	views [][]byte // bufs[i][headroom:]: what ReadBatch fills
	sizes []int
	sc    Scratch
	outs  []*portRuntime // ports with frames waiting, in the order first seen
	pend  [][][]byte     // pend[i]: the frames waiting for outs[i]
	pace  pacer          // flood pacing of the port this worker reads (pace.go)
}

func newWorker(batch int) *worker {
	batch = max(batch, 1)
	w := &worker{bufs: make([][]byte, batch), views: make([][]byte, batch), sizes: make([]int, batch),
		outs: make([]*portRuntime, 0, batch), pend: make([][][]byte, batch)}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, headroom+port.BufSize)
		w.views[i] = w.bufs[i][headroom:]
		w.pend[i] = make([][]byte, 0, batch)
	}
	return w
}

// serve is the worker of queue q of a port: it reads a batch of frames (as
// many as the port hands over in one call), runs each through the pipeline,
// and writes the forwarded ones, one batch per output port.
func (s *Switch) serve(pr *portRuntime, q int) error {
	src := pr.queues[q]
	w := newWorker(src.BatchSize())
	for {
		t0 := w.pace.beforeRead()
		n, err := src.ReadBatch(w.views, w.sizes)
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
		s.clock.Touch() // wakes the clock's refresher if it naps (clock.go)
		pr.counters.RxCalls.Add(1)
		s.serveBatch(pr, q, w, n)
		w.pace.judge(s.clock.Now())
		w.pace.afterRead(t0)
	}
}

// serveBatch runs the n frames read into w through the pipeline and delivers
// them.
func (s *Switch) serveBatch(pr *portRuntime, q int, w *worker, n int) {
	for i := range n {
		buf := w.bufs[i]
		r := s.Process(int(pr.id), buf[headroom:headroom+w.sizes[i]], &w.sc)
		switch {
		case r.Verdict == filter.Forward:
			// What leaves is the frame as decoded: Ethernet padding after the
			// IP datagram is trimmed (OVS CVE-2020-35498).
			s.forward(pr, w.sc.st.ports[r.Out], w, buf, pr.vnetLen+len(w.sc.frame.Buf))
		case r.Replied():
			// The answer lives in the scratch until the next frame: now.
			s.reply(pr, q, &w.sc)
		}
		w.pace.count(r, &w.sc.frame)
	}
	for i, out := range w.outs {
		s.writeBatch(out, q, w.pend[i])
		clear(w.pend[i]) // no references into the buffers kept
		w.pend[i] = w.pend[i][:0]
	}
	clear(w.outs)
	w.outs = w.outs[:0]
}

// forward queues the frame in buf[headroom:headroom+n], read from port in,
// for port out, adding or removing the virtio-net header as the two ports
// need.
func (s *Switch) forward(in, out *portRuntime, w *worker, buf []byte, n int) {
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
	for i, o := range w.outs {
		if o == out {
			w.pend[i] = append(w.pend[i], frame)
			return
		}
	}
	w.pend[len(w.outs)] = append(w.pend[len(w.outs)], frame)
	w.outs = append(w.outs, out)
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
	c.TxCalls.Add(1)
	if _, err := out.queues[q%len(out.queues)].Write(frame); err != nil {
		c.TxErrors.Add(1)
		return
	}
	c.TxFrames.Add(1)
	c.TxBytes.Add(uint64(len(frame)))
}

// writeBatch sends frames out of port out as write does, in one call.
func (s *Switch) writeBatch(out *portRuntime, q int, frames [][]byte) {
	c := &out.counters
	c.TxCalls.Add(1)
	sent, _ := out.queues[q%len(out.queues)].WriteBatch(frames)
	var bytes uint64
	for _, f := range frames[:sent] {
		// When a frame in the middle was refused, which ones went is not
		// known: the byte count then takes the first ones.
		bytes += uint64(len(f))
	}
	c.TxFrames.Add(uint64(sent))
	c.TxBytes.Add(bytes)
	if sent < len(frames) {
		c.TxErrors.Add(uint64(len(frames) - sent))
	}
}
