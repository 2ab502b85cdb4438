package collector_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/logs"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// The attacker's suite (issue 19): every route of the tenants' listener,
// taken from the route table at run time so that a route added later is
// attacked without anyone writing a case for it, is called by every kind of
// caller and through every path trick, against ona, the victim. Each attempt
// expects the status the table defines; an attempt the table lets through
// reaches the route's handler, and whatever it answers, a caller that may
// not read ona finds none of ona's markers in it.

// onaSecretApp is the app of ona's seeded usage, events and logs.
const onaSecretApp = "ona-secret-app"

// onaMarkers are strings only ona's data holds: its app, its log line, its
// invoices and its customer record, and the reason of its maintenance window.
var onaMarkers = []string{onaSecretApp, "ona's secret line", onaNovember, onaCredit, "Office national des allocations familiales", "ONA-PO-4471",
	"ona-secret-reason"}

// caller is who attacks: the Authorization header it sends and what the
// table knows of it (no role when the header authenticates nobody).
type caller struct {
	name   string // completes "GET /path …" in a failure
	header string // the Authorization header; none when empty
	role   auth.Role
	node   string
	tenant string
	// tenants are the institutions an agent's node may run.
	tenants []string
}

var callers = []caller{
	{name: "with no token"},
	{name: "with an empty bearer token", header: "Bearer "},
	{name: "with ona's own token under the Basic scheme", header: "Basic " + onaToken},
	{name: "with a token nobody was given", header: "Bearer " + auth.New()},
	{name: "with another institution's token (caami's)", header: "Bearer " + caamiToken, role: auth.RoleInstitution, tenant: "caami"},
	{name: "with the agent token of another node (node-2, shared: any institution)", header: "Bearer " + agentNode2, role: auth.RoleAgent, node: "node-2",
		tenants: []string{auth.AnyTenant}},
	{name: "with the agent token of the node that runs the containers (node-1)", header: "Bearer " + agentNode1, role: auth.RoleAgent, node: "node-1",
		tenants: []string{"caami", "ona"}},
	{name: "with an agent token of the node that runs the containers (node-1) that lists caami only", header: "Bearer " + agentNode1CaamiOnly,
		role: auth.RoleAgent, node: "node-1", tenants: []string{"caami"}},
	{name: "with an operator's admin token", header: "Bearer " + adminToken, role: auth.RoleAdmin},
	{name: "with ona's own token", header: "Bearer " + onaToken, role: auth.RoleInstitution, tenant: "ona"},
}

// through is the expectation that the table lets a request reach the
// route's handler.
const through = 0

// expect is the table's answer (routes.go, wrap) to c calling a route of
// access acc for tenant, or through. The bodies of the attack requests name
// node-1 and tenant, so the handlers' node binding refuses every other
// agent, and their institution binding every agent whose node may not run
// tenant: per record (400) in a batch, the whole push (403) in Loki's.
func (c caller) expect(acc route.Access, tenant string) int {
	if acc == route.Public {
		return through
	}
	if c.role == "" {
		return http.StatusUnauthorized
	}
	known := tenant == "caami" || tenant == "ona"
	// allowed is the table's role check, then its check that the tenant exists.
	allowed := func(ok bool) int {
		switch {
		case !ok:
			return http.StatusForbidden
		case !known:
			return http.StatusNotFound
		}
		return through
	}
	switch acc {
	case route.AgentWrite:
		switch {
		case c.role != auth.RoleAgent || c.node != "node-1":
			return http.StatusForbidden
		case !c.mayRun(tenant):
			return http.StatusBadRequest
		}
		return through
	case route.TenantRead, route.OrgRead:
		return allowed(c.mayRead(tenant))
	case route.OrgWrite:
		switch {
		case c.role == auth.RoleAgent && !known:
			return http.StatusNotFound
		case c.role == auth.RoleAgent:
			// The table lets every agent write any tenant; the handler
			// checks the tenant against the node's institutions, and the
			// node each stream names.
			if !c.mayRun(tenant) || c.node != "node-1" {
				return http.StatusForbidden
			}
			return through
		}
		return allowed(c.role == auth.RoleInstitution && c.tenant == tenant)
	case route.AdminOnly:
		if c.role == auth.RoleAdmin {
			return through
		}
		return http.StatusForbidden
	}
	panic(fmt.Sprintf("access %d has no expectation: add it to caller.expect", acc))
}

