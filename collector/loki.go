package collector

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/lokipush"
	"github.com/paasmeter/paasmeter/collector/readquery"
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

// The limits a refused Loki push hit, as counted in
// paasmeter_collector_loki_push_refusals_total.
const (
	refusedBodyTimeout  = "body_timeout"
	refusedInflight     = "inflight"
	refusedRequests     = "requests"
	refusedLinesPerPush = "lines_per_push"
	refusedLines        = "lines"
	refusedBytes        = "bytes"
	refusedStreamBytes  = "stream_bytes"
	refusedStreams      = "streams"
	// refusedHeld is a push of an institution sent before the Retry-After
	// of an earlier refusal had passed.
	refusedHeld = "held"
)

// lokiPush is POST /loki/api/v1/push. It answers as Loki does: 204 when every
// line is stored, 400 naming the stream and field of each invalid line (the
// valid lines of that push are stored, as Loki does, because Loki clients
// drop a push answered 400 rather than resend it), 429 with Retry-After past
// one of the tenant's limits (nothing stored). Lines get deterministic ids,
// so a push resent after a timeout stores nothing twice.
//
// The body is read before the push takes a slot. An institution's pushes
// take slots of their own (max_inflight_pushes, of which one institution
// gets max_inflight_pushes_per_tenant), never the agents' slots; an agent's
// push takes one of the agents'.
//
// An institution's push refused for one of its tenant-wide budgets (pushes,
// lines or bytes per second, streams) is told when to retry, and until then
// that institution's pushes are refused before they are decoded: decoding
// is most of a push's cost, and a client that ignores Retry-After would
// otherwise make the collector decode every push it then refuses (a flood
// of new streams past max_streams_per_tenant cost more CPU than everything
// else of issue 19's abuse benchmark). Agents' pushes are never held.
func (s *Server) lokiPush(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	tenant := r.PathValue("tenant")
	reject := func(code int, msg string, detail any) {
		s.countRejected(kindLogs, nil, 0, nil)
		s.metrics.lokiPushes.WithLabelValues(tenant, pushRejected).Inc()
		route.WriteError(w, code, msg, detail)
	}
	refuse := func(reason string) { s.metrics.pushRefusals.WithLabelValues(tenant, reason).Inc() }
	tooLarge := func() {
		reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("push exceeds %d bytes (also after decompression); send smaller batches", s.cfg.MaxBodyBytes),
			map[string]int64{"max_body_bytes": s.cfg.MaxBodyBytes})
	}
	raw, err := s.readBody(w, r)
	if err != nil {
		var mb *http.MaxBytesError
		switch {
		case errors.Is(err, errBodyTimeout):
			refuse(refusedBodyTimeout)
			s.bodyTimedOut(w, reject)
		case errors.As(err, &mb):
			tooLarge()
		default:
			reject(http.StatusBadRequest, err.Error(), nil)
		}
		return
	}
	now := s.clock.Now().UTC()
	institution := p.Role != auth.RoleAgent
	if institution {
		if h, wait := s.pushLimits.held(tenant, now); wait > 0 {
			refuse(refusedHeld)
			s.rateLimited(w, tenant, wait, 0, fmt.Sprintf("tenant %s was told to retry at %s (a push went past collector.logs.%s); pushes sent before then are refused unread; nothing was stored, retry later",
				tenant, h.until.Format(time.RFC3339), h.key), map[string]string{"retry_at": h.until.Format(time.RFC3339), "limit": h.key})
			return
		}
	}
	if wait, _ := s.pushLimits.take(now, []ask{{refusedRequests, s.pushLimits.requests, tenant, 1}}); wait > 0 {
		refuse(refusedRequests)
		if institution {
			s.pushLimits.hold(tenant, now, wait, "push_rate_requests")
		}
		s.rateLimited(w, tenant, wait, 0, fmt.Sprintf("push rate limit exceeded for tenant %s (limit: %d pushes/sec, collector.logs.push_rate_requests); nothing was stored, retry later",
			tenant, s.cfg.Logs.PushRateRequests), map[string]int{"push_rate_requests": s.cfg.Logs.PushRateRequests, "push_burst_requests": s.cfg.Logs.PushBurstRequests})
		return
	}
	release, ok := s.admitPush(w, r, tenant, p)
	if !ok {
		refuse(refusedInflight)
		return
	}
	defer release()

	_, span := s.tracer.Start(r.Context(), "loki.decode")
	streams, err := s.decodePush(raw, r.Header)
	span.End()
	if err != nil {
		var mb *http.MaxBytesError
		switch {
		case errors.Is(err, lokipush.ErrMediaType):
			reject(http.StatusUnsupportedMediaType, err.Error(), nil)
		case errors.Is(err, lokipush.ErrTooLarge) || errors.As(err, &mb):
			tooLarge()
		default:
			reject(http.StatusBadRequest, err.Error(), nil)
		}
		return
	}
	if p.Role == auth.RoleAgent {
		if !p.MayRun(tenant) {
			s.refusePushUnrun(r, p, tenant, streams)
			reject(http.StatusForbidden, notRun(p, tenant)+"; nothing was stored", map[string]string{"field": "tenant", "tenant": tenant})
			return
		}
		for _, st := range streams {
			if !p.CanWriteNode(st.Labels[logs.LabelNode]) {
				reject(http.StatusForbidden, fmt.Sprintf("this token writes for node %q only; stream %s names another node; nothing was stored",
					p.Node, truncateStream(logs.StreamKey(st.Labels))), nil)
				return
			}
		}
	}
	entries := 0
	for _, st := range streams {
		entries += len(st.Entries)
	}
	if entries > s.cfg.Logs.MaxLinesPerPush {
		refuse(refusedLinesPerPush)
		reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("push of %d lines exceeds collector.logs.max_lines_per_push (%d); send smaller batches; nothing was stored",
			entries, s.cfg.Logs.MaxLinesPerPush), map[string]int{"max_lines_per_push": s.cfg.Logs.MaxLinesPerPush})
		return
	}
	// Checked before the lines are validated and given ids, which is most
	// of a push's cost: a push beyond the line burst could never pass.
	if entries > s.cfg.Logs.IngestionBurstLines {
		refuse(refusedLines)
		reject(http.StatusRequestEntityTooLarge, fmt.Sprintf("push of %d lines exceeds tenant %s's ingestion burst of %d (collector.logs.ingestion_burst_lines): send smaller batches; nothing was stored",
			entries, tenant, s.cfg.Logs.IngestionBurstLines), map[string]int{"ingestion_rate_lines": s.cfg.Logs.IngestionRateLines, "ingestion_burst_lines": s.cfg.Logs.IngestionBurstLines})
		return
	}

	lines, problems, total := s.pushLines(tenant, streams, now)
	if len(lines) > 0 {
		if !s.admitLines(w, r, tenant, institution, lines, now) {
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

// admitPush takes a slot for a push of tenant by p: an agent's push one of
// the agents' slots, an institution's push one of its own and then one of
// the institutions' shared ones. Otherwise it answers 429 and returns false.
func (s *Server) admitPush(w http.ResponseWriter, r *http.Request, tenant string, p auth.Principal) (release func(), ok bool) {
	if p.Role == auth.RoleAgent {
		return s.admit(w, r, kindLogs)
	}
	own := s.tenantPushSlots[tenant] // wrap lets configured tenants only through
	if s.acquire(r.Context(), own) {
		if s.acquire(r.Context(), s.pushSlots) {
			var once sync.Once
			return func() {
				once.Do(func() {
					<-s.pushSlots
					<-own
				})
			}, true
		}
		<-own
	}
	s.metrics.throttled.WithLabelValues(kindLogs, throttledByInflight).Inc()
	s.rateLimited(w, tenant, time.Second, 0, fmt.Sprintf("too many pushes in flight for tenant %s (collector.logs.max_inflight_pushes_per_tenant %d, of max_inflight_pushes %d); nothing was stored, retry later",
		tenant, s.cfg.Logs.MaxInflightPushesPerTenant, s.cfg.Logs.MaxInflightPushes),
		map[string]int{"max_inflight_pushes_per_tenant": s.cfg.Logs.MaxInflightPushesPerTenant, "max_inflight_pushes": s.cfg.Logs.MaxInflightPushes})
	return nil, false
}

// admitLines checks a push's valid lines against the tenant's limits on
// streams and rates, and spends its budgets; otherwise it answers (413 for a
// push that could never pass, 429 for one that may later) and returns false.
// A 429 past a tenant-wide limit holds an institution's pushes.
func (s *Server) admitLines(w http.ResponseWriter, r *http.Request, tenant string, institution bool, lines []logs.Line, now time.Time) bool {
	refuse := func(reason string) { s.metrics.pushRefusals.WithLabelValues(tenant, reason).Inc() }
	bytes := 0
	perStream := map[string]int{}
	var keys []string
	for i := range lines {
		bytes += len(lines[i].Line)
		key := logs.StreamKey(lines[i].Labels)
		if _, seen := perStream[key]; !seen {
			keys = append(keys, key)
		}
		perStream[key] += len(lines[i].Line)
	}
	// Counted before the append, so pushes in flight together may pass the
	// limit by what they add: at most max_inflight_pushes_per_tenant pushes' worth.
	stored, missing, err := s.store.CountLogStreams(r.Context(), tenant, keys)
	if err != nil {
		s.log.Error("counting log streams failed", "tenant", tenant, "err", err)
		w.Header().Set("Retry-After", "5")
		route.WriteError(w, http.StatusServiceUnavailable, "log store unavailable; nothing was stored, resend the push", nil)
		return false
	}
	if missing > 0 && stored+missing > s.cfg.Logs.MaxStreamsPerTenant {
		refuse(refusedStreams)
		if institution {
			s.pushLimits.hold(tenant, now, 0, "max_streams_per_tenant")
		}
		s.rateLimited(w, tenant, 0, len(lines), fmt.Sprintf("tenant %s has %d log streams and this push would add %d, beyond collector.logs.max_streams_per_tenant (%d); nothing was stored. Streams without lines are deleted by retention",
			tenant, stored, missing, s.cfg.Logs.MaxStreamsPerTenant), map[string]int{"max_streams_per_tenant": s.cfg.Logs.MaxStreamsPerTenant, "streams": stored, "new_streams": missing})
		return false
	}
	asks := []ask{{refusedLines, s.pushLimits.lines, tenant, len(lines)}, {refusedBytes, s.pushLimits.bytes, tenant, bytes}}
	for _, key := range keys {
		asks = append(asks, ask{refusedStreamBytes, s.pushLimits.streamBytes, tenant + "\x00" + key, perStream[key]})
	}
	wait, hit := s.pushLimits.take(now, asks)
	if hit == nil {
		return true
	}
	refuse(hit.reason)
	lim := map[string]struct {
		noun, per         string
		rate, burst       int
		rateKey, burstKey string
	}{
		refusedLines:       {"lines", "lines/sec", s.cfg.Logs.IngestionRateLines, s.cfg.Logs.IngestionBurstLines, "ingestion_rate_lines", "ingestion_burst_lines"},
		refusedBytes:       {"line bytes", "bytes/sec", s.cfg.Logs.IngestionRateBytes, s.cfg.Logs.IngestionBurstBytes, "ingestion_rate_bytes", "ingestion_burst_bytes"},
		refusedStreamBytes: {"line bytes in one stream", "bytes/sec per stream", s.cfg.Logs.PerStreamRateBytes, s.cfg.Logs.PerStreamBurstBytes, "per_stream_rate_bytes", "per_stream_burst_bytes"},
	}[hit.reason]
	detail := map[string]int{lim.rateKey: lim.rate, lim.burstKey: lim.burst}
	if wait == 0 {
		s.countRejected(kindLogs, nil, 0, nil)
		s.metrics.lokiPushes.WithLabelValues(tenant, pushRejected).Inc()
		route.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("push of %d %s exceeds tenant %s's ingestion burst of %d (collector.logs.%s): send smaller batches; nothing was stored",
			hit.n, lim.noun, tenant, lim.burst, lim.burstKey), detail)
		return false
	}
	if institution && hit.reason != refusedStreamBytes { // one stream's budget holds that stream only
		s.pushLimits.hold(tenant, now, wait, lim.rateKey)
	}
	s.rateLimited(w, tenant, wait, len(lines), fmt.Sprintf("ingestion rate limit exceeded for tenant %s (limit: %d %s) while attempting to ingest %d lines totaling %d bytes (collector.logs.%s); nothing was stored, retry later",
		tenant, lim.rate, lim.per, len(lines), bytes, lim.rateKey), detail)
	return false
}

// rateLimited answers 429 to a push of lines valid lines that a limit of
// tenant refused, with Retry-After wait (at least a second).
func (s *Server) rateLimited(w http.ResponseWriter, tenant string, wait time.Duration, lines int, msg string, detail any) {
	s.metrics.records.WithLabelValues(kindLogs, tenant, pushRateLimited).Add(float64(lines))
	s.metrics.lokiPushes.WithLabelValues(tenant, pushRateLimited).Inc()
	w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter(wait)/time.Second)))
	route.WriteError(w, http.StatusTooManyRequests, msg, detail)
}

