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
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/internal/statesql"
)

// Store is the state store on PostgreSQL.
type Store struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
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
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres state store %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return &Store{pool: pool}, nil
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
	// store. The invoices issued before this migration closed their months.
	`CREATE TABLE month_closes (
		tenant    text NOT NULL,
		period    text COLLATE "C" NOT NULL,
		document  text REFERENCES documents (number),
		closed_at timestamptz NOT NULL,
		PRIMARY KEY (tenant, period)
	);
	INSERT INTO month_closes (tenant, period, document, closed_at)
		SELECT tenant, period, MIN(number), MIN(issued_at) FROM documents WHERE kind = 'invoice' GROUP BY tenant, period;`,
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
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
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade paasmeter", v, len(migrations))
		}
		for i := v; i < len(migrations); i++ {
			if _, err := tx.Exec(ctx, migrations[i]); err != nil {
				return fmt.Errorf("migrate to version %d: %w", i+1, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", i+1); err != nil {
				return fmt.Errorf("record version %d: %w", i+1, err)
			}
		}
		return nil
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
func (s *Store) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if s.closed.Load() {
		return state.ErrNotReady
	}
	for attempt := 1; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, s.pool, readCommitted, fn)
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

var postgres = statesql.Dialect{
	Placeholder: func(n int) string { return fmt.Sprintf("$%d", n) },
	// starts_with, unlike LIKE, has no wildcards to escape.
	StartsWith: func(column, p string) string { return "starts_with(" + column + ", " + p + ")" },
	Time:       func(t time.Time) any { return t },
}

// Issue implements state.Documents.
func (s *Store) Issue(ctx context.Context, series string, build func(seq int64) (state.Document, error), audit state.AuditEntry) (state.Document, error) {
	var d state.Document
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		d, err = issue(ctx, tx, series, build, audit)
		return err
	})
	if err != nil {
		return state.Document{}, fmt.Errorf("postgres state store: issue in %s: %w", series, err)
	}
	return d, nil
}

func issue(ctx context.Context, tx pgx.Tx, series string, build func(seq int64) (state.Document, error), audit state.AuditEntry) (state.Document, error) {
	var seq int64
	if err := tx.QueryRow(ctx, `INSERT INTO document_series (series, last_seq) VALUES ($1, 1)
		ON CONFLICT (series) DO UPDATE SET last_seq = document_series.last_seq + 1 RETURNING last_seq`, series).Scan(&seq); err != nil {
		return state.Document{}, fmt.Errorf("take the next number: %w", err)
	}
	d, err := build(seq)
	if err != nil {
		return state.Document{}, fmt.Errorf("build number %d: %w", seq, err)
	}
	if d, err = statesql.Built(series, seq, d); err != nil {
		return state.Document{}, err
	}
	if err := checkTaken(ctx, tx, d); err != nil {
		return state.Document{}, err
	}
	if d.Kind == state.KindCreditNote {
		// Documents never change, so the invoice read here stays as read.
		var kind, tenant, period string
		err := tx.QueryRow(ctx, `SELECT kind, tenant, period FROM documents WHERE number = $1`, d.Refers).Scan(&kind, &tenant, &period)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return state.Document{}, fmt.Errorf("read the credited invoice %q: %w", d.Refers, err)
		}
		if err := statesql.CheckRefers(d, err == nil, state.DocumentKind(kind), tenant, period); err != nil {
			return state.Document{}, fmt.Errorf("document %q: %w", d.Number, err)
		}
	}
	if _, err := tx.Exec(ctx, `INSERT INTO documents
		(series, seq, number, kind, tenant, period, unique_key, refers, issued_at, hash, body)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), NULLIF($8, ''), $9, $10, $11)`,
		d.Series, d.Seq, d.Number, string(d.Kind), d.Tenant, d.Period, d.UniqueKey, d.Refers, d.IssuedAt, d.Hash, d.Body); err != nil {
		return state.Document{}, fmt.Errorf("insert %q: %w", d.Number, taken(err, d))
	}
	if c := statesql.CloseOf(d); c != nil {
		if err := closeMonth(ctx, tx, *c); err != nil {
			return state.Document{}, fmt.Errorf("document %q: %w", d.Number, err)
		}
	}
	e, err := statesql.Audit(statesql.AuditOf(audit, d))
	if err != nil {
		return state.Document{}, err
	}
	if _, err := appendAudit(ctx, tx, e); err != nil {
		return state.Document{}, err
	}
	return d, nil
}

// monthLock is the class (first key) of the transaction-level advisory
// locks that serialize one tenant's closes; the second key is a hash of the
// tenant ("paasmeter month", hashed).
const monthLock int32 = 0x706d6d6f

