package auth_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
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
		{Name: "agent", Role: auth.RoleAgent, Node: "node-1", SHA256: auth.Hash(agent)},
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
	agent := auth.Principal{Role: auth.RoleAgent, Node: "node-1"}
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
		{"an agent pushes any tenant's logs (of its node)", agent.CanWriteTenant("ona"), true},
		{"an admin pushes no logs", admin.CanWriteTenant("caami"), false},
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
	a, err := auth.NewAuthenticator([]auth.TokenConfig{{Name: "agent-2", Role: auth.RoleAgent, Node: "node-2", SHA256: auth.Hash("t2")}})
	if err != nil {
		t.Fatal(err)
	}
	withCert := func(dns ...string) *http.Request {
		r := httptest.NewRequest("POST", "/", nil)
		r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{{DNSNames: dns}}}}
		return r
	}
	p, err := a.Authenticate(withCert("node-1"))
	if err != nil || p != (auth.Principal{Name: "cert:node-1", Role: auth.RoleAgent, Node: "node-1"}) {
		t.Errorf("a certificate of node-1: %+v, %v", p, err)
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
