package collector_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/internal/atomicfile"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/internal/tlsconf/tlstest"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool/spooltest"
	"github.com/paasmeter/paasmeter/usage"
)

// tlsRig is a collector serving TLS on both listeners, agents' client
// certificates verified by the nodes' CA.
type tlsRig struct {
	*env
	dir              string
	serverCA, nodeCA *tlstest.CA
	server           tlstest.Pair
	api, admin       string // https://host:port
}

func startTLS(t *testing.T, tune func(*collector.Config)) *tlsRig {
	t.Helper()
	dir := t.TempDir()
	r := &tlsRig{dir: dir, serverCA: tlstest.NewCA(t, dir, "servers"), nodeCA: tlstest.NewCA(t, dir, "nodes")}
	r.server = r.serverCA.Server(t, dir, "collector")
	cfg := collector.DefaultConfig()
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.TLS = tlsconf.ServerConfig{CertFile: r.server.CertFile, KeyFile: r.server.KeyFile, ClientCAFile: r.nodeCA.CertFile}
	cfg.AdminTLS = tlsconf.ServerConfig{CertFile: r.server.CertFile, KeyFile: r.server.KeyFile}
	if tune != nil {
		tune(&cfg)
	}
	r.env = newEnv(t, &cfg, nil)
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan [2]net.Addr, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- r.srv.Run(ctx, func(api, admin net.Addr) { addrs <- [2]net.Addr{api, admin} }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	a := <-addrs
	r.api, r.admin = "https://"+a[0].String(), "https://"+a[1].String()
	return r
}

// client is an agent's TLS client: trusting the servers' CA, presenting
// the given pair (none when zero).
func (r *tlsRig) client(t *testing.T, p tlstest.Pair) *tlsconf.Client {
	t.Helper()
	c, err := tlsconf.NewClient("collector", tlsconf.ClientConfig{CAFile: r.serverCA.CertFile, CertFile: p.CertFile, KeyFile: p.KeyFile},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func send(t *testing.T, c *http.Client, method, url, token string, body []byte) answer {
	t.Helper()
	return roundTrip(t, c, newRequest(t, method, url, token, bytes.NewReader(body)))
}

func onNode(node string, recs []usage.Record) []usage.Record {
	for i := range recs {
		recs[i].Node = node
		recs[i].SetID()
	}
	return recs
}

func TestMutualTLSIdentifiesTheAgentsNode(t *testing.T) {
	r := startTLS(t, nil)
	nodeA := r.nodeCA.Node(t, r.dir, "node-a")
	a := &http.Client{Transport: r.client(t, nodeA).Transport()}
	anon := &http.Client{Transport: r.client(t, tlstest.Pair{}).Transport()}

	if got := send(t, a, "POST", r.api+"/api/v1/usage", "", encode(t, onNode("node-a", records("caami", 0, 3)))); got.code != 200 {
		t.Fatalf("node-a's certificate posting node-a's records: %d %s", got.code, got.body)
	}
	for _, rec := range r.stored(t, "caami") {
		if rec.Node != "node-a" {
			t.Errorf("stored record of node %q", rec.Node)
		}
	}
	if got := send(t, a, "POST", r.api+"/api/v1/usage", "", encode(t, onNode("node-b", records("caami", 10, 3)))); got.code != http.StatusForbidden {
		t.Errorf("node-a's certificate posting node-b's records: %d %s, want 403", got.code, got.body)
	}
	// The certificate makes an agent: it reads no tenant.
	if got := send(t, a, "GET", r.api+"/api/v1/tenants/caami/usage", "", nil); got.code != http.StatusForbidden {
		t.Errorf("node-a's certificate reading caami: %d, want 403", got.code)
	}
	if got := send(t, anon, "POST", r.api+"/api/v1/usage", "", encode(t, onNode("node-a", records("caami", 20, 1)))); got.code != http.StatusUnauthorized {
		t.Errorf("no certificate, no token: %d %s, want 401", got.code, got.body)
	}
	// Bearer tokens still work over TLS, as the second way in.
	if got := send(t, anon, "POST", r.api+"/api/v1/usage", agentNode1, encode(t, records("caami", 30, 2))); got.code != 200 {
		t.Errorf("an agent token over TLS: %d %s", got.code, got.body)
	}
	// A certificate of another CA is not sent (the server names the CAs it
	// takes) and so identifies nobody.
	stray := tlstest.NewCA(t, t.TempDir(), "stray").Node(t, t.TempDir(), "node-a")
	if got := send(t, &http.Client{Transport: r.client(t, stray).Transport()}, "POST", r.api+"/api/v1/usage", "",
		encode(t, onNode("node-a", records("caami", 40, 1)))); got.code != http.StatusUnauthorized {
		t.Errorf("a certificate of an untrusted CA: %d %s, want 401", got.code, got.body)
	}
	// A certificate naming no node, or two, is refused.
	two := r.nodeCA.Issue(t, tlstest.Leaf{CN: "two", DNS: []string{"node-a", "node-b"}, Client: true},
		filepath.Join(r.dir, "two.pem"), filepath.Join(r.dir, "two-key.pem"))
	if got := send(t, &http.Client{Transport: r.client(t, two).Transport()}, "POST", r.api+"/api/v1/usage", "",
		encode(t, onNode("node-a", records("caami", 50, 1)))); got.code != http.StatusUnauthorized || !strings.Contains(string(got.body), "one DNS") {
		t.Errorf("a certificate naming two nodes: %d %s, want 401", got.code, got.body)
	}

	// A node node_certificates does not list is nobody: the collector does
	// not know which institutions it runs.
	nodeC := r.nodeCA.Node(t, r.dir, "node-c")
	if got := send(t, &http.Client{Transport: r.client(t, nodeC).Transport()}, "POST", r.api+"/api/v1/usage", "",
		encode(t, onNode("node-c", records("caami", 60, 1)))); got.code != http.StatusUnauthorized || !strings.Contains(string(got.body), "node_certificates") {
		t.Errorf("a certificate of a node not in node_certificates: %d %s, want 401 naming node_certificates", got.code, got.body)
	}

	// TLS 1.1 is refused on both listeners.
	for _, u := range []string{r.api, r.admin} {
		old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{MaxVersion: tls.VersionTLS11, RootCAs: pool(r.serverCA)}}}
		if resp, err := old.Get(u + "/healthz"); err == nil {
			resp.Body.Close()
			t.Errorf("%s served a TLS 1.1 client", u)
		}
	}
	// HTTP/2 is served too (Prometheus and curl ask for it).
	h2 := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: pool(r.serverCA)}}}
	resp, err := h2.Get(r.admin + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("an HTTP/2 client: %d over %s", resp.StatusCode, resp.Proto)
	}

	// The expiry of what the collector serves and trusts.
	r.wantExpiries(t, []certExpiry{{"api", "served", r.server.Cert}, {"api", "trusted", r.nodeCA.Cert}, {"admin", "served", r.server.Cert}})
}

