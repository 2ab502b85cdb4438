package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/collector/auth"
)

func TestAuthenticate(t *testing.T) {
	agent, inst := auth.New(), auth.New()
	changed := agent[:len(agent)-1] + "x"
	if changed == agent {
		changed = agent[:len(agent)-1] + "y"
	}
	a, err := auth.NewAuthenticator([]auth.TokenConfig{
		{Name: "agent", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami"}, SHA256: auth.Hash(agent)},
		{Name: "caami", Role: auth.RoleInstitution, Tenant: "caami", SHA256: auth.Hash(inst)},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		header string
		want   string
		err    error
	}{
		"an agent token identifies its node":        {"Bearer " + agent, "agent", nil},
		"the scheme is case-insensitive":            {"bearer " + inst, "caami", nil},
		"a missing header is no token":              {"", "", auth.ErrNoToken},
		"basic auth is no token":                    {"Basic " + agent, "", auth.ErrNoToken},
		"the hash itself is not a token":            {"Bearer " + auth.Hash(agent), "", auth.ErrBadToken},
		"a token with a changed character is wrong": {"Bearer " + changed, "", auth.ErrBadToken},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			p, err := a.Authenticate(r)
			if !errors.Is(err, tc.err) || p.Name != tc.want {
				t.Errorf("Authenticate = %+v, %v; want %q, %v", p, err, tc.want, tc.err)
			}
		})
	}
}

func TestPrincipalScopes(t *testing.T) {
	agent := auth.Principal{Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami", "ona"}}
	shared := auth.Principal{Role: auth.RoleAgent, Node: "shared-1", Tenants: []string{auth.AnyTenant}}
	caami := auth.Principal{Role: auth.RoleInstitution, Tenant: "caami"}
	admin := auth.Principal{Role: auth.RoleAdmin}
	checks := []struct {
		name string
		got  bool
		want bool
	}{
		{"an institution reads its own tenant", caami.CanRead("caami"), true},
		{"an institution does not read another tenant", caami.CanRead("ona"), false},
		{"an agent reads no tenant", agent.CanRead("caami"), false},
		{"an admin reads any tenant", admin.CanRead("ona"), true},
		{"an agent writes its own node", agent.CanWriteNode("node-1"), true},
		{"an agent does not write another node", agent.CanWriteNode("node-2"), false},
		{"an admin does not write usage", admin.CanWriteNode(""), false},
		{"an institution does not write usage", caami.CanWriteNode(""), false},
		{"an institution pushes its own tenant's logs", caami.CanWriteTenant("caami"), true},
		{"an institution does not push another tenant's logs", caami.CanWriteTenant("ona"), false},
		{"the table lets an agent push any tenant's logs (the handler checks node and MayRun)", agent.CanWriteTenant("smals"), true},
		{"an admin pushes no logs", admin.CanWriteTenant("caami"), false},
		{"an agent's node runs the institutions it lists", agent.MayRun("ona"), true},
		{"an agent's node runs no other institution", agent.MayRun("smals"), false},
		{"a shared node runs any institution", shared.MayRun("smals"), true},
		{"an agent without a list runs nothing", auth.Principal{Role: auth.RoleAgent, Node: "n"}.MayRun("caami"), false},
		{"an institution runs nothing, not even itself", caami.MayRun("caami"), false},
		{"an admin runs nothing", admin.MayRun("caami"), false},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v", c.name, c.got)
		}
	}
}

func TestSameTokenTwiceIsRefused(t *testing.T) {
	h := auth.Hash("x")
	_, err := auth.NewAuthenticator([]auth.TokenConfig{{Name: "a", Role: auth.RoleAdmin, SHA256: h}, {Name: "b", Role: auth.RoleAdmin, SHA256: h}})
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("err = %v, want the duplicate named", err)
	}
}

func TestNewTokensAreDistinctAndLong(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok := auth.New()
		if len(tok) < 32 || seen[tok] {
			t.Fatalf("token %q is short or repeated", tok)
		}
		seen[tok] = true
	}
}

func TestAVerifiedClientCertificateNamesItsNode(t *testing.T) {
	a, err := auth.NewAuthenticator([]auth.TokenConfig{{Name: "agent-2", Role: auth.RoleAgent, Node: "node-2", Tenants: []string{"ona"}, SHA256: auth.Hash("t2")}},
		auth.CertificateConfig{Node: "node-1", Tenants: []string{"caami"}})
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(dns ...string) *http.Request {
		r := httptest.NewRequest("POST", "/", nil)
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{DNSNames: dns}}}}
		return r
	}
	p, err := a.Authenticate(withCert("node-1"))
	if want := (auth.Principal{Name: "cert:node-1", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami"}, Certificate: true}); err != nil || !reflect.DeepEqual(p, want) {
		t.Errorf("a certificate of node-1: %+v, %v; want %+v", p, err, want)
	}
	// A node node_certificates does not list: nobody knows which
	// institutions it runs, so it is nobody (as a token nobody was given).
	if _, err := a.Authenticate(withCert("node-3")); !errors.Is(err, auth.ErrUnknownCertNode) || !strings.Contains(err.Error(), "node-3") {
		t.Errorf("a certificate of an unlisted node: %v, want ErrUnknownCertNode naming it", err)
	}
	// The certificate authenticates the connection: a token beside it changes nothing.
	r := withCert("node-1")
	r.Header.Set("Authorization", "Bearer t2")
	if p, _ := a.Authenticate(r); p.Node != "node-1" {
		t.Errorf("a certificate of node-1 with node-2's token acts as %q", p.Node)
	}
	for _, dns := range [][]string{nil, {"node-1", "node-2"}, {""}} {
		if _, err := a.Authenticate(withCert(dns...)); !errors.Is(err, auth.ErrBadCert) {
			t.Errorf("a certificate naming %q: %v, want ErrBadCert", dns, err)
		}
	}
	// An unverified certificate (no client CAs configured) counts for nothing.
	r = httptest.NewRequest("POST", "/", nil)
	r.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{DNSNames: []string{"node-1"}}}}
	if _, err := a.Authenticate(r); !errors.Is(err, auth.ErrNoToken) {
		t.Errorf("an unverified certificate: %v, want ErrNoToken", err)
	}
}

