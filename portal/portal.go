// Package portal is the institutions' web portal, served by the collector
// under /portal/: what their month comes to so far and their invoices, in
// English, French or Dutch, as pages rendered on the server (html/template,
// no script).
//
// People sign in with their institution's API token; the portal then keeps
// a session in the collector's memory (an HttpOnly, SameSite=Strict cookie
// holding a random id, Secure over TLS) and never the token. Every form
// carries the session's CSRF token, and the sign-in form a token of its own
// cookie. A page of an institution is served only to a session whose
// principal may read it (auth.Principal.CanRead, the API's own check);
// another's is answered as a page that does not exist. Operators' tokens do
// not sign in here: their reads of institutions' data are audited through
// the API.
//
// The figures are the API's: the cost so far is billinghttp.Costs', the
// invoices billinghttp's reader and downloads.
package portal

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/memo"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/locale"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/slahttp"
	"github.com/paasmeter/paasmeter/state"
)

// Prefix is where the collector serves the portal.
const Prefix = "/portal/"

// Options are what the portal is built from.
type Options struct {
	// Auth checks the tokens people sign in with.
	Auth *auth.Authenticator
	// OIDC, if set (validated: Config.Validate), signs people in with an
	// OpenID Connect provider too.
	OIDC *OIDCConfig
	// Institutions are the platform's; a page of any other is not found.
	Institutions institution.Directory
	// Costs and Invoices serve the figures (the API's); without them the
	// pages say that the platform does not bill.
	Costs    *billinghttp.Costs
	Invoices billinghttp.InvoiceReader
	// SLA, if set, serves the availability pages: the API's reports.
	SLA slahttp.SLAReports
	// Usage, if set, draws the month's usage per day.
	Usage metering.UsageReader
	// Location is the platform's time zone (default UTC).
	Location *time.Location
	// SessionTTL is how long a session lasts after sign-in (default 8h),
	// SessionIdle how long without a page (default 30m). MaxSessions bounds
	// the sessions kept (default 10,000), MaxSessionsEach those of one
	// principal (default 20); a sign-in beyond ends the oldest.
	SessionTTL, SessionIdle      time.Duration
	MaxSessions, MaxSessionsEach int
	// Clock and Logger default to the system's.
	Clock  clock.Clock
	Logger *slog.Logger
}

// Portal serves the pages.
type Portal struct {
	o        Options
	loc      *time.Location
	clock    clock.Clock
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	// provider is Options.OIDC's, nil without one.
	provider *provider
	// reports and charts keep the SLA reports and usage charts the pages
	// show, as Costs keeps costs.
	reports *memo.Memo[*sla.Report]
	charts  *memo.Memo[[]chart]
}

//go:embed templates static
var files embed.FS

// The cookies.
const (
	sessionCookie = "paasmeter_session"
	loginCookie   = "paasmeter_login"
)

// New builds the portal.
func New(o Options) (*Portal, error) {
	if o.Auth == nil {
		return nil, errors.New("portal: an authenticator is required")
	}
	p := &Portal{o: o, loc: cmp.Or(o.Location, time.UTC), clock: cmp.Or[clock.Clock](o.Clock, clock.System{}),
		log: cmp.Or(o.Logger, slog.Default()),
		sessions: &sessions{byID: map[string]*session{}, ttl: cmp.Or(o.SessionTTL, 8*time.Hour), idle: cmp.Or(o.SessionIdle, 30*time.Minute),
			limit: cmp.Or(o.MaxSessions, 10_000), perPr: cmp.Or(o.MaxSessionsEach, 20)},
		pages: map[string]*template.Template{}}
	// An SLA report reads a month of probe results: once a minute per
	// institution and month at most, two at once.
	p.reports = memo.New[*sla.Report](2, time.Minute, 2*time.Minute, 1000, p.clock)
	p.charts = memo.New[[]chart](2, time.Minute, 2*time.Minute, 1000, p.clock)
	if o.OIDC != nil {
		p.provider = newProvider(*o.OIDC)
	}
	for _, page := range []string{"login", "home", "invoices", "sla", "message", "continue"} {
		tmpl, err := template.New("layout.html").Funcs(template.FuncMap{
			"t": t,
			"money": func(l locale.Lang, m billing.Money, currency string) string {
				return l.Money(m.StringFixed(2), currency)
			},
			// Dates are the platform's calendar days.
			"date": func(l locale.Lang, at time.Time) string { return l.Date(at.In(p.loc)) },
			"when": func(l locale.Lang, at time.Time) string {
				return l.Date(at.In(p.loc)) + " " + at.In(p.loc).Format("15:04")
			},
			"count":   func(l locale.Lang, n int64) string { return l.Number(fmt.Sprint(n)) },
			"number":  func(l locale.Lang, s string) string { return l.Number(s) },
			"percent": func(l locale.Lang, d decimal.Decimal) string { return l.Number(d.String()) + l.PercentSign() },
			"day": func(l locale.Lang, s string) string {
				d, err := time.Parse(time.DateOnly, s)
				if err != nil {
					return s
				}
				return l.Date(d)
			},
			"month": func(l locale.Lang, s string) string {
				m, err := time.Parse("2006-01", s)
				if err != nil {
					return s
				}
				return l.Month(m)
			},
		}).ParseFS(files, "templates/layout.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("portal: template %s: %w", page, err)
		}
		p.pages[page] = tmpl
	}
	return p, nil
}

