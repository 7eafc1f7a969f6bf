package vswitch

import (
	"encoding/binary"
	"net"
	"net/netip"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/filter/config"
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

// answerDHCP is the DHCPv4 server: DISCOVER → OFFER, REQUEST → ACK (or NAK
// when the client asks for an address that is not its own), INFORM → ACK,
// RELEASE and DECLINE consumed. It serves only the port's own MAC: a request
// carrying any other client hardware address is not answered (starvation).
func (s *Switch) answerDHCP(st *state, in int32, sc *Scratch) ([]byte, filter.Reason, error) {
	f := &sc.frame
	ip := &st.inst[in]
	// gopacket's decoder trusts the hardware-length byte (it slices
	// data[28:28+hlen] with 8-bit arithmetic): check the fixed header first.
	// A BOOTP message is at least 236 bytes plus the 4-byte magic cookie,
	// and only Ethernet clients (hlen 6) have a MAC this port could own.
	body := f.Buf[f.L4+8:]
	if len(body) < 240 || body[1] != 1 || body[2] != 6 { // htype Ethernet, hlen 6
		return nil, filter.ReasonUnanswered, nil
	}
	var req layers.DHCPv4
	if err := req.DecodeFromBytes(body, gopacket.NilDecodeFeedback); err != nil {
		return nil, filter.ReasonMalformed, nil
	}
	if req.Operation != layers.DHCPOpRequest || len(req.ClientHWAddr) != 6 || [6]byte(req.ClientHWAddr) != ip.id.MAC {
		return nil, filter.ReasonUnanswered, nil
	}
	var msgType layers.DHCPMsgType
	var requested netip.Addr
	for _, o := range req.Options {
		switch o.Type {
		case layers.DHCPOptMessageType:
			if len(o.Data) == 1 {
				msgType = layers.DHCPMsgType(o.Data[0])
			}
		case layers.DHCPOptRequestIP:
			if len(o.Data) == 4 {
				requested = netip.AddrFrom4([4]byte(o.Data))
			}
		}
	}
	own := ip.id.IPv4
	ciaddr, _ := netip.AddrFromSlice(req.ClientIP.To4())
	var reply layers.DHCPMsgType
	switch msgType {
	case layers.DHCPMsgTypeDiscover:
		reply = layers.DHCPMsgTypeOffer
	case layers.DHCPMsgTypeRequest:
		asked := requested
		if !asked.IsValid() {
			asked = ciaddr // renewing or rebinding (RFC 2131 §4.3.2)
		}
		reply = layers.DHCPMsgTypeAck
		if asked != own {
			reply = layers.DHCPMsgTypeNak
		}
	case layers.DHCPMsgTypeInform:
		reply = layers.DHCPMsgTypeAck
	case layers.DHCPMsgTypeRelease, layers.DHCPMsgTypeDecline:
		return nil, filter.ReasonDHCPReply, nil
	default:
		return nil, filter.ReasonUnanswered, nil
	}

	server := st.dhcp.serverID
	if !server.IsValid() || !ip.prefix.Contains(server) {
		server = ip.prefix.Masked().Addr().Next()
	}
	opts := layers.DHCPOptions{
		layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(reply)}),
		layers.NewDHCPOption(layers.DHCPOptServerID, server.AsSlice()),
	}
	resp := &layers.DHCPv4{Operation: layers.DHCPOpReply, HardwareType: layers.LinkTypeEthernet, HardwareLen: 6,
		Xid: req.Xid, Flags: req.Flags, ClientHWAddr: req.ClientHWAddr, ClientIP: req.ClientIP,
		YourClientIP: net.IPv4zero, NextServerIP: net.IPv4zero, RelayAgentIP: req.RelayAgentIP}
	if reply != layers.DHCPMsgTypeNak {
		if msgType != layers.DHCPMsgTypeInform {
			resp.YourClientIP = own.AsSlice()
			lease := make([]byte, 4)
			binary.BigEndian.PutUint32(lease, uint32(st.dhcp.lease/time.Second))
			opts = append(opts, layers.NewDHCPOption(layers.DHCPOptLeaseTime, lease))
		}
		opts = append(opts, layers.NewDHCPOption(layers.DHCPOptSubnetMask, net.CIDRMask(ip.prefix.Bits(), 32)))
		if r := st.dhcp.router; r.IsValid() && ip.prefix.Contains(r) {
			opts = append(opts, layers.NewDHCPOption(layers.DHCPOptRouter, r.AsSlice()))
		}
		if len(st.dhcp.dns) > 0 {
			var dns []byte
			for _, a := range st.dhcp.dns {
				if a.Is4() {
					dns = append(dns, a.AsSlice()...)
				}
			}
			if len(dns) > 0 {
				opts = append(opts, layers.NewDHCPOption(layers.DHCPOptDNS, dns))
			}
		}
	}
	resp.Options = append(opts, layers.NewDHCPOption(layers.DHCPOptEnd, nil))

	// A client that already has its address gets a unicast answer; one that
	// has none cannot receive unicast IP yet, so the IP destination is the
	// limited broadcast while the frame still goes to its MAC alone.
	dst := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	if ciaddr.IsValid() && !ciaddr.IsUnspecified() && reply != layers.DHCPMsgTypeNak {
		dst = ciaddr
	}
	ip4 := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: server.AsSlice(), DstIP: dst.AsSlice()}
	udp := &layers.UDP{SrcPort: 67, DstPort: 68}
	if err := udp.SetNetworkLayerForChecksum(ip4); err != nil {
		return nil, 0, err
	}
	b, err := sc.reply.build(&layers.Ethernet{SrcMAC: SwitchMAC[:], DstMAC: req.ClientHWAddr, EthernetType: layers.EthernetTypeIPv4},
		ip4, udp, resp)
	return b, filter.ReasonDHCPReply, err
}
