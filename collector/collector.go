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
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/readquery"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
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
	// Portal, if set, serves everything under /portal/ on the tenants'
	// listener: the institutions' web portal, which signs people in with
	// sessions of its own rather than bearer tokens.
	Portal http.Handler
	// RetentionHeld, if set, says whether this collector enforces log
	// retention now: among several collectors, only the holder of the hub's
	// log-retention lease does, since on ClickHouse each pass is a mutation
	// that rewrites the parts it touches.
	RetentionHeld func() bool
}

// Server is the collector.
type Server struct {
	cfg     Config
	store   metering.Store
	auth    *auth.Authenticator
	tenants map[string]bool
	keep    map[string]time.Duration // log retention per tenant
	audit   accesslog.Recorder
	// pushLimits, pushSlots and tenantPushSlots bound institutions' Loki
	// pushes (collector.logs): agents keep slots for themselves.
	pushLimits      *pushLimits
	reads           *readSlots // collector.logs read slots, apart from ingest
	readBytes       *buckets   // each tenant's read budget, collector.logs.read_rate_bytes
	pushSlots       chan struct{}
	tenantPushSlots map[string]chan struct{}
	loc             *time.Location
	queries         readquery.Parser
	clock           clock.Clock
	log             *slog.Logger
	registry        *prometheus.Registry
	tracer          trace.Tracer
	metrics         *metrics
	slots           chan struct{}
	// batched says appends go through a batching writer (Options.Batch).
	batched  bool
	draining atomic.Bool
	// ready is paasmeter_collector_ready, which /readyz keeps up to date.
	ready *readiness
	// contributed are Options.Routes.
	contributed []route.Route
	// portal is Options.Portal.
	portal http.Handler
	// retentionHeld is Options.RetentionHeld.
	retentionHeld func() bool
	// apiTLS and adminTLS are the listeners' TLS; nil serves plain HTTP.
	// agentsTLS is the agents' listener's (collector.agent_listen), which
	// requires client certificates; nil without one.
	apiTLS, adminTLS, agentsTLS *tlsconf.Server
	// agentAddr is the agents' listener's bound address, once Run listens.
	agentAddr atomic.Pointer[net.Addr]
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if o.Store == nil || o.Auth == nil {
		return nil, errors.New("collector: a store and an authenticator are required")
	}
	if o.Config.TLS.RequiresClientCert() {
		o.Auth = o.Auth.WithoutAgentTokens()
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
		cfg:             o.Config,
		store:           instrumentedStore{Store: store, m: m, tracer: o.Tracer.Tracer(tracerName)},
		auth:            o.Auth,
		tenants:         tenants,
		keep:            keep,
		audit:           o.AccessLog,
		pushLimits:      newPushLimits(o.Config.Logs),
		reads:           newReadSlots(o.Config.Logs.MaxConcurrentReadsPerTenant, o.Config.Logs.MaxConcurrentReads),
		readBytes:       newBuckets(o.Config.Logs.ReadRateBytes, o.Config.Logs.ReadBurstBytes),
		pushSlots:       make(chan struct{}, o.Config.Logs.MaxInflightPushes),
		tenantPushSlots: make(map[string]chan struct{}, len(tenants)),
		loc:             o.Location,
		queries:         readquery.Parser{Location: o.Location, Clock: o.Clock, MaxLogRange: o.Config.Logs.MaxQueryRange},
		clock:           o.Clock,
		log:             o.Logger,
		registry:        o.Registry,
		tracer:          o.Tracer.Tracer(tracerName),
		metrics:         m,
		slots:           make(chan struct{}, o.Config.MaxInflightBatches),
		batched:         o.Batch != nil,

		contributed:   o.Routes,
		portal:        o.Portal,
		retentionHeld: o.RetentionHeld,
	}
	for t := range tenants {
		s.tenantPushSlots[t] = make(chan struct{}, o.Config.Logs.MaxInflightPushesPerTenant)
	}
	if err := checkRoutes(s.Routes()); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	if err := s.openTLS(); err != nil {
		return nil, err
	}
	s.ready = &readiness{check: s.store.Ready, draining: &s.draining, now: time.Now}
	if err := newReadinessGauge(o.Registry, s.ready); err != nil {
		return nil, fmt.Errorf("collector: register metrics: %w", err)
	}
	return s, nil
}

const tracerName = "github.com/paasmeter/paasmeter/collector"

// Handler returns the tenants' listener handler: the API, /healthz and
// /readyz, and the portal under /portal/ when there is one.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.Routes() {
		mux.Handle(rt.Method+" "+rt.Pattern, s.wrap(rt))
	}
	if s.portal != nil {
		mux.Handle("/portal/", s.portal)
	}
	mux.HandleFunc("/", notFound)
	return mux
}

func notFound(w http.ResponseWriter, r *http.Request) {
	route.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, nil)
}