// Handler serves the portal's paths, all under Prefix.
func (p *Portal) Handler() http.Handler {
	mux := http.NewServeMux()
	// "_" is in no institution's id (a DNS label): the portal's own file.
	mux.HandleFunc("GET /portal/_/portal.css", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "static/portal.css")
	})
	mux.HandleFunc("GET /portal/login", p.loginForm)
	mux.HandleFunc("POST /portal/login", p.login)
	mux.HandleFunc("POST /portal/logout", p.signedIn(p.logout))
	if p.provider != nil {
		mux.HandleFunc("GET /portal/oidc/start", p.oidcStart)
		mux.HandleFunc("GET /portal/oidc/callback", p.oidcCallback)
	}
	mux.HandleFunc("GET /portal/{$}", p.signedIn(p.root))
	mux.HandleFunc("GET /portal/{tenant}/{$}", p.signedIn(p.tenantPage(p.home)))
	mux.HandleFunc("GET /portal/{tenant}/sla", p.signedIn(p.tenantPage(p.availability)))
	mux.HandleFunc("GET /portal/{tenant}/invoices", p.signedIn(p.tenantPage(p.finance(p.invoices))))
	mux.HandleFunc("GET /portal/{tenant}/invoices/{file}", p.signedIn(p.tenantPage(p.finance(p.download))))
	mux.HandleFunc("/", p.notFound)
	return securityHeaders(mux)
}

// securityHeaders sets what every answer of the portal carries: no framing,
// no script, no resource from elsewhere, no referrer, no caching of pages
// that show an institution's figures.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		if !strings.HasPrefix(r.URL.Path, "/portal/_/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// view is what every page's template gets.
type view struct {
	Lang  locale.Lang
	Langs []locale.Lang
	// Path is the page's path, for the language links.
	Path   string
	Tenant string
	Name   string
	CSRF   string
	Error  string
	// Finance says the session may see the invoices; IdP names the
	// OpenID Connect provider on the sign-in page ("" without one).
	Finance bool
	IdP     string
	Data    any
}

func (p *Portal) render(w http.ResponseWriter, r *http.Request, status int, page string, v view) {
	v.Lang = langOf(w, r)
	v.Langs, v.Path = locale.Langs(), r.URL.Path
	if v.Tenant != "" {
		v.Name = v.Tenant
		for _, i := range p.o.Institutions {
			if i.ID == v.Tenant && i.Name != "" {
				v.Name = i.Name
			}
		}
	}
	var b strings.Builder
	if err := p.pages[page].Execute(&b, v); err != nil {
		p.log.Error("portal page failed", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String())) // the status is sent; a failed write means the client left
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request) {
	p.render(w, r, http.StatusNotFound, "message", view{Error: "not found"})
}

// cookie is a portal cookie: HttpOnly, SameSite=Strict, Secure (see
// secure). maxAge 0 is a cookie of the browser's session, -1 deletes it.
func cookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: Prefix, MaxAge: maxAge, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode}
}

// secure says whether r's cookies are Secure: always, but for plain HTTP to
// a loopback address (make run, the tests). A collector behind a proxy that
// ends TLS (an OpenShift edge route) hears plain HTTP for a public name:
// its cookies must still never travel without TLS.
func secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	return !tlsconf.IsLoopbackHost(host)
}

// loginForm is GET /portal/login: the token form, with a CSRF token kept in
// a cookie of its own, since there is no session yet.
func (p *Portal) loginForm(w http.ResponseWriter, r *http.Request) {
	p.showLogin(w, r, http.StatusOK, "")
}

func (p *Portal) showLogin(w http.ResponseWriter, r *http.Request, status int, problem string) {
	token := randomID()
	http.SetCookie(w, cookie(r, loginCookie, token, 3600))
	v := view{CSRF: token, Error: problem}
	if p.provider != nil {
		v.IdP = p.provider.cfg.Name
	}
	p.render(w, r, status, "login", v)
}

