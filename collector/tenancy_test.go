package collector_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// TestEveryTenantRouteRefusesOtherTenants walks the route table, so a route
// added later is tried across tenants without anyone writing a case for it.
// Routes name their tenant in the path ({tenant}) or, for Loki's API, in the
// X-Scope-OrgID header; both are tried with every kind of wrong token.
func TestEveryTenantRouteRefusesOtherTenants(t *testing.T) {
	inv := &invoicing{}
	e := newEnv(t, nil, nil, withInvoicing(t, inv), withSLA(t))
	inv.issue(t, e)
	if a := e.post(t, agentNode1, append(records("caami", 0, 3), records("ona", 10, 3)...)); a.code != 200 {
		t.Fatalf("seeding usage: %d %s", a.code, a.body)
	}
	if a := e.postLogs(t, agentNode1, []logs.Line{logLine("caami", "pricing", "c1", "prod", now.Add(-time.Minute), "caami's line"),
		logLine("ona", "pricing", "c2", "prod", now.Add(-time.Minute), "ona's secret line")}); a.code != 200 {
		t.Fatalf("seeding logs: %d %s", a.code, a.body)
	}
	// Path values and parameters that make an allowed request succeed.
	values := strings.NewReplacer("{name}", "app", "{file}", caamiNovember+".json")
	params := map[string]string{"/loki/api/v1/query_range": "?query=" + url.QueryEscape(`{app="pricing"}`)}
	bodies := map[string]string{"/loki/api/v1/push": `{"streams":[]}`}

	tenantRoutes, orgRoutes := 0, 0
	for _, rt := range e.srv.Routes() {
		scoped := strings.Contains(rt.Pattern, "{tenant}")
		org := strings.HasPrefix(rt.Pattern, "/loki/")
		if scoped != (rt.Access == route.TenantRead) || org != (rt.Access == route.OrgRead || rt.Access == route.OrgWrite) {
			t.Errorf("%s %s: a route is tenant-scoped exactly when its path names {tenant}, and org-scoped exactly when it is Loki's", rt.Method, rt.Pattern)
			continue
		}
		if !scoped && !org {
			continue
		}
		// request asks for tenant with token; for Loki's routes the tenant is the header's.
		request := func(token, tenant string) answer {
			path := strings.Replace(values.Replace(rt.Pattern), "{tenant}", tenant, 1) + params[rt.Pattern]
			var body io.Reader
			if b, ok := bodies[rt.Pattern]; ok {
				body = strings.NewReader(b)
			}
			if scoped {
				return do(t, rt.Method, e.api.URL+path, token, body)
			}
			return do(t, rt.Method, e.api.URL+path, token, body, "X-Scope-OrgID", tenant, "Content-Type", "application/json")
		}
		type attempt struct {
			name, token, tenant string
			code                int
		}
		cases := []attempt{
			{"caami's token asking for ona", caamiToken, "ona", http.StatusForbidden},
			{"ona's token asking for caami", onaToken, "caami", http.StatusForbidden},
			{"caami's token asking for a tenant that does not exist", caamiToken, "nobody", http.StatusForbidden},
			{"no token", "", "caami", http.StatusUnauthorized},
		}
		switch {
		case scoped:
			tenantRoutes++
			cases = append(cases, attempt{"caami's token asking for an encoded path to ona", caamiToken, "%6Fna", http.StatusForbidden})
		case org:
			orgRoutes++
			cases = append(cases, attempt{"caami's token asking for Loki's multi-tenant ona|caami", caamiToken, "ona|caami", http.StatusForbidden})
		}
		allowed := []string{caamiToken, adminToken}
		if rt.Access == route.OrgWrite {
			// An operator reads every tenant but writes none; an agent writes (for its node).
			cases = append(cases, attempt{"an operator pushing to caami", adminToken, "caami", http.StatusForbidden})
			allowed = []string{caamiToken, agentNode1}
		} else {
			cases = append(cases, attempt{"an agent token reading caami", agentNode1, "caami", http.StatusForbidden})
		}
		for _, c := range cases {
			a := request(c.token, c.tenant)
			if a.code != c.code {
				t.Errorf("%s %s, %s: answered %d %s, want %d", rt.Method, rt.Pattern, c.name, a.code, a.body, c.code)
			}
			for _, leak := range []string{`"records"`, `"lines"`, `"result"`, `"data"`, "line"} {
				if strings.Contains(string(a.body), leak) {
					t.Errorf("%s %s, %s: the refusal carries data: %s", rt.Method, rt.Pattern, c.name, a.body)
				}
			}
		}
		// The owner and an operator get through, and see only the owner's data.
		for _, token := range allowed {
			a := request(token, "caami")
			if a.code != http.StatusOK && a.code != http.StatusNoContent {
				t.Errorf("%s %s with an allowed token: answered %d %s", rt.Method, rt.Pattern, a.code, a.body)
			}
			if strings.Contains(string(a.body), `"ona"`) || strings.Contains(string(a.body), "ona's secret") {
				t.Errorf("%s %s for caami returned ona's data: %s", rt.Method, rt.Pattern, a.body)
			}
		}
	}
	if tenantRoutes < 4 || orgRoutes < 4 {
		t.Fatalf("found %d tenant-scoped and %d Loki routes: the walk missed some", tenantRoutes, orgRoutes)
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
	// pprof is off unless collector.pprof turns it on.
	if a := do(t, "GET", e.admin.URL+"/debug/pprof/", "", nil); a.code != 404 {
		t.Errorf("admin pprof by default: %d, want 404", a.code)
	}
	cfg := collector.DefaultConfig()
	cfg.Pprof = true
	if a := do(t, "GET", newEnv(t, &cfg, nil).admin.URL+"/debug/pprof/", "", nil); a.code != 200 {
		t.Errorf("admin pprof with collector.pprof: %d", a.code)
	}
	for _, l := range []string{e.api.URL, e.admin.URL} {
		for _, p := range []string{"/healthz", "/readyz"} {
			if a := do(t, "GET", l+p, "", nil); a.code != 200 {
				t.Errorf("%s%s: %d %s", l, p, a.code, a.body)
			}
		}
	}
}

// TestContributedRoutesCannotStepAroundTheTable: a route another domain
// contributes declares its access, and the table refuses one whose path
// and access disagree, since the tenant of a {tenant} segment is checked
// only on TenantRead routes.
func TestContributedRoutesCannotStepAroundTheTable(t *testing.T) {
	handle := func(w http.ResponseWriter, _ *http.Request, _ auth.Principal) { w.WriteHeader(http.StatusOK) }
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn, err := auth.NewAuthenticator(nil)
	if err != nil {
		t.Fatal(err)
	}
	for name, rt := range map[string]route.Route{
		"a tenant's path under admin access":   {Method: "GET", Pattern: "/api/v1/tenants/{tenant}/things", Access: route.AdminOnly, Handle: handle},
		"a tenant's path under agent access":   {Method: "POST", Pattern: "/api/v1/tenants/{tenant}/things", Access: route.AgentWrite, Handle: handle},
		"a tenant read that names no tenant":   {Method: "GET", Pattern: "/api/v1/things", Access: route.TenantRead, Handle: handle},
		"a route the collector already serves": {Method: "GET", Pattern: "/api/v1/tenants/{tenant}/usage", Access: route.TenantRead, Handle: handle},
		"an access that does not exist":        {Method: "GET", Pattern: "/api/v1/things", Access: route.AdminOnly + 1, Handle: handle},
		"no handler":                           {Method: "GET", Pattern: "/api/v1/things", Access: route.AdminOnly},
	} {
		_, err := collector.New(collector.Options{Config: collector.DefaultConfig(), Store: st, Auth: authn, Routes: []route.Route{rt}})
		if err == nil || !strings.Contains(err.Error(), rt.Pattern) {
			t.Errorf("%s: New answered %v, want an error naming the route", name, err)
		}
	}
}