// AgentAddr is the agents' listener's bound address (collector.agent_listen),
// once Run listens; nil before, or without one.
func (s *Server) AgentAddr() net.Addr {
	if a := s.agentAddr.Load(); a != nil {
		return *a
	}
	return nil
}

// openTLS reads the listeners' certificates and exports their expiry.
// With collector.tls.client_auth require, agents have a listener of their
// own whose handshake requires their certificate, and the tenants'
// listener asks for none: institutions' clients have no certificate.
func (s *Server) openTLS() error {
	api, agents := s.cfg.TLS, tlsconf.ServerConfig{}
	if api.RequiresClientCert() {
		agents = api
		api.ClientCAFile, api.ClientAuth = "", ""
	}
	var sources []*tlsconf.Source
	for _, l := range []struct {
		name string
		c    tlsconf.ServerConfig
		dst  **tlsconf.Server
	}{{"api", api, &s.apiTLS}, {"admin", s.cfg.AdminTLS, &s.adminTLS}, {"agents", agents, &s.agentsTLS}} {
		if !l.c.Enabled() {
			continue
		}
		srv, err := tlsconf.NewServer(l.name, l.c, s.log)
		if err != nil {
			return fmt.Errorf("collector: %s: %w", map[string]string{"api": "tls", "admin": "admin_tls", "agents": "tls"}[l.name], err)
		}
		*l.dst = srv
		sources = append(sources, srv.Source())
	}
	if len(sources) == 0 {
		return nil
	}
	if err := s.registry.Register(tlsconf.ExpiryCollector(sources...)); err != nil {
		return fmt.Errorf("collector: register metrics: %w", err)
	}
	return nil
}

// AdminHandler returns the admin listener handler: /metrics, pprof (with
// collector.pprof), /healthz, /readyz. With collector.admin_token_sha256,
// /metrics and pprof require that bearer token.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.adminOnly(promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})))
	if s.cfg.Pprof {
		mux.Handle("GET /debug/pprof/", s.adminOnly(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", s.adminOnly(http.HandlerFunc(pprof.Cmdline)))
		mux.Handle("GET /debug/pprof/profile", s.adminOnly(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", s.adminOnly(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", s.adminOnly(http.HandlerFunc(pprof.Trace)))
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("/", notFound)
	return mux
}

// adminOnly requires collector.admin_token_sha256's bearer token, when one
// is configured.
func (s *Server) adminOnly(h http.Handler) http.Handler {
	if s.cfg.AdminTokenSHA256 == "" {
		return h
	}
	want, _ := hex.DecodeString(s.cfg.AdminTokenSHA256) // Validate checked it
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare(got[:], want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="paasmeter-admin"`)
			route.WriteError(w, http.StatusUnauthorized, "the admin listener requires the bearer token of collector.admin_token_sha256", nil)
			return
		}
		h.ServeHTTP(w, r)
	})
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

// Run serves the listeners and enforces log retention (RunRetention) until
// ctx is done, then shuts down gracefully: /readyz turns 503, listeners close,
// and in-flight batches finish (bounded by ShutdownTimeout) before Run
// returns. The caller closes the store afterwards.
// ready, if not nil, receives the bound addresses once the listeners listen
// (the agents' listener's, if any, is AgentAddr).
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
	// The agents' listener serves the same table: whoever passes its
	// handshake holds a node's certificate, and so is an agent.
	var agentsLn net.Listener
	if s.agentsTLS != nil {
		if agentsLn, err = net.Listen("tcp", s.cfg.AgentListen); err != nil {
			apiLn.Close()
			adminLn.Close()
			return fmt.Errorf("collector: agent listen %s: %w", s.cfg.AgentListen, err)
		}
		agentsLn = s.agentsTLS.Listener(agentsLn)
		addr := agentsLn.Addr()
		s.agentAddr.Store(&addr)
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
	api, admin, agents := newServer(s.Handler()), newServer(s.AdminHandler()), newServer(s.Handler())
	// The listeners, not the servers, speak TLS: Serve stays one call, and
	// each handshake reads the certificates as their files are then.
	if s.apiTLS != nil {
		apiLn = s.apiTLS.Listener(apiLn)
	}
	if s.adminTLS != nil {
		adminLn = s.adminTLS.Listener(adminLn)
	}
	errc := make(chan error, 3)
	go func() { errc <- api.Serve(apiLn) }()
	go func() { errc <- admin.Serve(adminLn) }()
	if agentsLn != nil {
		go func() { errc <- agents.Serve(agentsLn) }()
	}
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
	if agentsLn != nil {
		s.log.Info("collector listening for agents, client certificates required", "agents", agentsLn.Addr().String())
	}
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
	// Shutting down a server that never served closes nothing and returns nil.
	err = errors.Join(api.Shutdown(sctx), admin.Shutdown(sctx), agents.Shutdown(sctx))
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		err = errors.Join(fmt.Errorf("collector: serve: %w", serveErr), err)
	}
	if err != nil {
		return fmt.Errorf("collector: shutdown: %w", err)
	}
	s.log.Info("collector stopped")
	return nil
}
