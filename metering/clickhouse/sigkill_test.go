package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/spool/spooltest"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// killProxy forwards the store's connections to a ClickHouse server and
// SIGKILLs the server once killAfter bytes went to it, before forwarding the
// rest: the server dies with a batch half received.
type killProxy struct {
	ln        net.Listener
	target    string
	killAfter int64
	kill      func() error
	sent      atomic.Int64
	once      sync.Once
	killed    chan struct{} // closed once the server is gone
	killErr   error
}

func startKillProxy(t *testing.T, target string, killAfter int64, kill func() error) *killProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &killProxy{ln: ln, target: target, killAfter: killAfter, kill: kill, killed: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
	return p
}

func (p *killProxy) pipe(client net.Conn) {
	defer client.Close()
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return // the server is down: so is this connection
	}
	defer server.Close()
	go func() {
		io.Copy(client, server)
		client.Close()
	}()
	buf := make([]byte, 16<<10)
	for {
		n, err := client.Read(buf)
		if n > 0 && p.sent.Add(int64(n)) >= p.killAfter {
			p.once.Do(func() {
				p.killErr = p.kill()
				close(p.killed)
			})
		}
		if n > 0 {
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// agent is one node's spool and shipper.
type agent struct {
	node      string
	out, dead *spool.Spool
	shipper   *ship.Shipper
	reg       *prometheus.Registry
	sent      []usage.Record
}

func newAgent(t *testing.T, node, token, url string, recs []usage.Record) *agent {
	t.Helper()
	a := &agent{node: node, reg: prometheus.NewRegistry(), sent: recs}
	a.out, a.dead = spooltest.Pair(t)
	var err error
	data := make([][]byte, len(recs))
	for i := range recs {
		if data[i], err = json.Marshal(recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.out.Append(ship.KindUsage, data...); err != nil {
		t.Fatal(err)
	}
	a.shipper, err = ship.New(ship.Options{Spool: a.out, Dead: a.dead, BaseURL: url, Token: token,
		Client: &http.Client{Timeout: time.Minute}, BatchSize: 500, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		Idle: 10 * time.Millisecond, Registry: a.reg, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sentRecords returns n records of node, over two institutions, with
// quantities that differ from record to record.
func sentRecords(node string, n int, start time.Time) []usage.Record {
	out := make([]usage.Record, n)
	for i := range out {
		tenant := []string{"caami", "ona"}[i%2]
		r := usagetest.Record(tenant, fmt.Sprintf("%s-c%03d", node, i%100), usage.MeterCPU, start.Add(time.Duration(i/100)*time.Minute), int64(1_000_003*i+len(node)))
		r.Node = node
		r.SetID() // the node is part of the id
		out[i] = r
	}
	return out
}

// shipping is a collector over a store and two agents shipping perAgent
// usage records each to it, over two institutions, from start on.
type shipping struct {
	store  metering.Store
	reg    *prometheus.Registry // the collector's
	agents []*agent
	start  time.Time
	stop   func()
}

// startShipping starts a collector over store and two agents shipping to it,
// stopped when the test ends.
func startShipping(t *testing.T, ctx context.Context, store metering.Store, perAgent int) *shipping {
	t.Helper()
	tokens := map[string]string{"node-1": auth.New(), "node-2": auth.New()}
	var tcs []auth.TokenConfig
	for node, tok := range tokens {
		tcs = append(tcs, auth.TokenConfig{Name: node, Role: auth.RoleAgent, Node: node, Tenants: []string{auth.AnyTenant}, SHA256: auth.Hash(tok)})
	}
	authn, err := auth.NewAuthenticator(tcs)
	if err != nil {
		t.Fatal(err)
	}
	batch := batching.DefaultConfig()
	batch.RetryAfter = time.Second
	sh := &shipping{store: store, reg: prometheus.NewRegistry(), start: time.Now().UTC().Truncate(time.Minute).Add(-6 * time.Hour)}
	srv, err := collector.New(collector.Options{Config: collector.DefaultConfig(), Store: store, Auth: authn,
		Institutions: institution.Of("caami", "ona"), Batch: &batch, Registry: sh.reg,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	sh.agents = []*agent{
		newAgent(t, "node-1", tokens["node-1"], api.URL, sentRecords("node-1", perAgent, sh.start)),
		newAgent(t, "node-2", tokens["node-2"], api.URL, sentRecords("node-2", perAgent, sh.start)),
	}
	shipCtx, stopShipping := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, a := range sh.agents {
		wg.Go(func() { a.shipper.Run(shipCtx) })
	}
	sh.stop = sync.OnceFunc(func() { stopShipping(); wg.Wait() })
	t.Cleanup(sh.stop)
	return sh
}

// left returns how many records are still in the agents' spools.
func (sh *shipping) left() uint64 {
	var n uint64
	for _, a := range sh.agents {
		n += a.out.Stats().Entries
	}
	return n
}

// unavailable returns how many batches the collector answered 503.
func (sh *shipping) unavailable(t *testing.T) float64 {
	n := 0.0
	for _, a := range sh.agents {
		n += promtest.Value(t, a.reg, "paasmeter_agent_ship_errors_total", map[string]string{"reason": "unavailable"})
	}
	return n
}

// await polls cond until it holds, failing t with what when ctx ends first.
func await(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// finish waits until the agents' spools are empty, stops the agents, and
// checks that the outage was seen (flushes failed and batches were answered
// 503), that no record went to a dead-letter spool and that the store holds
// every record sent exactly once.
func (sh *shipping) finish(t *testing.T, ctx context.Context) {
	t.Helper()
	await(t, ctx, "records still in the agents' spools", func() bool { return sh.left() == 0 })
	sh.stop()

	// The outage was seen: flushes failed and the agents were answered 503.
	if n := promtest.Value(t, sh.reg, "paasmeter_store_batch_flushes_total", map[string]string{"kind": "usage", "outcome": "error"}); n == 0 {
		t.Error("no flush failed: the outage did not happen during one")
	}
	for _, a := range sh.agents {
		if n := a.dead.Stats().Entries; n != 0 {
			t.Errorf("%s: %d records in the dead-letter spool", a.node, n)
		}
	}
	if sh.unavailable(t) == 0 {
		t.Error("no batch was answered 503 during the outage")
	}

	// Stored usage is what was sent, record for record, and reads count each once.
	store := sh.store
	want := map[string]usage.Record{}
	wantSum := map[string]*big.Int{"caami": new(big.Int), "ona": new(big.Int)}
	wantCount := map[string]int64{}
	for _, a := range sh.agents {
		for _, r := range a.sent {
			want[r.ID] = r
			wantSum[r.Tenant].Add(wantSum[r.Tenant], big.NewInt(r.Quantity))
			wantCount[r.Tenant]++
		}
	}
	seen := map[string]bool{}
	filter := metering.UsageFilter{From: sh.start, To: sh.start.Add(2 * time.Hour)}
	for _, tenant := range []string{"caami", "ona"} {
		filter.Tenant = tenant
		err := store.ScanUsage(context.Background(), filter, func(r usage.Record) error {
			w, ok := want[r.ID]
			switch {
			case seen[r.ID]:
				t.Errorf("record %s read twice", r.ID)
			case !ok:
				t.Errorf("record %s was stored but never sent", r.ID)
			case r.Quantity != w.Quantity || r.Tenant != w.Tenant || r.Node != w.Node || !r.WindowStart.Equal(w.WindowStart):
				t.Errorf("record %s stored as %+v, sent as %+v", r.ID, r, w)
			}
			seen[r.ID] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := store.QueryUsage(context.Background(), metering.UsageQuery{UsageFilter: filter})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 1 || rows[0].Quantity.Big().Cmp(wantSum[tenant]) != 0 || rows[0].Records != wantCount[tenant] {
			t.Errorf("%s's usage = %+v, want %s over %d records", tenant, rows, wantSum[tenant], wantCount[tenant])
		}
		// One collector's flushes never race, so the ledger misses at most the
		// records a killed flush stored before it failed: never more than stored.
		acc, err := store.AcceptedUsage(context.Background(), tenant, sh.start.Truncate(time.Hour), filter.To)
		if err != nil {
			t.Fatal(err)
		}
		var accepted int64
		for _, r := range acc {
			accepted += r.Records
		}
		if accepted > wantCount[tenant] {
			t.Errorf("%s: %d records accepted, more than the %d stored", tenant, accepted, wantCount[tenant])
		}
		t.Logf("%s: %d records stored, %d accepted", tenant, wantCount[tenant], accepted)
	}
	if len(seen) != len(want) {
		t.Errorf("read %d of the %d records sent", len(seen), len(want))
	}
}

func TestClickHouseKilledInTheMiddleOfABatchThenRestartedStoresExactlyWhatTheAgentsSent(t *testing.T) {
	server := chtest.Start(t)
	const perAgent = 10_000
	// About 150 bytes go to the server per record (its id looked up, then
	// inserted): the kill lands about a third of the way through.
	proxy := startKillProxy(t, server.Addr(), perAgent*2*150/3, server.Kill)
	dsn := strings.Replace(server.DSN(t), server.Addr(), proxy.ln.Addr().String(), 1)
	store, err := clickhouse.Open(context.Background(), dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sh := startShipping(t, ctx, store, perAgent)

	// The outage: the server dies mid-batch and stays down for a few seconds.
	select {
	case <-proxy.killed:
	case <-ctx.Done():
		t.Fatal("the agents sent everything before the server was killed")
	}
	if proxy.killErr != nil {
		t.Fatal(proxy.killErr)
	}
	time.Sleep(3 * time.Second)
	if err := server.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	sh.finish(t, ctx)
}
