package tlsconf

import (
	"crypto/x509"

	"github.com/prometheus/client_golang/prometheus"
)

var expiryDesc = prometheus.NewDesc("paasmeter_tls_cert_expiry_timestamp_seconds",
	"When a certificate this process serves (its own, on a listener or as a client) or trusts (a CA it verifies peers with) expires, as a Unix time.",
	[]string{"listener", "subject", "kind"}, nil)

// ExpiryCollector exports paasmeter_tls_cert_expiry_timestamp_seconds of the
// sources' certificates as their files are at each scrape: kind "served" for
// a source's own certificate, "trusted" for each CA of its bundle; listener
// is the source's name. Nil sources (a listener without TLS) are skipped.
func ExpiryCollector(sources ...*Source) prometheus.Collector {
	var ss []*Source
	for _, s := range sources {
		if s != nil {
			ss = append(ss, s)
		}
	}
	return expiryCollector(ss)
}

type expiryCollector []*Source

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c {
		m := s.current()
		for kind, certs := range map[string][]*x509.Certificate{"served": m.served, "trusted": m.trusted} {
			// Two CAs of one subject (an old and a new one, side by side
			// during a rotation) are one series: the earlier expiry, which is
			// the one to act on.
			first := map[string]float64{}
			for _, cert := range certs {
				t := float64(cert.NotAfter.Unix())
				subj := cert.Subject.String()
				if v, ok := first[subj]; !ok || t < v {
					first[subj] = t
				}
			}
			for subj, t := range first {
				ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, t, s.name, subj, kind)
			}
		}
	}
}
