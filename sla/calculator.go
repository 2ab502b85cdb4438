package sla

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/usage"
)

// SourceName is the Source of the figures the calculator gives billing (frozen into issued invoices: it keeps its old name).
const SourceName = "sla engine"

// Calculator computes institutions' SLA reports from the metering store's events
// and the maintenance windows. It keeps no state between calls and is safe
// for concurrent use.
type Calculator struct {
	events  metering.EventReader
	windows WindowSource
	cfg     Config
	clock   clock.Clock
}

// NewCalculator returns a calculator over the events of ev and the windows of ws
// (nil: no window was ever declared), taking the time from clk.
func NewCalculator(ev metering.EventReader, ws WindowSource, cfg Config, clk clock.Clock) (*Calculator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("sla config: %w", err)
	}
	if ev == nil || clk == nil {
		return nil, fmt.Errorf("sla calculator: an event reader and a clock are required")
	}
	return &Calculator{events: ev, windows: ws, cfg: cfg, clock: clk}, nil
}

// Config returns the calculator's configuration.
func (e *Calculator) Config() Config { return e.cfg }

// Report returns the tenant's SLA report for p. A month still running is
// reported up to the clock's now (less Config.Settle); the rest of it is Future.
func (e *Calculator) Report(ctx context.Context, tenant string, p calendar.Month) (*Report, error) {
	return e.report(ctx, tenant, p, e.clock.Now())
}

// SLA is what billing takes an invoice's SLA credit from (its SLASource,
// which the hub wires this calculator into): the institution's availability over its
// production apps in p, with the eligible and platform-caused down minutes.
// A tenant that had no production app in p has no figures.
func (e *Calculator) SLA(ctx context.Context, tenant string, p calendar.Month) (credit.Figures, bool, error) {
	r, err := e.Report(ctx, tenant, p)
	if err != nil {
		return credit.Figures{}, false, err
	}
	if len(r.Apps) == 0 {
		return credit.Figures{}, false, nil
	}
	return credit.Figures{Availability: r.Availability, EligibleMinutes: r.Eligible, DownMinutes: r.DownPlatform, Source: SourceName}, true, nil
}

type appKey struct{ project, app string }

// report streams the tenant's events of the month (and the lookback before
// it) once, through one recorder per production app, so memory follows the
// number of state changes rather than the number of probes.
func (e *Calculator) report(ctx context.Context, tenant string, p calendar.Month, now time.Time) (*Report, error) {
	if p.Loc == nil {
		p.Loc = e.cfg.Location
	}
	from, to := p.Start(), p.End()
	var wins []Window
	if e.windows != nil {
		var err error
		if wins, err = e.windows.Windows(ctx, tenant, from, to); err != nil {
			return nil, fmt.Errorf("sla report of %s for %s: maintenance windows: %w", tenant, p, err)
		}
	}
	recs := map[appKey]*recorder{}
	// Only production apps count; the store leaves the others out, so that
	// their events (probe results at every sample) never cross.
	f := metering.EventFilter{Tenant: tenant, From: from.Add(-e.cfg.Lookback), To: to, Environments: []usage.Environment{usage.EnvProd}}
	add := func(ev events.Event, last time.Time) error {
		if ev.Environment != usage.EnvProd {
			return nil // a store that ignored the filter
		}
		k := appKey{ev.Project, ev.App}
		r := recs[k]
		if r == nil {
			r = newRecorder(e.cfg.ProbeStaleness)
			recs[k] = r
		}
		r.addRun(&ev, last)
		return nil
	}
	var err error
	if runs, ok := e.events.(metering.ProbeRunReader); ok {
		// The store joins a replica's equal probe results by the rule the
		// recorder extends a run by: staleness apart at most.
		err = runs.ScanProbeRuns(ctx, f, e.cfg.ProbeStaleness, add)
	} else {
		err = e.events.ScanEvents(ctx, f, func(ev events.Event) error { return add(ev, ev.Time) })
	}
	if err != nil {
		return nil, fmt.Errorf("sla report of %s for %s: read events: %w", tenant, p, err)
	}

	until := now.Add(-e.cfg.Settle)
	rep := &Report{Tenant: tenant, Period: p.String(), Apps: []AppMinutes{}, Until: to}
	switch {
	case !until.After(from):
		rep.Until = from
	case until.Before(to):
		rep.Until = until.Truncate(time.Minute) // the month starts on a whole minute
	}
	keys := make([]appKey, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b appKey) int { return cmp.Or(cmp.Compare(a.project, b.project), cmp.Compare(a.app, b.app)) })
	fromNs := from.UnixNano()
	for _, k := range keys {
		r := recs[k]
		var own []Window
		for _, w := range wins {
			if w.Applies(tenant, k.project, k.app) {
				own = append(own, w)
			}
		}
		am := r.classify(own, from, to, until, e.cfg)
		// An app counts in the month when it was meant to run in it, or
		// something happened to it in it; one stopped or removed before the
		// month and only seen in the lookback does not. In the month's first
		// minute nothing is classified yet: what the app was doing as the
		// month began decides.
		if am.Eligible+am.Maintenance == 0 && r.latest < fromNs && !r.meantToRunAt(fromNs) {
			continue
		}
		rep.Apps = append(rep.Apps, am)
		rep.Eligible += am.Eligible
		rep.DownPlatform += am.DownPlatform
		rep.DownTenant += am.DownTenant
		rep.Maintenance += am.Maintenance
	}
	rep.Availability = Availability(rep.Eligible, rep.DownPlatform)
	rep.CreditPercent = credit.Percent(e.cfg.CreditTiers, rep.Availability)
	type occurrence struct {
		id    string
		start int64
	}
	seen := map[occurrence]bool{}
	for _, w := range wins {
		o := occurrence{w.ID, w.Start.UnixNano()}
		if (w.Tenant == "" || w.Tenant == tenant) && w.Overlaps(from, to) && !seen[o] {
			seen[o] = true
			rep.Windows = append(rep.Windows, w)
		}
	}
	slices.SortFunc(rep.Windows, func(a, b Window) int {
		return cmp.Or(a.Start.Compare(b.Start), a.End.Compare(b.End), cmp.Compare(a.ID, b.ID))
	})
	return rep, nil
}
