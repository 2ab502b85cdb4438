package billing

import (
	"cmp"
	"context"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// aggregate rates the selection of tenant's records whose window starts in
// [start, end) from the sums the store computes (metering.UsageAggregator)
// rather than from the records, to the same result: every quantity the rater
// adds is a sum, so it adds the sums instead. The groups are those the
// rater's keys need: per project, environment, meter and rate-card version;
// per run for the meters a minimum run duration may apply to; per window
// for the meters whose rates may take the larger of used and reserved.
//
// The store keeps a window's records together by container, run, start,
// end, project and environment, where the row scan pairs them by container,
// run, start and end alone: the two part only on records of one window that
// claim different projects or environments, which no agent writes.
//
// countOnly asks for the counts and digests alone: the quantities are left
// out, not rated.
func (rt *rater) aggregate(ctx context.Context, src metering.UsageAggregator, tenant string, start, end time.Time, countOnly bool) error {
	q := metering.AggregateQuery{Tenant: tenant, From: start, To: end, ReceivedAfter: rt.sel.After, ReceivedUpTo: rt.sel.UpTo, CountOnly: countOnly}
	for _, v := range rt.card.Versions {
		q.Versions = append(q.Versions, v.Effective)
	}
	for _, m := range ratecard.Meters() {
		minRun, maxBasis := false, false
		for _, v := range rt.card.Versions {
			for _, c := range []ratecard.Class{ratecard.Prod, ratecard.NonProd} {
				if r, ok := v.Rate(m, c); ok {
					minRun = minRun || r.MinRunDuration > 0
					maxBasis = maxBasis || r.Basis == ratecard.Max
				}
			}
		}
		used, reserved := m.Sources()
		if minRun {
			q.RunMeters = append(q.RunMeters, used)
			if reserved != "" {
				q.RunMeters = append(q.RunMeters, reserved)
			}
		}
		if maxBasis {
			q.Pairs = append(q.Pairs, metering.MeterPair{Used: used, Reserved: reserved, ReservedScale: m.Scale(reserved), Run: minRun})
		}
	}
	agg, err := src.AggregateUsage(ctx, q)
	if err != nil {
		return err
	}
	if countOnly && len(rt.card.Versions) > 0 && slices.ContainsFunc(agg.Buckets, func(b metering.Bucket) bool {
		return b.Start.Before(rt.card.Versions[0].Effective)
	}) {
		// The row scan refuses a priced meter's record older than the card,
		// and counting must refuse what rating does; the buckets cannot say
		// which meters they hold (a version starts on a local midnight, which
		// a bucket never spans), so the groups are asked, in this rare case only.
		q.CountOnly, q.Pairs = false, nil
		groups, err := src.AggregateUsage(ctx, q)
		if err != nil {
			return err
		}
		for _, g := range groups.Groups {
			if err := olderThanCard(&g); err != nil {
				return err
			}
		}
	}
	o := rt.out
	for _, b := range agg.Buckets {
		o.records += b.Records
		o.sum.Add(b.Digest)
		d := o.day(b.Start.In(rt.loc).Format(time.DateOnly))
		d.records += b.Records
		d.sum.Add(b.Digest)
	}
	// The units are added in the order of their first window, as the row
	// scan meets them: a run's first unit names what its top-up is billed as.
	var units []aggUnit
	for _, g := range agg.Groups {
		if err := olderThanCard(&g); err != nil {
			return err
		}
		m, ok := ratecard.MeterOf(g.Meter)
		if !ok {
			continue
		}
		class := ratecard.ClassOf(g.Environment)
		rate, ok := rt.card.Versions[g.Version].Rate(m, class)
		if !ok {
			continue
		}
		used, reserved := m.Sources()
		switch rate.Basis {
		case ratecard.Max:
			continue // rated per window, below
		case ratecard.Reserved:
			ok = g.Meter == reserved
		default:
			ok = g.Meter == used
		}
		if !ok {
			continue
		}
		units = append(units, aggUnit{first: g.First, rate: rate, k: qkey{meter: m, class: class, version: g.Version},
			a: annexKey{project: g.Project, env: g.Environment, meter: m}, container: g.ContainerID, run: g.RunID,
			dur: g.Duration, v: scaledTotal(g.Quantity, m.Scale(g.Meter))})
	}
	for _, w := range agg.Windows {
		m, ok := ratecard.MeterOf(w.Used)
		if !ok || w.Version < 0 {
			continue // the groups above hold the same records
		}
		class := ratecard.ClassOf(w.Environment)
		rate, ok := rt.card.Versions[w.Version].Rate(m, class)
		if !ok || rate.Basis != ratecard.Max {
			continue
		}
		used, reserved := m.Sources()
		a := annexKey{project: w.Project, env: w.Environment, meter: m}
		won := scaledTotal(w.ReservedWon, m.Scale(reserved))
		v := scaledTotal(w.UsedWon, m.Scale(used))
		if won.b != nil || won.n != 0 {
			addSum(o.upR, a, won)
			addSum(o.upU, a, scaledTotal(w.UsedLost, m.Scale(used)))
			v = amount{b: new(big.Int).Add(v.big(), won.big())}
		}
		units = append(units, aggUnit{first: w.First, rate: rate, k: qkey{meter: m, class: class, version: w.Version}, a: a,
			container: w.ContainerID, run: w.RunID, dur: w.Duration, v: v})
	}
	slices.SortFunc(units, func(x, y aggUnit) int {
		return cmp.Or(x.first.Compare(y.first), cmp.Compare(x.container, y.container), cmp.Compare(x.run, y.run),
			cmp.Compare(x.k.meter, y.k.meter), cmp.Compare(x.k.class, y.k.class), cmp.Compare(x.k.version, y.k.version),
			cmp.Compare(x.a.project, y.a.project), cmp.Compare(x.a.env, y.a.env))
	})
	for _, u := range units {
		rt.unit(u.rate, u.k, u.a, u.container, u.run, u.dur, u.v)
	}
	return nil
}

// aggUnit is a group's share of the rated quantities: what rater.unit adds.
type aggUnit struct {
	first          time.Time
	rate           *ratecard.Rate
	k              qkey
	a              annexKey
	container, run string
	dur            time.Duration
	v              amount
}

// scaledTotal returns t × scale exactly.
func scaledTotal(t usage.Total, scale int64) amount {
	b := t.Big()
	b.Mul(b, big.NewInt(scale))
	if b.IsInt64() {
		return amount{n: b.Int64()}
	}
	return amount{b: b}
}

// mayHaveLate reports whether any of the n months before p may have records
// received since the invoices that billed them (cv), up to cutoff. A store
// that sums in the server answers the usual case, none, with one count over
// them all from the earliest of their selections, instead of a query a
// month; any other store is asked month by month, as it reads the records
// anyway.
func mayHaveLate(ctx context.Context, src UsageSource, tenant string, p calendar.Month, n int, cv *coverage, cutoff time.Time) (bool, error) {
	agg, ok := src.(metering.UsageAggregator)
	if !ok || n < 1 {
		return n >= 1, nil
	}
	var after time.Time
	for back := n; back >= 1; back-- {
		if a := cv.upTo[monthBefore(p, back).String()]; back == n || a.Before(after) {
			after = a
		}
	}
	res, err := agg.AggregateUsage(ctx, metering.AggregateQuery{Tenant: tenant, From: monthBefore(p, n).Start(), To: p.Start(),
		ReceivedAfter: after, ReceivedUpTo: cutoff, CountOnly: true})
	if err != nil {
		return false, fmt.Errorf("late records of %s before %s: %w", tenant, p, err)
	}
	return slices.ContainsFunc(res.Buckets, func(b metering.Bucket) bool { return b.Records > 0 }), nil
}

// monthBefore returns the month back months before p.
func monthBefore(p calendar.Month, back int) calendar.Month {
	return calendar.MonthOf(time.Date(p.Year, p.Month-time.Month(back), 1, 12, 0, 0, 0, p.Loc), p.Loc)
}

// olderThanCard refuses g, as the row scan refuses its records, when its
// meter is one the card prices and no version of the card is effective at
// its windows' start.
func olderThanCard(g *metering.RecordGroup) error {
	if _, ok := ratecard.MeterOf(g.Meter); ok && g.Version < 0 {
		return fmt.Errorf("records of %s from window start %s: %w", g.Meter, g.First.Format(time.RFC3339), ErrNoRateCardVersion)
	}
	return nil
}
