package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// benchIngestCmd measures the collector's ingest over HTTP against direct
// appends into the same store.
func (a *app) benchIngestCmd() *cobra.Command {
	spec := loadgen.Spec{Tenant: "bench", Node: "bench-node"}
	var url, token string
	var batchDelay time.Duration
	ingest := &cobra.Command{
		Use:   "ingest",
		Short: "Usage records per second over HTTP vs direct inserts into the same store",
		Long: `Generate valid usage batches, then push them twice, each time into a fresh
embedded store: once directly (AppendUsage, no HTTP) and once through a collector
over loopback HTTP (JSON decoding, validation, auth, dedup, metrics). Prints both
rates and their ratio.

With --url, the HTTP phase targets a running collector instead (its tenant and
node must be "bench"/"bench-node", or set --tenant/--node to match its token).
With --batching DELAY, the in-process collector gathers its appends in the
batching writer (store.batch defaults, max_delay DELAY) before the store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := spec.Validate(); err != nil {
				return err
			}
			return a.benchIngest(cmd.Context(), spec, url, token, batchDelay)
		},
	}
	f := ingest.Flags()
	f.IntVar(&spec.Records, "records", 300_000, "records per phase")
	f.IntVar(&spec.BatchSize, "batch", 5000, "records per batch")
	f.IntVar(&spec.Concurrency, "concurrency", 4, "concurrent clients (and writers in the direct phase)")
	f.StringVar(&spec.Tenant, "tenant", spec.Tenant, "tenant of the generated records")
	f.StringVar(&spec.Node, "node", spec.Node, "node of the generated records")
	f.StringVar(&url, "url", "", "usage endpoint of a running collector (default: start one in-process)")
	f.StringVar(&token, "token", "", "agent token for --url")
	f.DurationVar(&batchDelay, "batching", 0, "put a batching writer with this max_delay between the in-process collector and its store (0: none)")
	return ingest
}

func (a *app) benchIngest(ctx context.Context, spec loadgen.Spec, url, token string, batchDelay time.Duration) error {
	spec.End = time.Now()
	writer := "none"
	if batchDelay > 0 {
		writer = "max_delay " + batchDelay.String()
	}
	fmt.Fprintf(a.stdout, "ingest benchmark: %d records per phase, batches of %d, %d concurrent clients, collector's batching writer: %s, GOMAXPROCS=%d\n",
		spec.Records, spec.BatchSize, spec.Concurrency, writer, runtime.GOMAXPROCS(0))
	batches := loadgen.Batches(spec)
	bodies, err := loadgen.Encode(batches)
	if err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "paasmeter-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	direct, err := func() (loadgen.Result, error) {
		store, err := embedded.Open(ctx, dir+"/direct")
		if err != nil {
			return loadgen.Result{}, err
		}
		defer store.Close()
		return loadgen.Direct(ctx, store, batches, spec.Concurrency, time.Now())
	}()
	if err != nil {
		return fmt.Errorf("direct phase: %w", err)
	}

	if url == "" {
		store, err := embedded.Open(ctx, dir+"/http")
		if err != nil {
			return err
		}
		defer store.Close()
		var batch *batching.Config
		if batchDelay > 0 {
			c := batching.DefaultConfig()
			c.MaxDelay = batchDelay
			batch = &c
		}
		stop, u, t, err := startBenchCollector(ctx, store, batch, spec)
		if err != nil {
			return err
		}
		defer stop()
		url, token = u, t
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: spec.Concurrency}}
	viaHTTP, err := loadgen.HTTP(ctx, client, url, token, bodies, spec.Concurrency)
	if err != nil {
		return fmt.Errorf("http phase: %w", err)
	}

	fmt.Fprintf(a.stdout, "%-44s %12s %10s %8s %6s\n", "path", "records/s", "elapsed", "new", "dups")
	for _, r := range []struct {
		name string
		res  loadgen.Result
	}{{"direct: AppendUsage into the embedded store", direct}, {"http: POST /api/v1/usage via a collector", viaHTTP}} {
		fmt.Fprintf(a.stdout, "%-44s %12.0f %10s %8d %6d\n", r.name, r.res.PerSecond(), r.res.Elapsed.Round(time.Millisecond), r.res.New, r.res.Duplicates)
	}
	fmt.Fprintf(a.stdout, "ratio http/direct: %.2f\n", viaHTTP.PerSecond()/direct.PerSecond())
	if direct.New != spec.Records || viaHTTP.New != spec.Records {
		return fmt.Errorf("expected %d new records in each phase, got %d (direct) and %d (http)", spec.Records, direct.New, viaHTTP.New)
	}
	return nil
}

// startBenchCollector runs a collector on loopback over store, configured like
// the real one but for the bench's tenants and one agent token; batch, if not
// nil, puts a batching writer before the store. The caller closes the store
// after stop.
func startBenchCollector(ctx context.Context, store metering.Store, batch *batching.Config, spec loadgen.Spec) (stop func(), url, token string, err error) {
	token = auth.New()
	tokens := []auth.TokenConfig{{Name: "bench", Role: auth.RoleAgent, Node: spec.Node, Tenants: []string{auth.AnyTenant}, SHA256: auth.Hash(token)}}
	stop, base, err := runCollector(ctx, store, batch, tokens, spec.TenantIDs())
	if err != nil {
		return nil, "", "", fmt.Errorf("bench collector: %w", err)
	}
	return stop, base + "/api/v1/usage", token, nil
}

// runCollector runs a collector on loopback over store that knows these
// tokens and institutions (batch as for startBenchCollector) until stop, and
// returns the base URL of its API (http://host:port).
func runCollector(ctx context.Context, store metering.Store, batch *batching.Config, tokens []auth.TokenConfig, tenants []string) (stop func(), base string, err error) {
	authn, err := auth.NewAuthenticator(tokens)
	if err != nil {
		return nil, "", err
	}
	cfg := collector.DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	srv, err := collector.New(collector.Options{Config: cfg, Store: store, Auth: authn, Institutions: institution.Of(tenants...), Batch: batch,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithCancel(ctx)
	addr := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func(api, _ net.Addr) { addr <- api }) }()
	select {
	case a := <-addr:
		return func() { cancel(); <-done }, "http://" + a.String(), nil
	case err := <-done:
		cancel()
		return nil, "", errors.Join(errors.New("the collector did not start"), err)
	}
}
