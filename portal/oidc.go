package portal

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
)

// Config is the portal's part of the configuration (portal).
type Config struct {
	// OIDC, when set, signs people in with the institutions' identity
	// provider; the institution token form stays as the fallback.
	OIDC *OIDCConfig `yaml:"oidc"`
}

// OIDCConfig is an OpenID Connect provider the portal signs people in with.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL (its discovery document is
	// Issuer/.well-known/openid-configuration).
	Issuer string `yaml:"issuer"`
	// Name is what the sign-in button calls it ("CSAM", "IRISbox").
	Name string `yaml:"name"`
	// ClientID and ClientSecretFile are the portal's registration with the
	// provider; the file holds the secret alone.
	ClientID         string `yaml:"client_id"`
	ClientSecretFile string `yaml:"client_secret_file"`
	// RedirectURL is the portal's callback as registered with the
	// provider: https://<collector>/portal/oidc/callback.
	RedirectURL string `yaml:"redirect_url"`
	// InstitutionClaim names the ID token claim that holds the person's
	// institution (its tenant id), RoleClaim the one that holds their
	// portal role: viewer or finance.
	InstitutionClaim string `yaml:"institution_claim"`
	RoleClaim        string `yaml:"role_claim"`
}

// The portal's roles. A viewer sees the institution's usage and cost so
// far; finance sees its invoices too. An institution's API token signs in
// as finance: it reads every figure through the API anyway.
const (
	RoleViewer  = "viewer"
	RoleFinance = "finance"
)

// Validate reports what is wrong with c, naming each field, and fills the
// claims' defaults.
func (c *Config) Validate() error {
	if c.OIDC == nil {
		return nil
	}
	o := c.OIDC
	var errs []error
	if u, err := url.Parse(o.Issuer); err != nil || !httpsOrLoopback(u) {
		errs = append(errs, fmt.Errorf("portal.oidc.issuer: %q must be the provider's https issuer URL (http only on loopback)", o.Issuer))
	}
	if o.ClientID == "" {
		errs = append(errs, errors.New("portal.oidc.client_id: is required"))
	}
	if o.ClientSecretFile == "" {
		errs = append(errs, errors.New("portal.oidc.client_secret_file: is required (a file holding the client secret)"))
	}
	if u, err := url.Parse(o.RedirectURL); err != nil || !httpsOrLoopback(u) || u.Path != Prefix+"oidc/callback" {
		errs = append(errs, fmt.Errorf("portal.oidc.redirect_url: %q must be the collector's https URL of %soidc/callback (http only on loopback)", o.RedirectURL, Prefix))
	}
	if o.InstitutionClaim == "" {
		o.InstitutionClaim = "paasmeter_institution"
	}
	if o.RoleClaim == "" {
		o.RoleClaim = "paasmeter_role"
	}
	if o.Name == "" {
		o.Name = "OpenID Connect"
	}
	return errors.Join(errs...)
}

// httpsOrLoopback says whether u is an https URL, or an http one of a
// loopback host (tests, a provider on the same machine).
func httpsOrLoopback(u *url.URL) bool {
	switch {
	case u.Host == "":
		return false
	case u.Scheme == "https":
		return true
	case u.Scheme != "http":
		return false
	}
	return tlsconf.IsLoopbackHost(u.Hostname())
}

// provider is the configured OpenID Connect provider, discovered on first
// use: a provider that is down when the collector starts does not stop it.
// A failed discovery is remembered for discoveryBackoff, so that sign-ins
// while it is down do not each wait for it in turn.
type provider struct {
	cfg OIDCConfig
	// lock is a mutex a request can stop waiting for.
	lock     chan struct{}
	oidc     *oidc.Provider
	oauth2   oauth2.Config
	failed   error
	failedAt time.Time
}

const discoveryBackoff = 30 * time.Second

func newProvider(cfg OIDCConfig) *provider {
	return &provider{cfg: cfg, lock: make(chan struct{}, 1)}
}

// get discovers the provider unless it already did.
func (p *provider) get(ctx context.Context) (*oidc.Provider, oauth2.Config, error) {
	select {
	case p.lock <- struct{}{}:
		defer func() { <-p.lock }()
	case <-ctx.Done():
		return nil, oauth2.Config{}, ctx.Err()
	}
	if p.oidc != nil {
		return p.oidc, p.oauth2, nil
	}
	if p.failed != nil && time.Since(p.failedAt) < discoveryBackoff {
		return nil, oauth2.Config{}, p.failed
	}
	op, conf, err := p.discover(ctx)
	if err != nil {
		p.failed, p.failedAt = err, time.Now()
		return nil, oauth2.Config{}, err
	}
	p.oidc, p.oauth2, p.failed = op, conf, nil
	return op, conf, nil
}