// An agent credential lists the institutions its node may run: there is no
// default, "*" only where an operator writes it, alone, and each one listed
// is configured.
func TestAgentCredentialsMustListTheInstitutionsTheirNodeRuns(t *testing.T) {
	known := func(id string) bool { return id == "caami" || id == "ona" }
	agent := func(tenants ...string) auth.TokenConfig {
		return auth.TokenConfig{Name: "a", Role: auth.RoleAgent, Node: "node-1", Tenants: tenants, SHA256: auth.Hash("a")}
	}
	for _, tc := range []struct {
		name string
		c    auth.TokenConfig
		want string // "" for valid
	}{
		{"an agent token listing its institutions", agent("caami", "ona"), ""},
		{"a shared node's agent token", agent(auth.AnyTenant), ""},
		{"an agent token listing none", agent(), "tenants: an agent credential must list"},
		{"an unknown institution", agent("smals"), `tenants: "smals" is not one of the configured tenants`},
		{"a wildcard beside institutions", agent("caami", auth.AnyTenant), `"*" (any institution) stands alone`},
		{"an institution listed twice", agent("caami", "caami"), `"caami" is listed twice`},
		{"an institution token with tenants", auth.TokenConfig{Name: "i", Role: auth.RoleInstitution, Tenant: "caami", Tenants: []string{"caami"},
			SHA256: auth.Hash("i")}, "tenants: only agent tokens"},
		{"an admin token with tenants", auth.TokenConfig{Name: "o", Role: auth.RoleAdmin, Tenants: []string{"*"}, SHA256: auth.Hash("o")}, "tenants: an admin token"},
	} {
		err := tc.c.Validate(known)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
	for _, tc := range []struct {
		name string
		c    auth.CertificateConfig
		want string
	}{
		{"a node's certificate", auth.CertificateConfig{Node: "node-1", Tenants: []string{"ona"}}, ""},
		{"no node", auth.CertificateConfig{Tenants: []string{"ona"}}, "node: is required"},
		{"no institutions", auth.CertificateConfig{Node: "node-1"}, "tenants: an agent credential must list"},
	} {
		err := tc.c.Validate(known)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.want)
		}
	}
	// Built without Validate (as tests and benchmarks do), an agent
	// credential without a list is refused too, never taken as "any".
	if _, err := auth.NewAuthenticator([]auth.TokenConfig{agent()}); err == nil || !strings.Contains(err.Error(), "tenants") {
		t.Errorf("an agent token without tenants: %v, want it refused", err)
	}
	if _, err := auth.NewAuthenticator(nil, auth.CertificateConfig{Node: "node-1"}); err == nil || !strings.Contains(err.Error(), "tenants") {
		t.Errorf("a node certificate without tenants: %v, want it refused", err)
	}
	if _, err := auth.NewAuthenticator(nil, auth.CertificateConfig{Node: "n", Tenants: []string{"*"}}, auth.CertificateConfig{Node: "n", Tenants: []string{"*"}}); err == nil {
		t.Error("a node listed twice in node_certificates was taken")
	}
}

// Where agents must present certificates, their bearer tokens are refused
// naming the reason; institutions' and admin tokens, and certificates, work.
func TestWithoutAgentTokensRefusesOnlyAgentsTokens(t *testing.T) {
	a, err := auth.NewAuthenticator([]auth.TokenConfig{
		{Name: "agent", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami"}, SHA256: auth.Hash("agent")},
		{Name: "caami", Role: auth.RoleInstitution, Tenant: "caami", SHA256: auth.Hash("inst")},
		{Name: "ops", Role: auth.RoleAdmin, SHA256: auth.Hash("ops")},
	}, auth.CertificateConfig{Node: "node-1", Tenants: []string{"caami"}})
	if err != nil {
		t.Fatal(err)
	}
	strict := a.WithoutAgentTokens()
	bearer := func(token string) *http.Request {
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return r
	}
	if p, err := a.Authenticate(bearer("agent")); err != nil || p.Name != "agent" {
		t.Errorf("the agent token before: %+v, %v", p, err)
	}
	if _, err := strict.Authenticate(bearer("agent")); !errors.Is(err, auth.ErrAgentToken) || !strings.Contains(err.Error(), "client_auth") {
		t.Errorf("the agent token where certificates are required: %v, want ErrAgentToken naming client_auth", err)
	}
	for _, tok := range []string{"inst", "ops"} {
		if _, err := strict.Authenticate(bearer(tok)); err != nil {
			t.Errorf("token %s where agents need certificates: %v", tok, err)
		}
	}
	r := httptest.NewRequest("POST", "/", nil)
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{DNSNames: []string{"node-1"}}}}}
	if p, err := strict.Authenticate(r); err != nil || !p.Certificate {
		t.Errorf("node-1's certificate: %+v, %v", p, err)
	}
}
