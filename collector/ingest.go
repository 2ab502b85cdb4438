package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/lokipush"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// IngestResult counts what became of an accepted batch.
type IngestResult struct {
	// Records is the number of records in the batch;
	// New + Duplicates + len(IngestReply.Conflicts) = Records.
	Records int `json:"records"`
	New     int `json:"new"`
	// Duplicates counts the records already stored with the same content: resends.
	Duplicates int `json:"duplicates"`
}

// IngestReply is the answer to an accepted batch: its counts, and each
// record whose id was stored already with other content.
type IngestReply struct {
	IngestResult
	Conflicts []Conflict `json:"conflicts,omitempty"`
}

// Conflict is a record of a batch whose id was stored with other content:
// it was not stored, the first arrival stays.
type Conflict struct {
	Index int    `json:"index"`
	ID    string `json:"id"`
}

// maxProblems bounds how many problems an error answer lists.
const maxProblems = 100

// kind is what differs between the record kinds agents send (usage records,
// events, log lines); everything else about ingesting them is the same.
type kind[T any] struct {
	name string // metric label and span prefix
	// decode reads and validates a batch received at now, under the kind's limits.
	decode func(r io.Reader, now time.Time) ([]T, error)
	// labels returns the tenant and node a record names.
	labels func(*T) (tenant, node string)
	// id returns a record's id.
	id func(*T) string
	// vet, unless nil, checks a valid batch of the token's node further,
	// against what the request says of the node and what the store holds:
	// problems refuse the batch like invalid records; a *badRequest is
	// answered 400, any other error as the store's.
	vet    func(r *http.Request, recs []T) ([]batch.Problem, error)
	stamp  func(*T, time.Time)
	append func(context.Context, []T) (metering.AppendResult, error)
}

func (s *Server) usageKind() kind[usage.Record] {
	return kind[usage.Record]{
		name: "usage",
		decode: func(r io.Reader, now time.Time) ([]usage.Record, error) {
			return usage.DecodeBatch(r, now, s.cfg.Limits())
		},
		labels: func(r *usage.Record) (string, string) { return r.Tenant, r.Node },
		id:     func(r *usage.Record) string { return r.ID },
		vet:    s.vetUsage,
		stamp:  func(r *usage.Record, t time.Time) { r.ReceivedAt = t },
		append: s.store.AppendUsage,
	}
}

func (s *Server) eventKind() kind[events.Event] {
	return kind[events.Event]{
		name: "event",
		decode: func(r io.Reader, now time.Time) ([]events.Event, error) {
			return events.DecodeBatch(r, now, s.cfg.Limits())
		},
		labels: func(e *events.Event) (string, string) { return e.Tenant, e.Node },
		id:     func(e *events.Event) string { return e.ID },
		vet:    s.vetEvents,
		stamp:  func(e *events.Event, t time.Time) { e.ReceivedAt = t },
		append: s.store.AppendEvents,
	}
}

// logKind is log lines from agents; their node is their stream's node label.
func (s *Server) logKind() kind[logs.Line] {
	return kind[logs.Line]{
		name: kindLogs,
		decode: func(r io.Reader, now time.Time) ([]logs.Line, error) {
			return logs.DecodeBatch(r, now, s.cfg.LogLimits())
		},
		labels: func(l *logs.Line) (string, string) { return l.Tenant, l.Labels[logs.LabelNode] },
		id:     func(l *logs.Line) string { return l.ID },
		stamp:  func(l *logs.Line, t time.Time) { l.ReceivedAt = t },
		append: s.store.AppendLogs,
	}
}

// kindLogs is the kind label of log lines, whichever API they came through.
const kindLogs = "logs"