func (p *provider) discover(ctx context.Context) (*oidc.Provider, oauth2.Config, error) {
	secret, err := os.ReadFile(p.cfg.ClientSecretFile)
	if err != nil {
		return nil, oauth2.Config{}, fmt.Errorf("portal.oidc.client_secret_file: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	op, err := oidc.NewProvider(ctx, p.cfg.Issuer)
	if err != nil {
		return nil, oauth2.Config{}, fmt.Errorf("discovering %s: %w", p.cfg.Issuer, err)
	}
	endpoint := op.Endpoint()
	// client_secret_basic, OpenID Connect's default: said once, so that
	// a refused exchange is not tried again the other way.
	endpoint.AuthStyle = oauth2.AuthStyleInHeader
	return op, oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: strings.TrimSpace(string(secret)), Endpoint: endpoint,
		RedirectURL: p.cfg.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "profile"}}, nil
}

// flowCookie holds a sign-in's state, nonce and PKCE verifier between the
// portal and the provider. It is SameSite=Lax: the provider's redirect back
// is a navigation from its site, on which a Strict cookie is not sent.
const flowCookie = "paasmeter_oidc"

// oidcStart is GET /portal/oidc/start: off to the provider. It is a link,
// not a form: the policy's form-action 'self' would stop a form's redirect
// to the provider, and starting a sign-in changes nothing here: only the
// browser that holds the sign-in cookie set now can finish it.
func (p *Portal) oidcStart(w http.ResponseWriter, r *http.Request) {
	_, conf, err := p.provider.get(r.Context())
	if err != nil {
		p.log.Error("portal: the identity provider is unavailable", "err", err)
		p.showLogin(w, r, http.StatusServiceUnavailable, "idp unavailable")
		return
	}
	state, nonce, verifier := randomID(), randomID(), oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Value: state + "." + nonce + "." + verifier, Path: Prefix + "oidc/", MaxAge: 600,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, conf.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), http.StatusSeeOther)
}

// oidcCallback is GET /portal/oidc/callback: the provider's answer.
func (p *Portal) oidcCallback(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, why string, args ...any) {
		p.log.Info("portal: OpenID Connect sign-in refused", append([]any{"why", why, "remote", r.RemoteAddr}, args...)...)
		p.showLogin(w, r, status, "idp refused")
	}
	c, err := r.Cookie(flowCookie)
	if err != nil {
		refuse(http.StatusBadRequest, "no sign-in in progress")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookie, Path: Prefix + "oidc/", MaxAge: -1, HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteLaxMode})
	parts := strings.Split(c.Value, ".")
	q := r.URL.Query()
	if len(parts) != 3 || !sameToken(parts[0], q.Get("state")) {
		refuse(http.StatusBadRequest, "state mismatch")
		return
	}
	if e := q.Get("error"); e != "" {
		refuse(http.StatusUnauthorized, "the provider refused", "error", batch.Truncate(e))
		return
	}
	op, conf, err := p.provider.get(r.Context())
	if err != nil {
		p.log.Error("portal: the identity provider is unavailable", "err", err)
		p.showLogin(w, r, http.StatusServiceUnavailable, "idp unavailable")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(parts[2]))
	if err != nil {
		refuse(http.StatusUnauthorized, "code exchange failed", "err", err)
		return
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok {
		refuse(http.StatusUnauthorized, "no id_token")
		return
	}
	idt, err := op.Verifier(&oidc.Config{ClientID: conf.ClientID, Now: p.clock.Now}).Verify(ctx, raw)
	if err != nil {
		refuse(http.StatusUnauthorized, "invalid id_token", "err", err)
		return
	}
	if !sameToken(idt.Nonce, parts[1]) {
		refuse(http.StatusUnauthorized, "nonce mismatch")
		return
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		refuse(http.StatusUnauthorized, "unreadable claims", "err", err)
		return
	}
	tenant, _ := claims[p.provider.cfg.InstitutionClaim].(string)
	role, _ := claims[p.provider.cfg.RoleClaim].(string)
	if !p.o.Institutions.Has(tenant) || (role != RoleViewer && role != RoleFinance) {
		refuse(http.StatusForbidden, "no institution or role", "subject", idt.Subject, "institution", tenant, "role", role)
		return
	}
	principal := auth.Principal{Name: "oidc:" + idt.Subject, Role: auth.RoleInstitution, Tenant: tenant}
	p.startSession(w, r, principal, role)
}
