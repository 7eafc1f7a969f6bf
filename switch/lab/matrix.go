package lab

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/sgswitch/sgswitch/filter/config"
	vswitch "github.com/sgswitch/sgswitch/switch"
)

// MatrixRow is one line of a connectivity matrix file (testdata/lab/*.matrix):
// a packet, the port it arrives on, and whether the policy should let it through.
type MatrixRow struct {
	Open    bool
	From    string // an instance name, or "uplink" for the internet namespace
	Packet  string // as `sgswitch trace` reads it
	Comment string
	Line    int
}

// LoadMatrix reads a matrix file: "open|closed FROM PACKET # comment" per line.
func LoadMatrix(path string) ([]MatrixRow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []MatrixRow
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line, comment, _ := strings.Cut(sc.Text(), "#")
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) < 3 || (fields[0] != "open" && fields[0] != "closed") {
			return nil, fmt.Errorf("%s:%d: want \"open|closed FROM PACKET # comment\"", path, n)
		}
		rows = append(rows, MatrixRow{Open: fields[0] == "open", From: fields[1],
			Packet: strings.Join(fields[2:], " "), Comment: strings.TrimSpace(comment), Line: n})
	}
	return rows, sc.Err()
}

// Check sends the row's packet as real traffic through the lab of cfg:
// a TCP or UDP exchange with a listener in the destination's namespace, or
// an ICMP echo. It returns nil when the traffic got through and an error
// wrapping ErrBlocked when it did not.
func (r MatrixRow) Check(cfg *config.Config, timeout time.Duration) error {
	return r.CheckVia(cfg, DefaultInternetNS, timeout)
}

// CheckVia is Check with the namespace behind the uplink called internetNS
// (the multi-host lab's fabric).
func (r MatrixRow) CheckVia(cfg *config.Config, internetNS string, timeout time.Duration) error {
	p, err := vswitch.ParsePacket(r.Packet)
	if err != nil {
		return err
	}
	from, src := r.From, netip.Addr{}
	if from == "uplink" {
		from, src = internetNS, p.Src
	}
	to := internetNS
	for _, in := range cfg.Instances {
		if in.IPv4.Addr() == p.Dst || (in.IPv6.IsValid() && in.IPv6.Addr() == p.Dst) {
			to = in.Name
		}
	}
	switch p.Proto {
	case 6, 17:
		proto := map[uint8]string{6: "tcp", 17: "udp"}[p.Proto]
		return Probe{From: from, Src: src, To: to, Proto: proto, Dst: netip.AddrPortFrom(p.Dst, p.DstPort)}.Run(timeout)
	case 1, 58:
		if err := Ping(from, p.Dst, timeout); err != nil {
			return fmt.Errorf("%w: %v", ErrBlocked, err)
		}
		return nil
	}
	return fmt.Errorf("%s: only tcp, udp and icmp echo can be sent as real traffic", r.Packet)
}
