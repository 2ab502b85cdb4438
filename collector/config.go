package collector

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/collector/readquery"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/usage"
)

// Config is the collector's part of the configuration file.
type Config struct {
	// Listen is the tenants' listener: the APIs agents and institutions call.
	Listen string `yaml:"listen"`
	// AdminListen serves /metrics and pprof, which carry every tenant's data:
	// loopback only, unless AdminTLS and AdminTokenSHA256 are both set.
	AdminListen string `yaml:"admin_listen"`
	// TLS is the tenants' listener's; with client_ca_file, an agent may
	// authenticate with a client certificate naming its node (auth.CertNode,
	// node_certificates). With client_auth require, agents' bearer tokens
	// are refused and agents connect to AgentListen, whose handshake
	// requires their certificate; the tenants' listener then asks for none.
	TLS tlsconf.ServerConfig `yaml:"tls"`
	// AgentListen is the agents' listener, with tls.client_auth require
	// only: the same routes, over a handshake that requires a client
	// certificate signed by tls.client_ca_file.
	AgentListen string `yaml:"agent_listen"`
	// AdminTLS is the admin listener's (no client certificates: it goes by
	// AdminTokenSHA256).
	AdminTLS tlsconf.ServerConfig `yaml:"admin_tls"`
	// AdminTokenSHA256, when set, is the hex SHA-256 of the bearer token
	// /metrics and pprof require (paasmeter token hash): Prometheus's, not
	// an API token.
	AdminTokenSHA256 string `yaml:"admin_token_sha256"`
	// Pprof serves /debug/pprof on the admin listener; off by default,
	// since profiles carry the command line and the heap.
	Pprof bool `yaml:"pprof"`
	// MaxBodyBytes bounds a request body (after gzip decoding too).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxRecords bounds the records of one batch.
	MaxRecords int `yaml:"max_records"`
	// FutureSkew and Horizon bound window times (DESIGN.md §3).
	FutureSkew time.Duration `yaml:"future_skew"`
	Horizon    time.Duration `yaml:"horizon"`
	// MaxWindow is the longest window one record may cover.
	MaxWindow time.Duration `yaml:"max_window"`
	// Bounds are the physical bounds of a record's quantity per window
	// (usage.CheckBounds), in the limits section.
	Bounds usage.Bounds `yaml:"limits"`
	// MaxInflightBatches bounds the batches being decoded and stored at once;
	// a batch that waits longer than QueueTimeout for a slot gets 429. Behind
	// a batching writer (Options.Batch) a batch leaves its slot once decoded:
	// the writer's max_queued bounds what waits for the store.
	MaxInflightBatches int           `yaml:"max_inflight_batches"`
	QueueTimeout       time.Duration `yaml:"queue_timeout"`
	// BodyReadTimeout bounds how long a batch or push body may take to
	// arrive. Bodies are read before they take a slot, so a slow client
	// holds none; past this it gets 408.
	BodyReadTimeout time.Duration `yaml:"body_read_timeout"`
	// ShutdownTimeout bounds how long a shutdown waits for in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// AccessLog is the file operators' reads of tenant data are recorded in;
	// empty means access.jsonl in the store's data directory. (Changes to
	// invoices and windows go to the state store's audit log.)
	AccessLog string `yaml:"access_log"`
	// RenamedAuditLog is access_log's name before 2026-12-07, read only to
	// refuse it with a message naming the new key: "audit log" is now the
	// state store's log of changes alone.
	RenamedAuditLog string     `yaml:"audit_log"`
	Logs            LogsConfig `yaml:"logs"`
	// EarliestWindow is the earliest window start of a record accepted:
	// the rate card's first version when billing is configured (DESIGN.md
	// §5: records the rate card can never price are refused at ingest),
	// zero otherwise. Set from the rate card, not read from the file.
	EarliestWindow time.Time `yaml:"-"`
}

