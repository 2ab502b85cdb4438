// Package embedded is the default state store: SQLite in a data directory,
// beside the embedded metering store, for a single machine with no setup.
//
// Writes go through one connection per Store, in WAL mode with
// synchronous=FULL: Issue and AppendAudit return after their commit reached
// the disk. Every write transaction is BEGIN IMMEDIATE, which takes SQLite's
// one write lock before it reads the series' last number, so two Stores on
// the same directory (two processes) queue on that lock (the busy timeout)
// instead of reading the same last number. Reads use a separate read-only
// pool and never block writes.
package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/paasmeter/paasmeter/internal/sqlitedb"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/internal/statesql"
)

// FileName is the database file inside the data directory.
const FileName = "state.db"

// Store is the embedded state store.
type Store struct {
	*statesql.Store
	w    *sql.DB
	path string
}

var _ state.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir and migrates its schema.
func Open(ctx context.Context, dir string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, dir, FileName, "", migrations)
	if err != nil {
		return nil, fmt.Errorf("embedded state store: %w", err)
	}
	s := &Store{w: db.W, path: db.Path}
	s.Store = statesql.NewStore(statesql.Adapter{Name: "embedded state store", Dialect: sqlite, Write: s.inTx, Read: statesql.DB(db.R),
		Ping: db.R.PingContext, Close: func() error { return errors.Join(db.W.Close(), db.R.Close()) }})
	return s, nil
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// AcquireLease implements state.Leases: the embedded store serves one
// collector, which always holds every lease.
func (s *Store) AcquireLease(context.Context, string, string, time.Time, time.Duration) (bool, error) {
	return true, nil
}

// ReleaseLease implements state.Leases: there is nothing to give up.
func (s *Store) ReleaseLease(context.Context, string, string) error { return nil }

// migrations are the schema, applied in order by sqlitedb.Open: never edit
// one that has shipped, append a new one. The tables are STRICT so
// that SQLite refuses a value of the wrong type as PostgreSQL would.
var migrations = []string{
	// Times are Unix microseconds (UTC), what PostgreSQL keeps. Empty
	// unique_key and refers are NULL: NULLs never collide in a UNIQUE index
	// and a NULL refers references nothing.
	`CREATE TABLE document_series (
		series   TEXT    NOT NULL PRIMARY KEY,
		last_seq INTEGER NOT NULL CHECK (last_seq > 0)
	) STRICT;
	CREATE TABLE documents (
		series     TEXT    NOT NULL REFERENCES document_series (series),
		seq        INTEGER NOT NULL CHECK (seq > 0),
		number     TEXT    NOT NULL UNIQUE,
		kind       TEXT    NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
		tenant     TEXT    NOT NULL,
		period     TEXT    NOT NULL,
		unique_key TEXT    UNIQUE,
		refers     TEXT    REFERENCES documents (number),
		issued_at  INTEGER NOT NULL,
		hash       TEXT    NOT NULL,
		body       BLOB    NOT NULL,
		PRIMARY KEY (series, seq)
	) STRICT;
	CREATE INDEX documents_by_tenant ON documents (tenant, period);
	CREATE INDEX documents_by_refers ON documents (refers) WHERE refers IS NOT NULL;
	CREATE TABLE frozen (
		hash    TEXT NOT NULL PRIMARY KEY,
		content BLOB NOT NULL
	) STRICT;
	CREATE TABLE audit_log (
		seq       INTEGER NOT NULL PRIMARY KEY,
		logged_at INTEGER NOT NULL,
		actor     TEXT    NOT NULL,
		action    TEXT    NOT NULL,
		subject   TEXT    NOT NULL,
		detail    BLOB
	) STRICT;
	CREATE INDEX audit_log_by_subject ON audit_log (subject, seq);`,
	// Maintenance windows. seq numbers the rows and gives the assigned ids;
	// until is NULL without end, and ends_by (when every occurrence has
	// ended, NULL: never) is what listings by time compare with.
	`CREATE TABLE maintenance_windows (
		seq              INTEGER NOT NULL PRIMARY KEY,
		id               TEXT    NOT NULL UNIQUE,
		tenant           TEXT    NOT NULL,
		project          TEXT    NOT NULL,
		app              TEXT    NOT NULL,
		start_at         INTEGER NOT NULL,
		duration_seconds INTEGER NOT NULL CHECK (duration_seconds > 0),
		every            TEXT    NOT NULL CHECK (every IN ('', 'daily', 'weekly', 'monthly')),
		until            INTEGER,
		ends_by          INTEGER,
		reason           TEXT    NOT NULL,
		declared_at      INTEGER NOT NULL,
		cancelled        INTEGER NOT NULL CHECK (cancelled IN (0, 1)),
		version          INTEGER NOT NULL CHECK (version > 0),
		source           TEXT    NOT NULL CHECK (source IN ('api', 'config'))
	) STRICT;
	CREATE INDEX maintenance_windows_by_tenant ON maintenance_windows (tenant, start_at);`,
	// Closed months (DESIGN.md §5); document is NULL for a month closed with
	// nothing to invoice. The invoices issued before this migration closed
	// their months (statesql.CloseIssuedMonths).
	`CREATE TABLE month_closes (
		tenant    TEXT    NOT NULL,
		period    TEXT    NOT NULL,
		document  TEXT    REFERENCES documents (number),
		closed_at INTEGER NOT NULL,
		PRIMARY KEY (tenant, period)
	) STRICT;
	` + statesql.CloseIssuedMonths,
}

// sqlite spells the statements for SQLite. Its one write lock, which every
// write transaction takes first (BEGIN IMMEDIATE), serializes the writers:
// no other lock is needed, and no insert can collide with a concurrent one.
var sqlite = statesql.Dialect{
	Placeholder: func(n int) string { return "?" + strconv.Itoa(n) },
	// instr, unlike LIKE, is case-sensitive and has no wildcards to escape.
	StartsWith: func(column, p string) string { return "instr(" + column + ", " + p + ") = 1" },
	// Times are Unix microseconds (UTC), what PostgreSQL keeps.
	Time: func(t time.Time) any { return t.UnixMicro() },
	ScanTime: func() (any, func() time.Time) {
		var v sql.NullInt64
		return &v, func() time.Time {
			if !v.Valid {
				return time.Time{}
			}
			return time.UnixMicro(v.Int64).UTC()
		}
	},
	NoRows:        sql.ErrNoRows,
	NextWindowSeq: `SELECT COALESCE(MAX(seq), 0) + 1 FROM maintenance_windows`,
}

// inTx runs fn in a write transaction. BEGIN IMMEDIATE takes the write lock
// from the start, so what fn reads stays as read until commit.
func (s *Store) inTx(ctx context.Context, fn func(tx statesql.Conn) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if err := fn(statesql.DB(tx)); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
