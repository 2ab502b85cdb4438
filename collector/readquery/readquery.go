// Package readquery reads the query strings of the collector's read endpoints
// (usage, logs, and Loki's) into store queries, naming each parameter it
// refuses. Query strings come from institutions, so this is a decoder of
// outside input: it lives apart from the collector so that its fuzz target
// runs in a small binary (the engine's speed falls with the size of the
// instrumented program).
package readquery

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// The defaults of log queries.
const (
	// DefaultLogLimit is the number of lines a log query returns without limit.
	DefaultLogLimit = 100
	// DefaultLogRange is how far back a log query looks without from (start).
	DefaultLogRange = time.Hour
	// DefaultLabelRange is how far back Loki's label endpoints look by default.
	DefaultLabelRange = 6 * time.Hour
)

// maxRangeKey names the setting that bounds a log query's range, for errors.
const maxRangeKey = "collector.logs.max_query_range"

// Parser reads query strings against one platform's settings.
type Parser struct {
	// Location is the platform's time zone: months and dates are its.
	Location *time.Location
	// Clock gives now, where default ranges end.
	Clock clock.Clock
	// MaxLogRange bounds the range of a log query (collector.logs.max_query_range).
	MaxLogRange time.Duration
}

// Usage reads the parameters of GET /api/v1/tenants/{tenant}/usage:
//
//	month=YYYY-MM                    a calendar month in the platform's time zone, or
//	from=…&to=…                      RFC 3339 times or YYYY-MM-DD dates (to is exclusive);
//	                                 neither: the current month
//	group_by=app,environment,day     any of project, app, environment, meter, day (meter always)
//	project= app= environment= meter=  filters, comma-separated or repeated
func (p Parser) Usage(tenant string, v url.Values) (metering.UsageQuery, []route.FieldError) {
	var problems []route.FieldError
	bad := func(field, format string, args ...any) {
		problems = append(problems, route.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	q := metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: tenant}, Location: p.Location}

	for key := range v {
		switch key {
		case "month", "from", "to", "group_by", "project", "app", "environment", "meter":
		default:
			bad(route.Param(key), "is not a parameter of this endpoint")
		}
	}
	month, from, to := v.Get("month"), v.Get("from"), v.Get("to")
	switch {
	case month != "" && (from != "" || to != ""):
		bad("month", "give either month or from and to, not both")
	case month != "":
		m, err := time.ParseInLocation("2006-01", month, p.Location)
		if err != nil {
			bad("month", "%q is not YYYY-MM", month)
		}
		q.From, q.To = m, m.AddDate(0, 1, 0)
	case from == "" && to == "":
		now := p.Clock.Now().In(p.Location)
		q.From = time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, p.Location)
		q.To = q.From.AddDate(0, 1, 0)
	default:
		var ok bool
		if q.From, ok = route.ParseTime(from, p.Location); !ok {
			bad("from", "%q is not an RFC 3339 time or a YYYY-MM-DD date", from)
		}
		if q.To, ok = route.ParseTime(to, p.Location); !ok {
			bad("to", "%q is not an RFC 3339 time or a YYYY-MM-DD date", to)
		}
	}
	for _, d := range list(v["group_by"]) {
		if d == "meter" {
			continue // always grouped
		}
		q.GroupBy = append(q.GroupBy, metering.Dimension(d))
	}
	q.Projects, q.Apps = list(v["project"]), list(v["app"])
	for _, e := range list(v["environment"]) {
		if env := usage.Environment(e); !env.Valid() {
			bad("environment", "%q must be one of dev, test, acc, prod", e)
		} else {
			q.Environments = append(q.Environments, env)
		}
	}
	for _, m := range list(v["meter"]) {
		if meter := usage.Meter(m); !meter.Valid() {
			bad("meter", "%q is not a known meter", m)
		} else {
			q.Meters = append(q.Meters, meter)
		}
	}
	if len(problems) == 0 {
		if err := q.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				field, reason, _ := strings.Cut(line, ": ")
				bad(field, "%s", reason)
			}
		}
	}
	return q, problems
}

