package collector_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/metering"
)

// pingStore counts the store's readiness checks and fails them on demand.
type pingStore struct {
	metering.Store
	down  atomic.Bool
	pings atomic.Int64
}

func (p *pingStore) Ready(ctx context.Context) error {
	p.pings.Add(1)
	if p.down.Load() {
		return errors.New("connection refused")
	}
	return p.Store.Ready(ctx)
}

func newPingEnv(t *testing.T, cfg *collector.Config, down bool) (*env, *pingStore) {
	t.Helper()
	p := &pingStore{}
	p.down.Store(down)
	e := newEnv(t, cfg, func(s metering.Store) metering.Store { p.Store = s; return p })
	return e, p
}

// readyGauge returns paasmeter_collector_ready, failing the test when the
// registry lacks it: an absent gauge must not pass for a 0.
func readyGauge(t *testing.T, e *env) float64 {
	t.Helper()
	mfs, err := e.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "paasmeter_collector_ready" {
			if n := len(mf.GetMetric()); n != 1 {
				t.Fatalf("paasmeter_collector_ready has %d series, want 1", n)
			}
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("the registry has no paasmeter_collector_ready")
	return 0
}

func TestReadyMetricChecksTheStoreOnScrapeWithoutReadyz(t *testing.T) {
	t.Run("a store whose Ready fails makes the gauge 0", func(t *testing.T) {
		e, p := newPingEnv(t, nil, true)
		if got := readyGauge(t, e); got != 0 {
			t.Errorf("paasmeter_collector_ready = %v with a store that fails Ready, want 0", got)
		}
		if n := p.pings.Load(); n != 1 {
			t.Errorf("the scrape pinged the store %d times, want 1", n)
		}
	})
	t.Run("a store that answers makes it 1, and scrapes in a row ping it once", func(t *testing.T) {
		e, p := newPingEnv(t, nil, false)
		for range 5 {
			if got := readyGauge(t, e); got != 1 {
				t.Fatalf("paasmeter_collector_ready = %v with a ready store, want 1", got)
			}
		}
		// Prometheus servers scraping side by side share one check per TTL.
		if n := p.pings.Load(); n != 1 {
			t.Errorf("5 scrapes in a row pinged the store %d times, want 1", n)
		}
	})
}

func TestReadyMetricTakesReadyzAnswersAtOnce(t *testing.T) {
	e, p := newPingEnv(t, nil, false)
	if got := readyGauge(t, e); got != 1 {
		t.Fatalf("paasmeter_collector_ready = %v, want 1", got)
	}
	// Within the TTL of that scrape's check, only /readyz's answer can turn it.
	p.down.Store(true)
	if a := do(t, "GET", e.admin.URL+"/readyz", "", nil); a.code != 503 {
		t.Fatalf("/readyz answered %d %s with the store down, want 503", a.code, a.body)
	}
	if got := readyGauge(t, e); got != 0 {
		t.Errorf("paasmeter_collector_ready = %v after /readyz answered 503, want 0", got)
	}
	p.down.Store(false)
	if a := do(t, "GET", e.admin.URL+"/readyz", "", nil); a.code != 200 {
		t.Fatalf("/readyz answered %d %s with the store back, want 200", a.code, a.body)
	}
	if got := readyGauge(t, e); got != 1 {
		t.Errorf("paasmeter_collector_ready = %v after /readyz answered 200, want 1", got)
	}
	// One scrape check and two /readyz checks: the scrapes after /readyz
	// reused its answers.
	if n := p.pings.Load(); n != 3 {
		t.Errorf("the store was pinged %d times, want 3", n)
	}
}

func TestReadyMetricIs0WhileDrainingWithAReadyStore(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	e, _ := newPingEnv(t, &cfg, false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	stopped := make(chan error, 1)
	go func() { stopped <- e.srv.Run(ctx, func(_, _ net.Addr) { close(started) }) }()
	<-started
	if got := readyGauge(t, e); got != 1 {
		t.Fatalf("paasmeter_collector_ready = %v while serving, want 1", got)
	}
	cancel()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if got := readyGauge(t, e); got != 0 {
		t.Errorf("paasmeter_collector_ready = %v once shut down (the store still answers), want 0", got)
	}
}

// TestReadyzDoesNotShowTheStoresError: /readyz is unauthenticated, and the
// store's error can name hosts, paths and users; only the log gets it.
func TestReadyzDoesNotShowTheStoresError(t *testing.T) {
	e, _ := newPingEnv(t, nil, true)
	for _, base := range []string{e.api.URL, e.admin.URL} {
		a := do(t, "GET", base+"/readyz", "", nil)
		if a.code != 503 || strings.Contains(string(a.body), "connection refused") || !strings.Contains(string(a.body), "metering store not ready") {
			t.Errorf("%s/readyz answered %d %s, want 503 with a generic reason", base, a.code, a.body)
		}
	}
}