// retryAfter is the Retry-After a refusal that may pass after wait gives: in
// whole seconds, at least one.
func retryAfter(wait time.Duration) time.Duration {
	return time.Duration(max(1, math.Ceil(wait.Seconds()))) * time.Second
}

// decodePush decodes a push body read by readBody, bounded by max_body_bytes
// after gzip and snappy decompression too.
func (s *Server) decodePush(raw []byte, h http.Header) ([]lokipush.Stream, error) {
	body, err := s.body(raw, h.Get("Content-Encoding"))
	if err != nil {
		return nil, err
	}
	defer body.Close()
	all, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("reading the push: %w", err)
	}
	return lokipush.Decode(all, h.Get("Content-Type"), s.cfg.MaxBodyBytes)
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

// pushLimits are the token buckets of Loki pushes: per tenant, of requests,
// lines and line bytes; per tenant and stream, of line bytes; and the
// tenants whose pushes are held until a Retry-After passes.
type pushLimits struct {
	requests, lines, bytes, streamBytes *buckets

	mu    sync.Mutex
	holds map[string]pushHold // by tenant; only configured tenants get here
}

// pushHold is a tenant told to retry at until, for the limit key.
type pushHold struct {
	until time.Time
	key   string
}

func newPushLimits(c LogsConfig) *pushLimits {
	return &pushLimits{
		requests:    newBuckets(c.PushRateRequests, c.PushBurstRequests),
		lines:       newBuckets(c.IngestionRateLines, c.IngestionBurstLines),
		bytes:       newBuckets(c.IngestionRateBytes, c.IngestionBurstBytes),
		streamBytes: newBuckets(c.PerStreamRateBytes, c.PerStreamBurstBytes),
		holds:       map[string]pushHold{},
	}
}

