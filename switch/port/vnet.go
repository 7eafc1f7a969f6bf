package port

import "encoding/binary"

// VnetHdrSize is the length of struct virtio_net_hdr, the header that a TAP
// opened with IFF_VNET_HDR puts before every frame (without the
// num_buffers field of the mergeable-buffers variant, which a TAP does not use).
const VnetHdrSize = 10

// Flags of a virtio-net header.
const (
	// VnetFlagNeedsCsum (VIRTIO_NET_HDR_F_NEEDS_CSUM): the L4 checksum is
	// partial; the checksum over the bytes from CsumStart goes at
	// CsumStart+CsumOffset.
	VnetFlagNeedsCsum = 1
	// VnetFlagDataValid (VIRTIO_NET_HDR_F_DATA_VALID): the checksum was already
	// verified.
	VnetFlagDataValid = 2
)

// GSO types of a virtio-net header: the segmentation a super-frame still needs.
const (
	VnetGSONone  = 0
	VnetGSOTCPv4 = 1
	VnetGSOUDP   = 3
	VnetGSOTCPv6 = 4
	// VnetGSOECN is a bit ORed into the TCP types: the super-frame carries
	// ECN-CWR, which only the first segment may keep.
	VnetGSOECN = 0x80
)

// VnetHdr is a decoded virtio-net header (struct virtio_net_hdr). It is a value
// type so that decoding and encoding do not allocate.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // Ethernet + IP + L4 header length of a super-frame
	GSOSize    uint16 // payload bytes per segment (the MSS for TCP)
	CsumStart  uint16
	CsumOffset uint16
}

// The header's 16-bit fields are little-endian: the TAP is switched to
// little-endian headers (TUNSETVNETLE) when opened, as virtio 1.0 defines them,
// instead of the legacy host byte order.

// DecodeVnetHdr decodes the virtio-net header at the start of b. It reports
// false when b is shorter than VnetHdrSize.
func DecodeVnetHdr(b []byte) (VnetHdr, bool) {
	if len(b) < VnetHdrSize {
		return VnetHdr{}, false
	}
	b = b[:VnetHdrSize:VnetHdrSize]
	return VnetHdr{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:4]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:6]),
		CsumStart:  binary.LittleEndian.Uint16(b[6:8]),
		CsumOffset: binary.LittleEndian.Uint16(b[8:10]),
	}, true
}

// Encode writes h into b[:VnetHdrSize]. Like binary.LittleEndian.PutUint16 it
// panics when b is too short: the caller reserves the header room.
func (h VnetHdr) Encode(b []byte) {
	b = b[:VnetHdrSize:VnetHdrSize]
	b[0] = h.Flags
	b[1] = h.GSOType
	binary.LittleEndian.PutUint16(b[2:4], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:6], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:8], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:10], h.CsumOffset)
}
