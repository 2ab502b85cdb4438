package collector

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
)

// LogsResponse is the answer of GET /api/v1/tenants/{tenant}/logs.
type LogsResponse struct {
	Tenant    string    `json:"tenant"`
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Direction string    `json:"direction"`
	Lines     []LogLine `json:"lines"`
	// Next continues the query after Lines: pass it as cursor with the same
	// parameters. It is empty when there is no more.
	Next string `json:"next,omitempty"`
}

// LogLine is one line of a LogsResponse.
type LogLine struct {
	Time   time.Time         `json:"time"`
	Labels map[string]string `json:"labels"`
	Line   string            `json:"line"`
	ID     string            `json:"id"`
}

// The defaults of a log query.
const (
	defaultLogLimit = 100
	defaultLogRange = time.Hour
)

// getLogs is GET /api/v1/tenants/{tenant}/logs. Parameters:
//
//	from, to        RFC 3339 times (to exclusive); default the last hour
//	app, container, env   equality matchers on those labels
//	contains, regex       line filters: a substring, an RE2 regexp
//	limit           1..5000, default 100
//	direction       backward (newest first, the default) or forward
//	cursor          the next of a previous answer
//
// The answer is streamed as the store hands lines over, and ends early, with
// next, once it would pass logs.max_response_bytes.
func (s *Server) getLogs(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	q, problems := s.parseLogsQuery(r.PathValue("tenant"), r.URL.Query())
	if len(problems) > 0 {
		route.WriteError(w, http.StatusBadRequest, "invalid logs query", problems)
		return
	}
	done, ok := s.readSlot(w, q.Tenant)
	if !ok {
		return
	}
	s.deliverBy(w)
	const tail = "]}"
	a := newStreamedAnswer(w, LogsResponse{Tenant: q.Tenant, From: q.From, To: q.To, Direction: direction(q.Forward), Lines: []LogLine{}}, tail, s.cfg.Logs.MaxResponseBytes)
	defer func() { done(a.written) }()
	next, err := s.store.ScanLogs(r.Context(), q, func(l logs.Line) bool {
		var sep []byte
		if a.parts > 0 {
			sep = comma
		}
		return a.add(sep, a.marshal(LogLine{Time: l.Time, Labels: l.Labels, Line: l.Line, ID: l.ID}))
	})
	end := tail
	if next != "" {
		// Next is a field of LogsResponse, after Lines.
		end = `],"next":` + string(a.marshal(sealCursor(q.Tenant, next))) + "}"
	}
	s.finishAnswer(a, end+"\n", err, q.Tenant)
}

func (s *Server) parseLogsQuery(tenant string, v url.Values) (metering.LogQuery, []route.FieldError) {
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
	q.To = s.clock.Now().UTC()
	if to := v.Get("to"); to != "" {
		t, err := time.Parse(time.RFC3339Nano, to)
		if err != nil {
			bad("to", "%q is not an RFC 3339 time", to)
		}
		q.To = t.UTC()
	}
	q.From = q.To.Add(-defaultLogRange)
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
	if q.Limit, err = parseLimit(v.Get("limit")); err != nil {
		bad("limit", "%v", err)
	}
	if q.Forward, err = parseDirection(v.Get("direction")); err != nil {
		bad("direction", "%v", err)
	}
	if c := v.Get("cursor"); c != "" {
		if q.Cursor, err = openCursor(tenant, c); err != nil {
			bad("cursor", "%v", err)
		}
	}
	if len(problems) == 0 {
		if err := q.Validate(); err != nil {
			field, reason, _ := strings.Cut(err.Error(), ": ")
			bad(field, "%s", reason)
		} else if err := checkRange(q.From, q.To, "from and to", s.cfg.Logs.MaxQueryRange, "collector.logs.max_query_range"); err != nil {
			bad("from", "%v", err)
		}
	}
	return q, problems
}

// parseLimit reads a line limit: 1..metering.MaxLogLimit, default 100.
func parseLimit(v string) (int, error) {
	if v == "" {
		return defaultLogLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > metering.MaxLogLimit {
		return 0, fmt.Errorf("%q must be a number from 1 to %d", v, metering.MaxLogLimit)
	}
	return n, nil
}

// parseDirection reads Loki's direction: backward (newest first, the
// default) or forward. It reports whether the query goes forward.
func parseDirection(v string) (bool, error) {
	switch v {
	case "", "backward", "BACKWARD":
		return false, nil
	case "forward", "FORWARD":
		return true, nil
	}
	return false, fmt.Errorf("%q must be backward or forward", v)
}

func direction(forward bool) string {
	if forward {
		return "forward"
	}
	return "backward"
}

// A cursor the API hands out is the store's, with a check appended. The store
// refuses a cursor it did not give with an error that cannot be told from a
// failure, so the collector spots mistyped and truncated cursors first and
// answers them with a 400 instead of a 503.
const cursorCheckLen = 12

func cursorCheck(tenant, c string) string {
	sum := sha256.Sum256([]byte("paasmeter.log-cursor\x00" + tenant + "\x00" + c))
	return hex.EncodeToString(sum[:cursorCheckLen/2])
}

func sealCursor(tenant, c string) string { return c + "." + cursorCheck(tenant, c) }

func openCursor(tenant, sealed string) (string, error) {
	i := strings.LastIndexByte(sealed, '.')
	if i < 0 || sealed[i+1:] != cursorCheck(tenant, sealed[:i]) {
		return "", errors.New("is not a cursor this API gave for this tenant (pass next from a previous answer unchanged)")
	}
	return sealed[:i], nil
}
