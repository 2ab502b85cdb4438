package ha_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/state/postgres/pgtest"
)

// pgOutage is how long the collectors' PostgreSQL stays stopped (issue 21
// §3): the lease TTL (state/lease.DefaultTTL), so that every leased job
// stops during it.
const pgOutage = 30 * time.Second

// jobLeases are the leases of the collector's jobs that run on one collector
// at a time (docs/clickhouse.md, "HA: several collectors").
var jobLeases = []string{"reconcile-metrics", "sla-metrics", "log-retention"}

// TestPostgreSQLStoppedUnderLoadStopsNoIngest runs two collectors on a
// PostgreSQL of the test's own, with the four agents of the kill test fed a
// steady flow of records, and stops PostgreSQL for pgOutage. Meanwhile the
// agents' records keep being accepted, /readyz stays 200, the invoice and
// maintenance commands fail at once naming the state store, and every
// leased job stops once its lease ran out. When PostgreSQL is back the
// leases are taken again, the commands succeed, and every record sent is
// stored exactly once, with every spool empty and no dead letter.
func TestPostgreSQLStoppedUnderLoadStopsNoIngest(t *testing.T) {
	var pg *pgtest.Server
	r := newRig(t, func(t testing.TB) string { pg = pgtest.Private(t); return pg.DSN() })
	a, b := r.startCollectors()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	l := r.startLoad(ctx, 0)
	defer l.stop()
	// 800 records a second in all: a third of what the kill test's agents
	// deliver on this machine, so that the spools do not grow without end.
	stopFeeding := l.feed(ctx, 20, 100*time.Millisecond)
	defer stopFeeding()

	testenv.Eventually(t, time.Minute, "each job's lease held by one collector", func() error { return leasesHeld(1, a, b) })
	testenv.Eventually(t, time.Minute, "records delivered", func() error {
		if n := l.delivered(); n < 1000 {
			return fmt.Errorf("%d records delivered", n)
		}
		return nil
	})

	pg.Stop(t)
	stopped := time.Now()
	givenAtStop := l.given()
	t.Logf("PostgreSQL stopped with %d records given to the agents, %d of them spooled", givenAtStop, l.spooled())

	// The commands fail at once, saying what is down; the invoice run too.
	issue := []string{"invoice", "issue", "--period", r.period, "--actor", a.name, "--config", a.cfg}
	for _, args := range append(r.stateCommands(a), issue) {
		out, err := r.paasmeter(ctx, args...)
		var exit *exec.ExitError
		switch {
		case !errors.As(err, &exit) || exit.ExitCode() == 0:
			t.Errorf("paasmeter %s with PostgreSQL down: %v, want a non-zero exit\n%s", strings.Join(args, " "), err, out)
		case !strings.Contains(out, "store.state_dsn") || !strings.Contains(out, "connection refused"):
			t.Errorf("paasmeter %s with PostgreSQL down says %q: want it to name store.state_dsn and the refused connection", strings.Join(args, " "), out)
		default:
			t.Logf("paasmeter %s with PostgreSQL down: %v: %s", args[0]+" "+args[1], err, strings.TrimSpace(out))
		}
	}

	// Ingest goes on: records given after the stop are acknowledged while
	// PostgreSQL is down, through HAProxy and directly.
	const afterStop = 2000
	testenv.Eventually(t, 2*time.Minute, "records given after PostgreSQL stopped delivered", func() error {
		if n := l.delivered() - givenAtStop; n < afterStop {
			return fmt.Errorf("%d of the records given after the stop delivered", n)
		}
		return nil
	})
	// A lease that cannot be renewed runs out: every leased job stops, on
	// every collector, within the TTL.
	testenv.Eventually(t, time.Minute, "no lease held while PostgreSQL is down", func() error { return leasesHeld(0, a, b) })
	t.Logf("no lease held %s after PostgreSQL stopped", time.Since(stopped).Round(time.Second))
	// /readyz answers for the metering store alone: HAProxy keeps both
	// collectors, which keep ingesting.
	for _, c := range []*collectorProc{a, b} {
		if err := ready("http://" + c.api); err != nil {
			t.Errorf("%s with PostgreSQL down: %v, want ready", c.name, err)
		}
	}
	// The fault's length, not a wait for a condition: PostgreSQL stays
	// down pgOutage, whatever was checked above in less.
	select {
	case <-time.After(time.Until(stopped.Add(pgOutage))):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	pg.Start(t)
	restarted := time.Now()
	t.Logf("PostgreSQL started again after %s with %d records given, %d of them spooled", restarted.Sub(stopped).Round(time.Second), l.given(), l.spooled())
	for _, s := range l.agents {
		if s.acksWithin(stopped, restarted) == 0 {
			t.Errorf("%s: no batch acknowledged while PostgreSQL was down", s.name)
		}
	}

	// The collectors' pools reconnect: the leases are taken again.
	testenv.Eventually(t, 2*time.Minute, "each job's lease held by one collector again", func() error { return leasesHeld(1, a, b) })
	t.Logf("every lease held again %s after PostgreSQL started", time.Since(restarted).Round(time.Second))
	stopFeeding()
	l.waitDelivered(2*time.Minute, "every spool empty after PostgreSQL is back")
	l.stop()
	l.checkNoDeadLetters()
	r.checkStoredOnce(ctx, l.agents)
	// The same commands succeed; the invoice run, with both collectors'
	// configurations at once, issues each invoice once.
	for _, args := range r.stateCommands(b) {
		if out, err := r.paasmeter(ctx, args...); err != nil {
			t.Errorf("paasmeter %s with PostgreSQL back: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	r.checkInvoicedOnce(ctx)
}

// stateCommands are invoice and maintenance commands that read or write
// the state store, run with c's configuration. The invoice run, once
// PostgreSQL is back, is checkInvoicedOnce's.
func (r *rig) stateCommands(c *collectorProc) [][]string {
	start := time.Now().AddDate(0, 0, 10).UTC().Truncate(time.Hour).Format(time.RFC3339)
	return [][]string{
		{"invoice", "list", "--period", r.period, "--config", c.cfg},
		{"maintenance", "list", "--config", c.cfg},
		{"maintenance", "declare", "--start", start, "--duration", "1h", "--reason", "PostgreSQL outage test", "--actor", c.name, "--config", c.cfg},
	}
}

// paasmeter runs the binary with args and returns what it printed.
func (r *rig) paasmeter(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, r.bin, args...).CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("did not end within a minute: %w", err)
	}
	return string(out), err
}

// feed gives each agent n more records every interval, as a platform's
// agents collect them, until ctx ends or the returned stop is called.
func (l *load) feed(ctx context.Context, n int, every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for _, s := range l.agents {
				if err := s.add(n); err != nil {
					l.t.Errorf("%s: %v", s.name, err)
					return
				}
			}
		}
	})
	return sync.OnceFunc(func() { cancel(); wg.Wait() })
}