// list splits repeated and comma-separated parameter values.
func list(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

// Logs reads the parameters of GET /api/v1/tenants/{tenant}/logs:
//
//	from, to        RFC 3339 times (to exclusive); default the last hour
//	app, container, env   equality matchers on those labels
//	contains, regex       line filters: a substring, an RE2 regexp
//	limit           1 to metering.MaxLogLimit lines, default 100
//	direction       backward (newest first, the default) or forward
//	cursor          next from a previous answer, to go on
func (p Parser) Logs(tenant string, v url.Values) (metering.LogQuery, []route.FieldError) {
	var problems []route.FieldError
	bad := func(field, format string, args ...any) {
		problems = append(problems, route.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	q := metering.LogQuery{Tenant: tenant}
	for key := range v {
		switch key {
		case "from", "to", "app", "container", "env", "contains", "regex", "limit", "cursor", "direction":
		default:
			bad(route.Param(key), "is not a parameter of this endpoint")
		}
	}
	q.To = p.Clock.Now().UTC()
	if to := v.Get("to"); to != "" {
		t, err := time.Parse(time.RFC3339Nano, to)
		if err != nil {
			bad("to", "%q is not an RFC 3339 time", to)
		}
		q.To = t.UTC()
	}
	q.From = q.To.Add(-DefaultLogRange)
	if from := v.Get("from"); from != "" {
		t, err := time.Parse(time.RFC3339Nano, from)
		if err != nil {
			bad("from", "%q is not an RFC 3339 time", from)
		}
		q.From = t.UTC()
	}
	for _, label := range []string{logs.LabelApp, logs.LabelContainer, logs.LabelEnv} {
		if val := v.Get(label); val != "" {
			m, err := logs.NewMatcher(label, logs.MatchEqual, val)
			if err != nil {
				bad(label, "%v", err)
				continue
			}
			q.Selector.Matchers = append(q.Selector.Matchers, m)
		}
	}
	for _, f := range []struct {
		param string
		op    logs.FilterOp
	}{{"contains", logs.FilterContains}, {"regex", logs.FilterRegexp}} {
		if val := v.Get(f.param); val != "" {
			filter, err := logs.NewFilter(f.op, val)
			if err != nil {
				bad(f.param, "%v", err)
				continue
			}
			q.Selector.Filters = append(q.Selector.Filters, filter)
		}
	}
	var err error
	if q.Limit, err = Limit(v.Get("limit")); err != nil {
		bad("limit", "%v", err)
	}
	if q.Forward, err = Direction(v.Get("direction")); err != nil {
		bad("direction", "%v", err)
	}
	if c := v.Get("cursor"); c != "" {
		if q.Cursor, err = OpenCursor(tenant, c); err != nil {
			bad("cursor", "%v", err)
		}
	}
	if len(problems) == 0 {
		if err := q.Validate(); err != nil {
			field, reason, _ := strings.Cut(err.Error(), ": ")
			bad(field, "%s", reason)
		} else if err := p.checkLogRange(q.From, q.To, "from and to"); err != nil {
			bad("from", "%v", err)
		}
	}
	return q, problems
}

// Limit reads a line limit: 1 to metering.MaxLogLimit, DefaultLogLimit if empty.
func Limit(v string) (int, error) {
	if v == "" {
		return DefaultLogLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > metering.MaxLogLimit {
		return 0, fmt.Errorf("%q must be a number from 1 to %d", v, metering.MaxLogLimit)
	}
	return n, nil
}

// Direction reads Loki's direction: backward (newest first, the default) or
// forward. It reports whether the query goes forward.
func Direction(v string) (bool, error) {
	switch v {
	case "", "backward", "BACKWARD":
		return false, nil
	case "forward", "FORWARD":
		return true, nil
	}
	return false, fmt.Errorf("%q must be backward or forward", v)
}

// A cursor the API hands out is the store's, with a check appended. The store
// refuses a cursor it did not give with an error that cannot be told from a
// failure, so the collector spots mistyped and truncated cursors first and
// answers them with a 400 instead of a 503. The check is a hash anyone can
// compute, not a secret: the store's own checks stand behind it.
const cursorCheckLen = 12

func cursorCheck(tenant, c string) string {
	sum := sha256.Sum256([]byte("paasmeter.log-cursor\x00" + tenant + "\x00" + c))
	return hex.EncodeToString(sum[:cursorCheckLen/2])
}

// SealCursor appends the check to a store's cursor c for tenant's answer.
func SealCursor(tenant, c string) string { return c + "." + cursorCheck(tenant, c) }

// OpenCursor returns the store's cursor in sealed, if SealCursor made it for tenant.
func OpenCursor(tenant, sealed string) (string, error) {
	i := strings.LastIndexByte(sealed, '.')
	if i < 0 || sealed[i+1:] != cursorCheck(tenant, sealed[:i]) {
		return "", errors.New("is not a cursor this API gave for this tenant (pass next from a previous answer unchanged)")
	}
	return sealed[:i], nil
}

// LokiRange reads Loki's start, end and since parameters: end defaults to now,
// start to end minus since, or minus def; the range is at most MaxLogRange, as
// Loki's max_query_length bounds it.
func (p Parser) LokiRange(v url.Values, def time.Duration) (from, to time.Time, err error) {
	to = p.Clock.Now().UTC()
	if e := v.Get("end"); e != "" {
		if to, err = parseLokiTime(e); err != nil {
			return from, to, fmt.Errorf("end: %w", err)
		}
	}
	if since := v.Get("since"); since != "" {
		d, err := time.ParseDuration(since)
		if err != nil || d <= 0 {
			return from, to, fmt.Errorf("since: %q is not a positive duration such as 1h", since)
		}
		def = d
	}
	from = to.Add(-def)
	if st := v.Get("start"); st != "" {
		if from, err = parseLokiTime(st); err != nil {
			return from, to, fmt.Errorf("start: %w", err)
		}
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("start %s must be before end %s", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano))
	}
	return from, to, p.checkLogRange(from, to, "start and end")
}

// parseLokiTime reads a time as Loki does: Unix nanoseconds, Unix seconds
// (10 digits or fewer, or with a fraction), or RFC 3339.
func parseLokiTime(v string) (time.Time, error) {
	if strings.Contains(v, ".") {
		if f, err := strconv.ParseFloat(v, 64); err == nil {
			sec, frac := math.Modf(f)
			return time.Unix(int64(sec), int64(math.Round(frac*1e9))).UTC(), nil
		}
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if len(strings.TrimPrefix(v, "-")) <= 10 {
			return time.Unix(n, 0).UTC(), nil
		}
		return time.Unix(0, n).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is not Unix nanoseconds or seconds, or an RFC 3339 time", v)
}

// checkLogRange refuses a range longer than MaxLogRange, naming the
// parameters that gave it and the setting that bounds it.
func (p Parser) checkLogRange(from, to time.Time, params string) error {
	if d := to.Sub(from); d > p.MaxLogRange {
		return fmt.Errorf("%s span %s, more than the %s that %s allows: query a shorter range", params, d, p.MaxLogRange, maxRangeKey)
	}
	return nil
}
