package hub

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/lease"
)

// slaMetricsInterval is how often the collector recomputes the month's SLA
// gauges: a minute, the SLA's own resolution.
const slaMetricsInterval = time.Minute

// startReconcileMetrics starts ReconcileMetrics' job. It does nothing
// without a rate card or with no billing.reconcile_interval.
func (h *Hub) startReconcileMetrics(ctx context.Context) error {
	if h.cfg.Billing.RateCard == "" || h.cfg.Billing.ReconcileInterval <= 0 {
		return nil
	}
	l, err := h.lease(ctx, string(ReconcileMetrics))
	if err != nil {
		return err
	}
	m, err := billing.NewReconcileMetrics(l.Registerer(h.registry))
	if err != nil {
		return fmt.Errorf("reconciliation: %w", err)
	}
	tenants := h.Tenants()
	card, grace := h.billingOpts.Card, h.cfg.Billing.GracePeriod
	h.every(ctx, h.cfg.Billing.ReconcileInterval, l, func(ctx context.Context) {
		now := h.opts.Clock.Now()
		cur := calendar.MonthOf(now, h.loc)
		periods := []calendar.Month{cur}
		if prev := calendar.MonthOf(cur.Start().Add(-time.Hour), h.loc); now.Before(prev.End().Add(grace)) {
			periods = append(periods, prev)
		}
		for _, p := range periods {
			days, err := billing.Reconcile(ctx, h.metering, h.state, card, tenants, p)
			if err != nil {
				if ctx.Err() == nil {
					h.opts.Logger.Error("reconciliation failed", "period", p.String(), "err", err)
				}
				continue
			}
			m.Set(p, days, tenants, now)
		}
	})
	return nil
}

// startSLAMetrics starts SLAMetrics' job.
func (h *Hub) startSLAMetrics(ctx context.Context) error {
	l, err := h.lease(ctx, string(SLAMetrics))
	if err != nil {
		return err
	}
	x, err := sla.NewExporter(l.Registerer(h.registry), h.sla)
	if err != nil {
		return fmt.Errorf("sla metrics: %w", err)
	}
	tenants := h.Tenants()
	h.every(ctx, slaMetricsInterval, l, func(ctx context.Context) {
		if err := x.Update(ctx, tenants, h.opts.Clock.Now()); err != nil && ctx.Err() == nil {
			h.opts.Logger.Error("SLA metrics not updated", "err", err)
		}
	})
	return nil
}

// every runs job now and then every interval until ctx ends or the hub
// closes, while this collector holds l: at once when it takes l over from
// another. Close waits for a run in progress, so the stores it reads close
// after it.
func (h *Hub) every(ctx context.Context, interval time.Duration, l *lease.Lease, job func(context.Context)) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if l.Held() {
				job(ctx)
				l.Served()
				// This run served a gain signalled before or while it ran
				// (the first Renew's, at start): not a second run at once.
				select {
				case <-l.Gained():
				default:
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-l.Gained():
			}
		}
	})
	h.onClose(func() error { cancel(); wg.Wait(); return nil })
}

// lease takes the state store's lease name for a job that must run on one
// collector at a time (docs/clickhouse.md, "HA: several collectors"), and
// keeps renewing it until the hub closes, then releases it. It is tried
// once before it returns, so that the holder's first run is not skipped;
// a failure to reach the store then is logged and retried by the renewer.
func (h *Hub) lease(ctx context.Context, name string) (*lease.Lease, error) {
	l, err := lease.New(lease.Options{Store: h.state, Name: name, Holder: h.holder, Clock: h.opts.Clock,
		Logger: h.opts.Logger, Registry: h.registry})
	if err != nil {
		return nil, err
	}
	if _, err := l.Renew(ctx); err != nil {
		h.opts.Logger.Warn("lease not taken yet; retrying", "lease", name, "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	h.onClose(func() error { cancel(); <-done; return nil })
	return l, nil
}

// slaReports serves the collector's SLA route: the calculator's report and the
// changes of the maintenance windows it counts.
type slaReports struct {
	calc    *sla.Calculator
	windows *maintenance.Service
}

func (r slaReports) Report(ctx context.Context, tenant string, p calendar.Month) (*sla.Report, []state.AuditEntry, error) {
	rep, err := r.calc.Report(ctx, tenant, p)
	if err != nil {
		return nil, nil, err
	}
	changes, err := r.windows.Changes(ctx, tenant, p.Start(), p.End())
	if err != nil {
		return nil, nil, fmt.Errorf("maintenance window changes of %s: %w", tenant, err)
	}
	return rep, changes, nil
}
