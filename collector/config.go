package collector

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/usage"
)

// Config is the collector's part of the configuration file.
type Config struct {
	// Listen is the tenants' listener: the APIs agents and institutions call.
	Listen string `yaml:"listen"`
	// AdminListen serves /metrics and pprof, which carry every tenant's data:
	// keep it on a private interface.
	AdminListen string `yaml:"admin_listen"`
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
	// MaxLines bounds an agent's batch. Loki pushes are bounded by
	// max_body_bytes only, because Loki clients batch by bytes and would
	// drop a push refused for its line count.
	MaxLines int `yaml:"max_lines"`
	// IngestionRateBytes and IngestionBurstBytes are each tenant's token
	// bucket for Loki pushes (line bytes per second), as Loki's
	// ingestion_rate_mb and ingestion_burst_size_mb.
	IngestionRateBytes  int `yaml:"ingestion_rate_bytes"`
	IngestionBurstBytes int `yaml:"ingestion_burst_bytes"`
	// RetentionInterval is how often lines older than their tenant's
	// log_retention are deleted.
	RetentionInterval time.Duration `yaml:"retention_interval"`
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
		ShutdownTimeout:    30 * time.Second,
		Logs: LogsConfig{
			MaxLineBytes:        ll.MaxLineBytes,
			MaxLabels:           ll.MaxLabels,
			MaxLabelNameBytes:   ll.MaxLabelNameBytes,
			MaxLabelValueBytes:  ll.MaxLabelValueBytes,
			MaxLines:            ll.MaxLines,
			IngestionRateBytes:  4 << 20, // Loki's defaults: 4 MB/s, bursts of 6 MB
			IngestionBurstBytes: 6 << 20,
			RetentionInterval:   time.Hour,
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
	if c.RetentionInterval < time.Second {
		errs = append(errs, fmt.Errorf("retention_interval: %s is below the minimum of 1s", c.RetentionInterval))
	}
	return errors.Join(errs...)
}
