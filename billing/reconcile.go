package billing

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/state"
)

// Counts is what reconciliation reads: the accepted ledger, the stored
// records' counts, and the records themselves to rate.
type Counts interface {
	UsageSource
	metering.UsageReader
	metering.AcceptedReader
}

// Issued is what reconciliation reads of the state store: the issued
// invoices, which say what they billed per day.
type Issued interface {
	ListDocuments(ctx context.Context, f state.DocumentFilter) ([]state.Document, error)
}

// DayCount is one institution's day in a reconciliation, by the calendar day
// of the records' window start: the records the collector accepted as new,
// the records stored, the records the rating engine read, the records the
// issued invoices billed (summed over all of them), and the stored records
// no issued invoice could bill yet (received after the last cutoff that
// covers the day's month: the next invoice bills them).
type DayCount struct {
	Tenant   string
	Day      string
	Accepted int64
	Stored   int64
	Rated    int64
	Billed   int64
	Pending  int64
}

// OK reports whether the counts agree: every stored record is billed
// exactly once, or pending.
func (d DayCount) OK() bool {
	return d.Accepted == d.Stored && d.Stored == d.Rated && d.Billed+d.Pending == d.Stored
}

// Reconcile counts, per institution and day of period, the records accepted,
// stored, rated and billed (DESIGN.md §5); a day where they differ is a
// record lost or counted twice somewhere between the collector and the
// invoices, or billed twice, or never.
//
// The counts are read one after the other while records may still arrive
// and invoices be issued, so a tenant with a difference is counted a second
// time, and only a difference both passes see is reported.
func Reconcile(ctx context.Context, src Counts, issued Issued, card *ratecard.Card, tenants []string, p calendar.Month) ([]DayCount, error) {
	var out []DayCount
	for _, t := range tenants {
		days, err := reconcileTenant(ctx, src, issued, card, t, p)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(days, func(d DayCount) bool { return !d.OK() }) {
			if days, err = reconcileTenant(ctx, src, issued, card, t, p); err != nil {
				return nil, err
			}
		}
		out = append(out, days...)
	}
	return out, nil
}

// billed sums what t's issued invoices billed of p per day, and returns the
// latest cutoff of those that bill p's records: the invoices of p and of
// later months, which bill p's late records as adjustments.
func billed(ctx context.Context, issued Issued, t string, p calendar.Month) (map[string]int64, time.Time, error) {
	docs, err := issued.ListDocuments(ctx, state.DocumentFilter{Tenant: t, Kind: state.KindInvoice})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("reconcile %s: issued invoices: %w", t, err)
	}
	out := map[string]int64{}
	var cutoff time.Time
	for _, d := range docs {
		inv, err := decode(d.Body)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("reconcile %s: %s: %w", t, d.Number, err)
		}
		if inv.Period >= p.String() && inv.Inputs.Cutoff.After(cutoff) {
			cutoff = inv.Inputs.Cutoff
		}
		for _, m := range inv.Inputs.Months {
			if m.Period != p.String() {
				continue
			}
			for day, b := range m.Days {
				out[day] += b.Records
			}
		}
	}
	return out, cutoff, nil
}

func reconcileTenant(ctx context.Context, src Counts, issued Issued, card *ratecard.Card, t string, p calendar.Month) ([]DayCount, error) {
	start, end := p.Start(), p.End()
	days := map[string]*DayCount{}
	day := func(d string) *DayCount {
		if days[d] == nil {
			days[d] = &DayCount{Tenant: t, Day: d}
		}
		return days[d]
	}
	acc, err := src.AcceptedUsage(ctx, t, start, end)
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: accepted: %w", t, err)
	}
	for _, a := range acc {
		day(a.Hour.In(p.Loc).Format(time.DateOnly)).Accepted += a.Records
	}
	rows, err := src.QueryUsage(ctx, metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: t, From: start, To: end},
		GroupBy: []metering.Dimension{metering.ByDay}, Location: p.Loc})
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: stored: %w", t, err)
	}
	for _, r := range rows {
		day(r.Day).Stored += r.Records
	}
	// Every record received so far: the far future is a cutoff nothing passes.
	r, err := countMonth(ctx, src, card, t, p, Selection{UpTo: end.AddDate(100, 0, 0)})
	if err != nil {
		return nil, fmt.Errorf("reconcile %s: rated: %w", t, err)
	}
	for d, a := range r.days {
		day(d).Rated += a.records
		day(d).Pending += a.records
	}
	b, cutoff, err := billed(ctx, issued, t, p)
	if err != nil {
		return nil, err
	}
	for d, n := range b {
		day(d).Billed += n
	}
	if !cutoff.IsZero() {
		// What the invoices could bill: the records received by the cutoff.
		due, err := countMonth(ctx, src, card, t, p, Selection{UpTo: cutoff})
		if err != nil {
			return nil, fmt.Errorf("reconcile %s: billable: %w", t, err)
		}
		for d, a := range due.days {
			day(d).Pending -= a.records
		}
	}
	keys := make([]string, 0, len(days))
	for d := range days {
		keys = append(keys, d)
	}
	slices.Sort(keys)
	out := make([]DayCount, 0, len(keys))
	for _, d := range keys {
		out = append(out, *days[d])
	}
	return out, nil
}

// ReconcileMetrics exports the last reconciliation of a month.
type ReconcileMetrics struct {
	records    *prometheus.GaugeVec
	difference *prometheus.GaugeVec
	last       prometheus.Gauge
}

// NewReconcileMetrics registers the reconciliation gauges on reg.
func NewReconcileMetrics(reg prometheus.Registerer) (*ReconcileMetrics, error) {
	m := &ReconcileMetrics{
		records: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_reconcile_records",
			Help: "Records of the month so far per institution, as accepted by the collector, stored, rated by billing, billed by issued invoices, and pending (stored, not billable by an issued invoice yet) (last reconciliation)."},
			[]string{"tenant", "period", "stage"}),
		difference: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "paasmeter_reconcile_difference_days",
			Help: "Days of the month on which an institution's accepted, stored and rated counts differ, or its stored records are not billed exactly once or pending (last reconciliation); anything but 0 needs a look."},
			[]string{"tenant", "period"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "paasmeter_reconcile_last_success_timestamp_seconds",
			Help: "When a reconciliation last completed."}),
	}
	for _, c := range []prometheus.Collector{m.records, m.difference, m.last} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Set exports a reconciliation of period done at now.
func (m *ReconcileMetrics) Set(p calendar.Month, days []DayCount, tenants []string, now time.Time) {
	type sums struct{ accepted, stored, rated, billed, pending, bad int64 }
	per := map[string]*sums{}
	for _, t := range tenants {
		per[t] = &sums{}
	}
	for _, d := range days {
		s := per[d.Tenant]
		if s == nil {
			continue
		}
		s.accepted += d.Accepted
		s.stored += d.Stored
		s.rated += d.Rated
		s.billed += d.Billed
		s.pending += d.Pending
		if !d.OK() {
			s.bad++
		}
	}
	for t, s := range per {
		m.records.WithLabelValues(t, p.String(), "accepted").Set(float64(s.accepted))
		m.records.WithLabelValues(t, p.String(), "stored").Set(float64(s.stored))
		m.records.WithLabelValues(t, p.String(), "rated").Set(float64(s.rated))
		m.records.WithLabelValues(t, p.String(), "billed").Set(float64(s.billed))
		m.records.WithLabelValues(t, p.String(), "pending").Set(float64(s.pending))
		m.difference.WithLabelValues(t, p.String()).Set(float64(s.bad))
	}
	m.last.Set(float64(now.Unix()))
}
