// Package embedded is the default metering store: SQLite in a data directory,
// for a single machine with no setup.
//
// The driver is github.com/mattn/go-sqlite3 (cgo). The pure-Go modernc.org/sqlite
// inserted the same rows at less than half the speed (docs/benchmarks.md); the
// binary stays static all the same (Makefile: -extldflags -static).
//
// Writes go through one connection in WAL mode with synchronous=FULL: a batch is
// one transaction and AppendUsage returns only after its commit reached the disk.
// The accepted ledger's counts are part of that transaction, so here records
// accepted = stored always, unless the store is broken.
// Reads use a separate pool and never block writes.
package embedded

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/sqlitedb"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/internal/sqlkit"
	"github.com/paasmeter/paasmeter/usage"
)

// FileName is the database file inside the data directory.
const FileName = "metering.db"

// Store is the embedded metering store.
type Store struct {
	// ActiveStreams answers the log label queries.
	sqlkit.ActiveStreams
	w, r        *sql.DB
	path        string
	closed      atomic.Bool
	streamCache streamCache
}

var _ metering.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir and migrates its schema.
func Open(ctx context.Context, dir string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, dir, FileName, "&_cache_size=-65536", migrations)
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	s := &Store{w: db.W, r: db.R, path: db.Path}
	s.ActiveStreams = s.activeStreams
	return s, nil
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// migrations are the schema, applied in order by sqlitedb.Open: never edit
// one that has shipped, append a new one.
var migrations = []string{
	// The key leads with (tenant, window_start) although the id alone is unique:
	// the id is derived from the tenant and the window, so the two keys reject
	// exactly the same duplicates, but this one keeps a batch's inserts (recent
	// windows) on a few adjacent pages instead of one random page per record,
	// and serves the tenant/time range scans of every query.
	`CREATE TABLE usage_records (
		tenant         TEXT    NOT NULL,
		window_start   INTEGER NOT NULL,
		id             BLOB    NOT NULL,
		project        TEXT    NOT NULL,
		app            TEXT    NOT NULL,
		environment    TEXT    NOT NULL,
		container_id   TEXT    NOT NULL,
		run_id         TEXT    NOT NULL,
		volume         TEXT    NOT NULL,
		node           TEXT    NOT NULL,
		meter          TEXT    NOT NULL,
		quantity       INTEGER NOT NULL CHECK (quantity >= 0),
		window_end     INTEGER NOT NULL,
		received_at    INTEGER NOT NULL,
		schema_version INTEGER NOT NULL,
		PRIMARY KEY (tenant, window_start, id)
	) WITHOUT ROWID;`,
	// Events, keyed like usage: the id is derived from the tenant and the time.
	`CREATE TABLE events (
		tenant           TEXT    NOT NULL,
		time             INTEGER NOT NULL,
		id               BLOB    NOT NULL,
		project          TEXT    NOT NULL,
		app              TEXT    NOT NULL,
		environment      TEXT    NOT NULL,
		node             TEXT    NOT NULL,
		container_id     TEXT    NOT NULL,
		run_id           TEXT    NOT NULL,
		replica          TEXT    NOT NULL,
		type             TEXT    NOT NULL,
		exit_code        INTEGER,
		oom_killed       INTEGER NOT NULL,
		initiator        TEXT    NOT NULL,
		health           TEXT    NOT NULL,
		probe_ok         INTEGER,
		probe_kind       TEXT    NOT NULL,
		probe_latency_ns INTEGER,
		probe_detail     TEXT    NOT NULL,
		received_at      INTEGER NOT NULL,
		schema_version   INTEGER NOT NULL,
		PRIMARY KEY (tenant, time, id)
	) WITHOUT ROWID;`,
	// Log lines are stored once per line with a reference to their stream; a
	// stream (one label set of one tenant) is stored once. A query first picks the
	// tenant's streams its selector matches — few, and matched in Go with the
	// exact LogQL semantics — then walks the lines of those streams by time.
	`CREATE TABLE log_streams (
		id     INTEGER PRIMARY KEY,
		tenant TEXT NOT NULL,
		key    TEXT NOT NULL,
		labels TEXT NOT NULL,
		UNIQUE (tenant, key)
	);`,
	// The id is derived from the tenant, stream, time, seq and text, so this
	// key rejects exactly the duplicates the id would.
	`CREATE TABLE log_lines (
		tenant         TEXT    NOT NULL,
		time           INTEGER NOT NULL,
		seq            INTEGER NOT NULL,
		id             BLOB    NOT NULL,
		stream         INTEGER NOT NULL REFERENCES log_streams (id),
		line           TEXT    NOT NULL,
		received_at    INTEGER NOT NULL,
		schema_version INTEGER NOT NULL,
		PRIMARY KEY (tenant, time, seq, id)
	) WITHOUT ROWID;`,
	`CREATE INDEX log_lines_by_stream ON log_lines (stream, time, seq, id);`,
	// The accepted ledger: how many usage records appends stored as new, per
	// tenant and UTC hour of window start (Unix ns of the hour's start). It is
	// written in the records' transaction but never derived from their table,
	// so that reconciliation comparing the two can catch a store that loses or
	// invents records.
	`CREATE TABLE usage_accepted (
		tenant  TEXT    NOT NULL,
		hour    INTEGER NOT NULL,
		records INTEGER NOT NULL CHECK (records > 0),
		PRIMARY KEY (tenant, hour)
	) WITHOUT ROWID;`,
	// The content hash of each record and event (usage.ContentHash,
	// events.ContentHash), so that an append tells a resend from a conflict.
	// Rows stored before have none (NULL): a repeat of them is a duplicate.
	`ALTER TABLE usage_records ADD COLUMN content BLOB;`,
	`ALTER TABLE events ADD COLUMN content BLOB;`,
	// RunNode finds a run's first event without scanning the tenant's events.
	`CREATE INDEX events_by_run ON events (tenant, run_id, container_id, time, id);`,
}

