package collector_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/logs"
)

func TestRetentionLoopDeletesOldLinesAndKeepsRecentOnesPerTenant(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Logs.RetentionInterval = time.Second
	// caami keeps the default 30 days; ona keeps one day.
	e := newEnv(t, &cfg, nil, func(o *setup) { o.Institutions[1].LogRetention = 24 * time.Hour })
	seed := []logs.Line{
		logLine("caami", "pricing", "c1", "prod", now.Add(-31*24*time.Hour), "caami 31 days old"),
		logLine("caami", "pricing", "c1", "prod", now.Add(-29*24*time.Hour), "caami 29 days old"),
		logLine("caami", "pricing", "c1", "prod", now.Add(-time.Hour), "caami an hour old"),
		logLine("ona", "records", "c2", "prod", now.Add(-48*time.Hour), "ona 2 days old"),
		logLine("ona", "records", "c2", "prod", now.Add(-time.Hour), "ona an hour old"),
	}
	if a := e.postLogs(t, agentNode1, seed); a.code != 200 {
		t.Fatalf("seeding: %d %s", a.code, a.body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.srv.RunRetention(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	texts := func(tenant string) []string {
		return lineTexts(e.storedLines(t, tenant), func(l logs.Line) string { return l.Line })
	}
	// waitFor polls until the deleted-lines metric of both tenants reaches want.
	waitFor := func(caami, ona float64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			c := e.metric(t, "paasmeter_collector_log_lines_deleted_total", map[string]string{"tenant": "caami"})
			o := e.metric(t, "paasmeter_collector_log_lines_deleted_total", map[string]string{"tenant": "ona"})
			if c == caami && o == ona {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("lines deleted: caami %v, ona %v; want %v and %v", c, o, caami, ona)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// The first pass runs at once.
	waitFor(1, 1)
	if got := texts("caami"); !slices.Equal(got, []string{"caami 29 days old", "caami an hour old"}) {
		t.Errorf("caami keeps %q", got)
	}
	if got := texts("ona"); !slices.Equal(got, []string{"ona an hour old"}) {
		t.Errorf("ona keeps %q", got)
	}

	// Two days later (by the collector's clock), the next pass takes what aged past each retention.
	e.clock.Advance(2 * 24 * time.Hour)
	waitFor(2, 2)
	if got := texts("caami"); !slices.Equal(got, []string{"caami an hour old"}) {
		t.Errorf("two days later caami keeps %q", got)
	}
	if got := texts("ona"); len(got) != 0 {
		t.Errorf("two days later ona keeps %q", got)
	}
}

// TestRetentionCountsBackFromTheCollectorsClockAtAnyDate: at each of
// clocktest's instants, a line a day past the default 30 days goes and one a
// day short of it stays.
func TestRetentionCountsBackFromTheCollectorsClockAtAnyDate(t *testing.T) {
	for _, in := range clocktest.Instants(t) {
		t.Run(in.Name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil, nil)
			e.clock.Set(in.Time)
			seed := []logs.Line{
				logLine("caami", "pricing", "c1", "prod", in.Time.Add(-31*24*time.Hour), "31 days old"),
				logLine("caami", "pricing", "c1", "prod", in.Time.Add(-29*24*time.Hour), "29 days old"),
			}
			if a := e.postLogs(t, agentNode1, seed); a.code != 200 {
				t.Fatalf("seeding: %d %s", a.code, a.body)
			}
			n, err := e.srv.EnforceRetention(context.Background())
			if err != nil || n != 1 {
				t.Fatalf("retention deleted %d lines (%v), want 1", n, err)
			}
			if got := lineTexts(e.storedLines(t, "caami"), func(l logs.Line) string { return l.Line }); !slices.Equal(got, []string{"29 days old"}) {
				t.Errorf("caami keeps %q, want the line 29 days old", got)
			}
		})
	}
}
