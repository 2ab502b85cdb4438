package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/locale"
)

func noEnv(string) string { return "" }

func TestExampleConfigLoads(t *testing.T) {
	c, err := config.Load("../deploy/examples/paasmeter.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tenants) != 2 || len(c.Tokens) != 4 || c.TimeZone != "Europe/Brussels" || c.Collector.Listen != "127.0.0.1:8080" {
		t.Errorf("example config loaded as %+v", c)
	}
}

func TestTLSExampleConfigLoads(t *testing.T) {
	c, err := config.Load("../deploy/examples/paasmeter-tls.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Collector.TLS.Enabled() || c.Collector.TLS.ClientCAFile == "" || !c.Collector.AdminTLS.Enabled() || c.Collector.AdminTokenSHA256 == "" ||
		c.Collector.Pprof || c.Agent.TLS.CertFile == "" || c.Agent.TLS.CAFile == "" || !c.Agent.AdminTLS.Enabled() {
		t.Errorf("TLS example config loaded as %+v", c)
	}
	// It shows the mode that requires agents' certificates and nodes bound to institutions.
	if !c.Collector.TLS.RequiresClientCert() || c.Collector.AgentListen == "" || len(c.NodeCertificates) != 3 || c.NodeCertificates[0].Tenants[0] != "caami" {
		t.Errorf("TLS example: client_auth %q, agent_listen %q, node_certificates %+v", c.Collector.TLS.ClientAuth, c.Collector.AgentListen, c.NodeCertificates)
	}
}

func TestAListenerBeyondLoopbackWithoutTLSIsRefusedNamingTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"collector:\n  admin_listen: 0.0.0.0:9090\n", "collector.admin_listen"},
		{"agent:\n  admin_listen: 0.0.0.0:9100\n", "agent.admin_listen"},
		{"agent:\n  tls: {ca_file: ca.pem}\n", "agent.tls"},
	} {
		if _, err := config.Parse([]byte(tc.yaml), "x.yaml", noEnv); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err %v, want it to name %s", tc.yaml, err, tc.want)
		}
	}
}

func TestEmptyFileMeansDefaults(t *testing.T) {
	c, err := config.Parse(nil, "empty.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.DataDir != config.Default().Store.DataDir || c.Collector.MaxRecords != 10000 {
		t.Errorf("empty file did not give the defaults: %+v", c)
	}
}

func TestLogRetentionAndAccessLogHaveDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse([]byte("store:\n  data_dir: "+dir+"\ntenants:\n  - id: caami\n  - id: ona\n    log_retention: 2160h\n"), "x.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Tenants) != 2 || c.Tenants[0].Retention() != 720*time.Hour || c.Tenants[1].Retention() != 2160*time.Hour {
		t.Errorf("log retentions of %+v, want caami 720h (the default) and ona 2160h", c.Tenants)
	}
	if got := c.AccessLogPath(); got != filepath.Join(dir, "access.jsonl") {
		t.Errorf("access log = %s, want access.jsonl in the data directory", got)
	}
	// A data directory an earlier release wrote its audit.jsonl into keeps that file.
	if err := os.WriteFile(filepath.Join(dir, "audit.jsonl"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := c.AccessLogPath(); got != filepath.Join(dir, "audit.jsonl") {
		t.Errorf("access log = %s, want the earlier release's audit.jsonl", got)
	}
	c.Collector.AccessLog = "/var/log/pm-access.jsonl"
	if got := c.AccessLogPath(); got != "/var/log/pm-access.jsonl" {
		t.Errorf("access log = %s, want the configured path", got)
	}
	if c.Collector.Logs.IngestionRateBytes != 4<<20 || c.Collector.Logs.MaxLineBytes != 256<<10 || c.Collector.Logs.RetentionInterval != time.Hour {
		t.Errorf("log limits default to %+v", c.Collector.Logs)
	}
}

func TestEnvironmentOverridesTheFile(t *testing.T) {
	env := map[string]string{"PAASMETER_LISTEN": "0.0.0.0:8443", "PAASMETER_DATA_DIR": "/var/lib/paasmeter", "PAASMETER_LOG_FORMAT": "json"}
	c, err := config.Parse([]byte("collector:\n  listen: 127.0.0.1:1234\n"), "x.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Collector.Listen != "0.0.0.0:8443" || c.Store.DataDir != "/var/lib/paasmeter" || c.Log.Format != "json" {
		t.Errorf("overrides not applied: listen %s, data %s, log %s", c.Collector.Listen, c.Store.DataDir, c.Log.Format)
	}
	for _, k := range config.EnvironmentVariables() {
		if !strings.HasPrefix(k, "PAASMETER_") {
			t.Errorf("override %s lacks the PAASMETER_ prefix", k)
		}
	}
}

func TestTheCollectorURLVariableOverridesTheFilesListOfCollectors(t *testing.T) {
	file := []byte("agent:\n  collector_urls: [\"http://hub1:8080\", \"http://hub2:8080\"]\n")
	c, err := config.Parse(file, "x.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Agent.URLs(); len(got) != 2 {
		t.Fatalf("without the variable the agent ships to %v, want the file's two collectors", got)
	}
	c, err = config.Parse(file, "x.yaml", func(k string) string {
		if k == "PAASMETER_COLLECTOR_URL" {
			return "http://hub3:8080"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Agent.URLs(); len(got) != 1 || got[0] != "http://hub3:8080" {
		t.Errorf("with PAASMETER_COLLECTOR_URL the agent ships to %v, want only http://hub3:8080", got)
	}
}

func TestMeteringStoreIsEmbeddedUnlessAClickHouseDSNIsSet(t *testing.T) {
	c, err := config.Parse(nil, "x.yaml", noEnv)
	if err != nil || c.Store.MeteringDSN != "" {
		t.Fatalf("default metering_dsn = %q, %v; want empty (the embedded store)", c.Store.MeteringDSN, err)
	}
	dsn := "clickhouse://ch1:9000/paasmeter?cluster=platform"
	c, err = config.Parse([]byte("store:\n  metering_dsn: clickhouse://file:9000/x\n"), "x.yaml", func(k string) string {
		return map[string]string{"PAASMETER_METERING_DSN": dsn}[k]
	})
	if err != nil || c.Store.MeteringDSN != dsn {
		t.Fatalf("metering_dsn = %q, %v; want the environment's %q", c.Store.MeteringDSN, err, dsn)
	}
}

func TestInvalidConfigNamesEveryProblem(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"an unknown key is named with its line":                  {"collector:\n  listen: 127.0.0.1:1\n  colour: red\n", "line 3: field colour not found"},
		"a bad time zone is named":                               {"time_zone: Mars/Olympus\n", "time_zone:"},
		"a bad duration is named with its line":                  {"collector:\n  queue_timeout: soon\n", "line 2"},
		"equal listeners are refused":                            {"collector:\n  listen: 127.0.0.1:9\n  admin_listen: 127.0.0.1:9\n", "collector.admin_listen: must differ"},
		"a bad listen address is named":                          {"collector:\n  listen: localhost\n", "collector.listen:"},
		"a negative record limit is named":                       {"collector:\n  max_records: -1\n", "max_records must be positive"},
		"an otlp exporter without endpoint":                      {"tracing:\n  exporter: otlp-http\n", "tracing.endpoint:"},
		"a duplicated tenant is named":                           {"tenants:\n  - id: caami\n  - id: caami\n", "tenants[1].id:"},
		"a log retention under an hour is named":                 {"tenants:\n  - id: caami\n    log_retention: 1m\n", "tenants[0].log_retention: 1m0s is below the minimum"},
		"a portal identity provider without its client is named": {"portal:\n  oidc: {issuer: https://idp.example/, redirect_url: https://c.example/portal/oidc/callback}\n", "portal.oidc.client_id: is required"},
		"a portal identity provider over plain HTTP is refused":  {"portal:\n  oidc: {issuer: http://idp.example/, client_id: x, client_secret_file: s, redirect_url: https://c.example/portal/oidc/callback}\n", "portal.oidc.issuer:"},
		"a portal callback elsewhere is named":                   {"portal:\n  oidc: {issuer: https://idp.example/, client_id: x, client_secret_file: s, redirect_url: https://c.example/cb}\n", "portal.oidc.redirect_url:"},
		"a language paasmeter does not write is named":           {"tenants:\n  - id: caami\n  - id: ona\n    language: de\n", `tenants[1].language: "de" is not a language paasmeter writes`},
		"a log line limit under 256 is named":                    {"collector:\n  logs:\n    max_line_bytes: 10\n", "collector.logs.max_line_bytes: 10 is below"},
		"a burst below the longest line is named": {
			"collector:\n  logs:\n    max_line_bytes: 2048\n    ingestion_burst_bytes: 1024\n", "collector.logs.ingestion_burst_bytes: 1024 must be at least max_line_bytes"},
		"a zero ingestion rate is named":           {"collector:\n  logs:\n    ingestion_rate_bytes: 0\n", "collector.logs.ingestion_rate_bytes: 0 is below"},
		"a sub-second retention interval is named": {"collector:\n  logs:\n    retention_interval: 10ms\n", "collector.logs.retention_interval: 10ms is below"},
		"a collector URL that is no URL is named":  {"agent:\n  collector_urls: [http://a:8080, 'ftp://b']\n", `agent.collector_urls[1]: "ftp://b" must be an http(s) URL`},
		"a collector URL listed twice is named":    {"agent:\n  collector_urls: [http://a:8080, http://a:8080]\n", `agent.collector_urls[1]: "http://a:8080" is listed twice`},
		"collector URLs of two schemes are named":  {"agent:\n  collector_urls: [http://a:8080, https://b:8443]\n", `agent.collector_urls[1]: "https://b:8443" must have the scheme of collector_urls[0]`},
		"an HTTP ClickHouse DSN is named":          {"store:\n  metering_dsn: http://ch:8123/paasmeter\n", "store.metering_dsn: clickhouse dsn: http:// is not supported"},
		"a DSN of another store is named":          {"store:\n  metering_dsn: postgres://db/paasmeter\n", "store.metering_dsn: clickhouse dsn: scheme \"postgres\""},
		"an agent token without node is named": {
			"tokens:\n  - name: a\n    role: agent\n    sha256: " + strings.Repeat("a", 64) + "\n", "tokens[0].node:"},
		"an agent token without tenants names the key and the wildcard (configs before issue 19)": {
			"tenants:\n  - id: caami\ntokens:\n  - {name: a, role: agent, node: n1, sha256: " + strings.Repeat("a", 64) + "}\n",
			`tokens[0].tenants: an agent credential must list the institutions its node may run (tenant ids, or ["*"] for a shared node`},
		"an agent token for an unknown institution is named": {
			"tenants:\n  - id: caami\ntokens:\n  - {name: a, role: agent, node: n1, tenants: [ona], sha256: " + strings.Repeat("a", 64) + "}\n",
			`tokens[0].tenants: "ona" is not one of the configured tenants`},
		"client CAs without node_certificates are named (configs before issue 19)": {
			"collector:\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}\n", "node_certificates: collector.tls.client_ca_file is set"},
		"node_certificates without client CAs are named": {
			"tenants:\n  - id: caami\nnode_certificates:\n  - {node: n1, tenants: [caami]}\n", "node_certificates: needs collector.tls.client_ca_file"},
		"a node certificate without tenants is named": {
			"collector:\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}\nnode_certificates:\n  - {node: n1}\n", "node_certificates[0].tenants:"},
		"a node listed twice in node_certificates is named": {
			"collector:\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem}\nnode_certificates:\n  - {node: n1, tenants: ['*']}\n  - {node: n1, tenants: ['*']}\n",
			"node_certificates[1].node: \"n1\" is listed twice"},
		"an unknown client_auth is named": {
			"collector:\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, client_auth: always}\n", `collector.tls.client_auth: "always" must be optional or require`},
		"client_auth require without client CAs is named": {
			"collector:\n  tls: {cert_file: c.pem, key_file: k.pem, client_auth: require}\n  agent_listen: 127.0.0.1:8444\n", "collector.tls.client_auth: require needs client_ca_file"},
		"client_auth require without agent_listen is named": {
			"collector:\n  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, client_auth: require}\n", "collector.agent_listen: required with tls.client_auth require"},
		"agent_listen without client_auth require is named": {
			"collector:\n  agent_listen: 127.0.0.1:8444\n", "collector.agent_listen: only with tls.client_auth require"},
		"a token for an unknown tenant is named": {
			"tokens:\n  - name: a\n    role: institution\n    tenant: ona\n    sha256: " + strings.Repeat("a", 64) + "\n", "tokens[0].tenant:"},
		"a token with a plain secret instead of a hash is named": {
			"tokens:\n  - name: a\n    role: admin\n    sha256: hunter2\n", "tokens[0].sha256:"},
		"an endpoint that is no enterprise number in scheme 0208 is named": {
			"tenants:\n  - id: caami\n    endpoint_scheme: \"0208\"\n    endpoint_id: 12AB\n", "tenants[0].endpoint_id: \"12AB\" is not a Belgian enterprise number"},
		"an endpoint scheme outside the EAS code list is named": {
			"tenants:\n  - id: caami\n    endpoint_scheme: XXXX\n    endpoint_id: \"0206733130\"\n", "tenants[0].endpoint_scheme: \"XXXX\" is not in the Peppol electronic address scheme"},
		"a Belgian VAT number failing its check digits is named": {
			"tenants:\n  - id: caami\n    vat_id: BE0206733179\n", "tenants[0].vat_id: \"BE0206733179\" is not a Belgian VAT number"},
		"a bad endpoint is named with billing configured": {
			"tenants:\n  - id: caami\n    endpoint_scheme: \"0208\"\n    endpoint_id: \"0206733179\"\nbilling:\n  rate_card: ratecard.yaml\n  seller:\n    name: S\n",
			"tenants[0].endpoint_id: \"0206733179\" is not a Belgian enterprise number"},
		"the collector's old audit_log names its new key": {"collector:\n  audit_log: /x.jsonl\n", "collector.audit_log: renamed access_log"},
		"the agent's old reconcile_interval names its new key": {
			"agent:\n  reconcile_interval: 2s\n", "agent.reconcile_interval: renamed supervise_interval"},
		"an unknown role is named": {
			"tokens:\n  - name: a\n    role: root\n    sha256: " + strings.Repeat("a", 64) + "\n", "tokens[0].role:"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml), "bad.yaml", noEnv)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	t.Run("a missing file says which", func(t *testing.T) {
		_, err := config.Load("no-such.yaml", noEnv)
		if err == nil || !os.IsNotExist(unwrapAll(err)) {
			t.Errorf("err = %v", err)
		}
	})
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestAnInstitutionsLanguageIsFrozenIntoItsInvoicesCustomer(t *testing.T) {
	c, err := config.Load("../deploy/examples/paasmeter.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	c.Tenants[0].Language, c.Tenants[1].Language = "NL", "en"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := c.BillingConfig()
	if err != nil {
		t.Fatal(err)
	}
	// English, chosen or not, is "": its documents hash as they did before
	// institutions chose a language.
	want := map[string]locale.Lang{"caami": locale.Dutch, "ona": ""}
	if len(b.Customers) != len(want) {
		t.Fatalf("%d customers, want %d", len(b.Customers), len(want))
	}
	for _, cu := range b.Customers {
		if cu.Language != want[cu.Tenant] {
			t.Errorf("%s: language %q, want %q", cu.Tenant, cu.Language, want[cu.Tenant])
		}
	}
}
