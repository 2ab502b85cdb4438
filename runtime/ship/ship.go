// Package ship delivers spooled records to the collector: in batches, in spool
// order, retried with exponential backoff and jitter, and removed from the
// spool only once the collector acknowledged them. Records the collector
// rejects as invalid move to the dead-letter spool; the rest of their batch
// goes on. Delivery is at least once; the collector's dedup makes it exactly
// once in the store.
package ship

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/internal/metric"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/usage"
)

// Entry kinds in the spool, and the collector endpoint of each.
const (
	KindUsage = "usage"
	KindEvent = "event"
	// KindLog is a log line (logs.Line).
	KindLog = "log"
)

var endpoints = map[string]string{KindUsage: "/api/v1/usage", KindEvent: "/api/v1/events", KindLog: "/api/v1/logs"}

// Ack tells which entries of one kind left the spool: those the collector
// acknowledged and those moved to the dead letters, each in spool order.
type Ack struct {
	Kind                string
	Delivered, Rejected []spool.Entry
}

// DeadLetter is an entry of the dead-letter spool: a record the collector
// refused, and why.
type DeadLetter struct {
	Kind     string          `json:"kind"`
	Seq      uint64          `json:"seq"`
	Rejected time.Time       `json:"rejected"`
	Status   int             `json:"status"`
	Problems []batch.Problem `json:"problems"`
	// Record is the record as spooled; Raw holds it instead when it is not
	// even JSON, so nothing is lost on the way to the operator.
	Record json.RawMessage `json:"record,omitempty"`
	Raw    []byte          `json:"raw,omitempty"`
}

// Body returns the spooled bytes of the record.
func (d *DeadLetter) Body() []byte {
	if d.Record != nil {
		return d.Record
	}
	return d.Raw
}

// Options configure a Shipper.
type Options struct {
	Spool, Dead *spool.Spool
	// BaseURL is the collector's, Token the agent's bearer token.
	BaseURL, Token string
	// BaseURLs, when set, are several collectors' base URLs, used instead
	// of BaseURL: batches go to one of them; on a connection error, a
	// timeout or a 5xx the shipper moves to the next and sends there at
	// once, waiting its backoff only once every one failed in a row; it
	// stays with the one that answers. A batch a failed collector stored
	// but did not acknowledge is stored once: the next one finds its ids.
	BaseURLs []string
	Client   *http.Client
	// BatchSize is the most records per request.
	BatchSize int
	// MinBackoff and MaxBackoff bound the wait between failed attempts.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
	Registry               prometheus.Registerer
	Failpoints             *failpoint.Set
	// Idle is how long to wait when the spool is empty; Wake shortens it.
	Idle time.Duration
	Wake <-chan struct{}
	// Capacity is the node's, sent with each batch of usage records so that
	// the collector holds them to it (usage.HeaderNodeCPUs); zero fields are
	// not sent.
	Capacity usage.NodeCapacity
	// OnAck, if set, is told of the entries that left the spool, once the
	// spool recorded it: the log tailer advances its checkpoints with it. A
	// crash just before the call makes the tailer read those lines again;
	// their ids are the same, and the collector keeps one.
	OnAck func(Ack)
}

// Shipper moves records from the spool to the collector.
type Shipper struct {
	o Options
	// urls are the collectors, cur the one in use; failed counts the
	// collectors that failed in a row since the last answer, and retryNow
	// says the last failure moved on to one that has not failed yet.
	urls     []string
	cur      int
	failed   int
	retryNow bool
	m        metrics
	backoff  time.Duration
	rng      *rand.Rand
	// limit is the batch size in force: halved on 413, back to BatchSize after a success.
	limit int
}

type metrics struct {
	shipped   *prometheus.CounterVec
	errors    *prometheus.CounterVec
	duration  prometheus.Histogram
	dead      prometheus.Counter
	failovers prometheus.Counter
}

