// Package config is paasmeter's configuration file: one YAML document with a
// section per component, defaults for everything but tenants and tokens, and
// environment overrides for the knobs a deployment usually sets.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/telemetry"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/portal"
	"github.com/paasmeter/paasmeter/runtime/agent"
)

// Config is the whole configuration file.
type Config struct {
	// TimeZone is the platform's time zone: calendar days and months (billing
	// periods, SLA months) are taken in it.
	TimeZone  string                  `yaml:"time_zone"`
	Log       LogConfig               `yaml:"log"`
	Store     StoreConfig             `yaml:"store"`
	Collector collector.Config        `yaml:"collector"`
	Agent     agent.Config            `yaml:"agent"`
	Tracing   telemetry.TracingConfig `yaml:"tracing"`
	Billing   BillingConfig           `yaml:"billing"`
	// Portal is the institutions' web portal the collector serves.
	Portal portal.Config `yaml:"portal"`
	// Maintenance is the maintenance windows' lead time and the windows
	// the file declares (DESIGN.md §6).
	Maintenance MaintenanceConfig `yaml:"maintenance"`
	// Tenants are the institutions; records of any other tenant are rejected.
	Tenants institution.Directory `yaml:"tenants"`
	Tokens  []auth.TokenConfig    `yaml:"tokens"`
	// NodeCertificates are the nodes whose client certificates the
	// collector takes (collector.tls.client_ca_file), each with the
	// institutions it may run.
	NodeCertificates []auth.CertificateConfig `yaml:"node_certificates"`
}

// LogConfig configures the process log.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is text or json.
	Format string `yaml:"format"`
}

// StoreConfig says where data is kept.
type StoreConfig struct {
	// DataDir holds the embedded stores (and, by default, the access log).
	DataDir string `yaml:"data_dir"`
	// MeteringDSN selects the metering store: empty for the embedded store in
	// DataDir, or clickhouse://host:9000/database[?cluster=NAME&…] for
	// ClickHouse (metering/clickhouse.DSN lists the options).
	MeteringDSN string `yaml:"metering_dsn"`
	// StateDSN selects the state store (invoices, their numbers, frozen
	// inputs, the audit log): empty for the embedded store in DataDir, or
	// postgres://user@host:5432/database for PostgreSQL, which several
	// collectors can share.
	StateDSN string `yaml:"state_dsn"`
	// Batch is the batching writer between the collector and the metering
	// store: on by default for ClickHouse, off for the embedded store.
	Batch batching.Config `yaml:"batch"`
}

// MeteringBatch returns the batching writer's configuration when the writer
// is on for the configured metering store, nil when it is off.
func (c *StoreConfig) MeteringBatch() *batching.Config {
	if !c.Batch.On(c.MeteringDSN != "") {
		return nil
	}
	b := c.Batch
	return &b
}

// minLogRetention keeps a typo (log_retention: 1m) from wiping a tenant's logs.
const minLogRetention = time.Hour

// Default returns the configuration used when the file leaves a field out.
func Default() Config {
	return Config{
		TimeZone:  "Europe/Brussels",
		Log:       LogConfig{Level: "info", Format: "text"},
		Store:     StoreConfig{DataDir: "data", Batch: batching.DefaultConfig()},
		Collector: collector.DefaultConfig(),
		Agent:     agent.DefaultConfig(),
		Tracing:   telemetry.TracingConfig{Exporter: telemetry.ExporterNone},
		Billing:   defaultBilling(),

		Maintenance: defaultMaintenance(),
	}
}

// Overrides maps environment variables to the fields they override.
func (c *Config) overrides() map[string]*string {
	return map[string]*string{
		"PAASMETER_TIME_ZONE":        &c.TimeZone,
		"PAASMETER_LOG_LEVEL":        &c.Log.Level,
		"PAASMETER_LOG_FORMAT":       &c.Log.Format,
		"PAASMETER_DATA_DIR":         &c.Store.DataDir,
		"PAASMETER_METERING_DSN":     &c.Store.MeteringDSN,
		"PAASMETER_STATE_DSN":        &c.Store.StateDSN,
		"PAASMETER_RATE_CARD":        &c.Billing.RateCard,
		"PAASMETER_LISTEN":           &c.Collector.Listen,
		"PAASMETER_ADMIN_LISTEN":     &c.Collector.AdminListen,
		"PAASMETER_TRACING_EXPORTER": (*string)(&c.Tracing.Exporter),
		"PAASMETER_NODE":             &c.Agent.Node,
		"PAASMETER_COLLECTOR_URL":    &c.Agent.CollectorURL,
		"PAASMETER_SPOOL_DIR":        &c.Agent.SpoolDir,
		"PAASMETER_DOCKER_HOST":      &c.Agent.DockerHost,
		"PAASMETER_OTLP_ENDPOINT":    &c.Tracing.Endpoint,
	}
}

// EnvironmentVariables lists the variables that override the file, sorted.
func EnvironmentVariables() []string {
	var c Config
	var out []string
	for k := range c.overrides() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// Load reads the file at path (strictly: unknown keys are errors), applies the
// environment overrides that getenv returns, and validates the result.
func Load(path string, getenv func(string) string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path, getenv)
}

