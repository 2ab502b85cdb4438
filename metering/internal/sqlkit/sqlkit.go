// Package sqlkit is what the SQL adapters of the metering store (embedded and
// clickhouse) do alike, kept in one place so that they answer every query the
// same way: the WHERE clause of a usage filter, usage totals grouped by
// calendar day across UTC offset changes, exact sums beyond int64, the counts
// of the accepted ledger, the log cursor, and record ids as bytes.
//
// Both engines bind `?` placeholders and store times as Unix nanoseconds in
// 64-bit integers, which is what makes the SQL here portable between them.
package sqlkit

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// DecodeID returns a record id (usage.IDLength hex digits) as its 16 bytes.
func DecodeID(id string) ([]byte, error) {
	if len(id) != usage.IDLength {
		return nil, fmt.Errorf("id %q is not %d hex digits", id, usage.IDLength)
	}
	b, err := hex.DecodeString(id)
	if err != nil {
		return nil, fmt.Errorf("id %q: %w", id, err)
	}
	return b, nil
}

// UsageWhere builds the WHERE clause of f over the columns tenant,
// window_start (Unix ns), project, app, environment and meter.
func UsageWhere(f *metering.UsageFilter) (string, []any) {
	var b strings.Builder
	args := []any{f.Tenant, f.From.UnixNano(), f.To.UnixNano()}
	b.WriteString("tenant = ? AND window_start >= ? AND window_start < ?")
	InList(&b, &args, "project", f.Projects)
	InList(&b, &args, "app", f.Apps)
	InList(&b, &args, "environment", Strings(f.Environments))
	InList(&b, &args, "meter", Strings(f.Meters))
	return b.String(), args
}

// EventWhere builds the WHERE clause of f over the columns tenant, time
// (Unix ns), app, type and environment.
func EventWhere(f *metering.EventFilter) (string, []any) {
	var b strings.Builder
	args := []any{f.Tenant, f.From.UnixNano(), f.To.UnixNano()}
	b.WriteString("tenant = ? AND time >= ? AND time < ?")
	InList(&b, &args, "app", f.Apps)
	InList(&b, &args, "type", Strings(f.Types))
	InList(&b, &args, "environment", Strings(f.Environments))
	return b.String(), args
}

// InList adds "AND col IN (…)" for a non-empty filter.
func InList(b *strings.Builder, args *[]any, col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	b.WriteString(" AND " + col + " IN (?" + strings.Repeat(", ?", len(vals)-1) + ")")
	for _, v := range vals {
		*args = append(*args, v)
	}
}

// Strings converts a slice of string-based values.
func Strings[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// Rows is a query's result: database/sql's *sql.Rows and clickhouse-go's
// driver.Rows both are.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Querier runs one query with `?` arguments.
type Querier func(ctx context.Context, query string, args ...any) (Rows, error)

// Dialect spells the parts of the usage aggregation that differ between engines.
type Dialect struct {
	// From is what usage records are read from (ClickHouse adds FINAL).
	From string
	// Day returns an Int64 expression of the day number (days since
	// 1970-01-01) of window_start, in a zone offsetNs ahead of UTC.
	Day func(offsetNs int64) string
	// Sums lists three aggregates, each scanned into a uint64: the sum of the
	// quantities' high 32 bits, the sum of their low 32 bits, and the count
	// of records (see usage.FromSplitSums).
	Sums string
}

// QueryUsage answers q through query in dialect d. Errors come unwrapped:
// the adapter says what failed.
//
// Neither engine has time zones it can be trusted with for every IANA zone
// and year, so a day grouping splits the range into spans of constant UTC
// offset (a month has at most two), buckets each span with integer
// arithmetic, and merges the spans' rows here. Quantities are summed as 32-bit
// halves (usage.FromSplitSums), so totals are exact beyond int64.
func QueryUsage(ctx context.Context, q metering.UsageQuery, d Dialect, query Querier) ([]metering.UsageRow, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	loc := q.Location
	if loc == nil {
		loc = time.UTC
	}
	type key struct{ project, app, env, day, meter string }
	merged := map[key]*metering.UsageRow{}
	for _, sp := range OffsetSpans(q.From, q.To, loc) {
		f := q.UsageFilter
		f.From, f.To = sp.From, sp.To
		cond, args := UsageWhere(&f)
		var k key
		var day int64
		var hi, lo, n uint64
		var cols []string
		var dest []any
		for _, c := range []struct {
			d   metering.Dimension
			col string
			to  *string
		}{{metering.ByProject, "project", &k.project}, {metering.ByApp, "app", &k.app}, {metering.ByEnvironment, "environment", &k.env}} {
			if q.Groups(c.d) {
				cols, dest = append(cols, c.col), append(dest, c.to)
			}
		}
		if q.Groups(metering.ByDay) {
			cols, dest = append(cols, d.Day(sp.Offset.Nanoseconds())), append(dest, &day)
		}
		cols, dest = append(cols, "meter"), append(dest, &k.meter, &hi, &lo, &n)
		rows, err := query(ctx, "SELECT "+strings.Join(cols, ", ")+", "+d.Sums+" FROM "+d.From+" WHERE "+cond+
			" GROUP BY "+strings.Join(cols, ", "), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			k = key{}
			if err := rows.Scan(dest...); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read usage row: %w", err)
			}
			if q.Groups(metering.ByDay) {
				k.day = time.Unix(day*86400, 0).UTC().Format(time.DateOnly)
			}
			t := usage.FromSplitSums(hi, lo)
			if row, ok := merged[k]; ok {
				row.Quantity = row.Quantity.Plus(t)
				row.Records += int64(n)
				continue
			}
			merged[k] = &metering.UsageRow{Project: k.project, App: k.app, Environment: usage.Environment(k.env),
				Day: k.day, Meter: usage.Meter(k.meter), Quantity: t, Records: int64(n)}
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return nil, err
		}
	}
	out := make([]metering.UsageRow, 0, len(merged))
	for _, r := range merged {
		out = append(out, *r)
	}
	metering.SortRows(out)
	return out, nil
}

