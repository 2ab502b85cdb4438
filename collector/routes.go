package collector

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
)

// orgHeader is Loki's tenant header.
const orgHeader = "X-Scope-OrgID"

// Routes is the single list of the tenants' listener's endpoints: the
// collector's own, then those other domains contribute (Options.Routes).
// Every one is served through wrap. Tests walk it to try every tenant-scoped
// route across tenants.
func (s *Server) Routes() []route.Route {
	own := []route.Route{
		{Method: "GET", Pattern: "/healthz", Access: route.Public, Handle: func(w http.ResponseWriter, r *http.Request, _ auth.Principal) { s.healthz(w, r) }},
		{Method: "GET", Pattern: "/readyz", Access: route.Public, Handle: func(w http.ResponseWriter, r *http.Request, _ auth.Principal) { s.readyz(w, r) }},
		{Method: "POST", Pattern: "/api/v1/usage", Access: route.AgentWrite, Handle: ingest(s, s.usageKind())},
		{Method: "POST", Pattern: "/api/v1/events", Access: route.AgentWrite, Handle: ingest(s, s.eventKind())},
		{Method: "POST", Pattern: "/api/v1/logs", Access: route.AgentWrite, Handle: ingest(s, s.logKind())},
		{Method: "GET", Pattern: "/api/v1/tenants/{tenant}/usage", Access: route.TenantRead, Handle: s.getUsage},
		{Method: "GET", Pattern: "/api/v1/tenants/{tenant}/logs", Access: route.TenantRead, Handle: s.getLogs},
		{Method: "POST", Pattern: "/loki/api/v1/push", Access: route.OrgWrite, Handle: s.lokiPush},
		{Method: "GET", Pattern: "/loki/api/v1/query_range", Access: route.OrgRead, Handle: s.lokiQueryRange},
		{Method: "GET", Pattern: "/loki/api/v1/labels", Access: route.OrgRead, Handle: s.lokiLabels},
		// Loki serves the label list under both names; older Grafanas ask for the singular.
		{Method: "GET", Pattern: "/loki/api/v1/label", Access: route.OrgRead, Handle: s.lokiLabels},
		{Method: "GET", Pattern: "/loki/api/v1/label/{name}/values", Access: route.OrgRead, Handle: s.lokiLabelValues},
	}
	return append(own, s.contributed...)
}

// checkRoutes refuses a table whose access does not follow its paths: wrap
// checks the tenant of a {tenant} segment only on route.TenantRead routes, so a
// contributed route that names a tenant under another access would escape
// the tenant wall, and a route.TenantRead route without one would check nothing.
// Two routes of one method and pattern would make the mux panic.
func checkRoutes(routes []route.Route) error {
	seen := make(map[string]bool, len(routes))
	var errs []error
	for _, rt := range routes {
		name := rt.Method + " " + rt.Pattern
		switch {
		case seen[name]:
			errs = append(errs, fmt.Errorf("route %s: declared twice", name))
		case rt.Access < route.Public || rt.Access > route.AdminOnly:
			errs = append(errs, fmt.Errorf("route %s: unknown access %d", name, rt.Access))
		case rt.Handle == nil:
			errs = append(errs, fmt.Errorf("route %s: no handler", name))
		case strings.Contains(rt.Pattern, "{tenant}") != (rt.Access == route.TenantRead):
			errs = append(errs, fmt.Errorf("route %s: a route names {tenant} in its path exactly when its access is TenantRead", name))
		}
		seen[name] = true
	}
	return errors.Join(errs...)
}

var propagator = propagation.TraceContext{}

// wrap authenticates and authorizes a request, then runs the route's handler
// inside a span and records its metrics.
func (s *Server) wrap(rt route.Route) http.Handler {
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
		if rt.Access != route.Public {
			var err error
			p, err = s.auth.Authenticate(r)
			if err != nil {
				rec.Header().Set("WWW-Authenticate", `Bearer realm="paasmeter"`)
				route.WriteError(rec, http.StatusUnauthorized, err.Error(), nil)
				return
			}
			span.SetAttributes(attribute.String("paasmeter.principal", p.Name))
		}
		served := false
		if auditedRead(rt) {
			defer func() {
				if !served {
					s.recordRefusal(r, name, p, rec.code)
				}
			}()
		}
		if rt.Access == route.OrgRead || rt.Access == route.OrgWrite {
			tenant := r.Header.Get(orgHeader)
			if tenant == "" && p.Role == auth.RoleInstitution {
				tenant = p.Tenant // an institution's client need not repeat what its token says
			}
			if tenant == "" {
				route.WriteError(rec, http.StatusBadRequest, orgHeader+" must name the tenant", nil)
				return
			}
			r.SetPathValue("tenant", tenant)
		}
		tenant := r.PathValue("tenant")
		switch rt.Access {
		case route.AgentWrite:
			if p.Role != auth.RoleAgent {
				route.WriteError(rec, http.StatusForbidden, "only agent tokens may write records", map[string]string{"role": string(p.Role)})
				return
			}
		case route.OrgWrite:
			if !p.CanWriteTenant(tenant) {
				route.WriteError(rec, http.StatusForbidden, "this token may not write tenant "+route.Quote(tenant), nil)
				return
			}
		case route.TenantRead, route.OrgRead:
			if !p.CanRead(tenant) {
				route.WriteError(rec, http.StatusForbidden, "this token may not read tenant "+route.Quote(tenant), nil)
				return
			}
		case route.AdminOnly:
			if p.Role != auth.RoleAdmin {
				route.WriteError(rec, http.StatusForbidden, "only admin tokens may use this endpoint", map[string]string{"role": string(p.Role)})
				return
			}
		}
		if rt.Access != route.Public && rt.Access != route.AgentWrite && rt.Access != route.AdminOnly && !s.tenants[tenant] {
			route.WriteError(rec, http.StatusNotFound, "unknown tenant "+route.Quote(tenant), nil)
			return
		}
		served = true
		if auditedRead(rt) && p.Role == auth.RoleAdmin {
			s.serveAudited(rec, r, name, p, rt.Handle)
			return
		}
		rt.Handle(rec, r, p)
	})
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
