package collector_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/collector"
)

// TestEveryTenantRouteRefusesOtherTenants walks the route table, so a route
// added later is tried across tenants without anyone writing a case for it.
func TestEveryTenantRouteRefusesOtherTenants(t *testing.T) {
	e := newEnv(t, nil, nil)
	if a := e.post(t, agentNode1, append(records("caami", 0, 3), records("ona", 10, 3)...)); a.code != 200 {
		t.Fatalf("seeding usage: %d %s", a.code, a.body)
	}
	tenantRoutes := 0
	for _, rt := range e.srv.Routes() {
		scoped := strings.Contains(rt.Pattern, "{tenant}")
		if scoped != (rt.Access == collector.TenantRead) {
			t.Errorf("%s %s: a route is tenant-scoped exactly when its path names {tenant}", rt.Method, rt.Pattern)
			continue
		}
		if !scoped {
			continue
		}
		tenantRoutes++
		path := func(tenant string) string { return e.api.URL + strings.Replace(rt.Pattern, "{tenant}", tenant, 1) }
		cases := []struct {
			name, token, tenant string
			code                int
		}{
			{"caami's token reading ona", caamiToken, "ona", http.StatusForbidden},
			{"ona's token reading caami", onaToken, "caami", http.StatusForbidden},
			{"an agent token reading caami", agentNode1, "caami", http.StatusForbidden},
			{"caami's token reading a tenant that does not exist", caamiToken, "nobody", http.StatusForbidden},
			{"caami's token reading an encoded path to ona", caamiToken, "%6Fna", http.StatusForbidden},
			{"no token", "", "caami", http.StatusUnauthorized},
		}
		for _, c := range cases {
			a := do(t, rt.Method, path(c.tenant), c.token, nil)
			if a.code != c.code {
				t.Errorf("%s %s, %s: answered %d %s, want %d", rt.Method, rt.Pattern, c.name, a.code, a.body, c.code)
			}
			if strings.Contains(string(a.body), `"records"`) {
				t.Errorf("%s %s, %s: the refusal carries data: %s", rt.Method, rt.Pattern, c.name, a.body)
			}
		}
		// The owner and an operator get through, and see only the owner's data.
		for _, token := range []string{caamiToken, adminToken} {
			a := do(t, rt.Method, path("caami"), token, nil)
			if a.code != http.StatusOK {
				t.Errorf("%s %s with an allowed token: answered %d %s", rt.Method, rt.Pattern, a.code, a.body)
			}
			if strings.Contains(string(a.body), `"ona"`) {
				t.Errorf("%s %s for caami returned ona's data: %s", rt.Method, rt.Pattern, a.body)
			}
		}
	}
	if tenantRoutes == 0 {
		t.Fatal("no tenant-scoped route found: the walk tested nothing")
	}
}

func TestOperatorEndpointsOnlyOnTheAdminListener(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		for _, token := range []string{"", adminToken, caamiToken} {
			if a := do(t, "GET", e.api.URL+path, token, nil); a.code != http.StatusNotFound {
				t.Errorf("tenants' listener %s (token %q): answered %d, want 404", path, token, a.code)
			}
		}
	}
	e.post(t, agentNode1, records("caami", 0, 2))
	a := do(t, "GET", e.admin.URL+"/metrics", "", nil)
	if a.code != 200 || !strings.Contains(string(a.body), `paasmeter_collector_records_total{kind="usage",outcome="new",tenant="caami"} 2`) {
		t.Errorf("admin /metrics: %d, missing the per-tenant record counter:\n%s", a.code, a.body)
	}
	if a := do(t, "GET", e.admin.URL+"/debug/pprof/", "", nil); a.code != 200 {
		t.Errorf("admin pprof: %d", a.code)
	}
	for _, l := range []string{e.api.URL, e.admin.URL} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if a := do(t, "GET", l+p, "", nil); a.code != 200 {
				t.Errorf("%s%s: %d %s", l, p, a.code, a.body)
			}
		}
	}
}
