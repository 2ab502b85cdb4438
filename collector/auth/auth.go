// Package auth turns bearer tokens into principals. Tokens are configured by
// their SHA-256 only, so the configuration file never holds a usable secret.
//
// Tokens are long random strings (see New), not passwords: a plain SHA-256 is
// enough to keep them out of the file, and lookups by hash need no constant-time
// comparison because the hash of a guess reveals nothing about a real token.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/paasmeter/paasmeter/batch"
)

// Role is what a token may do.
type Role string

// The roles.
const (
	// RoleAgent writes usage of exactly one node, for the institutions that
	// node may run.
	RoleAgent Role = "agent"
	// RoleInstitution reads the data of exactly one tenant.
	RoleInstitution Role = "institution"
	// RoleAdmin reads every tenant's data. Operators' reads are audited.
	RoleAdmin Role = "admin"
)

// AnyTenant, alone in an agent credential's tenants, lets its node run every
// institution: a shared node. Only an operator who writes it gets it.
const AnyTenant = "*"

// Principal is the caller a valid token or client certificate identifies.
type Principal struct {
	// Name is the credential's configured name, for logs and audit; never the token.
	Name string
	Role Role
	// Node binds an agent; Tenant binds an institution token.
	Node   string
	Tenant string
	// Tenants are the institutions an agent's node may run: their ids, or
	// AnyTenant alone.
	Tenants []string
	// Certificate says the agent was identified by a verified client
	// certificate, not a bearer token.
	Certificate bool
}

// CanRead reports whether p may read tenant's data.
func (p Principal) CanRead(tenant string) bool {
	return p.Role == RoleAdmin || p.institutionOf(tenant)
}

// CanWriteTenant reports whether the route table lets p push log lines of
// tenant through the Loki API: the tenant's own institution token (its
// applications shipping their logs), or an agent, whose push the handler
// checks further: CanWriteNode on each stream and MayRun on the tenant, so
// that a refusal is counted and recorded as the agents' other writes are.
func (p Principal) CanWriteTenant(tenant string) bool {
	return p.Role == RoleAgent || p.institutionOf(tenant)
}

// institutionOf reports whether p is tenant's institution.
func (p Principal) institutionOf(tenant string) bool {
	return p.Role == RoleInstitution && p.Tenant == tenant
}

// CanWriteNode reports whether p may write records of node.
func (p Principal) CanWriteNode(node string) bool {
	return p.Role == RoleAgent && p.Node == node
}

// MayRun reports whether p is an agent whose node may run tenant's
// containers, and so write its usage, events and log lines.
func (p Principal) MayRun(tenant string) bool {
	return p.Role == RoleAgent && (slices.Contains(p.Tenants, AnyTenant) || slices.Contains(p.Tenants, tenant))
}

// TokenConfig is one configured token.
type TokenConfig struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// SHA256 is the hex SHA-256 of the token (paasmeter token hash).
	SHA256 string `yaml:"sha256"`
	Node   string `yaml:"node,omitempty"`
	Tenant string `yaml:"tenant,omitempty"`
	// Tenants are the institutions an agent token's node may run (its
	// usage, events and log lines of any other are refused): tenant ids, or
	// AnyTenant alone for a shared node. Required of agent tokens: there is
	// no default, so a token never writes for an institution an operator
	// did not name.
	Tenants []string `yaml:"tenants,omitempty"`
}

