package sla

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/prometheus/client_golang/prometheus"
)

// The states of paasmeter_sla_minutes.
const (
	StateUp           = "up"
	StateDownPlatform = "down_platform"
	StateDownTenant   = "down_tenant"
	StateMaintenance  = "maintenance"
	StateNotEligible  = "not_eligible"
)

// Exporter publishes each institution's SLA of the running month as
// Prometheus gauges, for the SLA dashboard and the alert rules (which use
// exactly these names):
//
//	paasmeter_sla_minutes{tenant,project,app,state}      month to date
//	paasmeter_sla_availability_percent{tenant}            month to date
//	paasmeter_sla_maintenance_active{tenant,project,app}  1 while a window covers the app
//	paasmeter_sla_last_report_timestamp_seconds           the last Update that computed every tenant
//
// Each Update reads the month's events of every tenant: run it every few
// minutes, not at every scrape.
type Exporter struct {
	calc         *Calculator
	minutes      *prometheus.GaugeVec
	availability *prometheus.GaugeVec
	maintenance  *prometheus.GaugeVec
	last         prometheus.Gauge

	mu       sync.Mutex // one Update at a time, so series of two never mix
	exported map[string]bool
}

// NewExporter registers the SLA gauges on reg, computed by e.
func NewExporter(reg prometheus.Registerer, e *Calculator) (*Exporter, error) {
	app := []string{"tenant", "project", "app"}
	x := &Exporter{
		calc: e,
		minutes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_sla_minutes",
			Help: "Minutes of each production app in the month to date, by state: up, down_platform, down_tenant, maintenance, not_eligible."},
			append(app, "state")),
		availability: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_sla_availability_percent",
			Help: "Each institution's availability in the month to date, in percent: (eligible − platform-caused down minutes) / eligible minutes over its production apps."},
			[]string{"tenant"}),
		maintenance: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_sla_maintenance_active",
			Help: "1 while a maintenance window covers the production app, else 0 (SLO alerts are silenced by it)."}, app),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "paasmeter_sla_last_report_timestamp_seconds",
			Help: "When the SLA gauges were last computed for every institution (Unix seconds)."}),
		exported: map[string]bool{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{x.minutes, x.availability, x.maintenance, x.last} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("sla metrics: %w", err)
			}
		}
	}
	return x, nil
}

// Update computes the reports of tenants for the month now falls in and
// replaces their series. A tenant whose report fails keeps its previous
// series and the error is returned (the last-report timestamp then stays, so
// staleness alerts fire); tenants no longer listed lose theirs.
func (x *Exporter) Update(ctx context.Context, tenants []string, now time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	p := calendar.MonthOf(now, x.calc.cfg.Location)
	listed := map[string]bool{}
	var errs []error
	for _, t := range tenants {
		listed[t] = true
		r, err := x.calc.report(ctx, t, p, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		x.forget(t)
		x.set(r, now)
		x.exported[t] = true
	}
	for t := range x.exported {
		if !listed[t] {
			x.forget(t)
			delete(x.exported, t)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	x.last.Set(float64(now.UnixNano()) / 1e9)
	return nil
}

func (x *Exporter) forget(tenant string) {
	l := prometheus.Labels{"tenant": tenant}
	x.minutes.DeletePartialMatch(l)
	x.availability.DeletePartialMatch(l)
	x.maintenance.DeletePartialMatch(l)
}

func (x *Exporter) set(r *Report, now time.Time) {
	for i := range r.Apps {
		a := &r.Apps[i]
		for state, n := range map[string]int64{StateUp: a.Up, StateDownPlatform: a.DownPlatform, StateDownTenant: a.DownTenant,
			StateMaintenance: a.Maintenance, StateNotEligible: a.NotEligible} {
			x.minutes.WithLabelValues(r.Tenant, a.Project, a.App, state).Set(float64(n))
		}
		active := 0.0
		for j := range a.Windows {
			if a.Windows[j].Covers(now) {
				active = 1
			}
		}
		x.maintenance.WithLabelValues(r.Tenant, a.Project, a.App).Set(active)
	}
	avail, _ := r.Availability.Float64() // a gauge is a float; the exact figure is in the report
	x.availability.WithLabelValues(r.Tenant).Set(avail)
}