// New builds a Shipper.
func New(o Options) (*Shipper, error) {
	urls := o.BaseURLs
	if len(urls) == 0 && o.BaseURL != "" {
		urls = []string{o.BaseURL}
	}
	if o.Spool == nil || o.Dead == nil || o.Client == nil || len(urls) == 0 || slices.Contains(urls, "") {
		return nil, errors.New("ship: spool, dead-letter spool, client and collector URL are required")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 200 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = 30 * time.Second
	}
	if o.Idle <= 0 {
		o.Idle = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	s := &Shipper{o: o, urls: urls, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15))}
	s.m = metrics{
		shipped: metric.CounterVec("paasmeter_agent_shipped_records_total",
			"Records the collector acknowledged, by kind and outcome (new, duplicate, conflict: its id stored already with other content, not stored).", "kind", "outcome"),
		errors: metric.CounterVec("paasmeter_agent_ship_errors_total",
			"Failed delivery attempts, by reason (network, throttled, unavailable, unauthorized, rejected, server).", "reason"),
		duration: metric.Histogram("paasmeter_agent_ship_duration_seconds",
			"Time for the collector to acknowledge a batch.", prometheus.ExponentialBuckets(0.005, 3, 8)),
		dead: metric.Counter("paasmeter_agent_dead_letters_total",
			"Records moved to the dead-letter spool because the collector rejected them as invalid."),
		failovers: metric.Counter("paasmeter_agent_ship_failovers_total",
			"Times the shipper moved to the next of its collectors (agent.collector_urls) because the one in use failed."),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	spoolGauges := []prometheus.Collector{
		gauge("paasmeter_agent_spool_entries", "Records and events in the spool, not yet acknowledged by the collector.",
			func() float64 { return float64(o.Spool.Stats().Entries) }),
		gauge("paasmeter_agent_spool_bytes", "Bytes of spool segments holding unacknowledged entries.",
			func() float64 { return float64(o.Spool.Stats().Bytes) }),
		gauge("paasmeter_agent_spool_oldest_age_seconds", "Age of the oldest unacknowledged entry (0 when the spool is empty).",
			func() float64 {
				if t := o.Spool.Stats().OldestAppendedAt; !t.IsZero() {
					return time.Since(t).Seconds()
				}
				return 0
			}),
		gauge("paasmeter_agent_dead_letter_entries", "Records in the dead-letter spool, waiting for an operator (paasmeter spool inspect --dead).",
			func() float64 { return float64(o.Dead.Stats().Entries) }),
	}
	// A torn tail is the part of an Append a crash interrupted: never
	// acknowledged to the agent, so nothing it held is lost (the agent's
	// outbox spools it again). It is told, so an operator sees crashes and a
	// disk that loses more than a torn tail would be noticed.
	for name, sp := range map[string]*spool.Spool{"outgoing": o.Spool, "dead": o.Dead} {
		if cut := sp.Stats().TruncatedBytes; cut > 0 {
			o.Logger.Warn("the spool cut a torn write off its newest segment at recovery", "spool", name, "bytes", cut)
		}
		spoolGauges = append(spoolGauges, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "paasmeter_agent_spool_recovery_truncated_bytes",
			Help:        "Bytes of a torn write the spool cut off its newest segment when it was opened (a crash interrupted an Append).",
			ConstLabels: prometheus.Labels{"spool": name}}, func() float64 { return float64(sp.Stats().TruncatedBytes) }))
	}
	if o.Registry != nil {
		for _, c := range append([]prometheus.Collector{s.m.shipped, s.m.errors, s.m.duration, s.m.dead, s.m.failovers}, spoolGauges...) {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("ship: register metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Run ships until ctx ends.
func (s *Shipper) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		shipped, err := s.ShipOnce(ctx)
		if err != nil && ctx.Err() == nil && s.retryNow {
			continue // to the next collector, which has not failed yet
		}
		if err != nil && ctx.Err() == nil {
			s.o.Logger.Warn("shipping failed; will retry", "err", err, "backoff", s.backoff)
			s.sleep(ctx, s.nextBackoff(err))
			continue
		}
		s.backoff = 0
		if shipped == 0 {
			select {
			case <-ctx.Done():
			case <-s.o.Wake:
			case <-time.After(s.o.Idle):
			}
		}
	}
	return nil
}

// ShipOnce sends the oldest batch and returns how many entries left the spool.
func (s *Shipper) ShipOnce(ctx context.Context) (int, error) {
	s.retryNow = false
	if s.limit <= 0 {
		s.limit = s.o.BatchSize
	}
	entries, err := s.o.Spool.Peek(s.limit, 8<<20)
	if err != nil {
		return 0, fmt.Errorf("ship: read spool: %w", err)
	}
	if len(entries) == 0 {
		return 0, nil
	}
	// A request carries one kind of record: the longest run of the first kind.
	kind := entries[0].Kind
	n := 1
	for n < len(entries) && entries[n].Kind == kind {
		n++
	}
	entries = entries[:n]
	endpoint, ok := endpoints[kind]
	if !ok {
		// Not ours to send: keep it, visibly, rather than drop it.
		if err := s.deadLetter(entries, 0, func(int) []batch.Problem {
			return []batch.Problem{{Field: "kind", Reason: "unknown spool entry kind " + kind}}
		}); err != nil {
			return 0, err
		}
		return len(entries), s.ack(entries, Ack{Kind: kind, Rejected: entries})
	}

	pending := entries // what still has to be delivered
	var dead []spool.Entry
	for len(pending) > 0 {
		status, body, retryAfter, err := s.post(ctx, endpoint, pending)
		if err != nil {
			if ctx.Err() != nil {
				return 0, err // the agent stops: no collector failed
			}
			s.m.errors.WithLabelValues("network").Inc()
			s.failover(err)
			return 0, err
		}
		if status < http.StatusInternalServerError {
			s.failed = 0 // the collector answered
		}
		switch {
		case status == http.StatusOK:
			s.acknowledged(kind, body)
			pending = nil
		case status == http.StatusRequestEntityTooLarge && len(pending) == 1:
			// One record larger than the collector takes: it can never be delivered.
			if err := s.deadLetter(pending, status, func(int) []batch.Problem {
				return []batch.Problem{{Field: "(record)", Reason: "larger than the collector's body limit"}}
			}); err != nil {
				return 0, err
			}
			dead, pending = append(dead, pending...), nil
		case status == http.StatusRequestEntityTooLarge:
			s.m.errors.WithLabelValues("too_large").Inc()
			s.limit = max(1, len(pending)/2)
			return 0, fmt.Errorf("ship: collector refused %d records as too large; next batches hold %d", len(pending), s.limit)
		case status == http.StatusBadRequest:
			bad, problems := rejected(body, len(pending))
			s.m.errors.WithLabelValues("rejected").Inc()
			if len(bad) == 0 {
				// Refused without naming records (malformed as a whole): narrow
				// it down until the one record at fault can be set aside.
				if len(pending) > 1 {
					s.limit = max(1, len(pending)/2)
					return 0, fmt.Errorf("ship: collector rejected a batch without naming records; next batches hold %d: %s", s.limit, truncate(body))
				}
				bad = map[int]bool{0: true}
				problems = []batch.Problem{{Field: "(record)", Reason: "rejected: " + truncate(body)}}
			}
			var keep, bads []spool.Entry
			var deadIdx []int
			for i, e := range pending {
				if bad[i] {
					bads, deadIdx = append(bads, e), append(deadIdx, i)
				} else {
					keep = append(keep, e)
				}
			}
			err := s.deadLetter(bads, status, func(i int) []batch.Problem {
				var mine []batch.Problem
				for _, p := range problems {
					if p.Index == deadIdx[i] {
						mine = append(mine, p)
					}
				}
				return mine
			})
			if err != nil {
				return 0, err
			}
			dead, pending = append(dead, bads...), keep
		default:
			err := s.failure(status, body, retryAfter)
			if status >= http.StatusInternalServerError {
				s.failover(err)
			}
			return 0, err
		}
	}
	s.o.Failpoints.Hit(failpoint.AfterAck)
	s.limit = s.o.BatchSize
	return len(entries), s.ack(entries, split(kind, entries, dead))
}

// acknowledged counts what the collector's answer to a delivered batch says
// became of its records. Conflicts (an id stored already with other
// content) are delivered as far as the spool goes: the collector keeps the
// first arrival and would answer the same to every resend, so they leave the
// spool like duplicates, logged and counted.
func (s *Shipper) acknowledged(kind string, body []byte) {
	var res struct {
		New, Duplicates int
		Conflicts       []struct {
			Index int    `json:"index"`
			ID    string `json:"id"`
		}
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return
	}
	s.m.shipped.WithLabelValues(kind, "new").Add(float64(res.New))
	s.m.shipped.WithLabelValues(kind, "duplicate").Add(float64(res.Duplicates))
	s.m.shipped.WithLabelValues(kind, "conflict").Add(float64(len(res.Conflicts)))
	if len(res.Conflicts) > 0 {
		s.o.Logger.Warn("the collector holds other content under the ids of records it was sent; they leave the spool, the stored ones stay",
			"kind", kind, "conflicts", len(res.Conflicts), "first_index", res.Conflicts[0].Index, "first_id", res.Conflicts[0].ID)
	}
}

// failover moves to the next collector after the one in use failed with
// err; when that one has not failed since the last answer, Run sends to it
// at once (retryNow).
func (s *Shipper) failover(err error) {
	if len(s.urls) < 2 {
		return
	}
	from := s.urls[s.cur]
	s.cur = (s.cur + 1) % len(s.urls)
	s.failed++
	s.retryNow = s.failed < len(s.urls)
	s.m.failovers.Inc()
	s.o.Logger.Warn("collector failed; shipping to the next one", "from", from, "to", s.urls[s.cur], "err", err)
}

// split tells the delivered entries from the dead ones, both in spool order.
func split(kind string, entries, dead []spool.Entry) Ack {
	a := Ack{Kind: kind, Rejected: dead}
	isDead := make(map[uint64]bool, len(dead))
	for _, e := range dead {
		isDead[e.Seq] = true
	}
	for _, e := range entries {
		if !isDead[e.Seq] {
			a.Delivered = append(a.Delivered, e)
		}
	}
	slices.SortFunc(a.Rejected, func(x, y spool.Entry) int { return cmp.Compare(x.Seq, y.Seq) })
	return a
}

// ack removes entries from the spool, then tells OnAck what became of them.
func (s *Shipper) ack(entries []spool.Entry, a Ack) error {
	if err := s.o.Spool.AckThrough(entries[len(entries)-1].Seq); err != nil {
		return fmt.Errorf("ship: acknowledge spool entries: %w", err)
	}
	if s.o.OnAck != nil {
		s.o.OnAck(a)
	}
	return nil
}

// post sends entries as one batch.
func (s *Shipper) post(ctx context.Context, endpoint string, entries []spool.Entry) (int, []byte, time.Duration, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"records":[`)
	for i, e := range entries {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(e.Data)
	}
	buf.WriteString("]}")
	url := strings.TrimRight(s.urls[s.cur], "/") + endpoint
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, &buf)
	if err != nil {
		return 0, nil, 0, fmt.Errorf("ship: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.o.Token)
	if endpoint == endpoints[KindUsage] {
		for _, h := range []struct {
			name string
			v    int64
		}{{usage.HeaderNodeCPUs, s.o.Capacity.CPUs}, {usage.HeaderNodeMemoryBytes, s.o.Capacity.MemoryBytes}} {
			if h.v > 0 {
				req.Header.Set(h.name, strconv.FormatInt(h.v, 10))
			}
		}
	}
	start := time.Now()
	resp, err := s.o.Client.Do(req)
	if err != nil {
		// The client's error names the URL.
		return 0, nil, 0, fmt.Errorf("ship: %w", err)
	}
	defer resp.Body.Close()
	s.o.Failpoints.Hit(failpoint.AfterSend)
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, nil, 0, fmt.Errorf("ship: POST %s: read answer: %w", url, err)
	}
	if resp.StatusCode == http.StatusOK {
		s.m.duration.Observe(time.Since(start).Seconds())
	}
	var retryAfter time.Duration
	if v, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && v > 0 {
		retryAfter = time.Duration(v) * time.Second
	}
	return resp.StatusCode, body, retryAfter, nil
}

// rejected reads which records of a 400 answer were bad.
func rejected(body []byte, n int) (map[int]bool, []batch.Problem) {
	var answer struct {
		Detail struct {
			Problems []batch.Problem `json:"problems"`
		} `json:"detail"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, nil
	}
	bad := map[int]bool{}
	for _, p := range answer.Detail.Problems {
		if p.Index >= 0 && p.Index < n {
			bad[p.Index] = true
		}
	}
	return bad, answer.Detail.Problems
}

// deadLetter moves entries to the dead-letter spool, each with its problems.
func (s *Shipper) deadLetter(entries []spool.Entry, status int, problems func(i int) []batch.Problem) error {
	if len(entries) == 0 {
		return nil
	}
	data := make([][]byte, len(entries))
	var first string
	for i, e := range entries {
		ps := problems(i)
		if first == "" && len(ps) > 0 {
			first = ps[0].Reason
		}
		dl := DeadLetter{Kind: e.Kind, Seq: e.Seq, Rejected: time.Now().UTC(), Status: status, Problems: ps}
		if json.Valid(e.Data) {
			dl.Record = e.Data
		} else {
			dl.Raw = e.Data
		}
		b, err := json.Marshal(dl)
		if err != nil {
			return fmt.Errorf("ship: encode dead letter: %w", err)
		}
		data[i] = b
	}
	if _, err := s.o.Dead.Append("dead-letter", data...); err != nil {
		return fmt.Errorf("ship: write dead letters: %w", err)
	}
	s.m.dead.Add(float64(len(entries)))
	s.o.Logger.Error("collector rejected records; moved to the dead-letter spool (paasmeter spool inspect --dead)",
		"records", len(entries), "first_problem", first)
	return nil
}

// failure classifies a non-200, non-400 answer; every one is retried.
func (s *Shipper) failure(status int, body []byte, retryAfter time.Duration) error {
	reason := "server"
	switch {
	case status == http.StatusTooManyRequests:
		reason = "throttled"
	case status == http.StatusServiceUnavailable:
		reason = "unavailable"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// A configuration error: say so loudly, keep every record.
		reason = "unauthorized"
		s.o.Logger.Error("the collector refuses this agent's token; records stay in the spool", "status", status, "answer", truncate(body))
	}
	s.m.errors.WithLabelValues(reason).Inc()
	return &statusError{status: status, body: truncate(body), retryAfter: retryAfter}
}

type statusError struct {
	status     int
	body       string
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("ship: collector answered %d: %s", e.status, e.body)
}

// nextBackoff doubles the wait (full jitter), or takes the collector's Retry-After.
func (s *Shipper) nextBackoff(err error) time.Duration {
	if s.backoff == 0 {
		s.backoff = s.o.MinBackoff
	} else {
		s.backoff = min(2*s.backoff, s.o.MaxBackoff)
	}
	var se *statusError
	if errors.As(err, &se) && se.retryAfter > 0 {
		return se.retryAfter
	}
	return time.Duration(s.rng.Int64N(int64(s.backoff))) + s.o.MinBackoff/2
}

func (s *Shipper) sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func truncate(b []byte) string { return batch.Truncate(string(bytes.TrimSpace(b))) }
