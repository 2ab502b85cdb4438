package portal_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/locale"
	"github.com/paasmeter/paasmeter/portal"
)

// The identity provider's people: each with the claims it asserts.
var people = map[string]map[string]any{
	"claire": {"paasmeter_institution": "caami", "paasmeter_role": "finance"},
	"victor": {"paasmeter_institution": "ona", "paasmeter_role": "viewer"},
	"nadia":  {}, // no institution: an account of the provider that is no institution's
	"oscar":  {"paasmeter_institution": "elsewhere", "paasmeter_role": "finance"},
	"rita":   {"paasmeter_institution": "caami", "paasmeter_role": "admin"},
}

const personPassword = "correct horse battery staple"

// people is zitadel's example user store with the people above.
type idpUsers struct{}

func (idpUsers) GetUserByID(id string) *storage.User {
	if _, ok := people[id]; !ok {
		return nil
	}
	return &storage.User{ID: id, Username: id, Password: personPassword, FirstName: id, EmailVerified: true}
}

func (u idpUsers) GetUserByUsername(name string) *storage.User { return u.GetUserByID(name) }

func (idpUsers) ExampleClientID() string { return "service" }

// idpStorage is zitadel's example storage, asserting each person's claims
// in their ID token.
type idpStorage struct {
	*storage.Storage
}

func (s idpStorage) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, userID, clientID string, scopes []string) error {
	if err := s.Storage.SetUserinfoFromScopes(ctx, info, userID, clientID, scopes); err != nil {
		return err
	}
	for k, v := range people[userID] {
		info.AppendClaims(k, v)
	}
	return nil
}

