package hub

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	promversion "github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/billing/slafile"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/internal/telemetry"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/portal"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/sla/slahttp"
	stateopen "github.com/paasmeter/paasmeter/state/open"
)

// The hub's modules.
const (
	// RateCard is billing's configuration and rate card, and the SLA file
	// when billing.sla_file names one: checked before any store opens, so
	// that a configuration error is reported as such. Without
	// billing.rate_card it fails.
	RateCard Module = "rate-card"
	// Tracing is the collector's tracer provider (tracing).
	Tracing Module = "tracing"
	// MeteringStore is ClickHouse for a store.metering_dsn, else the
	// embedded store in store.data_dir.
	MeteringStore Module = "metering-store"
	// AccessLog is the log of operators' reads of tenant data
	// (collector.access_log); the collector refuses those reads without it.
	AccessLog Module = "access-log"
	// StateStore is PostgreSQL for a store.state_dsn, else the embedded
	// store in store.data_dir: issued invoices, maintenance windows and
	// their audit.
	StateStore Module = "state-store"
	// Maintenance is the maintenance windows' service over the state store.
	Maintenance Module = "maintenance"
	// MaintenanceConfig stores the windows of the configuration's
	// maintenance section.
	MaintenanceConfig Module = "maintenance-config"
	// SLACalculator computes availability over the stored events and the
	// declared maintenance windows.
	SLACalculator Module = "sla-calculator"
	// Billing is the invoice service: its SLA credits come from the SLA
	// file if one is configured, else from the SLA calculator.
	Billing Module = "billing"
	// Metrics is the collector's Prometheus registry, with the process,
	// build and invoice-run metrics.
	Metrics Module = "metrics"
	// CollectorServer is the collector, ready to Run; with a rate card it
	// serves the issued invoices.
	CollectorServer Module = "collector-server"
	// ReconcileMetrics reconciles the current month (and the previous one
	// until its invoices can be issued) every billing.reconcile_interval and
	// exports the paasmeter_reconcile_* figures; nothing without a rate card.
	ReconcileMetrics Module = "reconcile-metrics"
	// SLAMetrics exports the running month's paasmeter_sla_* gauges,
	// recomputed every minute.
	SLAMetrics Module = "sla-metrics"
	// Collector is all that `paasmeter collector` runs: the collector and
	// its background jobs.
	Collector Module = "collector"
)

// logRetentionLease is the state store lease of the collector's log
// retention passes (the other jobs' leases are named after their modules).
const logRetentionLease = "log-retention"

// modules returns the hub's module table for h's configuration, which
// decides some dependencies: the collector prices nothing without a rate
// card, and billing reads no SLA calculator with an SLA file.
func (h *Hub) modules() map[Module]module {
	billed := h.cfg.Billing.RateCard != ""
	var server []Module
	if billed {
		// The rate card first: its errors stop the collector before anything opens.
		server = append(server, RateCard)
	}
	server = append(server, Tracing, MeteringStore, AccessLog, StateStore, Maintenance, MaintenanceConfig, SLACalculator)
	if billed {
		server = append(server, Billing)
	}
	server = append(server, Metrics)
	reconcile := []Module{MeteringStore, StateStore, Metrics}
	if billed {
		reconcile = append(reconcile, RateCard)
	}
	billingDeps := []Module{RateCard, MeteringStore, StateStore}
	if h.cfg.Billing.SLAFile == "" {
		billingDeps = append(billingDeps, SLACalculator)
	}
	return map[Module]module{
		RateCard:          {init: h.initRateCard},
		Tracing:           {init: h.initTracing},
		MeteringStore:     {init: h.initMeteringStore},
		AccessLog:         {init: h.initAccessLog},
		StateStore:        {init: h.initStateStore},
		Maintenance:       {deps: []Module{StateStore}, init: h.initMaintenance},
		MaintenanceConfig: {deps: []Module{Maintenance}, init: h.syncMaintenanceConfig},
		SLACalculator:     {deps: []Module{MeteringStore, Maintenance}, init: h.initSLACalculator},
		Billing:           {deps: billingDeps, init: h.initBilling},
		Metrics:           {deps: []Module{StateStore}, init: h.initMetrics},
		CollectorServer:   {deps: server, init: h.initCollectorServer},
		ReconcileMetrics:  {deps: reconcile, init: h.startReconcileMetrics},
		SLAMetrics:        {deps: []Module{SLACalculator, Metrics}, init: h.startSLAMetrics},
		Collector:         {deps: []Module{CollectorServer, ReconcileMetrics, SLAMetrics}},
	}
}

