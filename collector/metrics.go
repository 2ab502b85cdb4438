package collector

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/metric"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// The reasons of paasmeter_collector_throttled_requests_total.
const (
	throttledByInflight = "inflight"
	throttledByStore    = "store"
	// throttledByBodyTimeout is a body that missed body_read_timeout (408).
	throttledByBodyTimeout = "body_timeout"
)

type metrics struct {
	requests        *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	records         *prometheus.CounterVec
	rejectedBatches *prometheus.CounterVec
	conflicts       *prometheus.CounterVec
	batchRecords    *prometheus.HistogramVec
	inflight        prometheus.Gauge
	throttled       *prometheus.CounterVec
	storeDuration   *prometheus.HistogramVec
	storeErrors     *prometheus.CounterVec
	lokiPushes      *prometheus.CounterVec
	pushRefusals    *prometheus.CounterVec
	readRefusals    *prometheus.CounterVec
	logLinesDeleted *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: metric.CounterVec("paasmeter_collector_http_requests_total",
			"HTTP requests to the tenants' listener by route, method and status code.", "route", "method", "code"),
		requestDuration: metric.HistogramVec("paasmeter_collector_http_request_duration_seconds",
			"Time to answer a request of the tenants' listener.", prometheus.ExponentialBuckets(0.001, 4, 8), "route", "method"),
		records: metric.CounterVec("paasmeter_collector_records_total",
			"Records received by kind (usage, event, logs), tenant and outcome: new (stored), duplicate (already stored, ignored), conflict (its id already stored with other content, not stored), rejected (invalid, not stored), forbidden (from an agent whose node may not run the institution: tokens[].tenants, node_certificates[].tenants; not stored), returned (valid but in a rejected batch, not stored; the agent resends it) or rate_limited (a Loki push answered 429, not stored; the client may resend).", "kind", "tenant", "outcome"),
		conflicts: metric.CounterVec("paasmeter_collector_conflicts_total",
			"Records not stored because their id was stored already with other content (the first arrival stays), by kind and tenant.", "kind", "tenant"),
		rejectedBatches: metric.CounterVec("paasmeter_collector_batches_rejected_total",
			"Batches rejected as a whole (invalid, too large, another node's records), by kind.", "kind"),
		batchRecords: metric.HistogramVec("paasmeter_collector_batch_records",
			"Records per accepted batch, by kind.", prometheus.ExponentialBuckets(1, 4, 8), "kind"),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "paasmeter_collector_inflight_batches",
			Help: "Usage batches being decoded or stored right now.",
		}),
		throttled: metric.CounterVec("paasmeter_collector_throttled_requests_total",
			"Batches answered 429 or 408 by kind and reason: inflight (max_inflight_batches were busy for queue_timeout), store (the store's write queue is full) or body_timeout (the body missed body_read_timeout; 408).", "kind", "reason"),
		storeDuration: metric.HistogramVec("paasmeter_store_operation_duration_seconds",
			"Latency of metering store operations.", prometheus.ExponentialBuckets(0.0005, 4, 9), "operation"),
		storeErrors: metric.CounterVec("paasmeter_store_operation_errors_total",
			"Failed metering store operations.", "operation"),
		lokiPushes: metric.CounterVec("paasmeter_collector_loki_pushes_total",
			"Loki push requests by tenant and outcome: accepted (204), rate_limited (429) or rejected (4xx; a 400 may have stored the push's valid lines).", "tenant", "outcome"),
		pushRefusals: metric.CounterVec("paasmeter_collector_loki_push_refusals_total",
			"Loki pushes refused (nothing stored) by tenant and the limit they hit: body_timeout, inflight, requests, lines_per_push, lines, bytes, stream_bytes, streams (collector.body_read_timeout and collector.logs.*) or held (an institution's push sent before the Retry-After of an earlier refusal passed; refused unread).", "tenant", "reason"),
		readRefusals: metric.CounterVec("paasmeter_collector_log_read_refusals_total",
			"Log reads (the logs API, Loki's query_range and label endpoints) refused with 429, by tenant and the collector.logs limit they hit: read_rate_bytes, max_concurrent_reads_per_tenant or max_concurrent_reads.", "tenant", "reason"),
		logLinesDeleted: metric.CounterVec("paasmeter_collector_log_lines_deleted_total",
			"Log lines deleted because they outlived their tenant's log retention.", "tenant"),
	}
	for _, c := range []prometheus.Collector{m.requests, m.requestDuration, m.records, m.conflicts, m.rejectedBatches, m.batchRecords,
		m.inflight, m.throttled, m.storeDuration, m.storeErrors, m.lokiPushes, m.pushRefusals, m.readRefusals, m.logLinesDeleted} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// RegisterProcessMetrics adds the Go runtime and process collectors, which a
// binary wants once and tests do not.
func RegisterProcessMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// instrumentedStore times and traces every store operation.
type instrumentedStore struct {
	metering.Store
	m      *metrics
	tracer trace.Tracer
}