// ingest handles a batch from one agent (POST /api/v1/usage, /api/v1/events,
// /api/v1/logs): stored whole or not at all, acknowledged only after the store
// committed it.
func ingest[T any](s *Server, k kind[T]) func(http.ResponseWriter, *http.Request, auth.Principal) {
	return func(w http.ResponseWriter, r *http.Request, p auth.Principal) {
		raw, err := s.readBody(w, r)
		if errors.Is(err, errBodyTimeout) {
			s.metrics.throttled.WithLabelValues(k.name, throttledByBodyTimeout).Inc()
			s.bodyTimedOut(w, func(code int, msg string, detail any) { route.WriteError(w, code, msg, detail) })
			return
		}
		if err != nil {
			s.rejectBatch(w, k.name, nil, err, nil)
			return
		}
		release, ok := s.admit(w, r, k.name)
		if !ok {
			return
		}
		defer release()

		body, err := s.body(raw, r.Header.Get("Content-Encoding"))
		if err != nil {
			route.WriteError(w, http.StatusBadRequest, err.Error(), nil)
			return
		}
		defer body.Close()

		now := s.clock.Now().UTC()
		_, span := s.tracer.Start(r.Context(), k.name+".decode")
		recs, err := k.decode(body, now)
		span.End()
		tenants := make([]string, len(recs))
		var problems []batch.Problem
		// foreign name another node; unrun an institution the credential's
		// node may not run: refused like invalid records, so that the agent
		// sets them aside and ships its other institutions' records.
		var foreign, unrun []int
		for i := range recs {
			tenant, node := k.labels(&recs[i])
			tenants[i] = tenant
			switch {
			case !s.tenants[tenant]:
				problems = append(problems, batch.Problem{Index: i, Field: "tenant", Reason: fmt.Sprintf("%q is not a configured institution", batch.Truncate(tenant))})
			case !p.MayRun(tenant):
				unrun = append(unrun, i)
			}
			if !p.CanWriteNode(node) {
				foreign = append(foreign, i)
			}
		}
		if len(unrun) > 0 {
			problems, err = s.refuseUnrun(r, p, k.name, tenants, unrun, problems, err)
		}
		if err == nil && len(problems) == 0 && len(foreign) == 0 && k.vet != nil {
			vetted, verr := k.vet(r, recs)
			var bad *badRequest
			switch {
			case errors.As(verr, &bad):
				s.countRejected(k.name, tenants, len(recs), nil)
				route.WriteError(w, http.StatusBadRequest, verr.Error(), nil)
				return
			case verr != nil:
				s.storeFailed(w, k.name, len(recs), p, verr)
				return
			}
			problems = vetted
		}
		if err == nil && len(problems) > 0 {
			err = &batch.InvalidError{Problems: problems, Records: len(recs)}
		}
		if err != nil {
			s.rejectBatch(w, k.name, tenants, err, unrun)
			return
		}
		if len(foreign) > 0 {
			s.countRejected(k.name, tenants, len(recs), foreign)
			route.WriteError(w, http.StatusForbidden,
				fmt.Sprintf("this token writes for node %q only; %d record(s) name another node; nothing was stored", p.Node, len(foreign)),
				map[string]any{"indexes": firstN(foreign, maxProblems)})
			return
		}

		for i := range recs {
			k.stamp(&recs[i], now)
		}
		s.metrics.batchRecords.WithLabelValues(k.name).Observe(float64(len(recs)))
		s.beforeAppend(release)
		res, err := k.append(r.Context(), recs)
		if err != nil {
			s.storeFailed(w, k.name, len(recs), p, err)
			return
		}
		s.countAppended(k.name, tenants, res)
		out := IngestReply{IngestResult: IngestResult{Records: len(recs), New: len(recs) - len(res.Duplicates),
			Duplicates: len(res.Duplicates) - len(res.Conflicts)}}
		for _, i := range res.Conflicts {
			out.Conflicts = append(out.Conflicts, Conflict{Index: i, ID: k.id(&recs[i])})
		}
		if len(out.Conflicts) > 0 {
			s.log.Warn("records conflict with stored ones of the same id: the first arrivals stay, these were dropped",
				"kind", k.name, "principal", p.Name, "node", p.Node, "conflicts", len(out.Conflicts),
				"first_index", out.Conflicts[0].Index, "first_id", out.Conflicts[0].ID, "first_tenant", tenants[out.Conflicts[0].Index])
		}
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.Int("paasmeter.records", out.Records),
			attribute.Int("paasmeter.new", out.New), attribute.Int("paasmeter.duplicates", out.Duplicates),
			attribute.Int("paasmeter.conflicts", len(out.Conflicts)))
		route.WriteJSON(w, http.StatusOK, out)
	}
}

