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
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/paasmeter/paasmeter/internal/privfile"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/internal/statesql"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// FileName is the database file inside the data directory.
const FileName = "state.db"

// Store is the embedded state store.
type Store struct {
	w, r   *sql.DB
	path   string
	closed atomic.Bool
}

var _ state.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir and migrates its schema.
func Open(ctx context.Context, dir string) (*Store, error) {
	// The state holds invoices and the audit log: only the service's user reads it.
	if err := privfile.MkdirAll(dir); err != nil {
		return nil, fmt.Errorf("embedded state store: data directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	if err := privfile.SQLite(path); err != nil {
		return nil, fmt.Errorf("embedded state store: %w", err)
	}
	dsn := func(extra string) string {
		return "file:" + url.PathEscape(path) + "?_journal_mode=WAL&_synchronous=FULL&_busy_timeout=10000&_foreign_keys=1" + extra
	}
	w, err := sql.Open("sqlite3", dsn("&_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("embedded state store: open %s: %w", path, err)
	}
	// One connection: this process's writers queue in Go (honouring their
	// contexts); another process's wait on the busy timeout.
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded state store %s: %w", path, err)
	}
	r, err := sql.Open("sqlite3", dsn("&mode=ro"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("embedded state store: open %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	return &Store{w: w, r: r, path: path}, nil
}

// Path returns the database file.
func (s *Store) Path() string { return s.path }

// migrations are applied in order; PRAGMA user_version records how many ran.
// Never edit one that has shipped: append a new one. The tables are STRICT so
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
	// their months.
	`CREATE TABLE month_closes (
		tenant    TEXT    NOT NULL,
		period    TEXT    NOT NULL,
		document  TEXT    REFERENCES documents (number),
		closed_at INTEGER NOT NULL,
		PRIMARY KEY (tenant, period)
	) STRICT;
	INSERT INTO month_closes (tenant, period, document, closed_at)
		SELECT tenant, period, MIN(number), MIN(issued_at) FROM documents WHERE kind = 'invoice' GROUP BY tenant, period;`,
}

func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this binary knows (%d): upgrade paasmeter", v, len(migrations))
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("migrate: record schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

var sqlite = statesql.Dialect{
	Placeholder: func(int) string { return "?" },
	// instr, unlike LIKE, is case-sensitive and has no wildcards to escape.
	StartsWith: func(column, p string) string { return "instr(" + column + ", " + p + ") = 1" },
	Time:       func(t time.Time) any { return t.UnixMicro() },
}

// Issue implements state.Documents.
func (s *Store) Issue(ctx context.Context, series string, build func(seq int64) (state.Document, error), audit state.AuditEntry) (state.Document, error) {
	if s.closed.Load() {
		return state.Document{}, state.ErrNotReady
	}
	doc, err := s.issue(ctx, series, build, audit)
	if err != nil {
		return state.Document{}, fmt.Errorf("embedded state store: issue in %s: %w", series, err)
	}
	return doc, nil
}

func (s *Store) issue(ctx context.Context, series string, build func(seq int64) (state.Document, error), audit state.AuditEntry) (state.Document, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return state.Document{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	var seq int64
	if err := tx.QueryRowContext(ctx, `INSERT INTO document_series (series, last_seq) VALUES (?, 1)
		ON CONFLICT (series) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq`, series).Scan(&seq); err != nil {
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
		var kind, tenant, period string
		err := tx.QueryRowContext(ctx, `SELECT kind, tenant, period FROM documents WHERE number = ?`, d.Refers).Scan(&kind, &tenant, &period)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return state.Document{}, fmt.Errorf("read the credited invoice %q: %w", d.Refers, err)
		}
		if err := statesql.CheckRefers(d, err == nil, state.DocumentKind(kind), tenant, period); err != nil {
			return state.Document{}, fmt.Errorf("document %q: %w", d.Number, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO documents
		(series, seq, number, kind, tenant, period, unique_key, refers, issued_at, hash, body)
		VALUES (?, ?, ?, ?, ?, ?, NULLIF(?, ''), NULLIF(?, ''), ?, ?, ?)`,
		d.Series, d.Seq, d.Number, string(d.Kind), d.Tenant, d.Period, d.UniqueKey, d.Refers, d.IssuedAt.UnixMicro(), d.Hash, d.Body); err != nil {
		return state.Document{}, fmt.Errorf("insert %q: %w", d.Number, err)
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
	if err := tx.Commit(); err != nil {
		return state.Document{}, fmt.Errorf("commit %q: %w", d.Number, err)
	}
	return d, nil
}

// CloseMonth implements state.Months.
func (s *Store) CloseMonth(ctx context.Context, c state.MonthClose, audit state.AuditEntry) error {
	if s.closed.Load() {
		return state.ErrNotReady
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("embedded state store: close %s %s: begin: %w", c.Tenant, c.Period, err)
	}
	defer tx.Rollback()
	if err := closeMonth(ctx, tx, c); err != nil {
		return fmt.Errorf("embedded state store: %w", err)
	}
	e, err := statesql.MonthAudit(audit, c)
	if err != nil {
		return fmt.Errorf("embedded state store: close %s %s: %w", c.Tenant, c.Period, err)
	}
	if _, err := appendAudit(ctx, tx, e); err != nil {
		return fmt.Errorf("embedded state store: close %s %s: %w", c.Tenant, c.Period, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("embedded state store: close %s %s: commit: %w", c.Tenant, c.Period, err)
	}
	return nil
}

// closeMonth stores c if it follows the tenant's latest closed month. The
// write lock is held, so the latest cannot change before the insert.
func closeMonth(ctx context.Context, tx *sql.Tx, c state.MonthClose) error {
	var latest string
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(period), '') FROM month_closes WHERE tenant = ?`, c.Tenant).Scan(&latest); err != nil {
		return fmt.Errorf("close %s %s: read the latest closed month: %w", c.Tenant, c.Period, err)
	}
	c, err := statesql.CheckClose(c, latest)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO month_closes (tenant, period, document, closed_at) VALUES (?, ?, NULLIF(?, ''), ?)`,
		c.Tenant, c.Period, c.Document, c.ClosedAt.UnixMicro()); err != nil {
		return fmt.Errorf("close %s %s: %w", c.Tenant, c.Period, err)
	}
	return nil
}

// ClosedMonths implements state.Months.
func (s *Store) ClosedMonths(ctx context.Context, tenant string) ([]state.MonthClose, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT period, COALESCE(document, ''), closed_at FROM month_closes WHERE tenant = ? ORDER BY period`, tenant)
	if err != nil {
		return nil, fmt.Errorf("embedded state store: closed months of %s: %w", tenant, err)
	}
	defer rows.Close()
	var out []state.MonthClose
	for rows.Next() {
		c := state.MonthClose{Tenant: tenant}
		var at int64
		if err := rows.Scan(&c.Period, &c.Document, &at); err != nil {
			return nil, fmt.Errorf("embedded state store: closed months of %s: %w", tenant, err)
		}
		c.ClosedAt = time.UnixMicro(at).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded state store: closed months of %s: %w", tenant, err)
	}
	return out, nil
}

// checkTaken refuses a document whose Number or UniqueKey another one has.
// The write lock is held, so nobody can take them before the insert.
func checkTaken(ctx context.Context, tx *sql.Tx, d state.Document) error {
	var holder string
	err := tx.QueryRowContext(ctx, `SELECT number FROM documents WHERE number = ?1 OR unique_key = NULLIF(?2, '')
		ORDER BY number = ?1 DESC LIMIT 1`, d.Number, d.UniqueKey).Scan(&holder)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("look for %q: %w", d.Number, err)
	case holder == d.Number:
		return fmt.Errorf("number: %q is taken: %w", d.Number, state.ErrExists)
	default:
		return fmt.Errorf("unique_key: %q is taken by %s: %w", d.UniqueKey, holder, state.ErrExists)
	}
}

const documentColumns = `series, seq, number, kind, tenant, period, COALESCE(unique_key, ''), COALESCE(refers, ''), issued_at, hash, body`

func scanDocument(scan func(dest ...any) error) (state.Document, error) {
	var d state.Document
	var issued int64
	err := scan(&d.Series, &d.Seq, &d.Number, &d.Kind, &d.Tenant, &d.Period, &d.UniqueKey, &d.Refers, &issued, &d.Hash, &d.Body)
	d.IssuedAt = time.UnixMicro(issued).UTC()
	return d, err
}

// Document implements state.Documents.
func (s *Store) Document(ctx context.Context, number string) (state.Document, error) {
	d, err := scanDocument(s.r.QueryRowContext(ctx, `SELECT `+documentColumns+` FROM documents WHERE number = ?`, number).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return state.Document{}, fmt.Errorf("document %q: %w", number, state.ErrNotFound)
	}
	if err != nil {
		return state.Document{}, fmt.Errorf("embedded state store: read document %q: %w", number, err)
	}
	return d, nil
}

// ListDocuments implements state.Documents.
func (s *Store) ListDocuments(ctx context.Context, f state.DocumentFilter) ([]state.Document, error) {
	cond, args := statesql.DocumentWhere(sqlite, f)
	rows, err := s.r.QueryContext(ctx, `SELECT `+documentColumns+` FROM documents WHERE `+cond+` ORDER BY series, seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("embedded state store: list documents: %w", err)
	}
	defer rows.Close()
	var out []state.Document
	for rows.Next() {
		d, err := scanDocument(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("embedded state store: list documents: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded state store: list documents: %w", err)
	}
	return out, nil
}

// Freeze implements state.Frozen.
func (s *Store) Freeze(ctx context.Context, content []byte) (string, error) {
	if s.closed.Load() {
		return "", state.ErrNotReady
	}
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])
	// A BLOB NOT NULL column refuses a nil slice (bound as NULL): empty
	// content is frozen as an empty BLOB.
	if content == nil {
		content = []byte{}
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO frozen (hash, content) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING`, hash, content); err != nil {
		return "", fmt.Errorf("embedded state store: freeze %s: %w", hash, err)
	}
	return hash, nil
}

// FrozenContent implements state.Frozen.
func (s *Store) FrozenContent(ctx context.Context, hash string) ([]byte, error) {
	var content []byte
	err := s.r.QueryRowContext(ctx, `SELECT content FROM frozen WHERE hash = ?`, hash).Scan(&content)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("frozen content %s: %w", hash, state.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("embedded state store: read frozen content %s: %w", hash, err)
	}
	if content == nil {
		content = []byte{} // frozen empty: found, not missing
	}
	return content, nil
}

// AppendAudit implements state.Audit.
func (s *Store) AppendAudit(ctx context.Context, e state.AuditEntry) (state.AuditEntry, error) {
	if s.closed.Load() {
		return state.AuditEntry{}, state.ErrNotReady
	}
	e, err := statesql.Audit(e)
	if err != nil {
		return state.AuditEntry{}, fmt.Errorf("embedded state store: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return state.AuditEntry{}, fmt.Errorf("embedded state store: append audit: begin: %w", err)
	}
	defer tx.Rollback()
	if e.Seq, err = appendAudit(ctx, tx, e); err != nil {
		return state.AuditEntry{}, fmt.Errorf("embedded state store: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return state.AuditEntry{}, fmt.Errorf("embedded state store: append audit: commit: %w", err)
	}
	return e, nil
}

// appendAudit inserts e in tx with the next Seq and returns it. The write
// lock is held, so the next Seq is the last one plus one: gap-free.
func appendAudit(ctx context.Context, tx *sql.Tx, e state.AuditEntry) (int64, error) {
	var detail any // NULL when there is none
	if len(e.Detail) > 0 {
		detail = []byte(e.Detail)
	}
	var seq int64
	err := tx.QueryRowContext(ctx, `INSERT INTO audit_log (seq, logged_at, actor, action, subject, detail)
		SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM audit_log RETURNING seq`,
		e.Time.UnixMicro(), e.Actor, e.Action, e.Subject, detail).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("append audit %s %s: %w", e.Action, e.Subject, err)
	}
	return seq, nil
}

// ListAudit implements state.Audit.
func (s *Store) ListAudit(ctx context.Context, f state.AuditFilter) ([]state.AuditEntry, error) {
	cond, args := statesql.AuditWhere(sqlite, f)
	rows, err := s.r.QueryContext(ctx, `SELECT seq, logged_at, actor, action, subject, detail FROM audit_log WHERE `+cond+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("embedded state store: list audit: %w", err)
	}
	defer rows.Close()
	var out []state.AuditEntry
	for rows.Next() {
		var e state.AuditEntry
		var at int64
		var detail []byte
		if err := rows.Scan(&e.Seq, &at, &e.Actor, &e.Action, &e.Subject, &detail); err != nil {
			return nil, fmt.Errorf("embedded state store: list audit: %w", err)
		}
		e.Time, e.Detail = time.UnixMicro(at).UTC(), detail
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded state store: list audit: %w", err)
	}
	return out, nil
}

// DeclareWindow implements state.Maintenance.
func (s *Store) DeclareWindow(ctx context.Context, w state.WindowRecord, audit state.AuditEntry) (state.WindowRecord, error) {
	if s.closed.Load() {
		return state.WindowRecord{}, state.ErrNotReady
	}
	w, err := s.declareWindow(ctx, w, audit)
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("embedded state store: declare window: %w", err)
	}
	return w, nil
}

func (s *Store) declareWindow(ctx context.Context, w state.WindowRecord, audit state.AuditEntry) (state.WindowRecord, error) {
	w, err := statesql.Window(w)
	if err != nil {
		return state.WindowRecord{}, err
	}
	// BEGIN IMMEDIATE: the write lock is held from here, so the version read
	// below (or the next seq) stays as read until commit.
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if w.Version == 0 {
		err = insertWindow(ctx, tx, &w)
	} else {
		err = updateWindow(ctx, tx, &w)
	}
	if err != nil {
		return state.WindowRecord{}, err
	}
	e, err := statesql.WindowAudit(audit, w)
	if err != nil {
		return state.WindowRecord{}, err
	}
	if _, err := appendAudit(ctx, tx, e); err != nil {
		return state.WindowRecord{}, err
	}
	if err := tx.Commit(); err != nil {
		return state.WindowRecord{}, fmt.Errorf("commit window %q: %w", w.ID, err)
	}
	return w, nil
}

// insertWindow creates w at version 1, assigning its ID when it has none.
func insertWindow(ctx context.Context, tx *sql.Tx, w *state.WindowRecord) error {
	var seq int64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) + 1 FROM maintenance_windows`).Scan(&seq); err != nil {
		return fmt.Errorf("take the next window number: %w", err)
	}
	if w.ID == "" {
		w.ID = strconv.FormatInt(seq, 10)
	} else {
		var taken int
		err := tx.QueryRowContext(ctx, `SELECT 1 FROM maintenance_windows WHERE id = ?`, w.ID).Scan(&taken)
		switch {
		case err == nil:
			return fmt.Errorf("id: window %q exists: %w", w.ID, state.ErrExists)
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("look for window %q: %w", w.ID, err)
		}
	}
	w.Version = 1
	if _, err := tx.ExecContext(ctx, `INSERT INTO maintenance_windows
		(seq, id, tenant, project, app, start_at, duration_seconds, every, until, ends_by, reason, declared_at, cancelled, version, source)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		seq, w.ID, w.Tenant, w.Project, w.App, w.Start.UnixMicro(), w.DurationSeconds, w.Every, untilMicros(*w),
		statesql.WindowEndsBy(sqlite, *w), w.Reason, w.DeclaredAt.UnixMicro(), w.Cancelled, w.Version, w.Source); err != nil {
		return fmt.Errorf("insert window %q: %w", w.ID, err)
	}
	return nil
}

// updateWindow changes the window of w.ID if it is still at w.Version.
func updateWindow(ctx context.Context, tx *sql.Tx, w *state.WindowRecord) error {
	res, err := tx.ExecContext(ctx, `UPDATE maintenance_windows SET tenant = ?, project = ?, app = ?, start_at = ?,
		duration_seconds = ?, every = ?, until = ?, ends_by = ?, reason = ?, declared_at = ?, cancelled = ?, version = version + 1, source = ?
		WHERE id = ? AND version = ?`,
		w.Tenant, w.Project, w.App, w.Start.UnixMicro(), w.DurationSeconds, w.Every, untilMicros(*w), statesql.WindowEndsBy(sqlite, *w),
		w.Reason, w.DeclaredAt.UnixMicro(), w.Cancelled, w.Source, w.ID, w.Version)
	if err != nil {
		return fmt.Errorf("update window %q: %w", w.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update window %q: %w", w.ID, err)
	} else if n == 1 {
		w.Version++
		return nil
	}
	var version int64
	err = tx.QueryRowContext(ctx, `SELECT version FROM maintenance_windows WHERE id = ?`, w.ID).Scan(&version)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("id: no window %q: %w", w.ID, state.ErrNotFound)
	case err != nil:
		return fmt.Errorf("read window %q: %w", w.ID, err)
	}
	return fmt.Errorf("version: window %q is at version %d, not %d: %w", w.ID, version, w.Version, state.ErrConflict)
}

// untilMicros is the until column of w: NULL without end.
func untilMicros(w state.WindowRecord) any {
	if w.Until.IsZero() {
		return nil
	}
	return w.Until.UnixMicro()
}

const windowColumns = `id, tenant, project, app, start_at, duration_seconds, every, until, reason, declared_at, cancelled, version, source`

func scanWindow(scan func(dest ...any) error) (state.WindowRecord, error) {
	var w state.WindowRecord
	var start, declared int64
	var until sql.NullInt64
	err := scan(&w.ID, &w.Tenant, &w.Project, &w.App, &start, &w.DurationSeconds, &w.Every, &until, &w.Reason, &declared,
		&w.Cancelled, &w.Version, &w.Source)
	w.Start, w.DeclaredAt = time.UnixMicro(start).UTC(), time.UnixMicro(declared).UTC()
	if until.Valid {
		w.Until = time.UnixMicro(until.Int64).UTC()
	}
	return w, err
}

// Window implements state.Maintenance.
func (s *Store) Window(ctx context.Context, id string) (state.WindowRecord, error) {
	w, err := scanWindow(s.r.QueryRowContext(ctx, `SELECT `+windowColumns+` FROM maintenance_windows WHERE id = ?`, id).Scan)
	if errors.Is(err, sql.ErrNoRows) {
		return state.WindowRecord{}, fmt.Errorf("window %q: %w", id, state.ErrNotFound)
	}
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("embedded state store: read window %q: %w", id, err)
	}
	return w, nil
}

// ListWindows implements state.Maintenance.
func (s *Store) ListWindows(ctx context.Context, f state.WindowFilter) ([]state.WindowRecord, error) {
	cond, args := statesql.WindowWhere(sqlite, f)
	rows, err := s.r.QueryContext(ctx, `SELECT `+windowColumns+` FROM maintenance_windows WHERE `+cond+` ORDER BY start_at, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("embedded state store: list windows: %w", err)
	}
	defer rows.Close()
	var out []state.WindowRecord
	for rows.Next() {
		w, err := scanWindow(rows.Scan)
		if err != nil {
			return nil, fmt.Errorf("embedded state store: list windows: %w", err)
		}
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("embedded state store: list windows: %w", err)
	}
	return out, nil
}

// Ready implements state.Store.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return state.ErrNotReady
	}
	if err := s.r.PingContext(ctx); err != nil {
		return errors.Join(state.ErrNotReady, err)
	}
	return nil
}

// Close implements state.Store.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return errors.Join(s.w.Close(), s.r.Close())
}
