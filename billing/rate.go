package billing

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"time"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// Selection says which stored records of a month an invoice bills: those
// received in (After, UpTo]. After is zero for a month's first invoice, and
// the previous cutoff when late records are billed as an adjustment.
type Selection struct {
	After time.Time `json:"after,omitzero"`
	UpTo  time.Time `json:"up_to"`
}

func (s Selection) includes(received time.Time) bool {
	return !received.After(s.UpTo) && (s.After.IsZero() || received.After(s.After))
}

// qkey groups rated quantities the way pricing needs them: per meter and
// class, and per rate-card version because each is priced by its own.
type qkey struct {
	meter   ratecard.Meter
	class   ratecard.Class
	version int
}

// AnnexKey is one row of an invoice's annex.
type annexKey struct {
	project string
	env     usage.Environment
	meter   ratecard.Meter
}

// rated is what a selection of one tenant's month comes to in base units,
// before pricing.
type rated struct {
	// q and annex are the results; qs and as gather them, exactly, while
	// the records stream by.
	q     map[qkey]*big.Rat
	annex map[annexKey]*big.Rat
	qs    map[qkey]*sum
	as    map[annexKey]*sum
	// topUp and uplift are the parts of annex that nothing measured: the
	// minimum run duration's top-up, and the reserved quantity billed
	// above the used one under the max basis (upR − upU).
	topUp, uplift map[annexKey]*big.Rat
	upR, upU      map[annexKey]*sum
	// records counts the selected records.
	records int64
	// days counts and digests the selected records per calendar day of
	// their window start: what an invoice says it billed, and what
	// reconciliation counts.
	days map[string]*dayAcc
	// version is how the records are digested (see DigestVersion): into
	// seq, or summed into sum.
	version int
	seq     hash.Hash
	sum     metering.Digest
}

// The versions of a month's digests (MonthInput.DigestVersion).
const (
	// digestSequential is the sha-256 of every selected record's id (its hex
	// digits), quantity (uvarint) and received_at (varint Unix ns) in the
	// store's order: what invoices issued before digest_version were
	// digested with. A store can only compute it by handing out every record.
	digestSequential = 0
	// digestSum is the lane-wise sum modulo 2^64 of every selected record's
	// metering.RecordDigest (a sha-256 of its id, quantity and received_at):
	// independent of order, so a store sums it in the server (see
	// metering.UsageAggregator). Any record added, removed or changed
	// changes it, as it does the sequential one; what it gives up is only
	// against someone who rewrites stored records on purpose and searches
	// for a set of changes whose digests cancel out (docs/invoices.md).
	digestSum = 2
	// DigestVersion is the version new invoices are digested with.
	DigestVersion = digestSum
)

// dayAcc is one day's share of a selection.
type dayAcc struct {
	records int64
	seq     hash.Hash
	sum     metering.Digest
}

// dayDigestLen is how many bytes of a day's digest an invoice keeps: enough
// to tell a changed day, at half the size.
const dayDigestLen = 16

// Days returns what r selected per day.
func (r *rated) Days() map[string]DayBill {
	out := make(map[string]DayBill, len(r.days))
	for d, a := range r.days {
		out[d] = DayBill{Records: a.records, Digest: fmt.Sprintf("%x", r.digestOf(a.seq, a.sum)[:dayDigestLen])}
	}
	return out
}

// Digest is the digest of the selected records (see digestSequential and
// digestSum), hex-encoded: what `verify` compares to catch a record changed
// after issue.
func (r *rated) Digest() string { return fmt.Sprintf("%x", r.digestOf(r.seq, r.sum)) }

func (r *rated) digestOf(seq hash.Hash, sum metering.Digest) []byte {
	if r.version == digestSequential {
		return seq.Sum(nil)
	}
	return sum.Bytes()
}

// day returns the accumulator of day, adding it.
func (r *rated) day(day string) *dayAcc {
	a := r.days[day]
	if a == nil {
		a = &dayAcc{}
		if r.version == digestSequential {
			a.seq = sha256.New()
		}
		r.days[day] = a
	}
	return a
}

func (r *rated) add(k qkey, a annexKey, v amount) {
	addSum(r.qs, k, v)
	addSum(r.as, a, v)
}

