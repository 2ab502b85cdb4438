package supervise

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/runtime/spec"
)

// metrics are the runtime's own: what it runs, restarts and probes, and how
// close each institution is to its quota.
type metrics struct {
	replicas *prometheus.GaugeVec
	restarts *prometheus.CounterVec
	probes   *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	// unknownEnds counts exited containers without a recorded end.
	unknownEnds prometheus.Counter
	quota       *prometheus.GaugeVec
	requested   *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	app := []string{"tenant", "project", "app", "env"}
	m := &metrics{
		replicas: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_runtime_replicas",
			Help: "Replicas the spec asks for, by state: running, starting, rolling, unhealthy, backoff, failing (the engine refuses to start it), completed, given_up."},
			append(app, "state")),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paasmeter_runtime_restarts_total",
			Help: "Replicas restarted after their run ended (crash, OOM kill, failed health check)."}, app),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paasmeter_runtime_probes_total",
			Help: "Health probes of replicas, by result (ok, failed)."}, append(app, "result")),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "paasmeter_runtime_spec_reloads_total",
			Help: "Changes of the spec file, by outcome: applied, or refused (invalid or over quota; the previous spec stays)."}, []string{"outcome"}),
		unknownEnds: prometheus.NewCounter(prometheus.CounterOpts{Name: "paasmeter_runtime_unknown_run_ends_total",
			Help: "Exited replicas the engine recorded no end for: their backoff runs from when the runtime first saw them exited."}),
		quota: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_runtime_quota",
			Help: "Each institution's quota, by resource: cpu (cores), memory_bytes, containers, volume_bytes."}, []string{"tenant", "resource"}),
		requested: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_runtime_quota_requested",
			Help: "What each institution's spec asks for, in the terms of its quota."}, []string{"tenant", "resource"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.replicas, m.restarts, m.probes, m.reloads, m.unknownEnds, m.quota, m.requested} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// quotas sets the quota gauges from the spec in force.
func (m *metrics) quotas(s *spec.Spec) {
	m.quota.Reset()
	m.requested.Reset()
	for _, inst := range s.Institutions {
		set := func(g *prometheus.GaugeVec, q spec.Quota) {
			g.WithLabelValues(inst.ID, "cpu").Set(float64(q.CPU) / 1000)
			g.WithLabelValues(inst.ID, "memory_bytes").Set(float64(q.Memory))
			g.WithLabelValues(inst.ID, "containers").Set(float64(q.Containers))
			g.WithLabelValues(inst.ID, "volume_bytes").Set(float64(q.VolumeSize))
		}
		set(m.quota, inst.Quota)
		set(m.requested, inst.Requested())
	}
}
