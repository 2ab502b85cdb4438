package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/state"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/statetest"
)

// withMaintenance makes newEnv's collector keep maintenance windows in an
// embedded state store of its own, at the collector's clock; *st receives
// the store.
func withMaintenance(t *testing.T, st **stateembedded.Store) func(*setup) {
	return func(o *setup) {
		t.Helper()
		s := statetest.Open(t, stateembedded.Open, t.TempDir())
		svc, err := maintenance.New(maintenance.Options{Store: s, Location: o.Location, Clock: o.Clock, Institutions: o.Institutions,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		o.windows = svc
		*st = s
	}
}

// windowJSON is a declaration's body: tenant's window starting at now+at.
func windowJSON(tenant string, at time.Duration, extra string) string {
	return fmt.Sprintf(`{"tenant":%q,"start":%q,"duration":"2h","reason":"kernel upgrade"%s}`, tenant, now.Add(at).Format(time.RFC3339), extra)
}

// declared is a window as the API answers it.
type declared struct {
	ID        string `json:"id"`
	Tenant    string `json:"tenant"`
	Start     string `json:"start"`
	Duration  string `json:"duration"`
	Cancelled bool   `json:"cancelled"`
	Version   int64  `json:"version"`
	Source    string `json:"source"`
}

// refusal is the detail of a 400 or 422.
type refusal struct {
	Field    string `json:"field"`
	Reason   string `json:"reason"`
	Earliest string `json:"earliest"`
}

func (e *env) maintenance(t *testing.T, method, path, token, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	return do(t, method, e.api.URL+path, token, r, "Content-Type", "application/json")
}

func (e *env) declareWindow(t *testing.T, body string) declared {
	t.Helper()
	a := e.maintenance(t, "POST", "/api/v1/maintenance", adminToken, body)
	if a.code != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", body, a.code, a.body)
	}
	var d declared
	a.decode(t, &d)
	if a.header.Get("Location") != "/api/v1/maintenance/"+d.ID {
		t.Errorf("Location %q, want the window's path", a.header.Get("Location"))
	}
	return d
}

func wantRefused(t *testing.T, a answer, code int, field string) refusal {
	t.Helper()
	var body struct {
		Error  string  `json:"error"`
		Detail refusal `json:"detail"`
	}
	if a.code != code {
		t.Fatalf("answered %d %s, want %d naming %s", a.code, a.body, code, field)
	}
	a.decode(t, &body)
	if body.Detail.Field != field || body.Error == "" {
		t.Errorf("answered %s, want detail.field %q", a.body, field)
	}
	return body.Detail
}

// TestMaintenanceRoutesAreForAdminTokensOnly walks the route table, so a
// maintenance route added later is tried too.
func TestMaintenanceRoutesAreForAdminTokensOnly(t *testing.T) {
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withMaintenance(t, &st))
	w := e.declareWindow(t, windowJSON("caami", 10*24*time.Hour, ""))
	routes := 0
	for _, rt := range e.srv.Routes() {
		if !strings.HasPrefix(rt.Pattern, "/api/v1/maintenance") {
			continue
		}
		routes++
		if rt.Access != route.AdminOnly {
			t.Errorf("%s %s: access %d, want AdminOnly", rt.Method, rt.Pattern, rt.Access)
		}
		path := strings.Replace(rt.Pattern, "{id}", w.ID, 1)
		body := windowJSON("caami", 11*24*time.Hour, `,"version":1`)
		for _, c := range []struct {
			name, token string
			code        int
		}{
			{"caami's institution token", caamiToken, http.StatusForbidden},
			{"ona's institution token", onaToken, http.StatusForbidden},
			{"an agent token", agentNode1, http.StatusForbidden},
			{"no token", "", http.StatusUnauthorized},
		} {
			a := e.maintenance(t, rt.Method, path+"?tenant=caami", c.token, body)
			if a.code != c.code {
				t.Errorf("%s %s with %s: answered %d %s, want %d", rt.Method, rt.Pattern, c.name, a.code, a.body, c.code)
			}
			if strings.Contains(string(a.body), `"windows"`) || strings.Contains(string(a.body), "kernel upgrade") {
				t.Errorf("%s %s with %s: the refusal carries data: %s", rt.Method, rt.Pattern, c.name, a.body)
			}
		}
	}
	if routes != 4 {
		t.Errorf("found %d maintenance routes, want 4 (list, declare, change, cancel)", routes)
	}
	got, err := st.Window(context.Background(), w.ID)
	if err != nil || got.Version != 1 || got.Cancelled {
		t.Errorf("after the refused requests the window is %+v, %v; want it untouched", got, err)
	}
	if es, _ := st.ListAudit(context.Background(), state.AuditFilter{}); len(es) != 1 {
		t.Errorf("%d audit entries, want only the declaration's", len(es))
	}
}