// mayRun reports whether c is an agent whose node may run tenant.
func (c caller) mayRun(tenant string) bool {
	return c.role == auth.RoleAgent && (slices.Contains(c.tenants, auth.AnyTenant) || slices.Contains(c.tenants, tenant))
}

// mayRead reports whether c may see tenant's data.
func (c caller) mayRead(tenant string) bool {
	return c.role == auth.RoleAdmin || c.role == auth.RoleInstitution && c.tenant == tenant
}

// attempt is one request of the attack.
type attempt struct {
	method string
	target string // path and query, as sent
	body   []byte
	header http.Header
}

// attackEnv is a collector with billing, the SLA and maintenance windows
// wired as the hub wires them, holding data of both institutions; ona's is
// marked with onaMarkers.
func attackEnv(t *testing.T) *env {
	t.Helper()
	inv := &invoicing{}
	var st *stateembedded.Store
	e := newEnv(t, nil, nil, withInvoicing(t, inv), withSLA(t), withMaintenance(t, &st))
	inv.issue(t, e)
	onaRecords := records("ona", 500, 3)
	for i := range onaRecords {
		onaRecords[i].App = onaSecretApp
		onaRecords[i].SetID()
	}
	if a := e.post(t, agentNode1, append(records("caami", 400, 3), onaRecords...)); a.code != http.StatusOK {
		t.Fatalf("seeding usage: %d %s", a.code, a.body)
	}
	evs := []events.Event{eventstest.Event("caami", "c1", events.Started, now.Add(-time.Hour)), eventstest.Event("ona", "c2", events.Started, now.Add(-time.Hour))}
	evs[1].App = onaSecretApp
	evs[1].SetID()
	if a := e.postEvents(t, agentNode1, evs); a.code != http.StatusOK {
		t.Fatalf("seeding events: %d %s", a.code, a.body)
	}
	if a := e.postLogs(t, agentNode1, []logs.Line{logLine("caami", "pricing", "c1", "prod", now.Add(-time.Minute), "caami's line"),
		logLine("ona", onaSecretApp, "c2", "prod", now.Add(-time.Minute), "ona's secret line")}); a.code != http.StatusOK {
		t.Fatalf("seeding logs: %d %s", a.code, a.body)
	}
	if a := e.maintenance(t, "POST", "/api/v1/maintenance", adminToken, `{"tenant":"ona","start":"`+now.Add(10*24*time.Hour).Format(time.RFC3339)+
		`","duration":"1h","reason":"ona-secret-reason"}`); a.code != http.StatusCreated {
		t.Fatalf("seeding a maintenance window: %d %s", a.code, a.body)
	}
	return e
}

var pathValue = regexp.MustCompile(`\{[a-z]+\}`)

