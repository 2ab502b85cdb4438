// Package batching puts a batching writer in front of any metering store:
// the appends that many collector requests make at the same time are gathered
// per kind (usage, events, log lines) and written as one insert when MaxRecords
// are gathered or MaxDelay has passed since the kind's previous flush started.
// ClickHouse wants that: every insert makes a part on disk, and a part per
// agent batch would have the server merging all day ("too many parts"). So a
// kind is flushed at most once per MaxDelay unless MaxRecords are waiting,
// and an append after a quiet spell is written at once, not MaxDelay later.
//
// Each caller still gets the store's promise: its append returns only once
// its records are durably stored, with the indexes of its own duplicates; if
// the flush fails, every caller of that flush gets the error and nothing of
// it was acknowledged. Appends are written in arrival order, one flush of a
// kind at a time, so a record repeated by two callers is new for the first
// and a duplicate for the second, as if they had appended one after the other.
// The store counts a flush's new records in its accepted ledger, and each of
// them is new for exactly one caller of the flush, so the ledger (read through
// the Writer, straight from the store) counts what the callers were told.
//
// Memory is bounded: at most MaxQueued records of a kind wait or are being
// written; past that an append is refused at once with metering.ErrOverloaded.
// A flush that fails because the store is down (its error wraps
// metering.ErrNotReady, or the store then fails a ping) refuses the kind's
// appends with metering.ErrNotReady for RetryAfter, so a dead server is tried
// once per RetryAfter, not once per agent batch. All of these come as a
// *metering.RetryLaterError: the collector answers 429 or 503 with
// Retry-After, and the agents keep the records in their spools and send them
// again.
//
// A flush the store refuses for its content (while it answers pings) fails
// its flush-mates too, who resend. The collector validates every record
// before it reaches the store, so that is a bug, not a case to optimise.
package batching

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/metric"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// The kinds of records, as metric labels.
const (
	KindUsage  = "usage"
	KindEvents = "events"
	KindLogs   = "logs"
)

// Writer is a metering.Store that batches the appends of the store it wraps;
// reads (the accepted ledger's too), readiness and log retention go straight
// to that store.
type Writer struct {
	metering.Store
	usage  *queue[usage.Record]
	events *queue[events.Event]
	logs   *queue[logs.Line]
	// wg counts the running flush loops, which Close waits for.
	wg sync.WaitGroup
}

var _ metering.Store = (*Writer)(nil)

// Options are what a Writer is built from besides its store and config.
type Options struct {
	Logger *slog.Logger
	// Registry receives the writer's metrics; nil registers none.
	Registry prometheus.Registerer
}

// New wraps store. The Writer owns it from then on: Close closes it.
func New(store metering.Store, cfg Config, o Options) (*Writer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("batching: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m := newMetrics()
	w := &Writer{Store: store}
	w.usage = newQueue(KindUsage, store.AppendUsage, w, cfg, m, o.Logger)
	w.events = newQueue(KindEvents, store.AppendEvents, w, cfg, m, o.Logger)
	w.logs = newQueue(KindLogs, store.AppendLogs, w, cfg, m, o.Logger)
	if o.Registry != nil {
		queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "paasmeter_store_batch_queued_records",
			Help: "Records waiting for, or being written by, a flush of the batching writer (all kinds).",
		}, func() float64 { return float64(w.usage.depth() + w.events.depth() + w.logs.depth()) })
		for _, c := range []prometheus.Collector{m.flushes, m.flushed, m.duration, m.rejected, queued} {
			if err := o.Registry.Register(c); err != nil {
				return nil, fmt.Errorf("batching: register metrics: %w", err)
			}
		}
	}
	return w, nil
}

// AppendUsage implements metering.UsageAppender.
func (w *Writer) AppendUsage(ctx context.Context, recs []usage.Record) (metering.AppendResult, error) {
	return w.usage.append(ctx, recs)
}

// AppendEvents implements metering.EventAppender.
func (w *Writer) AppendEvents(ctx context.Context, evs []events.Event) (metering.AppendResult, error) {
	return w.events.append(ctx, evs)
}

// AppendLogs implements metering.LogAppender.
func (w *Writer) AppendLogs(ctx context.Context, lines []logs.Line) (metering.AppendResult, error) {
	return w.logs.append(ctx, lines)
}

// Close refuses new appends, writes those already gathered, then closes the
// wrapped store.
func (w *Writer) Close() error {
	w.usage.close()
	w.events.close()
	w.logs.close()
	w.wg.Wait()
	return w.Store.Close()
}

