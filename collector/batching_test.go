package collector_test

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/usage"
)

// batched puts a batching writer configured by tweak before the store.
func batched(tweak func(*batching.Config)) func(*setup) {
	return func(o *setup) {
		cfg := batching.DefaultConfig()
		cfg.MaxDelay = time.Millisecond
		tweak(&cfg)
		o.Batch = &cfg
	}
}

func TestAFullStoreQueueAnswers429WithRetryAfterAndStoresNothingOfTheBatch(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.MaxInflightBatches = 1 // released while a batch waits for the store: the store's queue is what fills
	g := newGated()
	e := newEnv(t, &cfg, func(s metering.Store) metering.Store { g.Store = s; return g },
		batched(func(c *batching.Config) { c.MaxRecords, c.MaxQueued = 5, 5 }))

	done := postAsync(t, e.api.URL, agentNode1, encode(t, records("caami", 0, 3)))
	<-g.entered // 3 records being written: 2 more fit, 3 do not
	a := e.post(t, agentNode1, records("caami", 100, 3))
	if a.code != 429 || a.header.Get("Retry-After") != "1" {
		t.Fatalf("batch past max_queued answered %d (Retry-After %q) %s, want 429 with Retry-After 1", a.code, a.header.Get("Retry-After"), a.body)
	}
	for name, labels := range map[string]map[string]string{
		"paasmeter_collector_throttled_requests_total": {"kind": "usage", "reason": "store"},
		"paasmeter_store_batch_rejected_appends_total": {"kind": "usage", "reason": "overloaded"},
	} {
		if n := promtest.Value(t, e.registry, name, labels); n != 1 {
			t.Errorf("%s%v = %v, want 1", name, labels, n)
		}
	}
	close(g.release)
	if first := <-done; first.err != nil || first.code != 200 {
		t.Fatalf("first batch answered %d %s (%v)", first.code, first.body, first.err)
	}
	if n := len(e.stored(t, "caami")); n != 3 {
		t.Fatalf("stored %d records, want only the first batch's 3", n)
	}
	for name, want := range map[string]float64{"paasmeter_store_batch_flushes_total": 1, "paasmeter_store_batch_flushed_records_total": 3} {
		if n := promtest.Value(t, e.registry, name, map[string]string{"kind": "usage"}); n != want {
			t.Errorf("%s = %v, want %v", name, n, want)
		}
	}
	// The agent's resend, once the queue drained, goes through.
	var res collector.IngestResult
	a = e.post(t, agentNode1, records("caami", 100, 3))
	a.decode(t, &res)
	if a.code != 200 || res.New != 3 {
		t.Fatalf("resend answered %d %s", a.code, a.body)
	}
}

// deadStore is a store whose server is gone: appends fail and pings fail.
type deadStore struct {
	metering.Store
	appends atomic.Int32
}

func (d *deadStore) AppendUsage(context.Context, []usage.Record) (metering.AppendResult, error) {
	d.appends.Add(1)
	return metering.AppendResult{}, fmt.Errorf("dial tcp 127.0.0.1:9000: connection refused")
}

func (d *deadStore) Ready(context.Context) error {
	return fmt.Errorf("%w: dial tcp 127.0.0.1:9000: connection refused", metering.ErrNotReady)
}

func TestAStoreFoundDownAnswers503WithTheWritersRetryAfterWithoutTryingAgain(t *testing.T) {
	dead := &deadStore{}
	e := newEnv(t, nil, func(s metering.Store) metering.Store { dead.Store = s; return dead },
		batched(func(c *batching.Config) { c.RetryAfter = time.Hour }))

	a := e.post(t, agentNode1, records("caami", 0, 3))
	if a.code != 503 || a.header.Get("Retry-After") != "3600" {
		t.Fatalf("batch of the failed flush answered %d (Retry-After %q) %s, want 503 with Retry-After 3600", a.code, a.header.Get("Retry-After"), a.body)
	}
	a = e.post(t, agentNode1, records("caami", 10, 3))
	retry, err := strconv.Atoi(a.header.Get("Retry-After"))
	if a.code != 503 || err != nil || retry < 1 || retry > 3600 {
		t.Fatalf("batch while the store is down answered %d (Retry-After %q) %s, want 503 with the time left", a.code, a.header.Get("Retry-After"), a.body)
	}
	if n := dead.appends.Load(); n != 1 {
		t.Errorf("the dead store was tried %d times, want once per retry_after", n)
	}
	if n := len(e.stored(t, "caami")); n != 0 {
		t.Fatalf("stored %d records", n)
	}
}
