package collector

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/paasmeter/paasmeter/audit"
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
	// read that tenant. The check lives in wrap, so no route can forget it;
	// so does the audit of operators' (admin tokens') reads, which fails
	// closed.
	TenantRead
	// OrgRead routes are Loki's reads: the tenant is named by the
	// X-Scope-OrgID header instead of the path, and checked as for
	// TenantRead. wrap sets it as the request's "tenant" path value.
	OrgRead
	// OrgWrite routes are Loki's push: the tenant named by X-Scope-OrgID is
	// written by that tenant's institution token (its own applications
	// shipping logs) or by an agent token, whose node binding the handler
	// checks as for AgentWrite.
	OrgWrite
	// AdminOnly routes are the platform's own settings (maintenance
	// windows), read or written by admin tokens only: no institution's
	// token, not even for its own windows. They name no tenant in the path;
	// a handler checks a tenant it is given.
	AdminOnly
)

// orgHeader is Loki's tenant header.
const orgHeader = "X-Scope-OrgID"

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
		{"POST", "/api/v1/logs", AgentWrite, ingest(s, s.logKind())},
		{"GET", "/api/v1/tenants/{tenant}/usage", TenantRead, s.getUsage},
		{"GET", "/api/v1/tenants/{tenant}/logs", TenantRead, s.getLogs},
		{"GET", "/api/v1/tenants/{tenant}/sla", TenantRead, s.getSLA},
		{"GET", "/api/v1/tenants/{tenant}/invoices", TenantRead, s.getInvoices},
		{"GET", "/api/v1/tenants/{tenant}/invoices/{file}", TenantRead, s.getInvoice},
		{"POST", "/loki/api/v1/push", OrgWrite, s.lokiPush},
		{"GET", "/loki/api/v1/query_range", OrgRead, s.lokiQueryRange},
		{"GET", "/loki/api/v1/labels", OrgRead, s.lokiLabels},
		// Loki serves the label list under both names; older Grafanas ask for the singular.
		{"GET", "/loki/api/v1/label", OrgRead, s.lokiLabels},
		{"GET", "/loki/api/v1/label/{name}/values", OrgRead, s.lokiLabelValues},
		{"GET", "/api/v1/maintenance", AdminOnly, s.listMaintenance},
		{"POST", "/api/v1/maintenance", AdminOnly, s.declareMaintenance},
		{"PUT", "/api/v1/maintenance/{id}", AdminOnly, s.changeMaintenance},
		{"DELETE", "/api/v1/maintenance/{id}", AdminOnly, s.cancelMaintenance},
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
		if rt.Access == OrgRead || rt.Access == OrgWrite {
			tenant := r.Header.Get(orgHeader)
			if tenant == "" && p.Role == auth.RoleInstitution {
				tenant = p.Tenant // an institution's client need not repeat what its token says
			}
			if tenant == "" {
				writeError(rec, http.StatusBadRequest, orgHeader+" must name the tenant", nil)
				return
			}
			r.SetPathValue("tenant", tenant)
		}
		tenant := r.PathValue("tenant")
		switch rt.Access {
		case AgentWrite:
			if p.Role != auth.RoleAgent {
				writeError(rec, http.StatusForbidden, "only agent tokens may write records", map[string]string{"role": string(p.Role)})
				return
			}
		case OrgWrite:
			if !p.CanWriteTenant(tenant) {
				writeError(rec, http.StatusForbidden, "this token may not write tenant "+strconvQuote(tenant), nil)
				return
			}
		case TenantRead, OrgRead:
			if !p.CanRead(tenant) {
				writeError(rec, http.StatusForbidden, "this token may not read tenant "+strconvQuote(tenant), nil)
				return
			}
		case AdminOnly:
			if p.Role != auth.RoleAdmin {
				writeError(rec, http.StatusForbidden, "only admin tokens may use this endpoint", map[string]string{"role": string(p.Role)})
				return
			}
		}
		if rt.Access != Public && rt.Access != AgentWrite && rt.Access != AdminOnly && !s.tenants[tenant] {
			writeError(rec, http.StatusNotFound, "unknown tenant "+strconvQuote(tenant), nil)
			return
		}
		if (rt.Access == TenantRead || rt.Access == OrgRead) && p.Role == auth.RoleAdmin && !s.auditRead(rec, r, name, tenant, p) {
			return
		}
		rt.handle(rec, r, p)
	})
}

// auditRead records an operator's read of tenant's data before it happens,
// or answers 503 and returns false: a read that cannot be audited is refused.
func (s *Server) auditRead(w http.ResponseWriter, r *http.Request, action, tenant string, p auth.Principal) bool {
	err := errors.New("no audit log is configured")
	if s.audit != nil {
		// The query, unescaped, is what the operator asked for: the LogQL,
		// the time range, the text searched.
		detail := r.URL.Path
		if raw := r.URL.RawQuery; raw != "" {
			q, uerr := url.QueryUnescape(raw)
			if uerr != nil {
				q = raw
			}
			detail += "?" + q
		}
		err = s.audit.Record(r.Context(), audit.Entry{Time: s.clock.Now().UTC(), Actor: p.Name, Action: action, Tenant: tenant, Detail: detail})
	}
	if err != nil {
		s.log.Error("operator read refused: the audit log failed", "principal", p.Name, "tenant", tenant, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "30")
		writeError(w, http.StatusServiceUnavailable, "the audit log is unavailable: operators' reads of tenant data are refused until it works", nil)
		return false
	}
	return true
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
