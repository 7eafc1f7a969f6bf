package vhostuser

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// device is the state one frontend connection configures: features and the
// memory table. Only the control goroutine touches it; the rings hold what
// they need under their own locks.
type device struct {
	p         *Port
	features  uint64
	protocol  uint64
	protoSet  bool // SET_PROTOCOL_FEATURES came
	owner     bool
	mem       *memTable
	replyBuf  [HeaderSize + 8]byte
	header    [HeaderSize]byte
	payload   [maxPayload]byte
	oob       []byte
	connected bool
}

// serveConn answers one frontend's messages until it disconnects or sends
// something malformed; either way the device is then reset, its mappings
// and descriptors released.
func (p *Port) serveConn(c *net.UnixConn) error {
	d := &device{p: p, oob: make([]byte, unix.CmsgSpace(4*(MaxRegions+1)))}
	defer d.reset()
	for {
		m, err := d.read(c)
		if err != nil {
			return err
		}
		p.log.Debug("vhost-user message", "port", p.name, "req", m.Req, "need-reply", m.NeedReply, "u64", m.U64, "fds", len(m.Fds))
		reply, hasVal, err := d.handle(m)
		if err != nil {
			return fmt.Errorf("%v: %w", m.Req, err)
		}
		switch {
		case hasVal:
			if _, err := c.Write(encodeReply(&d.replyBuf, m.Req, reply)); err != nil {
				return err
			}
		case m.NeedReply && d.protocol&ProtoReplyAck != 0:
			// Success; a failure closes the connection instead, which the
			// frontend sees as the error.
			if _, err := c.Write(encodeReply(&d.replyBuf, m.Req, 0)); err != nil {
				return err
			}
		}
	}
}

// read reads one message and the file descriptors that came with it.
func (d *device) read(c *net.UnixConn) (m Message, err error) {
	var fds []int
	defer func() {
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}()
	readFull := func(b []byte) error {
		for got := 0; got < len(b); {
			n, oobn, flags, _, err := c.ReadMsgUnix(b[got:], d.oob)
			if oobn > 0 {
				cms, perr := unix.ParseSocketControlMessage(d.oob[:oobn])
				if perr != nil {
					return perr
				}
				for _, cm := range cms {
					if cm.Header.Level != unix.SOL_SOCKET || cm.Header.Type != unix.SCM_RIGHTS {
						return fmt.Errorf("ancillary data of type %d, not file descriptors", cm.Header.Type)
					}
					got, perr := unix.ParseUnixRights(&cm)
					if perr != nil {
						return perr
					}
					fds = append(fds, got...)
				}
			}
			if flags&unix.MSG_CTRUNC != 0 {
				return errors.New("more file descriptors than any message takes")
			}
			if err != nil {
				return err
			}
			if n == 0 {
				return net.ErrClosed
			}
			got += n
		}
		return nil
	}
	if err := readFull(d.header[:]); err != nil {
		return Message{}, err
	}
	_, _, size, err := DecodeHeader(d.header[:])
	if err != nil {
		return Message{}, err
	}
	if err := readFull(d.payload[:size]); err != nil {
		return Message{}, err
	}
	return Decode(d.header[:], d.payload[:size], fds)
}

// ring returns ring i, refusing an index past the queue pairs offered.
func (d *device) ring(i uint32) (*vring, error) {
	if int(i) >= len(d.p.rings) {
		return nil, fmt.Errorf("ring %d: this port has %d rings (%d queue pairs)", i, len(d.p.rings), len(d.p.rings)/2)
	}
	return d.p.rings[i], nil
}

func (d *device) protocolFeatures() bool { return d.features&FeatProtocolFeatures != 0 }

// refresh applies a change to ring v and logs a ring that cannot start.
func (d *device) refresh(idx uint32, v *vring) {
	if why := v.refresh(d.protocolFeatures()); why != "" {
		d.p.log.Warn("vhost-user ring not started", "port", d.p.name, "ring", idx, "why", why)
	}
}