type metrics struct {
	flushes  *prometheus.CounterVec
	flushed  *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		flushes: metric.CounterVec("paasmeter_store_batch_flushes_total",
			"Inserts of the batching writer by kind and outcome (ok, error); an error fails every append of the flush.", "kind", "outcome"),
		flushed: metric.CounterVec("paasmeter_store_batch_flushed_records_total",
			"Records the batching writer stored (new and duplicates), by kind.", "kind"),
		duration: metric.HistogramVec("paasmeter_store_batch_flush_duration_seconds",
			"Time of one flush of the batching writer, by kind.", prometheus.ExponentialBuckets(0.001, 4, 9), "kind"),
		rejected: metric.CounterVec("paasmeter_store_batch_rejected_appends_total",
			"Appends the batching writer refused without trying, by kind and reason: overloaded (max_queued reached: 429) or unavailable (a recent flush found the store down: 503).", "kind", "reason"),
	}
}

// queue gathers the appends of one kind and flushes them.
type queue[T any] struct {
	kind  string
	store func(context.Context, []T) (metering.AppendResult, error)
	ready func(context.Context) error
	cfg   Config
	m     *metrics
	log   *slog.Logger
	wg    *sync.WaitGroup
	// kick wakes the flush loop before MaxDelay: MaxRecords are gathered, or
	// the writer closes.
	kick chan struct{}

	mu sync.Mutex
	// pending are the appends no flush has taken yet, oldest first, holding
	// pendingRecords records; queued also counts those being flushed.
	pending        []*request[T]
	pendingRecords int
	queued         int
	running        bool // a flush loop runs
	closed         bool
	// lastFlush is when the last flush started: the next waits for MaxDelay
	// after it unless MaxRecords are gathered.
	lastFlush time.Time
	// downUntil refuses appends after a flush found the store down, for cfg.RetryAfter.
	downUntil time.Time
	downErr   error
}

// request is one caller's append.
type request[T any] struct {
	ctx   context.Context
	recs  []T
	taken bool // a flush took it: its outcome is the store's, not the caller's context's
	done  chan struct{}
	res   metering.AppendResult
	err   error
}

func newQueue[T any](kind string, store func(context.Context, []T) (metering.AppendResult, error), w *Writer, cfg Config, m *metrics, log *slog.Logger) *queue[T] {
	return &queue[T]{kind: kind, store: store, ready: w.Store.Ready, wg: &w.wg, cfg: cfg, m: m, log: log.With("kind", kind), kick: make(chan struct{}, 1)}
}

func (q *queue[T]) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued
}

func (q *queue[T]) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

func (q *queue[T]) append(ctx context.Context, recs []T) (metering.AppendResult, error) {
	if len(recs) == 0 {
		return metering.AppendResult{}, nil
	}
	r := &request[T]{ctx: ctx, recs: recs, done: make(chan struct{})}
	if err := q.admit(r); err != nil {
		return metering.AppendResult{}, err
	}
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
	}
	q.mu.Lock()
	if !r.taken {
		// Not written yet: leave, and nothing of it will be.
		q.remove(r)
		q.mu.Unlock()
		return metering.AppendResult{}, fmt.Errorf("batching: gave up waiting for a flush: %w", context.Cause(ctx))
	}
	q.mu.Unlock()
	// A flush is writing it: only the store knows the outcome, which
	// FlushTimeout bounds; reporting a failure for records that were stored
	// would be harmless (dedup) but wrong.
	<-r.done
	return r.res, r.err
}

// admit queues r, or refuses it.
func (q *queue[T]) admit(r *request[T]) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, now := len(r.recs), time.Now()
	switch {
	case q.closed:
		return fmt.Errorf("batching: %w: closed", metering.ErrNotReady)
	case now.Before(q.downUntil):
		q.m.rejected.WithLabelValues(q.kind, "unavailable").Inc()
		return &metering.RetryLaterError{
			Err:   fmt.Errorf("batching: %w: the last %s flush failed: %w", metering.ErrNotReady, q.kind, q.downErr),
			After: q.downUntil.Sub(now),
		}
	// One append larger than MaxQueued still goes through an empty queue, or it
	// would never go through.
	case q.queued > 0 && q.queued+n > q.cfg.MaxQueued:
		q.m.rejected.WithLabelValues(q.kind, "overloaded").Inc()
		return &metering.RetryLaterError{
			Err: fmt.Errorf("batching: %w: %d %s records are waiting for the store (max_queued %d)",
				metering.ErrOverloaded, q.queued, q.kind, q.cfg.MaxQueued),
			// The queue drains at the store's speed: a full one is gone
			// within about a flush or two.
			After: time.Second,
		}
	}
	q.pending = append(q.pending, r)
	q.pendingRecords += n
	q.queued += n
	if q.pendingRecords >= q.cfg.MaxRecords {
		q.wake()
	}
	if !q.running {
		q.running = true
		q.wg.Add(1)
		go q.run()
	}
	return nil
}

// remove takes r, which no flush took, out of the queue. q.mu is held.
func (q *queue[T]) remove(r *request[T]) {
	if i := slices.Index(q.pending, r); i >= 0 {
		q.pending = slices.Delete(q.pending, i, i+1)
		q.pendingRecords -= len(r.recs)
		q.queued -= len(r.recs)
	}
}

