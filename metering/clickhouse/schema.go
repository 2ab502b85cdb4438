package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// Every table keeps the first arrival of an id the same way. ReplacingMergeTree
// collapses the rows of one sorting key (which begins with what the id is
// derived from and ends with the id) to the one with the largest version when
// parts merge, and FINAL does the same at read time for parts not merged yet.
// The version counts down with received_at, so the largest is the earliest
// arrival. It is a DEFAULT column, not MATERIALIZED: 18.16 refuses to forward a
// MATERIALIZED column through a Distributed table.
const firstArrival = "ver UInt64 DEFAULT 18446744073709551615 - toUInt64(received_at)"

// monthOf partitions by calendar month (UTC) of a Unix-nanosecond column, so
// that the platform-wide horizon is enforced by dropping whole partitions.
func monthOf(col string) string {
	return fmt.Sprintf("toYYYYMM(toDateTime(intDiv(%s, 1000000000), 'UTC'))", col)
}

// migrations are applied in order; each server's schema_migrations records
// which ran. Never edit one that has shipped: append a new one. Statements
// must be idempotent (IF NOT EXISTS, …): without transactions, a migration
// interrupted before its version was recorded runs again.
var migrations = []migration{
	{"usage records", func(l layout) []statement {
		// Times are Unix nanoseconds in Int64: 18.16 has no DateTime64, and a
		// record's window_end and received_at carry sub-second precision.
		return l.createTable("usage_records", `
			id             FixedString(16),
			tenant         String,
			project        String,
			app            String,
			environment    String,
			container_id   String,
			run_id         String,
			volume         String,
			node           String,
			meter          String,
			quantity       Int64,
			window_start   Int64,
			window_end     Int64,
			received_at    Int64,
			schema_version UInt16,
			`+firstArrival,
			"ReplacingMergeTree(ver) PARTITION BY "+monthOf("window_start")+" ORDER BY (tenant, window_start, id)")
	}},
	{"events", func(l layout) []statement {
		return l.createTable("events", `
			id               FixedString(16),
			tenant           String,
			project          String,
			app              String,
			environment      String,
			node             String,
			container_id     String,
			run_id           String,
			replica          String,
			type             String,
			time             Int64,
			exit_code        Nullable(Int32),
			oom_killed       UInt8,
			initiator        String,
			health           String,
			probe_ok         Nullable(UInt8),
			probe_kind       String,
			probe_latency_ns Nullable(Int64),
			probe_detail     String,
			received_at      Int64,
			schema_version   UInt16,
			`+firstArrival,
			"ReplacingMergeTree(ver) PARTITION BY "+monthOf("time")+" ORDER BY (tenant, time, id)")
	}},
	{"log lines", func(l layout) []statement {
		// A stream (one label set of one tenant) is stored once, as JSON (18.16
		// has no Map), under a 64-bit id derived from its key; lines refer to it.
		// A query picks the tenant's streams its selector matches, in Go with
		// the exact LogQL semantics, then reads those streams' lines by time.
		streams := l.createTable("log_streams", `
			tenant String,
			stream UInt64,
			labels String`,
			"ReplacingMergeTree ORDER BY (tenant, stream)")
		lines := l.createTable("log_lines", `
			tenant         String,
			time           Int64,
			seq            UInt32,
			id             FixedString(16),
			stream         UInt64,
			line           String,
			received_at    Int64,
			schema_version UInt16,
			`+firstArrival,
			"ReplacingMergeTree(ver) PARTITION BY "+monthOf("time")+" ORDER BY (tenant, time, seq, id)")
		return append(streams, lines...)
	}},
	{"usage accepted ledger", func(l layout) []statement {
		// How many usage records appends reported new, per tenant and hour of
		// window start: one row per append and hour, summed by merges and at
		// read time. It is written beside usage_records, never derived from
		// it, so that reconciliation can compare the two. DateTime('UTC'),
		// not the server's zone, keeps its partitions UTC months like the
		// records' (DropMonthsBefore drops both together).
		return l.createTable("usage_accepted", `
			tenant  String,
			hour    DateTime('UTC'),
			records UInt64`,
			"SummingMergeTree(records) PARTITION BY toYYYYMM(hour) ORDER BY (tenant, hour)")
	}},

	{"content hashes", func(l layout) []statement {
		// The content hash of each record and event (usage.ContentHash,
		// events.ContentHash), so that an append tells a resend from a
		// conflict. Rows stored before have zero bytes: a repeat of them is
		// a duplicate.
		return append(l.addColumn("usage_records", "content FixedString(16)"), l.addColumn("events", "content FixedString(16)")...)
	}},
	{"log stream appends", func(l layout) []statement {
		// Which append wrote each row of a stream: every append writes one
		// after its lines, and retention deletes exactly the rows it saw
		// without lines (DeleteLogs). Rows stored before read as append 0.
		return l.addColumn("log_streams", "append_id UInt64")
	}},
}

