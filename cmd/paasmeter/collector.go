package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	promversion "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/audit"
	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/telemetry"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla/slahttp"
)

func (a *app) collectorCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "collector",
		Short: "Run the collector: usage, event and log ingest, tenant-scoped queries",
		Long: `Run the collector. It serves two listeners:

  collector.listen        POST /api/v1/usage, /api/v1/events, /api/v1/logs (agent tokens),
                          POST /loki/api/v1/push (Loki clients), GET /api/v1/tenants/{tenant}/usage,
                          /logs, /invoices and /invoices/{number}.{format}, Loki's query_range,
                          labels and label values (institution or admin tokens),
                          /api/v1/maintenance (admin tokens), /healthz, /readyz
  collector.admin_listen  /metrics and /debug/pprof/ for operators: keep it private

Records and log lines are validated, deduplicated by id and stored in the
metering store: the embedded one under store.data_dir, or ClickHouse when
store.metering_dsn is a clickhouse:// DSN; a batch is acknowledged only after
it is durably stored. Operators' reads of tenant data are written to the audit
log first (collector.audit_log). With billing.rate_card configured, institutions
download their issued invoices and credit notes from the state store (store.state_dsn,
else the embedded one in store.data_dir). Admin tokens declare maintenance windows
(/api/v1/maintenance) in the same store; the windows of maintenance.windows are
stored at start, and those the rules refuse (declared too late, or a change of one
that started) are logged. Log lines older than their tenant's
log_retention are deleted every collector.logs.retention_interval.
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

// openCollector builds the collector of cfg over its metering store and its
// state store (invoices with billing configured, maintenance windows always),
// ready to Run; closeCollector closes the stores and flushes the traces once
// Run returned.
func (a *app) openCollector(ctx context.Context, cfg *config.Config, log *slog.Logger) (srv *collector.Server, closeCollector func() error, err error) {
	loc, err := cfg.Location()
	if err != nil {
		return nil, nil, err
	}
	// Without a rate card there is no invoice to serve; with one, its
	// errors stop the collector before anything opens.
	var billingOpts *billing.Options
	if cfg.Billing.RateCard != "" {
		o, err := a.billingOptions(cfg, log)
		if err != nil {
			return nil, nil, err
		}
		billingOpts = &o
		// Records the rate card can never price are refused at ingest, with
		// a 400 naming window_start: the agent's dead letters keep them.
		cfg.Collector.EarliestWindow = o.Card.Versions[0].Effective
	}
	tp, shutdownTracing, err := telemetry.NewTracerProvider(ctx, cfg.Tracing, "paasmeter-collector", version, a.stdout)
	if err != nil {
		return nil, nil, err
	}
	// The traces are flushed even when the caller's context ended: that is
	// how a collector usually stops.
	closeTracing := func() error { return shutdownTracing(context.WithoutCancel(ctx)) }
	store, err := openMeteringStore(ctx, cfg, log)
	if err != nil {
		return nil, nil, errors.Join(err, closeTracing())
	}
	// Operators' reads of tenant data are refused without an audit log, so it opens with the store.
	auditLog, err := audit.OpenFile(cfg.AuditLogPath())
	if err != nil {
		return nil, nil, errors.Join(err, store.Close(), closeTracing())
	}
	// closeAll grows with what opens. It is not the closeCollector result:
	// an error return sets that to nil before the deferred close runs.
	closeAll := func() error { return errors.Join(store.Close(), auditLog.Close(), closeTracing()) }
	defer func() {
		if err != nil {
			err = errors.Join(err, closeAll())
		}
	}()
	log.Info("audit log opened", "path", auditLog.Path())
	// The state store holds the issued invoices and the maintenance windows:
	// every collector serves the windows' admin API and the SLA reports.
	stateStore, err := openStateStore(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	closeStores := closeAll
	closeAll = func() error { return errors.Join(stateStore.Close(), closeStores()) }
	windows, err := a.newMaintenanceService(cfg, stateStore, log)
	if err != nil {
		return nil, nil, err
	}
	if err := syncMaintenanceConfig(ctx, cfg, windows, log); err != nil {
		return nil, nil, err
	}
	engine, err := a.newSLAEngine(cfg, store, windows)
	if err != nil {
		return nil, nil, err
	}
	// The collector serves institutions the documents the invoice commands
	// issued, read from the state store they share.
	var invoices billinghttp.InvoiceReader
	if billingOpts != nil {
		if billingOpts.SLA == nil {
			billingOpts.SLA = engine
		}
		svc, err := a.newBillingService(cfg, *billingOpts, store, stateStore, log)
		if err != nil {
			return nil, nil, err
		}
		invoices = svc
	}

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
	// `paasmeter invoice issue` records its outcome in the state store's audit log.
	if err := reg.Register(billing.NewRunMetrics(stateStore, log)); err != nil {
		return nil, nil, err
	}
	srv, err = collector.New(collector.Options{
		Config: cfg.Collector,
		Store:  store,
		Auth:   authn,
		// Run enforces their log retention every collector.logs.retention_interval.
		Institutions: cfg.Tenants,
		Audit:        auditLog,
		Location:     loc,
		Clock:        clock.System{},
		Logger:       log,
		Registry:     reg,
		Tracer:       tp,
		// On by default for ClickHouse, which wants few large inserts.
		Batch: cfg.Store.MeteringBatch(),
		// Billing and the SLA serve their routes through the collector's
		// table. Admin tokens declare windows; the SLA engine reads them from the store.
		Routes: append(billinghttp.Routes(billinghttp.Options{Invoices: invoices, Logger: log}),
			slahttp.Routes(slahttp.Options{Reports: slaReports{engine, windows}, Windows: windows, Institutions: cfg.Tenants,
				Location: loc, Clock: clock.System{}, Logger: log})...),
	})
	if err != nil {
		return nil, nil, err
	}
	stopReconciler, err := a.startReconciler(ctx, cfg, store, stateStore, reg, log)
	if err != nil {
		return nil, nil, fmt.Errorf("reconciliation: %w", err)
	}
	stopSLAMetrics, err := a.startSLAMetrics(ctx, cfg, engine, reg, log)
	if err != nil {
		stopReconciler()
		return nil, nil, fmt.Errorf("sla metrics: %w", err)
	}
	closeRest := closeAll
	closeAll = func() error { stopReconciler(); stopSLAMetrics(); return closeRest() }
	return srv, closeAll, nil
}

// openMeteringStore opens the metering store that cfg names: ClickHouse for a
// store.metering_dsn, else the embedded store in store.data_dir.
func openMeteringStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (metering.Store, error) {
	if cfg.Store.MeteringDSN != "" {
		store, err := clickhouse.Open(ctx, cfg.Store.MeteringDSN, log)
		if err != nil {
			return nil, err
		}
		log.Info("metering store opened", "kind", "clickhouse", "store", store.String())
		return store, nil
	}
	store, err := embedded.Open(ctx, cfg.Store.DataDir)
	if err != nil {
		return nil, err
	}
	log.Info("metering store opened", "kind", "embedded", "path", store.Path())
	return store, nil
}
