package collector

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/lokipush"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/logs/logql"
	"github.com/paasmeter/paasmeter/metering"
)

// The outcomes of a Loki push, as counted in paasmeter_collector_loki_pushes_total.
const (
	pushAccepted    = "accepted"
	pushRateLimited = "rate_limited"
	pushRejected    = "rejected"
)

// lokiPush is POST /loki/api/v1/push. It answers as Loki does: 204 when every
// line is stored, 400 naming the stream and field of each invalid line (the
// valid lines of that push are stored, as Loki does, because Loki clients
// drop a push answered 400 rather than resend it), 429 with Retry-After past
// the tenant's ingestion rate (nothing stored). Lines get deterministic ids,
// so a push resent after a timeout stores nothing twice.
func (s *Server) lokiPush(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	release, ok := s.admit(w, r, kindLogs)
	if !ok {
		return
	}
	defer release()
	reject := func(code int, msg string, detail any) {
		s.countRejected(kindLogs, nil, 0, nil)
		s.metrics.lokiPushes.WithLabelValues(tenant, pushRejected).Inc()
		route.WriteError(w, code, msg, detail)
	}

	_, span := s.tracer.Start(r.Context(), "loki.decode")
	streams, err := s.decodePush(w, r)
	span.End()
	if err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.Is(err, lokipush.ErrMediaType):
			reject(http.StatusUnsupportedMediaType, err.Error(), nil)
		case errors.Is(err, lokipush.ErrTooLarge) || errors.As(err, &tooLarge):
			reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("push exceeds %d bytes (also after decompression); send smaller batches", s.cfg.MaxBodyBytes),
				map[string]int64{"max_body_bytes": s.cfg.MaxBodyBytes})
		default:
			reject(http.StatusBadRequest, err.Error(), nil)
		}
		return
	}
	if p.Role == auth.RoleAgent {
		for _, st := range streams {
			if !p.CanWriteNode(st.Labels[logs.LabelNode]) {
				reject(http.StatusForbidden, fmt.Sprintf("this token writes for node %q only; stream %s names another node; nothing was stored",
					p.Node, truncateStream(logs.StreamKey(st.Labels))), nil)
				return
			}
		}
	}

	now := s.clock.Now().UTC()
	lines, problems, total := s.pushLines(tenant, streams, now)
	bytes := 0
	for i := range lines {
		bytes += len(lines[i].Line)
	}
	if len(lines) > 0 {
		wait, ok := s.limiters.take(tenant, now, bytes)
		switch {
		case !ok:
			reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("push of %d line bytes exceeds tenant %s's ingestion burst of %d bytes: send smaller batches",
				bytes, tenant, s.cfg.Logs.IngestionBurstBytes), nil)
			return
		case wait > 0:
			s.metrics.records.WithLabelValues(kindLogs, tenant, pushRateLimited).Add(float64(len(lines)))
			s.metrics.lokiPushes.WithLabelValues(tenant, pushRateLimited).Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			route.WriteError(w, http.StatusTooManyRequests,
				fmt.Sprintf("ingestion rate limit exceeded for tenant %s (limit: %d bytes/sec) while attempting to ingest %d lines totaling %d bytes; nothing was stored, retry later",
					tenant, s.cfg.Logs.IngestionRateBytes, len(lines), bytes),
				map[string]int{"ingestion_rate_bytes": s.cfg.Logs.IngestionRateBytes, "ingestion_burst_bytes": s.cfg.Logs.IngestionBurstBytes})
			return
		}
		for i := range lines {
			lines[i].ReceivedAt = now
		}
		s.metrics.batchRecords.WithLabelValues(kindLogs).Observe(float64(len(lines)))
		s.beforeAppend(release)
		res, err := s.store.AppendLogs(r.Context(), lines)
		if err != nil {
			s.storeFailed(w, kindLogs, len(lines), p, err)
			return
		}
		tenants := make([]string, len(lines))
		for i := range tenants {
			tenants[i] = tenant
		}
		s.countStored(kindLogs, tenants, res.Duplicates)
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.Int("paasmeter.records", len(lines)),
			attribute.Int("paasmeter.new", len(lines)-len(res.Duplicates)), attribute.Int("paasmeter.duplicates", len(res.Duplicates)))
	}
	if len(problems) == 0 {
		s.metrics.lokiPushes.WithLabelValues(tenant, pushAccepted).Inc()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	rejected := total - len(lines)
	s.metrics.records.WithLabelValues(kindLogs, tenant, "rejected").Add(float64(rejected))
	s.metrics.lokiPushes.WithLabelValues(tenant, pushRejected).Inc()
	msg := fmt.Sprintf("%d of %d line(s) rejected, the other %d stored: %s", rejected, total, len(lines), problems[0])
	if len(problems) > 1 {
		msg += fmt.Sprintf(" (and %d more problem(s))", len(problems)-1)
	}
	route.WriteError(w, http.StatusBadRequest, msg, map[string]any{"problems": firstN(problems, maxProblems), "problems_total": len(problems)})
}