// request is a request of rt for tenant that the handler would accept from
// an allowed caller: its path values, parameters and body. A route this
// does not know gets placeholder values and no body: its allowed callers
// then get a 4xx from its handler, and every other expectation holds.
func request(t *testing.T, rt route.Route, tenant string) attempt {
	t.Helper()
	file := caamiNovember + ".json"
	if tenant == "ona" {
		file = onaNovember + ".json"
	}
	path := strings.NewReplacer("{tenant}", tenant, "{name}", "app", "{file}", file, "{id}", "no-such-window").Replace(rt.Pattern)
	path = pathValue.ReplaceAllString(path, "x")
	a := attempt{method: rt.Method, target: path, header: http.Header{}}
	var b bytes.Buffer
	var err error
	// The records written name tenant on node-1, without ona's markers.
	switch rt.Pattern {
	case "/api/v1/usage":
		err = usage.EncodeBatch(&b, []usage.Record{usagetest.Record(tenant, "w1", usage.MeterCPU, now.Add(-5*time.Minute), 1)})
	case "/api/v1/events":
		err = events.EncodeBatch(&b, []events.Event{eventstest.Event(tenant, "w1", events.Started, now.Add(-5*time.Minute))})
	case "/api/v1/logs":
		err = logs.EncodeBatch(&b, []logs.Line{logLine(tenant, "pricing", "w1", "prod", now.Add(-5*time.Minute), "written")})
	case "/loki/api/v1/push":
		fmt.Fprintf(&b, `{"streams":[{"stream":{%q:"node-1",%q:"pricing",%q:"prod"},"values":[[%q,"pushed"]]}]}`,
			logs.LabelNode, logs.LabelApp, logs.LabelEnv, fmt.Sprint(now.Add(-5*time.Minute).UnixNano()))
	case "/loki/api/v1/query_range":
		a.target += "?query=" + url.QueryEscape(`{app=~".+"}`)
	case "/api/v1/tenants/{tenant}/usage":
		a.target += "?group_by=app"
	case "/api/v1/maintenance", "/api/v1/maintenance/{id}":
		if rt.Method == "POST" || rt.Method == "PUT" {
			fmt.Fprintf(&b, `{"tenant":%q,"start":%q,"duration":"1h","reason":"attack"}`, tenant, now.Add(12*24*time.Hour).Format(time.RFC3339))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if b.Len() > 0 {
		a.body = b.Bytes()
		a.header.Set("Content-Type", "application/json")
	}
	if isOrg(rt) {
		a.header.Set("X-Scope-OrgID", tenant)
	}
	return a
}

func isOrg(rt route.Route) bool { return rt.Access == route.OrgRead || rt.Access == route.OrgWrite }

// noRedirects is a client that shows the collector's redirects instead of
// following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// send makes attempt a as c.
func (e *env) send(t *testing.T, c caller, a attempt) answer {
	t.Helper()
	req := newRequest(t, a.method, e.api.URL+a.target, "", bytes.NewReader(a.body))
	for k, vs := range a.header {
		req.Header[k] = vs
	}
	if c.header != "" {
		req.Header.Set("Authorization", c.header)
	}
	return roundTrip(t, noRedirects, req)
}

// check fails if the answer is not want (a status, or through), or if it
// shows a caller that may not read ona anything of ona's.
func check(t *testing.T, c caller, a attempt, got answer, want int) {
	t.Helper()
	what := fmt.Sprintf("%s %s %s", a.method, a.target, c.name)
	if want == through {
		// The table's own refusals are 401, 403, the 404 of an unknown
		// tenant and the catch-all's 404; a handler may answer a 4xx of
		// its own, never a 5xx.
		if got.code == http.StatusUnauthorized || got.code == http.StatusForbidden || got.code >= 500 ||
			bytes.Contains(got.body, []byte("unknown tenant")) || bytes.Contains(got.body, []byte("no such endpoint")) {
			t.Errorf("%s: answered %d %s, want the route's handler to answer", what, got.code, got.body)
		}
	} else if got.code != want {
		t.Errorf("%s: answered %d %s, want %d", what, got.code, got.body, want)
	}
	if got.code == http.StatusUnauthorized && got.header.Get("WWW-Authenticate") == "" {
		t.Errorf("%s: a 401 without WWW-Authenticate", what)
	}
	if c.mayRead("ona") {
		return
	}
	for _, m := range onaMarkers {
		if bytes.Contains(got.body, []byte(m)) && !strings.Contains(a.target, m) {
			t.Errorf("%s: the answer holds ona's %q: %s", what, m, got.body)
		}
	}
}

func TestEveryRouteAnswersEveryKindOfCallerAsTheRouteTableSays(t *testing.T) {
	e := attackEnv(t)
	seen := map[route.Access]int{}
	// What ona and an operator read: ona's markers must be in it, or
	// finding none of them elsewhere proves nothing.
	var legitimate []byte
	for _, rt := range e.srv.Routes() {
		seen[rt.Access]++
		t.Run(rt.Method+" "+rt.Pattern, func(t *testing.T) {
			for _, c := range callers {
				a := request(t, rt, "ona")
				got := e.send(t, c, a)
				check(t, c, a, got, c.expect(rt.Access, "ona"))
				if c.mayRead("ona") {
					legitimate = append(legitimate, got.body...)
				}
			}
		})
	}
	for _, m := range onaMarkers {
		if !bytes.Contains(legitimate, []byte(m)) {
			t.Errorf("ona's marker %q is in none of the answers to ona and an operator: the seeding or a request is wrong", m)
		}
	}
	// The walk is only as good as the table it walks: the billing and SLA
	// routes must be in it, as the hub wires them.
	if seen[route.Public] < 2 || seen[route.AgentWrite] < 3 || seen[route.TenantRead] < 5 || seen[route.OrgRead] < 4 || seen[route.OrgWrite] < 1 ||
		seen[route.AdminOnly] < 4 {
		t.Fatalf("the route table has %v routes per access: the walk missed some", seen)
	}
}

// trick changes the request a caller makes of a route: the path, the tenant
// it names, a header. apply returns the changed request and what each
// caller gets then (a status, or through), or no expectation when the
// trick does not apply to the route.
type trick struct {
	name  string // completes "… reached through …"
	apply func(t *testing.T, rt route.Route, a attempt) (attempt, func(c caller) int)
}

// redirected is the expectation of a path that is not canonical: the
// collector redirects every caller to the canonical path before any
// handler or check runs, and the canonical path is attacked by
// TestEveryRouteAnswersEveryKindOfCallerAsTheRouteTableSays.
const redirected = http.StatusTemporaryRedirect

var tricks = []trick{
	{"a dot-dot segment", func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		if strings.Contains(rt.Pattern, "{tenant}") {
			a.target = strings.Replace(a.target, "/tenants/ona/", "/tenants/caami/../ona/", 1)
		} else {
			a.target = "/caami/.." + a.target
		}
		return a, func(caller) int { return redirected }
	}},
	{"a doubled slash", func(_ *testing.T, _ route.Route, a attempt) (attempt, func(caller) int) {
		path, query, _ := strings.Cut(a.target, "?")
		i := strings.LastIndex(path, "/")
		a.target = path[:i] + "/" + path[i:] + withQuery(query)
		return a, func(caller) int { return redirected }
	}},
	{"a trailing slash", func(_ *testing.T, _ route.Route, a attempt) (attempt, func(caller) int) {
		path, query, _ := strings.Cut(a.target, "?")
		a.target = path + "/" + withQuery(query)
		return a, func(caller) int { return http.StatusNotFound }
	}},
	{"an upper-case first segment", func(_ *testing.T, _ route.Route, a attempt) (attempt, func(caller) int) {
		first, rest, _ := strings.Cut(a.target[1:], "/")
		a.target = "/" + strings.ToUpper(first) + "/" + rest
		if rest == "" {
			a.target = "/" + strings.ToUpper(first)
		}
		return a, func(caller) int { return http.StatusNotFound }
	}},
	{"an encoded slash in the route's own path", func(_ *testing.T, _ route.Route, a attempt) (attempt, func(caller) int) {
		path, query, _ := strings.Cut(a.target, "?")
		i := strings.LastIndex(path, "/")
		if i == 0 {
			return a, nil
		}
		a.target = path[:i] + "%2F" + path[i+1:] + withQuery(query)
		return a, func(caller) int { return http.StatusNotFound }
	}},
	{"a percent-encoded letter", func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		a.target = "/%" + fmt.Sprintf("%02X", a.target[1]) + a.target[2:]
		return a, func(c caller) int { return c.expect(rt.Access, "ona") }
	}},
	{"HEAD instead of GET", func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		if rt.Method != "GET" {
			return a, nil
		}
		a.method = "HEAD"
		return a, func(c caller) int { return c.expect(rt.Access, "ona") }
	}},
	{"a method no route has", func(_ *testing.T, _ route.Route, a attempt) (attempt, func(caller) int) {
		a.method = "PATCH"
		return a, func(caller) int { return http.StatusNotFound }
	}},
	// The tenant named another way: in the path for the tenants' routes, in
	// X-Scope-OrgID for Loki's.
	{"the tenant in upper case", tenantAs("ONA")},
	{"the tenant with an encoded slash (caami%2F..%2Fona)", tenantAs("caami%2F..%2Fona")},
	{"the tenant percent-encoded (%6Fna)", tenantAs("%6Fna")},
	{"Loki's multi-tenant form (ona|caami)", tenantAs("ona|caami")},
	{"the tenant with a trailing space", tenantAs("ona%20")},
	{"the caller's own tenant in the path and ona in the query", func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		if rt.Access != route.TenantRead && !isOrg(rt) {
			return a, nil
		}
		a = request(t, rt, "caami")
		sep := "?"
		if strings.Contains(a.target, "?") {
			sep = "&"
		}
		a.target += sep + "tenant=ona&org_id=ona"
		return a, func(c caller) int { return c.expect(rt.Access, "caami") }
	}},
	{"the tenant with a path parameter (ona;caami)", tenantAs("ona;caami")},
	{"the tenant with an encoded NUL (ona%00)", tenantAs("ona%00")},
	{"the caller's own tenant in the path and ona in X-Scope-OrgID", func(t *testing.T, rt route.Route, _ attempt) (attempt, func(caller) int) {
		if rt.Access != route.TenantRead {
			return attempt{}, nil
		}
		a := request(t, rt, "caami")
		a.header.Set("X-Scope-OrgID", "ona")
		return a, func(c caller) int { return c.expect(rt.Access, "caami") }
	}},
	{"two X-Scope-OrgID headers, caami's first", orgHeaders("caami", "ona")},
	{"two X-Scope-OrgID headers, ona's first", orgHeaders("ona", "caami")},
	{"no X-Scope-OrgID header", func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		if !isOrg(rt) {
			return a, nil
		}
		a.header.Del("X-Scope-OrgID")
		return a, func(c caller) int {
			switch {
			case c.role == "":
				return http.StatusUnauthorized
			case c.role == auth.RoleInstitution:
				return c.expect(rt.Access, c.tenant) // an institution's token names its tenant
			}
			return http.StatusBadRequest
		}
	}},
	{"a LogQL selector naming ona under caami's header", func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		if rt.Pattern != "/loki/api/v1/query_range" {
			return a, nil
		}
		a = request(t, rt, "caami")
		a.target = strings.Split(a.target, "?")[0] + "?query=" + url.QueryEscape(`{tenant="ona", app="`+onaSecretApp+`"} or {app="`+onaSecretApp+`"}`)
		return a, func(c caller) int { return c.expect(rt.Access, "caami") }
	}},
}

