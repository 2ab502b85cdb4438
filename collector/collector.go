// Package collector is the hub's ingest and query service: it authenticates
// agents and institutions, validates and dedupes batches of usage records,
// events and log lines into the metering store (log lines also through Loki's
// push API), serves tenant-scoped reads (and Loki's read API for Grafana),
// audits operators' reads and enforces log retention. Operators' /metrics and
// pprof live on a separate admin listener.
//
// Its route table is the tenants' listener's only one: the routes other
// domains contribute (invoices, SLA reports, maintenance windows; see
// Options.Routes) go through the same authentication, tenant checks and
// audit as its own.
package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/batching"
)

// Options are what a Server is built from. Config, Store, Auth and Institutions are required.
type Options struct {
	Config Config
	Store  metering.Store
	Auth   *auth.Authenticator
	// Institutions are the configured institutions: records of any other
	// tenant are rejected, and each one's log lines are kept its Retention.
	Institutions institution.Directory
	// AccessLog records operators' reads of tenant data. Without it those reads
	// are refused: the audit fails closed.
	AccessLog accesslog.Recorder
	// Location is the platform's time zone, for calendar days and months (default UTC).
	Location *time.Location
	Clock    clock.Clock
	Logger   *slog.Logger
	// Registry receives the collector's metrics; nil means a private registry.
	Registry *prometheus.Registry
	Tracer   trace.TracerProvider
	// Batch, if not nil, gathers the appends of concurrent batches into few
	// large ones before the store (metering/batching). The collector never
	// closes Store: its caller does, after Run returned.
	Batch *batching.Config
	// Routes are the endpoints other domains contribute to the tenants'
	// listener (billing/billinghttp, sla/slahttp). They are served through
	// the collector's one table, as its own routes are: the same
	// authentication, tenant checks and audit of operators' reads.
	Routes []route.Route
}

// Server is the collector.
type Server struct {
	cfg      Config
	store    metering.Store
	auth     *auth.Authenticator
	tenants  map[string]bool
	keep     map[string]time.Duration // log retention per tenant
	audit    accesslog.Recorder
	limiters *tenantLimiters
	loc      *time.Location
	clock    clock.Clock
	log      *slog.Logger
	registry *prometheus.Registry
	tracer   trace.Tracer
	metrics  *metrics
	slots    chan struct{}
	// batched says appends go through a batching writer (Options.Batch).
	batched  bool
	draining atomic.Bool
	// ready is paasmeter_collector_ready, which /readyz keeps up to date.
	ready *readiness
	// contributed are Options.Routes.
	contributed []route.Route
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if o.Store == nil || o.Auth == nil {
		return nil, errors.New("collector: a store and an authenticator are required")
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Tracer == nil {
		o.Tracer = noop.NewTracerProvider()
	}
	m, err := newMetrics(o.Registry)
	if err != nil {
		return nil, fmt.Errorf("collector: register metrics: %w", err)
	}
	store := o.Store
	if o.Batch != nil {
		// Not closed by the collector: its flushes end with the requests that
		// wait for them, which Run waits for.
		w, err := batching.New(store, *o.Batch, batching.Options{Logger: o.Logger, Registry: o.Registry})
		if err != nil {
			return nil, fmt.Errorf("collector: store.batch: %w", err)
		}
		store = w
	}
	tenants := make(map[string]bool, len(o.Institutions))
	keep := make(map[string]time.Duration, len(o.Institutions))
	for _, in := range o.Institutions {
		if d := in.Retention(); d <= 0 {
			return nil, fmt.Errorf("collector: log retention of %s: %s must be positive", in.ID, d)
		}
		tenants[in.ID], keep[in.ID] = true, in.Retention()
	}
	s := &Server{
		cfg:      o.Config,
		store:    instrumentedStore{Store: store, m: m, tracer: o.Tracer.Tracer(tracerName)},
		auth:     o.Auth,
		tenants:  tenants,
		keep:     keep,
		audit:    o.AccessLog,
		limiters: newTenantLimiters(o.Config.Logs.IngestionRateBytes, o.Config.Logs.IngestionBurstBytes),
		loc:      o.Location,
		clock:    o.Clock,
		log:      o.Logger,
		registry: o.Registry,
		tracer:   o.Tracer.Tracer(tracerName),
		metrics:  m,
		slots:    make(chan struct{}, o.Config.MaxInflightBatches),
		batched:  o.Batch != nil,

		contributed: o.Routes,
	}
	if err := checkRoutes(s.Routes()); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	s.ready = &readiness{check: s.store.Ready, draining: &s.draining, now: time.Now}
	if err := newReadinessGauge(o.Registry, s.ready); err != nil {
		return nil, fmt.Errorf("collector: register metrics: %w", err)
	}
	return s, nil
}

const tracerName = "github.com/paasmeter/paasmeter/collector"

// Handler returns the tenants' listener handler: the API, /healthz and /readyz.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		route.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
	})
	return mux
}

// AdminHandler returns the admin listener handler: /metrics, pprof, /healthz, /readyz.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return mux
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	route.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		route.WriteError(w, http.StatusServiceUnavailable, "shutting down", nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	err := s.store.Ready(ctx)
	// A prober that hung up says nothing about the store: only real answers
	// update paasmeter_collector_ready.
	if r.Context().Err() == nil {
		s.ready.record(time.Now(), err)
	}
	if err != nil {
		// The store's error names hosts, paths and users: the log gets it,
		// the (unauthenticated) prober a generic reason.
		s.log.Warn("readiness probe: metering store not ready", "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "metering store not ready", nil)
		return
	}
	route.WriteJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// Run serves both listeners and enforces log retention (RunRetention) until
// ctx is done, then shuts down gracefully: /readyz turns 503, listeners close,
// and in-flight batches finish (bounded by ShutdownTimeout) before Run
// returns. The caller closes the store afterwards.
// ready, if not nil, receives the bound addresses once both listeners listen.
func (s *Server) Run(ctx context.Context, ready func(api, admin net.Addr)) error {
	apiLn, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("collector: listen %s: %w", s.cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", s.cfg.AdminListen)
	if err != nil {
		apiLn.Close()
		return fmt.Errorf("collector: admin listen %s: %w", s.cfg.AdminListen, err)
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       2 * time.Minute,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	api, admin := newServer(s.Handler()), newServer(s.AdminHandler())
	errc := make(chan error, 2)
	go func() { errc <- api.Serve(apiLn) }()
	go func() { errc <- admin.Serve(adminLn) }()
	rctx, stopRetention := context.WithCancel(ctx)
	retentionDone := make(chan struct{})
	go func() {
		defer close(retentionDone)
		s.RunRetention(rctx)
	}()
	// The retention pass is stopped before Run returns, so the caller may close the store.
	defer func() {
		stopRetention()
		<-retentionDone
	}()
	s.log.Info("collector listening", "api", apiLn.Addr().String(), "admin", adminLn.Addr().String())
	if ready != nil {
		ready(apiLn.Addr(), adminLn.Addr())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.draining.Store(true)
	s.log.Info("collector shutting down: finishing in-flight requests", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err = errors.Join(api.Shutdown(sctx), admin.Shutdown(sctx))
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(fmt.Errorf("collector: serve: %w", serveErr), err)
	}
	if err != nil {
		return fmt.Errorf("collector: shutdown: %w", err)
	}
	s.log.Info("collector stopped")
	return nil
}