// certExpiry is a certificate a listener serves or trusts.
type certExpiry struct {
	listener, kind string
	cert           *x509.Certificate
}

// wantExpiries checks paasmeter_tls_cert_expiry_timestamp_seconds of each.
func (r *tlsRig) wantExpiries(t *testing.T, certs []certExpiry) {
	t.Helper()
	for _, c := range certs {
		if got := r.metric(t, "paasmeter_tls_cert_expiry_timestamp_seconds", map[string]string{"listener": c.listener, "kind": c.kind, "subject": c.cert.Subject.String()}); got != float64(c.cert.NotAfter.Unix()) {
			t.Errorf("%s %s expiry = %v, want %d", c.listener, c.kind, got, c.cert.NotAfter.Unix())
		}
	}
}

func pool(ca *tlstest.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// TestRotationUnderARunningCollectorAndAgent rotates the collector's server
// certificate and the nodes' CA with node-a's client certificate while an
// agent's shipper keeps a connection open: that connection goes on, and the
// next handshake uses the new certificates on both sides.
func TestRotationUnderARunningCollectorAndAgent(t *testing.T) {
	r := startTLS(t, nil)
	nodeA := r.nodeCA.Node(t, filepath.Join(r.dir, "agent"), "node-a")
	// Another certificate of the old CA, kept as it was.
	staleA := r.nodeCA.Node(t, filepath.Join(r.dir, "stale"), "node-a")
	tr := r.client(t, nodeA).Transport()
	out, dead := spooltest.Pair(t)
	sh, err := ship.New(ship.Options{Spool: out, Dead: dead, BaseURL: r.api, Client: &http.Client{Transport: tr},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// shipBatch spools n records of node-a and ships them, reporting the
	// connection they went over.
	first := 0
	shipBatch := func(n int) (reused bool, serverSerial *big.Int) {
		t.Helper()
		for _, rec := range onNode("node-a", records("caami", first, n)) {
			b, _ := json.Marshal(rec)
			if _, err := out.Append(ship.KindUsage, b); err != nil {
				t.Fatal(err)
			}
		}
		first += n
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			reused = i.Reused
			serverSerial = i.Conn.(*tls.Conn).ConnectionState().PeerCertificates[0].SerialNumber
		}})
		if sent, err := sh.ShipOnce(ctx); err != nil || sent != n {
			t.Fatalf("shipped %d of %d: %v", sent, n, err)
		}
		if dead.Stats().Entries != 0 {
			t.Fatal("records were dead-lettered")
		}
		return reused, serverSerial
	}
	if _, serial := shipBatch(5); serial.Cmp(r.server.Cert.SerialNumber) != 0 {
		t.Fatalf("first connection to serial %s", serial)
	}

	// The rotation: a new server certificate in place; a new nodes' CA
	// replaces the old one, and node-a gets a certificate of it.
	oldServer := r.server
	newServer := r.serverCA.Server(t, r.dir, "collector")
	newNodeCA := tlstest.NewCA(t, t.TempDir(), "nodes-2026")
	b, err := os.ReadFile(newNodeCA.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(r.nodeCA.CertFile, b); err != nil {
		t.Fatal(err)
	}
	newNodeCA.Node(t, filepath.Join(r.dir, "agent"), "node-a")

	// The connection open before goes on.
	if reused, serial := shipBatch(5); !reused || serial.Cmp(oldServer.Cert.SerialNumber) != 0 {
		t.Errorf("after the rotation: reused %v, serial %s; want the open connection to the old certificate", reused, serial)
	}
	// A new connection: the new server certificate, and node-a's new client
	// certificate verified by the new CA.
	tr.CloseIdleConnections()
	if reused, serial := shipBatch(5); reused || serial.Cmp(newServer.Cert.SerialNumber) != 0 {
		t.Errorf("a new connection: reused %v, serial %s; want the new certificate %s", reused, serial, newServer.Cert.SerialNumber)
	}
	if n := len(r.stored(t, "caami")); n != 15 {
		t.Errorf("stored %d records, want 15", n)
	}
	// node-a's old certificate, of the CA no longer trusted, identifies nobody now.
	if got := send(t, &http.Client{Transport: r.client(t, staleA).Transport()}, "POST", r.api+"/api/v1/usage", "",
		encode(t, onNode("node-a", records("caami", 100, 1)))); got.code != http.StatusUnauthorized {
		t.Errorf("node-a's certificate of the replaced CA: %d %s, want 401", got.code, got.body)
	}
	name := "paasmeter_tls_cert_expiry_timestamp_seconds"
	if got := r.metric(t, name, map[string]string{"listener": "api", "kind": "trusted", "subject": "CN=nodes-2026"}); got != float64(newNodeCA.Cert.NotAfter.Unix()) {
		t.Errorf("trusted expiry after the rotation = %v", got)
	}
}

// TestRequiredClientCertificatesGiveAgentsAListenerOfTheirOwn is
// collector.tls.client_auth require: agents connect to agent_listen, whose
// handshake fails without a certificate of the nodes' CA; their bearer
// tokens are refused everywhere (401 naming the reason); institutions and
// operators keep the tenants' listener and their tokens, and that listener
// asks for no certificate.
func TestRequiredClientCertificatesGiveAgentsAListenerOfTheirOwn(t *testing.T) {
	r := startTLS(t, func(c *collector.Config) { c.TLS.ClientAuth, c.AgentListen = tlsconf.ClientAuthRequire, "127.0.0.1:0" })
	agents := "https://" + r.srv.AgentAddr().String()
	nodeA := r.nodeCA.Node(t, r.dir, "node-a")
	a := &http.Client{Transport: r.client(t, nodeA).Transport()}
	anon := &http.Client{Transport: r.client(t, tlstest.Pair{}).Transport()}

	if got := send(t, a, "POST", agents+"/api/v1/usage", "", encode(t, onNode("node-a", records("caami", 0, 3)))); got.code != 200 {
		t.Fatalf("node-a's certificate on the agents' listener: %d %s", got.code, got.body)
	}
	// No certificate, or one of another CA: no handshake, whatever the token.
	stray := tlstest.NewCA(t, t.TempDir(), "stray").Node(t, t.TempDir(), "node-a")
	for name, c := range map[string]*http.Client{"no certificate": anon, "a certificate of another CA": {Transport: r.client(t, stray).Transport()}} {
		req := newRequest(t, "POST", agents+"/api/v1/usage", agentNode1, bytes.NewReader(encode(t, records("caami", 10, 1))))
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Errorf("%s on the agents' listener: answered %d, want the handshake refused", name, resp.StatusCode)
		}
	}
	// The tenants' listener: an agent's token is refused naming why; a
	// certificate is not asked for, so it identifies nobody there.
	got := send(t, anon, "POST", r.api+"/api/v1/usage", agentNode1, encode(t, records("caami", 20, 1)))
	if got.code != http.StatusUnauthorized || !strings.Contains(string(got.body), "client_auth is require") || got.header.Get("WWW-Authenticate") == "" {
		t.Errorf("an agent token on the tenants' listener: %d %s, want 401 naming client_auth", got.code, got.body)
	}
	if got := send(t, anon, "POST", r.api+"/loki/api/v1/push", agentNode1, []byte(`{"streams":[]}`)); got.code != http.StatusUnauthorized {
		t.Errorf("an agent token pushing to Loki: %d %s, want 401", got.code, got.body)
	}
	if got := send(t, a, "POST", r.api+"/api/v1/usage", "", encode(t, onNode("node-a", records("caami", 30, 1)))); got.code != http.StatusUnauthorized {
		t.Errorf("node-a's certificate on the tenants' listener: %d %s, want 401 (no certificate is asked for there)", got.code, got.body)
	}
	// Institutions and operators keep their tokens, without a certificate.
	for _, token := range []string{caamiToken, adminToken} {
		if got := send(t, anon, "GET", r.api+"/api/v1/tenants/caami/usage", token, nil); got.code != 200 {
			t.Errorf("token %s on the tenants' listener: %d %s", token, got.code, got.body)
		}
	}
	if n := len(r.stored(t, "caami")); n != 3 {
		t.Errorf("stored %d records, want node-a's 3", n)
	}
	// The agents' listener's certificates are watched as the others are.
	r.wantExpiries(t, []certExpiry{{"agents", "served", r.server.Cert}, {"agents", "trusted", r.nodeCA.Cert}, {"api", "served", r.server.Cert}})
}

