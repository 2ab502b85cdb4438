// Package postgres is the state store on PostgreSQL, for a platform where
// several collectors (and `paasmeter invoice` runs) share one state, through
// github.com/jackc/pgx/v5.
//
// Numbers come from a row per series in document_series, incremented by an
// INSERT … ON CONFLICT DO UPDATE … RETURNING in the transaction that inserts
// the document: the row stays locked until that transaction ends, so a
// concurrent Issue of the same series waits and then reads the committed
// number, and a rollback gives the number back. A SEQUENCE would not: its
// values are never returned, so a failed issue would leave a gap. The audit
// log is numbered the same way under a table lock.
//
// The schema is migrated at Open, in one transaction under an advisory lock,
// so collectors starting together apply each migration once; a schema newer
// than the binary is refused. The tables are created in the first schema of
// the search path, so the DSN's role should own the database (PostgreSQL 15
// lets nobody else create in its public schema); owning the tables also
// gives it the LOCK TABLE the audit log needs.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paasmeter/paasmeter/internal/migrate"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/internal/statesql"
)

// Store is the state store on PostgreSQL.
type Store struct {
	*statesql.Store
	pool *pgxpool.Pool
}

var _ state.Store = (*Store)(nil)

// Open connects to the database of dsn (postgres://user:password@host:5432/db?…,
// any option pgx knows) and migrates its schema.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message hides the password.
		return nil, fmt.Errorf("postgres state store: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres state store: connect to %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	if err := migrateDB(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres state store %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	s := &Store{pool: pool}
	s.Store = statesql.NewStore(statesql.Adapter{Name: "postgres state store", Dialect: postgres, Write: s.inTx, Read: conn{pool},
		Ping: pool.Ping, Close: func() error { pool.Close(); return nil }})
	return s, nil
}

// readCommitted is the isolation of every transaction, whatever the
// database's default_transaction_isolation: the locks taken here (the
// migration lock, a series row, the audit log) serialize the writers, and a
// statement that waited for one must then see what the holder committed. In
// REPEATABLE READ or SERIALIZABLE it would fail instead, or (for a statement
// that only reads) see the state from before the wait.
var readCommitted = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// migrationLock is the key of the transaction-level advisory lock under which
// the schema is migrated: any constant that other users of the database do
// not use ("paasmeter state schema", hashed).
const migrationLock int64 = 0x706d5f7374617465

// migrations are applied in order, each once, recorded in schema_migrations.
// Never edit one that has shipped: append a new one.
var migrations = []string{
	// series is compared bytewise (COLLATE "C") so that documents list in
	// the same order as on the embedded store, whatever the database's locale.
	// Empty unique_key and refers are NULL: NULLs never collide in a UNIQUE
	// constraint and a NULL refers references nothing. Bodies and details are
	// bytea, not jsonb, which would reformat them: they are returned byte for byte.
	`CREATE TABLE document_series (
		series   text COLLATE "C" PRIMARY KEY,
		last_seq bigint NOT NULL CHECK (last_seq > 0)
	);
	CREATE TABLE documents (
		series     text COLLATE "C" NOT NULL REFERENCES document_series (series),
		seq        bigint NOT NULL CHECK (seq > 0),
		number     text NOT NULL CONSTRAINT documents_number_unique UNIQUE,
		kind       text NOT NULL CHECK (kind IN ('invoice', 'credit_note')),
		tenant     text NOT NULL,
		period     text NOT NULL,
		unique_key text CONSTRAINT documents_unique_key_unique UNIQUE,
		refers     text REFERENCES documents (number),
		issued_at  timestamptz NOT NULL,
		hash       text NOT NULL,
		body       bytea NOT NULL,
		PRIMARY KEY (series, seq)
	);
	CREATE INDEX documents_by_tenant ON documents (tenant, period);
	CREATE INDEX documents_by_refers ON documents (refers) WHERE refers IS NOT NULL;
	CREATE TABLE frozen (
		hash    text PRIMARY KEY,
		content bytea NOT NULL
	);
	CREATE TABLE audit_log (
		seq       bigint PRIMARY KEY,
		logged_at timestamptz NOT NULL,
		actor     text NOT NULL,
		action    text NOT NULL,
		subject   text COLLATE "C" NOT NULL,
		detail    bytea
	);
	CREATE INDEX audit_log_by_subject ON audit_log (subject, seq);`,
	// Maintenance windows. The sequence gives the assigned ids (a rolled
	// back creation may skip one: ids need not be gap-free). id is compared
	// bytewise, as on the embedded store. until is NULL without end, and
	// ends_by (when every occurrence has ended, NULL: never) is what
	// listings by time compare with.
	`CREATE SEQUENCE maintenance_window_seq;
	CREATE TABLE maintenance_windows (
		seq              bigint PRIMARY KEY,
		id               text COLLATE "C" NOT NULL CONSTRAINT maintenance_windows_id_unique UNIQUE,
		tenant           text NOT NULL,
		project          text NOT NULL,
		app              text NOT NULL,
		start_at         timestamptz NOT NULL,
		duration_seconds bigint NOT NULL CHECK (duration_seconds > 0),
		every            text NOT NULL CHECK (every IN ('', 'daily', 'weekly', 'monthly')),
		until            timestamptz,
		ends_by          timestamptz,
		reason           text NOT NULL,
		declared_at      timestamptz NOT NULL,
		cancelled        boolean NOT NULL,
		version          bigint NOT NULL CHECK (version > 0),
		source           text NOT NULL CHECK (source IN ('api', 'config'))
	);
	CREATE INDEX maintenance_windows_by_tenant ON maintenance_windows (tenant, start_at);`,
	// Closed months (DESIGN.md §5); document is NULL for a month closed with
	// nothing to invoice. period compares bytewise, as on the embedded
	// store. The invoices issued before this migration closed their months
	// (statesql.CloseIssuedMonths).
	`CREATE TABLE month_closes (
		tenant    text NOT NULL,
		period    text COLLATE "C" NOT NULL,
		document  text REFERENCES documents (number),
		closed_at timestamptz NOT NULL,
		PRIMARY KEY (tenant, period)
	);
	` + statesql.CloseIssuedMonths,
	// Leases (state.Leases): expires_at is the holder's clock plus the TTL.
	`CREATE TABLE leases (
		name       text PRIMARY KEY,
		holder     text NOT NULL,
		expires_at timestamptz NOT NULL
	);`,
}