// hold holds tenant's pushes until the Retry-After a refusal at now for the
// limit key, which may pass after wait, gives.
func (p *pushLimits) hold(tenant string, now time.Time, wait time.Duration, key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := now.Add(retryAfter(wait)); until.After(p.holds[tenant].until) {
		p.holds[tenant] = pushHold{until: until, key: key}
	}
}

// held returns tenant's hold and how long it still lasts at now (0: none).
func (p *pushLimits) held(tenant string, now time.Time) (pushHold, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.holds[tenant]
	if !ok {
		return h, 0
	}
	if !now.Before(h.until) {
		delete(p.holds, tenant)
		return h, 0
	}
	return h, h.until.Sub(now)
}

// ask is n tokens of the bucket of key in b; reason names the limit.
type ask struct {
	reason string
	b      *buckets
	key    string
	n      int
}

// take spends every ask at now, all or none. When one cannot be spent it
// returns it: with wait=0 if its n exceeds the burst and could never be
// admitted, otherwise with how long to wait (the longest of the asks).
func (p *pushLimits) take(now time.Time, asks []ask) (wait time.Duration, hit *ask) {
	done := make([]*rate.Reservation, 0, len(asks))
	defer func() {
		if hit != nil {
			for _, r := range done {
				r.CancelAt(now)
			}
		}
	}()
	for i := range asks {
		r := asks[i].b.get(asks[i].key, now).ReserveN(now, asks[i].n)
		if !r.OK() {
			return 0, &asks[i]
		}
		done = append(done, r)
		if d := r.DelayFrom(now); d > wait {
			wait, hit = d, &asks[i]
		}
	}
	return wait, hit
}

