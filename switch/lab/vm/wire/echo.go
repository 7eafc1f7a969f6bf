package wire

import (
	"io"
	"net"
	"time"
)

// ServeEcho echoes every TCP connection l accepts (each for at most a
// minute) until l is closed: the echo server that OpListen starts in a
// guest, and that a namespace endpoint on the host starts the same way.
func ServeEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(time.Minute))
			io.Copy(c, c)
		}()
	}
}

// ServeEchoPackets sends every datagram c receives back to its sender until
// c is closed.
func ServeEchoPackets(c net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		c.WriteTo(buf[:n], from)
	}
}
