// Package slahttp serves the SLA's routes: institutions' SLA reports, and
// the admin API of maintenance windows (DESIGN.md §6). They are served
// through the collector's route table, which checks that the token may read
// the {tenant} of a report's path, keeps the windows to admin tokens, and
// audits operators' reads.
package slahttp

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
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

// Options are what the routes serve.
type Options struct {
	// Reports, if set, serves institutions their SLA reports; without it
	// that route answers 501.
	Reports SLAReports
	// Windows, if set, serves the admin API of maintenance windows; without
	// it those routes answer 501.
	Windows MaintenanceWindows
	// Institutions are the configured institutions: a list of another's
	// windows is a 404.
	Institutions institution.Directory
	// Location is the platform's time zone, for calendar days and months (default UTC).
	Location *time.Location
	// Clock and Logger default to the system's.
	Clock  clock.Clock
	Logger *slog.Logger
}

// handlers serve the routes.
type handlers struct {
	reports      SLAReports
	windows      MaintenanceWindows
	institutions institution.Directory
	loc          *time.Location
	clock        clock.Clock
	log          *slog.Logger
}

// Routes returns the SLA report and maintenance window routes, for the
// collector's table (collector.Options.Routes).
func Routes(o Options) []route.Route {
	h := &handlers{reports: o.Reports, windows: o.Windows, institutions: o.Institutions, loc: cmp.Or(o.Location, time.UTC),
		clock: cmp.Or[clock.Clock](o.Clock, clock.System{}), log: cmp.Or(o.Logger, slog.Default())}
	reports := func(h route.Handler) route.Handler {
		return route.Requires(o.Reports != nil, "this collector computes no SLA reports", h)
	}
	windows := func(h route.Handler) route.Handler {
		return route.Requires(o.Windows != nil, "this collector keeps no maintenance windows: it has no state store", h)
	}
	return []route.Route{
		{Method: "GET", Pattern: "/api/v1/tenants/{tenant}/sla", Access: route.TenantRead, Handle: reports(h.getSLA)},
		{Method: "GET", Pattern: "/api/v1/maintenance", Access: route.AdminOnly, Handle: windows(h.listMaintenance)},
		{Method: "POST", Pattern: "/api/v1/maintenance", Access: route.AdminOnly, Handle: windows(h.declareMaintenance)},
		{Method: "PUT", Pattern: "/api/v1/maintenance/{id}", Access: route.AdminOnly, Handle: windows(h.changeMaintenance)},
		{Method: "DELETE", Pattern: "/api/v1/maintenance/{id}", Access: route.AdminOnly, Handle: windows(h.cancelMaintenance)},
	}
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
func (h *handlers) getSLA(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	tenant := r.PathValue("tenant")
	p := calendar.MonthOf(h.clock.Now(), h.loc)
	if m := r.URL.Query().Get("month"); m != "" {
		var err error
		if p, err = calendar.Parse(m, h.loc); err != nil {
			route.WriteError(w, http.StatusBadRequest, err.Error(), map[string]string{"field": "month"})
			return
		}
	}
	rep, changes, err := h.reports.Report(r.Context(), tenant, p)
	if err != nil {
		h.log.Error("sla report failed", "tenant", tenant, "month", p.String(), "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "the SLA report could not be computed", nil)
		return
	}
	resp := SLAResponse{Report: rep, WindowChanges: make([]WindowChange, 0, len(changes))}
	for _, c := range changes {
		resp.WindowChanges = append(resp.WindowChanges, WindowChange{Seq: c.Seq, Time: c.Time.UTC().Format("2006-01-02T15:04:05Z"),
			Actor: c.Actor, Action: c.Action, Subject: c.Subject, Detail: c.Detail})
	}
	route.WriteJSON(w, http.StatusOK, resp)
}
