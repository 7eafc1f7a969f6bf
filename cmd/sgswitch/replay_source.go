package main

import (
	"encoding/binary"
	"io"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
	"github.com/sgswitch/sgswitch/switch/capture"
)

// replaySource is the frame iteration replay (and what-if) runs on: the
// captures' frames in order, --loop times, a batch at a time in constant
// memory (capture.Reader), with frame numbers and timestamps that go on
// across loops.
//
// Each loop after the first is shifted in time past the capture's span plus
// the longest connection timeout, so that every connection of the previous
// loop has expired when the next begins: each loop sees the verdicts the
// first saw, and the clock never goes back.
type replaySource struct {
	paths []string
	loops int
	opt   capture.Options

	rd     *capture.Reader
	loop   int
	shift  int64 // added to this loop's timestamps
	first  int64 // first timestamp of the first loop
	last   int64 // last timestamp seen (unshifted)
	perRun int64 // frames in one loop
	gap    int64 // longest connection timeout + 1 s
	bytes  int64 // bytes read from files in finished loops
}

// newReplaySource opens the first capture (so that a bad file is reported
// before anything else runs). opt.Window is the number of batches whose
// frames must stay valid at once.
func newReplaySource(paths []string, loops int, opt capture.Options, cfg *config.Config) (*replaySource, error) {
	s := &replaySource{paths: paths, loops: max(loops, 1), opt: opt, gap: int64(longestTimeout(cfg) + time.Second)}
	rd, err := capture.Open(paths, opt)
	if err != nil {
		return nil, err
	}
	s.rd = rd
	return s, nil
}

// longestTimeout is the longest idle timeout of any tracked connection
// under cfg (a zero field means the Linux default; five days is the longest).
func longestTimeout(cfg *config.Config) time.Duration {
	longest := 5 * 24 * time.Hour
	for _, f := range config.TimeoutFields {
		longest = max(longest, *f.Field(&cfg.Switch.Conntrack.Timeouts))
	}
	return longest
}

// next fills batch like capture.Reader.Next, over all loops: Num counts on
// across loops and Time is shifted. It returns io.EOF after the last loop.
func (s *replaySource) next(batch []capture.Frame) (int, error) {
	for s.rd != nil {
		n, err := s.rd.Next(batch)
		if n > 0 {
			if s.loop == 0 && s.perRun == 0 {
				s.first = batch[0].Time
			}
			s.last = batch[n-1].Time
			if s.loop > 0 {
				base := int64(s.loop) * s.perRun
				for i := range batch[:n] {
					batch[i].Num += base
					batch[i].Time += s.shift
				}
			} else {
				s.perRun = batch[n-1].Num
			}
			return n, nil
		}
		if err != io.EOF {
			return 0, err
		}
		s.bytes += s.rd.BytesRead()
		s.rd.Close()
		s.rd = nil
		s.loop++
		if s.loop >= s.loops || s.perRun == 0 {
			return 0, io.EOF
		}
		s.shift += s.last - s.first + s.gap
		rd, err := capture.Open(s.paths, s.opt)
		if err != nil {
			return 0, err
		}
		s.rd = rd
	}
	return 0, io.EOF
}

// bytesRead is the number of bytes read from the capture files so far.
func (s *replaySource) bytesRead() int64 {
	if s.rd == nil {
		return s.bytes
	}
	return s.bytes + s.rd.BytesRead()
}

func (s *replaySource) close() {
	if s.rd != nil {
		s.rd.Close()
	}
}

// portCache attributes a frame to the port owning its source MAC (else the
// uplink) through a small direct-mapped cache in front of the switch's map:
// replay asks once per frame, and the configuration does not change during
// a replay.
type portCache struct {
	sw      *vswitch.Switch
	entries [256]struct {
		mac  uint64 // the MAC in the low 48 bits, bit 63 set when valid
		port int32
	}
}

func (c *portCache) port(frame []byte) int32 {
	if len(frame) < 12 {
		return int32(c.sw.PortByMAC(nil))
	}
	mac := uint64(binary.BigEndian.Uint16(frame[6:]))<<32 | uint64(binary.BigEndian.Uint32(frame[8:])) | 1<<63
	e := &c.entries[byte(mac)^byte(mac>>8)]
	if e.mac != mac {
		e.mac, e.port = mac, int32(c.sw.PortByMAC(frame[6:12]))
	}
	return e.port
}