func (h *Hub) initRateCard(context.Context) error {
	bc, err := h.cfg.BillingConfig()
	if err != nil {
		return err
	}
	if h.cfg.Billing.RateCard == "" {
		return errors.New("billing.rate_card: no rate card configured (PAASMETER_RATE_CARD, or see deploy/examples/ratecard.yaml)")
	}
	card, err := ratecard.Load(h.cfg.Billing.RateCard, bc.Location)
	if err != nil {
		return err
	}
	o := &billing.Options{Config: bc, Card: card, Clock: h.opts.Clock, Logger: h.opts.Logger}
	// A file of figures overrides the SLA calculator.
	if h.cfg.Billing.SLAFile != "" {
		f, err := slafile.Load(h.cfg.Billing.SLAFile)
		if err != nil {
			return err
		}
		o.SLA = f
	}
	h.billingOpts = o
	return nil
}

func (h *Hub) initTracing(ctx context.Context) error {
	tp, shutdown, err := telemetry.NewTracerProvider(ctx, h.cfg.Tracing, "paasmeter-collector", h.opts.Version, h.opts.Stdout)
	if err != nil {
		return err
	}
	h.tracer = tp
	// The traces are flushed even when ctx ended: that is how a collector
	// usually stops.
	h.onClose(func() error { return shutdown(context.WithoutCancel(ctx)) })
	return nil
}

func (h *Hub) initMeteringStore(ctx context.Context) error {
	var store metering.Store
	var where []any // what the log line says of the store
	if dsn := h.cfg.Store.MeteringDSN; dsn != "" {
		ch, err := clickhouse.Open(ctx, dsn, h.opts.Logger)
		if err != nil {
			return err
		}
		store, where = ch, []any{"kind", "clickhouse", "store", ch.String()}
	} else {
		emb, err := embedded.Open(ctx, h.cfg.Store.DataDir)
		if err != nil {
			return err
		}
		store, where = emb, []any{"kind", "embedded", "path", emb.Path()}
	}
	h.metering = store
	h.onClose(store.Close)
	h.opts.Logger.Info("metering store opened", where...)
	return nil
}

func (h *Hub) initAccessLog(context.Context) error {
	f, err := accesslog.OpenFile(h.cfg.AccessLogPath())
	if err != nil {
		return err
	}
	h.accessLog = f
	h.onClose(f.Close)
	h.opts.Logger.Info("access log opened", "path", f.Path())
	return nil
}

func (h *Hub) initStateStore(ctx context.Context) error {
	st, err := stateopen.Open(ctx, h.cfg.Store.StateDSN, h.cfg.Store.DataDir)
	if err != nil {
		return fmt.Errorf("store.state_dsn: %w", err)
	}
	h.state = st
	h.onClose(st.Close)
	kind := "embedded"
	if h.cfg.Store.StateDSN != "" {
		kind = "postgres"
	}
	h.opts.Logger.Info("state store opened", "kind", kind)
	return nil
}

func (h *Hub) initMaintenance(context.Context) error {
	svc, err := maintenance.New(maintenance.Options{Store: h.state, Location: h.loc, LeadTime: h.cfg.Maintenance.LeadTime,
		Institutions: h.cfg.Tenants, Clock: h.opts.Clock, Logger: h.opts.Logger})
	if err != nil {
		return err
	}
	h.maintenance = svc
	return nil
}

// syncMaintenanceConfig stores the windows of the configuration's
// maintenance section. A window the rules refuse is logged (by the service)
// and counted, and stops nothing: the others, and everything else, still work.
func (h *Hub) syncMaintenanceConfig(ctx context.Context) error {
	decls, err := h.cfg.MaintenanceDeclarations()
	if err != nil {
		return err
	}
	refusals, err := h.maintenance.SyncConfig(ctx, decls)
	if err != nil {
		return fmt.Errorf("maintenance.windows: %w", err)
	}
	if len(refusals) > 0 {
		h.opts.Logger.Warn("maintenance windows of the configuration were refused: they do not count (see the warnings above)",
			"refused", len(refusals), "windows", len(decls))
	} else if len(decls) > 0 {
		h.opts.Logger.Info("maintenance windows of the configuration stored", "windows", len(decls))
	}
	return nil
}

