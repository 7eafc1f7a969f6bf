package port

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BenchmarkNetdevReceive measures the two batched ways an AF_PACKET socket
// hands frames over, to choose the netdev port's: recvmmsg (what Netdev
// uses) and a TPACKET_V3 memory-mapped ring. Both with virtio-net headers, on
// one end of a veth pair; the other end sends 64-byte frames with sendmmsg in
// bursts. ns/frame is the cost of sending and receiving one frame (the
// sending half is the same code for both); "burst=1" is a frame's way
// through when traffic is sparse, which for a V3 ring includes the wait
// until the kernel retires a block that is not full (Retire_blk_tov, 1 ms
// here: the ring wakes its reader per block, not per frame).
func BenchmarkNetdevReceive(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root to create a veth pair")
	}
	a := ndName()
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: a + "b"}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if l, err := netlink.LinkByName(a); err == nil {
			netlink.LinkDel(l)
		}
	})
	var idx [2]int
	for i, n := range []string{a, a + "b"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			b.Fatal(err)
		}
		netlink.LinkSetIP6AddrGenMode(l, 1)
		if err := netlink.LinkSetUp(l); err != nil {
			b.Fatal(err)
		}
		idx[i] = l.Attrs().Index
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		l, err := netlink.LinkByName(a)
		if err == nil && l.Attrs().OperState == netlink.OperUp || time.Now().After(deadline) {
			break
		}
	}
	tx, err := openPacketSock(a, idx[0], false, false)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.f.Close()
	frame := make([]byte, VnetHdrSize+60)
	copy(frame[VnetHdrSize:], []byte{0x02, 0, 0, 0, 0, 0x99, 0x02, 0, 0, 0, 0, 0x98, 0x88, 0xb5})
	sb := newSendBatch()
	send := func(n int) {
		fs := make([][]byte, n)
		for i := range fs {
			fs[i] = frame
		}
		if sent, err := sb.write(tx, fs); err != nil || sent != n {
			b.Fatalf("send: %d of %d: %v", sent, n, err)
		}
	}
	for _, burst := range []int{1, 32, 1024} {
		b.Run("recvmmsg/burst="+itoa(burst), func(b *testing.B) {
			rx, err := openPacketSock(a+"b", idx[1], false, false)
			if err != nil {
				b.Fatal(err)
			}
			defer rx.f.Close()
			rb := newRecvBatch()
			bufs := make([][]byte, NetdevBatch)
			for i := range bufs {
				bufs[i] = make([]byte, 2048)
			}
			sizes := make([]int, NetdevBatch)
			b.ResetTimer()
			for b.Loop() {
				send(burst)
				for got := 0; got < burst; {
					n, err := rb.read(rx, bufs, sizes, VnetHdrSize, true)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/frame")
		})
		b.Run("tpacket-v3/burst="+itoa(burst), func(b *testing.B) {
			r, err := openRingV3(idx[1])
			if err != nil {
				b.Skipf("TPACKET_V3 ring with virtio-net headers: %v", err)
			}
			defer r.close()
			b.ResetTimer()
			for b.Loop() {
				send(burst)
				for got := 0; got < burst; {
					got += r.read()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/frame")
		})
	}
}

func itoa(n int) string {
	s := ""
	for {
		s = string(rune('0'+n%10)) + s
		if n /= 10; n == 0 {
			return s
		}
	}
}

// ringV3 is a TPACKET_V3 receive ring, as the netdev port would read it.
type ringV3 struct {
	fd            int
	mem           []byte
	bsize, blocks int
	cur           int
}

const (
	ringBlockSize = 1 << 17 // holds a 64 KiB super-frame with its headers
	ringBlocks    = 32
	ringFrameSize = 1 << 11
)

func openRingV3(ifindex int) (*ringV3, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	r := &ringV3{fd: fd, bsize: ringBlockSize, blocks: ringBlocks}
	fail := func(err error) (*ringV3, error) { unix.Close(fd); return nil, err }
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return fail(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return fail(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail(err)
	}
	req := unix.TpacketReq3{Block_size: ringBlockSize, Block_nr: ringBlocks, Frame_size: ringFrameSize,
		Frame_nr: ringBlocks * ringBlockSize / ringFrameSize, Retire_blk_tov: 1}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return fail(err)
	}
	r.mem, err = unix.Mmap(fd, 0, ringBlockSize*ringBlocks, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		unix.Munmap(r.mem)
		return fail(err)
	}
	return r, nil
}

func (r *ringV3) close() {
	unix.Munmap(r.mem)
	unix.Close(r.fd)
}

// read waits for the next block the kernel hands over, counts its frames
// (touching each frame's header, as a reader would) and gives it back.
func (r *ringV3) read() int {
	blk := r.mem[r.cur*r.bsize : (r.cur+1)*r.bsize]
	status := (*uint32)(unsafe.Pointer(&blk[8]))
	for atomic.LoadUint32(status)&unix.TP_STATUS_USER == 0 {
		pfd := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN | unix.POLLERR}}
		unix.Poll(pfd, 100)
	}
	num := int(*(*uint32)(unsafe.Pointer(&blk[12])))
	off := int(*(*uint32)(unsafe.Pointer(&blk[16])))
	n := 0
	for range num {
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&blk[off]))
		if h.Snaplen > 0 {
			n++
		}
		off += int(h.Next_offset)
	}
	atomic.StoreUint32(status, unix.TP_STATUS_KERNEL)
	r.cur = (r.cur + 1) % r.blocks
	return n
}
