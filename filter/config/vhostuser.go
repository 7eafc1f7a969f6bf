package config

import (
	"path/filepath"

	"gopkg.in/yaml.v3"
)

// VhostUser is an instance's vhost-user port (`vhost-user: {socket, mode}`):
// the VM's virtio-net queues served over shared memory (SPEC §1a).
type VhostUser struct {
	Socket string // `socket`: absolute path of the unix socket
	Mode   string // `mode`: VhostServer (the switch listens) or VhostClient (QEMU listens)
}

// vhost-user socket roles, as the file spells them.
const (
	VhostServer = "server"
	VhostClient = "client"
)

var vhostUserFields = []string{"socket", "mode"}

// decodeVhostUser decodes an instance's `vhost-user` mapping.
func (p *parser) decodeVhostUser(n *yaml.Node, path string) *VhostUser {
	m, ok := p.mapping(n, path, vhostUserFields)
	if !ok {
		return nil
	}
	vu := &VhostUser{}
	if v := m.val("socket"); v == nil {
		p.errorf(m.line, m.field("socket"), "missing; give the path of the vhost-user unix socket, e.g. /run/sgswitch/web1.sock")
	} else if s, ok := p.str(v, m.field("socket")); ok {
		switch {
		case !filepath.IsAbs(s):
			p.errorf(v.Line, m.field("socket"), "%q is not an absolute path; give one, e.g. /run/sgswitch/web1.sock", s)
		case len(s) > maxSocketPath:
			p.errorf(v.Line, m.field("socket"), "%d bytes long; a unix socket path is at most %d bytes", len(s), maxSocketPath)
		default:
			vu.Socket = filepath.Clean(s)
		}
	}
	if v := m.val("mode"); v == nil {
		p.errorf(m.line, m.field("mode"), "missing; give server (the switch listens, QEMU connects with reconnect=) or client (QEMU listens with server=on, the switch connects)")
	} else if s, ok := p.str(v, m.field("mode")); ok {
		if s != VhostServer && s != VhostClient {
			p.errorf(v.Line, m.field("mode"), "%q; give server (the switch listens, QEMU connects with reconnect=) or client (QEMU listens with server=on, the switch connects)", s)
		} else {
			vu.Mode = s
		}
	}
	return vu
}

// checkVhostSockets refuses two instances on one socket.
func (p *parser) checkVhostSockets(c *Config) map[[2]string]holder {
	seen := map[[2]string]holder{}
	for i := range c.Instances {
		if in := &c.Instances[i]; in.VhostUser != nil && in.VhostUser.Socket != "" {
			claimOnce(p, seen, [2]string{in.Host, in.VhostUser.Socket}, hold("instances", "vhost-user.socket", i), quoted(in.VhostUser.Socket))
		}
	}
	return seen
}

func marshalVhostUser(vu *VhostUser) *yaml.Node {
	m := mapNode(true)
	put(m, "socket", strNode(vu.Socket))
	put(m, "mode", strNode(vu.Mode))
	return m
}