// withIdP starts a real OpenID Connect provider (zitadel/oidc's example
// OP) on loopback and points the portal at it.
func withIdP(t *testing.T) func(*portal.Options, string) {
	return func(o *portal.Options, portalURL string) {
		t.Helper()
		idp := httptest.NewUnstartedServer(nil)
		issuer := "http://" + idp.Listener.Addr().String()
		clients := map[string]*storage.Client{"paasmeter": storage.WebClient("paasmeter", "s3cret", portalURL+"/portal/oidc/callback")}
		idp.Config.Handler = exampleop.SetupServer(issuer, idpStorage{storage.NewStorageWithClients(idpUsers{}, clients)}, nil, false)
		idp.Start()
		t.Cleanup(idp.Close)
		secret := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := portal.Config{OIDC: &portal.OIDCConfig{Issuer: issuer, Name: "Test IdP", ClientID: "paasmeter", ClientSecretFile: secret,
			RedirectURL: portalURL + "/portal/oidc/callback"}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		o.OIDC = cfg.OIDC
	}
}

var idpRequestID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// signInWithIdP goes through the provider's sign-in as person and returns
// the portal's last answer.
func (b *browser) signInWithIdP(person string) page {
	b.t.Helper()
	return b.throughIdP(person, nil)
}

// throughIdP is signInWithIdP; stop, if set, ends the journey at the first
// redirect it says so of.
func (b *browser) throughIdP(person string, stop func(*http.Request) bool) page {
	b.t.Helper()
	follow := *b.client
	follow.CheckRedirect = func(req *http.Request, _ []*http.Request) error { // through the provider and back, as a browser goes
		if stop != nil && stop(req) {
			return http.ErrUseLastResponse
		}
		return nil
	}
	form := b.do("GET", "/portal/login", nil)
	if !strings.Contains(form.body, "Sign in with Test IdP") {
		b.t.Fatalf("the sign-in page offers no provider:\n%s", form.body)
	}
	resp, err := follow.Get(b.e.srv.URL + "/portal/oidc/start")
	if err != nil {
		b.t.Fatal(err)
	}
	resp.Body.Close()
	login := resp.Request.URL // the provider's login page
	raw := readAll(b.t, &follow, "GET", login.String(), nil)
	m := idpRequestID.FindStringSubmatch(raw)
	if m == nil {
		b.t.Fatalf("the provider's login page at %s has no request id:\n%s", login, raw)
	}
	resp, err = follow.PostForm(login.Scheme+"://"+login.Host+"/login/username", url.Values{"id": {m[1]}, "username": {person}, "password": {personPassword}})
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body := readAll(b.t, nil, "", "", resp)
	return page{resp.StatusCode, resp.Header, body}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func readAll(t *testing.T, c *http.Client, method, url string, resp *http.Response) string {
	t.Helper()
	if resp == nil {
		req, err := http.NewRequest(method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err = c.Do(req); err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPeopleSignInWithTheInstitutionsIdentityProvider(t *testing.T) {
	e := newEnv(t, withIdP(t))

	t.Run("a finance officer sees the month so far and the invoices", func(t *testing.T) {
		b := e.browser(t)
		landing := b.signInWithIdP("claire")
		if landing.code != http.StatusOK || !strings.Contains(landing.body, `http-equiv="refresh" content="0; url=/portal/caami/"`) {
			t.Fatalf("back from the provider: %d\n%s", landing.code, landing.body)
		}
		home := b.do("GET", "/portal/caami/", nil)
		want := locale.English.Money(e.draftPayable(t, "caami").StringFixed(2), "EUR")
		if home.code != http.StatusOK || !strings.Contains(home.body, `<dd id="payable">`+want+`</dd>`) || !strings.Contains(home.body, `/portal/caami/invoices`) {
			t.Fatalf("claire's month so far: %d\n%s", home.code, home.body)
		}
		if p := b.do("GET", "/portal/caami/invoices", nil); p.code != http.StatusOK {
			t.Errorf("claire's invoices: %d", p.code)
		}
		if p := b.do("GET", "/portal/ona/", nil); p.code != http.StatusNotFound {
			t.Errorf("claire asking for ona's page: %d", p.code)
		}
	})
	t.Run("a viewer sees the month so far but not the invoices", func(t *testing.T) {
		b := e.browser(t)
		b.signInWithIdP("victor")
		home := b.do("GET", "/portal/ona/", nil)
		if home.code != http.StatusOK || strings.Contains(home.body, "/portal/ona/invoices") {
			t.Fatalf("victor's month so far: %d, want it without the invoices link\n%s", home.code, home.body)
		}
		for _, path := range []string{"/portal/ona/invoices", "/portal/ona/invoices/PM-2026-000002.pdf"} {
			if p := b.do("GET", path, nil); p.code != http.StatusNotFound {
				t.Errorf("victor asking for %s: %d, want 404", path, p.code)
			}
		}
	})
	for person, why := range map[string]string{"nadia": "no institution", "oscar": "an institution of no platform's", "rita": "a role the portal does not know"} {
		t.Run("an account with "+why+" is refused", func(t *testing.T) {
			b := e.browser(t)
			p := b.signInWithIdP(person)
			if p.code != http.StatusForbidden || !strings.Contains(p.body, "not linked to an institution") {
				t.Errorf("%s: %d\n%s", person, p.code, p.body)
			}
			if home := b.do("GET", "/portal/caami/", nil); home.code != http.StatusSeeOther {
				t.Errorf("%s: then a page answers %d, want the sign-in", person, home.code)
			}
		})
	}
	t.Run("an ID token minted for another sign-in's nonce is refused", func(t *testing.T) {
		// Claire's browser goes to the provider and back, but stops before
		// the portal's callback: the answer, and its sign-in cookie.
		a := e.browser(t)
		answer := a.throughIdP("claire", func(r *http.Request) bool { return r.URL.Path == "/portal/oidc/callback" })
		callback := answer.header.Get("Location")
		var flow string
		for _, c := range a.client.Jar.Cookies(mustURL(t, e.srv.URL+"/portal/oidc/")) {
			if c.Name == "paasmeter_oidc" {
				flow = c.Value
			}
		}
		state, rest, _ := strings.Cut(flow, ".")
		_, verifier, _ := strings.Cut(rest, ".")
		if callback == "" || state == "" || verifier == "" {
			t.Fatalf("no callback (%q) or sign-in cookie (%q)", callback, flow)
		}
		// Another browser holds the same state and verifier but its own
		// nonce: the code is exchanged, and the ID token's nonce is not its.
		b := e.browser(t)
		b.client.Jar.SetCookies(mustURL(t, e.srv.URL+"/portal/oidc/"), []*http.Cookie{{Name: "paasmeter_oidc", Value: state + ".another-nonce." + verifier, Path: "/portal/oidc/"}})
		u := mustURL(t, callback)
		if p := b.do("GET", u.Path+"?"+u.RawQuery, nil); p.code != http.StatusUnauthorized {
			t.Errorf("a callback with another nonce: %d\n%s", p.code, p.body)
		}
		if home := b.do("GET", "/portal/caami/", nil); home.code != http.StatusSeeOther {
			t.Errorf("then caami's page answers %d, want the sign-in", home.code)
		}
	})
	t.Run("a viewer does not see the number of last month's invoice", func(t *testing.T) {
		e.clock.Set(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)) // after November's grace period
		res, err := e.svc.Issue(context.Background(), billingtest.Period(), nil, "test", nil)
		if err != nil || len(res) != 2 {
			t.Fatalf("issuing November: %v, %d invoices", err, len(res))
		}
		b := e.browser(t)
		b.signInWithIdP("victor")
		home := b.do("GET", "/portal/ona/", nil)
		if home.code != http.StatusOK || strings.Contains(home.body, "PM-2026-") || !strings.Contains(home.body, "November 2026") {
			t.Errorf("victor's December: %d, want last month without its invoice's number\n%s", home.code, home.body)
		}
		c := e.browser(t)
		c.signInWithIdP("claire")
		if home := c.do("GET", "/portal/caami/", nil); !strings.Contains(home.body, "PM-2026-") {
			t.Errorf("claire (finance) does not see last month's invoice number:\n%s", home.body)
		}
	})
	t.Run("a callback that is not the answer to this browser's sign-in is refused", func(t *testing.T) {
		b := e.browser(t)
		if p := b.do("GET", "/portal/oidc/callback?code=x&state=y", nil); p.code != http.StatusBadRequest {
			t.Errorf("a callback without a sign-in in progress: %d", p.code)
		}
		// Another browser's answer, replayed here, meets this browser's state.
		start := b.do("GET", "/portal/oidc/start", nil)
		if start.code != http.StatusSeeOther {
			t.Fatalf("start: %d", start.code)
		}
		if p := b.do("GET", "/portal/oidc/callback?code=x&state=forged", nil); p.code != http.StatusBadRequest {
			t.Errorf("a callback with another state: %d", p.code)
		}
	})
}
