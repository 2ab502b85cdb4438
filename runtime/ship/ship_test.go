package ship_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/spool/spooltest"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

const token = "agent-token"

type rig struct {
	store     metering.Store
	url       string // the collector's
	out, dead *spool.Spool
	sh        *ship.Shipper
}

// newRig runs a real collector (node-1, tenant caami) behind front, which may
// interfere with requests, and a shipper over fresh spools.
func newRig(t *testing.T, front func(http.Handler) http.Handler) *rig {
	t.Helper()
	col, err := collectortest.StartBehind(front, t.TempDir(), "node-1", token, "caami")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)
	out, dead := spooltest.Pair(t)
	sh, err := ship.New(ship.Options{Spool: out, Dead: dead, BaseURL: col.URL, Token: token, Client: http.DefaultClient,
		BatchSize: 50, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{store: col.Store, url: col.URL, out: out, dead: dead, sh: sh}
}

func (r *rig) spool(t *testing.T, recs []usage.Record) {
	t.Helper()
	data := make([][]byte, len(recs))
	for i := range recs {
		data[i], _ = json.Marshal(recs[i])
	}
	if _, err := r.out.Append(ship.KindUsage, data...); err != nil {
		t.Fatal(err)
	}
}

// drain ships until the spool is empty.
func (r *rig) drain(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for r.out.Stats().Entries > 0 {
		if _, err := r.sh.ShipOnce(ctx); err != nil && ctx.Err() != nil {
			t.Fatalf("spool not drained: %v", err)
		}
	}
}

func (r *rig) stored(t *testing.T) int {
	n := 0
	now := time.Now()
	r.store.ScanUsage(context.Background(), metering.UsageFilter{Tenant: "caami", From: now.Add(-time.Hour), To: now.Add(time.Hour)},
		func(usage.Record) error { n++; return nil })
	return n
}

func records(n int) []usage.Record {
	out := make([]usage.Record, n)
	at := time.Now().Add(-10 * time.Minute).Truncate(time.Minute)
	for i := range out {
		out[i] = usagetest.Record("caami", "c"+string(rune('a'+i%26))+string(rune('a'+i/26)), usage.MeterCPU, at, int64(i))
	}
	return out
}

func TestOneInvalidRecordGoesToTheDeadLetterSpoolAndTheRestIsStored(t *testing.T) {
	r := newRig(t, nil)
	recs := records(120)
	recs[77].Tenant = "unknown-institution" // the collector refuses it
	recs[77].SetID()
	r.spool(t, recs)
	r.drain(t)
	if n := r.stored(t); n != 119 {
		t.Errorf("stored %d records, want the 119 valid ones", n)
	}
	dl, err := r.dead.Peek(10, 1<<20)
	if err != nil || len(dl) != 1 {
		t.Fatalf("dead letters: %d (%v), want 1", len(dl), err)
	}
	var letter ship.DeadLetter
	if err := json.Unmarshal(dl[0].Data, &letter); err != nil {
		t.Fatal(err)
	}
	var back usage.Record
	json.Unmarshal(letter.Record, &back)
	if back.ID != recs[77].ID || letter.Status != 400 || len(letter.Problems) == 0 || letter.Problems[0].Field != "tenant" {
		t.Errorf("dead letter %+v (record %s), want record 77 with its tenant problem", letter, back.ID)
	}
}

func TestFailuresAreRetriedAndNothingIsLostOrDuplicated(t *testing.T) {
	var calls atomic.Int64
	// The collector is overloaded, then down, then drops the connection after
	// storing a batch (the agent never sees the ack), then works.
	r := newRig(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			switch calls.Add(1) {
			case 1:
				w.Header().Set("Retry-After", "0")
				http.Error(w, `{"error":"busy"}`, http.StatusTooManyRequests)
			case 2:
				http.Error(w, `{"error":"down"}`, http.StatusServiceUnavailable)
			case 3:
				next.ServeHTTP(httptest.NewRecorder(), req) // stored, answer lost
				hj, _ := w.(http.Hijacker)
				conn, _, _ := hj.Hijack()
				conn.Close()
			default:
				next.ServeHTTP(w, req)
			}
		})
	})
	r.spool(t, records(200))
	r.drain(t)
	if n := r.stored(t); n != 200 {
		t.Errorf("stored %d records, want exactly 200", n)
	}
	if calls.Load() < 7 {
		t.Errorf("only %d requests: the failures were not retried", calls.Load())
	}
}

func TestAnUnauthorizedAgentKeepsEverything(t *testing.T) {
	r := newRig(t, nil)
	r.spool(t, records(10))
	r.sh = mustShipper(t, r, "wrong-token")
	if _, err := r.sh.ShipOnce(context.Background()); err == nil {
		t.Fatal("shipping with a wrong token succeeded")
	}
	if r.out.Stats().Entries != 10 {
		t.Fatalf("%d entries left, want all 10 kept", r.out.Stats().Entries)
	}
}

