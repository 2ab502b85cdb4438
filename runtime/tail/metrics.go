package tail

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/runtime/engine"
)

// The outcomes of a container's lines. Every line read is eventually
// rate_limited, shipped or rejected (or waits in the spool); truncated counts
// the shipped and rejected ones that were cut to the size limit.
const (
	outcomeRead        = "read"
	outcomeShipped     = "shipped"
	outcomeTruncated   = "truncated"
	outcomeRateLimited = "rate_limited"
	outcomeRejected    = "rejected"
)

// seriesGrace is how long the counters of a forgotten container stay, so that
// Prometheus scrapes their final values.
const seriesGrace = 5 * time.Minute

// metrics is the tailer's delivery accounting. Its labels are the platform's
// (the agent's container metrics'), never the containers' own labels.
type metrics struct {
	t          *Tailer
	lines      *prometheus.CounterVec
	spoolWaits prometheus.Counter
}

// counters are one container's delivery counters.
type counters struct {
	read, shipped, truncated, rateLimited, rejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, t *Tailer) (*metrics, error) {
	m := &metrics{
		t: t,
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paasmeter_agent_log_lines_total",
			Help: "Log lines of a container, by outcome: read from the engine, then shipped (acknowledged by the collector), " +
				"rate_limited (dropped at the agent) or rejected (dead-lettered); truncated counts lines cut to max_line_bytes.",
		}, []string{"tenant", "project", "app", "env", "container", "node", "outcome"}),
		spoolWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paasmeter_agent_log_spool_waits_total",
			Help: "Times log lines waited for the spool (full, failing, or their share of it used up): they wait in the engine's log files meanwhile.",
		}),
	}
	containers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "paasmeter_agent_log_containers",
		Help: "Containers whose output the agent follows (removed ones until their last lines are acknowledged).",
	}, func() float64 {
		t.mu.Lock()
		defer t.mu.Unlock()
		return float64(len(t.conts))
	})
	for _, c := range []prometheus.Collector{m.lines, m.spoolWaits, containers} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func seriesLabels(c engine.Container, node string) []string {
	return []string{c.Tenant, c.Project, c.App, string(c.Env), c.Name, node}
}

// counters returns the delivery counters of c.
func (m *metrics) counters(c engine.Container, node string) counters {
	l := seriesLabels(c, node)
	get := func(outcome string) prometheus.Counter { return m.lines.WithLabelValues(append(l, outcome)...) }
	return counters{read: get(outcomeRead), shipped: get(outcomeShipped), truncated: get(outcomeTruncated),
		rateLimited: get(outcomeRateLimited), rejected: get(outcomeRejected)}
}

// forget drops the series of a forgotten container, unless a container of the
// same name is followed now.
func (m *metrics) forget(tc *container) {
	m.t.mu.Lock()
	defer m.t.mu.Unlock()
	if m.t.byName[tc.c.Name] != nil {
		return
	}
	l := seriesLabels(tc.c, m.t.o.Node)
	for _, o := range []string{outcomeRead, outcomeShipped, outcomeTruncated, outcomeRateLimited, outcomeRejected} {
		m.lines.DeleteLabelValues(append(l, o)...)
	}
}
