package port

import (
	"bytes"
	"testing"
)

func TestVnetHdr(t *testing.T) {
	tests := []struct {
		name  string
		hdr   VnetHdr
		bytes []byte
	}{
		{
			name:  "plain frame",
			hdr:   VnetHdr{},
			bytes: []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			name:  "checksum verified",
			hdr:   VnetHdr{Flags: VnetFlagDataValid},
			bytes: []byte{0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		},
		{
			// Ethernet 14 + IPv4 20 + TCP 32 = 66 bytes of headers, MSS 1448,
			// TCP checksum at 34+16.
			name:  "TCPv4 super-frame",
			hdr:   VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: VnetGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16},
			bytes: []byte{0x01, 0x01, 0x42, 0x00, 0xa8, 0x05, 0x22, 0x00, 0x10, 0x00},
		},
		{
			name:  "TCPv6 super-frame with ECN",
			hdr:   VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: VnetGSOTCPv6 | VnetGSOECN, HdrLen: 86, GSOSize: 1428, CsumStart: 54, CsumOffset: 16},
			bytes: []byte{0x01, 0x84, 0x56, 0x00, 0x94, 0x05, 0x36, 0x00, 0x10, 0x00},
		},
		{
			// UDP fragmentation offload: the checksum field is 6 bytes in.
			name:  "UDP",
			hdr:   VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: VnetGSOUDP, HdrLen: 42, GSOSize: 1480, CsumStart: 34, CsumOffset: 6},
			bytes: []byte{0x01, 0x03, 0x2a, 0x00, 0xc8, 0x05, 0x22, 0x00, 0x06, 0x00},
		},
		{
			name:  "all fields at their maximum",
			hdr:   VnetHdr{Flags: 0xff, GSOType: 0xff, HdrLen: 0xffff, GSOSize: 0xffff, CsumStart: 0xffff, CsumOffset: 0xffff},
			bytes: bytes.Repeat([]byte{0xff}, VnetHdrSize),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Decoding reads only the header: a frame follows it.
			frame := append(append([]byte(nil), tc.bytes...), 0xde, 0xad)
			got, ok := DecodeVnetHdr(frame)
			if !ok || got != tc.hdr {
				t.Errorf("DecodeVnetHdr(% x) = %+v, %v; want %+v, true", frame, got, ok, tc.hdr)
			}
			buf := bytes.Repeat([]byte{0xaa}, VnetHdrSize+2)
			tc.hdr.Encode(buf)
			if !bytes.Equal(buf[:VnetHdrSize], tc.bytes) {
				t.Errorf("%+v.Encode = % x; want % x", tc.hdr, buf[:VnetHdrSize], tc.bytes)
			}
			if buf[VnetHdrSize] != 0xaa || buf[VnetHdrSize+1] != 0xaa {
				t.Errorf("Encode wrote past the header: % x", buf)
			}
		})
	}
}

func TestDecodeVnetHdrShort(t *testing.T) {
	for n := range VnetHdrSize {
		if h, ok := DecodeVnetHdr(make([]byte, n)); ok || h != (VnetHdr{}) {
			t.Errorf("DecodeVnetHdr of %d bytes = %+v, %v; want zero, false", n, h, ok)
		}
	}
}

func TestVnetHdrEncodeShortPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Encode into 9 bytes did not panic")
		}
	}()
	VnetHdr{}.Encode(make([]byte, VnetHdrSize-1))
}

func TestVnetHdrAllocs(t *testing.T) {
	buf := make([]byte, VnetHdrSize)
	h := VnetHdr{Flags: VnetFlagNeedsCsum, GSOType: VnetGSOTCPv4, HdrLen: 66, GSOSize: 1448, CsumStart: 34, CsumOffset: 16}
	var sink VnetHdr
	allocs := testing.AllocsPerRun(1000, func() {
		h.Encode(buf)
		sink, _ = DecodeVnetHdr(buf)
	})
	if allocs != 0 {
		t.Errorf("Encode+DecodeVnetHdr allocated %v times per run; want 0", allocs)
	}
	if sink != h {
		t.Errorf("round trip = %+v; want %+v", sink, h)
	}
}
