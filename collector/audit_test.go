package collector_test

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/accesslog"
)

// TestAccessLogEntriesCarryTheClientTheOutcomeAndAChain: operators' reads
// (the maintenance listing too) are recorded with the client's address and
// the answer's status; reads the table refuses are recorded as refused; the
// file's chain verifies.
func TestAccessLogEntriesCarryTheClientTheOutcomeAndAChain(t *testing.T) {
	e := newEnv(t, nil, nil)
	steps := []struct {
		token, path string
		code        int
		want        accesslog.Entry // Actor, Action, Tenant, Outcome, Status
	}{
		{adminToken, "/api/v1/tenants/caami/usage", 200,
			accesslog.Entry{Actor: "ops", Action: "GET /api/v1/tenants/{tenant}/usage", Tenant: "caami", Outcome: accesslog.Allowed, Status: 200}},
		{adminToken, "/api/v1/tenants/caami/usage?group_by=colour", 400,
			accesslog.Entry{Actor: "ops", Action: "GET /api/v1/tenants/{tenant}/usage", Tenant: "caami", Outcome: accesslog.Allowed, Status: 400}},
		{caamiToken, "/api/v1/tenants/caami/usage", 200, accesslog.Entry{}}, // an institution's own read: not recorded
		{caamiToken, "/api/v1/tenants/ona/logs", 403,
			accesslog.Entry{Actor: "caami", Action: "GET /api/v1/tenants/{tenant}/logs", Tenant: "ona", Outcome: accesslog.Refused, Status: 403}},
		{adminToken, "/api/v1/tenants/nobody/logs", 404,
			accesslog.Entry{Actor: "ops", Action: "GET /api/v1/tenants/{tenant}/logs", Tenant: "nobody", Outcome: accesslog.Refused, Status: 404}},
		{adminToken, "/api/v1/maintenance?tenant=caami", 0,
			accesslog.Entry{Actor: "ops", Action: "GET /api/v1/maintenance", Tenant: "caami", Outcome: accesslog.Allowed}},
		{onaToken, "/api/v1/maintenance", 403,
			accesslog.Entry{Actor: "ona", Action: "GET /api/v1/maintenance", Outcome: accesslog.Refused, Status: 403}},
	}
	var want []accesslog.Entry
	for _, s := range steps {
		a := do(t, "GET", e.api.URL+s.path, s.token, nil)
		if s.code != 0 && a.code != s.code {
			t.Fatalf("GET %s: %d %s, want %d", s.path, a.code, a.body, s.code)
		}
		if s.want.Actor != "" {
			w := s.want
			if w.Status == 0 {
				w.Status = a.code // the listing answers 501 without windows configured: whatever it answers is recorded
			}
			want = append(want, w)
		}
	}
	got := e.readAudit(t)
	if len(got) != len(want) {
		t.Fatalf("entries %+v, want %+v", got, want)
	}
	for i, w := range want {
		g := got[i]
		if g.Actor != w.Actor || g.Action != w.Action || g.Tenant != w.Tenant || g.Outcome != w.Outcome || g.Status != w.Status ||
			!strings.HasPrefix(g.Client, "127.0.0.1:") || !g.Time.Equal(now) {
			t.Errorf("entry %d = %+v, want %+v from 127.0.0.1", i, g, w)
		}
	}
	f, err := os.Open(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if c, err := accesslog.Verify(f); err != nil || c.Entries != len(want) {
		t.Errorf("Verify = %+v, %v; want an intact chain of %d", c, err, len(want))
	}
}

// TestAnOperatorReadWhoseEntryFailsIsWithheld: the access log fails while
// the read runs; the answer is a 503 without the handler's data or headers.
func TestAnOperatorReadWhoseEntryFailsIsWithheld(t *testing.T) {
	e := newEnv(t, nil, nil, func(o *setup) { o.AccessLog = failingAudit{} })
	a := do(t, "GET", e.api.URL+"/api/v1/maintenance", adminToken, nil)
	if a.code != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "access log") || a.header.Get("Retry-After") == "" {
		t.Errorf("maintenance listing with a failing access log: %d %s, want 503 naming the access log", a.code, a.body)
	}
}