// admit takes one of the agents' ingest slots for a request of kind, or
// answers 429 and returns false. The caller calls release, once or more,
// when done.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, kind string) (release func(), ok bool) {
	if s.acquire(r.Context(), s.slots) {
		s.metrics.inflight.Inc()
		var once sync.Once
		return func() {
			once.Do(func() {
				<-s.slots
				s.metrics.inflight.Dec()
			})
		}, true
	}
	s.metrics.throttled.WithLabelValues(kind, throttledByInflight).Inc()
	w.Header().Set("Retry-After", "1")
	route.WriteError(w, http.StatusTooManyRequests, "collector busy: retry later", map[string]int{"max_inflight_batches": s.cfg.MaxInflightBatches})
	return nil, false
}

// beforeAppend is called with a decoded batch about to be appended. Behind a
// batching writer the append waits for a flush, possibly with many others:
// the writer bounds what waits (max_queued), so the slot, which bounds
// decoding, is released for the next batch. Holding it would cap a flush at
// max_inflight_batches batches and leave the CPU idle while it is written.
// Without the writer the slot is held until the store answers, as it is then
// the only bound on the batches waiting for the store.
func (s *Server) beforeAppend(release func()) {
	if s.batched {
		release()
	}
}

// storeFailed answers a batch the store did not take: nothing of it was
// stored, and the client should resend it — after the store's own hint when
// it gave one (a batching writer that is full or found the store down).
func (s *Server) storeFailed(w http.ResponseWriter, kind string, records int, p auth.Principal, err error) {
	retryAfter := 5 * time.Second
	var later *metering.RetryLaterError
	if errors.As(err, &later) {
		// Expected under load or during an outage, logged once per flush by the
		// batching writer and counted in its metrics: one line per agent batch
		// would flood the log exactly when the operator reads it.
		s.log.Debug("store refused batch", "kind", kind, "records", records, "principal", p.Name, "err", err)
		retryAfter = later.After
	} else {
		s.log.Error("storing batch failed", "kind", kind, "records", records, "principal", p.Name, "err", err)
	}
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retryAfter.Seconds())))))
	switch {
	case errors.Is(err, metering.ErrOverloaded):
		s.metrics.throttled.WithLabelValues(kind, throttledByStore).Inc()
		route.WriteError(w, http.StatusTooManyRequests, "store busy; nothing was stored, resend the batch later", nil)
	case errors.Is(err, context.Canceled):
		route.WriteError(w, 499, "request canceled; nothing was stored", nil) // client gone: it will resend, dedup makes that safe
	default:
		route.WriteError(w, http.StatusServiceUnavailable, "store unavailable; nothing was stored, resend the batch", nil)
	}
}

// errBodyTimeout is a request body that did not arrive within body_read_timeout.
var errBodyTimeout = errors.New("request body not received in time")

// readBody reads a request's raw body, bounded by MaxBodyBytes and within
// BodyReadTimeout. Handlers call it before they take an ingest slot, so a
// client that sends slowly holds its own connection and nothing shared.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	// A socket deadline is on the wall clock, whatever clock the server was given.
	if err := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyReadTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, errBodyTimeout
	}
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	// Clear the deadline: once the body is read, the server watches the
	// connection for a hang-up, and a deadline passing while the store works
	// would cancel the request.
	if err := rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	return raw, nil
}

// bodyTimedOut answers, through write, a request whose body missed
// BodyReadTimeout, and closes its connection.
func (s *Server) bodyTimedOut(w http.ResponseWriter, write func(code int, msg string, detail any)) {
	w.Header().Set("Connection", "close")
	write(http.StatusRequestTimeout,
		fmt.Sprintf("request body not received within %s (collector.body_read_timeout); nothing was stored", s.cfg.BodyReadTimeout),
		map[string]string{"body_read_timeout": s.cfg.BodyReadTimeout.String()})
}

