// Package capture streams the frames of capture files — pcap (micro- and
// nanosecond timestamps, either byte order), pcapng (several sections,
// interfaces and timestamp resolutions), and gzip-compressed files of either —
// in constant memory: it reads large sequential chunks into a small ring of
// buffers and decodes the record headers in place, so a frame is a slice of
// a buffer, never a copy or an allocation of its own.
//
// It is replay's input (and what-if's): Next hands out frames a batch at a
// time, in file order, across several files.
package capture

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sgswitch/sgswitch/conntrack/populate"
)

// Frame is one captured frame.
type Frame struct {
	// Data is the frame's bytes, a slice of the reader's buffer: valid until
	// Window further calls of Next (see Options.Window).
	Data []byte
	// Time is the capture timestamp in nanoseconds since the Unix epoch.
	Time int64
	// Num numbers the frames from 1 across all the reader's files.
	Num int64
}

// Error is a damaged or unsupported capture: it names the file and the byte
// offset (in the decompressed stream, for a gzip file) where reading stopped.
type Error struct {
	File   string
	Offset int64
	Msg    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: offset %d: %s", e.File, e.Offset, e.Msg)
}

// Options tune a Reader; the zero value is fine.
type Options struct {
	// Window is how many batches stay valid: the frames returned by one call
	// of Next stay valid until Window more calls have been made (default 1:
	// until the next call). A pipeline that hands batches to other goroutines
	// sets it to the number of batches it keeps in flight.
	Window int
	// Chunk is the size of each buffer and of each read (default 256 KiB:
	// the frames of one read are still in the core's cache when processed).
	Chunk int
}

const (
	defaultChunk = 256 << 10
	// maxRecord bounds one record (a pcapng block or a pcap frame and its
	// header): a length beyond it is damage, not a frame to allocate for.
	maxRecord = 16 << 20
)

// Reader streams frames from a list of capture files, in order.
type Reader struct {
	paths []string
	next  int // index in paths of the next file to open

	f    *os.File
	gz   *gzip.Reader
	src  io.Reader
	name string
	eof  bool // src has no more bytes

	bufs [][]byte // the ring of Window+1 buffers
	cur  int      // the ring index holding the unparsed bytes
	r, w int      // bufs[cur][r:w] is read but not yet parsed
	off  int64    // stream offset of bufs[cur][r]

	dec  decoder
	num  int64
	read int64 // bytes read from the files (compressed size for gzip)
}

// Open opens the first of paths and checks its header; the others are opened
// in turn as Next reaches them.
func Open(paths []string, opt Options) (*Reader, error) {
	if len(paths) == 0 {
		return nil, errors.New("capture: no file given")
	}
	if opt.Window <= 0 {
		opt.Window = 1
	}
	if opt.Chunk <= 0 {
		opt.Chunk = defaultChunk
	}
	rd := &Reader{paths: paths, bufs: make([][]byte, opt.Window+1)}
	for i := range rd.bufs {
		rd.bufs[i] = make([]byte, opt.Chunk)
		populate.Bytes(rd.bufs[i]) // one system call, not 64 page faults
	}
	if err := rd.openNext(); err != nil {
		rd.Close()
		return nil, err
	}
	return rd, nil
}

// File is the file being read.
func (rd *Reader) File() string { return rd.name }

// BytesRead is the number of bytes read from the files so far.
func (rd *Reader) BytesRead() int64 { return rd.read }

// Close closes the file being read.
func (rd *Reader) Close() error {
	if rd.gz != nil {
		rd.gz.Close()
		rd.gz = nil
	}
	if rd.f != nil {
		err := rd.f.Close()
		rd.f = nil
		return err
	}
	return nil
}

// countingReader counts the bytes read from a file (below gzip).
type countingReader struct {
	f *os.File
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	*c.n += int64(n)
	return n, err
}

