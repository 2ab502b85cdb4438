package clickhouse

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"golang.org/x/sync/errgroup"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// The invoice run finds the port by a type assertion: this keeps it found.
var _ metering.UsageAggregator = (*Store)(nil)

// AggregateUsage implements metering.UsageAggregator: three GROUP BY queries
// over the tenant's month, run side by side, each reading the records once
// (FINAL, the first arrival of each id) and returning only their groups.
//
// Sums are exact: quantities and window lengths are not negative, and their
// 32-bit halves are summed apart (sum(Int64) wraps past 2^63), as QueryUsage
// does. The digest lanes are summed as UInt64, which wraps modulo 2^64 as
// metering.Digest does.
func (s *Store) AggregateUsage(ctx context.Context, q metering.AggregateQuery) (*metering.Aggregate, error) {
	if s.closed.Load() {
		return nil, metering.ErrNotReady
	}
	after := int64(math.MinInt64)
	if !q.ReceivedAfter.IsZero() {
		after = q.ReceivedAfter.UnixNano()
	}
	where := "tenant = ? AND window_start >= ? AND window_start < ? AND received_at > ? AND received_at <= ?"
	args := []any{q.Tenant, q.From.UnixNano(), q.To.UnixNano(), after, q.ReceivedUpTo.UnixNano()}
	version := versionExpr(q.Versions)
	var out metering.Aggregate
	g, ctx := errgroup.WithContext(ctx)
	groups := func() error {
		runs := "0"
		if len(q.RunMeters) > 0 {
			runs = "meter IN (" + sqlStrings(q.RunMeters) + ")"
		}
		return scan(ctx, s, s.conn, "aggregate usage records", `SELECT project, environment, meter, c, r, v, count(), `+
			splitSum("quantity")+`, sum(d), min(window_start)
			FROM (SELECT project, environment, meter, quantity, window_start, `+version+` AS v,
				if(`+runs+`, container_id, '') AS c, if(`+runs+`, run_id, '') AS r,
				toInt64(if(`+runs+`, window_end - window_start, 0)) AS d
				FROM usage_records FINAL WHERE `+where+`)
			GROUP BY project, environment, meter, c, r, v`, args,
			func(rows chdriver.Rows) (metering.RecordGroup, error) {
				var g metering.RecordGroup
				var env, meter string
				var v int32
				var n, hi, lo uint64
				var d, first int64
				err := rows.Scan(&g.Project, &env, &meter, &g.ContainerID, &g.RunID, &v, &n, &hi, &lo, &d, &first)
				g.Environment, g.Meter, g.Version, g.Records = usage.Environment(env), usage.Meter(meter), int(v), int64(n)
				g.Quantity, g.Duration, g.First = usage.FromSplitSums(hi, lo), time.Duration(d), time.Unix(0, first).UTC()
				return g, err
			},
			func(g metering.RecordGroup) error { out.Groups = append(out.Groups, g); return nil })
	}
	if !q.CountOnly {
		g.Go(groups)
	}
	var windows []metering.WindowGroup
	if len(q.Pairs) > 0 && !q.CountOnly {
		g.Go(func() error {
			return scan(ctx, s, s.conn, "aggregate usage windows", windowsQuery(q.Pairs, version, where), args,
				func(rows chdriver.Rows) (metering.WindowGroup, error) {
					var w metering.WindowGroup
					var env, used string
					var v int32
					var n uint64
					var sums [6]uint64
					var d, first int64
					err := rows.Scan(&w.Project, &env, &used, &w.ContainerID, &w.RunID, &v, &n,
						&sums[0], &sums[1], &sums[2], &sums[3], &sums[4], &sums[5], &d, &first)
					w.Environment, w.Used, w.Version, w.Windows = usage.Environment(env), usage.Meter(used), int(v), int64(n)
					w.UsedWon, w.ReservedWon = usage.FromSplitSums(sums[0], sums[1]), usage.FromSplitSums(sums[2], sums[3])
					w.UsedLost, w.Duration, w.First = usage.FromSplitSums(sums[4], sums[5]), time.Duration(d), time.Unix(0, first).UTC()
					return w, err
				},
				func(w metering.WindowGroup) error { windows = append(windows, w); return nil })
		})
	}
	var buckets []metering.Bucket
	g.Go(func() error {
		lanes := make([]string, 4)
		for i := range lanes {
			lanes[i] = fmt.Sprintf("sum(reinterpretAsUInt64(substring(h, %d, 8)))", 8*i+1)
		}
		// metering.RecordDigest: toFixedString pads reinterpretAsString,
		// which drops the value's high zero bytes, back to 8 bytes.
		return scan(ctx, s, s.conn, "aggregate usage digests", `SELECT b, count(), `+strings.Join(lanes, ", ")+`
			FROM (SELECT intDiv(window_start, `+strconv.FormatInt(metering.DigestBucket.Nanoseconds(), 10)+`) AS b,
				SHA256(concat(id, toFixedString(reinterpretAsString(quantity), 8), toFixedString(reinterpretAsString(received_at), 8))) AS h
				FROM usage_records FINAL WHERE `+where+`)
			GROUP BY b`, args,
			func(rows chdriver.Rows) (metering.Bucket, error) {
				var b metering.Bucket
				var start int64
				var n uint64
				err := rows.Scan(&start, &n, &b.Digest[0], &b.Digest[1], &b.Digest[2], &b.Digest[3])
				b.Start, b.Records = time.Unix(0, start*metering.DigestBucket.Nanoseconds()).UTC(), int64(n)
				return b, err
			},
			func(b metering.Bucket) error { buckets = append(buckets, b); return nil })
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out.Windows, out.Buckets = windows, buckets
	return &out, nil
}

// windowsQuery pairs the records of q's pairs per window, then sums the
// windows: the inner query keeps, per meter, the quantity of the record with
// the greatest id; the outer one says which of used and reserved won each
// window. Reserved wins when reserved × scale > used, that is reserved >
// ⌊used / scale⌋ for whole numbers: no product that could overflow.
func windowsQuery(pairs []metering.MeterPair, version, where string) string {
	var usedList, reservedList, all, from, to, scales, runPairs []string
	for _, p := range pairs {
		u, r := sqlStrings([]usage.Meter{p.Used}), sqlStrings([]usage.Meter{p.Reserved})
		usedList, reservedList = append(usedList, u), append(reservedList, r)
		all, from, to = append(all, u, r), append(from, u, r), append(to, u, u)
		scales = append(scales, strconv.FormatInt(p.ReservedScale, 10))
		if p.Run {
			runPairs = append(runPairs, u)
		}
	}
	runs := "0"
	if len(runPairs) > 0 {
		runs = "pm IN (" + strings.Join(runPairs, ", ") + ")"
	}
	used, reserved := "meter IN ("+strings.Join(usedList, ", ")+")", "meter IN ("+strings.Join(reservedList, ", ")+")"
	won := "(hu AND (hr = 0 OR rq <= intDiv(u, transform(pm, [" + strings.Join(usedList, ", ") + "], [" + strings.Join(scales, ", ") + "], 1))))"
	return `SELECT project, environment, pm, c, r, v, count(), ` +
		splitSum("if("+won+", u, 0)") + `, ` + splitSum("if("+won+", 0, rq)") + `, ` + splitSum("if("+won+", 0, u)") + `,
		sum(d), min(window_start)
		FROM (SELECT project, environment, transform(meter, [` + strings.Join(from, ", ") + `], [` + strings.Join(to, ", ") + `], '') AS pm,
			if(` + runs + `, container_id, '') AS c, if(` + runs + `, run_id, '') AS r, ` + version + ` AS v,
			window_start, toInt64(if(` + runs + `, window_end - window_start, 0)) AS d,
			argMaxIf(quantity, id, ` + used + `) AS u, countIf(` + used + `) > 0 AS hu,
			argMaxIf(quantity, id, ` + reserved + `) AS rq, countIf(` + reserved + `) > 0 AS hr
			FROM usage_records FINAL WHERE ` + where + ` AND meter IN (` + strings.Join(all, ", ") + `)
			GROUP BY project, environment, pm, container_id, run_id, window_start, window_end)
		GROUP BY project, environment, pm, c, r, v`
}

// versionExpr is the rate-card version of window_start: how many of
// versions' instants are at or before it, minus one.
func versionExpr(versions []time.Time) string {
	e := "toInt32(-1"
	for _, v := range versions {
		e += fmt.Sprintf(" + (window_start >= %d)", v.UnixNano())
	}
	return e + ")"
}

// splitSum sums x (not negative) exactly as the sums of its 32-bit halves.
func splitSum(x string) string {
	return fmt.Sprintf("toUInt64(sum(bitShiftRight(%[1]s, 32))), toUInt64(sum(bitAnd(%[1]s, 4294967295)))", x)
}

// sqlStrings writes vs as SQL string literals: meter names and event types
// are plain identifiers (usage.Meters, events.Types), but quoted all the same.
func sqlStrings[T ~string](vs []T) string {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = "'" + strings.ReplaceAll(strings.ReplaceAll(string(v), `\`, `\\`), "'", `\'`) + "'"
	}
	return strings.Join(q, ", ")
}