// body returns a raw body read by readBody, gzip-decoded if the client says
// so (encoding is its Content-Encoding), bounded by MaxBodyBytes after
// decoding too.
func (s *Server) body(raw []byte, encoding string) (io.ReadCloser, error) {
	switch encoding {
	case "", "identity":
		return io.NopCloser(bytes.NewReader(raw)), nil
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding: body is not gzip: %w", err)
		}
		return &limitedGzip{zr: zr, left: s.cfg.MaxBodyBytes}, nil
	default:
		return nil, fmt.Errorf("Content-Encoding: %q is not supported (use gzip or none)", encoding)
	}
}

// limitedGzip bounds the decoded size of a gzip body, so a small bomb cannot
// expand into gigabytes.
type limitedGzip struct {
	zr   *gzip.Reader
	left int64
}

func (l *limitedGzip) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, &http.MaxBytesError{Limit: 0}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.zr.Read(p)
	l.left -= int64(n)
	return n, err
}

func (l *limitedGzip) Close() error { return l.zr.Close() }

// rejectBatch answers a batch that failed decoding or validation. Nothing of it
// was stored. tenants are those of the records that could be decoded; unrun
// the indexes of those refused because the credential's node may not run
// their institution.
func (s *Server) rejectBatch(w http.ResponseWriter, kind string, tenants []string, err error, unrun []int) {
	var inv *batch.InvalidError
	var tooMany *batch.TooManyError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		s.countRejected(kind, nil, 0, nil)
		route.WriteError(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body exceeds %d bytes; split the batch", s.cfg.MaxBodyBytes), map[string]int64{"max_body_bytes": s.cfg.MaxBodyBytes})
	case errors.As(err, &tooMany):
		s.countRejected(kind, nil, 0, nil)
		route.WriteError(w, http.StatusRequestEntityTooLarge, err.Error()+"; split the batch", map[string]int{"max_records": tooMany.Limit})
	case errors.As(err, &inv):
		bad := make([]int, 0, len(inv.Problems))
		for _, p := range inv.Problems {
			bad = append(bad, p.Index)
		}
		s.countRefused(kind, tenants, inv.Records, bad, unrun)
		route.WriteError(w, http.StatusBadRequest,
			fmt.Sprintf("batch rejected: %d problem(s) in %d record(s); nothing was stored", len(inv.Problems), inv.Records),
			map[string]any{"problems": firstN(inv.Problems, maxProblems), "problems_total": len(inv.Problems)})
	default:
		s.countRejected(kind, nil, 0, nil)
		route.WriteError(w, http.StatusBadRequest, err.Error(), nil)
	}
}

// countRejected counts a refused batch of total records, per tenant: the
// records at the indexes in bad as "rejected", the valid ones beside them as
// "returned" (not stored; the agent sends them again in a batch of their own,
// where they count as what they turn out to be). Records whose tenant is
// unknown or undecodable count as "unknown", so a bad client cannot mint
// label values.
func (s *Server) countRejected(kind string, tenants []string, total int, bad []int) {
	s.countRefused(kind, tenants, total, bad, nil)
}

// outcomeForbidden is the outcome of records refused because the
// credential's node may not run their institution.
const outcomeForbidden = "forbidden"

// countRefused is countRejected, the records at the indexes in unrun (a
// subset of bad) counted as "forbidden" instead of "rejected".
func (s *Server) countRefused(kind string, tenants []string, total int, bad, unrun []int) {
	outcome := make(map[int]string, len(bad))
	for _, i := range bad {
		outcome[i] = "rejected"
	}
	for _, i := range unrun {
		outcome[i] = outcomeForbidden
	}
	for i, t := range tenants {
		o, refused := outcome[i]
		if !refused {
			o = "returned"
		}
		s.metrics.records.WithLabelValues(kind, s.tenantLabel(t), o).Inc()
	}
	if rest := total - len(tenants); rest > 0 {
		s.metrics.records.WithLabelValues(kind, "unknown", "rejected").Add(float64(rest))
	}
	s.metrics.rejectedBatches.WithLabelValues(kind).Inc()
}

