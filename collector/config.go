package collector

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

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
	// MaxInflightBatches bounds the batches being decoded and stored at once;
	// a batch that waits longer than QueueTimeout for a slot gets 429.
	MaxInflightBatches int           `yaml:"max_inflight_batches"`
	QueueTimeout       time.Duration `yaml:"queue_timeout"`
	// ShutdownTimeout bounds how long a shutdown waits for in-flight requests.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	lim := usage.DefaultLimits()
	return Config{
		Listen:             "127.0.0.1:8080",
		AdminListen:        "127.0.0.1:9090",
		MaxBodyBytes:       16 << 20,
		MaxRecords:         lim.MaxRecords,
		FutureSkew:         lim.FutureSkew,
		Horizon:            lim.Horizon,
		MaxWindow:          lim.MaxWindow,
		MaxInflightBatches: 4,
		QueueTimeout:       5 * time.Second,
		ShutdownTimeout:    30 * time.Second,
	}
}

// Limits returns the record limits c configures.
func (c *Config) Limits() usage.Limits {
	return usage.Limits{MaxRecords: c.MaxRecords, FutureSkew: c.FutureSkew, Horizon: c.Horizon, MaxWindow: c.MaxWindow}
}

// Validate reports what is wrong with c, naming each field.
func (c *Config) Validate() error {
	var errs []error
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
	if c.MaxInflightBatches <= 0 {
		errs = append(errs, errors.New("max_inflight_batches: must be positive"))
	}
	if c.QueueTimeout < 0 {
		errs = append(errs, errors.New("queue_timeout: must not be negative"))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, errors.New("shutdown_timeout: must be positive"))
	}
	return errors.Join(errs...)
}