// finish turns the sums into the results.
func (r *rated) finish() {
	for k, s := range r.qs {
		r.q[k] = s.rat()
	}
	for k, s := range r.as {
		r.annex[k] = s.rat()
	}
	for k, s := range r.upR {
		u := s.rat()
		if used := r.upU[k]; used != nil {
			u.Sub(u, used.rat())
		}
		r.uplift[k] = u
	}
}

func addRat[K comparable](m map[K]*big.Rat, k K, v *big.Rat) {
	if cur, ok := m[k]; ok {
		cur.Add(cur, v)
		return
	}
	m[k] = new(big.Rat).Set(v)
}

// runKey identifies a run for the minimum run duration.
type runKey struct {
	container, run string
	meter          ratecard.Meter
}

// run accumulates a run's billed quantity and duration.
type runAcc struct {
	q        sum
	dur      time.Duration
	first    qkey
	annex    annexKey
	min      time.Duration
	earlier  bool          // the run has records before the month: its minimum is billed there
	extraDur time.Duration // in the next month
}

// windowKey pairs a window's used and reserved records for the max basis.
type windowKey struct {
	container, run string
	meter          ratecard.Meter
	start, end     time.Time
}

type windowAcc struct {
	used, reserved *amount
	rate           *ratecard.Rate
	k              qkey
	a              annexKey
}

// rater prices nothing: it turns records into base quantities per qkey,
// applying each record's basis and the minimum run duration.
type rater struct {
	card  *ratecard.Card
	loc   *time.Location
	sel   Selection
	out   *rated
	runs  map[runKey]*runAcc
	pairs map[windowKey]*windowAcc
	// pairStart is the window start the pending pairs share: the store scans
	// in window-start order, so pairs complete when it moves on.
	pairStart time.Time
	// dayStart, dayEnd, day cache the current calendar day.
	dayStart, dayEnd time.Time
	day              *dayAcc
	buf              []byte
}

// ErrNoRateCardVersion is returned for a record older than the rate card's first version.
var ErrNoRateCardVersion = errors.New("no rate-card version is effective")

// rateMonth rates the selected records of tenant whose window starts in
// period, digesting them by version (digestSequential or digestSum). A
// source that sums in the store (metering.UsageAggregator) rates from its
// sums, unless the sequential digest needs every record.
func rateMonth(ctx context.Context, src UsageSource, card *ratecard.Card, tenant string, p calendar.Month, sel Selection, version int) (*rated, error) {
	return rateSelection(ctx, src, card, tenant, p, sel, version, false)
}

// countMonth counts and digests the selected records per day as rateMonth
// does (by the current version). A store that sums is asked for the counts
// alone, so the result's quantities may be empty: callers read its records
// and days only.
func countMonth(ctx context.Context, src UsageSource, card *ratecard.Card, tenant string, p calendar.Month, sel Selection) (*rated, error) {
	return rateSelection(ctx, src, card, tenant, p, sel, DigestVersion, true)
}

func rateSelection(ctx context.Context, src UsageSource, card *ratecard.Card, tenant string, p calendar.Month, sel Selection, version int, countOnly bool) (*rated, error) {
	rt := newRater(card, p.Loc, sel, version)
	start, end := p.Start(), p.End()
	var err error
	if agg, ok := src.(metering.UsageAggregator); ok && version == digestSum {
		err = rt.aggregate(ctx, agg, tenant, start, end, countOnly)
	} else {
		err = src.ScanUsage(ctx, metering.UsageFilter{Tenant: tenant, From: start, To: end}, func(r usage.Record) error {
			if !sel.includes(r.ReceivedAt) {
				return nil
			}
			return rt.record(&r)
		})
		rt.flushPairs()
	}
	if err != nil {
		return nil, fmt.Errorf("rate %s %s: %w", tenant, p, err)
	}
	if err := rt.neighbours(ctx, src, tenant, start, end); err != nil {
		return nil, fmt.Errorf("rate %s %s: %w", tenant, p, err)
	}
	rt.out.finish()
	rt.finishRuns()
	return rt.out, nil
}

