package tail

import (
	"errors"
	"fmt"

	"github.com/paasmeter/paasmeter/logs"
)

// Config is the agent's logs section (agent.logs in the configuration file).
type Config struct {
	// Enabled ships the output of the labelled containers.
	Enabled bool `yaml:"enabled"`
	// MaxLineBytes is the longest line shipped; a longer one is cut and ends
	// with logs.TruncationMarker, saying how many bytes were cut.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// ContainerRate bounds the lines of one container; TenantRate those of
	// all the containers of one institution on this node. Lines over either
	// are dropped and counted.
	ContainerRate Rate `yaml:"container_rate"`
	TenantRate    Rate `yaml:"tenant_rate"`
}

// Rate is a token bucket: lines per second sustained, and how many lines at
// once a quiet stream may write before the rate holds it back.
type Rate struct {
	LinesPerSecond float64 `yaml:"lines_per_second"`
	Burst          int     `yaml:"burst"`
}

// DefaultConfig returns the defaults: lines of up to 16 KiB (Docker's own
// piece size), 1,000 lines/s per container with bursts of 10,000, and 5,000
// lines/s per institution and node with bursts of 50,000.
func DefaultConfig() Config {
	return Config{
		Enabled:       true,
		MaxLineBytes:  16 << 10,
		ContainerRate: Rate{LinesPerSecond: 1000, Burst: 10000},
		TenantRate:    Rate{LinesPerSecond: 5000, Burst: 50000},
	}
}

// minLineBytes leaves a cut line room for text beside its marker.
const minLineBytes = 1 << 10

// Validate reports what is wrong with c, naming each field.
func (c *Config) Validate() error {
	var errs []error
	if maxLine := logs.DefaultLimits().MaxLineBytes; c.MaxLineBytes < minLineBytes || c.MaxLineBytes > maxLine {
		errs = append(errs, fmt.Errorf("max_line_bytes: %d must be between %d and %d (the collector's limit)", c.MaxLineBytes, minLineBytes, maxLine))
	}
	if err := c.ContainerRate.validate(); err != nil {
		errs = append(errs, fmt.Errorf("container_rate.%w", err))
	}
	if err := c.TenantRate.validate(); err != nil {
		errs = append(errs, fmt.Errorf("tenant_rate.%w", err))
	}
	return errors.Join(errs...)
}

func (r Rate) validate() error {
	switch {
	case r.LinesPerSecond <= 0:
		return fmt.Errorf("lines_per_second: %g must be positive", r.LinesPerSecond)
	case r.Burst < 1:
		return fmt.Errorf("burst: %d must be at least 1", r.Burst)
	}
	return nil
}
