package vswitch

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sgswitch/sgswitch/conntrack"
	"github.com/sgswitch/sgswitch/filter"
	"github.com/sgswitch/sgswitch/switch/port"
)

// Metrics exports the switch's counters to Prometheus. It is a
// prometheus.Collector that reads the switch's own tallies when it is
// scraped — the per-port atomics, the connection and fragment tables'
// statistics, the configuration version — so the per-frame path pays
// nothing for it: there is no second set of counters to keep.
//
// Per-port series carry the labels port (the device) and instance_name (the
// instance's name; empty for the uplink). The label is not called
// "instance" because Prometheus attaches its own "instance" label (the
// scrape target) to every series and would rename ours to
// "exported_instance".
type Metrics struct {
	s *Switch
}

// NewMetrics is the collector of s's metrics.
func NewMetrics(s *Switch) *Metrics { return &Metrics{s: s} }

const metricsNS = "sgswitch"

var portLabels = []string{"port", "instance_name"}

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(metricsNS+"_"+name, help, labels, nil)
}

// The metrics. Counters end in _total; everything else is a gauge.
var (
	descRxFrames  = newDesc("port_rx_frames_total", "Frames received from the port (read from its device).", portLabels...)
	descRxBytes   = newDesc("port_rx_bytes_total", "Bytes received from the port, virtio-net header included.", portLabels...)
	descTxFrames  = newDesc("port_tx_frames_total", "Frames transmitted to the port (written to its device).", portLabels...)
	descTxBytes   = newDesc("port_tx_bytes_total", "Bytes transmitted to the port.", portLabels...)
	descTxErrors  = newDesc("port_tx_errors_total", "Frames the port's device refused (device gone, queue full, offload mismatch).", portLabels...)
	descRxCalls   = newDesc("port_rx_calls_total", "Reads from the port's device: port_rx_frames_total / this is the frames per read (a netdev port reads batches).", portLabels...)
	descTxCalls   = newDesc("port_tx_calls_total", "Writes to the port's device: port_tx_frames_total / this is the frames per write.", portLabels...)
	descPortUp    = newDesc("port_up", "1 while the port's device is served; 0 while a netdev port waits for its device or refuses it (port_state says which).", portLabels...)
	descPortState = newDesc("port_state", "1 for the port's state: up, waiting (its device does not exist) or refused (the host uses the device).",
		append(portLabels[:len(portLabels):len(portLabels)], "kind", "state")...)
	descPortLosses = newDesc("port_device_losses_total", "Times a netdev port's device went away (deleted, replaced, taken by the host) while served.", portLabels...)
	descFrames     = newDesc("port_frames_total",
		"Frames received from the port by the verdict and reason of their fate (SPEC §5); every received frame counts once, so the sum over verdict and reason is port_rx_frames_total.",
		append(portLabels[:len(portLabels):len(portLabels)], "verdict", "reason")...)

	descCTEntries  = newDesc("conntrack_entries", "Connections held in the tracking table (expired ones not yet freed included).")
	descCTMax      = newDesc("conntrack_max", "Most connections the tracking table holds (switch.conntrack.max).")
	descCTProto    = newDesc("conntrack_connections", "Tracked connections by protocol (tcp, udp, icmp, other).", "protocol")
	descCTState    = newDesc("conntrack_connections_by_state", "Tracked connections by state (TCP states; UDP, ICMP and other protocols are UNREPLIED or REPLIED).", "state")
	descCTInserted = newDesc("conntrack_inserted_total", "Connections created.")
	descCTEvicted  = newDesc("conntrack_evicted_total", "Unreplied connections freed early to make room.")
	descCTRefused  = newDesc("conntrack_refused_total", "Connections refused because the table was full (frames dropped as conntrack-full).")
	descCTExpired  = newDesc("conntrack_expired_total", "Connections freed after their timeout.")
	descCTInvalid  = newDesc("conntrack_invalid_total", "Packets the connection table judged invalid.")

	descFragDatagrams = newDesc("fragment_datagrams", "Fragmented datagrams being followed.")
	descFragOrphans   = newDesc("fragment_orphans_total", "Later fragments without a first fragment.")
	descFragOverlaps  = newDesc("fragment_overlaps_total", "Fragments dropped for overlapping or for belonging to a datagram that had an overlap.")
	descFragScattered = newDesc("fragment_scattered_total", "Datagrams abandoned for arriving in too many separate pieces.")
	descFragEvicted   = newDesc("fragment_evicted_total", "Datagrams forgotten before their timeout to make room.")

	descVersion = newDesc("config_version", "Version of the configuration in force; grows by one with every change applied (API, reload).")
	descCompile = newDesc("config_compile_seconds", "How long building the configuration in force took (policy compilation included).")

	descUplinkMACs    = newDesc("uplink_learned_macs", "MAC addresses learned on the uplink (live or not yet purged).")
	descUplinkMACsMax = newDesc("uplink_macs_max", "Bound of the uplink's MAC table (switch.uplink-macs).")
	descUplinkRefused = newDesc("uplink_macs_refused_total", "New uplink MAC addresses not learned because the table was full.")
)

