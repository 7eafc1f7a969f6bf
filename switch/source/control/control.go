// Package control is the control API (SPEC §8): HTTP on a unix socket, a
// source of policy that edits the configuration the switch enforces and
// writes it back to the configuration file.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sgswitch/sgswitch/switch/source"
)

// Listen opens the control socket at path (mode 0600). It refuses to
// take over a socket another running switch answers on, and replaces a stale
// one left by a crash.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another sgswitch is running there; stop it or set switch.control to another path", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: removing the stale socket: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}

// Serve answers the control API of w's switch on l until ctx is done.
func Serve(ctx context.Context, l net.Listener, w *source.Writer) error {
	srv := &http.Server{Handler: Handler(w), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// InstanceView is one instance as the API shows it.
type InstanceView struct {
	Name           string         `json:"name"`
	Host           string         `json:"host,omitempty"`
	TAP            string         `json:"tap"` // "" for the other port kinds
	Netdev         string         `json:"netdev,omitempty"`
	VhostUser      *VhostUserSpec `json:"vhost-user,omitempty"`
	MAC            string         `json:"mac"`
	IPv4           string         `json:"ipv4"`
	IPv6           string         `json:"ipv6,omitempty"`
	SecurityGroups []string       `json:"security-groups"`
	SMTPEgress     bool           `json:"smtp-egress"`
}

// Handler is the HTTP handler of the control API (SPEC §8; the resources
// are listed in handlers.go). Changes go through w, the switch's writer, and
// are written back to the configuration file (Config().File; not when it is
// "") atomically.
func Handler(w *source.Writer) http.Handler { return handler(w) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
