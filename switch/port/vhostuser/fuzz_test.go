package vhostuser

import (
	"encoding/binary"
	"testing"

	"github.com/sgswitch/sgswitch/switch/port"
)

// FuzzDecode feeds arbitrary headers, payloads and fd counts to the message
// parser: it must refuse or accept without panicking, and whatever it accepts
// has the payload and fds its request takes.
func FuzzDecode(f *testing.F) {
	le := binary.LittleEndian
	hdr := func(req Request, flags, size uint32) []byte {
		b := le.AppendUint32(nil, uint32(req))
		b = le.AppendUint32(b, flags)
		return le.AppendUint32(b, size)
	}
	f.Add(hdr(ReqGetFeatures, 1, 0), []byte{}, 0)
	f.Add(hdr(ReqSetFeatures, 1, 8), le.AppendUint64(nil, OfferedFeatures), 0)
	f.Add(hdr(ReqSetVringKick, 9, 8), le.AppendUint64(nil, 1), 1)
	f.Add(hdr(ReqSetVringCall, 1, 8), le.AppendUint64(nil, 0x101), 0)
	f.Add(hdr(ReqSetVringAddr, 1, 40), make([]byte, 40), 0)
	mt := le.AppendUint32(nil, 2)
	mt = append(mt, make([]byte, 4+64)...)
	f.Add(hdr(ReqSetMemTable, 1, uint32(len(mt))), mt, 2)
	f.Add(hdr(99, 1, 0), []byte{}, 0)
	f.Fuzz(func(t *testing.T, h, payload []byte, nfds int) {
		nfds = min(max(nfds, 0), 16)
		fds := make([]int, nfds)
		m, err := Decode(h, payload, fds)
		if err != nil {
			return
		}
		rule := rules[m.Req]
		if rule.size >= 0 && len(payload) != rule.size {
			t.Fatalf("%v accepted with %d payload bytes", m.Req, len(payload))
		}
		if m.Req == ReqSetMemTable && (len(m.Regions) == 0 || len(m.Regions) > MaxRegions || len(m.Regions) != nfds) {
			t.Fatalf("memory table of %d regions accepted with %d fds", len(m.Regions), nfds)
		}
		if m.Req != ReqSetMemTable && rule.fds == 0 && nfds != 0 {
			t.Fatalf("%v accepted with %d fds", m.Req, nfds)
		}
		if rule.fds == -1 && nfds > 1 {
			t.Fatalf("%v accepted with %d fds", m.Req, nfds)
		}
	})
}

// fuzzRing is a ring in a plain byte slice standing for guest memory: the
// descriptor table, available and used rings, and buffers.
const (
	fuzzNum     = 8
	fuzzBase    = 0x10000
	fuzzMemSize = 1 << 16
	fuzzDesc    = 0
	fuzzAvail   = 0x1000
	fuzzUsed    = 0x2000
)

func fuzzVring(mem []byte, features uint64) *vring {
	t := &memTable{regions: []region{{Region: Region{GuestAddr: fuzzBase, Size: fuzzMemSize, UserAddr: fuzzBase}, mem: mem}}}
	v := &vring{kick: -1, call: -1, errFd: -1, wake: -1, num: fuzzNum, addrSet: true, started: true, enabled: true, features: features,
		addr: VringAddr{Desc: fuzzBase + fuzzDesc, Avail: fuzzBase + fuzzAvail, Used: fuzzBase + fuzzUsed}, mem: t}
	v.refreshNoWake()
	return v
}

// FuzzDescriptorWalk lets the fuzzer write the descriptor table and the
// available ring (what a hostile guest controls) and runs the transmit and
// receive walkers over them: they must never panic or touch memory outside
// the table, and a frame they return fits the buffer.
func FuzzDescriptorWalk(f *testing.F) {
	le := binary.LittleEndian
	seed := func(descs [][4]uint64, heads []uint16, idx uint16) []byte {
		b := make([]byte, 16*fuzzNum+2+2*fuzzNum)
		for i, d := range descs {
			le.PutUint64(b[16*i:], d[0])
			le.PutUint32(b[16*i+8:], uint32(d[1]))
			le.PutUint16(b[16*i+12:], uint16(d[2]))
			le.PutUint16(b[16*i+14:], uint16(d[3]))
		}
		le.PutUint16(b[16*fuzzNum:], idx)
		for i, h := range heads {
			le.PutUint16(b[16*fuzzNum+2+2*i:], h)
		}
		return b
	}
	f.Add(seed([][4]uint64{{fuzzBase + 0x3000, 100, 0, 0}}, []uint16{0}, 1), uint8(0))
	f.Add(seed([][4]uint64{{fuzzBase + 0x3000, 6, 1, 1}, {fuzzBase + 0x4000, 200, 0, 0}}, []uint16{0}, 1), uint8(1))
	f.Add(seed([][4]uint64{{fuzzBase + 0x3000, 6, 1, 1}, {fuzzBase + 0x4000, 200, 1, 0}}, []uint16{0}, 1), uint8(2))
	f.Add(seed([][4]uint64{{fuzzBase + 0x3000, 2048, 2, 0}, {fuzzBase + 0x4000, 2048, 2, 0}}, []uint16{0, 1}, 2), uint8(3))
	f.Add(seed([][4]uint64{{fuzzBase + fuzzMemSize - 4, 100, 0, 0}}, []uint16{0}, 1), uint8(0))
	f.Fuzz(func(t *testing.T, ring []byte, mode uint8) {
		mem := make([]byte, fuzzMemSize)
		copy(mem[fuzzDesc:fuzzDesc+16*fuzzNum], ring)
		if len(ring) > 16*fuzzNum {
			copy(mem[fuzzAvail+2:fuzzAvail+4+2*fuzzNum], ring[16*fuzzNum:])
		}
		features := uint64(OfferedFeatures)
		if mode&1 != 0 {
			features &^= FeatMrgRxbuf
		}
		if mode&2 != 0 {
			features &^= FeatVersion1 | FeatMrgRxbuf | FeatEventIdx
		}
		v := fuzzVring(mem, features)
		if !v.running {
			t.Fatal("fuzz ring did not start")
		}
		if mode&4 == 0 {
			buf := make([]byte, 4096)
			for range fuzzNum + 1 {
				n, res, why := v.popTx(buf)
				if res == popFrame && (n > len(buf) || n < port.VnetHdrSize) {
					t.Fatalf("frame of %d bytes", n)
				}
				if res == popBroken && why == notBroken {
					t.Fatal("broken without a reason")
				}
				if res != popFrame && res != popDropped {
					break
				}
			}
			return
		}
		frame := make([]byte, port.VnetHdrSize+int(mode)*40)
		for range fuzzNum + 1 {
			res, _ := v.pushRx(frame, &v.rx)
			if res != pushDone {
				break
			}
		}
	})
}
