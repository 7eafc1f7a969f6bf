package vswitch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// CapturedFrame is one frame of a capture file with its timestamp.
type CapturedFrame struct {
	Data []byte
	Time time.Time
}

// captureChunk is the size of ReadCapture's frame chunks.
const captureChunk = 16 << 20

// ReadCapture loads every frame of a pcap or pcapng file (Ethernet link
// type) into memory, so that replaying it measures the pipeline and not the
// disk. Errors name the file and, for a damaged file, the frame.
func ReadCapture(path string) ([]CapturedFrame, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("%s: not a capture file: too short", path)
	}
	var src interface {
		ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
		LinkType() layers.LinkType
	}
	if bytes.Equal(magic, []byte{0x0a, 0x0d, 0x0d, 0x0a}) {
		src, err = pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
	} else {
		src, err = pcapgo.NewReader(br)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: not a pcap or pcapng file: %w", path, err)
	}
	if lt := src.LinkType(); lt != layers.LinkTypeEthernet {
		return nil, fmt.Errorf("%s: link type %v; sgswitch replays Ethernet captures only", path, lt)
	}
	var frames []CapturedFrame
	// The frames lie back to back in large chunks, in capture order, as in a
	// NIC's receive ring, rather than one allocation each: Go's allocator
	// puts each size class in its own spans, so frames of different sizes
	// would be scattered, and the replay's first touch of every frame would
	// miss the cache instead of streaming (a third of the replay's time).
	var arena []byte
	for {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: frame %d: %w", path, len(frames)+1, err)
		}
		if ci.CaptureLength < ci.Length {
			return nil, fmt.Errorf("%s: frame %d: captured %d of %d bytes; replay needs whole frames (capture with a larger snap length)",
				path, len(frames)+1, ci.CaptureLength, ci.Length)
		}
		if len(arena)+len(data) > cap(arena) {
			arena = make([]byte, 0, max(captureChunk, len(data)))
		}
		at := len(arena)
		arena = append(arena, data...)
		frames = append(frames, CapturedFrame{Data: arena[at:len(arena):len(arena)], Time: ci.Timestamp})
	}
}

// WriteCapture writes frames as a pcap file (the generator's output).
func WriteCapture(path string, frames []CapturedFrame) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	w := pcapgo.NewWriter(bw)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	for _, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: fr.Time, CaptureLength: len(fr.Data), Length: len(fr.Data)}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			f.Close()
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