// run flushes until nothing is pending, then exits: a quiet writer holds no
// goroutine.
func (q *queue[T]) run() {
	defer q.wg.Done()
	for {
		q.mu.Lock()
		if len(q.pending) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		wait := time.Until(q.lastFlush.Add(q.cfg.MaxDelay))
		if wait > 0 && q.pendingRecords < q.cfg.MaxRecords && !q.closed {
			q.mu.Unlock()
			t := time.NewTimer(wait)
			select {
			case <-q.kick:
			case <-t.C:
			}
			t.Stop()
			continue
		}
		batch := q.take()
		q.lastFlush = time.Now()
		q.mu.Unlock()
		q.flush(batch)
	}
}

// take removes the oldest pending appends that fit in MaxRecords (at least
// one) from the queue for a flush. q.mu is held.
func (q *queue[T]) take() []*request[T] {
	n, records := 0, 0
	for n < len(q.pending) && (n == 0 || records+len(q.pending[n].recs) <= q.cfg.MaxRecords) {
		q.pending[n].taken = true
		records += len(q.pending[n].recs)
		n++
	}
	batch := slices.Clone(q.pending[:n])
	q.pending = slices.Delete(q.pending, 0, n)
	q.pendingRecords -= records
	return batch
}

// flush writes batch as one append and tells each request its outcome.
func (q *queue[T]) flush(batch []*request[T]) {
	total := 0
	for _, r := range batch {
		total += len(r.recs)
	}
	all := make([]T, 0, total)
	for _, r := range batch {
		all = append(all, r.recs...)
	}
	// The flush serves every caller of the batch, so no caller's cancellation
	// may stop it; it keeps the oldest caller's trace.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), q.cfg.FlushTimeout)
	start := time.Now()
	res, err := q.store(ctx, all)
	cancel()
	q.m.duration.WithLabelValues(q.kind).Observe(time.Since(start).Seconds())

	if err != nil {
		q.m.flushes.WithLabelValues(q.kind, "error").Inc()
		q.log.Error("flush failed: none of its appends was acknowledged", "records", total, "appends", len(batch), "err", err)
		err = &metering.RetryLaterError{Err: fmt.Errorf("batching: flush of %d %s records: %w", total, q.kind, err), After: q.cfg.RetryAfter}
		for _, r := range batch {
			r.err = err
		}
	} else {
		q.m.flushes.WithLabelValues(q.kind, "ok").Inc()
		q.m.flushed.WithLabelValues(q.kind).Add(float64(total))
		split(batch, res)
	}

	storeDown := err != nil && q.storeDown(batch[0].ctx, err)
	q.mu.Lock()
	q.queued -= total
	if storeDown {
		q.down(err)
	}
	q.mu.Unlock()
	for _, r := range batch {
		close(r.done)
	}
}

// pingTimeout bounds the readiness check after a failed flush: a store that
// cannot answer a ping in that time is down for all practical purposes.
const pingTimeout = 5 * time.Second

// storeDown tells a store that is down (it says so, or fails a ping) from
// one that refused this batch's content: only the former refuses the next
// appends, so one bad batch does not turn every agent away.
func (q *queue[T]) storeDown(ctx context.Context, err error) bool {
	if errors.Is(err, metering.ErrNotReady) {
		return true
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	return q.ready(ctx) != nil
}

// down refuses the kind's appends for RetryAfter after the store went down, and
// fails those still pending now, which would only meet the same store. q.mu is held.
func (q *queue[T]) down(cause error) {
	q.log.Warn("store down: refusing appends for retry_after", "retry_after", q.cfg.RetryAfter)
	q.downUntil = time.Now().Add(q.cfg.RetryAfter)
	q.downErr = cause
	if len(q.pending) == 0 {
		return
	}
	err := &metering.RetryLaterError{
		Err:   fmt.Errorf("batching: %w: the %s flush before this one failed: %w", metering.ErrNotReady, q.kind, cause),
		After: q.cfg.RetryAfter,
	}
	q.m.rejected.WithLabelValues(q.kind, "unavailable").Add(float64(len(q.pending)))
	for _, r := range q.pending {
		q.queued -= len(r.recs)
		r.err = err
		close(r.done)
	}
	q.pending, q.pendingRecords = nil, 0
}

// split hands each request the indexes of its own records among the
// flush's duplicates and conflicts (ascending, into the flushed slice).
func split[T any](batch []*request[T], res metering.AppendResult) {
	for _, f := range []struct {
		all []int
		to  func(*metering.AppendResult) *[]int
	}{
		{res.Duplicates, func(r *metering.AppendResult) *[]int { return &r.Duplicates }},
		{res.Conflicts, func(r *metering.AppendResult) *[]int { return &r.Conflicts }},
	} {
		off, idx := 0, f.all
		for _, r := range batch {
			end := off + len(r.recs)
			for len(idx) > 0 && idx[0] < end {
				to := f.to(&r.res)
				*to = append(*to, idx[0]-off)
				idx = idx[1:]
			}
			off = end
		}
	}
}

func (q *queue[T]) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}