var usageRows = rowsSpec{
	insert: `INSERT INTO usage_records
	(tenant, window_start, id, content, project, app, environment, container_id, run_id, volume, node, meter, quantity, window_end, received_at, schema_version)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (tenant, window_start, id) DO NOTHING`,
	content: `SELECT content FROM usage_records WHERE tenant = ? AND window_start = ? AND id = ?`,
}

const addAccepted = `INSERT INTO usage_accepted (tenant, hour, records) VALUES (?, ?, ?)
	ON CONFLICT (tenant, hour) DO UPDATE SET records = records + excluded.records`

// AppendUsage implements metering.UsageAppender. The ledger's counts are
// added in the records' transaction: both are stored, or neither.
func (s *Store) AppendUsage(ctx context.Context, recs []usage.Record) (metering.AppendResult, error) {
	return s.appendRows(ctx, usageRows, len(recs), func(i int) ([]any, error) {
		r := &recs[i]
		id, err := sqlkit.DecodeID(r.ID)
		return []any{r.Tenant, r.WindowStart.UnixNano(), id, usage.ContentHash(r), r.Project, r.App, string(r.Environment),
			r.ContainerID, r.RunID, r.Volume, r.Node, string(r.Meter), r.Quantity, r.WindowEnd.UnixNano(),
			r.ReceivedAt.UnixNano(), r.SchemaVersion}, err
	}, func(tx *sql.Tx, res metering.AppendResult) error {
		for _, a := range sqlkit.CountAccepted(recs, res.Duplicates) {
			if _, err := tx.ExecContext(ctx, addAccepted, a.Tenant, a.Hour.UnixNano(), a.Records); err != nil {
				return fmt.Errorf("embedded store: count accepted records of %s at %s: %w", a.Tenant, a.Hour.Format(time.RFC3339), err)
			}
		}
		return nil
	})
}

