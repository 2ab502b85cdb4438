package collector_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/metering"
)

func TestShutdownFinishesInFlightBatches(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	g := newGated()
	e := newEnv(t, &cfg, func(s metering.Store) metering.Store { g.Store = s; return g })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan [2]net.Addr, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- e.srv.Run(ctx, func(api, admin net.Addr) { addrs <- [2]net.Addr{api, admin} }) }()
	a := <-addrs
	api, admin := "http://"+a[0].String(), "http://"+a[1].String()

	posted := postAsync(t, api, agentNode1, encode(t, records("caami", 0, 40)))
	<-g.entered // the batch is being stored
	cancel()    // SIGTERM arrives

	// While the batch is in flight the collector keeps running and says it is
	// going away, so a load balancer stops sending.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a := do(t, "GET", admin+"/readyz", "", nil); a.code == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not turn 503 during shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a batch was still being stored", err)
	default:
	}

	close(g.release)
	if got := <-posted; got.err != nil || got.code != 200 {
		t.Fatalf("in-flight batch answered %d %s (%v), want 200", got.code, got.body, got.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(e.stored(t, "caami")); n != 40 {
		t.Fatalf("stored %d records, want the whole in-flight batch of 40", n)
	}
}