func TestAdminListenerWantsItsTokenAndServesPprofOnlyWhenAsked(t *testing.T) {
	const scrape = "prometheus-scrape-token"
	r := startTLS(t, func(c *collector.Config) { c.AdminTokenSHA256 = auth.Hash(scrape) })
	c := &http.Client{Transport: r.client(t, tlstest.Pair{}).Transport()}
	for token, want := range map[string]int{"": 401, adminToken: 401, scrape: 200} {
		if got := send(t, c, "GET", r.admin+"/metrics", token, nil); got.code != want {
			t.Errorf("admin /metrics with token %q: %d, want %d", token, got.code, want)
		}
	}
	if got := send(t, c, "GET", r.admin+"/healthz", "", nil); got.code != 200 {
		t.Errorf("admin /healthz without a token: %d", got.code)
	}
	if got := send(t, c, "GET", r.admin+"/debug/pprof/", scrape, nil); got.code != 404 {
		t.Errorf("pprof by default: %d, want 404", got.code)
	}

	p := startTLS(t, func(c *collector.Config) { c.AdminTokenSHA256, c.Pprof = auth.Hash(scrape), true })
	c = &http.Client{Transport: p.client(t, tlstest.Pair{}).Transport()}
	if got := send(t, c, "GET", p.admin+"/debug/pprof/", "", nil); got.code != 401 {
		t.Errorf("pprof without the token: %d, want 401", got.code)
	}
	if got := send(t, c, "GET", p.admin+"/debug/pprof/", scrape, nil); got.code != 200 {
		t.Errorf("pprof with the token: %d, want 200", got.code)
	}
}