// Accepted is how many records of one tenant, with a window start in one UTC
// hour, an append stored as new: one row of an append's additions to the
// accepted ledger (metering.AcceptedReader).
type Accepted struct {
	Tenant  string
	Hour    time.Time
	Records int64
}

// CountAccepted counts the records of recs that are not among dups (the
// append's metering.AppendResult.Duplicates) per tenant and UTC hour of their
// window start, ordered by tenant then hour. Both adapters count from the
// append's own result, so the ledger says what the append reported, whatever
// the engine's duplicate check saw.
func CountAccepted(recs []usage.Record, dups []int) []Accepted {
	type key struct {
		tenant string
		hour   int64
	}
	counts := map[key]int64{}
	for i := range recs {
		if len(dups) > 0 && dups[0] == i {
			dups = dups[1:]
			continue
		}
		counts[key{recs[i].Tenant, recs[i].WindowStart.UTC().Truncate(time.Hour).Unix()}]++
	}
	out := make([]Accepted, 0, len(counts))
	for k, n := range counts {
		out = append(out, Accepted{Tenant: k.tenant, Hour: time.Unix(k.hour, 0).UTC(), Records: n})
	}
	slices.SortFunc(out, func(a, b Accepted) int {
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return a.Hour.Compare(b.Hour)
	})
	return out
}

// Span is a stretch of time over which a zone's UTC offset is constant.
type Span struct {
	From, To time.Time
	Offset   time.Duration
}

// OffsetSpans splits [from, to) into spans over which loc's UTC offset is constant.
func OffsetSpans(from, to time.Time, loc *time.Location) []Span {
	var out []Span
	for t := from; t.Before(to); {
		lt := t.In(loc)
		_, off := lt.Zone()
		_, end := lt.ZoneBounds()
		if end.IsZero() || end.After(to) {
			end = to
		}
		out = append(out, Span{From: t, To: end, Offset: time.Duration(off) * time.Second})
		t = end
	}
	return out
}

// Cursor is the position of the last log line of a page: lines are ordered
// by time, then seq, then id.
type Cursor struct {
	Time int64
	Seq  int
	ID   []byte
}

// String encodes c for metering.LogPage.Next.
func (c Cursor) String() string {
	return base64.RawURLEncoding.EncodeToString(fmt.Appendf(nil, "%d:%d:%x", c.Time, c.Seq, c.ID))
}

// ParseCursor decodes what Cursor.String encoded.
func ParseCursor(s string) (Cursor, error) {
	bad := fmt.Errorf("cursor: %q is not a cursor this store gave", s)
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.Split(string(b), ":")
	if len(parts) != 3 {
		return Cursor{}, bad
	}
	var c Cursor
	var err1, err2, err3 error
	c.Time, err1 = strconv.ParseInt(parts[0], 10, 64)
	c.Seq, err2 = strconv.Atoi(parts[1])
	c.ID, err3 = hex.DecodeString(parts[2])
	if errors.Join(err1, err2, err3) != nil || len(c.ID) != usage.IDLength/2 {
		return Cursor{}, bad
	}
	return c, nil
}

// ActiveStreams returns the labels of a tenant's streams that have a line in
// [from, to). Its methods are the label queries of metering.LogReader, which
// every SQL store answers alike from its active streams: a store embeds its
// own ActiveStreams to have them.
type ActiveStreams func(ctx context.Context, tenant string, from, to time.Time) ([]map[string]string, error)

