package clickhouse

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
)

var quiet = slog.New(slog.DiscardHandler)

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	for name, target := range map[string]interface{ DSN(testing.TB) string }{
		"single server": chtest.Single(t), "two shards": chtest.TwoShards(t), "replicated": chtest.Replicated(t),
	} {
		t.Run(name, func(t *testing.T) {
			dsn := target.DSN(t)
			versions := func(s *Store) []uint64 {
				t.Helper()
				var out []uint64
				for _, n := range s.nodes {
					var rows, max uint64
					if err := n.conn.QueryRow(ctx, "SELECT count(), toUInt64(max(version)) FROM "+s.dsn.Database+".schema_migrations").Scan(&rows, &max); err != nil {
						t.Fatal(err)
					}
					if max != uint64(len(migrations)) {
						t.Fatalf("%s is at schema version %d, want %d", n.addr, max, len(migrations))
					}
					out = append(out, rows)
				}
				return out
			}
			s, err := Open(ctx, dsn, quiet)
			if err != nil {
				t.Fatal(err)
			}
			first := versions(s)
			s.Close()

			t.Log("opening the store again migrates nothing")
			s, err = Open(ctx, dsn, quiet)
			if err != nil {
				t.Fatalf("second open: %v", err)
			}
			if again := versions(s); !slices.Equal(again, first) {
				t.Fatalf("schema_migrations rows per server went from %v to %v", first, again)
			}

			t.Log("a migration that adds columns, run again (interrupted before its version was recorded), finds them there")
			l := layout{database: s.dsn.Database, cluster: s.dsn.Cluster, replicated: s.dsn.Replicated}
			for _, m := range migrations {
				if m.name != "content hashes" {
					continue
				}
				nodes := s.nodes
				if l.replicated {
					nodes = nodes[:1] // shard 1's first replica: its local table and its Distributed one
				}
				for _, n := range nodes {
					for _, stmt := range m.statements(l) {
						if err := n.conn.Exec(ctx, stmt.sql); !isDuplicateColumn(err) {
							t.Fatalf("%s again on %s: %v, want the error of a column that exists", stmt.sql, n.addr, err)
						}
					}
				}
			}

			t.Log("a server whose schema is newer than this binary knows makes Open refuse")
			last := s.nodes[len(s.nodes)-1]
			err = insert(ctx, last.conn, "INSERT INTO "+s.dsn.Database+".schema_migrations (version, name, applied_at)", 1, func(int) []any {
				return []any{uint32(len(migrations) + 1), "from the future", time.Now()}
			})
			s.Close()
			if err != nil {
				t.Fatal(err)
			}
			_, err = Open(ctx, dsn, quiet)
			if err == nil || !strings.Contains(err.Error(), "newer than this binary knows") || !strings.Contains(err.Error(), "upgrade paasmeter") {
				t.Fatalf("Open of a newer schema: %v; want a refusal that says to upgrade", err)
			}
		})
	}
}
