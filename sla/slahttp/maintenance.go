package slahttp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/state"
)

// MaintenanceWindows declares, changes, cancels and lists the maintenance
// windows (DESIGN.md §6). *maintenance.Service is one.
type MaintenanceWindows interface {
	// List returns the declarations that apply to tenant (all when empty)
	// and overlap [from, to); a zero bound is open.
	List(ctx context.Context, tenant string, from, to time.Time) ([]maintenance.Declaration, error)
	// Declare creates d (empty ID) or changes it (at d.Version). A refusal
	// is a *maintenance.FieldError; a stale version wraps state.ErrConflict,
	// an unknown ID state.ErrNotFound.
	Declare(ctx context.Context, d maintenance.Declaration, actor string) (maintenance.Declaration, error)
	// Cancel cancels the occurrences of window id that have not started.
	Cancel(ctx context.Context, id, actor string) (maintenance.Declaration, error)
}

// maxMaintenanceBody bounds a declaration's body: a few hundred bytes are
// enough, and the body is read whole before it is decoded.
const maxMaintenanceBody = 64 << 10

// MaintenanceResponse is the answer of GET /api/v1/maintenance.
type MaintenanceResponse struct {
	// Tenant is the institution asked for, "" for all.
	Tenant string     `json:"tenant"`
	From   time.Time  `json:"from"`
	To     *time.Time `json:"to,omitempty"`
	// Windows are the declarations, cancelled ones included, by start.
	Windows []maintenance.Declaration `json:"windows"`
}

// refusalDetail is the detail of a 422: the field a rule refused.
type refusalDetail struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
	// Earliest is, when the lead time refused the start, the earliest start
	// allowed now.
	Earliest *time.Time `json:"earliest,omitempty"`
}