func withQuery(q string) string {
	if q == "" {
		return ""
	}
	return "?" + q
}

// tenantAs names the tenant as raw: in the path, where the collector
// unescapes it, or in X-Scope-OrgID, where it is taken as sent.
func tenantAs(raw string) func(*testing.T, route.Route, attempt) (attempt, func(caller) int) {
	return func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		tenant := raw
		switch {
		case rt.Access == route.TenantRead:
			a.target = strings.Replace(a.target, "/tenants/ona/", "/tenants/"+raw+"/", 1)
			var err error
			if tenant, err = url.PathUnescape(raw); err != nil {
				t.Fatal(err)
			}
		case isOrg(rt):
			a.header.Set("X-Scope-OrgID", raw)
		default:
			return a, nil
		}
		return a, func(c caller) int { return c.expect(rt.Access, tenant) }
	}
}

// orgHeaders sends two X-Scope-OrgID headers; the collector takes the
// first, for its check and its handler alike.
func orgHeaders(first, second string) func(*testing.T, route.Route, attempt) (attempt, func(caller) int) {
	return func(t *testing.T, rt route.Route, a attempt) (attempt, func(caller) int) {
		if !isOrg(rt) {
			return a, nil
		}
		a.header["X-Scope-Orgid"] = []string{first, second}
		return a, func(c caller) int { return c.expect(rt.Access, first) }
	}
}