// countStored counts an accepted batch's records per tenant as new or
// duplicate (dups), for appends that cannot conflict (log lines, whose ids
// cover their content).
func (s *Server) countStored(kind string, tenants []string, dups []int) {
	s.countAppended(kind, tenants, metering.AppendResult{Duplicates: dups})
}

// countAppended counts an accepted batch's records per tenant as new,
// duplicate or conflict, and its conflicts apart too.
func (s *Server) countAppended(kind string, tenants []string, res metering.AppendResult) {
	type key struct{ tenant, outcome string }
	counts := map[key]int{}
	dups, conflicts := res.Duplicates, res.Conflicts
	for i, t := range tenants {
		outcome := "new"
		if len(dups) > 0 && dups[0] == i {
			outcome = "duplicate"
			dups = dups[1:]
			if len(conflicts) > 0 && conflicts[0] == i {
				outcome = "conflict"
				conflicts = conflicts[1:]
				s.metrics.conflicts.WithLabelValues(kind, t).Inc()
			}
		}
		counts[key{t, outcome}]++
	}
	for k, n := range counts {
		s.metrics.records.WithLabelValues(kind, k.tenant, k.outcome).Add(float64(n))
	}
}

func (s *Server) tenantLabel(t string) string {
	if s.tenants[t] {
		return t
	}
	return "unknown"
}

