package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// records returns n valid records of tenant from node-1, containers first..first+n-1.
func records(tenant string, first, n int) []usage.Record {
	out := make([]usage.Record, n)
	for i := range out {
		out[i] = usagetest.Record(tenant, fmt.Sprintf("c%05d", first+i), usage.MeterCPU, now.Add(-10*time.Minute), int64(first+i))
	}
	return out
}

func TestSameBatchTwiceIsStoredOnceAndKeepsFirstArrival(t *testing.T) {
	e := newEnv(t, nil, nil)
	batch := records("caami", 0, 20)

	var first collector.IngestResult
	a := e.post(t, agentNode1, batch)
	a.decode(t, &first)
	if a.code != 200 || first != (collector.IngestResult{Records: 20, New: 20}) {
		t.Fatalf("first send: %d %s, want 20 new", a.code, a.body)
	}
	firstArrival := e.clock.Now()
	e.clock.Advance(3 * time.Minute)

	var second collector.IngestResult
	a = e.post(t, agentNode1, batch)
	a.decode(t, &second)
	if a.code != 200 || second != (collector.IngestResult{Records: 20, Duplicates: 20}) {
		t.Fatalf("second send: %d %s, want 20 duplicates", a.code, a.body)
	}
	got := e.stored(t, "caami")
	if len(got) != 20 {
		t.Fatalf("stored %d records, want 20", len(got))
	}
	for _, r := range got {
		if !r.ReceivedAt.Equal(firstArrival) {
			t.Fatalf("record %s has received_at %s, want the first arrival %s", r.ID, r.ReceivedAt, firstArrival)
		}
	}
	if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "usage", "tenant": "caami", "outcome": "duplicate"}); n != 20 {
		t.Errorf("duplicate counter = %v, want 20", n)
	}
	if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "usage", "tenant": "caami", "outcome": "new"}); n != 20 {
		t.Errorf("new counter = %v, want 20", n)
	}
}