func TestMaintenanceWithoutAStateStoreIsNotImplemented(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, rt := range e.srv.Routes() {
		if rt.Access != route.AdminOnly {
			continue
		}
		path := strings.Replace(rt.Pattern, "{id}", "1", 1)
		if a := e.maintenance(t, rt.Method, path, adminToken, windowJSON("", 10*24*time.Hour, `,"version":1`)); a.code != http.StatusNotImplemented {
			t.Errorf("%s %s without maintenance: %d %s, want 501", rt.Method, rt.Pattern, a.code, a.body)
		}
	}
}

func TestALateDeclarationIsRefusedNamingStart(t *testing.T) {
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withMaintenance(t, &st))
	a := e.maintenance(t, "POST", "/api/v1/maintenance", adminToken, windowJSON("caami", 2*24*time.Hour, ""))
	d := wantRefused(t, a, http.StatusUnprocessableEntity, "start")
	earliest, err := time.Parse(time.RFC3339, d.Earliest)
	if err != nil || !earliest.Equal(now.Add(maintenance.DefaultLeadTime)) {
		t.Errorf("detail.earliest %q, want now plus five days, %s", d.Earliest, now.Add(maintenance.DefaultLeadTime))
	}
	if ws, _ := st.ListWindows(context.Background(), state.WindowFilter{}); len(ws) != 0 {
		t.Errorf("a refused window was stored: %+v", ws)
	}
	e.declareWindow(t, windowJSON("caami", maintenance.DefaultLeadTime, "")) // the earliest start is accepted
}

func TestADeclaredWindowCannotMoveOnceStarted(t *testing.T) {
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withMaintenance(t, &st))
	day := 24 * time.Hour
	w := e.declareWindow(t, windowJSON("caami", 6*day, ""))
	if w.ID == "" || w.Version != 1 || w.Source != "api" || w.Duration != "2h0m0s" {
		t.Fatalf("declared %+v", w)
	}
	e.clock.Advance(6*day + time.Hour) // an hour into it
	path := "/api/v1/maintenance/" + w.ID
	wantRefused(t, e.maintenance(t, "PUT", path, adminToken, windowJSON("caami", 8*day, `,"version":1`)), http.StatusUnprocessableEntity, "start")
	wantRefused(t, e.maintenance(t, "PUT", path, adminToken, strings.Replace(windowJSON("caami", 6*day, `,"version":1`), `"2h"`, `"3h"`, 1)),
		http.StatusUnprocessableEntity, "duration")
	wantRefused(t, e.maintenance(t, "DELETE", path, adminToken, ""), http.StatusUnprocessableEntity, "cancelled")
	// Ending it early is allowed.
	a := e.maintenance(t, "PUT", path, adminToken, strings.Replace(windowJSON("caami", 6*day, `,"version":1`), `"2h"`, `"90m"`, 1))
	if a.code != http.StatusOK {
		t.Fatalf("ending it early: %d %s", a.code, a.body)
	}
	var changed declared
	a.decode(t, &changed)
	if changed.Version != 2 || changed.Duration != "1h30m0s" {
		t.Errorf("ended early as %+v, want version 2 lasting 1h30m", changed)
	}
	// A change from what was read before that is stale.
	wantRefused(t, e.maintenance(t, "PUT", path, adminToken, strings.Replace(windowJSON("caami", 6*day, `,"version":1`), `"2h"`, `"1h"`, 1)),
		http.StatusConflict, "version")
	if a := e.maintenance(t, "PUT", "/api/v1/maintenance/999", adminToken, windowJSON("caami", 9*day, `,"version":1`)); a.code != http.StatusNotFound {
		t.Errorf("PUT of a window that does not exist: %d %s, want 404", a.code, a.body)
	}
	if a := e.maintenance(t, "DELETE", "/api/v1/maintenance/999", adminToken, ""); a.code != http.StatusNotFound {
		t.Errorf("DELETE of a window that does not exist: %d %s, want 404", a.code, a.body)
	}
}