// openNext opens paths[next], detects gzip, and decodes the file header.
func (rd *Reader) openNext() error {
	rd.Close()
	path := rd.paths[rd.next]
	rd.next++
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	rd.f, rd.name, rd.eof = f, path, false
	rd.src = countingReader{f, &rd.read}
	rd.r, rd.w, rd.off = 0, 0, 0
	if err := rd.fill(2); err != nil {
		return err
	}
	if rd.w-rd.r >= 2 && rd.bufs[rd.cur][rd.r] == 0x1f && rd.bufs[rd.cur][rd.r+1] == 0x8b {
		// gzip: restart the stream through the decompressor.
		pending := append([]byte(nil), rd.bufs[rd.cur][rd.r:rd.w]...)
		gz, err := gzip.NewReader(io.MultiReader(bytesReader(pending), countingReader{f, &rd.read}))
		if err != nil {
			return &Error{File: path, Offset: 0, Msg: "damaged gzip header: " + err.Error()}
		}
		rd.gz, rd.src, rd.eof = gz, gz, false
		rd.r, rd.w = 0, 0
	}
	if err := rd.fill(24); err != nil {
		return err
	}
	n, err := rd.dec.start(rd.bufs[rd.cur][rd.r:rd.w], rd.eof)
	if err != nil {
		return rd.errorf(rd.off, "%s", err.Error())
	}
	rd.r += n
	rd.off += int64(n)
	return nil
}

type sliceReader struct{ b []byte }

func bytesReader(b []byte) *sliceReader { return &sliceReader{b} }

func (s *sliceReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.b)
	s.b = s.b[n:]
	return n, nil
}

func (rd *Reader) errorf(off int64, format string, args ...any) error {
	return &Error{File: rd.name, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// fill reads until at least need unparsed bytes are buffered or the file
// ends, in place (it never moves bytes: Next moves them, between batches).
func (rd *Reader) fill(need int) error {
	buf := rd.bufs[rd.cur]
	if rd.r+need > len(buf) {
		rd.bufs[rd.cur] = make([]byte, max(2*len(buf), need))
		copy(rd.bufs[rd.cur], buf[rd.r:rd.w])
		rd.w -= rd.r
		rd.r = 0
		buf = rd.bufs[rd.cur]
	}
	for rd.w-rd.r < need && !rd.eof {
		n, err := rd.src.Read(buf[rd.w:])
		rd.w += n
		if err == io.EOF {
			rd.eof = true
		} else if err != nil {
			var msg string
			if rd.gz != nil {
				msg = "damaged gzip stream: " + err.Error()
			} else {
				msg = err.Error()
			}
			return rd.errorf(rd.off+int64(rd.w-rd.r), "%s", msg)
		}
	}
	return nil
}

// Next fills batch with the next frames and returns how many; it returns
// (0, io.EOF) after the last frame of the last file, and an *Error for a
// damaged file. Their Data stays valid until Options.Window more calls.
func (rd *Reader) Next(batch []Frame) (int, error) {
	if len(batch) == 0 {
		return 0, nil
	}
	// Move to the next buffer of the ring, carrying the unparsed tail (a
	// partial record) over, and top it up with one large read.
	prev := rd.bufs[rd.cur][rd.r:rd.w]
	rd.cur = (rd.cur + 1) % len(rd.bufs)
	buf := rd.bufs[rd.cur]
	if len(prev) > len(buf) {
		buf = make([]byte, len(prev)*2)
		rd.bufs[rd.cur] = buf
	}
	rd.w = copy(buf, prev)
	rd.r = 0
	for {
		// Top the buffer up: one large read, not one per frame.
		if err := rd.fill(len(rd.bufs[rd.cur]) - rd.r); err != nil {
			return 0, err
		}
		n := 0
		for n < len(batch) {
			b := rd.bufs[rd.cur][rd.r:rd.w]
			size, data, ts, err := rd.dec.record(b)
			if err != nil {
				return n, rd.errorf(rd.off, "%s", err.Error())
			}
			if size == 0 { // the record is not all buffered
				break
			}
			rd.r += size
			rd.off += int64(size)
			if data != nil {
				rd.num++
				batch[n] = Frame{Data: data, Time: ts, Num: rd.num}
				n++
			}
		}
		if n > 0 {
			return n, nil
		}
		if rd.r == rd.w && rd.eof {
			if rd.next == len(rd.paths) {
				return 0, io.EOF
			}
			if err := rd.openNext(); err != nil {
				return 0, err
			}
			continue
		}
		if rd.eof {
			need, _ := rd.dec.need(rd.bufs[rd.cur][rd.r:rd.w])
			return 0, rd.errorf(rd.off, "truncated: the %s here needs %d bytes, the file ends after %d",
				rd.dec.what(), need, rd.w-rd.r)
		}
		// One record is larger than what is buffered: make room for it.
		need, err := rd.dec.need(rd.bufs[rd.cur][rd.r:rd.w])
		if err != nil {
			return 0, rd.errorf(rd.off, "%s", err.Error())
		}
		if err := rd.fill(max(need, rd.w-rd.r+1)); err != nil {
			return 0, err
		}
	}
}
