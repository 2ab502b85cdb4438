package portal_test

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/locale"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/portal"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/state"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/statetest"
	"github.com/paasmeter/paasmeter/usage"
)

const (
	caamiToken = "pm_caami_portal_test"
	onaToken   = "pm_ona_portal_test"
	adminToken = "pm_admin_portal_test"
	agentToken = "pm_agent_portal_test"
)

// env is a portal over the billing worked example (November 2026), its
// clock in the middle of the month.
type env struct {
	srv   *httptest.Server
	svc   *billing.Service
	clock *clock.Manual
	sla   *sla.Calculator
	usage *embedded.Store
}

// reports serves the portal the calculator's SLA reports, without window changes.
type reports struct{ *sla.Calculator }

func (r reports) Report(ctx context.Context, tenant string, p calendar.Month) (*sla.Report, []state.AuditEntry, error) {
	rep, err := r.Calculator.Report(ctx, tenant, p)
	return rep, nil, err
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// newEnv starts the portal; tweak, if given, changes its options once the
// portal's URL is known.
func newEnv(t *testing.T, tweak ...func(o *portal.Options, url string)) *env {
	t.Helper()
	ctx := context.Background()
	mid := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	store, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	recs := billingtest.Records()
	for i := range recs {
		recs[i].ReceivedAt = mid.Add(-2 * time.Hour)
	}
	if _, err := store.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	// caami's production app ran from 19 November, probed every 20 s, and
	// stopped answering its probes for ten minutes on the 20th at 08:00.
	var evs []events.Event
	start := time.Date(2026, 11, 19, 0, 0, 0, 0, time.UTC)
	evs = append(evs, eventstest.Event("caami", "c1", events.Started, start))
	for at := start.Add(20 * time.Second); at.Before(mid.Add(-time.Hour)); at = at.Add(20 * time.Second) {
		ev := eventstest.Event("caami", "c1", events.Probe, at)
		if at.After(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)) && at.Before(time.Date(2026, 11, 20, 8, 10, 0, 0, time.UTC)) {
			ev.Probe.OK = false
			ev.SetID()
		}
		evs = append(evs, ev)
	}
	for i := range evs {
		evs[i].ReceivedAt = evs[i].Time
	}
	if _, err := store.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	card, err := ratecard.Load(filepath.Join("..", "deploy", "examples", "ratecard.yaml"), billingtest.Brussels())
	if err != nil {
		t.Fatal(err)
	}
	e := &env{clock: clock.NewManual(mid), usage: store}
	e.sla, err = sla.NewCalculator(store, nil, sla.DefaultConfig(), e.clock)
	if err != nil {
		t.Fatal(err)
	}
	cfg := billing.DefaultConfig()
	cfg.Location, cfg.Seller, cfg.Customers = billingtest.Brussels(), billingtest.Seller(), billingtest.Customers()
	e.svc, err = billing.New(billing.Options{Config: cfg, Card: card, Usage: store, SLA: billingtest.SLA{},
		State: statetest.Open(t, stateembedded.Open, t.TempDir()), Clock: e.clock, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	authn, err := auth.NewAuthenticator([]auth.TokenConfig{
		{Name: "caami", Role: auth.RoleInstitution, Tenant: "caami", SHA256: auth.Hash(caamiToken)},
		{Name: "ona", Role: auth.RoleInstitution, Tenant: "ona", SHA256: auth.Hash(onaToken)},
		{Name: "ops", Role: auth.RoleAdmin, SHA256: auth.Hash(adminToken)},
		{Name: "node-1", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami"}, SHA256: auth.Hash(agentToken)},
	})
	if err != nil {
		t.Fatal(err)
	}
	o := portal.Options{Auth: authn, SLA: reports{e.sla}, Usage: store, Costs: billinghttp.NewCosts(e.svc, e.svc, e.clock, quiet), Invoices: e.svc, Location: billingtest.Brussels(), Clock: e.clock, Logger: quiet,
		Institutions: institution.Directory{{ID: "caami", Name: "Caisse auxiliaire d'assurance maladie-invalidité"}, {ID: "ona", Name: "ONA"}}}
	e.srv = httptest.NewUnstartedServer(nil)
	for _, f := range tweak {
		f(&o, "http://"+e.srv.Listener.Addr().String())
	}
	p, err := portal.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Config.Handler = p.Handler()
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a person's browser: its cookies, and no redirect followed, so
// that the tests see each answer.
type browser struct {
	t      *testing.T
	e      *env
	client *http.Client
	lang   string
}

func (e *env) browser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, e: e, client: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type page struct {
	code   int
	header http.Header
	body   string
}

func (b *browser) do(method, path string, form url.Values) page {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if b.lang != "" {
		req.Header.Set("Accept-Language", b.lang)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return page{resp.StatusCode, resp.Header, string(raw)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of a page's form.
func (b *browser) csrf(p page) string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		b.t.Fatalf("no CSRF token in the page:\n%s", p.body)
	}
	return m[1]
}

// signIn signs in with token and returns the answer to the form.
func (b *browser) signIn(token string) page {
	b.t.Helper()
	form := b.do("GET", "/portal/login", nil)
	if form.code != http.StatusOK {
		b.t.Fatalf("sign-in form: %d %s", form.code, form.body)
	}
	return b.do("POST", "/portal/login", url.Values{"token": {token}, "csrf": {b.csrf(form)}})
}

func (e *env) draftPayable(t *testing.T, tenant string) billing.Money {
	t.Helper()
	drafts, err := e.svc.Draft(context.Background(), billingtest.Period(), []string{tenant}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return drafts[0].Totals.Payable
}

func TestAnInstitutionSignsInWithItsTokenAndSeesItsMonthSoFar(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	if p := b.do("GET", "/portal/caami/", nil); p.code != http.StatusSeeOther || p.header.Get("Location") != "/portal/login" {
		t.Fatalf("a page before signing in: %d to %q, want 303 to /portal/login", p.code, p.header.Get("Location"))
	}
	p := b.signIn(caamiToken)
	if p.code != http.StatusSeeOther || p.header.Get("Location") != "/portal/caami/" {
		t.Fatalf("sign-in: %d to %q: %s", p.code, p.header.Get("Location"), p.body)
	}
	var session *http.Cookie
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "paasmeter_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/portal/" || len(session.Value) < 40 ||
		strings.Contains(session.Value, caamiToken) {
		t.Fatalf("the session cookie %+v: want HttpOnly, SameSite=Strict, path /portal/, a long random id, never the token", session)
	}
	home := b.do("GET", "/portal/caami/", nil)
	want := locale.English.Money(e.draftPayable(t, "caami").StringFixed(2), "EUR")
	if home.code != http.StatusOK || !strings.Contains(home.body, `<dd id="payable">`+want+`</dd>`) || !strings.Contains(home.body, "November 2026") ||
		!strings.Contains(home.body, "Provisional") {
		t.Fatalf("caami's month so far: %d, want the draft's payable %s:\n%s", home.code, want, home.body)
	}
	for h, want := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"} {
		if got := home.header.Get(h); got != want {
			t.Errorf("%s: %q, want %q", h, got, want)
		}
	}
	if csp := home.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

func TestTheMonthSoFarIsWrittenInTheBrowsersLanguageOrTheOneChosen(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.lang = "fr-BE,fr;q=0.9,en;q=0.5"
	b.signIn(caamiToken)
	payable := e.draftPayable(t, "caami").StringFixed(2)
	fr := b.do("GET", "/portal/caami/", nil)
	if !strings.Contains(fr.body, `<html lang="fr">`) || !strings.Contains(fr.body, "Ce mois-ci") || !strings.Contains(fr.body, "novembre 2026") ||
		!strings.Contains(fr.body, `<dd id="payable">`+locale.French.Money(payable, "EUR")+`</dd>`) {
		t.Fatalf("with Accept-Language fr-BE:\n%s", fr.body)
	}
	nl := b.do("GET", "/portal/caami/?lang=nl", nil)
	if !strings.Contains(nl.body, `<html lang="nl">`) || !strings.Contains(nl.body, "Deze maand tot nu toe") ||
		!strings.Contains(nl.body, `<dd id="payable">`+locale.Dutch.Money(payable, "EUR")+`</dd>`) {
		t.Fatalf("?lang=nl:\n%s", nl.body)
	}
	// The choice outlives the page, over the browser's.
	if again := b.do("GET", "/portal/caami/", nil); !strings.Contains(again.body, `<html lang="nl">`) {
		t.Errorf("after choosing Dutch, the next page is not in Dutch:\n%.300s", again.body)
	}
	b.lang = "de-DE"
	other := e.browser(t)
	other.lang = "de-DE,de;q=0.9"
	if p := other.do("GET", "/portal/login", nil); !strings.Contains(p.body, `<html lang="en">`) {
		t.Errorf("a browser in German gets the login page in %.80s, want English", p.body)
	}
}

func TestAnotherInstitutionsPagesAreNotFound(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.signIn(caamiToken)
	// The language links name the page's own path; the rest must not differ.
	langLinks := regexp.MustCompile(`href="[^"]*\?lang=`)
	unknown := b.do("GET", "/portal/nobody/", nil)
	if unknown.code != http.StatusNotFound {
		t.Fatalf("an unknown institution: %d", unknown.code)
	}
	for _, path := range []string{"/portal/ona/", "/portal/ona/invoices", "/portal/ona/invoices/PM-2026-000002.pdf", "/portal/%6Fna/"} {
		p := b.do("GET", path, nil)
		if p.code != http.StatusNotFound || langLinks.ReplaceAllString(p.body, "") != langLinks.ReplaceAllString(unknown.body, "") {
			t.Errorf("caami asking for %s: %d, want the page of an institution that does not exist:\n%s", path, p.code, p.body)
		}
		if strings.Contains(p.body, "ONA") {
			t.Errorf("caami asking for %s sees ona's name", path)
		}
	}
}

func TestOnlyAnInstitutionsTokenWithTheFormsOwnCSRFTokenSignsIn(t *testing.T) {
	e := newEnv(t)
	for name, token := range map[string]string{"a wrong token": "pm_nope", "an operator's token": adminToken, "an agent's token": agentToken, "no token": ""} {
		b := e.browser(t)
		p := b.signIn(token)
		if p.code != http.StatusUnauthorized || !strings.Contains(p.body, "not an institution") {
			t.Errorf("%s: %d, want 401 and the form again:\n%s", name, p.code, p.body)
		}
		if home := b.do("GET", "/portal/caami/", nil); home.code != http.StatusSeeOther {
			t.Errorf("%s: a page afterwards answers %d, want a redirect to sign in", name, home.code)
		}
	}
	b := e.browser(t)
	b.do("GET", "/portal/login", nil)
	if p := b.do("POST", "/portal/login", url.Values{"token": {caamiToken}, "csrf": {"forged"}}); p.code != http.StatusForbidden {
		t.Errorf("a sign-in without the form's CSRF token: %d, want 403", p.code)
	}
	// A form posted from another site has no login cookie at all.
	fresh := e.browser(t)
	if p := fresh.do("POST", "/portal/login", url.Values{"token": {caamiToken}, "csrf": {"x"}}); p.code != http.StatusForbidden {
		t.Errorf("a sign-in without the login cookie: %d, want 403", p.code)
	}
}

func TestSigningOutNeedsTheSessionsCSRFTokenAndEndsTheSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.signIn(caamiToken)
	home := b.do("GET", "/portal/caami/", nil)
	if p := b.do("POST", "/portal/logout", url.Values{"csrf": {"forged"}}); p.code != http.StatusForbidden {
		t.Fatalf("sign-out with a forged CSRF token: %d, want 403", p.code)
	}
	if p := b.do("GET", "/portal/caami/", nil); p.code != http.StatusOK {
		t.Fatalf("after a refused sign-out the session is gone: %d", p.code)
	}
	if p := b.do("POST", "/portal/logout", url.Values{"csrf": {b.csrf(home)}}); p.code != http.StatusSeeOther || p.header.Get("Location") != "/portal/login" {
		t.Fatalf("sign-out: %d to %q", p.code, p.header.Get("Location"))
	}
	if p := b.do("GET", "/portal/caami/", nil); p.code != http.StatusSeeOther {
		t.Errorf("a page after signing out: %d, want a redirect to sign in", p.code)
	}
}

func TestASessionEndsAfterHalfAnHourIdleOrEightHoursInAll(t *testing.T) {
	e := newEnv(t)
	busy := e.browser(t)
	busy.signIn(caamiToken)
	idle := e.browser(t)
	idle.signIn(onaToken)
	// A page every 20 minutes keeps a session for 8 hours, no longer.
	for range 23 {
		e.clock.Advance(20 * time.Minute)
		if p := busy.do("GET", "/portal/caami/invoices", nil); p.code != http.StatusOK {
			t.Fatalf("a busy session ended early: %d at %s", p.code, e.clock.Now())
		}
	}
	if p := idle.do("GET", "/portal/ona/invoices", nil); p.code != http.StatusSeeOther {
		t.Errorf("a session idle for hours answers %d, want the sign-in", p.code)
	}
	e.clock.Advance(20 * time.Minute) // 8 h since the sign-in
	if p := busy.do("GET", "/portal/caami/invoices", nil); p.code != http.StatusSeeOther {
		t.Errorf("after 8 hours: %d, want a redirect to sign in", p.code)
	}
}

func TestSigningInOverAndOverEndsOnlyOnesOwnOldestSessions(t *testing.T) {
	e := newEnv(t, func(o *portal.Options, _ string) { o.MaxSessions, o.MaxSessionsEach = 30, 20 })
	first := e.browser(t)
	first.signIn(caamiToken)
	for range 40 {
		e.browser(t).signIn(caamiToken)
	}
	if p := first.do("GET", "/portal/caami/", nil); p.code != http.StatusSeeOther {
		t.Errorf("caami's first session after 40 more sign-ins: %d, want it ended (20 a principal)", p.code)
	}
	// The store holds 20 of caami's sessions and room for others; when full,
	// a sign-in ends the oldest session rather than being refused.
	var onas []*browser
	for range 15 {
		b := e.browser(t)
		if p := b.signIn(onaToken); p.code != http.StatusSeeOther {
			t.Fatalf("ona's sign-in with the store full: %d\n%s", p.code, p.body)
		}
		onas = append(onas, b)
	}
	if p := onas[14].do("GET", "/portal/ona/", nil); p.code != http.StatusOK {
		t.Errorf("ona's last session: %d", p.code)
	}
}

func TestCookiesAreSecureButOverPlainHTTPToALoopbackAddress(t *testing.T) {
	e := newEnv(t)
	for host, secure := range map[string]bool{"": false, "paasmeter.example.be": true, "localhost:8080": false, "10.0.0.7:8080": true} {
		req, err := http.NewRequest("GET", e.srv.URL+"/portal/login", nil)
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host // as a proxy that ends TLS forwards it
		}
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, c := range resp.Cookies() {
			if c.Secure != secure {
				t.Errorf("Host %q: cookie %s Secure=%v, want %v", cmp.Or(host, "127.0.0.1"), c.Name, c.Secure, secure)
			}
		}
	}
}

func TestTheInvoicesPageListsTheIssuedDocumentsAndDownloadsThem(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.signIn(caamiToken)
	if p := b.do("GET", "/portal/caami/invoices", nil); p.code != http.StatusOK || !strings.Contains(p.body, "No invoice has been issued yet.") {
		t.Fatalf("before any invoice: %d\n%s", p.code, p.body)
	}
	e.clock.Set(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)) // after November's grace period
	res, err := e.svc.Issue(context.Background(), billingtest.Period(), nil, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	b.signIn(caamiToken) // the clock moved past the first session's life
	list := b.do("GET", "/portal/caami/invoices", nil)
	var caami *billing.Invoice
	for _, r := range res {
		if r.Invoice.Customer.Tenant == "caami" {
			caami = r.Invoice
		} else if strings.Contains(list.body, r.Invoice.Number) {
			t.Errorf("caami's list shows %s's %s", r.Invoice.Customer.Tenant, r.Invoice.Number)
		}
	}
	if caami == nil || list.code != http.StatusOK || !strings.Contains(list.body, caami.Number) ||
		!strings.Contains(list.body, locale.English.Money(caami.Totals.Payable.StringFixed(2), "EUR")) {
		t.Fatalf("caami's invoices: %d\n%s", list.code, list.body)
	}
	for _, f := range export.Formats() {
		href := "/portal/caami/invoices/" + export.FileName(caami, f)
		if !strings.Contains(list.body, `href="`+href+`"`) {
			t.Errorf("no %s link %s", f, href)
			continue
		}
		got := b.do("GET", href, nil)
		var want bytes.Buffer
		if err := export.Write(&want, caami, f); err != nil {
			t.Fatal(err)
		}
		if got.code != http.StatusOK || got.body != want.String() {
			t.Errorf("%s: %d, %d bytes, want the %d bytes of export.Write", href, got.code, len(got.body), want.Len())
		}
	}
}

func TestTheAvailabilityPageShowsTheSLAReport(t *testing.T) {
	e := newEnv(t)
	rep, err := e.sla.Report(context.Background(), "caami", billingtest.Period())
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Apps) != 1 || rep.Apps[0].DownPlatform+rep.Apps[0].DownTenant == 0 {
		t.Fatalf("the example's report: %+v, want one app with down minutes", rep.Apps)
	}
	app := rep.Apps[0]
	b := e.browser(t)
	b.lang = "fr"
	b.signIn(caamiToken)
	p := b.do("GET", "/portal/caami/sla", nil)
	pct := func(d string) string { return locale.French.Number(d) + "\u00a0%" }
	for _, want := range []string{
		`<dd id="availability">` + pct(rep.Availability.String()) + `</dd>`, `<dd id="credit">` + pct(rep.CreditPercent.String()) + `</dd>`,
		"<th scope=\"row\">claims</th><td>pricing</td><td class=\"num\">" + pct(app.Availability.String()) + "</td>",
		"novembre 2026", "Aucune fenêtre de maintenance", "<td>votre application</td>",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the availability page has no %q:\n%s", want, p.body)
		}
	}
	if p := b.do("GET", "/portal/caami/sla?month=2027-01", nil); p.code != http.StatusNotFound {
		t.Errorf("a month to come: %d", p.code)
	}
	b.signIn(onaToken)
	if p := b.do("GET", "/portal/caami/sla", nil); p.code != http.StatusNotFound {
		t.Errorf("ona asking for caami's availability: %d", p.code)
	}
}

func TestTheMonthPageDrawsTheUsagePerDayAsTheUsageAPICountsIt(t *testing.T) {
	e := newEnv(t)
	b := e.browser(t)
	b.signIn(caamiToken)
	home := b.do("GET", "/portal/caami/", nil)
	// The worked example's CPU: every day of November so far has usage;
	// the 2nd's figure, in vCPU-hours, is the store's sum of that day.
	rows, err := e.usage.QueryUsage(context.Background(), metering.UsageQuery{
		UsageFilter: metering.UsageFilter{Tenant: "caami", From: time.Date(2026, 11, 2, 0, 0, 0, 0, billingtest.Brussels()),
			To: time.Date(2026, 11, 3, 0, 0, 0, 0, billingtest.Brussels()), Meters: []usage.Meter{usage.MeterCPU}},
		GroupBy: []metering.Dimension{metering.ByDay}, Location: billingtest.Brussels()})
	if err != nil || len(rows) != 1 {
		t.Fatalf("the usage of 2 November: %v, %+v", err, rows)
	}
	want := new(big.Rat).SetFrac(rows[0].Quantity.Big(), big.NewInt(3600*1_000_000_000)).FloatString(2)
	for _, s := range []string{`<figcaption id="chart-cpu">CPU used · vCPU-hour`, "<title>2026-11-02: " + locale.English.Number(want) + "</title>",
		`<svg viewBox="0 0 100 40"`, `aria-labelledby="chart-memory"`} {
		if !strings.Contains(home.body, s) {
			t.Errorf("the month page has no %q", s)
		}
	}
	// 1 to 20 November so far: twenty bars a chart.
	if n := strings.Count(home.body, "<rect "); n != 4*20 {
		t.Errorf("%d bars, want 4 charts of 20 days (1 to 20 November)", n)
	}
}
