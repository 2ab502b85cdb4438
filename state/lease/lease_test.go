package lease_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/lease"
	"github.com/paasmeter/paasmeter/state/postgres"
	"github.com/paasmeter/paasmeter/state/postgres/pgtest"
	"github.com/paasmeter/paasmeter/state/statetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

const ttl = 30 * time.Second

func newLease(t *testing.T, store *postgres.Store, holder string, clk clock.Clock, reg prometheus.Registerer) *lease.Lease {
	t.Helper()
	l, err := lease.New(lease.Options{Store: store, Name: "reconcile-metrics", Holder: holder, TTL: ttl, Clock: clk, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func renew(t *testing.T, l *lease.Lease, want bool, when string) {
	t.Helper()
	got, err := l.Renew(context.Background())
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	if got != want {
		t.Fatalf("%s: Renew says held %v, want %v", when, got, want)
	}
	if l.Held() != want {
		t.Fatalf("%s: Held says %v after Renew said %v", when, l.Held(), want)
	}
}

// TestTwoHoldersAndAStoppedRenewer runs two holders, as two collectors on
// one PostgreSQL (a store each), on one clock: one holds the lease at a
// time; when the holder's renewer stops, it stops believing it holds the
// lease at the very instant the other may take it, and not before.
func TestTwoHoldersAndAStoppedRenewer(t *testing.T) {
	dsn := pgtest.DSN(t)
	clk := clock.NewManual(time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC))
	regA := prometheus.NewRegistry()
	a := newLease(t, statetest.Open(t, postgres.Open, dsn), "collector-a", clk, regA)
	b := newLease(t, statetest.Open(t, postgres.Open, dsn), "collector-b", clk, nil)

	renew(t, a, true, "a first")
	renew(t, b, false, "b while a holds")
	clk.Advance(ttl / 3)
	renew(t, a, true, "a renews")
	renew(t, b, false, "b after a renewed")

	// a's renewer stops (a process frozen, or cut off from the database).
	clk.Advance(ttl - time.Second)
	renew(t, b, false, "b a second before a's lease ends")
	if !a.Held() {
		t.Fatal("a believes it lost the lease a second before its end")
	}
	clk.Advance(time.Second)
	if a.Held() {
		t.Fatal("a still believes it holds the lease at its end")
	}
	renew(t, b, true, "b at the end of a's lease")
	renew(t, a, false, "a's renewer back")

	// b stops cleanly: it releases, and a takes the lease without waiting.
	b.Release(context.Background())
	if b.Held() {
		t.Fatal("b holds the lease after releasing it")
	}
	renew(t, a, true, "a after b released")
	if v := gauge(t, regA); v != 1 {
		t.Fatalf("paasmeter_collector_lease_held of a = %v, want 1", v)
	}
}

func gauge(t *testing.T, g prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "paasmeter_collector_lease_held" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no paasmeter_collector_lease_held")
	return 0
}

// TestRunReleasesWhenItStops runs a holder's renewer and stops it: the
// lease is free for the other at once, before its TTL.
func TestRunReleasesWhenItStops(t *testing.T) {
	dsn := pgtest.DSN(t)
	clk := clock.NewManual(time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC))
	a := newLease(t, statetest.Open(t, postgres.Open, dsn), "collector-a", clk, nil)
	b := newLease(t, statetest.Open(t, postgres.Open, dsn), "collector-b", clk, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	select {
	case <-a.Gained():
	case <-time.After(30 * time.Second):
		t.Fatal("a's renewer did not take the free lease")
	}
	renew(t, b, false, "b while a's renewer runs")
	cancel()
	<-done
	renew(t, b, true, "b once a's renewer stopped")
}

// TestGatedMetricsAreExportedByTheHolderOnly registers a gauge through the
// lease: the holder exports it once its job has run, the other collector
// does not.
func TestGatedMetricsAreExportedByTheHolderOnly(t *testing.T) {
	dsn := pgtest.DSN(t)
	clk := clock.NewManual(time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC))
	a := newLease(t, statetest.Open(t, postgres.Open, dsn), "collector-a", clk, nil)
	b := newLease(t, statetest.Open(t, postgres.Open, dsn), "collector-b", clk, nil)
	exported := func(l *lease.Lease) bool {
		reg := prometheus.NewRegistry()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "paasmeter_test_figure", Help: "A figure one collector computes."})
		g.Set(42)
		if err := l.Registerer(reg).Register(g); err != nil {
			t.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		return len(mfs) == 1
	}
	renew(t, a, true, "a")
	renew(t, b, false, "b")
	if exported(a) {
		t.Fatal("a exports the figure before its job ran: a holder that just took the lease over would export zeros")
	}
	a.Served()
	b.Served() // not the holder: no effect
	if !exported(a) || exported(b) {
		t.Fatalf("exported by a: %v, by b: %v; want a only", exported(a), exported(b))
	}
	// a loses the lease (its TTL runs out), b takes it: b exports only once
	// its job has run, a no longer.
	clk.Advance(ttl + time.Second)
	renew(t, b, true, "b after a's lease ran out")
	if exported(a) || exported(b) {
		t.Fatalf("after the handover, before b's job ran: exported by a: %v, by b: %v; want neither", exported(a), exported(b))
	}
	b.Served()
	if exported(a) || !exported(b) {
		t.Fatalf("after b's job ran: exported by a: %v, by b: %v; want b only", exported(a), exported(b))
	}
}

// TestTheEmbeddedStoreAlwaysGrantsTheLease: it serves one collector.
func TestTheEmbeddedStoreAlwaysGrantsTheLease(t *testing.T) {
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := clock.NewManual(time.Date(2026, 12, 7, 14, 0, 0, 0, time.UTC))
	for _, holder := range []string{"a", "b"} {
		l, err := lease.New(lease.Options{Store: st, Name: "sla-metrics", Holder: holder, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		renew(t, l, true, holder)
	}
}
