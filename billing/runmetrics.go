package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/state"
)

// An invoice run (`paasmeter invoice issue`) leaves one audit entry with its
// outcome, whether it issued, skipped or failed: the command runs from a
// scheduler on some host, and the audit log in the shared state store is
// where the collector can see that a run failed (RunMetrics).
const (
	// RunAuditAction is the Action of an invoice run's audit entry.
	RunAuditAction = "invoice.run"
	// RunAuditSubjectPrefix starts the Subject of every invoice run's audit
	// entry, followed by the period: "invoice-run/2026-11".
	RunAuditSubjectPrefix = "invoice-run/"
)

// RunOutcome is the Detail of an invoice run's audit entry.
type RunOutcome struct {
	Period string `json:"period"`
	// Issued and Skipped count the institutions invoiced and skipped
	// (already issued, or nothing to invoice).
	Issued  int `json:"issued"`
	Skipped int `json:"skipped"`
	// Failed counts the institutions that failed (the run goes on with the
	// others) and those an interrupted run left without an outcome (all of
	// them when the run failed before the first).
	Failed int `json:"failed"`
	// FailedTenants names the institutions that failed.
	FailedTenants []string `json:"failed_tenants,omitempty"`
	// Error is the run's error; empty when it succeeded.
	Error string `json:"error"`
}

// RunAuditEntry is the audit entry of an Issue run of period p for tenants
// (all when empty) that returned res and runErr, ending at now.
func (s *Service) RunAuditEntry(p calendar.Month, tenants []string, actor string, res []IssueResult, runErr error, now time.Time) state.AuditEntry {
	o := RunOutcome{Period: p.String()}
	for _, r := range res {
		switch {
		case r.Err != nil:
			o.Failed++
			o.FailedTenants = append(o.FailedTenants, r.Tenant)
		case r.Invoice != nil:
			o.Issued++
		default:
			o.Skipped++
		}
	}
	if runErr != nil {
		o.Error = runErr.Error()
		total := len(tenants)
		if cs, err := s.customers(tenants); err == nil {
			total = len(cs)
		}
		o.Failed = max(o.Failed+total-len(res), 1)
	}
	detail, _ := json.Marshal(o) // a struct of strings and ints always encodes
	return state.AuditEntry{Time: now.Truncate(time.Microsecond), Actor: actor, Action: RunAuditAction,
		Subject: RunAuditSubjectPrefix + p.String(), Detail: detail}
}

// RecordRun appends the outcome of an Issue run to the state store's audit
// log (see RunAuditEntry). It is not given the run's context: a run
// interrupted by a signal must still record its failure.
func (s *Service) RecordRun(ctx context.Context, p calendar.Month, tenants []string, actor string, res []IssueResult, runErr error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := s.state.AppendAudit(ctx, s.RunAuditEntry(p, tenants, actor, res, runErr, s.clock.Now())); err != nil {
		return fmt.Errorf("record the invoice run of %s in the audit log: %w", p, err)
	}
	return nil
}

// RunAuditLog is the part of the state store RunMetrics reads.
type RunAuditLog interface {
	ListAudit(ctx context.Context, f state.AuditFilter) ([]state.AuditEntry, error)
}

// How RunMetrics reads the audit log. Runs are monthly, and the alert on
// them waits minutes, so a minute-old answer is fresh enough; it spares the
// state store a query per scrape of every Prometheus server.
const (
	runMetricsMaxAge  = time.Minute
	runMetricsTimeout = 5 * time.Second
)

// RunMetrics exports when invoice runs last succeeded and last failed, from
// their audit entries in the state store, read at scrape time (at most once
// a minute). A run's time is its entry's. Both are 0 before the first such run.
type RunMetrics struct {
	audit   RunAuditLog
	log     *slog.Logger
	maxAge  time.Duration
	success *prometheus.Desc
	failure *prometheus.Desc
	failed  *prometheus.Desc

	// mu is held across a read, so that concurrent scrapes share one.
	mu      sync.Mutex
	readAt  time.Time // zero: never read
	known   bool      // lastOK and lastFail hold a successful read
	lastOK  time.Time
	lastBad time.Time
	// lastFailed is how many institutions the latest run failed.
	lastFailed int
}

// NewRunMetrics returns the collector of the invoice runs' metrics over the
// audit log a (the state store).
func NewRunMetrics(a RunAuditLog, log *slog.Logger) *RunMetrics {
	if log == nil {
		log = slog.Default()
	}
	return &RunMetrics{
		audit: a, log: log, maxAge: runMetricsMaxAge,
		success: prometheus.NewDesc("paasmeter_invoice_run_last_success_timestamp_seconds",
			"When the last invoice run (paasmeter invoice issue) that succeeded ended, in seconds since the epoch (0: none yet), from the state store's audit log.", nil, nil),
		failure: prometheus.NewDesc("paasmeter_invoice_run_last_failure_timestamp_seconds",
			"When the last invoice run (paasmeter invoice issue) that failed ended, in seconds since the epoch (0: none yet), from the state store's audit log.", nil, nil),
		failed: prometheus.NewDesc("paasmeter_invoice_run_failed_institutions",
			"Institutions the latest invoice run failed to invoice (the others were issued), from the state store's audit log.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (m *RunMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.success
	ch <- m.failure
	ch <- m.failed
}

// Collect implements prometheus.Collector. When the audit log cannot be
// read, the last values read are exported (none before a first read):
// failing the scrape would hide every other metric of the collector.
func (m *RunMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if now := time.Now(); m.readAt.IsZero() || now.Sub(m.readAt) >= m.maxAge {
		m.readAt = now
		ok, bad, failed, err := m.read()
		if err != nil {
			m.log.Warn("cannot read the invoice runs from the audit log", "err", err)
		} else {
			m.known, m.lastOK, m.lastBad, m.lastFailed = true, ok, bad, failed
		}
	}
	if !m.known {
		return
	}
	ch <- prometheus.MustNewConstMetric(m.success, prometheus.GaugeValue, seconds(m.lastOK))
	ch <- prometheus.MustNewConstMetric(m.failure, prometheus.GaugeValue, seconds(m.lastBad))
	ch <- prometheus.MustNewConstMetric(m.failed, prometheus.GaugeValue, float64(m.lastFailed))
}

// read returns the times of the last successful and last failed runs, and
// how many institutions the latest run failed.
func (m *RunMetrics) read() (ok, bad time.Time, failed int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), runMetricsTimeout)
	defer cancel()
	es, err := m.audit.ListAudit(ctx, state.AuditFilter{SubjectPrefix: RunAuditSubjectPrefix})
	if err != nil {
		return ok, bad, 0, err
	}
	var latest time.Time
	var errs []error
	for _, e := range es {
		if e.Action != RunAuditAction {
			continue
		}
		var o RunOutcome
		if err := json.Unmarshal(e.Detail, &o); err != nil {
			errs = append(errs, fmt.Errorf("audit entry %d: %w", e.Seq, err))
			continue
		}
		if o.Error == "" {
			ok = later(ok, e.Time)
		} else {
			bad = later(bad, e.Time)
		}
		if !e.Time.Before(latest) {
			latest, failed = e.Time, o.Failed
		}
	}
	if len(errs) > 0 {
		// One unreadable entry must not hide the others' outcome.
		m.log.Warn("unreadable invoice run audit entries skipped", "err", errors.Join(errs...))
	}
	return ok, bad, failed, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMicro()) / 1e6
}
