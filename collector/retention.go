package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// RunRetention deletes every tenant's log lines older than its retention, at
// once and then every Logs.RetentionInterval, until ctx is done. A failed pass
// is logged and tried again at the next tick: lines are kept a little longer,
// never lost early. Run calls it. Deleting is idempotent, so several
// collectors could run it at once; with Options.RetentionHeld only the one
// that holds the lease does, sparing ClickHouse the same mutations twice.
func (s *Server) RunRetention(ctx context.Context) {
	tick := time.NewTicker(s.cfg.Logs.RetentionInterval)
	defer tick.Stop()
	for {
		if s.retentionHeld != nil && !s.retentionHeld() {
			s.log.Debug("log retention pass skipped: another collector holds the lease")
		} else if _, err := s.EnforceRetention(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("log retention pass failed; retrying at the next interval", "interval", s.cfg.Logs.RetentionInterval, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// EnforceRetention deletes, for every tenant, the lines whose time is more
// than its retention before the collector's clock, and returns how many it
// deleted. A tenant whose deletion fails does not stop the others.
func (s *Server) EnforceRetention(ctx context.Context) (int64, error) {
	now := s.clock.Now()
	tenants := make([]string, 0, len(s.keep))
	for t := range s.keep {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants) // a stable order makes the log readable
	var total int64
	var errs []error
	for _, t := range tenants {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("log retention: %w", err)
		}
		before := now.Add(-s.keep[t])
		n, err := s.store.DeleteLogs(ctx, t, before)
		if err != nil {
			errs = append(errs, fmt.Errorf("log retention of %s: %w", t, err))
			continue
		}
		total += n
		s.metrics.logLinesDeleted.WithLabelValues(t).Add(float64(n))
		if n > 0 {
			s.log.Info("log retention: deleted old lines", "tenant", t, "lines", n, "before", before.UTC().Format(time.RFC3339))
		}
	}
	return total, errors.Join(errs...)
}