// decodePush reads and decodes a push body, bounded by max_body_bytes before
// and after gzip and snappy decompression.
func (s *Server) decodePush(w http.ResponseWriter, r *http.Request) ([]lokipush.Stream, error) {
	body, err := s.body(w, r)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	raw, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("reading the push: %w", err)
	}
	return lokipush.Decode(raw, r.Header.Get("Content-Type"), s.cfg.MaxBodyBytes)
}

// pushProblem is why a stream or one of its entries was refused.
type pushProblem struct {
	// Stream is the stream's labels, as Loki prints them.
	Stream string `json:"stream"`
	// Entry is the index of the line in its stream; absent when the whole
	// stream was refused for its labels.
	Entry  *int   `json:"entry,omitempty"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (p pushProblem) String() string {
	if p.Entry == nil {
		return fmt.Sprintf("stream %s: %s %s", p.Stream, p.Field, p.Reason)
	}
	return fmt.Sprintf("stream %s: entry %d: %s %s", p.Stream, *p.Entry, p.Field, p.Reason)
}

// pushLines turns a push of tenant into valid lines with their ids, and
// problems for the rest; total counts every entry of the push. Seq counts
// the entries of one stream that share a timestamp, in push order, so the
// same push always gives the same ids.
func (s *Server) pushLines(tenant string, streams []lokipush.Stream, now time.Time) (lines []logs.Line, problems []pushProblem, total int) {
	lim := s.cfg.LogLimits()
	type at struct {
		stream string
		ns     int64
	}
	seq := map[at]int{}
	for _, st := range streams {
		total += len(st.Entries)
		key := logs.StreamKey(st.Labels)
		shown := truncateStream(key)
		if ps := logs.ValidateLabels(0, st.Labels, lim); len(ps) > 0 {
			for _, p := range ps {
				problems = append(problems, pushProblem{Stream: shown, Field: p.Field, Reason: p.Reason})
			}
			continue
		}
		for j, e := range st.Entries {
			k := at{key, e.Time.UnixNano()}
			l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: tenant, Labels: st.Labels, Time: e.Time, Seq: seq[k], Line: e.Line}
			seq[k]++
			// The labels were checked once above and the id is set here: the
			// entry's own fields are all that is left to check.
			l.SetIDOfStream(key)
			if ps := logs.CheckEntry(&l, j, now, lim); len(ps) > 0 {
				for _, p := range ps {
					problems = append(problems, pushProblem{Stream: shown, Entry: &p.Index, Field: p.Field, Reason: p.Reason})
				}
				continue
			}
			lines = append(lines, l)
		}
	}
	return lines, problems, total
}

// truncateStream shortens a stream's labels for a message.
func truncateStream(s string) string {
	const max = 256
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// tenantLimiters are the tenants' token buckets of line bytes for Loki pushes.
type tenantLimiters struct {
	mu    sync.Mutex
	limit rate.Limit
	burst int
	m     map[string]*rate.Limiter
}

func newTenantLimiters(perSecond, burst int) *tenantLimiters {
	return &tenantLimiters{limit: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}}
}

// take spends n bytes of tenant's budget at now, whole or not at all. It
// returns how long to wait when the budget is short (nothing spent), and
// ok=false when n exceeds the burst and could never be admitted.
func (t *tenantLimiters) take(tenant string, now time.Time, n int) (wait time.Duration, ok bool) {
	t.mu.Lock()
	lim, found := t.m[tenant]
	if !found {
		// Only configured tenants get here (wrap checks), so the map stays small.
		lim = rate.NewLimiter(t.limit, t.burst)
		t.m[tenant] = lim
	}
	t.mu.Unlock()
	r := lim.ReserveN(now, n)
	if !r.OK() {
		return 0, false
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, true
	}
	return 0, true
}

// lokiResponse is the envelope of Loki's read API.
type lokiResponse struct {
	Status string `json:"status"`
	Data   any    `json:"data"`
	// Warnings are shown by Grafana beside the answer, as Prometheus's and
	// Loki's are.
	Warnings []string `json:"warnings,omitempty"`
}

// lokiStreams is the data of a log query's answer.
type lokiStreams struct {
	ResultType string       `json:"resultType"`
	Result     []lokiStream `json:"result"`
}

type lokiStream struct {
	Stream map[string]string `json:"stream"`
	// Values are [<unix ns>, <line>] pairs in the query's direction.
	Values [][2]string `json:"values"`
}

// lokiQueryRange is GET /loki/api/v1/query_range for log queries of the
// logql subset. Parameters as Loki's: query, start and end (Unix ns or s, or
// RFC 3339; default the last hour), since (instead of start), limit (100),
// direction (backward). Others, such as step, are ignored, as they are for
// log queries in Loki.
//
// The answer is streamed as the store hands lines over. Consecutive lines of
// one stream share an entry of result; a stream whose lines interleave with
// another's has several entries, which Loki clients merge by their labels.
// An answer that would pass logs.max_response_bytes ends early, as if limit
// were smaller, with a warning saying so: Loki has no cursor, so a client
// goes on as it does past limit, from the last line's time (logcli's
// --batch does; Grafana shows the warning and the lines it got).
func (s *Server) lokiQueryRange(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	v := r.URL.Query()
	q := metering.LogQuery{Tenant: r.PathValue("tenant")}
	var problems []route.FieldError
	bad := func(field string, err error) {
		problems = append(problems, route.FieldError{Field: field, Reason: err.Error()})
	}
	var err error
	if v.Get("query") == "" {
		bad("query", errors.New("is required: a LogQL log query such as {app=\"pricing\"} |= \"error\""))
	} else if q.Selector, err = logql.Parse(v.Get("query")); err != nil {
		bad("query", err)
	}
	if q.From, q.To, err = s.lokiRange(v, defaultLogRange); err != nil {
		bad("start", err)
	}
	if q.Limit, err = parseLimit(v.Get("limit")); err != nil {
		bad("limit", err)
	}
	if q.Forward, err = parseDirection(v.Get("direction")); err != nil {
		bad("direction", err)
	}
	if len(problems) > 0 {
		route.WriteError(w, http.StatusBadRequest, "invalid query: "+problems[0].Field+": "+problems[0].Reason, problems)
		return
	}
	release, ok := s.readSlot(w, q.Tenant)
	if !ok {
		return
	}
	defer release()
	s.deliverBy(w)
	const tail = "]}}"
	a := newStreamedAnswer(w, lokiResponse{Status: "success", Data: lokiStreams{ResultType: "streams", Result: []lokiStream{}}}, tail, s.cfg.Logs.MaxResponseBytes)
	var stream string // the key of the stream of the entry being written
	var value, entry []byte
	next, err := s.store.ScanLogs(r.Context(), q, func(l logs.Line) bool {
		value = append(value[:0], a.marshal([2]string{strconv.FormatInt(l.Time.UnixNano(), 10), l.Line})...)
		key := logs.StreamKey(l.Labels)
		if a.parts > 0 && key == stream {
			return a.add(comma, value)
		}
		// A new entry of result: close the last one's values, open this one's.
		entry = append(append(entry[:0], `{"stream":`...), a.marshal(l.Labels)...)
		entry = append(append(entry, `,"values":[`...), value...)
		var sep []byte
		if a.parts > 0 {
			sep = []byte("]},")
		}
		stream = key
		return a.add(sep, entry)
	})
	end := tail
	if a.parts > 0 {
		end = "]}" + tail
	}
	if next != "" && a.parts < q.Limit { // cut by the budget, not by limit
		end = end[:len(end)-1] + `,"warnings":` + string(a.marshal([]string{s.budgetWarning(a.parts,
			"query again from the last line's time, as past limit")})) + "}"
	}
	s.finishAnswer(a, end+"\n", err, q.Tenant)
}

// defaultLabelRange is how far back Loki's label endpoints look by default.
const defaultLabelRange = 6 * time.Hour

// lokiLabels is GET /loki/api/v1/labels: the label names of the tenant's
// streams with lines in [start, end).
func (s *Server) lokiLabels(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	s.lokiLabelList(w, r, func(tenant string, from, to time.Time) ([]string, error) {
		return s.store.LogLabels(r.Context(), tenant, from, to)
	})
}

// lokiLabelValues is GET /loki/api/v1/label/{name}/values.
func (s *Server) lokiLabelValues(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	s.lokiLabelList(w, r, func(tenant string, from, to time.Time) ([]string, error) {
		return s.store.LogLabelValues(r.Context(), tenant, r.PathValue("name"), from, to)
	})
}

func (s *Server) lokiLabelList(w http.ResponseWriter, r *http.Request, list func(tenant string, from, to time.Time) ([]string, error)) {
	from, to, err := s.lokiRange(r.URL.Query(), defaultLabelRange)
	if err != nil {
		route.WriteError(w, http.StatusBadRequest, "invalid query: start, end: "+err.Error(), []route.FieldError{{Field: "start", Reason: err.Error()}})
		return
	}
	tenant := r.PathValue("tenant")
	release, ok := s.readSlot(w, tenant)
	if !ok {
		return
	}
	defer release()
	out, err := list(tenant, from, to)
	if err != nil {
		s.log.Error("log label query failed", "tenant", tenant, "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "log store unavailable", nil)
		return
	}
	if out == nil {
		out = []string{}
	}
	route.WriteJSON(w, http.StatusOK, lokiResponse{Status: "success", Data: out})
}

// lokiRange reads Loki's start, end and since parameters: end defaults to now,
// start to end minus since, or minus def; the range is at most
// logs.max_query_range, as Loki's max_query_length bounds it.
func (s *Server) lokiRange(v url.Values, def time.Duration) (from, to time.Time, err error) {
	to = s.clock.Now().UTC()
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
	return from, to, checkRange(from, to, "start and end", s.cfg.Logs.MaxQueryRange, "collector.logs.max_query_range")
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