func mustShipper(t *testing.T, r *rig, tok string) *ship.Shipper {
	t.Helper()
	sh, err := ship.New(ship.Options{Spool: r.out, Dead: r.dead, BaseURL: r.url, Token: tok, Client: http.DefaultClient,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func TestAMalformedRecordIsIsolatedAndSetAsideWithoutBlockingTheSpool(t *testing.T) {
	r := newRig(t, nil)
	recs := records(10)
	r.spool(t, recs[:4])
	if _, err := r.out.Append(ship.KindUsage, []byte(`{"id": oops`)); err != nil { // not even JSON
		t.Fatal(err)
	}
	r.spool(t, recs[4:])
	r.drain(t)
	if n := r.stored(t); n != 10 {
		t.Errorf("stored %d records, want the 10 good ones", n)
	}
	if n := r.dead.Stats().Entries; n != 1 {
		t.Errorf("%d dead letters, want the malformed one", n)
	}
}

func TestOnAckIsToldOfEveryEntryOnceDeliveredOrRejected(t *testing.T) {
	r := newRig(t, nil)
	var acks []ship.Ack
	sh, err := ship.New(ship.Options{Spool: r.out, Dead: r.dead, BaseURL: r.url, Token: token, Client: http.DefaultClient, BatchSize: 50,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), OnAck: func(a ship.Ack) { acks = append(acks, a) }})
	if err != nil {
		t.Fatal(err)
	}
	r.sh = sh
	recs := records(120)
	recs[77].Tenant = "unknown-institution"
	recs[77].SetID()
	r.spool(t, recs)
	r.drain(t)
	seen := map[uint64]string{}
	for _, a := range acks {
		if a.Kind != ship.KindUsage {
			t.Errorf("ack of kind %q", a.Kind)
		}
		for outcome, es := range map[string][]spool.Entry{"delivered": a.Delivered, "rejected": a.Rejected} {
			for _, e := range es {
				if seen[e.Seq] != "" {
					t.Errorf("entry %d told twice", e.Seq)
				}
				seen[e.Seq] = outcome
			}
		}
	}
	if len(seen) != 120 || seen[78] != "rejected" {
		t.Errorf("told of %d entries, entry 78 (the invalid record) %q; want 120, and rejected", len(seen), seen[78])
	}
}

func TestATornTailTheSpoolCutAtRecoveryIsLoggedAndExported(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	out, err := spool.Open(dir, spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Append(ship.KindUsage, []byte(`{"whole":"entry"}`)); err != nil {
		t.Fatal(err)
	}
	out.Close()
	// A crash in the middle of the next Append leaves part of its frame.
	segs, _ := filepath.Glob(filepath.Join(dir, "*"))
	slices.Sort(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	torn := []byte{0, 0, 0, 40, 1, 2, 3}
	f.Write(torn)
	f.Close()

	if out, err = spool.Open(dir, spool.Options{}); err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	dead, err := spool.Open(filepath.Join(t.TempDir(), "dead"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	var logs strings.Builder
	reg := prometheus.NewRegistry()
	if _, err := ship.New(ship.Options{Spool: out, Dead: dead, BaseURL: "http://127.0.0.1:1", Token: token, Client: http.DefaultClient,
		Registry: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
		t.Fatal(err)
	}
	if got := promtest.Value(t, reg, "paasmeter_agent_spool_recovery_truncated_bytes", map[string]string{"spool": "outgoing"}); got != float64(len(torn)) {
		t.Errorf("the exported cut is %v bytes, want the %d of the torn write", got, len(torn))
	}
	if got := promtest.Value(t, reg, "paasmeter_agent_spool_recovery_truncated_bytes", map[string]string{"spool": "dead"}); got != 0 {
		t.Errorf("the dead-letter spool reports %v bytes cut, want 0", got)
	}
	if !strings.Contains(logs.String(), "torn write") || !strings.Contains(logs.String(), fmt.Sprintf("bytes=%d", len(torn))) {
		t.Errorf("the cut was not logged with its size: %q", logs.String())
	}
}

// TestAConflictLeavesTheSpoolCountedAndLogged: records whose ids the
// collector holds with other content are answered as conflicts; the shipper
// does not resend them forever, and says so.
func TestAConflictLeavesTheSpoolCountedAndLogged(t *testing.T) {
	r := newRig(t, nil)
	first := records(3)
	r.spool(t, first)
	r.drain(t)
	changed := records(3)
	changed[1].Quantity += 7 // same id, other content
	r.spool(t, changed)
	var logs strings.Builder
	reg := prometheus.NewRegistry()
	sh, err := ship.New(ship.Options{Spool: r.out, Dead: r.dead, BaseURL: r.url, Token: token, Client: http.DefaultClient,
		Registry: reg, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := sh.ShipOnce(context.Background()); err != nil || n != 3 {
		t.Fatalf("ShipOnce = %d, %v; want the 3 records delivered", n, err)
	}
	if left := r.out.Stats().Entries; left != 0 {
		t.Errorf("%d records left in the spool, want none", left)
	}
	for outcome, want := range map[string]float64{"conflict": 1, "duplicate": 2, "new": 0} {
		if got := promtest.Value(t, reg, "paasmeter_agent_shipped_records_total", map[string]string{"kind": "usage", "outcome": outcome}); got != want {
			t.Errorf("shipped %s = %v, want %v", outcome, got, want)
		}
	}
	if !strings.Contains(logs.String(), changed[1].ID) {
		t.Errorf("log %q does not name the conflicting id %s", logs.String(), changed[1].ID)
	}
}

// TestUsageBatchesCarryTheNodeCapacity: the collector bounds usage by the
// capacity the shipper reports, in headers of usage batches only.
func TestUsageBatchesCarryTheNodeCapacity(t *testing.T) {
	var got atomic.Value
	r := newRig(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			got.Store(req.Header.Get(usage.HeaderNodeCPUs) + "/" + req.Header.Get(usage.HeaderNodeMemoryBytes))
			next.ServeHTTP(w, req)
		})
	})
	sh, err := ship.New(ship.Options{Spool: r.out, Dead: r.dead, BaseURL: r.url, Token: token, Client: http.DefaultClient,
		Capacity: usage.NodeCapacity{CPUs: 2, MemoryBytes: 1 << 30}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	recs := records(2)
	recs[1].Quantity = 2*int64(time.Minute) + 1 // more than 2 CPUs can do in its minute
	r.spool(t, recs)
	if _, err := sh.ShipOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got.Load() != "2/1073741824" {
		t.Errorf("headers %v, want 2/1073741824", got.Load())
	}
	if n := r.stored(t); n != 1 {
		t.Errorf("stored %d records, want the one within the node's capacity", n)
	}
	if dl, _ := r.dead.Peek(10, 1<<20); len(dl) != 1 {
		t.Errorf("%d dead letters, want the record beyond the node's capacity", len(dl))
	}
}

// TestASecondCollectorTakesOverAtOnceWhenTheFirstIsKilled ships to two real
// collectors (agent.collector_urls). The first dies in the middle of the
// third batch, after storing it and before answering, and refuses every
// connection from then on: the shipper sends that batch to the second at
// once (its backoff is an hour: a wait would fail the test), stays with it,
// and every record reaches a store; the third batch, stored by both, is
// the one a shared store would have kept once.
func TestASecondCollectorTakesOverAtOnceWhenTheFirstIsKilled(t *testing.T) {
	var calls atomic.Int64
	first, err := collectortest.StartBehind(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			n := calls.Add(1)
			if n == 3 {
				next.ServeHTTP(httptest.NewRecorder(), req) // stored, answer lost
			}
			if n >= 3 {
				hj, _ := w.(http.Hijacker)
				conn, _, _ := hj.Hijack()
				conn.Close()
				return
			}
			next.ServeHTTP(w, req)
		})
	}, t.TempDir(), "node-1", token, "caami")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Close)
	second, err := collectortest.Start(t.TempDir(), "node-1", token, "caami")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)

	out, dead := spooltest.Pair(t)
	reg := prometheus.NewRegistry()
	sh, err := ship.New(ship.Options{Spool: out, Dead: dead, BaseURLs: []string{first.URL, second.URL}, Token: token, Client: http.DefaultClient,
		BatchSize: 50, MinBackoff: time.Hour, Idle: time.Millisecond, Registry: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{out: out, dead: dead}
	sent := records(500)
	r.spool(t, sent)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { sh.Run(ctx); close(done) }()
	for out.Stats().Entries > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond) // polled, with the context's deadline
	}
	cancel()
	<-done
	if n := out.Stats().Entries; n != 0 {
		t.Fatalf("%d records left in the spool: the shipper waited instead of moving to the second collector", n)
	}

	ids := func(st metering.Store) map[string]bool {
		got := map[string]bool{}
		now := time.Now()
		st.ScanUsage(context.Background(), metering.UsageFilter{Tenant: "caami", From: now.Add(-time.Hour), To: now.Add(time.Hour)},
			func(rec usage.Record) error { got[rec.ID] = true; return nil })
		return got
	}
	a, b := ids(first.Store), ids(second.Store)
	for i, rec := range sent {
		wantA, wantB := i < 150, i >= 100 // the third batch reached both
		if a[rec.ID] != wantA || b[rec.ID] != wantB {
			t.Fatalf("record %d: in the first collector's store %v (want %v), in the second's %v (want %v)", i, a[rec.ID], wantA, b[rec.ID], wantB)
		}
	}
	if len(a)+len(b) != len(sent)+50 {
		t.Errorf("stores hold %d + %d records, want the %d sent and the third batch twice", len(a), len(b), len(sent))
	}
	if n := dead.Stats().Entries; n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("the first collector got %d requests, want 3: the shipper stays with the one that answers", n)
	}
	if v := promtest.Value(t, reg, "paasmeter_agent_ship_failovers_total", nil); v != 1 {
		t.Errorf("paasmeter_agent_ship_failovers_total = %v, want 1", v)
	}
}