func TestNoPathTrickTakesAnyCallerPastTheRouteTable(t *testing.T) {
	e := attackEnv(t)
	for _, rt := range e.srv.Routes() {
		for _, tr := range tricks {
			a, want := tr.apply(t, rt, request(t, rt, "ona"))
			if want == nil {
				continue
			}
			t.Run(rt.Method+" "+rt.Pattern+" reached through "+tr.name, func(t *testing.T) {
				for _, c := range callers {
					got := e.send(t, c, a)
					check(t, c, a, got, want(c))
					if got.code != redirected {
						continue
					}
					// The redirect leads to the canonical path, whose
					// answers the other test checks; no handler ran.
					loc, err := url.Parse(got.header.Get("Location"))
					if err != nil || loc.Path != strings.Split(request(t, rt, "ona").target, "?")[0] {
						t.Errorf("%s %s %s: redirected to %q, want the canonical path", a.method, a.target, c.name, got.header.Get("Location"))
					}
				}
			})
		}
	}
}

// TestTheAttackedRoutesAreTheHubsRoutes: the suite attacks a collector that
// newEnv wires; the collector the hub builds from the example configuration
// must serve the same routes with the same access, or a route the hub adds
// would go unattacked.
func TestTheAttackedRoutesAreTheHubsRoutes(t *testing.T) {
	example, err := os.ReadFile("../deploy/examples/paasmeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("data_dir: data", "data_dir: "+filepath.Join(t.TempDir(), "data"),
		"rate_card: deploy/", "rate_card: ../deploy/", "sla_file: deploy/", "sla_file: ../deploy/").Replace(string(example))
	cfg, err := config.Parse([]byte(text), "example", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.Open(context.Background(), cfg, hub.Options{Clock: clock.NewManual(now)}, hub.CollectorServer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	table := func(routes []route.Route) []string {
		var out []string
		for _, rt := range routes {
			out = append(out, fmt.Sprintf("%s %s (access %d)", rt.Method, rt.Pattern, rt.Access))
		}
		slices.Sort(out)
		return out
	}
	hubs, attacked := table(h.CollectorServer().Routes()), table(newEnv(t, nil, nil).srv.Routes())
	if !slices.Equal(hubs, attacked) {
		t.Errorf("the hub serves\n%s\nbut the suite attacks\n%s", strings.Join(hubs, "\n"), strings.Join(attacked, "\n"))
	}
}

// TestACursorOneInstitutionWasGivenReadsNothingOfItForAnother: a log
// cursor carries a position, never a tenant; the tenant is the path's,
// checked by the table. Its seal is a checksum against mistakes, not a
// secret, so the wall must not rest on it: caami replaying ona's cursor,
// on its own path or on ona's, reads none of ona's lines.
func TestACursorOneInstitutionWasGivenReadsNothingOfItForAnother(t *testing.T) {
	e := attackEnv(t)
	if a := e.postLogs(t, agentNode1, []logs.Line{logLine("ona", onaSecretApp, "c2", "prod", now.Add(-2*time.Minute), "ona's secret line, older")}); a.code != http.StatusOK {
		t.Fatalf("seeding logs: %d %s", a.code, a.body)
	}
	page := e.readLogs(t, onaToken, "ona", "limit=1")
	if page.Next == "" {
		t.Fatal("ona's first page of one line has no next cursor: the test needs one")
	}
	// The seal recomputed for caami, as anyone who reads the code can: read
	// from that position (200) while the seal is an unkeyed checksum,
	// refused (400) if it ever becomes keyed; never ona's lines.
	position := page.Next[:strings.LastIndexByte(page.Next, '.')]
	sum := sha256.Sum256([]byte("paasmeter.log-cursor\x00caami\x00" + position))
	resealed := position + "." + hex.EncodeToString(sum[:6])
	for _, c := range []struct {
		name, tenant, cursor string
		want                 []int
	}{
		{"on caami's own path", "caami", page.Next, []int{http.StatusBadRequest}},
		{"on ona's path", "ona", page.Next, []int{http.StatusForbidden}},
		{"resealed for caami, on caami's path", "caami", resealed, []int{http.StatusOK, http.StatusBadRequest}},
	} {
		a := do(t, "GET", e.api.URL+"/api/v1/tenants/"+c.tenant+"/logs?limit=1&cursor="+url.QueryEscape(c.cursor), caamiToken, nil)
		if !slices.Contains(c.want, a.code) {
			t.Errorf("caami replaying ona's cursor %s: answered %d %s, want one of %v", c.name, a.code, a.body, c.want)
		}
		for _, m := range onaMarkers {
			if bytes.Contains(a.body, []byte(m)) {
				t.Errorf("caami replaying ona's cursor %s: the answer holds ona's %q: %s", c.name, m, a.body)
			}
		}
	}
}