// buckets are token buckets by key, made full on first use. Only configured
// tenants get here (wrap checks), and buckets that are full again are
// forgotten as the map grows, so a tenant's old streams do not accumulate.
type buckets struct {
	mu      sync.Mutex
	limit   rate.Limit
	burst   int
	m       map[string]*rate.Limiter
	sweepAt int
}

// minSweep is the size below which buckets never sweeps its map.
const minSweep = 1024

func newBuckets(perSecond, burst int) *buckets {
	return &buckets{limit: rate.Limit(perSecond), burst: burst, m: map[string]*rate.Limiter{}, sweepAt: minSweep}
}

func (b *buckets) get(key string, now time.Time) *rate.Limiter {
	b.mu.Lock()
	defer b.mu.Unlock()
	if lim, ok := b.m[key]; ok {
		return lim
	}
	if len(b.m) >= b.sweepAt {
		for k, lim := range b.m {
			if lim.TokensAt(now) >= float64(b.burst) {
				delete(b.m, k) // full: the same as a new one
			}
		}
		b.sweepAt = max(2*len(b.m), minSweep)
	}
	lim := rate.NewLimiter(b.limit, b.burst)
	b.m[key] = lim
	return lim
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
	if q.From, q.To, err = s.queries.LokiRange(v, readquery.DefaultLogRange); err != nil {
		bad("start", err)
	}
	if q.Limit, err = readquery.Limit(v.Get("limit")); err != nil {
		bad("limit", err)
	}
	if q.Forward, err = readquery.Direction(v.Get("direction")); err != nil {
		bad("direction", err)
	}
	if len(problems) > 0 {
		route.WriteError(w, http.StatusBadRequest, "invalid query: "+problems[0].Field+": "+problems[0].Reason, problems)
		return
	}
	done, ok := s.readSlot(w, q.Tenant)
	if !ok {
		return
	}
	s.deliverBy(w)
	const tail = "]}}"
	a := newStreamedAnswer(w, lokiResponse{Status: "success", Data: lokiStreams{ResultType: "streams", Result: []lokiStream{}}}, tail, s.cfg.Logs.MaxResponseBytes)
	defer func() { done(a.written) }()
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
	from, to, err := s.queries.LokiRange(r.URL.Query(), readquery.DefaultLabelRange)
	if err != nil {
		route.WriteError(w, http.StatusBadRequest, "invalid query: start, end: "+err.Error(), []route.FieldError{{Field: "start", Reason: err.Error()}})
		return
	}
	tenant := r.PathValue("tenant")
	done, ok := s.readSlot(w, tenant)
	if !ok {
		return
	}
	defer done(0) // names and values of the tenant's streams: small beside lines
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