func TestMaintenanceListShowsPlatformWideWindowsToEveryTenant(t *testing.T) {
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withMaintenance(t, &st))
	day := 24 * time.Hour
	platform := e.declareWindow(t, windowJSON("", 6*day, ""))
	caami := e.declareWindow(t, windowJSON("caami", 7*day, ""))
	ona := e.declareWindow(t, windowJSON("ona", 8*day, ""))
	cancelled := e.declareWindow(t, windowJSON("caami", 20*day, ""))
	if a := e.maintenance(t, "DELETE", "/api/v1/maintenance/"+cancelled.ID, adminToken, ""); a.code != http.StatusOK || !strings.Contains(string(a.body), `"cancelled":true`) {
		t.Fatalf("DELETE: %d %s, want the window cancelled", a.code, a.body)
	}
	tests := map[string]struct {
		query string
		want  []string
	}{
		"caami sees the platform's window and its own": {"?tenant=caami", []string{platform.ID, caami.ID, cancelled.ID}},
		"ona sees the platform's window and its own":   {"?tenant=ona", []string{platform.ID, ona.ID}},
		"no tenant lists every window":                 {"", []string{platform.ID, caami.ID, ona.ID, cancelled.ID}},
		"a range selects what overlaps it": {"?tenant=caami&from=" + now.Add(7*day).Format(time.DateOnly) + "&to=" + now.Add(7*day+time.Hour).Format(time.RFC3339),
			[]string{caami.ID}},
		"windows that ended are not listed from now": {"?tenant=ona&from=" + now.Add(9*day).Format(time.RFC3339), nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := e.maintenance(t, "GET", "/api/v1/maintenance"+tt.query, adminToken, "")
			if a.code != http.StatusOK {
				t.Fatalf("GET: %d %s", a.code, a.body)
			}
			var resp struct {
				Windows []declared `json:"windows"`
			}
			a.decode(t, &resp)
			var got []string
			for _, w := range resp.Windows {
				got = append(got, w.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("GET %s lists %q, want %q", tt.query, got, tt.want)
			}
		})
	}
	if a := e.maintenance(t, "GET", "/api/v1/maintenance?tenant=nobody", adminToken, ""); a.code != http.StatusNotFound {
		t.Errorf("an unconfigured tenant: %d %s, want 404", a.code, a.body)
	}
	for _, q := range []string{"?from=yesterday", "?to=2026-13-01", "?from=2026-12-01&to=2026-11-01", "?month=2026-12"} {
		if a := e.maintenance(t, "GET", "/api/v1/maintenance"+q, adminToken, ""); a.code != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s, want 400", q, a.code, a.body)
		}
	}
}