// acquire takes a slot of sem, waiting at most QueueTimeout.
func (s *Server) acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(s.cfg.QueueTimeout)
	defer t.Stop()
	select {
	case sem <- struct{}{}:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

func firstN[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}

// vetUsage refuses the records of a batch whose quantities no window could
// hold on the node the request reports, within collector.limits.
func (s *Server) vetUsage(r *http.Request, recs []usage.Record) ([]batch.Problem, error) {
	var node usage.NodeCapacity
	for _, h := range []struct {
		name string
		to   *int64
	}{{usage.HeaderNodeCPUs, &node.CPUs}, {usage.HeaderNodeMemoryBytes, &node.MemoryBytes}} {
		v := r.Header.Get(h.name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, &badRequest{fmt.Sprintf("%s: %q must be a positive integer; nothing was stored", h.name, batch.Truncate(v))}
		}
		*h.to = n
	}
	var ps []batch.Problem
	for i := range recs {
		ps = append(ps, usage.CheckBounds(&recs[i], i, s.cfg.Bounds, node)...)
	}
	return ps, nil
}

// badRequest is a request the client must change: answered 400.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// vetEvents refuses the platform-initiated events of runs another node ran.
//
// The rule: the node that first reported a run (its earliest stored event,
// metering.RunReader) ran it, and only that node may say the platform
// stopped or killed it (initiator platform), since the SLA credits the
// institution for those minutes. A platform-initiated event of a run nobody
// reported yet is accepted only behind an earlier event of that run in the
// same batch (its created or started event: an agent reports those first).
// The token's node is checked against each event's node already, so the
// run's first node is the last thing a node could lie about.
func (s *Server) vetEvents(r *http.Request, evs []events.Event) ([]batch.Problem, error) {
	type run struct{ tenant, container, id string }
	inBatch := map[run]bool{}
	var ps []batch.Problem
	for i := range evs {
		e := &evs[i]
		k := run{e.Tenant, e.ContainerID, e.RunID}
		if e.Initiator == events.ByPlatform {
			node, found, err := s.store.RunNode(r.Context(), e.Tenant, e.ContainerID, e.RunID)
			if err != nil {
				return nil, fmt.Errorf("platform-initiated event %d: %w", i, err)
			}
			switch {
			case found && node != e.Node:
				ps = append(ps, batch.Problem{Index: i, Field: "initiator", Reason: fmt.Sprintf(
					"platform: run %s was reported first by node %q; only the node that ran it may say the platform ended it",
					batch.Truncate(e.RunID), batch.Truncate(node))})
			case !found && !inBatch[k]:
				ps = append(ps, batch.Problem{Index: i, Field: "initiator", Reason: fmt.Sprintf(
					"platform: run %s has no earlier event (created, started) from this node; only the node that ran it may say the platform ended it",
					batch.Truncate(e.RunID))})
			}
		}
		inBatch[k] = true
	}
	return ps, nil
}

// notRun is the reason a record of tenant from p is refused: p's node may
// not run that institution.
func notRun(p auth.Principal, tenant string) string {
	return fmt.Sprintf("node %q may not run institution %q: its credential (%s) lists %s only", p.Node, tenant, credentialKey(p),
		strings.Join(p.Tenants, ", "))
}

// credentialKey is the configuration key that lists p's institutions.
func credentialKey(p auth.Principal) string {
	if p.Certificate {
		return "node_certificates[].tenants"
	}
	return fmt.Sprintf("tokens[].tenants of %q", p.Name)
}

// refuseUnrun refuses the records of kind at the indexes in unrun, which p
// wrote for institutions (tenants, by index) its node may not run: it adds
// a problem naming the tenant of each to the batch's (problems, or the
// decoder's err when it found invalid records already) and records the
// refusal (recordUnrun).
func (s *Server) refuseUnrun(r *http.Request, p auth.Principal, kind string, tenants []string, unrun []int,
	problems []batch.Problem, err error) ([]batch.Problem, error) {
	counts := map[string]int{}
	refused := make([]batch.Problem, 0, len(unrun))
	for _, i := range unrun {
		counts[tenants[i]]++
		refused = append(refused, batch.Problem{Index: i, Field: "tenant", Reason: notRun(p, tenants[i])})
	}
	s.recordUnrun(r, p, kind, counts, http.StatusBadRequest)
	byIndex := func(a, b batch.Problem) int { return a.Index - b.Index }
	var inv *batch.InvalidError
	if errors.As(err, &inv) {
		inv.Problems = slices.SortedStableFunc(slices.Values(append(inv.Problems, refused...)), byIndex)
		return problems, err
	}
	return slices.SortedStableFunc(slices.Values(append(problems, refused...)), byIndex), err
}

// recordUnrun records in the access log and the collector's log that p
// wrote counts[tenant] records of kind for institutions its node may not
// run, refused with status: one entry per institution and request however
// many records, since the refusal is what an operator needs to see and a
// flood of refused records must not flood the log. A failure to record is
// logged, not answered: nothing was stored or disclosed.
func (s *Server) recordUnrun(r *http.Request, p auth.Principal, kind string, counts map[string]int, status int) {
	for _, t := range slices.Sorted(maps.Keys(counts)) {
		s.log.Warn("an agent wrote for an institution its node may not run: refused (a misconfigured credential or a compromised node)",
			"kind", kind, "principal", p.Name, "node", p.Node, "tenant", t, "records", counts[t], "may_run", p.Tenants, "client", r.RemoteAddr)
		if s.audit == nil {
			continue
		}
		e := accesslog.Entry{Time: s.clock.Now().UTC(), Actor: p.Name, Action: r.Method + " " + r.URL.Path, Tenant: t,
			Detail: fmt.Sprintf("%d %s record(s) refused: %s", counts[t], kind, notRun(p, t)),
			Client: r.RemoteAddr, Outcome: accesslog.Refused, Status: status}
		if err := s.audit.Record(r.Context(), e); err != nil {
			s.log.Error("a refused write was not recorded: the access log failed", "principal", p.Name, "tenant", t, "err", err)
		}
	}
}

// refusePushUnrun counts and records an agent's Loki push of lines for
// tenant, refused because p's node may not run tenant: its lines count as
// "forbidden", as an agent's batch's would.
func (s *Server) refusePushUnrun(r *http.Request, p auth.Principal, tenant string, streams []lokipush.Stream) {
	lines := 0
	for _, st := range streams {
		lines += len(st.Entries)
	}
	s.metrics.records.WithLabelValues(kindLogs, tenant, outcomeForbidden).Add(float64(lines))
	s.recordUnrun(r, p, kindLogs, map[string]int{tenant: lines}, http.StatusForbidden)
}
