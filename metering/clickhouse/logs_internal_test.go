package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
)

// TestRetentionKeepsAStreamAppendedToAfterItLooked puts an append at the
// worst moment of retention, on each layout: after it listed the stream rows
// without lines and before it deleted them. The append's line must read
// back with its labels; the stream left empty goes.
func TestRetentionKeepsAStreamAppendedToAfterItLooked(t *testing.T) {
	ctx := context.Background()
	base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	line := func(app string, at time.Duration, text string) logs.Line {
		l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: "caami", Time: base.Add(at), Line: text,
			Labels: map[string]string{logs.LabelApp: app, logs.LabelStream: "stdout"}}
		l.SetID()
		l.ReceivedAt = base.Add(3 * time.Hour)
		return l
	}
	for name, target := range map[string]interface{ DSN(testing.TB) string }{
		"single server": chtest.Single(t), "two shards": chtest.TwoShards(t),
	} {
		t.Run(name, func(t *testing.T) {
			s, err := Open(ctx, target.DSN(t), quiet)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := s.AppendLogs(ctx, []logs.Line{line("web", time.Second, "old"), line("gone", time.Second, "old")}); err != nil {
				t.Fatal(err)
			}
			// Retention deletes the old lines: both streams are empty.
			if _, err := s.DeleteLogs(ctx, "caami", base.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.AppendLogs(ctx, []logs.Line{line("web", time.Second, "old again"), line("gone", time.Second, "old again")}); err != nil {
				t.Fatal(err)
			}
			table := s.dsn.Database + "." + s.local("log_lines")
			var doomed [][]streamRow
			for _, n := range s.nodes {
				if err := n.conn.Exec(ctx, "ALTER TABLE "+table+" DELETE WHERE tenant = ?", "caami"); err != nil {
					t.Fatal(err)
				}
				if err := s.awaitMutations(ctx, n, s.local("log_lines")); err != nil {
					t.Fatal(err)
				}
				rows, err := s.emptyStreamRows(ctx, n, "caami")
				if err != nil {
					t.Fatal(err)
				}
				doomed = append(doomed, rows)
			}
			if got := len(slices.Concat(doomed...)); got != 2 {
				t.Fatalf("%d stream rows without lines, want the 2 of the second append", got)
			}
			// The append comes now: its stream's row was among those listed.
			if _, err := s.AppendLogs(ctx, []logs.Line{line("web", 2*time.Hour, "recent")}); err != nil {
				t.Fatal(err)
			}
			for i, n := range s.nodes {
				if err := s.deleteStreamRows(ctx, n, "caami", doomed[i]); err != nil {
					t.Fatal(err)
				}
			}
			var got []logs.Line
			if _, err := s.ScanLogs(ctx, metering.LogQuery{Tenant: "caami", From: base, To: base.Add(4 * time.Hour), Limit: 10},
				func(l logs.Line) bool { got = append(got, l); return true }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Line != "recent" || got[0].Labels[logs.LabelApp] != "web" {
				t.Fatalf("after retention raced an append, the store reads %+v; want web's recent line with its labels", got)
			}
			if stored, _, err := s.CountLogStreams(ctx, "caami", nil); err != nil || stored != 1 {
				t.Errorf("%d streams stored (%v), want web alone: gone had no line left", stored, err)
			}
		})
	}
}