// CloseMonth implements state.Months.
func (s *Store) CloseMonth(ctx context.Context, c state.MonthClose, audit state.AuditEntry) error {
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		if err := closeMonth(ctx, tx, c); err != nil {
			return err
		}
		e, err := statesql.MonthAudit(audit, c)
		if err != nil {
			return fmt.Errorf("close %s %s: %w", c.Tenant, c.Period, err)
		}
		_, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("postgres state store: %w", err)
	}
	return nil
}

// closeMonth stores c if it follows the tenant's latest closed month. The
// tenant's advisory lock, held until tx ends, keeps a concurrent close from
// reading the same latest month: in READ COMMITTED, two transactions would
// otherwise both insert. Issue takes it after its series row and before the
// audit log, CloseMonth before the audit log: always in that order.
func closeMonth(ctx context.Context, tx pgx.Tx, c state.MonthClose) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, monthLock, c.Tenant); err != nil {
		return fmt.Errorf("close %s %s: take the tenant's lock: %w", c.Tenant, c.Period, err)
	}
	var latest string
	if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(period), '') FROM month_closes WHERE tenant = $1`, c.Tenant).Scan(&latest); err != nil {
		return fmt.Errorf("close %s %s: read the latest closed month: %w", c.Tenant, c.Period, err)
	}
	c, err := statesql.CheckClose(c, latest)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO month_closes (tenant, period, document, closed_at) VALUES ($1, $2, NULLIF($3, ''), $4)`,
		c.Tenant, c.Period, c.Document, c.ClosedAt); err != nil {
		return fmt.Errorf("close %s %s: %w", c.Tenant, c.Period, err)
	}
	return nil
}

// ClosedMonths implements state.Months.
func (s *Store) ClosedMonths(ctx context.Context, tenant string) ([]state.MonthClose, error) {
	rows, err := s.pool.Query(ctx, `SELECT period, COALESCE(document, ''), closed_at FROM month_closes WHERE tenant = $1 ORDER BY period`, tenant)
	if err != nil {
		return nil, fmt.Errorf("postgres state store: closed months of %s: %w", tenant, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (state.MonthClose, error) {
		c := state.MonthClose{Tenant: tenant}
		err := row.Scan(&c.Period, &c.Document, &c.ClosedAt)
		c.ClosedAt = c.ClosedAt.UTC()
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres state store: closed months of %s: %w", tenant, err)
	}
	return out, nil
}

// checkTaken refuses a document whose Number or UniqueKey another one has,
// naming the holder. Another series' transaction may still take them before
// this one commits: the insert then fails on the constraint (see taken).
func checkTaken(ctx context.Context, tx pgx.Tx, d state.Document) error {
	var holder string
	err := tx.QueryRow(ctx, `SELECT number FROM documents WHERE number = $1 OR unique_key = NULLIF($2, '')
		ORDER BY number = $1 DESC LIMIT 1`, d.Number, d.UniqueKey).Scan(&holder)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("look for %q: %w", d.Number, err)
	case holder == d.Number:
		return fmt.Errorf("number: %q is taken: %w", d.Number, state.ErrExists)
	default:
		return fmt.Errorf("unique_key: %q is taken by %s: %w", d.UniqueKey, holder, state.ErrExists)
	}
}

// taken turns the unique violation of a number or key that a concurrent
// transaction took into ErrExists.
func taken(err error, d state.Document) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" { // unique_violation
		return err
	}
	switch pgErr.ConstraintName {
	case "documents_number_unique":
		return fmt.Errorf("number: %q is taken: %w", d.Number, state.ErrExists)
	case "documents_unique_key_unique":
		return fmt.Errorf("unique_key: %q is taken: %w", d.UniqueKey, state.ErrExists)
	}
	return err
}

const documentColumns = `series, seq, number, kind, tenant, period, COALESCE(unique_key, ''), COALESCE(refers, ''), issued_at, hash, body`

func scanDocument(row pgx.Row) (state.Document, error) {
	var d state.Document
	var kind string
	err := row.Scan(&d.Series, &d.Seq, &d.Number, &kind, &d.Tenant, &d.Period, &d.UniqueKey, &d.Refers, &d.IssuedAt, &d.Hash, &d.Body)
	d.Kind, d.IssuedAt = state.DocumentKind(kind), d.IssuedAt.UTC()
	return d, err
}

// Document implements state.Documents.
func (s *Store) Document(ctx context.Context, number string) (state.Document, error) {
	d, err := scanDocument(s.pool.QueryRow(ctx, `SELECT `+documentColumns+` FROM documents WHERE number = $1`, number))
	if errors.Is(err, pgx.ErrNoRows) {
		return state.Document{}, fmt.Errorf("document %q: %w", number, state.ErrNotFound)
	}
	if err != nil {
		return state.Document{}, fmt.Errorf("postgres state store: read document %q: %w", number, err)
	}
	return d, nil
}

