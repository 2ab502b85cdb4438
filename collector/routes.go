package collector

import (
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/paasmeter/paasmeter/collector/auth"
)

// Access says who may call a route.
type Access int

// Access levels.
const (
	// Public routes need no token (health checks).
	Public Access = iota
	// AgentWrite routes need an agent token; handlers check the node binding.
	AgentWrite
	// TenantRead routes have a {tenant} path segment and need a token that may
	// read that tenant. The check lives in wrap, so no route can forget it.
	TenantRead
)

// Route is one endpoint of the tenants' listener.
type Route struct {
	Method  string
	Pattern string
	Access  Access
	handle  func(w http.ResponseWriter, r *http.Request, p auth.Principal)
}

// Routes is the single list of the tenants' listener's endpoints. Tests walk it
// to try every tenant-scoped route across tenants.
func (s *Server) Routes() []Route {
	return []Route{
		{"GET", "/healthz", Public, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) { s.healthz(w, r) }},
		{"GET", "/readyz", Public, func(w http.ResponseWriter, r *http.Request, _ auth.Principal) { s.readyz(w, r) }},
		{"POST", "/api/v1/usage", AgentWrite, ingest(s, s.usageKind())},
		{"POST", "/api/v1/events", AgentWrite, ingest(s, s.eventKind())},
		{"GET", "/api/v1/tenants/{tenant}/usage", TenantRead, s.getUsage},
	}
}

var propagator = propagation.TraceContext{}

// wrap authenticates and authorizes a request, then runs the route's handler
// inside a span and records its metrics.
func (s *Server) wrap(rt Route) http.Handler {
	name := rt.Method + " " + rt.Pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		defer func() {
			code := strconv.Itoa(rec.code)
			s.metrics.requests.WithLabelValues(rt.Pattern, rt.Method, code).Inc()
			s.metrics.requestDuration.WithLabelValues(rt.Pattern, rt.Method).Observe(time.Since(start).Seconds())
			span.SetAttributes(attribute.Int("http.response.status_code", rec.code))
			if rec.code >= 500 {
				span.SetStatus(codes.Error, http.StatusText(rec.code))
			}
		}()
		r = r.WithContext(ctx)

		var p auth.Principal
		if rt.Access != Public {
			var err error
			p, err = s.auth.Authenticate(r)
			if err != nil {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="paasmeter"`)
				writeError(rec, http.StatusUnauthorized, err.Error(), nil)
				return
			}
			span.SetAttributes(attribute.String("paasmeter.principal", p.Name))
		}
		switch rt.Access {
		case AgentWrite:
			if p.Role != auth.RoleAgent {
				writeError(rec, http.StatusForbidden, "only agent tokens may write records", map[string]string{"role": string(p.Role)})
				return
			}
		case TenantRead:
			tenant := r.PathValue("tenant")
			if !p.CanRead(tenant) {
				writeError(rec, http.StatusForbidden, "this token may not read tenant "+strconvQuote(tenant), nil)
				return
			}
			if !s.tenants[tenant] {
				writeError(rec, http.StatusNotFound, "unknown tenant "+strconvQuote(tenant), nil)
				return
			}
			if p.Role == auth.RoleAdmin {
				s.log.Info("operator read of tenant data", "principal", p.Name, "tenant", tenant, "path", r.URL.Path)
			}
		}
		rt.handle(rec, r, p)
	})
}

func strconvQuote(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strconv.Quote(s)
}

// statusRecorder remembers the status code a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
