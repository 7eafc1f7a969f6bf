// Package wire is the protocol between the test harness on the host
// (package vm) and the agent inside a QEMU guest: one JSON object per line
// in each direction over a virtio-serial port. Every request carries an id
// that its reply repeats, so requests may run concurrently and a reply that
// arrives after its caller gave up is recognised and discarded.
package wire

// PortName is the virtio-serial port's name, as the guest finds it under
// /sys/class/virtio-ports/*/name.
const PortName = "org.sgswitch.agent"

// Operations a Request may ask for.
const (
	// OpHello answers at once: the harness polls it to know the guest is up.
	OpHello = "hello"
	// OpExec runs busybox with Args (e.g. ["ip", "link", "set", ...]).
	OpExec = "exec"
	// OpDHCP runs busybox udhcpc on Iface and answers the IPv4 prefix it got.
	OpDHCP = "dhcp"
	// OpListen starts an echo server (Proto tcp or udp) on Port, once.
	OpListen = "listen"
	// OpDial connects to Addr (host:port) over Proto, sends Payload and
	// expects it echoed back within TimeoutMS.
	OpDial = "dial"
	// OpPing sends ICMP echo requests to Addr (busybox ping) within TimeoutMS.
	OpPing = "ping"
	// OpSendRaw writes Frame, a whole Ethernet frame, on Iface through an
	// AF_PACKET socket: the forged frames of a hostile guest.
	OpSendRaw = "send-raw"
	// OpPowerOff syncs and powers the guest off (QEMU then exits).
	OpPowerOff = "poweroff"
)

// Request is one command from the host.
type Request struct {
	ID        uint64   `json:"id"`
	Op        string   `json:"op"`
	Args      []string `json:"args,omitempty"`
	Iface     string   `json:"iface,omitempty"`
	Proto     string   `json:"proto,omitempty"`
	Addr      string   `json:"addr,omitempty"`
	Port      int      `json:"port,omitempty"`
	Payload   []byte   `json:"payload,omitempty"`
	Frame     []byte   `json:"frame,omitempty"`
	Count     int      `json:"count,omitempty"`
	TimeoutMS int      `json:"timeout_ms,omitempty"`
}

// Reply answers the Request with the same ID. Error is empty on success.
type Reply struct {
	ID     uint64 `json:"id"`
	Error  string `json:"error,omitempty"`
	Output string `json:"output,omitempty"`
}