// LogLabels implements metering.LogReader.
func (f ActiveStreams) LogLabels(ctx context.Context, tenant string, from, to time.Time) ([]string, error) {
	sts, err := f(ctx, tenant, from, to)
	return LabelNames(sts), err
}

// LogLabelValues implements metering.LogReader.
func (f ActiveStreams) LogLabelValues(ctx context.Context, tenant, name string, from, to time.Time) ([]string, error) {
	sts, err := f(ctx, tenant, from, to)
	return LabelValues(sts, name), err
}

// LabelNames returns, sorted and once each, the label names of streams.
func LabelNames(streams []map[string]string) []string {
	return collect(streams, func(labels map[string]string, add func(string)) {
		for n := range labels {
			add(n)
		}
	})
}

// LabelValues returns, sorted and once each, the values label name takes in streams.
func LabelValues(streams []map[string]string, name string) []string {
	return collect(streams, func(labels map[string]string, add func(string)) {
		if v, ok := labels[name]; ok {
			add(v)
		}
	})
}

func collect(streams []map[string]string, pick func(map[string]string, func(string))) []string {
	seen := map[string]bool{}
	for _, labels := range streams {
		pick(labels, func(v string) { seen[v] = true })
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}

// LogChunkBytes bounds the line bytes of one chunk a log scan reads from
// the store: with LogChunkLines it bounds a scan's memory whatever the
// lines' length.
const (
	LogChunkLines = 1000
	LogChunkBytes = 1 << 20
)

// logYieldEvery is how many lines a log scan walks between two yields of
// its goroutine. Go has no goroutine priorities, and async preemption
// interrupts a busy goroutine only every 10 ms: a collector's core busy
// with reads (a scan walks and encodes a line in 10 to 25 µs) made each
// agent's ingest request, which waits for the core at several points (body,
// decode, insert, commit, answer), wait up to 10 ms per read in flight at
// each of them (issue 19's abuse benchmark: agents' p99 up to 10× the quiet
// run). Yielding every millisecond or so puts a read behind the requests
// that are ready, so reads take the core that ingest leaves.
const logYieldEvery = 64

// Direction is how a log query in q's direction orders its chunks: the SQL
// order of (time, seq, id), and the comparison that puts a row after a cursor.
func Direction(forward bool) (order, cmp string) {
	if forward {
		return "ASC", ">"
	}
	return "DESC", "<"
}

// ScanLogs is the walk of metering.LogReader.ScanLogs, alike in both stores.
// fetch reads the next chunk in q's order after a position (nil: from the
// start of the range): at most n lines, stopping early once their line bytes
// reach LogChunkBytes. Chunks are read whole before take sees their lines,
// so a store holds no connection while its caller writes to a slow client.
// Line filters run here (LogQL's regexps are Go's RE2, which neither engine
// has). It returns the cursor after the last line taken when a matching
// line remains: q.Limit lines were taken, or take refused one.
func ScanLogs(q metering.LogQuery, fetch func(after *Cursor, n int) ([]logs.Line, error), take func(logs.Line) bool) (string, error) {
	var after *Cursor
	if q.Cursor != "" {
		c, err := ParseCursor(q.Cursor)
		if err != nil {
			return "", err
		}
		after = &c
	}
	n := min(q.Limit+1, LogChunkLines)
	if len(q.Selector.Filters) > 0 {
		n = LogChunkLines // most lines read may not match
	}
	var last Cursor
	taken, walked := 0, 0
	for {
		chunk, err := fetch(after, n)
		if err != nil {
			return "", err
		}
		size := 0
		for _, l := range chunk {
			if walked++; walked%logYieldEvery == 0 {
				runtime.Gosched()
			}
			size += len(l.Line)
			pos, err := LineCursor(l)
			if err != nil {
				return "", err
			}
			after = &pos
			// No labels: a line of a stream the selector does not select,
			// which an adapter reads when its query cannot name every stream.
			if l.Labels == nil || !q.Selector.MatchesLine(l.Line) {
				continue
			}
			if taken == q.Limit {
				return last.String(), nil
			}
			if !take(l) {
				if taken == 0 {
					return "", errors.New("log scan: the first line was refused: a page must hold at least one line")
				}
				return last.String(), nil
			}
			taken, last = taken+1, pos
		}
		if len(chunk) < n && size < LogChunkBytes {
			return "", nil
		}
	}
}

// LineCursor is the position of l in the order of log queries.
func LineCursor(l logs.Line) (Cursor, error) {
	id, err := hex.DecodeString(l.ID)
	if err != nil {
		return Cursor{}, fmt.Errorf("log line id %q: %w", l.ID, err)
	}
	return Cursor{Time: l.Time.UnixNano(), Seq: l.Seq, ID: id}, nil
}
