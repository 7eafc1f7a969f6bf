package capture

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	ft "github.com/sgswitch/sgswitch/filter/framegen"
)

// testFrames are real frames of several sizes (one larger than a read chunk
// in the small-chunk cases) with timestamps that need nanoseconds.
func testFrames(n int) []Frame {
	a := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:11"), IP: netip.MustParseAddr("10.0.0.11")}
	b := ft.Host{MAC: ft.MustMAC("02:00:00:00:00:21"), IP: netip.MustParseAddr("10.0.0.21")}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	out := make([]Frame, n)
	for i := range out {
		var data []byte
		switch i % 4 {
		case 0:
			data = ft.TCP(a, b, 40000, 80, "S", uint32(i), 0, nil)
		case 1:
			data = ft.UDP(b, a, 53, 40000, make([]byte, 1+i%1400))
		case 2:
			data = ft.ARP(1, ft.Broadcast, a.MAC, a.IP, nil, b.IP)
		case 3:
			data = ft.TCP(a, b, 40000, 80, "PA", 1, 1, bytes.Repeat([]byte{byte(i)}, 9000+i))
		}
		out[i] = Frame{Data: data, Time: t0 + int64(i)*1_234_567 + 789, Num: int64(i + 1)}
	}
	return out
}

// ngBuilder writes pcapng blocks by hand, in either byte order, with what
// the generic writers do not exercise: several interfaces with their own
// timestamp resolutions and offsets, simple packet blocks, blocks to skip.
type ngBuilder struct {
	buf bytes.Buffer
	bo  binary.AppendByteOrder
}

func (w *ngBuilder) block(typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	n := uint32(12 + len(body))
	w.buf.Write(w.bo.AppendUint32(nil, typ))
	w.buf.Write(w.bo.AppendUint32(nil, n))
	w.buf.Write(body)
	w.buf.Write(w.bo.AppendUint32(nil, n))
}

func (w *ngBuilder) section() {
	var b []byte
	b = w.bo.AppendUint32(b, ngByteOrder)
	b = w.bo.AppendUint16(b, 1)
	b = w.bo.AppendUint16(b, 0)
	b = w.bo.AppendUint64(b, ^uint64(0))
	w.block(ngSHB, b)
}

func (w *ngBuilder) iface(link uint16, tsresol byte, offsetSec uint64) {
	var b []byte
	b = w.bo.AppendUint16(b, link)
	b = w.bo.AppendUint16(b, 0)
	b = w.bo.AppendUint32(b, 0)
	if tsresol != 0 {
		b = w.bo.AppendUint16(b, 9)
		b = w.bo.AppendUint16(b, 1)
		b = append(b, tsresol, 0, 0, 0)
	}
	if offsetSec != 0 {
		b = w.bo.AppendUint16(b, 14)
		b = w.bo.AppendUint16(b, 8)
		b = w.bo.AppendUint64(b, offsetSec)
	}
	b = append(b, 0, 0, 0, 0) // opt_endofopt
	w.block(ngIDB, b)
}

func (w *ngBuilder) epb(id uint32, ts uint64, data []byte) {
	var b []byte
	b = w.bo.AppendUint32(b, id)
	b = w.bo.AppendUint32(b, uint32(ts>>32))
	b = w.bo.AppendUint32(b, uint32(ts))
	b = w.bo.AppendUint32(b, uint32(len(data)))
	b = w.bo.AppendUint32(b, uint32(len(data)))
	w.block(ngEPB, append(b, data...))
}

