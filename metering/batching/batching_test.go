package batching_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var base = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// records returns record i of every i in ids (the same i is the same record).
func records(ids ...int) []usage.Record {
	out := make([]usage.Record, len(ids))
	for n, i := range ids {
		out[n] = usagetest.Record("caami", fmt.Sprintf("c%06d", i), usage.MeterCPU, base, int64(1000+i))
		out[n].ReceivedAt = base.Add(time.Hour)
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// recorder sits between the writer and the store: it counts the store's
// appends, can hold each one until released, and can fail them.
type recorder struct {
	metering.Store
	mu      sync.Mutex
	calls   []int // records per append, in order
	gated   bool
	entered chan struct{}
	release chan struct{}
	fail    error // every append fails with it
	down    bool  // Ready fails
}

func newRecorder(s metering.Store) *recorder {
	return &recorder{Store: s, entered: make(chan struct{}, 100), release: make(chan struct{}, 100)}
}

func (r *recorder) AppendUsage(ctx context.Context, recs []usage.Record) (metering.AppendResult, error) {
	r.mu.Lock()
	r.calls = append(r.calls, len(recs))
	gated := r.gated
	r.mu.Unlock()
	if gated {
		r.entered <- struct{}{}
		<-r.release
	}
	r.mu.Lock()
	fail := r.fail
	r.mu.Unlock()
	if fail != nil {
		return metering.AppendResult{}, fail
	}
	return r.Store.AppendUsage(ctx, recs)
}

func (r *recorder) Ready(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return errors.New("connection refused")
	}
	return r.Store.Ready(ctx)
}

func (r *recorder) set(f func(r *recorder)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

func (r *recorder) appends() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

type env struct {
	w   *batching.Writer
	rec *recorder
	emb *embedded.Store
	reg *prometheus.Registry
}

func newEnv(t *testing.T, tweak func(*batching.Config)) *env {
	t.Helper()
	emb, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := batching.DefaultConfig()
	cfg.MaxDelay = time.Millisecond
	cfg.RetryAfter = time.Hour // a test that finds the store down must not see it up again by the clock
	if tweak != nil {
		tweak(&cfg)
	}
	e := &env{rec: newRecorder(emb), emb: emb, reg: prometheus.NewRegistry()}
	e.w, err = batching.New(e.rec, cfg, batching.Options{Registry: e.reg, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.w.Close() })
	return e
}

// holdFirstFlush gates the store and appends records 0 to 9, whose flush the
// store holds: later appends gather behind it until e.rec.release closes.
func (e *env) holdFirstFlush(t *testing.T) <-chan outcome {
	t.Helper()
	e.rec.set(func(r *recorder) { r.gated = true })
	first := e.appendAsync(context.Background(), records(span(0, 10)...))
	<-e.rec.entered
	e.queued(t, 10)
	return first
}

// queued waits until the writer holds n records (waiting or being flushed).
func (e *env) queued(t *testing.T, n int) {
	t.Helper()
	for {
		got := int(e.metric(t, "paasmeter_store_batch_queued_records", nil))
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("writer holds %d records, more than the %d expected", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// metric returns the value of the series of name with labels.
func (e *env) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return promtest.Value(t, e.reg, name, labels)
}

func (e *env) stored(t *testing.T) []usage.Record {
	t.Helper()
	var out []usage.Record
	err := e.emb.ScanUsage(context.Background(), metering.UsageFilter{Tenant: "caami", From: base, To: base.AddDate(0, 1, 0)},
		func(r usage.Record) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type outcome struct {
	res metering.AppendResult
	err error
}

func (e *env) appendAsync(ctx context.Context, recs []usage.Record) <-chan outcome {
	out := make(chan outcome, 1)
	go func() {
		res, err := e.w.AppendUsage(ctx, recs)
		out <- outcome{res, err}
	}()
	return out
}

func TestConcurrentAppendsAreWrittenAsOneInsertAndEachCallerGetsItsOwnDuplicates(t *testing.T) {
	e := newEnv(t, nil)

	// The first append holds the store, so every later one gathers behind it.
	first := e.holdFirstFlush(t)

	// 20 callers of 50 records each: caller c sends records 25c..25c+49, so
	// neighbours share 25; caller 0 also resends 5 of the first append's and
	// repeats one of its own records inside its batch.
	const callers = 20
	sent := make([][]int, callers)
	outs := make([]<-chan outcome, callers)
	total := 10
	for c := range callers {
		sent[c] = span(25*c, 25*c+50)
		if c == 0 {
			sent[c] = append(span(5, 10), span(10, 54)...)
			sent[c] = append(sent[c], 12) // 50 records, 12 twice
		}
		outs[c] = e.appendAsync(context.Background(), records(sent[c]...))
		total += len(sent[c])
		e.queued(t, total)
	}
	close(e.rec.release) // every append passes from now on

	if o := <-first; o.err != nil || len(o.res.Duplicates) != 0 {
		t.Fatalf("first append: %+v, %v", o.res, o.err)
	}
	newBy := map[int]int{} // record → callers that got it as new
	for c := range callers {
		o := <-outs[c]
		if o.err != nil {
			t.Fatalf("caller %d: %v", c, o.err)
		}
		if !slices.IsSorted(o.res.Duplicates) {
			t.Errorf("caller %d: duplicates %v not in ascending order", c, o.res.Duplicates)
		}
		dup := map[int]bool{}
		for _, i := range o.res.Duplicates {
			if i < 0 || i >= len(sent[c]) {
				t.Fatalf("caller %d: duplicate index %d out of its %d records", c, i, len(sent[c]))
			}
			dup[i] = true
		}
		for i, rec := range sent[c] {
			if !dup[i] {
				newBy[rec]++
			}
			// Records the first append stored are duplicates for everyone, and so is
			// a repeat of a caller's own record.
			if (rec < 10 || (c == 0 && i == len(sent[c])-1)) && !dup[i] {
				t.Errorf("caller %d: record %d (index %d) reported new, was stored before", c, rec, i)
			}
		}
	}
	stored := e.stored(t)
	distinct := 25*(callers-1) + 50
	if len(stored) != distinct {
		t.Fatalf("stored %d records, want %d", len(stored), distinct)
	}
	for rec := 10; rec < distinct; rec++ {
		if newBy[rec] != 1 {
			t.Errorf("record %d reported new to %d callers, want exactly 1", rec, newBy[rec])
		}
	}
	// The store counted each flush's new records in its ledger, read through
	// the writer: as many as the callers were told were new, and as stored.
	acc, err := e.w.AcceptedUsage(context.Background(), "caami", base, base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if want := []metering.AcceptedRow{{Hour: base, Records: int64(distinct)}}; !slices.Equal(acc, want) {
		t.Errorf("the ledger through the writer = %+v, want %+v", acc, want)
	}
	if got := e.rec.appends(); !slices.Equal(got, []int{10, total - 10}) {
		t.Errorf("the store got appends of %v records, want the first one then all %d gathered records in one", got, total-10)
	}
}

func TestAFlushLargerThanMaxRecordsIsCutBetweenAppendsNeverInsideOne(t *testing.T) {
	e := newEnv(t, func(c *batching.Config) { c.MaxRecords = 100 })
	first := e.holdFirstFlush(t)
	var outs []<-chan outcome
	sizes := []int{60, 30, 20, 150, 5}
	next, total := 1000, 10
	for _, n := range sizes {
		outs = append(outs, e.appendAsync(context.Background(), records(span(next, next+n)...)))
		next, total = next+n, total+n
		e.queued(t, total)
	}
	close(e.rec.release)
	for _, o := range append([]<-chan outcome{first}, outs...) {
		if r := <-o; r.err != nil {
			t.Fatal(r.err)
		}
	}
	// 60+30 fit in 100; 20 does not fit with them; 150 is alone; 5 follows.
	if got, want := e.rec.appends(), []int{10, 90, 20, 150, 5}; !slices.Equal(got, want) {
		t.Errorf("store appends of %v records, want %v", got, want)
	}
}

func TestAFailedFlushFailsEveryAppendOfItAndStoresNothing(t *testing.T) {
	e := newEnv(t, nil)
	first := e.holdFirstFlush(t)
	second := e.appendAsync(context.Background(), records(span(10, 30)...))
	e.queued(t, 30)
	third := e.appendAsync(context.Background(), records(span(30, 40)...))
	e.queued(t, 40)
	// The store answers pings but refuses the inserts.
	e.rec.set(func(r *recorder) { r.fail = errors.New("DB::Exception: Memory limit exceeded") })
	close(e.rec.release)

	for i, o := range []<-chan outcome{first, second, third} {
		r := <-o
		var later *metering.RetryLaterError
		if !errors.As(r.err, &later) || !strings.Contains(r.err.Error(), "Memory limit exceeded") || later.After <= 0 {
			t.Errorf("append %d: %v, want the store's error with a retry hint", i, r.err)
		}
		if len(r.res.Duplicates) != 0 {
			t.Errorf("append %d: a failed append reported duplicates %v", i, r.res.Duplicates)
		}
	}
	if n := len(e.stored(t)); n != 0 {
		t.Fatalf("failed flushes stored %d records", n)
	}
	if got := e.rec.appends(); !slices.Equal(got, []int{10, 30}) {
		t.Errorf("store appends of %v records, want the first then the other two together", got)
	}
	if n := e.metric(t, "paasmeter_store_batch_flushes_total", map[string]string{"kind": "usage", "outcome": "error"}); n != 2 {
		t.Errorf("failed flushes = %v, want 2", n)
	}

	// The store answered pings: it was this content it refused, so the next
	// append is tried, not refused.
	e.rec.set(func(r *recorder) { r.fail = nil })
	if res, err := e.w.AppendUsage(context.Background(), records(span(0, 40)...)); err != nil || len(res.Duplicates) != 0 {
		t.Fatalf("the same records again: %+v, %v", res, err)
	}
	e.queued(t, 0)
}

func TestAStoreThatIsDownFailsTheFlushAndRefusesAppendsUntilRetryAfter(t *testing.T) {
	e := newEnv(t, nil)
	first := e.holdFirstFlush(t)
	waiting := e.appendAsync(context.Background(), records(span(10, 20)...))
	e.queued(t, 20)
	e.rec.set(func(r *recorder) {
		r.fail, r.down, r.gated = errors.New("dial tcp 127.0.0.1:9000: connection refused"), true, false
	})
	e.rec.release <- struct{}{}

	if r := <-first; r.err == nil || errors.Is(r.err, metering.ErrOverloaded) {
		t.Fatalf("append of the failed flush: %v, want the store's error", r.err)
	}
	// The append gathered behind it is not tried against a dead store.
	r := <-waiting
	var later *metering.RetryLaterError
	if !errors.Is(r.err, metering.ErrNotReady) || !errors.As(r.err, &later) || later.After != time.Hour {
		t.Fatalf("append waiting behind the failed flush: %v, want ErrNotReady with retry_after", r.err)
	}
	_, err := e.w.AppendUsage(context.Background(), records(20))
	if !errors.Is(err, metering.ErrNotReady) || !errors.As(err, &later) || later.After <= 0 || later.After > time.Hour {
		t.Fatalf("append while down: %v, want ErrNotReady with the time left", err)
	}
	if got := e.rec.appends(); len(got) != 1 {
		t.Errorf("the store got %d appends, want only the first: %v", len(got), got)
	}
	if n := len(e.stored(t)); n != 0 {
		t.Fatalf("stored %d records while down", n)
	}
	e.queued(t, 0)
}

func TestAFullQueueRefusesAppendsAtOnceAndMemoryStaysBounded(t *testing.T) {
	const maxQueued = 1000
	e := newEnv(t, func(c *batching.Config) { c.MaxRecords, c.MaxQueued = 100, maxQueued })
	e.rec.set(func(r *recorder) { r.gated = true })
	// 100 records in flight, then 9 appends of 100 fill the queue to exactly max_queued.
	outs := []<-chan outcome{e.appendAsync(context.Background(), records(span(0, 100)...))}
	<-e.rec.entered
	for i := 1; i < 10; i++ {
		outs = append(outs, e.appendAsync(context.Background(), records(span(100*i, 100*i+100)...)))
		e.queued(t, 100*(i+1))
	}
	_, err := e.w.AppendUsage(context.Background(), records(5000))
	var later *metering.RetryLaterError
	if !errors.Is(err, metering.ErrOverloaded) || !errors.As(err, &later) || later.After < time.Second {
		t.Fatalf("append to a full queue: %v, want ErrOverloaded with a retry hint", err)
	}

	// Many more callers at once: each is refused or queued, never past max_queued.
	var wg sync.WaitGroup
	var mu sync.Mutex
	refused := 0
	for i := range 50 {
		wg.Go(func() {
			_, err := e.w.AppendUsage(context.Background(), records(6000+i))
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, metering.ErrOverloaded) {
				refused++
			} else {
				t.Errorf("caller %d: %v, want ErrOverloaded", i, err)
			}
		})
	}
	wg.Wait()
	e.queued(t, maxQueued)
	if refused != 50 {
		t.Errorf("%d of 50 appends refused, want all", refused)
	}
	if n := e.metric(t, "paasmeter_store_batch_rejected_appends_total", map[string]string{"kind": "usage", "reason": "overloaded"}); n != 51 {
		t.Errorf("overloaded rejections = %v, want 51", n)
	}

	for range 10 {
		e.rec.release <- struct{}{}
	}
	for _, o := range outs {
		if r := <-o; r.err != nil {
			t.Fatal(r.err)
		}
	}
	if n := len(e.stored(t)); n != maxQueued {
		t.Fatalf("stored %d records, want the %d admitted", n, maxQueued)
	}
	e.queued(t, 0)
	// Drained, the queue takes appends again.
	e.rec.set(func(r *recorder) { r.gated = false })
	if _, err := e.w.AppendUsage(context.Background(), records(5000)); err != nil {
		t.Fatalf("append after the queue drained: %v", err)
	}
}

func TestAnAppendLargerThanMaxQueuedStillGoesThroughAnEmptyQueue(t *testing.T) {
	e := newEnv(t, func(c *batching.Config) { c.MaxRecords, c.MaxQueued = 10, 10 })
	if res, err := e.w.AppendUsage(context.Background(), records(span(0, 25)...)); err != nil || len(res.Duplicates) != 0 {
		t.Fatalf("%+v, %v", res, err)
	}
	if n := len(e.stored(t)); n != 25 {
		t.Fatalf("stored %d, want 25", n)
	}
}

func TestACallerThatGivesUpBeforeItsFlushLeavesNothingBehind(t *testing.T) {
	e := newEnv(t, nil)
	first := e.holdFirstFlush(t)
	ctx, cancel := context.WithCancel(context.Background())
	gone := e.appendAsync(ctx, records(span(10, 20)...))
	e.queued(t, 20)
	cancel()
	if r := <-gone; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled caller: %v, want context.Canceled", r.err)
	}
	e.queued(t, 10)
	close(e.rec.release)
	if r := <-first; r.err != nil {
		t.Fatal(r.err)
	}
	if n := len(e.stored(t)); n != 10 {
		t.Fatalf("stored %d records, want only the first append's 10", n)
	}
}

func TestACallerThatGivesUpDuringItsFlushGetsTheStoresOutcome(t *testing.T) {
	e := newEnv(t, nil)
	e.rec.set(func(r *recorder) { r.gated = true })
	ctx, cancel := context.WithCancel(context.Background())
	out := e.appendAsync(ctx, records(span(0, 10)...))
	<-e.rec.entered
	cancel()
	close(e.rec.release)
	if r := <-out; r.err != nil {
		t.Fatalf("a flush that stored the records reported %v", r.err)
	}
	if n := len(e.stored(t)); n != 10 {
		t.Fatalf("stored %d, want 10", n)
	}
}

func TestCloseWritesWhatIsGatheredThenClosesTheStore(t *testing.T) {
	e := newEnv(t, func(c *batching.Config) { c.MaxDelay = time.Minute })
	first := e.holdFirstFlush(t)
	gathered := e.appendAsync(context.Background(), records(span(10, 15)...))
	e.queued(t, 15) // the second waits for a minute after the first flush
	closed := make(chan error, 1)
	go func() { closed <- e.w.Close() }()
	close(e.rec.release)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for _, o := range []<-chan outcome{first, gathered} {
		if r := <-o; r.err != nil {
			t.Fatalf("append gathered at close: %v", r.err)
		}
	}
	if got := e.rec.appends(); !slices.Equal(got, []int{10, 5}) {
		t.Fatalf("store appends %v, want 10 then the gathered 5", got)
	}
	if _, err := e.w.AppendUsage(context.Background(), records(11)); !errors.Is(err, metering.ErrNotReady) {
		t.Fatalf("append after Close: %v, want ErrNotReady", err)
	}
	if err := e.emb.Ready(context.Background()); err == nil {
		t.Fatal("the wrapped store is still open")
	}
}

func TestAQuietKindFlushesAtOnceAndABusyOneWaitsForMaxDelayOrMaxRecords(t *testing.T) {
	e := newEnv(t, func(c *batching.Config) { c.MaxDelay, c.MaxRecords = time.Minute, 30 })
	// Nothing was flushed for a minute: the first append does not wait.
	if _, err := e.w.AppendUsage(context.Background(), records(span(0, 10)...)); err != nil {
		t.Fatal(err)
	}
	// The next ones wait for the minute, or for 30 records.
	a := e.appendAsync(context.Background(), records(span(10, 25)...))
	e.queued(t, 15)
	b := e.appendAsync(context.Background(), records(span(25, 40)...))
	for _, o := range []<-chan outcome{a, b} {
		if r := <-o; r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := e.rec.appends(); !slices.Equal(got, []int{10, 30}) {
		t.Fatalf("store appends %v, want 10 at once, then 30 when max_records were gathered", got)
	}
}

func TestConfigValidationNamesEveryBadField(t *testing.T) {
	c := batching.Config{MaxRecords: 0, MaxQueued: -1, MaxDelay: 0, FlushTimeout: 0, RetryAfter: 0}
	err := c.Validate()
	for _, field := range []string{"max_records", "max_queued", "max_delay", "flush_timeout", "retry_after"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("Validate() = %v, want a problem with %s", err, field)
		}
	}
	def := batching.DefaultConfig()
	if err := def.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	on, off := true, false
	for _, tc := range []struct {
		enabled      *bool
		storeDefault bool
		want         bool
	}{{nil, true, true}, {nil, false, false}, {&on, false, true}, {&off, true, false}} {
		c := batching.Config{Enabled: tc.enabled}
		if got := c.On(tc.storeDefault); got != tc.want {
			t.Errorf("Enabled %v, store default %v: On = %v", tc.enabled, tc.storeDefault, got)
		}
	}
}