// AcceptedUsage implements metering.AcceptedReader.
func (s *Store) AcceptedUsage(ctx context.Context, tenant string, from, to time.Time) ([]metering.AcceptedRow, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT hour, records FROM usage_accepted WHERE tenant = ? AND hour >= ? AND hour < ? ORDER BY hour`,
		tenant, from.UnixNano(), to.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("embedded store: accepted usage: %w", err)
	}
	defer rows.Close()
	var out []metering.AcceptedRow
	for rows.Next() {
		var hour, n int64
		if err := rows.Scan(&hour, &n); err != nil {
			return nil, fmt.Errorf("embedded store: accepted usage: %w", err)
		}
		out = append(out, metering.AcceptedRow{Hour: time.Unix(0, hour).UTC(), Records: n})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded store: accepted usage: %w", err)
	}
	return out, nil
}

var eventRows = rowsSpec{
	insert: `INSERT INTO events
	(tenant, time, id, content, project, app, environment, node, container_id, run_id, replica, type, exit_code, oom_killed,
	 initiator, health, probe_ok, probe_kind, probe_latency_ns, probe_detail, received_at, schema_version)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (tenant, time, id) DO NOTHING`,
	content: `SELECT content FROM events WHERE tenant = ? AND time = ? AND id = ?`,
}

// AppendEvents implements metering.EventAppender.
func (s *Store) AppendEvents(ctx context.Context, evs []events.Event) (metering.AppendResult, error) {
	return s.appendRows(ctx, eventRows, len(evs), func(i int) ([]any, error) {
		e := &evs[i]
		id, err := sqlkit.DecodeID(e.ID)
		var probeOK, probeLatency any // NULL unless a probe event
		var probeKind, probeDetail string
		if p := e.Probe; p != nil {
			probeOK, probeLatency, probeKind, probeDetail = p.OK, p.LatencyNs, p.Kind, p.Detail
		}
		var exit any
		if e.ExitCode != nil {
			exit = *e.ExitCode
		}
		return []any{e.Tenant, e.Time.UnixNano(), id, events.ContentHash(e), e.Project, e.App, string(e.Environment), e.Node,
			e.ContainerID, e.RunID, e.Replica, string(e.Type), exit, e.OOMKilled, string(e.Initiator), e.Health, probeOK,
			probeKind, probeLatency, probeDetail, e.ReceivedAt.UnixNano(), e.SchemaVersion}, err
	}, nil)
}

// rowsSpec is how appendRows stores one kind of row.
type rowsSpec struct {
	// insert is an INSERT … ON CONFLICT DO NOTHING whose first four
	// arguments are the key (tenant, time, id) and the content hash.
	insert string
	// content selects the stored content hash of the key's row.
	content string
}

// RunNode implements metering.RunReader.
func (s *Store) RunNode(ctx context.Context, tenant, containerID, runID string) (string, bool, error) {
	var node string
	err := s.r.QueryRowContext(ctx, `SELECT node FROM events WHERE tenant = ? AND run_id = ? AND container_id = ? ORDER BY time, id LIMIT 1`,
		tenant, runID, containerID).Scan(&node)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", false, nil
	case err != nil:
		return "", false, fmt.Errorf("embedded store: node of run %s: %w", runID, err)
	}
	return node, true, nil
}

// appendRows inserts n rows with spec.insert in one transaction; row(i) gives
// the arguments of row i. A row that affects nothing was a duplicate: the
// first arrival stays in place, and the duplicate is a conflict when the
// first arrival's content hash differs. then, unless nil, runs in the same
// transaction once the rows are in, with the append's result.
func (s *Store) appendRows(ctx context.Context, spec rowsSpec, n int, row func(i int) ([]any, error),
	then func(tx *sql.Tx, res metering.AppendResult) error) (metering.AppendResult, error) {
	var res metering.AppendResult
	if s.closed.Load() {
		return res, metering.ErrNotReady
	}
	args := make([][]any, n)
	for i := range n {
		a, err := row(i)
		if err != nil {
			return res, fmt.Errorf("embedded store: record %d: %w", i, err)
		}
		args[i] = a
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return res, fmt.Errorf("embedded store: begin: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, spec.insert)
	if err != nil {
		return res, fmt.Errorf("embedded store: prepare insert: %w", err)
	}
	defer stmt.Close()
	lookup, err := tx.PrepareContext(ctx, spec.content)
	if err != nil {
		return res, fmt.Errorf("embedded store: prepare content lookup: %w", err)
	}
	defer lookup.Close()
	for i, a := range args {
		out, err := stmt.ExecContext(ctx, a...)
		if err != nil {
			return metering.AppendResult{}, fmt.Errorf("embedded store: insert record %d: %w", i, err)
		}
		if affected, err := out.RowsAffected(); err != nil {
			return metering.AppendResult{}, fmt.Errorf("embedded store: insert record %d: %w", i, err)
		} else if affected > 0 {
			continue
		}
		res.Duplicates = append(res.Duplicates, i)
		var stored []byte
		if err := lookup.QueryRowContext(ctx, a[:3]...).Scan(&stored); err != nil {
			return metering.AppendResult{}, fmt.Errorf("embedded store: record %d: read the first arrival's content: %w", i, err)
		}
		if stored != nil && !bytes.Equal(stored, a[3].([]byte)) {
			res.Conflicts = append(res.Conflicts, i)
		}
	}
	if then != nil {
		if err := then(tx, res); err != nil {
			return metering.AppendResult{}, err
		}
	}
	if err := tx.Commit(); err != nil {
		return metering.AppendResult{}, fmt.Errorf("embedded store: commit: %w", err)
	}
	return res, nil
}

// sqlite spells the shared usage aggregation for SQLite: integer division
// truncates, which is a floor for the non-negative times stored here.
var sqlite = sqlkit.Dialect{
	From: "usage_records",
	Day: func(offsetNs int64) string {
		return fmt.Sprintf("(window_start + %d) / %d", offsetNs, (24 * time.Hour).Nanoseconds())
	},
	Sums: "SUM(quantity >> 32), SUM(quantity & 4294967295), COUNT(*)",
}

// QueryUsage implements metering.UsageReader (see sqlkit.QueryUsage).
func (s *Store) QueryUsage(ctx context.Context, q metering.UsageQuery) ([]metering.UsageRow, error) {
	rows, err := sqlkit.QueryUsage(ctx, q, sqlite, func(ctx context.Context, query string, args ...any) (sqlkit.Rows, error) {
		return s.r.QueryContext(ctx, query, args...)
	})
	if err != nil {
		return nil, fmt.Errorf("embedded store: query usage: %w", err)
	}
	return rows, nil
}

// scanCheckEvery is how many rows a scan reads between two looks at its context.
const scanCheckEvery = 4096

// scan runs a read that may return millions of rows and calls row for each.
// go-sqlite3 hands every row to a goroutine of its own when the query's
// context can be cancelled, which cost a quarter of a month's billing scan
// (docs/benchmarks.md); so the query runs without the cancellation, and the
// loop looks at ctx every scanCheckEvery rows instead.
func (s *Store) scan(ctx context.Context, what, query string, args []any, row func(*sql.Rows) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	rows, err := s.r.QueryContext(context.WithoutCancel(ctx), query, args...)
	if err != nil {
		return fmt.Errorf("embedded store: %s: %w", what, err)
	}
	defer rows.Close()
	for n := 1; rows.Next(); n++ {
		if n%scanCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if err := row(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("embedded store: %s: %w", what, err)
	}
	return nil
}

// ScanUsage implements metering.UsageReader.
func (s *Store) ScanUsage(ctx context.Context, f metering.UsageFilter, fn func(usage.Record) error) error {
	cond, args := sqlkit.UsageWhere(&f)
	// The tenant is the filter's: one column fewer to carry through cgo per row.
	return s.scan(ctx, "scan usage", `SELECT id, project, app, environment, container_id, run_id, volume, node,
		meter, quantity, window_start, window_end, received_at, schema_version
		FROM usage_records WHERE `+cond+` ORDER BY window_start, id`, args, func(rows *sql.Rows) error {
		r := usage.Record{Tenant: f.Tenant}
		var id []byte
		var env, meter string
		var ws, we, ra int64
		if err := rows.Scan(&id, &r.Project, &r.App, &env, &r.ContainerID, &r.RunID, &r.Volume, &r.Node,
			&meter, &r.Quantity, &ws, &we, &ra, &r.SchemaVersion); err != nil {
			return fmt.Errorf("embedded store: scan usage: %w", err)
		}
		r.ID = hex.EncodeToString(id)
		r.Environment, r.Meter = usage.Environment(env), usage.Meter(meter)
		r.WindowStart, r.WindowEnd, r.ReceivedAt = time.Unix(0, ws).UTC(), time.Unix(0, we).UTC(), time.Unix(0, ra).UTC()
		return fn(r)
	})
}

// ScanEvents implements metering.EventReader.
func (s *Store) ScanEvents(ctx context.Context, f metering.EventFilter, fn func(events.Event) error) error {
	cond, args := sqlkit.EventWhere(&f)
	return s.scan(ctx, "scan events", `SELECT id, tenant, project, app, environment, node, container_id, run_id, replica,
		type, time, exit_code, oom_killed, initiator, health, probe_ok, probe_kind, probe_latency_ns, probe_detail,
		received_at, schema_version FROM events WHERE `+cond+` ORDER BY time, id`, args, func(rows *sql.Rows) error {
		var e events.Event
		var id []byte
		var env, typ, initiator, probeKind, probeDetail string
		var t, recv int64
		var exit, probeLatency sql.NullInt64
		var probeOK sql.NullBool
		if err := rows.Scan(&id, &e.Tenant, &e.Project, &e.App, &env, &e.Node, &e.ContainerID, &e.RunID, &e.Replica,
			&typ, &t, &exit, &e.OOMKilled, &initiator, &e.Health, &probeOK, &probeKind, &probeLatency, &probeDetail,
			&recv, &e.SchemaVersion); err != nil {
			return fmt.Errorf("embedded store: scan events: %w", err)
		}
		e.ID, e.Environment, e.Type, e.Initiator = hex.EncodeToString(id), usage.Environment(env), events.Type(typ), events.Initiator(initiator)
		e.Time, e.ReceivedAt = time.Unix(0, t).UTC(), time.Unix(0, recv).UTC()
		if exit.Valid {
			code := int(exit.Int64)
			e.ExitCode = &code
		}
		if probeOK.Valid {
			e.Probe = &events.ProbeResult{OK: probeOK.Bool, Kind: probeKind, LatencyNs: probeLatency.Int64, Detail: probeDetail}
		}
		return fn(e)
	})
}

// Ready implements metering.Store.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return metering.ErrNotReady
	}
	if err := s.r.PingContext(ctx); err != nil {
		return errors.Join(metering.ErrNotReady, err)
	}
	return nil
}

// Close implements metering.Store.
func (s *Store) Close() error {
	s.closed.Store(true)
	return errors.Join(s.w.Close(), s.r.Close())
}
