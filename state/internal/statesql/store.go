package statesql

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync/atomic"

	"github.com/paasmeter/paasmeter/state"
)

// Conn is what the statements need of a connection pool or a transaction:
// each adapter wraps its driver's. Exec returns the rows it affected.
type Conn interface {
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Row is one row of a query, as database/sql and pgx return it.
type Row interface {
	Scan(dest ...any) error
}

// Rows are the rows of a query, read in order.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Adapter is what an SQL adapter gives the Store: how its engine differs,
// and how to reach it.
type Adapter struct {
	// Name starts the store's errors ("embedded state store").
	Name    string
	Dialect Dialect
	// Write runs fn in a write transaction, committed when fn returns nil
	// and rolled back otherwise. It may run fn again, from the start, when
	// the engine aborted the transaction for a conflict another attempt
	// resolves.
	Write func(ctx context.Context, fn func(tx Conn) error) error
	// Read is where reads go.
	Read Conn
	// Ping checks that the database answers; Close releases it.
	Ping  func(ctx context.Context) error
	Close func() error
}

// Store is the state store on an SQL engine: the statements, written once
// with $1 placeholders, over what its adapter gives.
type Store struct {
	name   string
	d      Dialect
	a      Adapter
	closed atomic.Bool
}

// Its adapters add state.Leases, which differ by engine.
var _ interface {
	state.Documents
	state.Months
	state.Frozen
	state.Audit
	state.Maintenance
} = (*Store)(nil)

// NewStore returns the store over a.
func NewStore(a Adapter) *Store {
	return &Store{name: a.Name, d: a.Dialect, a: a}
}

// write runs fn in a write transaction of the adapter's, once the store is
// closed not at all.
func (s *Store) write(ctx context.Context, fn func(tx Conn) error) error {
	if s.closed.Load() {
		return state.ErrNotReady
	}
	return s.a.Write(ctx, fn)
}

// Ready implements state.Store.
func (s *Store) Ready(ctx context.Context) error {
	if s.closed.Load() {
		return state.ErrNotReady
	}
	if err := s.a.Ping(ctx); err != nil {
		return errors.Join(state.ErrNotReady, err)
	}
	return nil
}

// Close implements state.Store.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	return s.a.Close()
}

var dollarParam = regexp.MustCompile(`\$(\d+)`)

// q spells the $n placeholders of query in the store's dialect.
func (s *Store) q(query string) string {
	return dollarParam.ReplaceAllStringFunc(query, func(p string) string {
		n, _ := strconv.Atoi(p[1:])
		return s.d.Placeholder(n)
	})
}

// Issue implements state.Documents.
func (s *Store) Issue(ctx context.Context, series string, build func(seq int64) (state.Document, error), audit state.AuditEntry) (state.Document, error) {
	var d state.Document
	err := s.write(ctx, func(tx Conn) error {
		var err error
		d, err = s.issue(ctx, tx, series, build, audit)
		return err
	})
	if err != nil {
		return state.Document{}, fmt.Errorf("%s: issue in %s: %w", s.name, series, err)
	}
	return d, nil
}

