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

// Run serves every port until ctx is cancelled or a port fails. Each port has
// one worker goroutine that reads a frame, runs the pipeline and writes the
// result, run to completion: no channel hand-off per frame. Run closes the
// ports when it returns.
func (s *Switch) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { s.clock.run(ctx, time.Millisecond); return nil })
	g.Go(func() error { s.ct.Run(ctx, time.Second); return nil })
	for i, p := range s.ports {
		if p == nil {
			return fmt.Errorf("switch: port %d (%s) is not open", i, s.names[i])
		}
		g.Go(func() error { return s.serve(i, p) })
	}
	g.Go(func() error {
		<-ctx.Done()
		for _, p := range s.ports {
			p.Close()
		}
		return nil
	})
	err := g.Wait()
	if ctx.Err() != nil && errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Switch) serve(in int, p port.Port) error {
	buf := make([]byte, headroom+port.BufSize)
	var sc Scratch
	for {
		n, err := p.Read(buf[headroom:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			return fmt.Errorf("port %s: %w", s.names[in], err)
		}
		r := s.Process(in, buf[headroom:headroom+n], &sc)
		switch {
		case r.Verdict == filter.Forward:
			s.forward(in, int(r.Out), buf, n)
		case r.Reply != nil:
			s.reply(in, &sc)
		}
	}
}

// forward writes the frame in buf[headroom:headroom+n], read from port in,
// to port out, adding or removing the virtio-net header as the two ports need.
func (s *Switch) forward(in, out int, buf []byte, n int) {
	frame := buf[headroom : headroom+n]
	inHL, outHL := s.vnetLen[in], s.vnetLen[out]
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
			s.counters[out].TxErrors.Add(1)
			return
		}
		frame = frame[inHL:]
	default:
		s.counters[out].TxErrors.Add(1)
		return
	}
	s.write(out, frame)
}

// reply sends a local responder's answer back out of port in.
func (s *Switch) reply(in int, sc *Scratch) {
	b := sc.reply.buf
	if hl := s.vnetLen[in]; hl > 0 {
		h, err := b.PrependBytes(hl)
		if err != nil {
			return
		}
		clear(h)
	}
	s.write(in, b.Bytes())
}

func (s *Switch) write(out int, frame []byte) {
	c := s.counters[out]
	if _, err := s.ports[out].Write(frame); err != nil {
		c.TxErrors.Add(1)
		return
	}
	c.TxFrames.Add(1)
	c.TxBytes.Add(uint64(len(frame)))
}