// ListDocuments implements state.Documents.
func (s *Store) ListDocuments(ctx context.Context, f state.DocumentFilter) ([]state.Document, error) {
	cond, args := statesql.DocumentWhere(postgres, f)
	rows, err := s.pool.Query(ctx, `SELECT `+documentColumns+` FROM documents WHERE `+cond+` ORDER BY series, seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres state store: list documents: %w", err)
	}
	docs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (state.Document, error) { return scanDocument(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres state store: list documents: %w", err)
	}
	return docs, nil
}

// Freeze implements state.Frozen.
func (s *Store) Freeze(ctx context.Context, content []byte) (string, error) {
	if s.closed.Load() {
		return "", state.ErrNotReady
	}
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])
	// A nil slice is sent as NULL, which the NOT NULL column refuses: empty
	// content is frozen as an empty bytea.
	if content == nil {
		content = []byte{}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO frozen (hash, content) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`, hash, content); err != nil {
		return "", fmt.Errorf("postgres state store: freeze %s: %w", hash, err)
	}
	return hash, nil
}

// FrozenContent implements state.Frozen.
func (s *Store) FrozenContent(ctx context.Context, hash string) ([]byte, error) {
	var content []byte
	err := s.pool.QueryRow(ctx, `SELECT content FROM frozen WHERE hash = $1`, hash).Scan(&content)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("frozen content %s: %w", hash, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres state store: read frozen content %s: %w", hash, err)
	}
	if content == nil {
		content = []byte{} // frozen empty: found, not missing
	}
	return content, nil
}

// AppendAudit implements state.Audit.
func (s *Store) AppendAudit(ctx context.Context, e state.AuditEntry) (state.AuditEntry, error) {
	e, err := statesql.Audit(e)
	if err != nil {
		return state.AuditEntry{}, fmt.Errorf("postgres state store: %w", err)
	}
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		e.Seq, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return state.AuditEntry{}, fmt.Errorf("postgres state store: %w", err)
	}
	return e, nil
}

// appendAudit inserts e in tx with the next Seq and returns it. The table
// lock (which readers do not wait for) is held until tx ends, so the next
// Seq is the last committed one plus one: gap-free, and in commit order.
// Issue takes it after its series row, DeclareWindow after its window's
// row, and nothing takes them the other way round, so the locks cannot
// deadlock.
func appendAudit(ctx context.Context, tx pgx.Tx, e state.AuditEntry) (int64, error) {
	if _, err := tx.Exec(ctx, `LOCK TABLE audit_log IN EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("lock the audit log: %w", err)
	}
	var detail []byte // NULL when there is none
	if len(e.Detail) > 0 {
		detail = e.Detail
	}
	var seq int64
	err := tx.QueryRow(ctx, `INSERT INTO audit_log (seq, logged_at, actor, action, subject, detail)
		SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5 FROM audit_log RETURNING seq`,
		e.Time, e.Actor, e.Action, e.Subject, detail).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("append audit %s %s: %w", e.Action, e.Subject, err)
	}
	return seq, nil
}

// ListAudit implements state.Audit.
func (s *Store) ListAudit(ctx context.Context, f state.AuditFilter) ([]state.AuditEntry, error) {
	cond, args := statesql.AuditWhere(postgres, f)
	rows, err := s.pool.Query(ctx, `SELECT seq, logged_at, actor, action, subject, detail FROM audit_log WHERE `+cond+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres state store: list audit: %w", err)
	}
	es, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (state.AuditEntry, error) {
		var e state.AuditEntry
		var detail []byte
		err := row.Scan(&e.Seq, &e.Time, &e.Actor, &e.Action, &e.Subject, &detail)
		e.Time, e.Detail = e.Time.UTC(), detail
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres state store: list audit: %w", err)
	}
	return es, nil
}

// DeclareWindow implements state.Maintenance.
func (s *Store) DeclareWindow(ctx context.Context, w state.WindowRecord, audit state.AuditEntry) (state.WindowRecord, error) {
	w, err := statesql.Window(w)
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("postgres state store: declare window: %w", err)
	}
	var stored state.WindowRecord
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		// A retried attempt starts again from what the caller gave.
		stored = w
		var err error
		if w.Version == 0 {
			err = insertWindow(ctx, tx, &stored)
		} else {
			err = updateWindow(ctx, tx, &stored)
		}
		if err != nil {
			return err
		}
		e, err := statesql.WindowAudit(audit, stored)
		if err != nil {
			return err
		}
		_, err = appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("postgres state store: declare window: %w", err)
	}
	return stored, nil
}

// insertWindow creates w at version 1, assigning its ID when it has none.
// A concurrent creation of the same ID makes the insert fail on the unique
// constraint, which is turned into ErrExists.
func insertWindow(ctx context.Context, tx pgx.Tx, w *state.WindowRecord) error {
	var seq int64
	if err := tx.QueryRow(ctx, `SELECT nextval('maintenance_window_seq')`).Scan(&seq); err != nil {
		return fmt.Errorf("take the next window number: %w", err)
	}
	if w.ID == "" {
		w.ID = strconv.FormatInt(seq, 10)
	}
	w.Version = 1
	_, err := tx.Exec(ctx, `INSERT INTO maintenance_windows
		(seq, id, tenant, project, app, start_at, duration_seconds, every, until, ends_by, reason, declared_at, cancelled, version, source)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		seq, w.ID, w.Tenant, w.Project, w.App, w.Start, w.DurationSeconds, w.Every, untilTime(*w),
		statesql.WindowEndsBy(postgres, *w), w.Reason, w.DeclaredAt, w.Cancelled, w.Version, w.Source)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "maintenance_windows_id_unique" {
		return fmt.Errorf("id: window %q exists: %w", w.ID, state.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("insert window %q: %w", w.ID, err)
	}
	return nil
}

// updateWindow changes the window of w.ID if it is still at w.Version. A
// concurrent change of the same window holds its row: this UPDATE waits,
// then (READ COMMITTED) finds the new version and changes nothing.
func updateWindow(ctx context.Context, tx pgx.Tx, w *state.WindowRecord) error {
	tag, err := tx.Exec(ctx, `UPDATE maintenance_windows SET tenant = $1, project = $2, app = $3, start_at = $4,
		duration_seconds = $5, every = $6, until = $7, ends_by = $8, reason = $9, declared_at = $10, cancelled = $11,
		version = version + 1, source = $12
		WHERE id = $13 AND version = $14`,
		w.Tenant, w.Project, w.App, w.Start, w.DurationSeconds, w.Every, untilTime(*w), statesql.WindowEndsBy(postgres, *w),
		w.Reason, w.DeclaredAt, w.Cancelled, w.Source, w.ID, w.Version)
	if err != nil {
		return fmt.Errorf("update window %q: %w", w.ID, err)
	}
	if tag.RowsAffected() == 1 {
		w.Version++
		return nil
	}
	var version int64
	err = tx.QueryRow(ctx, `SELECT version FROM maintenance_windows WHERE id = $1`, w.ID).Scan(&version)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("id: no window %q: %w", w.ID, state.ErrNotFound)
	case err != nil:
		return fmt.Errorf("read window %q: %w", w.ID, err)
	}
	return fmt.Errorf("version: window %q is at version %d, not %d: %w", w.ID, version, w.Version, state.ErrConflict)
}

