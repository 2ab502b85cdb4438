package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	chdriver "github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DropMonthsBefore drops, on every shard, the month partitions of usage
// records, the accepted ledger, events and log lines that end at or before
// before (months in UTC), and returns them as "table YYYYMM", sorted. It is
// how the platform-wide horizon is enforced: 18.16 has no table TTL, and
// dropping a partition is a file operation, where deleting rows is a mutation
// that rewrites them. The ledger goes with the records, so a dropped month
// reconciles as nothing accepted and nothing stored. Per-institution log
// retention is DeleteLogs. In replicated mode the first replica of each shard
// drops them, and the ALTER returns once every replica has
// (replication_alter_partitions_sync=2).
func (s *Store) DropMonthsBefore(ctx context.Context, before time.Time) ([]string, error) {
	var dropped []string
	for _, n := range s.shardLeads() {
		for _, name := range partitioned {
			table := s.local(name)
			var months []string
			err := scan(ctx, s, n.conn, "list partitions of "+table+" on "+n.addr, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active",
				[]any{s.dsn.Database, table}, func(rows chdriver.Rows) (string, error) {
					var p string
					return p, rows.Scan(&p)
				}, func(p string) error { months = append(months, p); return nil })
			if err != nil {
				return dropped, err
			}
			for _, p := range months {
				yyyymm, err := strconv.Atoi(p)
				if err != nil {
					return dropped, fmt.Errorf("clickhouse store: partition %q of %s is not a month", p, table)
				}
				end := time.Date(yyyymm/100, time.Month(yyyymm%100)+1, 1, 0, 0, 0, 0, time.UTC)
				if end.After(before) {
					continue
				}
				if err := n.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s.%s DROP PARTITION %d", s.dsn.Database, table, yyyymm)); err != nil {
					return dropped, s.fail(fmt.Sprintf("drop partition %d of %s on %s", yyyymm, table, n.addr), err)
				}
				s.log.Info("clickhouse partition dropped", "server", n.addr, "table", table, "month", p)
				if d := name + " " + p; !slices.Contains(dropped, d) {
					dropped = append(dropped, d)
				}
			}
		}
	}
	slices.Sort(dropped)
	return dropped, nil
}