var allDescs = []*prometheus.Desc{
	descRxFrames, descRxBytes, descTxFrames, descTxBytes, descTxErrors, descFrames,
	descRxCalls, descTxCalls, descPortUp, descPortState, descPortLosses,
	descCTEntries, descCTMax, descCTProto, descCTState,
	descCTInserted, descCTEvicted, descCTRefused, descCTExpired, descCTInvalid,
	descFragDatagrams, descFragOrphans, descFragOverlaps, descFragScattered, descFragEvicted,
	descVersion, descCompile,
	descUplinkMACs, descUplinkMACsMax, descUplinkRefused,
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one consistent read of the state
// in force, then of each port's atomics. Every reason is exported for every
// port, zeros included, so that rate() and increase() see a drop reason's
// first occurrence.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	s := m.s
	st := s.state.Load()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for id, pr := range st.ports {
		if pr == nil {
			continue
		}
		name := ""
		if int32(id) != st.uplink {
			name = st.inst[id].name
		}
		c := &pr.counters
		var rx uint64
		for r := range c.ByReason {
			n := c.ByReason[r].Load()
			rx += n
			if r == int(filter.ReasonNone) && n == 0 {
				continue // never counted by a working pipeline; shown only if it ever is
			}
			counter(descFrames, n, pr.device, name, filter.Reason(r).Verdict().String(), filter.Reason(r).String())
		}
		// Frames received are the sum of the reasons (one counter per frame on
		// the hot path), read together with them so the two agree.
		counter(descRxFrames, rx, pr.device, name)
		counter(descRxBytes, c.RxBytes.Load(), pr.device, name)
		counter(descTxFrames, c.TxFrames.Load(), pr.device, name)
		counter(descTxBytes, c.TxBytes.Load(), pr.device, name)
		counter(descTxErrors, c.TxErrors.Load(), pr.device, name)
		counter(descRxCalls, c.RxCalls.Load(), pr.device, name)
		counter(descTxCalls, c.TxCalls.Load(), pr.device, name)
		status := port.Status{State: port.StateUp}
		if pr.port != nil {
			status = port.StatusOf(pr.port)
		}
		up := 0.0
		if status.State == port.StateUp {
			up = 1
		}
		gauge(descPortUp, up, pr.device, name)
		for _, s := range []port.State{port.StateUp, port.StateWaiting, port.StateRefused} {
			v := 0.0
			if status.State == s {
				v = 1
			}
			gauge(descPortState, v, pr.device, name, pr.kind.String(), s.String())
		}
		counter(descPortLosses, status.Losses, pr.device, name)
	}

	ct := s.ct.Stats()
	gauge(descCTEntries, float64(ct.Entries))
	ctMax := st.cfg.Switch.Conntrack.Max
	if ctMax <= 0 {
		ctMax = conntrack.DefaultMax
	}
	gauge(descCTMax, float64(ctMax))
	gauge(descCTProto, float64(ct.TCP), "tcp")
	gauge(descCTProto, float64(ct.UDP), "udp")
	gauge(descCTProto, float64(ct.ICMP), "icmp")
	gauge(descCTProto, float64(ct.Other), "other")
	for state := conntrack.State(1); state < conntrack.NumStates; state++ {
		gauge(descCTState, float64(ct.States[state]), state.String())
	}
	counter(descCTInserted, ct.Inserted)
	counter(descCTEvicted, ct.Evicted)
	counter(descCTRefused, ct.Refused)
	counter(descCTExpired, ct.Expired)
	counter(descCTInvalid, ct.Invalid)

	fr := s.frags.Stats()
	gauge(descFragDatagrams, float64(fr.Datagrams))
	counter(descFragOrphans, fr.Orphans)
	counter(descFragOverlaps, fr.Overlaps)
	counter(descFragScattered, fr.Scattered)
	counter(descFragEvicted, fr.Evicted)

	gauge(descVersion, float64(st.gen))
	gauge(descCompile, st.compile.Seconds())

	if st.uplink >= 0 {
		gauge(descUplinkMACs, float64(s.fdb.size()))
		gauge(descUplinkMACsMax, float64(s.fdb.max))
		counter(descUplinkRefused, s.fdb.refused.Load())
	}
}

// ListenMetrics opens the metrics endpoint's listener (switch.metrics,
// host:port). It is separate from ServeMetrics so that a busy address is an
// error at start-up, before the switch serves.
func ListenMetrics(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

// MetricsHandler is the /metrics handler of a registry holding the switch's
// collector and the Go runtime and process collectors, and extra (a source
// of policy's own, e.g. the cluster sync's).
func (s *Switch) MetricsHandler(extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(extra...)
	reg.MustRegister(NewMetrics(s),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// ServeMetrics serves GET /metrics on ln until ctx ends, then shuts the
// server down (waiting briefly for scrapes in progress).
func (s *Switch) ServeMetrics(ctx context.Context, ln net.Listener, extra ...prometheus.Collector) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.MetricsHandler(extra...))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc: // the listener failed
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // scrapes still running after the grace period
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
