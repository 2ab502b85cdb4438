package collector

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
)

// auditedRead says whether rt reads tenant data: its operators' reads and
// its refusals go to the access log. The maintenance listing (an admin
// route) names tenants' windows, so admin reads count too.
func auditedRead(rt route.Route) bool {
	return rt.Access == route.TenantRead || rt.Access == route.OrgRead || (rt.Access == route.AdminOnly && rt.Method == http.MethodGet)
}

// accessEntry is the access log's entry of r by p, answered with status.
func (s *Server) accessEntry(r *http.Request, action string, p auth.Principal, outcome accesslog.Outcome, status int) accesslog.Entry {
	tenant := r.PathValue("tenant")
	if tenant == "" {
		tenant = r.URL.Query().Get("tenant") // the maintenance listing's filter
	}
	// The query, unescaped, is what the operator asked for: the LogQL, the
	// time range, the text searched.
	detail := r.URL.Path
	if raw := r.URL.RawQuery; raw != "" {
		q, err := url.QueryUnescape(raw)
		if err != nil {
			q = raw
		}
		detail += "?" + q
	}
	return accesslog.Entry{Time: s.clock.Now().UTC(), Actor: p.Name, Action: action, Tenant: tenant, Detail: detail,
		Client: r.RemoteAddr, Outcome: outcome, Status: status}
}

// recordRefusal records that the table refused p's read of tenant data
// (403: not its tenant, 404: no such tenant). Nothing was disclosed, so a
// failure to record is logged, not answered.
func (s *Server) recordRefusal(r *http.Request, action string, p auth.Principal, status int) {
	if s.audit == nil || (status != http.StatusForbidden && status != http.StatusNotFound) {
		return
	}
	if err := s.audit.Record(r.Context(), s.accessEntry(r, action, p, accesslog.Refused, status)); err != nil {
		s.log.Error("a refused read was not recorded: the access log failed", "principal", p.Name, "path", r.URL.Path, "err", err)
	}
}

// serveAudited serves an operator's read through an auditGate: the entry
// is recorded, with the answer's status, before any byte of the answer
// leaves, and a read that cannot be recorded is answered 503 without its
// data: the access log fails closed.
func (s *Server) serveAudited(w http.ResponseWriter, r *http.Request, action string, p auth.Principal, handle route.Handler) {
	if s.audit == nil {
		s.log.Error("operator read refused: no access log is configured", "principal", p.Name, "path", r.URL.Path)
		refuseUnaudited(w)
		return
	}
	record := func(status int) error {
		err := s.audit.Record(r.Context(), s.accessEntry(r, action, p, accesslog.Allowed, status))
		if err != nil {
			s.log.Error("operator read refused: the access log failed", "principal", p.Name, "path", r.URL.Path, "err", err)
		}
		return err
	}
	g := &auditGate{ResponseWriter: w, record: record}
	handle(g, r, p)
	// A handler that wrote nothing answers 200: that too is recorded.
	g.decide(http.StatusOK)
}

func refuseUnaudited(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "30")
	route.WriteError(w, http.StatusServiceUnavailable, "the access log is unavailable: operators' reads of tenant data are refused until it works", nil)
}

// errUnaudited is what a handler's writes get once its read could not be recorded.
var errUnaudited = errors.New("the access log failed: the answer is withheld")

// auditGate holds back a response until record has recorded its status.
type auditGate struct {
	http.ResponseWriter
	record  func(status int) error
	decided bool
	// withheld is set when record failed: the answer became a 503 and the
	// handler's writes go nowhere.
	withheld bool
}

// decide records status unless a status was already decided; it says
// whether the handler's answer may go out.
func (g *auditGate) decide(status int) bool {
	if !g.decided {
		g.decided = true
		if g.record(status) != nil {
			g.withheld = true
			h := g.ResponseWriter.Header()
			for k := range h {
				delete(h, k) // the handler's headers (a file name, a length) describe what is withheld
			}
			refuseUnaudited(g.ResponseWriter)
		}
	}
	return !g.withheld
}

func (g *auditGate) WriteHeader(code int) {
	if g.decide(code) {
		g.ResponseWriter.WriteHeader(code)
	}
}

func (g *auditGate) Write(b []byte) (int, error) {
	if !g.decide(http.StatusOK) {
		return 0, errUnaudited
	}
	return g.ResponseWriter.Write(b)
}

// Flush sends what was written so far; it must pass the gate, or
// http.ResponseController would find the writer underneath and send the
// status unrecorded.
func (g *auditGate) Flush() {
	if g.decide(http.StatusOK) {
		_ = http.NewResponseController(g.ResponseWriter).Flush() // as http.Flusher: a writer that cannot flush sends at the end
	}
}

// Unwrap lets http.ResponseController set deadlines on the connection.
func (g *auditGate) Unwrap() http.ResponseWriter { return g.ResponseWriter }