func (h *Hub) initSLACalculator(context.Context) error {
	c := sla.DefaultConfig()
	c.Location, c.CreditTiers = h.loc, h.cfg.Billing.SLACreditTiers
	eng, err := sla.NewCalculator(h.metering, h.maintenance, c, h.opts.Clock)
	if err != nil {
		return err
	}
	h.sla = eng
	return nil
}

func (h *Hub) initBilling(context.Context) error {
	o := *h.billingOpts
	if o.SLA == nil {
		o.SLA = h.sla
	}
	o.Usage, o.State = h.metering, h.state
	svc, err := billing.New(o)
	if err != nil {
		return err
	}
	h.billing = svc
	return nil
}

func (h *Hub) initMetrics(context.Context) error {
	reg := prometheus.NewRegistry()
	if err := collector.RegisterProcessMetrics(reg); err != nil {
		return err
	}
	if err := reg.Register(promversion.NewCollector("paasmeter")); err != nil {
		return err
	}
	// `paasmeter invoice issue` records its outcome in the state store's audit log.
	if err := reg.Register(billing.NewRunMetrics(h.state, h.opts.Logger)); err != nil {
		return err
	}
	h.registry = reg
	return nil
}

// initCollectorServer builds the collector: the one place where its
// options are put together from the other modules.
func (h *Hub) initCollectorServer(ctx context.Context) error {
	authn, err := auth.NewAuthenticator(h.cfg.Tokens, h.cfg.NodeCertificates...)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cc := h.cfg.Collector
	// The collector serves institutions the documents the invoice commands
	// issued, read from the state store they share.
	var invoices billinghttp.InvoiceReader
	// The API and the portal share one cost computer: its limit and cache
	// hold for both.
	var costs *billinghttp.Costs
	if h.billing != nil {
		invoices, costs = h.billing, billinghttp.NewCosts(h.billing, h.billing, h.opts.Clock, h.opts.Logger)
		// Records the rate card can never price are refused at ingest, with
		// a 400 naming window_start: the agent's dead letters keep them.
		cc.EarliestWindow = h.billingOpts.Card.Versions[0].Effective
	}
	// Several collectors on one state store take turns: the lease's holder
	// alone enforces log retention.
	retention, err := h.lease(ctx, logRetentionLease)
	if err != nil {
		return err
	}
	// The institutions' portal shows the same figures as the API.
	web, err := portal.New(portal.Options{Auth: authn, OIDC: h.cfg.Portal.OIDC, Institutions: h.cfg.Tenants, Costs: costs, Invoices: invoices,
		SLA: slaReports{h.sla, h.maintenance}, Usage: h.metering,
		Location: h.loc, Clock: h.opts.Clock, Logger: h.opts.Logger})
	if err != nil {
		return err
	}
	srv, err := collector.New(collector.Options{
		Portal:        web.Handler(),
		RetentionHeld: retention.Held,
		Config:        cc,
		Store:         h.metering,
		Auth:          authn,
		// Run enforces their log retention every collector.logs.retention_interval.
		Institutions: h.cfg.Tenants,
		AccessLog:    h.accessLog,
		Location:     h.loc,
		Clock:        h.opts.Clock,
		Logger:       h.opts.Logger,
		Registry:     h.registry,
		Tracer:       h.tracer,
		// On by default for ClickHouse, which wants few large inserts.
		Batch: h.cfg.Store.MeteringBatch(),
		// Billing and the SLA serve their routes through the collector's
		// table. Admin tokens declare windows; the SLA calculator reads them from the store.
		Routes: append(billinghttp.Routes(billinghttp.Options{Invoices: invoices, Costs: costs, Location: h.loc, Clock: h.opts.Clock, Logger: h.opts.Logger}),
			slahttp.Routes(slahttp.Options{Reports: slaReports{h.sla, h.maintenance}, Windows: h.maintenance, Institutions: h.cfg.Tenants,
				Location: h.loc, Clock: h.opts.Clock, Logger: h.opts.Logger})...),
	})
	if err != nil {
		return err
	}
	h.server = srv
	return nil
}
