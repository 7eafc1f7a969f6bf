package vswitch

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sgswitch/sgswitch/conntrack"
)

// The switch's state file carries its tracked connections across a restart
// (an upgrade, a crash-free stop and start): the TAP devices persist in the
// kernel meanwhile, so a VM's TCP connections see a pause, not a reset.
//
// Layout: "SGSW" + version (uint32) + the port table (count, then for each
// port id its instance name or "" for the uplink / a removed port, each a
// uint16 length and bytes) + what conntrack.Table.Save writes. Port ids are
// stored as names because the next process numbers its ports afresh.
const (
	stateMagic   = "SGSW"
	stateVersion = 1
)

// StatePath is where `sgswitch run` keeps its state file: beside the
// control socket, in the switch's runtime directory.
func StatePath(controlSocket string) string {
	return filepath.Join(filepath.Dir(controlSocket), "conntrack.state")
}

// SaveState writes the connection table to path atomically (a temporary file
// renamed into place), for RestoreState in the next process.
func (s *Switch) SaveState(path string) (int, error) {
	st := s.state.Load()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".conntrack.state.*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriterSize(tmp, 1<<20)
	w.WriteString(stateMagic)
	binary.Write(w, binary.LittleEndian, uint32(stateVersion))
	binary.Write(w, binary.LittleEndian, uint32(len(st.ports)))
	for id := range st.ports {
		name := ""
		if int32(id) == st.uplink {
			name = "uplink"
		} else if st.ports[id] != nil && st.inst[id].cfg >= 0 {
			name = st.inst[id].name
		}
		binary.Write(w, binary.LittleEndian, uint16(len(name)))
		w.WriteString(name)
	}
	n, err := s.ct.Save(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return 0, fmt.Errorf("saving the connection table to %s: %w", path, err)
	}
	return n, nil
}

// RestoreState loads a state file written by SaveState into the connection
// table, maps its ports by name onto this switch's ports (connections of
// instances that no longer exist are dropped) and removes the file: a state
// file is used once. Every restored connection is re-checked against the
// current policy at its next packet. A missing file is not an error (0, nil).
func (s *Switch) RestoreState(path string) (int, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer func() {
		f.Close()
		os.Remove(path)
	}()
	r := bufio.NewReaderSize(f, 1<<20)
	var hdr [4]byte
	var version, nports uint32
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:]) != stateMagic {
		return 0, fmt.Errorf("%s: not an sgswitch state file", path)
	}
	if err := binary.Read(r, binary.LittleEndian, &version); err != nil || version != stateVersion {
		return 0, fmt.Errorf("%s: state file version %d, this sgswitch reads version %d", path, version, stateVersion)
	}
	if err := binary.Read(r, binary.LittleEndian, &nports); err != nil || nports > 1<<24 {
		return 0, fmt.Errorf("%s: damaged port table", path)
	}
	remap := make([]int32, nports)
	for i := range remap {
		var l uint16
		if err := binary.Read(r, binary.LittleEndian, &l); err != nil {
			return 0, fmt.Errorf("%s: damaged port table", path)
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(r, name); err != nil {
			return 0, fmt.Errorf("%s: damaged port table", path)
		}
		remap[i] = -1
		if len(name) > 0 {
			remap[i] = int32(s.PortNamed(string(name)))
		}
	}
	n, err := s.ct.Restore(r, func(m conntrack.Meta) (conntrack.Meta, bool) {
		if m.A < 0 || m.B < 0 || int(m.A) >= len(remap) || int(m.B) >= len(remap) || remap[m.A] < 0 || remap[m.B] < 0 {
			return m, false
		}
		m.A, m.B = remap[m.A], remap[m.B]
		m.PolicyGen = 0 // re-check against the policy now in force
		return m, true
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}