// maxForm bounds a form's body: a token and a CSRF token.
const maxForm = 4 << 10

// login is POST /portal/login: an institution's token opens a session.
func (p *Portal) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		p.showLogin(w, r, http.StatusBadRequest, "expired form")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(c.Value, r.PostFormValue("csrf")) {
		p.showLogin(w, r, http.StatusForbidden, "expired form")
		return
	}
	check, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, Prefix, nil)
	check.Header.Set("Authorization", "Bearer "+strings.TrimSpace(r.PostFormValue("token")))
	principal, err := p.o.Auth.Authenticate(check)
	if err != nil || principal.Role != auth.RoleInstitution {
		p.log.Info("portal sign-in refused", "remote", r.RemoteAddr, "role", string(principal.Role))
		p.showLogin(w, r, http.StatusUnauthorized, "bad token")
		return
	}
	p.startSession(w, r, principal, RoleFinance)
}

// startSession signs principal in with its portal role and sends them to
// their institution's page.
func (p *Portal) startSession(w http.ResponseWriter, r *http.Request, principal auth.Principal, role string) {
	id, _ := p.sessions.start(principal, role, p.clock.Now())
	p.log.Info("portal sign-in", "principal", principal.Name, "tenant", principal.Tenant, "role", role, "remote", r.RemoteAddr)
	http.SetCookie(w, cookie(r, loginCookie, "", -1))
	// A cookie of the browser's session: closing the browser signs out.
	http.SetCookie(w, cookie(r, sessionCookie, id, 0))
	home := Prefix + url.PathEscape(principal.Tenant) + "/"
	if r.Method == http.MethodPost {
		http.Redirect(w, r, home, http.StatusSeeOther)
		return
	}
	// Back from the identity provider: a redirect now would still be part
	// of its site's navigation, on which the browser does not send the
	// SameSite=Strict session cookie; a page of ours that moves on does.
	p.render(w, r, http.StatusOK, "continue", view{Data: home})
}

// logout is POST /portal/logout: the session ends.
func (p *Portal) logout(w http.ResponseWriter, r *http.Request, s *session) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil || !sameToken(s.csrf, r.PostFormValue("csrf")) {
		p.render(w, r, http.StatusForbidden, "message", view{Error: "expired form"})
		return
	}
	p.sessions.end(s.id)
	http.SetCookie(w, cookie(r, sessionCookie, "", -1))
	http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
}

// signedIn passes the request's session to h, or sends the person to sign in.
func (p *Portal) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		s, ok := p.sessions.get(c.Value, p.clock.Now())
		if !ok {
			http.SetCookie(w, cookie(r, sessionCookie, "", -1))
			http.Redirect(w, r, Prefix+"login", http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

// root is GET /portal/: the session's institution.
func (p *Portal) root(w http.ResponseWriter, r *http.Request, s *session) {
	http.Redirect(w, r, Prefix+url.PathEscape(s.principal.Tenant)+"/", http.StatusSeeOther)
}

// tenantPage serves h only for an institution of the platform the session
// may read; any other is not found, as a page that does not exist.
func (p *Portal) tenantPage(h func(http.ResponseWriter, *http.Request, *session, string)) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		tenant := r.PathValue("tenant")
		if !p.o.Institutions.Has(tenant) || !s.principal.CanRead(tenant) {
			p.notFound(w, r)
			return
		}
		h(w, r, s, tenant)
	}
}

// finance serves h only to sessions of the finance role; a viewer is
// answered as a page that does not exist.
func (p *Portal) finance(h func(http.ResponseWriter, *http.Request, *session, string)) func(http.ResponseWriter, *http.Request, *session, string) {
	return func(w http.ResponseWriter, r *http.Request, s *session, tenant string) {
		if s.role != RoleFinance {
			p.notFound(w, r)
			return
		}
		h(w, r, s, tenant)
	}
}

// homeData is the month-so-far page's.
type homeData struct {
	Cost   *billinghttp.CostResponse
	Charts []chart
}