func TestMaintenanceChangesAreAudited(t *testing.T) {
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withMaintenance(t, &st))
	day := 24 * time.Hour
	w := e.declareWindow(t, windowJSON("caami", 10*day, ""))
	if a := e.maintenance(t, "PUT", "/api/v1/maintenance/"+w.ID, adminToken, windowJSON("caami", 12*day, `,"version":1`)); a.code != http.StatusOK {
		t.Fatalf("PUT: %d %s", a.code, a.body)
	}
	if a := e.maintenance(t, "DELETE", "/api/v1/maintenance/"+w.ID, adminToken, ""); a.code != http.StatusOK {
		t.Fatalf("DELETE: %d %s", a.code, a.body)
	}
	es, err := st.ListAudit(context.Background(), state.AuditFilter{SubjectPrefix: "maintenance/caami/"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		var r state.WindowRecord
		if err := json.Unmarshal(e.Detail, &r); err != nil {
			t.Errorf("entry %d's detail %s is not the window: %v", e.Seq, e.Detail, err)
		}
		got = append(got, fmt.Sprintf("%s %s %s v%d", e.Actor, e.Action, e.Subject, r.Version))
	}
	subject := "maintenance/caami/" + w.ID
	want := []string{"ops maintenance.declare " + subject + " v1", "ops maintenance.change " + subject + " v2", "ops maintenance.cancel " + subject + " v3"}
	if !slices.Equal(got, want) {
		t.Errorf("audit entries %q, want %q (the admin token's name, each state of the window)", got, want)
	}
}

func TestMalformedDeclarationsAreRefusedNamingTheField(t *testing.T) {
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withMaintenance(t, &st))
	w := e.declareWindow(t, windowJSON("caami", 10*24*time.Hour, ""))
	tests := map[string]struct {
		method, path, body string
		code               int
		field              string
	}{
		"JSON cut short":                      {"POST", "", `{"tenant":"caami",`, 400, "body"},
		"a start that is not RFC 3339":        {"POST", "", `{"start":"next monday","duration":"1h","reason":"r"}`, 400, "start"},
		"a duration that is a number":         {"POST", "", `{"start":"2026-12-01T00:00:00Z","duration":60,"reason":"r"}`, 400, "duration"},
		"an unknown field":                    {"POST", "", `{"start":"2026-12-01T00:00:00Z","duration":"1h","reason":"r","end":"x"}`, 400, "end"},
		"an id on a new window":               {"POST", "", windowJSON("caami", 10*24*time.Hour, `,"id":"mine"`), 400, "id"},
		"a version on a new window":           {"POST", "", windowJSON("caami", 10*24*time.Hour, `,"version":2`), 400, "version"},
		"a change without version":            {"PUT", "/" + w.ID, windowJSON("caami", 11*24*time.Hour, ""), 400, "version"},
		"a change with another window's id":   {"PUT", "/" + w.ID, windowJSON("caami", 11*24*time.Hour, `,"id":"other","version":1`), 400, "id"},
		"a repeated key":                      {"POST", "", windowJSON("caami", 10*24*time.Hour, `,"tenant":"ona"`), 400, "tenant"},
		"an unknown institution":              {"POST", "", windowJSON("nobody", 10*24*time.Hour, ""), 422, "tenant"},
		"a duration of a minute and a second": {"POST", "", strings.Replace(windowJSON("", 10*24*time.Hour, ""), `"2h"`, `"61s"`, 1), 422, "duration"},
		"no reason":                           {"POST", "", `{"start":"2026-12-01T00:00:00Z","duration":"1h"}`, 422, "reason"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			wantRefused(t, e.maintenance(t, tt.method, "/api/v1/maintenance"+tt.path, adminToken, tt.body), tt.code, tt.field)
		})
	}
	big := windowJSON("caami", 10*24*time.Hour, `,"x":"`+strings.Repeat("a", 70<<10)+`"`)
	if a := e.maintenance(t, "POST", "/api/v1/maintenance", adminToken, big); a.code != http.StatusRequestEntityTooLarge {
		t.Errorf("a 70 KiB body: %d, want 413", a.code)
	}
	if ws, _ := st.ListWindows(context.Background(), state.WindowFilter{}); len(ws) != 1 {
		t.Errorf("%d windows stored, want only the first", len(ws))
	}
}
