package vswitch

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
	"github.com/sgswitch/sgswitch/filter/encode"
)

// dhcpSettings is what the built-in DHCPv4 server hands out besides the
// instance's own address.
type dhcpSettings struct {
	router   netip.Addr // the uplink gateway, when there is one
	dns      []netip.Addr
	lease    time.Duration
	serverID netip.Addr // when invalid: the first host of each instance's prefix
}

func newDHCPSettings(cfg *config.Config) dhcpSettings {
	d := dhcpSettings{dns: cfg.Switch.DHCP.DNS, lease: cfg.Switch.DHCP.LeaseTime}
	if d.lease <= 0 {
		d.lease = config.DefaultLeaseTime
	}
	if cfg.Uplink != nil && cfg.Uplink.Gateway.IsValid() {
		d.router = cfg.Uplink.Gateway.Addr()
		d.serverID = d.router
	}
	return d
}

// dhcpRequest is what the DHCP server reads of a client's message.
type dhcpRequest struct {
	xid       uint32
	flags     uint16
	ciaddr    netip.Addr
	giaddr    netip.Addr
	chaddr    [6]byte
	msgType   uint8
	requested netip.Addr // option 50, when present
}

// parseDHCPRequest reads a BOOTREQUEST from an Ethernet client (RFC 2131
// §2): the fixed header, the magic cookie and the options up to the end
// option. Everything is bounds-checked: the message comes from a guest.
// ok is false for a message that is not such a request; malformed for one
// whose cookie or options are broken.
func parseDHCPRequest(body []byte) (req dhcpRequest, ok, malformed bool) {
	// A BOOTP message is at least 236 bytes plus the 4-byte magic cookie,
	// and only Ethernet clients (htype 1, hlen 6) have a MAC this port
	// could own.
	if len(body) < 240 || body[1] != 1 || body[2] != 6 {
		return req, false, false
	}
	if binary.BigEndian.Uint32(body[236:]) != encode.DHCPMagic {
		return req, false, true
	}
	if body[0] != 1 { // BOOTREQUEST
		return req, false, false
	}
	req.xid = binary.BigEndian.Uint32(body[4:])
	req.flags = binary.BigEndian.Uint16(body[10:])
	req.ciaddr = netip.AddrFrom4([4]byte(body[12:16]))
	req.giaddr = netip.AddrFrom4([4]byte(body[24:28]))
	req.chaddr = [6]byte(body[28:34])
	for opts := body[240:]; len(opts) > 0; {
		code := opts[0]
		if code == 0 { // pad
			opts = opts[1:]
			continue
		}
		if code == encode.DHCPOptEnd {
			break
		}
		if len(opts) < 2 || int(opts[1]) > len(opts)-2 {
			return req, false, true // an option runs past the message
		}
		data := opts[2 : 2+int(opts[1])]
		switch {
		case code == encode.DHCPOptMessageType && len(data) == 1:
			req.msgType = data[0]
		case code == encode.DHCPOptRequestIP && len(data) == 4:
			req.requested = netip.AddrFrom4([4]byte(data))
		}
		opts = opts[2+len(data):]
	}
	return req, true, false
}

// answerDHCP is the DHCPv4 server: DISCOVER → OFFER, REQUEST → ACK (or NAK
// when the client asks for an address that is not its own), INFORM → ACK,
// RELEASE and DECLINE consumed. It serves only the port's own MAC: a request
// carrying any other client hardware address is not answered (starvation).
func (s *Switch) answerDHCP(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error) {
	f := &sc.frame
	ip := &st.inst[in]
	req, ok, malformed := parseDHCPRequest(f.Buf[f.L4+8:])
	switch {
	case malformed:
		return nil, filter.ReasonMalformed, nil
	case !ok || req.chaddr != ip.id.MAC:
		return nil, filter.ReasonUnanswered, nil
	}
	own := ip.id.IPv4
	var reply uint8
	switch req.msgType {
	case encode.DHCPDiscover:
		reply = encode.DHCPOffer
	case encode.DHCPRequest:
		asked := req.requested
		if !asked.IsValid() {
			asked = req.ciaddr // renewing or rebinding (RFC 2131 §4.3.2)
		}
		reply = encode.DHCPAck
		if asked != own {
			reply = encode.DHCPNak
		}
	case encode.DHCPInform:
		reply = encode.DHCPAck
	case encode.DHCPRelease, encode.DHCPDecline:
		return nil, filter.ReasonDHCPReply, nil
	default:
		return nil, filter.ReasonUnanswered, nil
	}

	server := st.dhcp.serverID
	if !server.IsValid() || !ip.prefix.Contains(server) {
		server = ip.prefix.Masked().Addr().Next()
	}
	m := encode.DHCP{Op: 2, Xid: req.xid, Flags: req.flags, CIAddr: req.ciaddr, GIAddr: req.giaddr, CHAddr: req.chaddr}
	if reply != encode.DHCPNak && req.msgType != encode.DHCPInform {
		m.YIAddr = own
	}
	var msg [576]byte // the smallest datagram every host must accept (RFC 2131 §2)
	b := m.Append(msg[:0])
	b = encode.DHCPOption(b, encode.DHCPOptMessageType, reply)
	sid := server.As4()
	b = encode.DHCPOption(b, encode.DHCPOptServerID, sid[:]...)
	if reply != encode.DHCPNak {
		if req.msgType != encode.DHCPInform {
			var lease [4]byte
			binary.BigEndian.PutUint32(lease[:], uint32(st.dhcp.lease/time.Second))
			b = encode.DHCPOption(b, encode.DHCPOptLeaseTime, lease[:]...)
		}
		var mask [4]byte
		binary.BigEndian.PutUint32(mask[:], ^uint32(0)<<(32-ip.prefix.Bits()))
		b = encode.DHCPOption(b, encode.DHCPOptSubnetMask, mask[:]...)
		if r := st.dhcp.router; r.IsValid() && ip.prefix.Contains(r) {
			a := r.As4()
			b = encode.DHCPOption(b, encode.DHCPOptRouter, a[:]...)
		}
		var dns [4 * 63]byte // an option holds at most 255 bytes: 63 addresses
		n := 0
		for _, a := range st.dhcp.dns {
			if a.Is4() && n < len(dns) {
				v := a.As4()
				n += copy(dns[n:], v[:])
			}
		}
		if n > 0 {
			b = encode.DHCPOption(b, encode.DHCPOptDNS, dns[:n]...)
		}
	}
	b = encode.DHCPEnd(b, 0)

	// A client that already has its address gets a unicast answer; one that
	// has none cannot receive unicast IP yet, so the IP destination is the
	// limited broadcast while the frame still goes to its MAC alone.
	dst := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	if req.ciaddr.IsValid() && !req.ciaddr.IsUnspecified() && reply != encode.DHCPNak {
		dst = req.ciaddr
	}
	udp := encode.UDPHeader(67, 68)
	out := encode.Packet(sc.reply.frame(), req.chaddr, SwitchMAC, server, dst, encode.ProtoUDP, 64, udp[:], b)
	return sc.reply.done(out), filter.ReasonDHCPReply, nil
}
