package vhostuser

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Request is a vhost-user request type (frontend to backend).
type Request uint32

// The requests a virtio-net backend serves. Every other request closes the
// connection: the backend does not offer the features that would make a
// frontend send it (logging, inflight tracking, configuration space, ...).
const (
	ReqGetFeatures         Request = 1
	ReqSetFeatures         Request = 2
	ReqSetOwner            Request = 3
	ReqResetOwner          Request = 4
	ReqSetMemTable         Request = 5
	ReqSetVringNum         Request = 8
	ReqSetVringAddr        Request = 9
	ReqSetVringBase        Request = 10
	ReqGetVringBase        Request = 11
	ReqSetVringKick        Request = 12
	ReqSetVringCall        Request = 13
	ReqSetVringErr         Request = 14
	ReqGetProtocolFeatures Request = 15
	ReqSetProtocolFeatures Request = 16
	ReqGetQueueNum         Request = 17
	ReqSetVringEnable      Request = 18
)

var requestNames = map[Request]string{
	ReqGetFeatures: "GET_FEATURES", ReqSetFeatures: "SET_FEATURES", ReqSetOwner: "SET_OWNER",
	ReqResetOwner: "RESET_OWNER", ReqSetMemTable: "SET_MEM_TABLE", ReqSetVringNum: "SET_VRING_NUM",
	ReqSetVringAddr: "SET_VRING_ADDR", ReqSetVringBase: "SET_VRING_BASE", ReqGetVringBase: "GET_VRING_BASE",
	ReqSetVringKick: "SET_VRING_KICK", ReqSetVringCall: "SET_VRING_CALL", ReqSetVringErr: "SET_VRING_ERR",
	ReqGetProtocolFeatures: "GET_PROTOCOL_FEATURES", ReqSetProtocolFeatures: "SET_PROTOCOL_FEATURES",
	ReqGetQueueNum: "GET_QUEUE_NUM", ReqSetVringEnable: "SET_VRING_ENABLE",
}

func (r Request) String() string {
	if s, ok := requestNames[r]; ok {
		return s
	}
	return fmt.Sprintf("request %d", uint32(r))
}

// Header flags.
const (
	flagVersion   = 0x1 // the protocol version, in bits 0-1
	flagVersionMk = 0x3
	flagReply     = 0x4
	flagNeedReply = 0x8
)

// HeaderSize is the size of a message header: request, flags, payload size.
const HeaderSize = 12

// MaxRegions is the number of memory regions (and so file descriptors) one
// SET_MEM_TABLE carries at most, as in QEMU (VHOST_MEMORY_BASELINE_NREGIONS).
const MaxRegions = 8

// maxPayload is the largest payload of any request served: a full
// SET_MEM_TABLE.
const maxPayload = 8 + MaxRegions*regionSize

const regionSize = 32

// Virtio feature bits the backend offers (GET_FEATURES).
const (
	FeatCsum             = 1 << 0  // VIRTIO_NET_F_CSUM: the guest sends partial checksums
	FeatGuestCsum        = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: the guest accepts them
	FeatGuestTSO4        = 1 << 7  // the guest accepts TCPv4 super-frames
	FeatGuestTSO6        = 1 << 8  // ... and TCPv6
	FeatHostTSO4         = 1 << 11 // the guest sends TCPv4 super-frames
	FeatHostTSO6         = 1 << 12 // ... and TCPv6
	FeatMrgRxbuf         = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF: a received frame may span several chains
	FeatEventIdx         = 1 << 29 // VIRTIO_RING_F_EVENT_IDX
	FeatProtocolFeatures = 1 << 30 // VHOST_USER_F_PROTOCOL_FEATURES
	FeatVersion1         = 1 << 32 // VIRTIO_F_VERSION_1
	// VIRTIO_RING_F_INDIRECT_DESC is not offered: a chain is walked in the
	// ring's own descriptor table only, and an indirect descriptor breaks it.
)