// issue numbers, checks and inserts the document build returns, closes its
// month when it asks to, and logs audit: all in tx, whose locks (the
// series row, the tenant's closes, the audit log, taken in that order)
// keep concurrent writers from reading what this one is about to change.
func (s *Store) issue(ctx context.Context, tx Conn, series string, build func(seq int64) (state.Document, error), audit state.AuditEntry) (state.Document, error) {
	var seq int64
	if err := tx.QueryRow(ctx, s.q(`INSERT INTO document_series (series, last_seq) VALUES ($1, 1)
		ON CONFLICT (series) DO UPDATE SET last_seq = document_series.last_seq + 1 RETURNING last_seq`), series).Scan(&seq); err != nil {
		return state.Document{}, fmt.Errorf("take the next number: %w", err)
	}
	d, err := build(seq)
	if err != nil {
		return state.Document{}, fmt.Errorf("build number %d: %w", seq, err)
	}
	if d, err = Built(series, seq, d); err != nil {
		return state.Document{}, err
	}
	if err := s.checkTaken(ctx, tx, d); err != nil {
		return state.Document{}, err
	}
	if d.Kind == state.KindCreditNote {
		// Documents never change, so the invoice read here stays as read.
		var kind, tenant, period string
		err := tx.QueryRow(ctx, s.q(`SELECT kind, tenant, period FROM documents WHERE number = $1`), d.Refers).Scan(&kind, &tenant, &period)
		if err != nil && !errors.Is(err, s.d.NoRows) {
			return state.Document{}, fmt.Errorf("read the credited invoice %q: %w", d.Refers, err)
		}
		if err := CheckRefers(d, err == nil, state.DocumentKind(kind), tenant, period); err != nil {
			return state.Document{}, fmt.Errorf("document %q: %w", d.Number, err)
		}
	}
	if _, err := tx.Exec(ctx, s.q(`INSERT INTO documents
		(series, seq, number, kind, tenant, period, unique_key, refers, issued_at, hash, body)
		VALUES ($1, $2, $3, $4, $5, $6, NULLIF($7, ''), NULLIF($8, ''), $9, $10, $11)`),
		d.Series, d.Seq, d.Number, string(d.Kind), d.Tenant, d.Period, d.UniqueKey, d.Refers, s.d.Time(d.IssuedAt), d.Hash, d.Body); err != nil {
		return state.Document{}, fmt.Errorf("insert %q: %w", d.Number, s.documentTaken(err, d))
	}
	if c := CloseOf(d); c != nil {
		if err := s.closeMonth(ctx, tx, *c); err != nil {
			return state.Document{}, fmt.Errorf("document %q: %w", d.Number, err)
		}
	}
	e, err := Audit(AuditOf(audit, d))
	if err != nil {
		return state.Document{}, err
	}
	if _, err := s.appendAudit(ctx, tx, e); err != nil {
		return state.Document{}, err
	}
	return d, nil
}

// checkTaken refuses a document whose Number or UniqueKey another one has.
// Where the engine lets a concurrent transaction take them before the
// insert, the insert's unique violation says so (documentTaken).
func (s *Store) checkTaken(ctx context.Context, tx Conn, d state.Document) error {
	var holder string
	err := tx.QueryRow(ctx, s.q(`SELECT number FROM documents WHERE number = $1 OR unique_key = NULLIF($2, '')
		ORDER BY number = $1 DESC LIMIT 1`), d.Number, d.UniqueKey).Scan(&holder)
	switch {
	case errors.Is(err, s.d.NoRows):
		return nil
	case err != nil:
		return fmt.Errorf("look for %q: %w", d.Number, err)
	case holder == d.Number:
		return fmt.Errorf("number: %q is taken: %w", d.Number, state.ErrExists)
	default:
		return fmt.Errorf("unique_key: %q is taken by %s: %w", d.UniqueKey, holder, state.ErrExists)
	}
}

// documentTaken turns the unique violation of a number or key that a
// concurrent transaction took into ErrExists.
func (s *Store) documentTaken(err error, d state.Document) error {
	switch s.unique(err) {
	case "documents_number_unique":
		return fmt.Errorf("number: %q is taken: %w", d.Number, state.ErrExists)
	case "documents_unique_key_unique":
		return fmt.Errorf("unique_key: %q is taken: %w", d.UniqueKey, state.ErrExists)
	}
	return err
}

// unique is the constraint a unique violation names, "" for another error.
func (s *Store) unique(err error) string {
	if err == nil || s.d.Unique == nil {
		return ""
	}
	return s.d.Unique(err)
}