// untilTime is the until column of w: NULL without end.
func untilTime(w state.WindowRecord) any {
	if w.Until.IsZero() {
		return nil
	}
	return w.Until
}

const windowColumns = `id, tenant, project, app, start_at, duration_seconds, every, until, reason, declared_at, cancelled, version, source`

func scanWindow(row pgx.Row) (state.WindowRecord, error) {
	var w state.WindowRecord
	var until *time.Time
	err := row.Scan(&w.ID, &w.Tenant, &w.Project, &w.App, &w.Start, &w.DurationSeconds, &w.Every, &until, &w.Reason, &w.DeclaredAt,
		&w.Cancelled, &w.Version, &w.Source)
	w.Start, w.DeclaredAt = w.Start.UTC(), w.DeclaredAt.UTC()
	if until != nil {
		w.Until = until.UTC()
	}
	return w, err
}

// Window implements state.Maintenance.
func (s *Store) Window(ctx context.Context, id string) (state.WindowRecord, error) {
	w, err := scanWindow(s.pool.QueryRow(ctx, `SELECT `+windowColumns+` FROM maintenance_windows WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return state.WindowRecord{}, fmt.Errorf("window %q: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("postgres state store: read window %q: %w", id, err)
	}
	return w, nil
}

// ListWindows implements state.Maintenance.
func (s *Store) ListWindows(ctx context.Context, f state.WindowFilter) ([]state.WindowRecord, error) {
	cond, args := statesql.WindowWhere(postgres, f)
	rows, err := s.pool.Query(ctx, `SELECT `+windowColumns+` FROM maintenance_windows WHERE `+cond+` ORDER BY start_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres state store: list windows: %w", err)
	}
	ws, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (state.WindowRecord, error) { return scanWindow(row) })
	if err != nil {
		return nil, fmt.Errorf("postgres state store: list windows: %w", err)
	}
	return ws, nil
}

// Ready implements state.Store.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return state.ErrNotReady
	}
	if err := s.pool.Ping(ctx); err != nil {
		return errors.Join(state.ErrNotReady, err)
	}
	return nil
}

// Close implements state.Store.
func (s *Store) Close() error {
	if !s.closed.Swap(true) {
		s.pool.Close()
	}
	return nil
}