func TestConcurrentOverlappingClientsStoreEachRecordOnce(t *testing.T) {
	e := newEnv(t, nil, nil)
	// Two clients of node-1 (an agent and its restarted twin) send records
	// 0..1499 and 1000..2499 in batches of 250, at the same time.
	const perClient, overlap, size = 1500, 500, 250
	var mu sync.Mutex
	var total collector.IngestResult
	var wg sync.WaitGroup
	errs := make(chan string, 2*perClient/size)
	for c := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < perClient; b += size {
				recs := records("caami", c*(perClient-overlap)+b, size)
				req, _ := http.NewRequest("POST", e.api.URL+"/api/v1/usage", bytes.NewReader(encode(t, recs)))
				req.Header.Set("Authorization", "Bearer "+agentNode1)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				var res collector.IngestResult
				err = json.NewDecoder(resp.Body).Decode(&res)
				resp.Body.Close()
				if resp.StatusCode != 200 || err != nil {
					errs <- fmt.Sprintf("batch answered %d (%v)", resp.StatusCode, err)
					return
				}
				mu.Lock()
				total.Records += res.Records
				total.New += res.New
				total.Duplicates += res.Duplicates
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	want := collector.IngestResult{Records: 2 * perClient, New: 2*perClient - overlap, Duplicates: overlap}
	if total != want {
		t.Errorf("answers add up to %+v, want %+v", total, want)
	}
	got := e.stored(t, "caami")
	ids := map[string]bool{}
	for _, r := range got {
		ids[r.ID] = true
	}
	if len(got) != want.New || len(ids) != want.New {
		t.Fatalf("stored %d records (%d distinct), want %d", len(got), len(ids), want.New)
	}
}

func TestBadBatchesStoreNothing(t *testing.T) {
	good := records("caami", 0, 5)
	withBad := func(change func(r *usage.Record), rederive bool) []byte {
		recs := records("caami", 0, 5)
		change(&recs[3])
		if rederive {
			recs[3].SetID()
		}
		return encode(t, recs)
	}
	cfg := collector.DefaultConfig()
	cfg.MaxRecords = 10
	cfg.MaxBodyBytes = 64 << 10
	// A rate card whose first version took effect a month ago.
	cfg.EarliestWindow = now.AddDate(0, -1, 0)

	tests := map[string]struct {
		token  string
		body   []byte
		header []string
		code   int
		// index and field of the first problem, for 400s about a record
		index int
		field string
	}{
		"a negative quantity is rejected with its index and field": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.Quantity = -1 }, true), code: 400, index: 3, field: "quantity"},
		"an unknown field is rejected with its index and name": {
			token: agentNode1, body: bytes.Replace(encode(t, good), []byte(`"node":`), []byte(`"colour":"red","node":`), 1), code: 400, index: 0, field: "colour"},
		"a repeated key is rejected with its index and name": {
			token: agentNode1, body: bytes.Replace(encode(t, good), []byte(`"tenant":"caami"`), []byte(`"tenant":"caami","tenant":"ona"`), 1), code: 400, index: 0, field: "tenant"},
		"a key repeated in another case is rejected with its index and name": {
			token: agentNode1, body: bytes.Replace(encode(t, good), []byte(`"tenant":"caami"`), []byte(`"tenant":"caami","Tenant":"ona"`), 1), code: 400, index: 0, field: "Tenant"},
		"a window ending before it starts is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.WindowEnd = r.WindowStart.Add(-time.Second) }, true), code: 400, index: 3, field: "window_end"},
		"an unknown meter is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.Meter = "gpu_seconds" }, true), code: 400, index: 3, field: "meter"},
		"a window more than 5 minutes in the future is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.WindowStart, r.WindowEnd = now.Add(5*time.Minute), now.Add(6*time.Minute) }, true), code: 400, index: 3, field: "window_end"},
		"a window older than the horizon is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) {
				r.WindowStart = now.AddDate(-2, 0, 0)
				r.WindowEnd = r.WindowStart.Add(time.Minute)
			}, true), code: 400, index: 3, field: "window_start"},
		"a window inside the horizon but before the rate card's first version is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) {
				r.WindowStart = now.AddDate(0, 0, -391)
				r.WindowEnd = r.WindowStart.Add(time.Minute)
			}, true), code: 400, index: 3, field: "window_start"},
		"an id that does not match the record is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.Quantity = 7; r.ContainerID = "forged" }, false), code: 400, index: 3, field: "id"},
		"a tenant that is not configured is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.Tenant = "unknown-institution" }, true), code: 400, index: 3, field: "tenant"},
		"a schema version from the future is rejected": {
			token: agentNode1, body: withBad(func(r *usage.Record) { r.SchemaVersion = 99 }, true), code: 400, index: 3, field: "schema_version"},
		"malformed JSON is rejected": {
			token: agentNode1, body: []byte(`{"records":[{`), code: 400},
		"more records than max_records is refused as too large": {
			token: agentNode1, body: encode(t, records("caami", 0, 11)), code: 413},
		"a body over max_body_bytes is refused as too large": {
			token: agentNode1, body: append([]byte(`{"records":[`), bytes.Repeat([]byte(" "), 70<<10)...), code: 413},
		"a gzip body that expands beyond max_body_bytes is refused": {
			token: agentNode1, body: gzipped(t, append([]byte(`{"records":[`), bytes.Repeat([]byte(" "), 1<<20)...)), header: []string{"Content-Encoding", "gzip"}, code: 413},
		"an unsupported content encoding is rejected": {
			token: agentNode1, body: encode(t, good), header: []string{"Content-Encoding", "br"}, code: 400},
		"a request without a token is unauthorized": {
			body: encode(t, good), code: 401},
		"a request with an unknown token is unauthorized": {
			token: "guess", body: encode(t, good), code: 401},
		"an institution token may not write usage": {
			token: caamiToken, body: encode(t, good), code: 403},
		"an admin token may not write usage": {
			token: adminToken, body: encode(t, good), code: 403},
		"records of another node are forbidden": {
			token: agentNode2, body: encode(t, good), code: 403},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, &cfg, nil)
			a := do(t, "POST", e.api.URL+"/api/v1/usage", tc.token, bytes.NewReader(tc.body), tc.header...)
			if a.code != tc.code {
				t.Fatalf("answered %d %s, want %d", a.code, a.body, tc.code)
			}
			var ae apiError
			a.decode(t, &ae)
			if ae.Error == "" {
				t.Errorf("error answer without a message: %s", a.body)
			}
			if tc.field != "" {
				var d problemsDetail
				if err := json.Unmarshal(ae.Detail, &d); err != nil || len(d.Problems) == 0 {
					t.Fatalf("detail %s lists no problems (%v)", ae.Detail, err)
				}
				if p := d.Problems[0]; p.Index != tc.index || p.Field != tc.field || p.Reason == "" {
					t.Errorf("first problem = %+v, want records[%d].%s with a reason", p, tc.index, tc.field)
				}
				if !strings.Contains(ae.Error, "nothing was stored") {
					t.Errorf("error %q does not say that nothing was stored", ae.Error)
				}
			}
			if got := e.stored(t, "caami"); len(got) != 0 {
				t.Fatalf("a rejected batch left %d records in the store", len(got))
			}
			// The same collector then takes the good batch whole: nothing half-stored
			// turns records into duplicates.
			var res collector.IngestResult
			a = e.post(t, agentNode1, good)
			a.decode(t, &res)
			if a.code != 200 || res.New != len(good) {
				t.Fatalf("good batch after the bad one: %d %s", a.code, a.body)
			}
		})
	}
}