// Parse is Load on the file's content; name is used in error messages.
func Parse(data []byte, name string, getenv func(string) string) (*Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	// An empty file (io.EOF) means all defaults.
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	for k, field := range c.overrides() {
		if v := getenv(k); v != "" {
			*field = v
		}
	}
	if getenv("PAASMETER_COLLECTOR_URL") != "" {
		// It names the one collector to ship to: the file's list would
		// otherwise take precedence over it (agent.Config.URLs).
		c.Agent.CollectorURLs = nil
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s is invalid:\n%w", name, err)
	}
	return &c, nil
}

var tenantRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Validate reports every problem of c, one per line, each prefixed by its path
// in the file.
func (c *Config) Validate() error {
	var errs []error
	in := func(section string, err error) {
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, fmt.Errorf("%s.%s", section, line))
		}
	}
	if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "" {
		errs = append(errs, fmt.Errorf("time_zone: %q is not an IANA time zone such as Europe/Brussels", c.TimeZone))
	}
	if _, err := c.Log.SlogLevel(); err != nil {
		errs = append(errs, fmt.Errorf("log.level: %w", err))
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log.format: %q must be text or json", c.Log.Format))
	}
	if c.Store.DataDir == "" {
		errs = append(errs, errors.New("store.data_dir: is required"))
	}
	if c.Store.MeteringDSN != "" {
		if _, err := clickhouse.ParseDSN(c.Store.MeteringDSN); err != nil {
			errs = append(errs, fmt.Errorf("store.metering_dsn: %w", err))
		}
	}
	if d := c.Store.StateDSN; d != "" && !strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") {
		errs = append(errs, errors.New("store.state_dsn: must be a postgres:// URL, or empty for the embedded store"))
	}
	in("store.batch", c.Store.Batch.Validate())
	in("collector", c.Collector.Validate())
	in("agent", c.Agent.Validate())
	in("tracing", c.Tracing.Validate())
	if err := c.Portal.Validate(); err != nil { // its messages name portal.…
		errs = append(errs, err)
	}

	known := map[string]bool{}
	for i, t := range c.Tenants {
		switch {
		case !tenantRE.MatchString(t.ID):
			errs = append(errs, fmt.Errorf("tenants[%d].id: %q must be 1-63 lower-case letters, digits or '-'", i, t.ID))
		case known[t.ID]:
			errs = append(errs, fmt.Errorf("tenants[%d].id: %q is configured twice", i, t.ID))
		}
		known[t.ID] = true
		if t.LogRetention != 0 && t.LogRetention < minLogRetention {
			errs = append(errs, fmt.Errorf("tenants[%d].log_retention: %s is below the minimum of %s (leave it out for the default of %s)",
				i, t.LogRetention, minLogRetention, institution.DefaultLogRetention))
		}
	}
	errs = append(errs, c.validateBilling()...)
	errs = append(errs, c.validateMaintenance(known)...)
	names := map[string]bool{}
	for i, t := range c.Tokens {
		in(fmt.Sprintf("tokens[%d]", i), t.Validate(func(id string) bool { return known[id] }))
		if names[t.Name] {
			errs = append(errs, fmt.Errorf("tokens[%d].name: %q is used twice", i, t.Name))
		}
		names[t.Name] = true
	}
	errs = append(errs, c.validateNodeCertificates(known)...)
	return errors.Join(errs...)
}

// validateNodeCertificates checks node_certificates against the client CAs
// that verify them: without node_certificates no certificate is taken, and
// without the CAs none is verified.
func (c *Config) validateNodeCertificates(known map[string]bool) []error {
	var errs []error
	nodes := map[string]bool{}
	for i, nc := range c.NodeCertificates {
		if err := nc.Validate(func(id string) bool { return known[id] }); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				errs = append(errs, fmt.Errorf("node_certificates[%d].%s", i, line))
			}
		}
		if nodes[nc.Node] {
			errs = append(errs, fmt.Errorf("node_certificates[%d].node: %q is listed twice", i, nc.Node))
		}
		nodes[nc.Node] = true
	}
	switch ca := c.Collector.TLS.ClientCAFile; {
	case ca != "" && len(c.NodeCertificates) == 0:
		errs = append(errs, errors.New("node_certificates: collector.tls.client_ca_file is set, so list each node whose certificate may connect "+
			"and the institutions it may run ({node: node-1, tenants: [caami]}); no certificate is taken without it"))
	case ca == "" && len(c.NodeCertificates) > 0:
		errs = append(errs, errors.New("node_certificates: needs collector.tls.client_ca_file, the CAs that verify the nodes' certificates"))
	}
	return errs
}

// Location returns the platform's time zone.
func (c *Config) Location() (*time.Location, error) { return time.LoadLocation(c.TimeZone) }

// AccessLogPath returns collector.access_log, or access.jsonl in the data
// directory. A data directory that already has the audit.jsonl of releases
// before 2026-12-07 (when the file was the "audit log") keeps growing that
// file: the operators' reads stay in one log.
func (c *Config) AccessLogPath() string {
	if c.Collector.AccessLog != "" {
		return c.Collector.AccessLog
	}
	if old := filepath.Join(c.Store.DataDir, "audit.jsonl"); fileExists(old) {
		return old
	}
	return filepath.Join(c.Store.DataDir, "access.jsonl")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// SlogLevel parses the log level.
func (l LogConfig) SlogLevel() (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("%q must be debug, info, warn or error", l.Level)
	}
	return lv, nil
}