// writers produce the same frames in each format (wantTime says what
// timestamp each can carry).
var writers = []struct {
	name  string
	write func(t *testing.T, frames []Frame) []byte
}{
	{"pcap-micro", func(t *testing.T, frames []Frame) []byte { return pcapgoWrite(t, frames, false) }},
	{"pcap-nano", func(t *testing.T, frames []Frame) []byte { return pcapgoWrite(t, frames, true) }},
	{"pcap-micro-big-endian", func(t *testing.T, frames []Frame) []byte {
		var b []byte
		be := binary.BigEndian
		b = be.AppendUint32(b, pcapMagicMicro)
		b = be.AppendUint16(b, 2)
		b = be.AppendUint16(b, 4)
		b = be.AppendUint64(b, 0)
		b = be.AppendUint32(b, 65536)
		b = be.AppendUint32(b, 1)
		for _, f := range frames {
			b = be.AppendUint32(b, uint32(f.Time/1e9))
			b = be.AppendUint32(b, uint32(f.Time%1e9/1000))
			b = be.AppendUint32(b, uint32(len(f.Data)))
			b = be.AppendUint32(b, uint32(len(f.Data)))
			b = append(b, f.Data...)
		}
		return b
	}},
	{"pcapng-gopacket", func(t *testing.T, frames []Frame) []byte {
		var buf bytes.Buffer
		w, err := pcapgo.NewNgWriter(&buf, layers.LinkTypeEthernet)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames {
			ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, f.Time), CaptureLength: len(f.Data), Length: len(f.Data)}
			if err := w.WritePacket(ci, f.Data); err != nil {
				t.Fatal(err)
			}
		}
		w.Flush()
		return buf.Bytes()
	}},
	{"pcapng-sections-interfaces-big-endian", func(t *testing.T, frames []Frame) []byte {
		// Two sections (the second in the other byte order), each with a
		// microsecond interface, a nanosecond one, a 2^-20 one with an
		// offset, and a non-Ethernet one nobody sends on; packets alternate
		// between interfaces; statistics and name blocks in between.
		var out bytes.Buffer
		for s, bo := range []binary.AppendByteOrder{binary.BigEndian, binary.LittleEndian} {
			w := &ngBuilder{bo: bo}
			w.section()
			w.iface(1, 0, 0)               // µs
			w.iface(1, 9, 0)               // ns
			w.iface(113, 0, 0)             // Linux cooked: unused
			w.iface(1, 0x80|20, 1000)      // 2^-20 s, offset 1000 s
			w.block(4, []byte{0, 0, 0, 0}) // name resolution: skipped
			half := frames[s*len(frames)/2 : (s+1)*len(frames)/2]
			for i, f := range half {
				switch i % 3 {
				case 0:
					w.epb(0, uint64(f.Time/1000), f.Data)
				case 1:
					w.epb(1, uint64(f.Time), f.Data)
				case 2:
					w.epb(3, uint64((f.Time-1000e9)<<20/1e9), f.Data)
				}
			}
			w.block(5, make([]byte, 12)) // interface statistics: skipped
			out.Write(w.buf.Bytes())
		}
		return out.Bytes()
	}},
}

func pcapgoWrite(t *testing.T, frames []Frame, nanos bool) []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, f.Time), CaptureLength: len(f.Data), Length: len(f.Data)}
		if err := w.WritePacket(ci, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	z := gzip.NewWriter(&buf)
	z.Write(b)
	z.Close()
	return buf.Bytes()
}

