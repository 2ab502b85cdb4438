package batching

import (
	"errors"
	"fmt"
	"time"
)

// Config is the batching writer's part of the configuration (store.batch).
type Config struct {
	// Enabled turns the writer on or off; left out, each store takes its
	// default (on for ClickHouse, which wants few large inserts; off for the
	// embedded store, which it does not speed up: docs/benchmarks.md).
	Enabled *bool `yaml:"enabled"`
	// MaxRecords flushes the gathered appends of one kind as soon as they hold
	// this many records. One append is never split: a larger one is flushed alone.
	MaxRecords int `yaml:"max_records"`
	// MaxDelay is the least time between the starts of two flushes of a kind,
	// unless MaxRecords are waiting: it bounds the inserts per second a busy
	// collector makes, and the time an append waits for a flush to start.
	MaxDelay time.Duration `yaml:"max_delay"`
	// MaxQueued bounds the records of one kind waiting for, or being written
	// by, a flush. An append that would go past it is refused at once
	// (metering.ErrOverloaded, the collector answers 429), which bounds the
	// collector's memory whatever the store's speed.
	MaxQueued int `yaml:"max_queued"`
	// FlushTimeout bounds one flush; a store slower than that fails it.
	FlushTimeout time.Duration `yaml:"flush_timeout"`
	// RetryAfter is how long appends of a kind are refused (metering.ErrNotReady,
	// the collector answers 503) after a flush of that kind found the store
	// down, and the Retry-After the agents are given: a store that is down is
	// then tried once per RetryAfter instead of once per incoming batch.
	RetryAfter time.Duration `yaml:"retry_after"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxRecords: 50_000,
		// ClickHouse's own asynchronous inserts gather for 200 ms by default.
		MaxDelay: 200 * time.Millisecond,
		// A decoded usage record takes about 500 bytes: 200,000 are about 100 MB
		// per kind, at most.
		MaxQueued:    200_000,
		FlushTimeout: 30 * time.Second,
		RetryAfter:   2 * time.Second,
	}
}

// On reports whether the writer is enabled, given the store's default.
func (c *Config) On(storeDefault bool) bool {
	if c.Enabled == nil {
		return storeDefault
	}
	return *c.Enabled
}

// Validate reports what is wrong with c, naming each field.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxRecords < 1 {
		errs = append(errs, fmt.Errorf("max_records: %d must be positive", c.MaxRecords))
	}
	if c.MaxQueued < c.MaxRecords {
		errs = append(errs, fmt.Errorf("max_queued: %d must be at least max_records (%d)", c.MaxQueued, c.MaxRecords))
	}
	if c.MaxDelay < time.Millisecond || c.MaxDelay > time.Minute {
		errs = append(errs, fmt.Errorf("max_delay: %s must be between 1ms and 1m", c.MaxDelay))
	}
	if c.FlushTimeout < time.Second {
		errs = append(errs, fmt.Errorf("flush_timeout: %s is below the minimum of 1s", c.FlushTimeout))
	}
	if c.RetryAfter < time.Second {
		// Retry-After is sent in whole seconds.
		errs = append(errs, errors.New("retry_after: must be at least 1s"))
	}
	return errors.Join(errs...)
}
