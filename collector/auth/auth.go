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
	"strings"
)

// Role is what a token may do.
type Role string

// The roles.
const (
	// RoleAgent writes usage of exactly one node.
	RoleAgent Role = "agent"
	// RoleInstitution reads the data of exactly one tenant.
	RoleInstitution Role = "institution"
	// RoleAdmin reads every tenant's data. Operators' reads are audited.
	RoleAdmin Role = "admin"
)

// Principal is the caller a valid token identifies.
type Principal struct {
	// Name is the token's configured name, for logs and audit; never the token.
	Name string
	Role Role
	// Node binds an agent token; Tenant binds an institution token.
	Node   string
	Tenant string
}

// CanRead reports whether p may read tenant's data.
func (p Principal) CanRead(tenant string) bool {
	return p.Role == RoleAdmin || p.institutionOf(tenant)
}

// CanWriteTenant reports whether p may push log lines of tenant through the
// Loki API: the tenant's own institution token (its applications shipping
// their logs), or an agent token, which may write any tenant's lines of its
// node (CanWriteNode still applies to each line).
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

// TokenConfig is one configured token.
type TokenConfig struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
	// SHA256 is the hex SHA-256 of the token (paasmeter token hash).
	SHA256 string `yaml:"sha256"`
	Node   string `yaml:"node,omitempty"`
	Tenant string `yaml:"tenant,omitempty"`
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
			errs = append(errs, errors.New("tenant: an agent token is bound to a node, not a tenant"))
		}
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
	case RoleAdmin:
		if c.Node != "" || c.Tenant != "" {
			errs = append(errs, errors.New("node, tenant: an admin token is bound to neither"))
		}
	default:
		errs = append(errs, fmt.Errorf("role: %q must be agent, institution or admin", c.Role))
	}
	return errors.Join(errs...)
}

// Authenticator maps bearer tokens to principals.
type Authenticator struct {
	byHash map[[sha256.Size]byte]Principal
}

// NewAuthenticator builds an Authenticator from validated token configs.
func NewAuthenticator(tokens []TokenConfig) (*Authenticator, error) {
	a := &Authenticator{byHash: make(map[[sha256.Size]byte]Principal, len(tokens))}
	for i, t := range tokens {
		var h [sha256.Size]byte
		if _, err := hex.Decode(h[:], []byte(t.SHA256)); err != nil || len(t.SHA256) != 2*sha256.Size {
			return nil, fmt.Errorf("tokens[%d].sha256: not a hex SHA-256", i)
		}
		if _, dup := a.byHash[h]; dup {
			return nil, fmt.Errorf("tokens[%d] (%s): the same token is configured twice", i, t.Name)
		}
		a.byHash[h] = Principal{Name: t.Name, Role: t.Role, Node: t.Node, Tenant: t.Tenant}
	}
	return a, nil
}

// ErrNoToken, ErrBadToken and ErrBadCert are the ways authentication fails.
var (
	ErrNoToken  = errors.New("missing bearer token (Authorization: Bearer <token>) or client certificate")
	ErrBadToken = errors.New("invalid bearer token")
	ErrBadCert  = errors.New("the client certificate must name its node as its one DNS subject alternative name")
)

// Authenticate returns the principal of the request: the node a verified
// client certificate names (mutual TLS) or else the bearer token's. The
// certificate comes first because it authenticates the connection itself;
// only the collector's client CAs verify one (collector.tls.client_ca_file),
// so without them every request goes by its token.
func (a *Authenticator) Authenticate(r *http.Request) (Principal, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return CertPrincipal(r.TLS.VerifiedChains[0][0])
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
	return p, nil
}

// CertPrincipal is the agent a verified client certificate identifies: the
// node named by its one DNS SAN, with the rights of that node's agent token.
// A certificate with no DNS SAN, or several, names no node.
func CertPrincipal(c *x509.Certificate) (Principal, error) {
	if len(c.DNSNames) != 1 || c.DNSNames[0] == "" {
		return Principal{}, ErrBadCert
	}
	node := c.DNSNames[0]
	return Principal{Name: "cert:" + node, Role: RoleAgent, Node: node}, nil
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