func TestAdminListenBeyondLoopbackNeedsTLSAndAToken(t *testing.T) {
	tlsOn := tlsconf.ServerConfig{CertFile: "c.pem", KeyFile: "k.pem"}
	for _, tc := range []struct {
		name  string
		tune  func(*collector.Config)
		wants string // "" for valid
	}{
		{"loopback, nothing else", func(c *collector.Config) { c.AdminListen = "127.0.0.1:9090" }, ""},
		{"localhost", func(c *collector.Config) { c.AdminListen = "localhost:9090" }, ""},
		{"IPv6 loopback", func(c *collector.Config) { c.AdminListen = "[::1]:9090" }, ""},
		{"every interface", func(c *collector.Config) { c.AdminListen = ":9090" }, "admin_listen"},
		{"a private address without TLS", func(c *collector.Config) {
			c.AdminListen, c.AdminTokenSHA256 = "10.0.0.5:9090", auth.Hash("x")
		}, "admin_tls"},
		{"with TLS but no token", func(c *collector.Config) { c.AdminListen, c.AdminTLS = "0.0.0.0:9090", tlsOn }, "admin_token_sha256"},
		{"with TLS and a token", func(c *collector.Config) {
			c.AdminListen, c.AdminTLS, c.AdminTokenSHA256 = "0.0.0.0:9090", tlsOn, auth.Hash("x")
		}, ""},
		{"a token that is no hash", func(c *collector.Config) { c.AdminTokenSHA256 = "secret" }, "admin_token_sha256: must be 64"},
		{"a certificate without its key", func(c *collector.Config) { c.TLS.CertFile = "c.pem" }, "tls.cert_file, key_file"},
		{"client CAs without a certificate", func(c *collector.Config) { c.TLS.ClientCAFile = "ca.pem" }, "tls.client_ca_file"},
		{"client CAs on the admin listener", func(c *collector.Config) { c.AdminTLS = tlsOn; c.AdminTLS.ClientCAFile = "ca.pem" }, "admin_tls.client_ca_file"},
	} {
		c := collector.DefaultConfig()
		tc.tune(&c)
		err := c.Validate()
		if tc.wants == "" && err != nil || tc.wants != "" && (err == nil || !strings.Contains(err.Error(), tc.wants)) {
			t.Errorf("%s: Validate = %v, want %q", tc.name, err, tc.wants)
		}
	}
}