// partitioned lists the tables partitioned by month.
var partitioned = []string{"usage_records", "usage_accepted", "events", "log_lines"}

type migration struct {
	name string
	// statements returns the DDL of this version for one server of layout l.
	statements func(l layout) []statement
}

// statement is one DDL statement of a migration and the servers that run it.
type statement struct {
	sql string
	on  target
}

// target says which servers run a statement.
type target uint8

const (
	// everyServer: each server runs it on its own tables.
	everyServer target = iota
	// oneServer: an ON CLUSTER statement, which one server runs for all and
	// ZooKeeper hands to the others.
	oneServer
	// shardLeads: the first replica of each shard runs it, and ZooKeeper
	// hands it to the shard's other replicas.
	shardLeads
)

// layout says how tables are laid out on one server: alone, as a shard, or
// as a replica of a shard.
type layout struct {
	database, cluster string
	replicated        bool
}

// onCluster is the ON CLUSTER clause of replicated mode's DDL, which the
// servers' ZooKeeper hands to every server of the cluster.
func (l layout) onCluster() string {
	if !l.replicated {
		return ""
	}
	return " ON CLUSTER " + l.cluster
}

// createTable returns the statements that create table name: on a single
// server, the table itself; on a shard, name_local, which holds the shard's
// rows, and name, a Distributed table over every shard's name_local, sharded
// by institution so that all of a tenant's rows live on one shard (where
// FINAL and the duplicate check see every copy of an id). Replicated,
// name_local is the Replicated engine of the same family, whose replicas
// share the ZooKeeper path of their shard.
func (l layout) createTable(name, columns, engine string) []statement {
	if l.cluster == "" {
		return []statement{{sql: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s (%s) ENGINE = %s", l.database, name, columns, engine)}}
	}
	on := everyServer
	if l.replicated {
		engine, on = l.replicatedEngine(name+"_local", engine), oneServer
	}
	return []statement{
		{sql: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s_local%s (%s) ENGINE = %s", l.database, name, l.onCluster(), columns, engine), on: on},
		{sql: fmt.Sprintf("CREATE TABLE IF NOT EXISTS %[1]s.%[2]s%[3]s AS %[1]s.%[2]s_local ENGINE = Distributed('%[4]s', '%[1]s', '%[2]s_local', cityHash64(tenant))",
			l.database, name, l.onCluster(), l.cluster), on: on},
	}
}

// replicatedEngine turns engine ("ReplacingMergeTree(ver) PARTITION BY …")
// into its Replicated form for table: the shard's ZooKeeper path and the
// replica's name come first among the engine's arguments. 18.16 expands the
// {shard} and {replica} macros of each server's configuration, not
// {database} or {table}: the path spells those out.
func (l layout) replicatedEngine(table, engine string) string {
	family, rest, _ := strings.Cut(engine, " ")
	args := fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s', '{replica}'", l.database, table)
	if name, more, ok := strings.Cut(family, "("); ok {
		family, args = name, args+", "+strings.TrimSuffix(more, ")")
	}
	return fmt.Sprintf("Replicated%s(%s) %s", family, args, rest)
}

// addColumn returns the statements that add column (its name and type) to
// table: on a shard, to name_local and to the Distributed table over it.
// 18.16 has no ADD COLUMN IF NOT EXISTS: migrate takes the error of a column
// that exists (a migration that ran before its version was recorded) as done.
// Replicated, name_local's ALTER runs on the first replica of each shard
// (shardLeads), and ZooKeeper hands it to the others: not ON CLUSTER,
// where 18.16's DDL worker races the replicas of a shard for who runs it
// ("Node exists … /executed") and the loser's server terminates, leaving
// every later ON CLUSTER statement waiting for it. The Distributed table's
// runs on every server, as 18.16 refuses ON CLUSTER for a table that is not
// replicated on shards that are.
func (l layout) addColumn(name, column string) []statement {
	alter := func(table string) string {
		return fmt.Sprintf("ALTER TABLE %s.%s ADD COLUMN %s", l.database, table, column)
	}
	if l.cluster == "" {
		return []statement{{sql: alter(name)}}
	}
	local := statement{sql: alter(name + "_local")}
	if l.replicated {
		local.on = shardLeads
	}
	return []statement{local, {sql: alter(name)}}
}

// migrate brings every server's schema to the last version of migrations. It
// first reads every server's version, and refuses to touch anything when one
// is newer. Each server records its own version in schema_migrations. In
// replicated mode a migration's DDL runs once, ON CLUSTER, from the first
// server, and ZooKeeper hands it to every server (which runs it even if it
// was down at the time, once it is back); the others, one server at a time.
func (s *Store) migrate(ctx context.Context) error {
	db := s.dsn.Database
	versions := make([]int, len(s.nodes))
	for i, n := range s.nodes {
		for _, stmt := range []string{
			"CREATE DATABASE IF NOT EXISTS " + db,
			"CREATE TABLE IF NOT EXISTS " + db + ".schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree ORDER BY version",
		} {
			if err := n.conn.Exec(ctx, stmt); err != nil {
				return s.fail("migrate "+n.addr, err)
			}
		}
		var v uint32
		if err := n.conn.QueryRow(ctx, "SELECT max(version) FROM "+db+".schema_migrations").Scan(&v); err != nil {
			return s.fail("migrate "+n.addr+": read the schema version", err)
		}
		if int(v) > len(migrations) {
			return fmt.Errorf("clickhouse store: database %s on %s has schema version %d, newer than this binary knows (%d): upgrade paasmeter",
				db, n.addr, v, len(migrations))
		}
		versions[i] = int(v)
	}
	l := layout{database: db, cluster: s.dsn.Cluster, replicated: s.dsn.Replicated}
	if l.replicated {
		return s.migrateOnCluster(ctx, l, versions)
	}
	for i, n := range s.nodes {
		for v := versions[i]; v < len(migrations); v++ {
			if err := s.runMigration(ctx, n, l, v, true); err != nil {
				return err
			}
			if err := s.recordVersion(ctx, n, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// migrateOnCluster runs each migration some server lacks, its ON CLUSTER
// statements once and the others on every server, and records it on every
// server that lacked it.
func (s *Store) migrateOnCluster(ctx context.Context, l layout, versions []int) error {
	for v := slices.Min(versions); v < len(migrations); v++ {
		for i, n := range s.nodes {
			if err := s.runMigration(ctx, n, l, v, i == 0); err != nil {
				return err
			}
		}
		for i, n := range s.nodes {
			if versions[i] <= v {
				if err := s.recordVersion(ctx, n, v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// runMigration runs the statements of migrations[v] that are n's to run, in
// order: with all, the oneServer ones too; the shardLeads ones only if n is
// the first replica of its shard.
func (s *Store) runMigration(ctx context.Context, n node, l layout, v int, all bool) error {
	m := migrations[v]
	lead := slices.ContainsFunc(s.shardLeads(), func(x node) bool { return x.addr == n.addr })
	for _, stmt := range m.statements(l) {
		if !all && stmt.on == oneServer || !lead && stmt.on == shardLeads {
			continue
		}
		if err := n.conn.Exec(ctx, stmt.sql); err != nil && !isDuplicateColumn(err) {
			return s.fail(fmt.Sprintf("migrate %s to version %d (%s): %s", n.addr, v+1, m.name, strings.Join(strings.Fields(stmt.sql), " ")), err)
		}
	}
	return nil
}

// recordVersion records in n's schema_migrations that migrations[v] ran.
func (s *Store) recordVersion(ctx context.Context, n node, v int) error {
	m := migrations[v]
	err := insert(ctx, n.conn, "INSERT INTO "+s.dsn.Database+".schema_migrations (version, name, applied_at)", 1, func(int) []any {
		return []any{uint32(v + 1), m.name, time.Now()}
	})
	if err != nil {
		return s.fail(fmt.Sprintf("migrate %s: record version %d", n.addr, v+1), err)
	}
	s.log.Info("clickhouse schema migrated", "server", n.addr, "database", s.dsn.Database, "version", v+1, "migration", m.name)
	return nil
}

// isDuplicateColumn reports whether err is ClickHouse's refusal to add a
// column the table has: ILLEGAL_COLUMN saying so on 18.16, DUPLICATE_COLUMN
// on later releases.
func isDuplicateColumn(err error) bool {
	const codeDuplicateColumn, codeIllegalColumn = 15, 44
	var ex *ch.Exception
	return errors.As(err, &ex) && (ex.Code == codeDuplicateColumn ||
		ex.Code == codeIllegalColumn && strings.Contains(ex.Message, "already exists"))
}
