package collector

import (
	"context"
	"net/http"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/state"
)

// SLAReports gives institutions their SLA reports.
type SLAReports interface {
	// Report returns the tenant's SLA report of period, and the audited
	// changes of the maintenance windows it counts (DESIGN.md §6: every
	// change is listed in the report).
	Report(ctx context.Context, tenant string, p calendar.Month) (*sla.Report, []state.AuditEntry, error)
}

// SLAResponse is the body of GET /api/v1/tenants/{tenant}/sla.
type SLAResponse struct {
	*sla.Report
	WindowChanges []WindowChange `json:"window_changes"`
}

// WindowChange is one audited change of a maintenance window.
type WindowChange struct {
	Seq     int64  `json:"seq"`
	Time    string `json:"time"`
	Actor   string `json:"actor"`
	Action  string `json:"action"`
	Subject string `json:"subject"`
	// Detail is the window as it was after the change.
	Detail any `json:"detail,omitempty"`
}

// getSLA serves an institution's SLA report of ?month=YYYY-MM (default the
// running month, reported up to a minute ago).
func (s *Server) getSLA(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	if s.sla == nil {
		writeError(w, http.StatusNotImplemented, "this collector computes no SLA reports", nil)
		return
	}
	tenant := r.PathValue("tenant")
	p := calendar.MonthOf(s.clock.Now(), s.loc)
	if m := r.URL.Query().Get("month"); m != "" {
		var err error
		if p, err = calendar.Parse(m, s.loc); err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), map[string]string{"field": "month"})
			return
		}
	}
	rep, changes, err := s.sla.Report(r.Context(), tenant, p)
	if err != nil {
		s.log.Error("sla report failed", "tenant", tenant, "month", p.String(), "err", err)
		writeError(w, http.StatusServiceUnavailable, "the SLA report could not be computed", nil)
		return
	}
	resp := SLAResponse{Report: rep, WindowChanges: make([]WindowChange, 0, len(changes))}
	for _, c := range changes {
		resp.WindowChanges = append(resp.WindowChanges, WindowChange{Seq: c.Seq, Time: c.Time.UTC().Format("2006-01-02T15:04:05Z"),
			Actor: c.Actor, Action: c.Action, Subject: c.Subject, Detail: c.Detail})
	}
	writeJSON(w, http.StatusOK, resp)
}