// LogsConfig bounds log lines as Loki does, and paces their retention.
type LogsConfig struct {
	// MaxLineBytes, MaxLabels, MaxLabelNameBytes and MaxLabelValueBytes bound
	// every line and stream, from agents and Loki clients alike.
	MaxLineBytes       int `yaml:"max_line_bytes"`
	MaxLabels          int `yaml:"max_labels"`
	MaxLabelNameBytes  int `yaml:"max_label_name_bytes"`
	MaxLabelValueBytes int `yaml:"max_label_value_bytes"`
	// MaxLines bounds an agent's batch; max_lines_per_push bounds a Loki push.
	MaxLines int `yaml:"max_lines"`
	// IngestionRateBytes and IngestionBurstBytes are each tenant's token
	// bucket for Loki pushes (line bytes per second), as Loki's
	// ingestion_rate_mb and ingestion_burst_size_mb.
	IngestionRateBytes  int `yaml:"ingestion_rate_bytes"`
	IngestionBurstBytes int `yaml:"ingestion_burst_bytes"`
	// IngestionRateLines and IngestionBurstLines are the same bucket counted
	// in lines, so that many tiny lines cost what they cost to store.
	IngestionRateLines  int `yaml:"ingestion_rate_lines"`
	IngestionBurstLines int `yaml:"ingestion_burst_lines"`
	// PushRateRequests and PushBurstRequests bound each tenant's pushes per second.
	PushRateRequests  int `yaml:"push_rate_requests"`
	PushBurstRequests int `yaml:"push_burst_requests"`
	// PerStreamRateBytes and PerStreamBurstBytes are each stream's bucket of
	// line bytes, as Loki's per_stream_rate_limit and _burst.
	PerStreamRateBytes  int `yaml:"per_stream_rate_bytes"`
	PerStreamBurstBytes int `yaml:"per_stream_burst_bytes"`
	// MaxLinesPerPush bounds the entries of one Loki push.
	MaxLinesPerPush int `yaml:"max_lines_per_push"`
	// MaxStreamsPerTenant bounds a tenant's stored streams (Loki's
	// max_global_streams_per_user); a push that would create more is refused.
	// Retention deletes streams left without lines.
	MaxStreamsPerTenant int `yaml:"max_streams_per_tenant"`
	// MaxInflightPushes bounds the institutions' Loki pushes being decoded
	// and stored at once, apart from max_inflight_batches, which agents'
	// batches (and pushes) keep for themselves; MaxInflightPushesPerTenant
	// bounds one institution's share of them.
	MaxInflightPushes          int `yaml:"max_inflight_pushes"`
	MaxInflightPushesPerTenant int `yaml:"max_inflight_pushes_per_tenant"`
	// RetentionInterval is how often lines older than their tenant's
	// log_retention are deleted.
	RetentionInterval time.Duration `yaml:"retention_interval"`
	// MaxResponseBytes bounds one answer of a log read (the logs API and
	// Loki's query_range); past it the answer ends with a cursor to go on.
	MaxResponseBytes int `yaml:"max_response_bytes"`
	// MaxConcurrentReadsPerTenant and MaxConcurrentReads bound the log reads
	// in flight, per tenant and in all; reads past them get 429. Reads have
	// these slots of their own, never the ingest slots.
	MaxConcurrentReadsPerTenant int `yaml:"max_concurrent_reads_per_tenant"`
	MaxConcurrentReads          int `yaml:"max_concurrent_reads"`
	// MaxQueryRange bounds the time range of a log read.
	MaxQueryRange time.Duration `yaml:"max_query_range"`
	// ReadTimeout bounds how long a log read may take to reach its client,
	// so a client that stops reading gives its slot back.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// ReadRateBytes and ReadBurstBytes are each tenant's budget of log read
	// answers, in bytes sent per second: a read starts only while its
	// tenant's budget is not overdrawn, and pays for its answer once sent.
	ReadRateBytes  int `yaml:"read_rate_bytes"`
	ReadBurstBytes int `yaml:"read_burst_bytes"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	lim, ll := usage.DefaultLimits(), logs.DefaultLimits()
	return Config{
		Listen:             "127.0.0.1:8080",
		AdminListen:        "127.0.0.1:9090",
		MaxBodyBytes:       16 << 20,
		MaxRecords:         lim.MaxRecords,
		FutureSkew:         lim.FutureSkew,
		Horizon:            lim.Horizon,
		MaxWindow:          lim.MaxWindow,
		Bounds:             usage.DefaultBounds(),
		MaxInflightBatches: 4,
		QueueTimeout:       5 * time.Second,
		BodyReadTimeout:    10 * time.Second,
		ShutdownTimeout:    30 * time.Second,
		Logs: LogsConfig{
			MaxLineBytes:               ll.MaxLineBytes,
			MaxLabels:                  ll.MaxLabels,
			MaxLabelNameBytes:          ll.MaxLabelNameBytes,
			MaxLabelValueBytes:         ll.MaxLabelValueBytes,
			MaxLines:                   ll.MaxLines,
			IngestionRateBytes:         4 << 20, // Loki's defaults: 4 MB/s, bursts of 6 MB
			IngestionBurstBytes:        6 << 20,
			IngestionRateLines:         40_000,
			IngestionBurstLines:        60_000,
			PushRateRequests:           20,
			PushBurstRequests:          40,
			PerStreamRateBytes:         3 << 20, // Loki's defaults: 3 MB/s, bursts of 15 MB
			PerStreamBurstBytes:        15 << 20,
			MaxLinesPerPush:            60_000,
			MaxStreamsPerTenant:        10_000,
			MaxInflightPushes:          2,
			MaxInflightPushesPerTenant: 1,
			RetentionInterval:          time.Hour,
			MaxResponseBytes:           8 << 20,
			// Loki's max_concurrent_tail_requests and max_query_length are alike.
			MaxConcurrentReadsPerTenant: 2,
			MaxConcurrentReads:          8,
			MaxQueryRange:               31 * 24 * time.Hour,
			ReadTimeout:                 time.Minute,
			// As much as a tenant may push (ingestion_rate_bytes), and four
			// full answers at once.
			ReadRateBytes:  4 << 20,
			ReadBurstBytes: 32 << 20,
		},
	}
}

// Limits returns the record limits c configures.
func (c *Config) Limits() usage.Limits {
	return usage.Limits{MaxRecords: c.MaxRecords, FutureSkew: c.FutureSkew, Horizon: c.Horizon, MaxWindow: c.MaxWindow, Earliest: c.EarliestWindow}
}

// LogLimits returns the log-line limits c configures; lines share the
// records' future skew and horizon.
func (c *Config) LogLimits() logs.Limits {
	return logs.Limits{MaxLineBytes: c.Logs.MaxLineBytes, MaxLabels: c.Logs.MaxLabels, MaxLabelNameBytes: c.Logs.MaxLabelNameBytes,
		MaxLabelValueBytes: c.Logs.MaxLabelValueBytes, MaxLines: c.Logs.MaxLines, FutureSkew: c.FutureSkew, Horizon: c.Horizon}
}

// Validate reports what is wrong with c, naming each field.
func (c *Config) Validate() error {
	var errs []error
	if c.RenamedAuditLog != "" {
		errs = append(errs, errors.New("audit_log: renamed access_log (the log of operators' reads of tenant data)"))
	}
	for _, l := range []struct{ name, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port: %w", l.name, l.addr, err))
		}
	}
	if c.AdminListen != "" && !tlsconf.IsLoopback(c.AdminListen) && (!c.AdminTLS.Enabled() || c.AdminTokenSHA256 == "") {
		errs = append(errs, fmt.Errorf("admin_listen: %q is not a loopback address: set admin_tls (cert_file, key_file) and admin_token_sha256 to listen beyond this host", c.AdminListen))
	}
	for _, t := range []struct {
		name string
		c    tlsconf.ServerConfig
	}{{"tls", c.TLS}, {"admin_tls", c.AdminTLS}} {
		if err := t.c.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s.%w", t.name, err))
		}
	}
	switch {
	case c.TLS.RequiresClientCert() && c.AgentListen == "":
		errs = append(errs, errors.New("agent_listen: required with tls.client_auth require: agents connect there with their certificate, institutions keep listen with their tokens"))
	case !c.TLS.RequiresClientCert() && c.AgentListen != "":
		errs = append(errs, errors.New("agent_listen: only with tls.client_auth require (otherwise agents share listen)"))
	case c.AgentListen != "":
		if _, _, err := net.SplitHostPort(c.AgentListen); err != nil {
			errs = append(errs, fmt.Errorf("agent_listen: %q is not host:port: %w", c.AgentListen, err))
		}
		if (c.AgentListen == c.Listen || c.AgentListen == c.AdminListen) && !strings.HasSuffix(c.AgentListen, ":0") {
			errs = append(errs, errors.New("agent_listen: must differ from listen and admin_listen"))
		}
	}
	if c.AdminTLS.ClientCAFile != "" || c.AdminTLS.ClientAuth != "" {
		errs = append(errs, errors.New("admin_tls.client_ca_file, client_auth: not supported: the admin listener goes by admin_token_sha256"))
	}
	if c.AdminTokenSHA256 != "" && !sha256Hex.MatchString(c.AdminTokenSHA256) {
		errs = append(errs, errors.New("admin_token_sha256: must be 64 lower-case hex digits (paasmeter token hash)"))
	}
	if c.Listen == c.AdminListen && !strings.HasSuffix(c.Listen, ":0") {
		errs = append(errs, errors.New("admin_listen: must differ from listen, so operators' metrics never reach tenants"))
	}
	if c.MaxBodyBytes < 1024 {
		errs = append(errs, fmt.Errorf("max_body_bytes: %d is below the minimum of 1024", c.MaxBodyBytes))
	}
	if err := c.Limits().Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Bounds.Validate("limits."); err != nil {
		errs = append(errs, err)
	}
	if c.MaxInflightBatches <= 0 {
		errs = append(errs, errors.New("max_inflight_batches: must be positive"))
	}
	if c.QueueTimeout < 0 {
		errs = append(errs, errors.New("queue_timeout: must not be negative"))
	}
	if c.BodyReadTimeout <= 0 {
		errs = append(errs, errors.New("body_read_timeout: must be positive"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout: must be positive"))
	}
	if err := c.Logs.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			errs = append(errs, fmt.Errorf("logs.%s", line))
		}
	}
	return errors.Join(errs...)
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Validate reports what is wrong with c, naming each field.
func (c *LogsConfig) Validate() error {
	var errs []error
	for _, f := range []struct {
		name       string
		value, min int
	}{
		{"max_line_bytes", c.MaxLineBytes, 256},
		{"max_labels", c.MaxLabels, 1},
		{"max_label_name_bytes", c.MaxLabelNameBytes, 1},
		{"max_label_value_bytes", c.MaxLabelValueBytes, 1},
		{"max_lines", c.MaxLines, 1},
		{"ingestion_rate_bytes", c.IngestionRateBytes, 1},
		{"ingestion_burst_bytes", c.IngestionBurstBytes, 1},
		{"ingestion_rate_lines", c.IngestionRateLines, 1},
		{"ingestion_burst_lines", c.IngestionBurstLines, 1},
		{"push_rate_requests", c.PushRateRequests, 1},
		{"push_burst_requests", c.PushBurstRequests, 1},
		{"per_stream_rate_bytes", c.PerStreamRateBytes, 1},
		{"per_stream_burst_bytes", c.PerStreamBurstBytes, c.MaxLineBytes},
		{"max_lines_per_push", c.MaxLinesPerPush, 1},
		{"max_streams_per_tenant", c.MaxStreamsPerTenant, 1},
		{"max_inflight_pushes", c.MaxInflightPushes, 1},
		{"max_inflight_pushes_per_tenant", c.MaxInflightPushesPerTenant, 1},
		{"max_concurrent_reads_per_tenant", c.MaxConcurrentReadsPerTenant, 1},
		{"max_concurrent_reads", c.MaxConcurrentReads, c.MaxConcurrentReadsPerTenant},
		// An answer always holds its first line: the budget must take the
		// longest line and its labels with JSON's escapes (up to 6 bytes a byte).
		{"max_response_bytes", c.MaxResponseBytes, 16 * c.MaxLineBytes},
		{"read_rate_bytes", c.ReadRateBytes, 1},
		// A read pays for its answer in one go: the burst must hold the largest.
		{"read_burst_bytes", c.ReadBurstBytes, c.MaxResponseBytes},
	} {
		if f.value < f.min {
			errs = append(errs, fmt.Errorf("%s: %d is below the minimum of %d", f.name, f.value, f.min))
		}
	}
	// A push is admitted whole or not at all: a burst below the longest line
	// would refuse that line forever.
	if c.IngestionBurstBytes < c.MaxLineBytes {
		errs = append(errs, fmt.Errorf("ingestion_burst_bytes: %d must be at least max_line_bytes (%d)", c.IngestionBurstBytes, c.MaxLineBytes))
	}
	if c.MaxInflightPushesPerTenant > c.MaxInflightPushes {
		errs = append(errs, fmt.Errorf("max_inflight_pushes_per_tenant: %d must not exceed max_inflight_pushes (%d)", c.MaxInflightPushesPerTenant, c.MaxInflightPushes))
	}
	// The label endpoints look back 6h by default.
	if c.MaxQueryRange < readquery.DefaultLabelRange {
		errs = append(errs, fmt.Errorf("max_query_range: %s is below the minimum of %s", c.MaxQueryRange, readquery.DefaultLabelRange))
	}
	if c.ReadTimeout < time.Second {
		errs = append(errs, fmt.Errorf("read_timeout: %s is below the minimum of 1s", c.ReadTimeout))
	}
	if c.RetentionInterval < time.Second {
		errs = append(errs, fmt.Errorf("retention_interval: %s is below the minimum of 1s", c.RetentionInterval))
	}
	return errors.Join(errs...)
}