func TestGzipBatchIsAccepted(t *testing.T) {
	e := newEnv(t, nil, nil)
	a := do(t, "POST", e.api.URL+"/api/v1/usage", agentNode1, bytes.NewReader(gzipped(t, encode(t, records("caami", 0, 30)))), "Content-Encoding", "gzip")
	var res collector.IngestResult
	a.decode(t, &res)
	if a.code != 200 || res.New != 30 {
		t.Fatalf("gzip batch: %d %s", a.code, a.body)
	}
}

func TestOnlyTheInvalidRecordsOfARejectedBatchAreCountedRejectedPerTenant(t *testing.T) {
	e := newEnv(t, nil, nil)
	recs := append(records("caami", 0, 2), records("ona", 10, 1)...)
	recs[2].Quantity = -5
	recs[2].SetID()
	if a := e.post(t, agentNode1, recs); a.code != 400 {
		t.Fatalf("answered %d, want 400", a.code)
	}
	// Only the invalid record is rejected; the two valid ones beside it are
	// returned to the agent, which sends them again.
	for _, c := range []struct {
		tenant, outcome string
		want            float64
	}{{"caami", "rejected", 0}, {"caami", "returned", 2}, {"ona", "rejected", 1}, {"ona", "returned", 0}} {
		if got := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "usage", "tenant": c.tenant, "outcome": c.outcome}); got != c.want {
			t.Errorf("%s records of %s = %v, want %v", c.outcome, c.tenant, got, c.want)
		}
	}
}

// failingStore fails every append, as a full disk or a dead server would.
type failingStore struct{ metering.Store }

func (failingStore) AppendUsage(context.Context, []usage.Record) (metering.AppendResult, error) {
	return metering.AppendResult{}, errors.New("disk full")
}

func TestStoreFailureIsNotAcknowledged(t *testing.T) {
	e := newEnv(t, nil, func(s metering.Store) metering.Store { return failingStore{s} })
	a := e.post(t, agentNode1, records("caami", 0, 3))
	if a.code != 503 || a.header.Get("Retry-After") == "" {
		t.Fatalf("answered %d (Retry-After %q), want 503 with Retry-After", a.code, a.header.Get("Retry-After"))
	}
	if n := e.metric(t, "paasmeter_store_operation_errors_total", map[string]string{"operation": "append_usage"}); n != 1 {
		t.Errorf("store errors = %v, want 1", n)
	}
}

// gatedStore holds every append until released, to keep a batch in flight.
type gatedStore struct {
	metering.Store
	entered chan struct{}
	release chan struct{}
}

func (g gatedStore) AppendUsage(ctx context.Context, recs []usage.Record) (metering.AppendResult, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Store.AppendUsage(ctx, recs)
}

func newGated() gatedStore {
	return gatedStore{entered: make(chan struct{}, 10), release: make(chan struct{})}
}

func TestOverloadAnswers429WithRetryAfter(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.MaxInflightBatches, cfg.QueueTimeout = 1, 0
	g := newGated()
	e := newEnv(t, &cfg, func(s metering.Store) metering.Store { g.Store = s; return g })

	done := postAsync(t, e.api.URL, agentNode1, encode(t, records("caami", 0, 3)))
	<-g.entered // the first batch holds the only slot
	a := e.post(t, agentNode1, records("caami", 100, 3))
	if a.code != 429 || a.header.Get("Retry-After") == "" {
		t.Fatalf("second batch answered %d (Retry-After %q), want 429 with Retry-After", a.code, a.header.Get("Retry-After"))
	}
	close(g.release)
	if first := <-done; first.err != nil || first.code != 200 {
		t.Fatalf("first batch answered %d %s (%v)", first.code, first.body, first.err)
	}
	if n := len(e.stored(t, "caami")); n != 3 {
		t.Fatalf("stored %d records, want only the first batch's 3", n)
	}
}