// home is GET /portal/{tenant}/: the current month so far.
func (p *Portal) home(w http.ResponseWriter, r *http.Request, s *session, tenant string) {
	v := view{Tenant: tenant, CSRF: s.csrf, Finance: s.role == RoleFinance}
	if p.o.Costs == nil {
		v.Error = "no billing"
		p.render(w, r, http.StatusOK, "home", v)
		return
	}
	month := calendar.MonthOf(p.clock.Now(), p.loc)
	cost, err := p.o.Costs.Cost(r.Context(), tenant, month)
	if err != nil {
		status, _ := billinghttp.CostError(err, month)
		if status >= 500 && r.Context().Err() == nil {
			p.log.Error("portal: cost so far failed", "tenant", tenant, "err", err)
		}
		v.Error = "unavailable"
		p.render(w, r, status, "home", v)
		return
	}
	data := homeData{Cost: cost}
	if p.o.Usage != nil {
		data.Charts, err = p.charts.Get(r.Context(), tenant+" "+month.String(), func(ctx context.Context) ([]chart, error) {
			return p.usagePerDay(ctx, tenant, month, p.clock.Now())
		})
		if err != nil {
			p.log.Warn("portal: usage per day unavailable", "tenant", tenant, "err", err) // the figures above stand
		}
	}
	v.Data = data
	p.render(w, r, http.StatusOK, "home", v)
}

// slaData is the availability page's.
type slaData struct {
	Report *sla.Report
	// Months are the months the page links to, newest first.
	Months []string
}

// availability is GET /portal/{tenant}/sla?month=YYYY-MM: the month's
// availability per production app, its down minutes by cause, its
// maintenance windows and its credit.
func (p *Portal) availability(w http.ResponseWriter, r *http.Request, s *session, tenant string) {
	v := view{Tenant: tenant, CSRF: s.csrf, Finance: s.role == RoleFinance}
	now := p.clock.Now()
	var months []string
	for m, i := calendar.MonthOf(now, p.loc), 0; i < 6; m, i = calendar.MonthOf(m.Start().Add(-time.Hour), p.loc), i+1 {
		months = append(months, m.String())
	}
	// The page's own months only: each is a month of probe results to read.
	month := calendar.MonthOf(now, p.loc)
	if q := r.URL.Query().Get("month"); q != "" {
		if !slices.Contains(months, q) {
			p.notFound(w, r)
			return
		}
		month, _ = calendar.Parse(q, p.loc) // one of months
	}
	if p.o.SLA == nil {
		v.Error = "no sla"
		p.render(w, r, http.StatusOK, "sla", v)
		return
	}
	rep, err := p.reports.Get(r.Context(), tenant+" "+month.String(), func(ctx context.Context) (*sla.Report, error) {
		rep, _, err := p.o.SLA.Report(ctx, tenant, month)
		return rep, err
	})
	if err != nil {
		if r.Context().Err() == nil {
			p.log.Error("portal: SLA report failed", "tenant", tenant, "month", month.String(), "err", err)
		}
		v.Error = "unavailable"
		p.render(w, r, http.StatusServiceUnavailable, "sla", v)
		return
	}
	v.Data = slaData{Report: rep, Months: months}
	p.render(w, r, http.StatusOK, "sla", v)
}

// document is one issued document in the invoices page.
type document struct {
	Inv   *billing.Invoice
	Links []link
}

type link struct{ Format, Href string }

// invoices is GET /portal/{tenant}/invoices: the issued documents, newest first.
func (p *Portal) invoices(w http.ResponseWriter, r *http.Request, s *session, tenant string) {
	v := view{Tenant: tenant, CSRF: s.csrf, Finance: true}
	if p.o.Invoices == nil {
		v.Error = "no billing"
		p.render(w, r, http.StatusOK, "invoices", v)
		return
	}
	invs, err := p.o.Invoices.List(r.Context(), state.DocumentFilter{Tenant: tenant})
	if err != nil {
		p.log.Error("portal: invoice list failed", "tenant", tenant, "err", err)
		v.Error = "unavailable"
		p.render(w, r, http.StatusServiceUnavailable, "invoices", v)
		return
	}
	slices.SortStableFunc(invs, func(a, b *billing.Invoice) int { return cmp.Compare(b.IssueDate, a.IssueDate) })
	var docs []document
	for _, inv := range invs {
		d := document{Inv: inv}
		for _, f := range export.Formats() {
			d.Links = append(d.Links, link{Format: f, Href: Prefix + url.PathEscape(tenant) + "/invoices/" + url.PathEscape(export.FileName(inv, f))})
		}
		docs = append(docs, d)
	}
	v.Data = docs
	p.render(w, r, http.StatusOK, "invoices", v)
}

// download is GET /portal/{tenant}/invoices/{file}: the API's download.
func (p *Portal) download(w http.ResponseWriter, r *http.Request, _ *session, tenant string) {
	if p.o.Invoices == nil {
		p.notFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	billinghttp.ServeDocument(ctx, w, p.o.Invoices, p.log, tenant, r.PathValue("file"))
}