// offloadFeatures are the offloads, left out of the offer with Options.NoOffload.
const offloadFeatures = FeatCsum | FeatGuestCsum | FeatGuestTSO4 | FeatGuestTSO6 | FeatHostTSO4 | FeatHostTSO6

// OfferedFeatures is what GET_FEATURES answers (less offloadFeatures with
// Options.NoOffload).
const OfferedFeatures = FeatCsum | FeatGuestCsum | FeatGuestTSO4 | FeatGuestTSO6 | FeatHostTSO4 |
	FeatHostTSO6 | FeatMrgRxbuf | FeatEventIdx | FeatProtocolFeatures | FeatVersion1

// Protocol feature bits (GET_PROTOCOL_FEATURES).
const (
	ProtoMQ       = 1 << 0 // GET_QUEUE_NUM and several queue pairs
	ProtoReplyAck = 1 << 3 // the need-reply flag is honoured
)

// OfferedProtocolFeatures is what GET_PROTOCOL_FEATURES answers.
const OfferedProtocolFeatures = ProtoMQ | ProtoReplyAck

// Vring fd messages (SET_VRING_KICK/CALL/ERR): the ring index is in bits 0-7
// and bit 8 says that no file descriptor comes with the message.
const (
	vringIndexMask = 0xff
	vringNoFD      = 0x100
)

// MaxRingSize is the largest ring a frontend may set (virtio's limit).
const MaxRingSize = 32768

// Region is one entry of SET_MEM_TABLE: guest-physical range, its address in
// the frontend's process and the offset of its start in the file descriptor.
type Region struct {
	GuestAddr  uint64
	Size       uint64
	UserAddr   uint64
	MmapOffset uint64
}

// VringAddr is the payload of SET_VRING_ADDR. The ring addresses are the
// frontend's virtual addresses (translated through the memory table's
// UserAddr), not guest-physical ones.
type VringAddr struct {
	Index uint32
	Flags uint32
	Desc  uint64
	Used  uint64
	Avail uint64
	Log   uint64
}

// Message is one decoded request. Its file descriptors belong to whoever holds
// the message: the handler takes those it keeps and closes the rest.
type Message struct {
	Req       Request
	NeedReply bool
	// U64 is the payload of the requests that carry one number (features,
	// vring fd index word).
	U64 uint64
	// Index and Num are a vring state (SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE).
	Index, Num uint32
	Addr       VringAddr
	Regions    []Region
	Fds        []int
}

// Decoding errors. Every one of them closes the connection.
var (
	errShort   = errors.New("message shorter than its header says")
	errVersion = errors.New("header version is not 1, or the reply flag is set on a request")
)

// payloadRule says what one request's payload and file descriptors must be.
type payloadRule struct {
	size int // exact payload size; -1 for SET_MEM_TABLE (8 + 32 per region)
	fds  int // exact number of fds; -1: one unless the vring no-fd bit is set
}

var rules = map[Request]payloadRule{
	ReqGetFeatures:         {0, 0},
	ReqSetFeatures:         {8, 0},
	ReqSetOwner:            {0, 0},
	ReqResetOwner:          {0, 0},
	ReqSetMemTable:         {-1, 0},
	ReqSetVringNum:         {8, 0},
	ReqSetVringAddr:        {40, 0},
	ReqSetVringBase:        {8, 0},
	ReqGetVringBase:        {8, 0},
	ReqSetVringKick:        {8, -1},
	ReqSetVringCall:        {8, -1},
	ReqSetVringErr:         {8, -1},
	ReqGetProtocolFeatures: {0, 0},
	ReqSetProtocolFeatures: {8, 0},
	ReqGetQueueNum:         {0, 0},
	ReqSetVringEnable:      {8, 0},
}