// given returns how many records the agents were given.
func (l *load) given() int {
	n := 0
	for _, s := range l.agents {
		n += s.given()
	}
	return n
}

// delivered returns how many records the agents' collectors acknowledged,
// or fewer: records given between the two reads count as delivered only
// at the next call.
func (l *load) delivered() int {
	given := l.given()
	return given - l.spooled()
}

// acksWithin returns how many of the agent's batches were acknowledged
// between from and to.
func (s *shipper) acksWithin(from, to time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, a := range s.acks {
		if a.After(from) && a.Before(to) {
			n++
		}
	}
	return n
}

// leasesHeld checks that each of jobLeases is held by want of the
// collectors, from their paasmeter_collector_lease_held.
func leasesHeld(want int, cs ...*collectorProc) error {
	holders := map[string]int{}
	for _, c := range cs {
		held, err := c.leases()
		if err != nil {
			return err
		}
		for _, name := range jobLeases {
			v, ok := held[name]
			if !ok {
				return fmt.Errorf("%s exports no paasmeter_collector_lease_held for %s", c.name, name)
			}
			if v {
				holders[name]++
			}
		}
	}
	for _, name := range jobLeases {
		if holders[name] != want {
			return fmt.Errorf("lease %s held by %d collectors, want %d", name, holders[name], want)
		}
	}
	return nil
}

// leases reads which leases the collector says it holds from its admin
// listener's metrics.
func (c *collectorProc) leases() (map[string]bool, error) {
	resp, err := probe("http://" + c.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: %s", c.name, resp.Status)
	}
	const prefix = `paasmeter_collector_lease_held{lease="`
	held := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), prefix)
		if !ok {
			continue
		}
		name, value, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, fmt.Errorf("%s /metrics: unexpected line %q", c.name, sc.Text())
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("%s /metrics: %q: %w", c.name, sc.Text(), err)
		}
		held[name] = v == 1
	}
	return held, sc.Err()
}