func newRater(card *ratecard.Card, loc *time.Location, sel Selection, version int) *rater {
	out := &rated{q: map[qkey]*big.Rat{}, annex: map[annexKey]*big.Rat{}, qs: map[qkey]*sum{}, as: map[annexKey]*sum{},
		topUp: map[annexKey]*big.Rat{}, uplift: map[annexKey]*big.Rat{}, upR: map[annexKey]*sum{}, upU: map[annexKey]*sum{},
		days: map[string]*dayAcc{}, version: version}
	if version == digestSequential {
		out.seq = sha256.New()
	}
	return &rater{card: card, loc: loc, sel: sel, out: out, runs: map[runKey]*runAcc{}, pairs: map[windowKey]*windowAcc{}}
}

func (rt *rater) record(r *usage.Record) error {
	o := rt.out
	o.records++
	if r.WindowStart.Before(rt.dayStart) || !r.WindowStart.Before(rt.dayEnd) {
		l := r.WindowStart.In(rt.loc)
		rt.dayStart = time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, rt.loc)
		rt.dayEnd = rt.dayStart.AddDate(0, 0, 1)
		rt.day = o.day(rt.dayStart.Format(time.DateOnly))
	}
	rt.day.records++
	if o.version == digestSequential {
		rt.buf = binary.AppendUvarint(append(rt.buf[:0], r.ID...), uint64(r.Quantity))
		rt.buf = binary.AppendVarint(rt.buf, r.ReceivedAt.UnixNano())
		o.seq.Write(rt.buf)
		rt.day.seq.Write(rt.buf)
	} else {
		d := metering.RecordDigest(r.ID, r.Quantity, r.ReceivedAt)
		o.sum.Add(d)
		rt.day.sum.Add(d)
	}
	if !r.WindowStart.Equal(rt.pairStart) {
		rt.flushPairs()
		rt.pairStart = r.WindowStart
	}
	rate, k, a, ok, err := rt.rateOf(r)
	if err != nil || !ok {
		return err
	}
	base := rt.base(r, k.meter)
	if rate.Basis == ratecard.Max {
		wk := windowKey{container: r.ContainerID, run: r.RunID, meter: k.meter, start: r.WindowStart, end: r.WindowEnd}
		w := rt.pairs[wk]
		if w == nil {
			w = &windowAcc{rate: rate, k: k, a: a}
			rt.pairs[wk] = w
		}
		if used, _ := k.meter.Sources(); r.Meter == used {
			w.used = &base
		} else {
			w.reserved = &base
		}
		return nil
	}
	rt.unit(rate, k, a, r.ContainerID, r.RunID, r.WindowEnd.Sub(r.WindowStart), base)
	return nil
}

// rateOf finds the rate that prices r, if any: a record of a meter the card
// does not price, or the source its basis does not use, is rated at nothing.
func (rt *rater) rateOf(r *usage.Record) (*ratecard.Rate, qkey, annexKey, bool, error) {
	m, ok := ratecard.MeterOf(r.Meter)
	if !ok {
		return nil, qkey{}, annexKey{}, false, nil
	}
	vi := rt.card.VersionIndex(r.WindowStart)
	if vi < 0 {
		return nil, qkey{}, annexKey{}, false, fmt.Errorf("record %s: window start %s: %w", r.ID, r.WindowStart.Format(time.RFC3339), ErrNoRateCardVersion)
	}
	class := ratecard.ClassOf(r.Environment)
	rate, ok := rt.card.Versions[vi].Rate(m, class)
	if !ok {
		return nil, qkey{}, annexKey{}, false, nil
	}
	used, reserved := m.Sources()
	switch rate.Basis {
	case ratecard.Reserved:
		ok = r.Meter == reserved
	case ratecard.Max:
		ok = r.Meter == reserved || r.Meter == used
	default:
		ok = r.Meter == used
	}
	return rate, qkey{meter: m, class: class, version: vi}, annexKey{project: r.Project, env: r.Environment, meter: m}, ok, nil
}

// base returns r's quantity in the meter's common base unit.
func (rt *rater) base(r *usage.Record, m ratecard.Meter) amount {
	return scaled(r.Quantity, m.Scale(r.Meter))
}

