package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ServerConfig is a listener's tls section. Without cert_file the listener
// serves plain HTTP.
type ServerConfig struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key served.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, is the PEM bundle of CAs whose client
	// certificates are verified (mutual TLS). A client without one is still
	// served unless ClientAuth is ClientAuthRequire; what it may do is the
	// caller's to decide.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is ClientAuthOptional (empty means it) or ClientAuthRequire.
	ClientAuth string `yaml:"client_auth"`
}

// The values of ServerConfig.ClientAuth.
const (
	// ClientAuthOptional: a client certificate is verified if given, and
	// may be left out.
	ClientAuthOptional = "optional"
	// ClientAuthRequire: the handshake fails without a client certificate
	// the client CAs verify.
	ClientAuthRequire = "require"
)

// Enabled says whether the listener serves TLS.
func (c *ServerConfig) Enabled() bool { return c.CertFile != "" }

// RequiresClientCert says whether the handshake requires a client certificate.
func (c *ServerConfig) RequiresClientCert() bool { return c.ClientAuth == ClientAuthRequire }

// Validate reports what is wrong with c, naming each key.
func (c *ServerConfig) Validate() error {
	var errs []error
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("cert_file, key_file: set both or neither"))
	}
	if c.ClientCAFile != "" && c.CertFile == "" {
		errs = append(errs, errors.New("client_ca_file: needs cert_file and key_file (mutual TLS is TLS first)"))
	}
	switch c.ClientAuth {
	case "", ClientAuthOptional:
	case ClientAuthRequire:
		if c.ClientCAFile == "" {
			errs = append(errs, errors.New("client_auth: require needs client_ca_file (the CAs that sign the client certificates)"))
		}
	default:
		errs = append(errs, fmt.Errorf("client_auth: %q must be optional or require", c.ClientAuth))
	}
	return errors.Join(errs...)
}

// Server is a listener's TLS: its Config serves the current files.
type Server struct {
	src *Source
	// require is ServerConfig.RequiresClientCert.
	require bool
}

// NewServer reads c's files; name labels the expiry metric (e.g. "api").
func NewServer(name string, c ServerConfig, log *slog.Logger) (*Server, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, errors.New("cert_file, key_file: required to serve TLS")
	}
	src, err := newSource(name, c.CertFile, c.KeyFile, c.ClientCAFile, log)
	if err != nil {
		return nil, err
	}
	return &Server{src: src, require: c.RequiresClientCert()}, nil
}

// Source is what ExpiryCollector reads.
func (s *Server) Source() *Source { return s.src }

// Config returns the tls.Config to serve with: each handshake gets the
// certificate, and the client CAs, the files hold at that moment.
func (s *Server) Config() *tls.Config {
	c := base()
	c.NextProtos = []string{"h2", "http/1.1"}
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := s.src.current()
		hc := base()
		hc.NextProtos = c.NextProtos
		hc.Certificates = []tls.Certificate{*m.cert}
		if m.pool != nil {
			// Unless required, a client certificate is optional, but one
			// given must verify.
			hc.ClientAuth, hc.ClientCAs = tls.VerifyClientCertIfGiven, m.pool
			if s.require {
				hc.ClientAuth = tls.RequireAndVerifyClientCert
			}
		}
		return hc, nil
	}
	return c
}

// Listener wraps ln in TLS.
func (s *Server) Listener(ln net.Listener) net.Listener { return tls.NewListener(ln, s.Config()) }

// ClientConfig is the agent's tls section, for its requests to the collector.
type ClientConfig struct {
	// CAFile is the PEM bundle of CAs the collector's certificate must
	// chain to; empty means the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate presented (mutual
	// TLS): the node's identity at the collector.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the collector's certificate must carry, when
	// it is not the collector URL's host.
	ServerName string `yaml:"server_name"`
}

// Validate reports what is wrong with c, naming each key.
func (c *ClientConfig) Validate() error {
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("cert_file, key_file: set both or neither")
	}
	return nil
}

// Configured says whether any key of c is set.
func (c *ClientConfig) Configured() bool { return *c != ClientConfig{} }

// Client makes the HTTPS connections of one client from the current files.
type Client struct {
	src        *Source
	serverName string
}

// NewClient reads c's files; name labels the expiry metric (e.g. "collector").
func NewClient(name string, c ClientConfig, log *slog.Logger) (*Client, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	src, err := newSource(name, c.CertFile, c.KeyFile, c.CAFile, log)
	if err != nil {
		return nil, err
	}
	return &Client{src: src, serverName: c.ServerName}, nil
}

// Source is what ExpiryCollector reads.
func (c *Client) Source() *Source { return c.src }

// Config returns a tls.Config of the files as they are now: the CAs
// trusted and the certificate presented. ServerName is the configured one;
// empty, tls.Dial takes the address's host.
func (c *Client) Config() *tls.Config {
	m := c.src.current()
	tc := base()
	tc.RootCAs, tc.ServerName = m.pool, c.serverName
	if m.cert != nil {
		tc.Certificates = []tls.Certificate{*m.cert}
	}
	return tc
}

// Transport returns an HTTP transport whose every new connection is made
// with Config, so it trusts and presents the current files; connections
// already open are kept.
func (c *Client) Transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := tls.Dialer{NetDialer: dialer, Config: c.Config()}
		return d.DialContext(ctx, network, addr)
	}
	return t
}

// IsLoopback says whether addr (host:port) listens on this host only:
// localhost or a loopback IP. An empty host is every interface. Listeners
// that carry tokens or operators' data may go beyond loopback only with TLS.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && IsLoopbackHost(host)
}

// IsLoopbackHost says whether host (a name or an IP, without port) is this
// host only: localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