var sha256RE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate reports what is wrong with c; knownTenant says whether a tenant is configured.
func (c *TokenConfig) Validate(knownTenant func(string) bool) error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("name: is required"))
	}
	if !sha256RE.MatchString(c.SHA256) {
		errs = append(errs, errors.New("sha256: must be 64 lower-case hex digits (paasmeter token hash)"))
	}
	switch c.Role {
	case RoleAgent:
		if c.Node == "" {
			errs = append(errs, errors.New("node: an agent token must be bound to a node"))
		}
		if c.Tenant != "" {
			errs = append(errs, errors.New("tenant: an agent token is bound to a node and its tenants (plural), not a tenant"))
		}
		errs = append(errs, validateTenants(c.Tenants, knownTenant))
	case RoleInstitution:
		switch {
		case c.Tenant == "":
			errs = append(errs, errors.New("tenant: an institution token must be bound to a tenant"))
		case !knownTenant(c.Tenant):
			errs = append(errs, fmt.Errorf("tenant: %q is not one of the configured tenants", c.Tenant))
		}
		if c.Node != "" {
			errs = append(errs, errors.New("node: an institution token is bound to a tenant, not a node"))
		}
		if len(c.Tenants) > 0 {
			errs = append(errs, errors.New("tenants: only agent tokens list the institutions their node may run"))
		}
	case RoleAdmin:
		if c.Node != "" || c.Tenant != "" || len(c.Tenants) > 0 {
			errs = append(errs, errors.New("node, tenant, tenants: an admin token is bound to none"))
		}
	default:
		errs = append(errs, fmt.Errorf("role: %q must be agent, institution or admin", c.Role))
	}
	return errors.Join(errs...)
}

// validateTenants reports what is wrong with the tenants of an agent
// credential: at least one, each configured, or AnyTenant alone.
func validateTenants(tenants []string, knownTenant func(string) bool) error {
	if len(tenants) == 0 {
		return errors.New(`tenants: an agent credential must list the institutions its node may run (tenant ids, or ["*"] for a shared node that may run any)`)
	}
	var errs []error
	seen := map[string]bool{}
	for _, t := range tenants {
		switch {
		case t == AnyTenant && len(tenants) > 1:
			errs = append(errs, errors.New(`tenants: "*" (any institution) stands alone`))
		case t != AnyTenant && !knownTenant(t):
			errs = append(errs, fmt.Errorf("tenants: %q is not one of the configured tenants", t))
		case seen[t]:
			errs = append(errs, fmt.Errorf("tenants: %q is listed twice", t))
		}
		seen[t] = true
	}
	return errors.Join(errs...)
}

// CertificateConfig is a node whose client certificate the collector takes
// (node_certificates[]): a certificate verified by collector.tls's client CAs
// whose one DNS SAN is Node acts as that node's agent, for Tenants.
type CertificateConfig struct {
	Node string `yaml:"node"`
	// Tenants are as TokenConfig.Tenants, and required too.
	Tenants []string `yaml:"tenants"`
}

// Validate reports what is wrong with c; knownTenant says whether a tenant is configured.
func (c *CertificateConfig) Validate(knownTenant func(string) bool) error {
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("node: is required (the DNS subject alternative name of the node's certificate)"))
	}
	errs = append(errs, validateTenants(c.Tenants, knownTenant))
	return errors.Join(errs...)
}

// Authenticator maps bearer tokens and verified client certificates to principals.
type Authenticator struct {
	byHash map[[sha256.Size]byte]Principal
	// byNode are the agents of node_certificates, by node.
	byNode map[string]Principal
	// noAgentTokens refuses agents' bearer tokens (WithoutAgentTokens).
	noAgentTokens bool
}

// WithoutAgentTokens returns an Authenticator that takes the same
// credentials except agents' bearer tokens, which it answers with
// ErrAgentToken: agents must present a client certificate. Institutions'
// and admin tokens are untouched.
func (a *Authenticator) WithoutAgentTokens() *Authenticator {
	b := *a
	b.noAgentTokens = true
	return &b
}

