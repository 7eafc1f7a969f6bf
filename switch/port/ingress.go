package port

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The ingress drop: the host's own stack must never see a frame of a device
// the switch serves. Without an address on the device the host still answers
// a VM that pings (or ARPs for) one of the host's other addresses (the
// weak-host model), so the switch drops every frame at the device's tc
// ingress hook. AF_PACKET sockets still see the frames: taps run before the
// ingress hook (TestNetdevIngressDrop shows both halves).
//
// The drop is a cls_bpf filter whose classic-BPF program is one instruction,
// "return TC_ACT_SHOT", in direct-action mode, on the device's clsact qdisc.
// cls_bpf with classic BPF needs neither an eBPF loader nor the act_gact or
// cls_matchall modules (absent from some kernels, such as the one these tests
// first ran on). vishvananda/netlink only attaches eBPF programs by fd, so the
// filter message is built here with its nl package.

// ingressDropPrio is the filter's priority: the lowest number runs first, so
// no other ingress filter can let a frame through before it.
const ingressDropPrio = 1

// ingressDropName names the filter so that people (tc filter show) and the
// switch can tell it is sgswitch's.
const ingressDropName = "sgswitch-ingress-drop"

// ingressDrop is what installIngressDrop put on a device, to take off again.
type ingressDrop struct {
	ifindex     int
	madeQdisc   bool // the clsact qdisc is the switch's (none was there)
	filterAdded bool
}

func installIngressDrop(name string, ifindex int) (*ingressDrop, error) {
	d := &ingressDrop{ifindex: ifindex}
	qs, err := netlink.QdiscList(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: ifindex}})
	if err != nil {
		return nil, fmt.Errorf("netdev %s: list qdiscs: %w", name, err)
	}
	have := false
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_INGRESS { // clsact and ingress both sit there
			have = true
		}
	}
	if !have {
		q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex,
			Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
		if err := netlink.QdiscAdd(q); err != nil {
			return nil, fmt.Errorf("netdev %s: add a clsact qdisc for the ingress drop: %w: the kernel needs sch_ingress (CONFIG_NET_SCH_INGRESS)", name, err)
		}
		d.madeQdisc = true
	}
	if err := tcFilter(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, ifindex, true); err != nil {
		d.remove()
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("netdev %s: add the ingress drop filter: %w: another tc ingress filter holds priority %d on the device: remove it (tc filter del dev %s ingress prio %d)", name, err, ingressDropPrio, name, ingressDropPrio)
		}
		return nil, fmt.Errorf("netdev %s: add the ingress drop filter: %w: the kernel needs cls_bpf (CONFIG_NET_CLS_BPF)", name, err)
	}
	d.filterAdded = true
	return d, nil
}

// remove takes the drop off the device; a device that is gone took it along.
func (d *ingressDrop) remove() error {
	var first error
	gone := func(err error) bool { return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENOENT) }
	if d.filterAdded {
		if err := tcFilter(unix.RTM_DELTFILTER, unix.NLM_F_ACK, d.ifindex, false); err != nil && !gone(err) {
			first = fmt.Errorf("remove the ingress drop filter: %w", err)
		}
		d.filterAdded = false
	}
	if d.madeQdisc {
		q := &netlink.GenericQdisc{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: d.ifindex,
			Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT}, QdiscType: "clsact"}
		if err := netlink.QdiscDel(q); err != nil && !gone(err) && !errors.Is(err, unix.EINVAL) && first == nil {
			first = fmt.Errorf("remove the clsact qdisc: %w", err)
		}
		d.madeQdisc = false
	}
	return first
}

// tcFilter adds (with the program) or deletes the ingress drop filter.
func tcFilter(msgType, flags int, ifindex int, withProgram bool) error {
	req := nl.NewNetlinkRequest(msgType, flags)
	req.AddData(&nl.TcMsg{
		Family:  nl.FAMILY_ALL,
		Ifindex: int32(ifindex),
		Handle:  1,
		Parent:  netlink.HANDLE_MIN_INGRESS,
		Info:    netlink.MakeHandle(ingressDropPrio, htons(unix.ETH_P_ALL)),
	})
	req.AddData(nl.NewRtAttr(nl.TCA_KIND, nl.ZeroTerminated("bpf")))
	if withProgram {
		opts := nl.NewRtAttr(nl.TCA_OPTIONS, nil)
		// struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}: BPF_RET|BPF_K, k = TC_ACT_SHOT.
		prog := make([]byte, 8)
		binary.NativeEndian.PutUint16(prog[0:2], unix.BPF_RET|unix.BPF_K)
		binary.NativeEndian.PutUint32(prog[4:8], 2) // TC_ACT_SHOT
		opts.AddRtAttr(nl.TCA_BPF_OPS_LEN, nl.Uint16Attr(1))
		opts.AddRtAttr(nl.TCA_BPF_OPS, prog)
		opts.AddRtAttr(nl.TCA_BPF_NAME, nl.ZeroTerminated(ingressDropName))
		opts.AddRtAttr(nl.TCA_BPF_FLAGS, nl.Uint32Attr(nl.TCA_BPF_FLAG_ACT_DIRECT))
		req.AddData(opts)
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