func migrateDB(ctx context.Context, pool *pgxpool.Pool) error {
	err := pgx.BeginTxFunc(ctx, pool, readCommitted, func(tx pgx.Tx) error {
		// Held until commit: a second collector waits here, then finds the
		// migrations applied.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var v int
		if err := tx.QueryRow(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&v); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		return migrate.Apply(v, migrations, func(version int, stmts string) error {
			if _, err := tx.Exec(ctx, stmts); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", version); err != nil {
				return fmt.Errorf("record version %d: %w", version, err)
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// maxAttempts bounds how often a transaction is tried when PostgreSQL aborts
// it for a serialization failure or a deadlock, which a retry resolves. The
// lock order (a series row, then the audit log) leaves no deadlock in
// READ COMMITTED today; the retry keeps Issue correct if a change, or a
// server setting, brings one.
const maxAttempts = 5

// inTx runs fn in a transaction, committed when fn returns nil, and runs it
// again when PostgreSQL aborted it for a conflict with another transaction.
func (s *Store) inTx(ctx context.Context, fn func(tx statesql.Conn) error) error {
	for attempt := 1; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, func(tx pgx.Tx) error { return fn(conn{tx}) })
		if err == nil || !retryable(err) || attempt == maxAttempts {
			return err
		}
		// Jitter, so that the transactions that collided do not collide again.
		pause := time.Duration(attempt)*10*time.Millisecond + rand.N(10*time.Millisecond)
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
	}
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01") // serialization_failure, deadlock_detected
}

// monthLock is the class (first key) of the transaction-level advisory
// locks that serialize one tenant's closes; the second key is a hash of the
// tenant ("paasmeter month", hashed).
const monthLock int32 = 0x706d6d6f

// postgres spells the statements for PostgreSQL. In READ COMMITTED two
// transactions may read the same state before either writes, so what the
// store reads to decide a write is locked: the series row (by the upsert
// that takes the number), a tenant's closes (an advisory lock, without which
// two closes would both insert), the audit log (a table lock, which readers
// do not wait for). Issue takes them in that order, CloseMonth the last two,
// DeclareWindow its window's row then the audit log: always in that order.
// A number, key or window id a concurrent transaction took makes the insert
// fail on its unique constraint, which the store names.
var postgres = statesql.Dialect{
	Placeholder: func(n int) string { return fmt.Sprintf("$%d", n) },
	// starts_with, unlike LIKE, has no wildcards to escape.
	StartsWith: func(column, p string) string { return "starts_with(" + column + ", " + p + ")" },
	Time:       func(t time.Time) any { return t },
	ScanTime: func() (any, func() time.Time) {
		var t *time.Time
		return &t, func() time.Time {
			if t == nil {
				return time.Time{}
			}
			return t.UTC()
		}
	},
	NoRows: pgx.ErrNoRows,
	Unique: func(err error) string {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
			return pgErr.ConstraintName
		}
		return ""
	},
	LockMonths:    fmt.Sprintf(`SELECT pg_advisory_xact_lock(%d, hashtext($1))`, monthLock),
	LockAudit:     `LOCK TABLE audit_log IN EXCLUSIVE MODE`,
	NextWindowSeq: `SELECT nextval('maintenance_window_seq')`,
}

// pgConn is what a pgx pool and transaction share.
type pgConn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// conn is a pgx pool or transaction as a statesql.Conn.
type conn struct{ c pgConn }

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	tag, err := c.c.Exec(ctx, query, args...)
	return tag.RowsAffected(), err
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) statesql.Row {
	return c.c.QueryRow(ctx, query, args...)
}

func (c conn) Query(ctx context.Context, query string, args ...any) (statesql.Rows, error) {
	return c.c.Query(ctx, query, args...)
}

// AcquireLease implements state.Leases in one statement: the row is taken
// when missing, and updated only when holder holds it or it expired at now,
// so of two holders racing for an expired lease exactly one gets a row back.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	if name == "" || holder == "" || ttl <= 0 {
		return false, fmt.Errorf("postgres state store: lease %q for %q: a name, a holder and a positive ttl are required", name, holder)
	}
	var got string
	err := s.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= $3
		RETURNING holder`, name, holder, now, now.Add(ttl)).Scan(&got)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("postgres state store: acquire lease %s: %w", name, err)
	}
	return true, nil
}

// ReleaseLease implements state.Leases.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	if _, err := s.pool.Exec(ctx, "DELETE FROM leases WHERE name = $1 AND holder = $2", name, holder); err != nil {
		return fmt.Errorf("postgres state store: release lease %s: %w", name, err)
	}
	return nil
}
