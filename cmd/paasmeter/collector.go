package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	promversion "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/telemetry"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

func (a *app) collectorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "collector",
		Short: "Run the collector: usage ingest and tenant-scoped queries",
		Long: `Run the collector. It serves two listeners:

  collector.listen        POST /api/v1/usage (agent tokens), GET /api/v1/tenants/{tenant}/usage
                          (institution or admin tokens), /healthz, /readyz
  collector.admin_listen  /metrics and /debug/pprof/ for operators: keep it private

Usage records are validated, deduplicated by id and stored in the embedded store
under store.data_dir; a batch is acknowledged only after it is on disk.
SIGINT or SIGTERM stops it gracefully: in-flight batches finish first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runCollector(cmd.Context())
		},
	}
}

func (a *app) runCollector(ctx context.Context) (err error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	srv, closeCollector, err := a.openCollector(ctx, cfg, a.logger(cfg))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, closeCollector()) }()
	return srv.Run(ctx, nil)
}

// openCollector builds the collector of cfg over the embedded store, ready to
// Run; closeCollector closes the store and flushes the traces once Run returned.
func (a *app) openCollector(ctx context.Context, cfg *config.Config, log *slog.Logger) (srv *collector.Server, closeCollector func() error, err error) {
	loc, err := cfg.Location()
	if err != nil {
		return nil, nil, err
	}
	tp, shutdownTracing, err := telemetry.NewTracerProvider(ctx, cfg.Tracing, "paasmeter-collector", version, a.stdout)
	if err != nil {
		return nil, nil, err
	}
	// The traces are flushed even when the caller's context ended: that is
	// how a collector usually stops.
	closeTracing := func() error { return shutdownTracing(context.WithoutCancel(ctx)) }
	store, err := embedded.Open(ctx, cfg.Store.DataDir)
	if err != nil {
		return nil, nil, errors.Join(err, closeTracing())
	}
	closeCollector = func() error { return errors.Join(store.Close(), closeTracing()) }
	defer func() {
		if err != nil {
			err = errors.Join(err, closeCollector())
		}
	}()
	log.Info("metering store opened", "kind", "embedded", "path", store.Path())

	authn, err := auth.NewAuthenticator(cfg.Tokens)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := collector.RegisterProcessMetrics(reg); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(promversion.NewCollector("paasmeter")); err != nil {
		return nil, nil, err
	}
	srv, err = collector.New(collector.Options{
		Config:   cfg.Collector,
		Store:    store,
		Auth:     authn,
		Tenants:  cfg.TenantSet(),
		Location: loc,
		Clock:    clock.System{},
		Logger:   log,
		Registry: reg,
		Tracer:   tp,
	})
	if err != nil {
		return nil, nil, err
	}
	return srv, closeCollector, nil
}