// listMaintenance is GET /api/v1/maintenance: the windows of tenant (all
// without it) overlapping [from, to). from and to are RFC 3339 times or
// YYYY-MM-DD dates in the platform's time zone; from defaults to now (the
// windows in progress and to come), to to no end.
func (h *handlers) listMaintenance(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	v := r.URL.Query()
	var problems []route.FieldError
	bad := func(field, format string, args ...any) {
		problems = append(problems, route.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	for key := range v {
		if key != "tenant" && key != "from" && key != "to" {
			bad(route.Param(key), "is not a parameter of this endpoint")
		}
	}
	resp := MaintenanceResponse{Tenant: v.Get("tenant"), From: h.clock.Now().UTC()}
	if f := v.Get("from"); f != "" {
		var ok bool
		if resp.From, ok = route.ParseTime(f, h.loc); !ok {
			bad("from", "%q is not an RFC 3339 time or a YYYY-MM-DD date", f)
		}
	}
	var to time.Time
	if t := v.Get("to"); t != "" {
		var ok bool
		if to, ok = route.ParseTime(t, h.loc); !ok {
			bad("to", "%q is not an RFC 3339 time or a YYYY-MM-DD date", t)
		} else if !to.After(resp.From) {
			bad("to", "must be after from (%s)", resp.From.Format(time.RFC3339))
		}
		resp.To = &to
	}
	if len(problems) > 0 {
		route.WriteError(w, http.StatusBadRequest, "invalid maintenance query", problems)
		return
	}
	if resp.Tenant != "" && !h.institutions.Has(resp.Tenant) {
		route.WriteError(w, http.StatusNotFound, "unknown tenant "+route.Quote(resp.Tenant), nil)
		return
	}
	ds, err := h.windows.List(r.Context(), resp.Tenant, resp.From, to)
	if err != nil {
		h.log.Error("maintenance list failed", "tenant", resp.Tenant, "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "state store unavailable", nil)
		return
	}
	resp.Windows = ds
	route.WriteJSON(w, http.StatusOK, resp)
}

// declareMaintenance is POST /api/v1/maintenance: a new window, 201 with
// it as stored (its id and version 1).
func (h *handlers) declareMaintenance(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	d, ok := h.readDeclaration(w, r)
	if !ok {
		return
	}
	switch {
	case d.ID != "":
		route.WriteError(w, http.StatusBadRequest, "a new window's id is assigned by the collector",
			route.FieldError{Field: "id", Reason: "leave it out; PUT /api/v1/maintenance/{id} changes a window"})
		return
	case d.Version != 0:
		route.WriteError(w, http.StatusBadRequest, "a new window has no version", route.FieldError{Field: "version", Reason: "leave it out"})
		return
	}
	stored, err := h.windows.Declare(r.Context(), d, p.Name)
	if err != nil {
		h.maintenanceError(w, "declare", "", err)
		return
	}
	w.Header().Set("Location", "/api/v1/maintenance/"+url.PathEscape(stored.ID))
	route.WriteJSON(w, http.StatusCreated, stored)
}

// changeMaintenance is PUT /api/v1/maintenance/{id}: the window as it
// should be, with the version it was read at; 409 when it changed since.
func (h *handlers) changeMaintenance(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	d, ok := h.readDeclaration(w, r)
	if !ok {
		return
	}
	switch {
	case d.ID != "" && d.ID != id:
		route.WriteError(w, http.StatusBadRequest, "the body is another window's", route.FieldError{Field: "id", Reason: fmt.Sprintf("%q is not %q", d.ID, id)})
		return
	case d.Version <= 0:
		route.WriteError(w, http.StatusBadRequest, "a change names the version it was read at",
			route.FieldError{Field: "version", Reason: "is required: the window's version, as GET lists it"})
		return
	}
	d.ID = id
	stored, err := h.windows.Declare(r.Context(), d, p.Name)
	if err != nil {
		h.maintenanceError(w, "change", id, err)
		return
	}
	route.WriteJSON(w, http.StatusOK, stored)
}

// cancelMaintenance is DELETE /api/v1/maintenance/{id}: the occurrences
// that have not started are cancelled; 200 with the window as it is then.
func (h *handlers) cancelMaintenance(w http.ResponseWriter, r *http.Request, p auth.Principal) {
	id := r.PathValue("id")
	stored, err := h.windows.Cancel(r.Context(), id, p.Name)
	if err != nil {
		h.maintenanceError(w, "cancel", id, err)
		return
	}
	route.WriteJSON(w, http.StatusOK, stored)
}

// readDeclaration reads and decodes the body, or answers 400 (naming the
// field) or 413 and returns false.
func (h *handlers) readDeclaration(w http.ResponseWriter, r *http.Request) (maintenance.Declaration, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxMaintenanceBody))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		route.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a maintenance window's body is at most %d bytes", maxMaintenanceBody), nil)
		return maintenance.Declaration{}, false
	case err != nil:
		route.WriteError(w, http.StatusBadRequest, "reading the body failed", route.FieldError{Field: "body", Reason: err.Error()})
		return maintenance.Declaration{}, false
	}
	d, err := maintenance.DecodeDeclaration(body)
	if fe, ok := maintenance.IsRefusal(err); ok {
		route.WriteError(w, http.StatusBadRequest, "malformed maintenance window: "+err.Error(), route.FieldError{Field: fe.Field, Reason: fe.Reason})
		return maintenance.Declaration{}, false
	}
	if err != nil {
		route.WriteError(w, http.StatusBadRequest, "malformed maintenance window", route.FieldError{Field: "body", Reason: err.Error()})
		return maintenance.Declaration{}, false
	}
	return d, true
}

// maintenanceError answers a failed declare, change or cancel.
func (h *handlers) maintenanceError(w http.ResponseWriter, verb, id string, err error) {
	if fe, ok := maintenance.IsRefusal(err); ok {
		detail := refusalDetail{Field: fe.Field, Reason: fe.Reason}
		if !fe.Earliest.IsZero() {
			e := fe.Earliest.In(h.loc)
			detail.Earliest = &e
		}
		route.WriteError(w, http.StatusUnprocessableEntity, "maintenance window refused: "+err.Error(), detail)
		return
	}
	switch {
	case errors.Is(err, state.ErrNotFound):
		route.WriteError(w, http.StatusNotFound, "no maintenance window "+route.Quote(id), nil)
	case errors.Is(err, state.ErrConflict):
		route.WriteError(w, http.StatusConflict, "maintenance window "+route.Quote(id)+" changed since it was read: read it again and redo the change",
			route.FieldError{Field: "version", Reason: err.Error()})
	default:
		h.log.Error("maintenance "+verb+" failed", "id", id, "err", err)
		route.WriteError(w, http.StatusServiceUnavailable, "state store unavailable", nil)
	}
}
