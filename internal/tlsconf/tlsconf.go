// Package tlsconf builds the TLS configurations of paasmeter's listeners and
// of the agent's client from certificate files, and keeps them current: the
// files are stat'ed on every handshake (a few stat calls, no reads) and read
// again when one changed (modification time, size or the file itself, as a
// rename over it or a swapped symlink gives), so a rotated certificate is
// served from the next handshake on, without a restart and without touching
// the connections already open. A change that does not load (a key that does
// not match its certificate yet, half a file) is logged once and the previous
// pair stays in use until the files change again.
//
// The minimum version is TLS 1.2; 1.3 uses Go's suites, 1.2 only ECDHE with
// AEAD ciphers. ExpiryCollector exports the expiry of the certificates a
// process serves and trusts.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// cipherSuites are the TLS 1.2 suites offered: ECDHE key exchange (forward
// secrecy) with an AEAD cipher. TLS 1.3's suites are not configurable.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// base returns the settings every configuration of the package shares.
func base() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, CipherSuites: cipherSuites}
}

// fileStamp is what a cheap stat tells of a file: enough to see it changed.
type fileStamp struct {
	info os.FileInfo
}

func (a fileStamp) same(b fileStamp) bool {
	if a.info == nil || b.info == nil {
		return a.info == b.info
	}
	return os.SameFile(a.info, b.info) && a.info.ModTime().Equal(b.info.ModTime()) && a.info.Size() == b.info.Size()
}

// material is one loaded state of a Source's files.
type material struct {
	stamps []fileStamp
	// cert is the pair served or presented; nil without cert_file.
	cert *tls.Certificate
	// pool holds the trusted CAs; nil without a CA file.
	pool    *x509.CertPool
	served  []*x509.Certificate // cert's leaf
	trusted []*x509.Certificate // pool's certificates
}

// Source is a certificate, its key and a CA bundle (each optional), read
// from files and read again when they change.
type Source struct {
	// name labels the expiry metric: the listener or client the files are for.
	name                      string
	certFile, keyFile, caFile string
	log                       *slog.Logger

	cur atomic.Pointer[material]
	mu  sync.Mutex // serialises reloads
	// failed is the stamp of the last change that did not load: it is not
	// tried again (nor logged again) until the files change once more.
	failed []fileStamp
}

// newSource loads the files; an error names the file.
func newSource(name, certFile, keyFile, caFile string, log *slog.Logger) (*Source, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Source{name: name, certFile: certFile, keyFile: keyFile, caFile: caFile, log: log}
	m, err := s.load(s.stat())
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// paths are the configured files, in the order of stamps.
func (s *Source) paths() []string {
	var p []string
	for _, f := range []string{s.certFile, s.keyFile, s.caFile} {
		if f != "" {
			p = append(p, f)
		}
	}
	return p
}

func (s *Source) stat() []fileStamp {
	paths := s.paths()
	st := make([]fileStamp, len(paths))
	for i, p := range paths {
		// A file that is briefly missing (mid-rotation) stamps as nil: a
		// change, whose load then fails and is retried at the next change.
		if fi, err := os.Stat(p); err == nil {
			st[i] = fileStamp{info: fi}
		}
	}
	return st
}

func sameStamps(a, b []fileStamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].same(b[i]) {
			return false
		}
	}
	return true
}

// current returns the material of the files as they are now, reloading them
// if they changed since the last load.
func (s *Source) current() *material {
	m := s.cur.Load()
	st := s.stat()
	if sameStamps(st, m.stamps) {
		return m
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m = s.cur.Load(); sameStamps(st, m.stamps) || sameStamps(st, s.failed) {
		return m
	}
	next, err := s.load(st)
	if err != nil {
		s.failed = st
		s.log.Warn("TLS files changed but do not load: the previous certificates stay in use until they change again",
			"tls", s.name, "err", err)
		return m
	}
	s.failed = nil
	s.cur.Store(next)
	s.log.Info("TLS files reloaded", "tls", s.name, "not_after", notAfter(next.served))
	return next
}

func notAfter(certs []*x509.Certificate) string {
	if len(certs) == 0 {
		return ""
	}
	return certs[0].NotAfter.UTC().Format(time.RFC3339)
}

func (s *Source) load(st []fileStamp) (*material, error) {
	m := &material{stamps: st}
	if s.certFile != "" {
		pair, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s, %s: %w", s.certFile, s.keyFile, err)
		}
		m.cert = &pair
		m.served = []*x509.Certificate{pair.Leaf}
	}
	if s.caFile != "" {
		certs, err := readCerts(s.caFile)
		if err != nil {
			return nil, err
		}
		m.pool = x509.NewCertPool()
		for _, c := range certs {
			m.pool.AddCert(c)
		}
		m.trusted = certs
	}
	return m, nil
}

// readCerts reads every certificate of a PEM bundle, refusing a bundle
// without one or with anything else in it.
func readCerts(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs, nil
}

// ParseCertificates decodes a PEM bundle of CA certificates: at least one,
// and nothing but certificates.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a PEM block of type %q: only CERTIFICATE blocks belong in a CA bundle", blk.Type)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate in the file")
	}
	return certs, nil
}
