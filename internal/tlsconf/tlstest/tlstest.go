// Package tlstest makes certificate authorities and the certificates they
// sign, in Go, for tests that run real TLS.
package tlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/atomicfile"
)

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertFile is the CA's certificate, PEM, in a test directory.
	CertFile string
}

// NewCA makes a CA named cn valid from now on for a year, its certificate
// written to dir.
func NewCA(t testing.TB, dir, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{Cert: cert, key: key, CertFile: filepath.Join(dir, cn+"-ca.pem")}
	write(t, ca.CertFile, pemOf("CERTIFICATE", der))
	return ca
}

// Leaf is what a certificate is issued for.
type Leaf struct {
	// CN is the subject's common name.
	CN string
	// DNS and IPs are the subject alternative names.
	DNS []string
	IPs []net.IP
	// Client makes a client certificate; otherwise a server one.
	Client bool
	// NotAfter is the expiry (default: 90 days from now).
	NotAfter time.Time
}

// Pair is an issued certificate and the files holding it and its key.
type Pair struct {
	Cert              *x509.Certificate
	CertFile, KeyFile string
}

// Issue signs a certificate for l and writes it and its key to
// certFile and keyFile, each replaced atomically (a rename, as a rotation
// should do it).
func (ca *CA) Issue(t testing.TB, l Leaf, certFile, keyFile string) Pair {
	t.Helper()
	if l.NotAfter.IsZero() {
		l.NotAfter = time.Now().Add(90 * 24 * time.Hour)
	}
	key := newKey(t)
	usage := x509.ExtKeyUsageServerAuth
	if l.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: l.CN},
		DNSNames:     l.DNS,
		IPAddresses:  l.IPs,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     l.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// The key first: until the certificate changes too, the old pair loads.
	write(t, keyFile, pemOf("PRIVATE KEY", kb))
	write(t, certFile, pemOf("CERTIFICATE", der))
	return Pair{Cert: cert, CertFile: certFile, KeyFile: keyFile}
}

// Server issues a server certificate for 127.0.0.1 and localhost into dir.
func (ca *CA) Server(t testing.TB, dir, cn string) Pair {
	t.Helper()
	return ca.Issue(t, Leaf{CN: cn, DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}},
		filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem"))
}

// Node issues a client certificate naming node as its one DNS SAN into dir.
func (ca *CA) Node(t testing.TB, dir, node string) Pair {
	t.Helper()
	return ca.Issue(t, Leaf{CN: node, DNS: []string{node}, Client: true},
		filepath.Join(dir, node+".pem"), filepath.Join(dir, node+"-key.pem"))
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func write(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(path, b); err != nil {
		t.Fatal(err)
	}
}