func (s instrumentedStore) observe(ctx context.Context, op string, attrs ...attribute.KeyValue) (context.Context, func(error)) {
	ctx, span := s.tracer.Start(ctx, "metering."+op, trace.WithAttributes(attrs...))
	start := time.Now()
	return ctx, func(err error) {
		s.m.storeDuration.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if err != nil {
			s.m.storeErrors.WithLabelValues(op).Inc()
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

// observed is one store call f, timed and traced as op.
func observed[R any](ctx context.Context, s instrumentedStore, op string, attr attribute.KeyValue, f func(context.Context) (R, error)) (R, error) {
	ctx, done := s.observe(ctx, op, attr)
	r, err := f(ctx)
	done(err)
	return r, err
}

// observedErr is observed for a call that returns only an error.
func observedErr(ctx context.Context, s instrumentedStore, op string, attr attribute.KeyValue, f func(context.Context) error) error {
	_, err := observed(ctx, s, op, attr, func(ctx context.Context) (struct{}, error) { return struct{}{}, f(ctx) })
	return err
}

func tenantAttr(tenant string) attribute.KeyValue {
	return attribute.String("paasmeter.tenant", tenant)
}

func recordsAttr(n int) attribute.KeyValue { return attribute.Int("paasmeter.records", n) }

func (s instrumentedStore) AppendUsage(ctx context.Context, recs []usage.Record) (metering.AppendResult, error) {
	return observed(ctx, s, "append_usage", recordsAttr(len(recs)), func(ctx context.Context) (metering.AppendResult, error) {
		return s.Store.AppendUsage(ctx, recs)
	})
}

func (s instrumentedStore) AppendEvents(ctx context.Context, evs []events.Event) (metering.AppendResult, error) {
	return observed(ctx, s, "append_events", recordsAttr(len(evs)), func(ctx context.Context) (metering.AppendResult, error) {
		return s.Store.AppendEvents(ctx, evs)
	})
}

func (s instrumentedStore) ScanEvents(ctx context.Context, f metering.EventFilter, fn func(events.Event) error) error {
	return observedErr(ctx, s, "scan_events", tenantAttr(f.Tenant), func(ctx context.Context) error { return s.Store.ScanEvents(ctx, f, fn) })
}

func (s instrumentedStore) QueryUsage(ctx context.Context, q metering.UsageQuery) ([]metering.UsageRow, error) {
	return observed(ctx, s, "query_usage", tenantAttr(q.Tenant), func(ctx context.Context) ([]metering.UsageRow, error) { return s.Store.QueryUsage(ctx, q) })
}

func (s instrumentedStore) ScanUsage(ctx context.Context, f metering.UsageFilter, fn func(usage.Record) error) error {
	return observedErr(ctx, s, "scan_usage", tenantAttr(f.Tenant), func(ctx context.Context) error { return s.Store.ScanUsage(ctx, f, fn) })
}

func (s instrumentedStore) AppendLogs(ctx context.Context, lines []logs.Line) (metering.AppendResult, error) {
	return observed(ctx, s, "append_logs", recordsAttr(len(lines)), func(ctx context.Context) (metering.AppendResult, error) {
		return s.Store.AppendLogs(ctx, lines)
	})
}

// ScanLogs's duration includes the time take spends writing to the client.
func (s instrumentedStore) ScanLogs(ctx context.Context, q metering.LogQuery, take func(logs.Line) bool) (string, error) {
	return observed(ctx, s, "query_logs", tenantAttr(q.Tenant), func(ctx context.Context) (string, error) { return s.Store.ScanLogs(ctx, q, take) })
}

func (s instrumentedStore) LogLabels(ctx context.Context, tenant string, from, to time.Time) ([]string, error) {
	return observed(ctx, s, "log_labels", tenantAttr(tenant), func(ctx context.Context) ([]string, error) { return s.Store.LogLabels(ctx, tenant, from, to) })
}

func (s instrumentedStore) LogLabelValues(ctx context.Context, tenant, name string, from, to time.Time) ([]string, error) {
	return observed(ctx, s, "log_label_values", tenantAttr(tenant), func(ctx context.Context) ([]string, error) {
		return s.Store.LogLabelValues(ctx, tenant, name, from, to)
	})
}

func (s instrumentedStore) DeleteLogs(ctx context.Context, tenant string, before time.Time) (int64, error) {
	return observed(ctx, s, "delete_logs", tenantAttr(tenant), func(ctx context.Context) (int64, error) { return s.Store.DeleteLogs(ctx, tenant, before) })
}

// How paasmeter_collector_ready checks the store when it is scraped. The
// timeout stays well under Prometheus' default scrape timeout (10s), so a
// hung store makes the gauge 0 instead of failing the whole scrape; the TTL
// keeps several Prometheus servers (an HA pair) and /readyz probes from
// pinging the store more than once per readyTTL between them.
const (
	readyScrapeTimeout = time.Second
	readyTTL           = 5 * time.Second
)

// readiness is paasmeter_collector_ready: 1 while the store answers Ready and
// the collector is not draining. /readyz records each of its answers here,
// and a scrape checks the store itself when no answer is fresher than
// readyTTL, so the gauge follows the store even when nobody probes /readyz.
type readiness struct {
	check    func(context.Context) error // the store's Ready
	draining *atomic.Bool
	now      func() time.Time // monotonic wall time, not the collector's Clock (tests freeze it)

	// mu is held across a check, so that concurrent scrapes wait for one
	// ping of the store instead of each sending theirs.
	mu      sync.Mutex
	checked time.Time // zero: never
	ready   bool
}

// record keeps the outcome of a check made at t (by /readyz or a scrape).
func (r *readiness) record(t time.Time, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checked, r.ready = t, err == nil
}

// value is the gauge's value, checking the store if the last answer is stale.
func (r *readiness) value() float64 {
	if r.draining.Load() {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); r.checked.IsZero() || now.Sub(r.checked) >= readyTTL {
		ctx, cancel := context.WithTimeout(context.Background(), readyScrapeTimeout)
		err := r.check(ctx)
		cancel()
		r.checked, r.ready = now, err == nil
	}
	if r.ready {
		return 1
	}
	return 0
}

// newReadinessGauge registers paasmeter_collector_ready on reg.
func newReadinessGauge(reg prometheus.Registerer, r *readiness) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "paasmeter_collector_ready",
		Help: "1 when the collector is ready (its metering store answers and it is not shutting down), else 0: what /readyz answers, re-checked at most every 5s.",
	}, r.value))
}