// DecodeHeader checks a message header and returns the request and payload
// size. A payload larger than any served request's is refused here, before
// anything reads it.
func DecodeHeader(h []byte) (req Request, flags uint32, size int, err error) {
	if len(h) < HeaderSize {
		return 0, 0, 0, errShort
	}
	req = Request(binary.LittleEndian.Uint32(h[0:4]))
	flags = binary.LittleEndian.Uint32(h[4:8])
	sz := binary.LittleEndian.Uint32(h[8:12])
	if flags&flagVersionMk != flagVersion || flags&flagReply != 0 {
		return req, flags, 0, errVersion
	}
	if _, ok := rules[req]; !ok {
		return req, flags, 0, fmt.Errorf("unknown or unsupported request %d", uint32(req))
	}
	if sz > maxPayload {
		return req, flags, 0, fmt.Errorf("%v: payload of %d bytes, more than the %d any request has", req, sz, maxPayload)
	}
	return req, flags, int(sz), nil
}

// Decode validates one message: its header, the payload size the request
// needs and the number of file descriptors that came with it. It does not
// close fds; on error the caller closes every fd it received.
func Decode(hdr, payload []byte, fds []int) (Message, error) {
	req, flags, size, err := DecodeHeader(hdr)
	if err != nil {
		return Message{}, err
	}
	if len(payload) != size {
		return Message{}, fmt.Errorf("%v: header says %d payload bytes, got %d", req, size, len(payload))
	}
	m := Message{Req: req, NeedReply: flags&flagNeedReply != 0, Fds: fds}
	rule := rules[req]
	le := binary.LittleEndian
	wantFds := rule.fds
	switch {
	case rule.size == -1: // SET_MEM_TABLE
		if size < 8 {
			return Message{}, fmt.Errorf("%v: payload of %d bytes, shorter than its region count", req, size)
		}
		n := le.Uint32(payload[0:4])
		if n == 0 || n > MaxRegions {
			return Message{}, fmt.Errorf("%v: %d regions; 1 to %d are allowed", req, n, MaxRegions)
		}
		if size != 8+int(n)*regionSize {
			return Message{}, fmt.Errorf("%v: %d regions need %d payload bytes, got %d", req, n, 8+int(n)*regionSize, size)
		}
		m.Regions = make([]Region, n)
		for i := range m.Regions {
			b := payload[8+i*regionSize : 8+(i+1)*regionSize]
			m.Regions[i] = Region{GuestAddr: le.Uint64(b[0:]), Size: le.Uint64(b[8:]), UserAddr: le.Uint64(b[16:]), MmapOffset: le.Uint64(b[24:])}
		}
		wantFds = int(n)
	case size != rule.size:
		return Message{}, fmt.Errorf("%v: payload of %d bytes; it must be %d", req, size, rule.size)
	}
	switch rule.size {
	case 8:
		m.U64 = le.Uint64(payload)
		m.Index, m.Num = le.Uint32(payload[0:4]), le.Uint32(payload[4:8])
	case 40:
		m.Addr = VringAddr{Index: le.Uint32(payload[0:]), Flags: le.Uint32(payload[4:]), Desc: le.Uint64(payload[8:]),
			Used: le.Uint64(payload[16:]), Avail: le.Uint64(payload[24:]), Log: le.Uint64(payload[32:])}
		m.Index = m.Addr.Index
	}
	if wantFds == -1 {
		if m.U64&^(vringIndexMask|vringNoFD) != 0 {
			return Message{}, fmt.Errorf("%v: payload %#x has bits besides the ring index and the no-fd flag", req, m.U64)
		}
		m.Index = uint32(m.U64 & vringIndexMask)
		wantFds = 1
		if m.U64&vringNoFD != 0 {
			wantFds = 0
		}
	}
	if len(fds) != wantFds {
		return Message{}, fmt.Errorf("%v: %d file descriptors came with it; it takes %d", req, len(fds), wantFds)
	}
	return m, nil
}

// encodeReply writes a reply with a payload of one u64 (or a vring state,
// which has the same size) into b and returns it.
func encodeReply(b *[HeaderSize + 8]byte, req Request, v uint64) []byte {
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(req))
	le.PutUint32(b[4:], flagVersion|flagReply)
	le.PutUint32(b[8:], 8)
	le.PutUint64(b[12:], v)
	return b[:]
}
