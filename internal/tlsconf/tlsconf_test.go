package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/internal/tlsconf/tlstest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// echoServer serves s's TLS on loopback; every connection gets its peer's
// first line back.
func echoServer(t *testing.T, s *tlsconf.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := s.Listener(ln)
	t.Cleanup(func() { tl.Close() })
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, addr string, c *tls.Config) *tls.Conn {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func echo(t *testing.T, c *tls.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo: %q, %v", buf, err)
	}
}

func pool(ca *tlstest.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// newServer is an api listener's server serving pair, trusting clients of
// clientCA (none when empty).
func newServer(t *testing.T, pair tlstest.Pair, clientCA string) *tlsconf.Server {
	t.Helper()
	s, err := tlsconf.NewServer("api", tlsconf.ServerConfig{CertFile: pair.CertFile, KeyFile: pair.KeyFile, ClientCAFile: clientCA}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestServerRefusesTLS11AndServesTLS12WithModernSuites(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	pair := ca.Server(t, dir, "server")
	addr := echoServer(t, newServer(t, pair, ""))
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(ca), MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
	// A TLS 1.2 client offering only a CBC suite finds none in common.
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(ca), MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}); err == nil {
		c.Close()
		t.Fatal("a CBC suite was negotiated")
	}
	c := dial(t, addr, &tls.Config{RootCAs: pool(ca), MaxVersion: tls.VersionTLS12})
	echo(t, c)
	if st := c.ConnectionState(); st.Version != tls.VersionTLS12 || !strings.Contains(tls.CipherSuiteName(st.CipherSuite), "GCM") {
		t.Errorf("negotiated %x %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
	}
	if st := dial(t, addr, &tls.Config{RootCAs: pool(ca)}).ConnectionState(); st.Version != tls.VersionTLS13 {
		t.Errorf("a modern client got version %x, want TLS 1.3", st.Version)
	}
}

func TestRotationReachesNewHandshakesAndKeepsOpenConnections(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	old := ca.Server(t, dir, "server")
	addr := echoServer(t, newServer(t, old, ca.CertFile))
	before := dial(t, addr, &tls.Config{RootCAs: pool(ca)})
	echo(t, before)

	rotated := ca.Server(t, dir, "server")
	echo(t, before) // the open connection goes on
	after := dial(t, addr, &tls.Config{RootCAs: pool(ca)})
	if got := after.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(rotated.Cert.SerialNumber) != 0 {
		t.Errorf("a new handshake got serial %s, want the rotated %s", got, rotated.Cert.SerialNumber)
	}
	if got := before.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(old.Cert.SerialNumber) != 0 {
		t.Errorf("the open connection's serial changed to %s", got)
	}

	// A broken file keeps the rotated pair in use.
	if err := os.WriteFile(rotated.CertFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	again := dial(t, addr, &tls.Config{RootCAs: pool(ca)})
	if got := again.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(rotated.Cert.SerialNumber) != 0 {
		t.Errorf("after a broken write, serial %s, want the last good %s", got, rotated.Cert.SerialNumber)
	}
}

func TestClientPresentsAndTrustsTheCurrentFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	srvPair := ca.Server(t, dir, "server")
	addr := echoServer(t, newServer(t, srvPair, ca.CertFile))
	node := ca.Node(t, dir, "node-a")
	c, err := tlsconf.NewClient("collector", tlsconf.ClientConfig{CAFile: ca.CertFile, CertFile: node.CertFile, KeyFile: node.KeyFile, ServerName: "localhost"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, dial(t, addr, c.Config()))
	// A server certificate of another CA is refused.
	other := tlstest.NewCA(t, t.TempDir(), "other")
	oc, err := tlsconf.NewClient("collector", tlsconf.ClientConfig{CAFile: other.CertFile}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if conn, err := tls.Dial("tcp", addr, oc.Config()); err == nil {
		conn.Close()
		t.Error("a server certificate of an untrusted CA was accepted")
	}
}

func TestExpiryMetric(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, dir, "test")
	end := time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)
	pair := ca.Issue(t, tlstest.Leaf{CN: "collector", DNS: []string{"localhost"}, NotAfter: end},
		filepath.Join(dir, "c.pem"), filepath.Join(dir, "c-key.pem"))
	s := newServer(t, pair, ca.CertFile)
	reg := prometheus.NewRegistry()
	reg.MustRegister(tlsconf.ExpiryCollector(s.Source(), nil))
	name := "paasmeter_tls_cert_expiry_timestamp_seconds"
	if got := promtest.Value(t, reg, name, map[string]string{"listener": "api", "subject": "CN=collector", "kind": "served"}); got != float64(end.Unix()) {
		t.Errorf("served expiry = %v, want %d", got, end.Unix())
	}
	if got := promtest.Value(t, reg, name, map[string]string{"listener": "api", "subject": "CN=test", "kind": "trusted"}); got != float64(ca.Cert.NotAfter.Unix()) {
		t.Errorf("trusted expiry = %v, want %d", got, ca.Cert.NotAfter.Unix())
	}
	// A rotation shows at the next scrape.
	later := end.Add(60 * 24 * time.Hour)
	ca.Issue(t, tlstest.Leaf{CN: "collector", DNS: []string{"localhost"}, NotAfter: later}, pair.CertFile, pair.KeyFile)
	if got := promtest.Value(t, reg, name, map[string]string{"listener": "api", "subject": "CN=collector", "kind": "served"}); got != float64(later.Unix()) {
		t.Errorf("served expiry after rotation = %v, want %d", got, later.Unix())
	}
}

func TestConfigErrorsNameTheKeysAndFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		c    tlsconf.ServerConfig
		want string
	}{
		{tlsconf.ServerConfig{CertFile: "x.pem"}, "cert_file, key_file"},
		{tlsconf.ServerConfig{}, "cert_file, key_file: required"},
		{tlsconf.ServerConfig{ClientCAFile: "ca.pem"}, "client_ca_file"},
		{tlsconf.ServerConfig{CertFile: filepath.Join(dir, "missing.pem"), KeyFile: filepath.Join(dir, "k.pem")}, "missing.pem"},
	} {
		if _, err := tlsconf.NewServer("api", tc.c, quiet); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want it to name %q", tc.c, err, tc.want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconf.NewClient("collector", tlsconf.ClientConfig{CAFile: filepath.Join(dir, "ca.pem")}, quiet); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("a key in the CA bundle: err %v", err)
	}
}

func FuzzParseCertificates(f *testing.F) {
	ca := tlstest.NewCA(f, f.TempDir(), "seed")
	b, err := os.ReadFile(ca.CertFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := tlsconf.ParseCertificates(b)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}