// handle carries out one message. It returns the reply value when the
// request has one. Every fd in m is either kept or closed.
func (d *device) handle(m Message) (reply uint64, hasReply bool, err error) {
	switch m.Req {
	case ReqGetFeatures:
		return d.p.offered, true, nil
	case ReqSetFeatures:
		if m.U64&^d.p.offered != 0 {
			return 0, false, fmt.Errorf("features %#x include ones not offered (%#x)", m.U64, m.U64&^d.p.offered)
		}
		d.features = m.U64
		for i, v := range d.p.rings {
			v.mu.Lock()
			if v.running && v.features != m.U64 {
				v.stop() // the header length and notification scheme change with them
			}
			v.features = m.U64
			d.refresh(uint32(i), v)
			v.mu.Unlock()
		}
	case ReqGetProtocolFeatures:
		return OfferedProtocolFeatures, true, nil
	case ReqSetProtocolFeatures:
		if m.U64&^OfferedProtocolFeatures != 0 {
			return 0, false, fmt.Errorf("protocol features %#x include ones not offered", m.U64)
		}
		d.protocol, d.protoSet = m.U64, true
	case ReqGetQueueNum:
		return uint64(len(d.p.rings) / 2), true, nil
	case ReqSetOwner:
		d.owner = true
	case ReqResetOwner:
		d.reset()
	case ReqSetMemTable:
		mem, err := mapMemTable(m.Regions, m.Fds)
		if err != nil {
			return 0, false, err
		}
		old := d.mem
		d.mem = mem
		for i, v := range d.p.rings {
			v.mu.Lock()
			v.stop() // re-translated against the new table
			v.mem = mem
			d.refresh(uint32(i), v)
			v.mu.Unlock()
		}
		old.unmap()
	case ReqSetVringNum:
		v, err := d.ring(m.Index)
		if err != nil {
			return 0, false, err
		}
		if m.Num == 0 || m.Num > MaxRingSize || m.Num&(m.Num-1) != 0 {
			return 0, false, fmt.Errorf("ring %d: size %d; a split ring's size is a power of two up to %d", m.Index, m.Num, MaxRingSize)
		}
		v.mu.Lock()
		v.stop()
		v.num = m.Num
		d.refresh(m.Index, v)
		v.mu.Unlock()
	case ReqSetVringAddr:
		v, err := d.ring(m.Index)
		if err != nil {
			return 0, false, err
		}
		if m.Addr.Flags != 0 {
			return 0, false, fmt.Errorf("ring %d: flags %#x: dirty-page logging is not offered", m.Index, m.Addr.Flags)
		}
		v.mu.Lock()
		v.stop()
		v.addr, v.addrSet = m.Addr, true
		d.refresh(m.Index, v)
		v.mu.Unlock()
	case ReqSetVringBase:
		v, err := d.ring(m.Index)
		if err != nil {
			return 0, false, err
		}
		if m.Num > 0xffff {
			return 0, false, fmt.Errorf("ring %d: base %d is not a 16-bit ring index", m.Index, m.Num)
		}
		v.mu.Lock()
		v.stop()
		v.base = uint16(m.Num)
		d.refresh(m.Index, v)
		v.mu.Unlock()
	case ReqGetVringBase:
		v, err := d.ring(m.Index)
		if err != nil {
			return 0, false, err
		}
		v.mu.Lock()
		v.stop()
		if v.kick >= 0 {
			unix.Close(v.kick)
			v.kick = -1
		}
		v.started = false // a new kick restarts it
		base := v.base
		v.changed()
		v.mu.Unlock()
		return uint64(m.Index) | uint64(base)<<32, true, nil
	case ReqSetVringKick, ReqSetVringCall, ReqSetVringErr:
		v, err := d.ring(m.Index)
		if err != nil {
			for _, fd := range m.Fds {
				unix.Close(fd)
			}
			return 0, false, err
		}
		fd := -1
		if len(m.Fds) == 1 {
			fd = m.Fds[0]
		}
		v.mu.Lock()
		target := &v.kick
		switch m.Req {
		case ReqSetVringCall:
			target = &v.call
		case ReqSetVringErr:
			target = &v.errFd
		}
		if *target >= 0 {
			unix.Close(*target)
		}
		*target = fd
		if m.Req == ReqSetVringKick {
			v.stop()
			v.started = true
			d.refresh(m.Index, v)
		}
		v.changed()
		v.mu.Unlock()
	case ReqSetVringEnable:
		v, err := d.ring(m.Index)
		if err != nil {
			return 0, false, err
		}
		if m.Num > 1 {
			return 0, false, fmt.Errorf("ring %d: enable value %d; it is 0 or 1", m.Index, m.Num)
		}
		v.mu.Lock()
		v.enabled = m.Num == 1
		d.refresh(m.Index, v)
		v.mu.Unlock()
	default:
		return 0, false, fmt.Errorf("request not served")
	}
	return 0, false, nil
}

// reset returns the device to its state before any message: rings stopped
// and their descriptors closed, memory unmapped.
func (d *device) reset() {
	for _, v := range d.p.rings {
		v.mu.Lock()
		v.reset()
		v.mu.Unlock()
	}
	d.mem.unmap()
	d.mem = nil
	d.features, d.protocol, d.protoSet, d.owner = 0, 0, false, false
}
