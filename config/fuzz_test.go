package config_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/config"
)

// FuzzParse feeds arbitrary bytes to the configuration parser, TLS sections
// included: it never panics, refuses with an error that names the file, and
// what it accepts validates again as it stands.
//
// The seeds are the example configurations without their comments and blank
// lines (the engine minimizes each new input in time quadratic in its length),
// and short TLS sections, one of each listener's.
func FuzzParse(f *testing.F) {
	uncommented := regexp.MustCompile(`(?m)\s+#.*$|^\s*#.*\n|^\s*\n`)
	for _, path := range []string{"../deploy/examples/paasmeter.yaml", "../deploy/examples/paasmeter-tls.yaml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uncommented.ReplaceAllString(string(b), ""))
	}
	for _, seed := range []string{
		"",
		"collector:\n  listen: 0.0.0.0:8443\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}\n",
		"collector:\n  admin_listen: 10.0.0.1:9090\n  admin_tls: {cert_file: c.pem, key_file: k.pem}\n  admin_token_sha256: " + strings.Repeat("ab", 32) + "\n",
		"agent:\n  collector_url: https://collector:8443\n  tls: {ca_file: ca.pem, cert_file: c.pem, key_file: k.pem, server_name: collector}\n",
		"agent:\n  admin_listen: 0.0.0.0:9100\n",
		"agent:\n  collector_urls: [https://collector-a:8443, https://collector-b:8443]\n  tls: {ca_file: ca.pem}\n",
		"store:\n  metering_dsn: clickhouse://ch1:9000,ch2:9000/pm?cluster=p&replicated=true\n",
		"tokens: [{name: x, role: agent, node: node-1, sha256: " + strings.Repeat("0", 64) + "}]\n",
		"portal:\n  oidc: {issuer: https://idp.example/, client_id: x, client_secret_file: s, redirect_url: https://c.example/portal/oidc/callback, role_claim: r}\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, yaml string) {
		c, err := config.Parse([]byte(yaml), "fuzz.yaml", noEnv)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config fuzz.yaml") {
				t.Fatalf("an error that does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("an accepted configuration does not validate: %v", err)
		}
	})
}