// CloseMonth implements state.Months.
func (s *Store) CloseMonth(ctx context.Context, c state.MonthClose, audit state.AuditEntry) error {
	err := s.write(ctx, func(tx Conn) error {
		if err := s.closeMonth(ctx, tx, c); err != nil {
			return err
		}
		e, err := MonthAudit(audit, c)
		if err != nil {
			return fmt.Errorf("close %s %s: %w", c.Tenant, c.Period, err)
		}
		_, err = s.appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// closeMonth stores c if it follows the tenant's latest closed month. The
// dialect's LockMonths (or the engine's one write lock) keeps a concurrent
// close from reading the same latest month before the insert.
func (s *Store) closeMonth(ctx context.Context, tx Conn, c state.MonthClose) error {
	if s.d.LockMonths != "" {
		if _, err := tx.Exec(ctx, s.q(s.d.LockMonths), c.Tenant); err != nil {
			return fmt.Errorf("close %s %s: take the tenant's lock: %w", c.Tenant, c.Period, err)
		}
	}
	var latest string
	if err := tx.QueryRow(ctx, s.q(`SELECT COALESCE(MAX(period), '') FROM month_closes WHERE tenant = $1`), c.Tenant).Scan(&latest); err != nil {
		return fmt.Errorf("close %s %s: read the latest closed month: %w", c.Tenant, c.Period, err)
	}
	c, err := CheckClose(c, latest)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, s.q(`INSERT INTO month_closes (tenant, period, document, closed_at) VALUES ($1, $2, NULLIF($3, ''), $4)`),
		c.Tenant, c.Period, c.Document, s.d.Time(c.ClosedAt)); err != nil {
		return fmt.Errorf("close %s %s: %w", c.Tenant, c.Period, err)
	}
	return nil
}

// ClosedMonths implements state.Months.
func (s *Store) ClosedMonths(ctx context.Context, tenant string) ([]state.MonthClose, error) {
	return collect(ctx, s, "closed months of "+tenant, `SELECT period, COALESCE(document, ''), closed_at FROM month_closes WHERE tenant = $1 ORDER BY period`,
		[]any{tenant}, func(r Row) (state.MonthClose, error) {
			c := state.MonthClose{Tenant: tenant}
			at, closedAt := s.d.ScanTime()
			err := r.Scan(&c.Period, &c.Document, at)
			c.ClosedAt = closedAt()
			return c, err
		})
}

// collect runs a read query and scans each of its rows with scan; what
// names the reading in its error ("list documents").
func collect[T any](ctx context.Context, s *Store, what, query string, args []any, scan func(Row) (T, error)) (out []T, err error) {
	defer func() {
		if err != nil {
			out, err = nil, fmt.Errorf("%s: %s: %w", s.name, what, err)
		}
	}()
	rows, err := s.a.Read.Query(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

const documentColumns = `series, seq, number, kind, tenant, period, COALESCE(unique_key, ''), COALESCE(refers, ''), issued_at, hash, body`

func (s *Store) scanDocument(r Row) (state.Document, error) {
	var d state.Document
	var kind string
	at, issuedAt := s.d.ScanTime()
	err := r.Scan(&d.Series, &d.Seq, &d.Number, &kind, &d.Tenant, &d.Period, &d.UniqueKey, &d.Refers, at, &d.Hash, &d.Body)
	d.Kind, d.IssuedAt = state.DocumentKind(kind), issuedAt()
	return d, err
}

// Document implements state.Documents.
func (s *Store) Document(ctx context.Context, number string) (state.Document, error) {
	return one(ctx, s, `SELECT `+documentColumns+` FROM documents WHERE number = $1`, number, s.scanDocument, fmt.Sprintf("document %q", number))
}

// one reads the row of query whose key is key, scanned with scan; what
// names it in the errors, ErrNotFound when there is none.
func one[T any](ctx context.Context, s *Store, query, key string, scan func(Row) (T, error), what string) (T, error) {
	v, err := scan(s.a.Read.QueryRow(ctx, s.q(query), key))
	var zero T
	if errors.Is(err, s.d.NoRows) {
		return zero, fmt.Errorf("%s: %w", what, state.ErrNotFound)
	}
	if err != nil {
		return zero, fmt.Errorf("%s: read %s: %w", s.name, what, err)
	}
	return v, nil
}

// ListDocuments implements state.Documents.
func (s *Store) ListDocuments(ctx context.Context, f state.DocumentFilter) ([]state.Document, error) {
	cond, args := DocumentWhere(s.d, f)
	return collect(ctx, s, "list documents", `SELECT `+documentColumns+` FROM documents WHERE `+cond+` ORDER BY series, seq`, args, s.scanDocument)
}

// Freeze implements state.Frozen.
func (s *Store) Freeze(ctx context.Context, content []byte) (string, error) {
	sum := sha256.Sum256(content)
	hash := hex.EncodeToString(sum[:])
	// A nil slice is bound as NULL, which the NOT NULL column refuses: empty
	// content is frozen as an empty one.
	if content == nil {
		content = []byte{}
	}
	err := s.write(ctx, func(tx Conn) error {
		_, err := tx.Exec(ctx, s.q(`INSERT INTO frozen (hash, content) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING`), hash, content)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("%s: freeze %s: %w", s.name, hash, err)
	}
	return hash, nil
}

// FrozenContent implements state.Frozen.
func (s *Store) FrozenContent(ctx context.Context, hash string) ([]byte, error) {
	return one(ctx, s, `SELECT content FROM frozen WHERE hash = $1`, hash, func(r Row) ([]byte, error) {
		var content []byte
		err := r.Scan(&content)
		if content == nil {
			content = []byte{} // frozen empty: found, not missing
		}
		return content, err
	}, "frozen content "+hash)
}

// AppendAudit implements state.Audit.
func (s *Store) AppendAudit(ctx context.Context, e state.AuditEntry) (state.AuditEntry, error) {
	e, err := Audit(e)
	if err != nil {
		return state.AuditEntry{}, fmt.Errorf("%s: %w", s.name, err)
	}
	err = s.write(ctx, func(tx Conn) error {
		var err error
		e.Seq, err = s.appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return state.AuditEntry{}, fmt.Errorf("%s: %w", s.name, err)
	}
	return e, nil
}

// appendAudit inserts e in tx with the next Seq and returns it. The
// dialect's LockAudit (or the engine's one write lock), held until tx ends,
// makes the next Seq the last committed one plus one: gap-free, and in
// commit order. Issue takes it after its series row, DeclareWindow after
// its window's row, and nothing takes them the other way round, so the
// locks cannot deadlock.
func (s *Store) appendAudit(ctx context.Context, tx Conn, e state.AuditEntry) (int64, error) {
	if s.d.LockAudit != "" {
		if _, err := tx.Exec(ctx, s.d.LockAudit); err != nil {
			return 0, fmt.Errorf("lock the audit log: %w", err)
		}
	}
	var detail []byte // NULL when there is none
	if len(e.Detail) > 0 {
		detail = e.Detail
	}
	var seq int64
	err := tx.QueryRow(ctx, s.q(`INSERT INTO audit_log (seq, logged_at, actor, action, subject, detail)
		SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4, $5 FROM audit_log RETURNING seq`),
		s.d.Time(e.Time), e.Actor, e.Action, e.Subject, detail).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("append audit %s %s: %w", e.Action, e.Subject, err)
	}
	return seq, nil
}

// ListAudit implements state.Audit.
func (s *Store) ListAudit(ctx context.Context, f state.AuditFilter) ([]state.AuditEntry, error) {
	cond, args := AuditWhere(s.d, f)
	return collect(ctx, s, "list audit", `SELECT seq, logged_at, actor, action, subject, detail FROM audit_log WHERE `+cond+` ORDER BY seq`, args,
		func(r Row) (state.AuditEntry, error) {
			var e state.AuditEntry
			var detail []byte
			at, loggedAt := s.d.ScanTime()
			err := r.Scan(&e.Seq, at, &e.Actor, &e.Action, &e.Subject, &detail)
			e.Time, e.Detail = loggedAt(), detail
			return e, err
		})
}

// DeclareWindow implements state.Maintenance.
func (s *Store) DeclareWindow(ctx context.Context, w state.WindowRecord, audit state.AuditEntry) (state.WindowRecord, error) {
	w, err := Window(w)
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("%s: declare window: %w", s.name, err)
	}
	var stored state.WindowRecord
	err = s.write(ctx, func(tx Conn) error {
		// A retried attempt starts again from what the caller gave.
		stored = w
		var err error
		if w.Version == 0 {
			err = s.insertWindow(ctx, tx, &stored)
		} else {
			err = s.updateWindow(ctx, tx, &stored)
		}
		if err != nil {
			return err
		}
		e, err := WindowAudit(audit, stored)
		if err != nil {
			return err
		}
		_, err = s.appendAudit(ctx, tx, e)
		return err
	})
	if err != nil {
		return state.WindowRecord{}, fmt.Errorf("%s: declare window: %w", s.name, err)
	}
	return stored, nil
}

// insertWindow creates w at version 1, assigning its ID when it has none. A
// concurrent creation of the same ID, where the engine lets one happen
// between the check and the insert, fails on the unique constraint.
func (s *Store) insertWindow(ctx context.Context, tx Conn, w *state.WindowRecord) error {
	var seq int64
	if err := tx.QueryRow(ctx, s.d.NextWindowSeq).Scan(&seq); err != nil {
		return fmt.Errorf("take the next window number: %w", err)
	}
	if w.ID == "" {
		w.ID = strconv.FormatInt(seq, 10)
	} else {
		var taken int
		err := tx.QueryRow(ctx, s.q(`SELECT 1 FROM maintenance_windows WHERE id = $1`), w.ID).Scan(&taken)
		switch {
		case err == nil:
			return fmt.Errorf("id: window %q exists: %w", w.ID, state.ErrExists)
		case !errors.Is(err, s.d.NoRows):
			return fmt.Errorf("look for window %q: %w", w.ID, err)
		}
	}
	w.Version = 1
	_, err := tx.Exec(ctx, s.q(`INSERT INTO maintenance_windows
		(seq, id, tenant, project, app, start_at, duration_seconds, every, until, ends_by, reason, declared_at, cancelled, version, source)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`),
		seq, w.ID, w.Tenant, w.Project, w.App, s.d.Time(w.Start), w.DurationSeconds, w.Every, s.until(*w),
		WindowEndsBy(s.d, *w), w.Reason, s.d.Time(w.DeclaredAt), w.Cancelled, w.Version, w.Source)
	if s.unique(err) == "maintenance_windows_id_unique" {
		return fmt.Errorf("id: window %q exists: %w", w.ID, state.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("insert window %q: %w", w.ID, err)
	}
	return nil
}

// updateWindow changes the window of w.ID if it is still at w.Version. A
// concurrent change of the same window holds its row: this UPDATE waits,
// then finds the new version and changes nothing.
func (s *Store) updateWindow(ctx context.Context, tx Conn, w *state.WindowRecord) error {
	n, err := tx.Exec(ctx, s.q(`UPDATE maintenance_windows SET tenant = $1, project = $2, app = $3, start_at = $4,
		duration_seconds = $5, every = $6, until = $7, ends_by = $8, reason = $9, declared_at = $10, cancelled = $11,
		version = version + 1, source = $12
		WHERE id = $13 AND version = $14`),
		w.Tenant, w.Project, w.App, s.d.Time(w.Start), w.DurationSeconds, w.Every, s.until(*w), WindowEndsBy(s.d, *w),
		w.Reason, s.d.Time(w.DeclaredAt), w.Cancelled, w.Source, w.ID, w.Version)
	if err != nil {
		return fmt.Errorf("update window %q: %w", w.ID, err)
	}
	if n == 1 {
		w.Version++
		return nil
	}
	var version int64
	err = tx.QueryRow(ctx, s.q(`SELECT version FROM maintenance_windows WHERE id = $1`), w.ID).Scan(&version)
	switch {
	case errors.Is(err, s.d.NoRows):
		return fmt.Errorf("id: no window %q: %w", w.ID, state.ErrNotFound)
	case err != nil:
		return fmt.Errorf("read window %q: %w", w.ID, err)
	}
	return fmt.Errorf("version: window %q is at version %d, not %d: %w", w.ID, version, w.Version, state.ErrConflict)
}

// until is the until column of w: NULL without end.
func (s *Store) until(w state.WindowRecord) any {
	if w.Until.IsZero() {
		return nil
	}
	return s.d.Time(w.Until)
}

const windowColumns = `id, tenant, project, app, start_at, duration_seconds, every, until, reason, declared_at, cancelled, version, source`

func (s *Store) scanWindow(r Row) (state.WindowRecord, error) {
	var w state.WindowRecord
	start, startAt := s.d.ScanTime()
	declared, declaredAt := s.d.ScanTime()
	until, untilAt := s.d.ScanTime()
	err := r.Scan(&w.ID, &w.Tenant, &w.Project, &w.App, start, &w.DurationSeconds, &w.Every, until, &w.Reason, declared,
		&w.Cancelled, &w.Version, &w.Source)
	w.Start, w.DeclaredAt, w.Until = startAt(), declaredAt(), untilAt()
	return w, err
}

// Window implements state.Maintenance.
func (s *Store) Window(ctx context.Context, id string) (state.WindowRecord, error) {
	return one(ctx, s, `SELECT `+windowColumns+` FROM maintenance_windows WHERE id = $1`, id, s.scanWindow, fmt.Sprintf("window %q", id))
}

// ListWindows implements state.Maintenance.
func (s *Store) ListWindows(ctx context.Context, f state.WindowFilter) ([]state.WindowRecord, error) {
	cond, args := WindowWhere(s.d, f)
	return collect(ctx, s, "list windows", `SELECT `+windowColumns+` FROM maintenance_windows WHERE `+cond+` ORDER BY start_at, id`, args, s.scanWindow)
}