// NewAuthenticator builds an Authenticator from validated tokens and the
// nodes whose client certificates it takes. An agent credential must list
// its tenants.
func NewAuthenticator(tokens []TokenConfig, certs ...CertificateConfig) (*Authenticator, error) {
	a := &Authenticator{byHash: make(map[[sha256.Size]byte]Principal, len(tokens)), byNode: make(map[string]Principal, len(certs))}
	for i, t := range tokens {
		var h [sha256.Size]byte
		if _, err := hex.Decode(h[:], []byte(t.SHA256)); err != nil || len(t.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("tokens[%d].sha256: not a hex SHA-256", i)
		}
		if _, dup := a.byHash[h]; dup {
			return nil, fmt.Errorf("tokens[%d] (%s): the same token is configured twice", i, t.Name)
		}
		if t.Role == RoleAgent && len(t.Tenants) == 0 {
			return nil, fmt.Errorf("tokens[%d] (%s).tenants: an agent token must list the institutions its node may run", i, t.Name)
		}
		a.byHash[h] = Principal{Name: t.Name, Role: t.Role, Node: t.Node, Tenant: t.Tenant, Tenants: slices.Clone(t.Tenants)}
	}
	for i, c := range certs {
		if _, dup := a.byNode[c.Node]; dup || c.Node == "" {
			return nil, fmt.Errorf("node_certificates[%d].node: %q is empty or listed twice", i, c.Node)
		}
		if len(c.Tenants) == 0 {
			return nil, fmt.Errorf("node_certificates[%d] (%s).tenants: a node must list the institutions it may run", i, c.Node)
		}
		a.byNode[c.Node] = Principal{Name: "cert:" + c.Node, Role: RoleAgent, Node: c.Node, Tenants: slices.Clone(c.Tenants), Certificate: true}
	}
	return a, nil
}

// The ways authentication fails.
var (
	ErrNoToken  = errors.New("missing bearer token (Authorization: Bearer <token>) or client certificate")
	ErrBadToken = errors.New("invalid bearer token")
	ErrBadCert  = errors.New("the client certificate must name its node as its one DNS subject alternative name")
	// ErrUnknownCertNode is a verified certificate of a node node_certificates
	// does not list: the collector does not know which institutions it runs.
	ErrUnknownCertNode = errors.New("the client certificate names a node that node_certificates does not list")
	// ErrAgentToken is an agent's bearer token where agents must present a
	// client certificate (collector.tls.client_auth: require).
	ErrAgentToken = errors.New("agent bearer tokens are refused: collector.tls.client_auth is require, so an agent authenticates with its client certificate on collector.agent_listen")
)

// Authenticate returns the principal of the request: the node a verified
// client certificate names (mutual TLS) or else the bearer token's. The
// certificate comes first because it authenticates the connection itself;
// only the collector's client CAs verify one (collector.tls.client_ca_file),
// so without them every request goes by its token.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		node, err := CertNode(r.TLS.VerifiedChains[0][0])
		if err != nil {
			return Principal{}, err
		}
		p, ok := a.byNode[node]
		if !ok {
			return Principal{}, fmt.Errorf("%w (%q)", ErrUnknownCertNode, batch.Truncate(node))
		}
		return p, nil
	}
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, ErrNoToken
	}
	p, ok := a.byHash[sha256.Sum256([]byte(strings.TrimSpace(token)))]
	if !ok {
		return Principal{}, ErrBadToken
	}
	if p.Role == RoleAgent && a.noAgentTokens {
		return Principal{}, ErrAgentToken
	}
	return p, nil
}

// CertNode is the node a verified client certificate names: its one DNS
// SAN. A certificate with no DNS SAN, or several, names no node.
func CertNode(c *x509.Certificate) (string, error) {
	if len(c.DNSNames) != 1 || c.DNSNames[0] == "" {
		return "", ErrBadCert
	}
	return c.DNSNames[0], nil
}

// Hash returns the hex SHA-256 of token, the form the configuration holds.
func Hash(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// New returns a fresh random token with 160 bits of entropy.
func New() string {
	b := make([]byte, 20)
	rand.Read(b) // never fails (crypto/rand, Go ≥ 1.24)
	return "pm_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