// flushPairs rates the completed windows of the max basis: each at the larger
// of its used and reserved quantities.
func (rt *rater) flushPairs() {
	if len(rt.pairs) == 0 {
		return
	}
	for k, w := range rt.pairs {
		v := w.used
		if v == nil || (w.reserved != nil && w.reserved.cmp(*v) > 0) {
			v = w.reserved
			addSum(rt.out.upR, w.a, *w.reserved)
			if w.used != nil {
				addSum(rt.out.upU, w.a, *w.used)
			}
		}
		rt.unit(w.rate, w.k, w.a, k.container, k.run, k.end.Sub(k.start), *v)
	}
	clear(rt.pairs)
}

// unit adds one window's billed base quantity, remembering runs that a
// minimum run duration may lift.
func (rt *rater) unit(rate *ratecard.Rate, k qkey, a annexKey, container, run string, dur time.Duration, v amount) {
	rt.out.add(k, a, v)
	if rate.MinRunDuration <= 0 || container == "" {
		return
	}
	rk := runKey{container: container, run: run, meter: k.meter}
	acc := rt.runs[rk]
	if acc == nil {
		acc = &runAcc{first: k, annex: a, min: rate.MinRunDuration}
		rt.runs[rk] = acc
	}
	acc.q.add(v)
	acc.dur += dur
}

// neighbours completes the runs that may cross the month's edges: a short
// run's duration counts its records in the next month too (its minimum is
// billed once, in the month it started), and a run that started in the
// previous month had its minimum billed there.
func (rt *rater) neighbours(ctx context.Context, src UsageSource, tenant string, start, end time.Time) error {
	var maxMin time.Duration
	var meters []usage.Meter
	for _, acc := range rt.runs {
		if acc.dur < acc.min {
			maxMin = max(maxMin, acc.min)
		}
	}
	if maxMin == 0 {
		return nil
	}
	for _, mi := range usage.Meters {
		if _, ok := ratecard.MeterOf(mi.Meter); ok {
			meters = append(meters, mi.Meter)
		}
	}
	edge := func(from, to time.Time, fn func(acc *runAcc, r *usage.Record, m ratecard.Meter)) error {
		return src.ScanUsage(ctx, metering.UsageFilter{Tenant: tenant, From: from, To: to, Meters: meters}, func(r usage.Record) error {
			if !rt.sel.includes(r.ReceivedAt) {
				return nil
			}
			m, ok := ratecard.MeterOf(r.Meter)
			if !ok {
				return nil
			}
			if acc := rt.runs[runKey{container: r.ContainerID, run: r.RunID, meter: m}]; acc != nil && acc.dur < acc.min {
				fn(acc, &r, m)
			}
			return nil
		})
	}
	// A run that began before the month has a record whose window starts at
	// most a window's length before it (windows of a run are contiguous).
	if err := edge(start.Add(-usage.MaxWindowLimit), start, func(acc *runAcc, _ *usage.Record, _ ratecard.Meter) { acc.earlier = true }); err != nil {
		return err
	}
	// Only the next month's durations matter: a run this short keeps one
	// limit, so its rate is this month's quantity over this month's duration.
	seen := map[windowKey]bool{}
	return edge(end, end.Add(maxMin), func(acc *runAcc, r *usage.Record, m ratecard.Meter) {
		wk := windowKey{container: r.ContainerID, run: r.RunID, meter: m, start: r.WindowStart, end: r.WindowEnd}
		if !seen[wk] {
			seen[wk] = true
			acc.extraDur += r.WindowEnd.Sub(r.WindowStart)
		}
	})
}

// finishRuns lifts each run shorter than its minimum to the minimum, as if
// it had gone on at its rate: quantity × (min − duration) / duration more,
// billed with the run's first window.
func (rt *rater) finishRuns() {
	for _, acc := range rt.runs {
		total := acc.dur + acc.extraDur
		if acc.earlier || total >= acc.min || acc.dur <= 0 {
			continue
		}
		extra := new(big.Rat).Mul(acc.q.rat(), big.NewRat(int64(acc.min-total), int64(acc.dur)))
		addRat(rt.out.q, acc.first, extra)
		addRat(rt.out.annex, acc.annex, extra)
		addRat(rt.out.topUp, acc.annex, extra)
	}
}