func writeFile(t *testing.T, name string, b []byte) string {
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll reads every frame, copying each (the reader reuses its buffers).
func readAll(t *testing.T, paths []string, opt Options, batch int) ([]Frame, error) {
	t.Helper()
	rd, err := Open(paths, opt)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	buf := make([]Frame, batch)
	var out []Frame
	for {
		n, err := rd.Next(buf)
		for _, f := range buf[:n] {
			f.Data = append([]byte(nil), f.Data...)
			out = append(out, f)
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// wantTime is the timestamp each format's writer stores for frame i.
func wantTime(format string, f Frame, i, total int) int64 {
	switch {
	case strings.HasPrefix(format, "pcap-micro"):
		return f.Time - f.Time%1000
	case format == "pcapng-sections-interfaces-big-endian":
		switch (i % (total / 2)) % 3 {
		case 0:
			return f.Time - f.Time%1000
		case 2:
			ticks := uint64((f.Time - 1000e9) << 20 / 1e9)
			return int64(ticks*1e9>>20) + 1000e9
		}
	}
	return f.Time
}

func TestFormats(t *testing.T) {
	frames := testFrames(400)
	for _, w := range writers {
		raw := w.write(t, frames)
		for _, gz := range []bool{false, true} {
			for _, how := range []struct {
				name string
				opt  Options
			}{
				{"default-chunks", Options{}},
				{"4k-chunks", Options{Chunk: 4096}}, // records larger than a chunk
			} {
				name := w.name
				b := raw
				if gz {
					name += "+gzip"
					b = gzipped(raw)
				}
				t.Run(name+"/"+how.name, func(t *testing.T) {
					p := writeFile(t, "c.cap", b)
					got, err := readAll(t, []string{p}, how.opt, 7)
					if err != nil {
						t.Fatal(err)
					}
					if len(got) != len(frames) {
						t.Fatalf("%d frames, want %d", len(got), len(frames))
					}
					for i, f := range got {
						want := frames[i]
						if !bytes.Equal(f.Data, want.Data) {
							t.Fatalf("frame %d: %d bytes differ from the %d written", i+1, len(f.Data), len(want.Data))
						}
						if wt := wantTime(w.name, want, i, len(frames)); f.Time != wt {
							t.Fatalf("frame %d: time %d, want %d", i+1, f.Time, wt)
						}
						if f.Num != int64(i+1) {
							t.Fatalf("frame %d numbered %d", i+1, f.Num)
						}
					}
				})
			}
		}
	}
}

// TestSeveralFiles reads files of different formats one after the other,
// numbering frames across them.
func TestSeveralFiles(t *testing.T) {
	frames := testFrames(90)
	a := writeFile(t, "a.pcap", pcapgoWrite(t, frames[:30], true))
	b := writeFile(t, "b.pcapng.gz", gzipped(writers[3].write(t, frames[30:60])))
	c := writeFile(t, "c.pcap", pcapgoWrite(t, frames[60:], true))
	for _, chunk := range []int{0, 4096} {
		got, err := readAll(t, []string{a, b, c}, Options{Chunk: chunk}, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 90 {
			t.Fatalf("%d frames, want 90", len(got))
		}
		for i, f := range got {
			if !bytes.Equal(f.Data, frames[i].Data) || f.Time != frames[i].Time || f.Num != int64(i+1) {
				t.Fatalf("frame %d differs", i+1)
			}
		}
	}
}

// TestWindow checks that the frames of the last Window batches stay intact
// while the reader moves on.
func TestWindow(t *testing.T) {
	frames := testFrames(300)
	p := writeFile(t, "w.pcap", pcapgoWrite(t, frames, true))
	const window = 3
	rd, err := Open([]string{p}, Options{Window: window, Chunk: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var held [][]Frame
	for {
		batch := make([]Frame, 5)
		n, err := rd.Next(batch)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, batch[:n])
		if len(held) > window {
			held = held[1:]
		}
		for _, b := range held {
			for _, f := range b {
				if !bytes.Equal(f.Data, frames[f.Num-1].Data) {
					t.Fatalf("frame %d overwritten while within the window", f.Num)
				}
			}
		}
	}
}

func TestDamaged(t *testing.T) {
	frames := testFrames(8)
	good := pcapgoWrite(t, frames, false)
	ng := writers[3].write(t, frames)
	corrupt := func(b []byte, at int, v ...byte) []byte {
		c := append([]byte(nil), b...)
		copy(c[at:], v)
		return c
	}
	// The first record header is at 24; its captured length at 24+8.
	firstLen := int(binary.LittleEndian.Uint32(good[32:]))
	second := 24 + 16 + firstLen
	shbLen := int(binary.LittleEndian.Uint32(ng[4:]))
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "offset 0: not a capture file: 0 bytes long", nil},
		{"text", "offset 0: not a pcap or pcapng file (it starts with 74 68 69 73)", []byte("this is not a capture")},
		{"short-header", "offset 0: truncated: the pcap file header needs 24 bytes, the file ends after 10", good[:10]},
		{"not-ethernet", "offset 0: link type 113; sgswitch replays Ethernet captures (link type 1) only", corrupt(good, 20, 113)},
		{"truncated-record", "offset " + itoa(second) + ": truncated: the frame record here needs " + itoa(16+int(binary.LittleEndian.Uint32(good[second+8:]))) + " bytes, the file ends after 20",
			good[:second+20]},
		{"truncated-record-header", "offset " + itoa(second) + ": truncated: the frame record here needs 16 bytes, the file ends after 5", good[:second+5]},
		{"huge-record", "offset 24: frame record claims 4294967295 captured bytes (damaged file?)", corrupt(good, 32, 0xff, 0xff, 0xff, 0xff)},
		{"snapped", "offset 24: frame captured " + itoa(firstLen) + " of 65535 bytes; replay needs whole frames", corrupt(good, 36, 0xff, 0xff, 0, 0)},
		{"ng-bad-trailer", "offset 0: block of type 0xa0d0d0a: length " + itoa(shbLen) + " at its start but 0 at its end", corrupt(ng, shbLen-4, 0, 0, 0, 0)},
		{"ng-bad-length", "offset 0: block of type 0xa0d0d0a has an invalid length 13", corrupt(ng, 4, 13, 0, 0, 0)},
		{"ng-truncated", "truncated: the block here needs", ng[:len(ng)-3]},
		{"ng-unknown-interface", "packet on interface 7, but the section describes 1", ngUnknownInterface()},
		{"gzip-truncated", "damaged gzip stream: unexpected EOF", gzipped(good)[:100]},
	} {
		for _, chunk := range []int{0, 64} {
			t.Run(tc.name+map[int]string{0: "", 64: "/64-byte-chunks"}[chunk], func(t *testing.T) {
				p := writeFile(t, "bad.pcap", tc.data)
				_, err := readAll(t, []string{p}, Options{Chunk: chunk}, 64)
				var ce *Error
				if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), p+": offset ") {
					t.Fatalf("err = %v\nwant %q naming the file and offset", err, tc.want)
				}
				if !errors.As(err, &ce) {
					t.Fatalf("err %T is not a *capture.Error", err)
				}
			})
		}
	}
}

func ngUnknownInterface() []byte {
	w := &ngBuilder{bo: binary.LittleEndian}
	w.section()
	w.iface(1, 0, 0)
	w.epb(7, 1, testFrames(1)[0].Data)
	return w.buf.Bytes()
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestNextAllocatesNothing: reading a capture allocates nothing per frame
// or per batch once the reader is open.
func TestNextAllocatesNothing(t *testing.T) {
	frames := testFrames(64)
	raw := pcapgoWrite(t, frames, true)
	var big []byte
	big = append(big, raw...)
	for range 200 {
		big = append(big, raw[24:]...)
	}
	p := writeFile(t, "big.pcap", big)
	for _, chunk := range []int{0, 4096} {
		rd, err := Open([]string{p}, Options{Chunk: chunk})
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		batch := make([]Frame, 256)
		total := 0
		allocs := testing.AllocsPerRun(50, func() {
			n, err := rd.Next(batch)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			total += n
		})
		if allocs != 0 {
			t.Fatalf("%.1f allocations per batch, want 0", allocs)
		}
		if total == 0 {
			t.Fatal("read nothing")
		}
	}
}

// BenchmarkNext reads a capture from the page cache: the cost per frame of
// reading and decoding (the frames are the seed mix's sizes).
func BenchmarkNext(b *testing.B) {
	frames := testFrames(64)
	for i := range frames {
		if len(frames[i].Data) > 1500 {
			frames[i].Data = frames[i].Data[:1500]
		}
	}
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	w.WriteFileHeader(65536, layers.LinkTypeEthernet)
	for range 1000 {
		for _, f := range frames {
			w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(0, f.Time), CaptureLength: len(f.Data), Length: len(f.Data)}, f.Data)
		}
	}
	p := filepath.Join(b.TempDir(), "bench.pcap")
	os.WriteFile(p, buf.Bytes(), 0o644)
	batch := make([]Frame, 1024)
	{
		b.Run("pcap", func(b *testing.B) {
			b.SetBytes(int64(buf.Len()))
			b.ReportAllocs()
			for b.Loop() {
				rd, err := Open([]string{p}, Options{})
				if err != nil {
					b.Fatal(err)
				}
				for {
					_, err := rd.Next(batch)
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
				}
				rd.Close()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64000), "ns/frame")
		})
	}
}
