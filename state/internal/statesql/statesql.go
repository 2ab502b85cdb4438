// Package statesql is what the SQL adapters of the state store share: the
// store's statements and transactions (Store), the checks Issue makes on
// what build returned, the checks of a maintenance window, the audit
// entries' defaults, and the WHERE clauses of the listings, spelled for each
// dialect. An adapter opens and migrates its database, runs write
// transactions, and says how its engine differs (Dialect).
package statesql

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/paasmeter/paasmeter/state"
)

// CloseIssuedMonths is the last statement of the migration that creates
// month_closes, on either engine: the invoices issued before it closed
// their months.
const CloseIssuedMonths = `INSERT INTO month_closes (tenant, period, document, closed_at)
		SELECT tenant, period, MIN(number), MIN(issued_at) FROM documents WHERE kind = 'invoice' GROUP BY tenant, period;`

// Built checks the document build returned for series and seq and returns it
// as the store keeps it (IssuedAt in UTC).
func Built(series string, seq int64, d state.Document) (state.Document, error) {
	var errs []error
	if d.Series != series {
		errs = append(errs, fmt.Errorf("series: build returned %q for series %q", d.Series, series))
	}
	if d.Seq != seq {
		errs = append(errs, fmt.Errorf("seq: build returned %d for number %d", d.Seq, seq))
	}
	if err := d.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return d, fmt.Errorf("document %q: %w", d.Number, err)
	}
	d.IssuedAt = d.IssuedAt.UTC()
	return d, nil
}

// CheckRefers checks a credit note against the document its Refers names
// (found false when there is none).
func CheckRefers(credit state.Document, found bool, kind state.DocumentKind, tenant, period string) error {
	switch {
	case !found:
		return fmt.Errorf("refers: no document %q: %w", credit.Refers, state.ErrNotFound)
	case kind != state.KindInvoice:
		return fmt.Errorf("refers: %q is a %s, not an invoice", credit.Refers, kind)
	case tenant != credit.Tenant:
		return fmt.Errorf("refers: invoice %q is tenant %q's, not %q's", credit.Refers, tenant, credit.Tenant)
	case period != credit.Period:
		return fmt.Errorf("period: %q differs from the credited invoice's %q", credit.Period, period)
	}
	return nil
}

// CloseOf returns the close an issued invoice asks for, filled from it, or
// nil.
func CloseOf(d state.Document) *state.MonthClose {
	if d.Close == nil {
		return nil
	}
	return &state.MonthClose{Tenant: d.Tenant, Period: d.Period, After: d.Close.After, Document: d.Number, ClosedAt: d.IssuedAt}
}

// CheckClose checks c and, against latest, the tenant's latest closed month
// ("" when none), read under the lock that keeps the tenant's closes in
// order; it returns c as the store keeps it (ClosedAt in UTC).
func CheckClose(c state.MonthClose, latest string) (state.MonthClose, error) {
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("close %s %s: %w", c.Tenant, c.Period, err)
	}
	switch {
	case latest != "" && c.Period <= latest:
		return c, fmt.Errorf("close %s %s: the month is closed already (the latest closed month is %s): %w", c.Tenant, c.Period, latest, state.ErrMonthOrder)
	case latest != c.After:
		return c, fmt.Errorf("close %s %s: the latest closed month is %s, not %q as read: %w", c.Tenant, c.Period, orNone(latest), c.After, state.ErrMonthOrder)
	case c.After != "" && c.Period != state.NextPeriod(c.After):
		return c, fmt.Errorf("close %s %s: %s must close first (months close in order after %s): %w",
			c.Tenant, c.Period, state.NextPeriod(c.After), c.After, state.ErrMonthOrder)
	}
	c.ClosedAt = c.ClosedAt.UTC()
	return c, nil
}

func orNone(period string) string {
	if period == "" {
		return "none"
	}
	return period
}

// MonthAudit fills the defaults of a close's audit entry: an empty Subject
// becomes state.MonthSubject, a zero Time ClosedAt. It checks the entry and
// returns it as the store keeps it.
func MonthAudit(e state.AuditEntry, c state.MonthClose) (state.AuditEntry, error) {
	if e.Subject == "" {
		e.Subject = state.MonthSubject(c.Tenant, c.Period)
	}
	if e.Time.IsZero() {
		e.Time = c.ClosedAt
	}
	return Audit(e)
}

// Audit checks e and returns it as the store keeps it: Time to the
// microsecond, in UTC.
func Audit(e state.AuditEntry) (state.AuditEntry, error) {
	if err := e.Validate(); err != nil {
		return e, fmt.Errorf("audit entry: %w", err)
	}
	e.Time = time.UnixMicro(e.Time.UnixMicro()).UTC()
	return e, nil
}

// AuditOf fills the defaults of an issue's audit entry from the document it
// records: an empty Subject becomes its Number, a zero Time its IssuedAt.
func AuditOf(e state.AuditEntry, d state.Document) state.AuditEntry {
	if e.Subject == "" {
		e.Subject = d.Number
	}
	if e.Time.IsZero() {
		e.Time = d.IssuedAt
	}
	return e
}

// Dialect spells what differs between the SQL engines.
type Dialect struct {
	// Placeholder returns the n-th (from 1) parameter placeholder.
	Placeholder func(n int) string
	// StartsWith returns a condition: column starts with the parameter p, bytewise.
	StartsWith func(column, p string) string
	// Time converts a time to the parameter the engine compares with its time columns.
	Time func(time.Time) any
	// ScanTime returns a scan destination for a time column and what reads
	// it once scanned: the time in UTC, zero for NULL.
	ScanTime func() (dest any, get func() time.Time)
	// NoRows is the driver's error for a query that returned no row.
	NoRows error
	// Unique returns the constraint a unique violation names, "" for
	// another error; nil where the engine's one write lock leaves no
	// concurrent insert to collide with.
	Unique func(err error) string
	// LockMonths, when not empty, is the statement that takes the lock
	// serializing one tenant's closes ($1: the tenant) until the
	// transaction ends; LockAudit the one that serializes the audit log's
	// numbering. Without them the engine's one write lock does.
	LockMonths, LockAudit string
	// NextWindowSeq is the query that returns the next maintenance window
	// number.
	NextWindowSeq string
}

// where collects conditions and their parameters.
type where struct {
	d     Dialect
	conds []string
	args  []any
}

// param adds a parameter and returns its placeholder.
func (w *where) param(v any) string {
	w.args = append(w.args, v)
	return w.d.Placeholder(len(w.args))
}

func (w *where) equal(column, value string) {
	if value != "" {
		w.conds = append(w.conds, column+" = "+w.param(value))
	}
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(w.conds, " AND ")
}

// DocumentWhere returns the condition selecting f's documents and its parameters.
func DocumentWhere(d Dialect, f state.DocumentFilter) (string, []any) {
	w := where{d: d}
	w.equal("series", f.Series)
	w.equal("tenant", f.Tenant)
	w.equal("period", f.Period)
	w.equal("kind", string(f.Kind))
	w.equal("refers", f.Refers)
	return w.String(), w.args
}

// AuditWhere returns the condition selecting f's audit entries, whose time
// column is logged_at, and its parameters.
func AuditWhere(d Dialect, f state.AuditFilter) (string, []any) {
	w := where{d: d}
	if f.SubjectPrefix != "" {
		w.conds = append(w.conds, d.StartsWith("subject", w.param(f.SubjectPrefix)))
	}
	if !f.From.IsZero() {
		w.conds = append(w.conds, "logged_at >= "+w.param(d.Time(f.From)))
	}
	if !f.To.IsZero() {
		w.conds = append(w.conds, "logged_at < "+w.param(d.Time(f.To)))
	}
	return w.String(), w.args
}

// Window checks w and returns it as the store keeps it: times in UTC,
// DeclaredAt to the microsecond.
func Window(w state.WindowRecord) (state.WindowRecord, error) {
	if err := w.Validate(); err != nil {
		return w, fmt.Errorf("window %q: %w", w.ID, err)
	}
	w.Start = w.Start.UTC()
	if !w.Until.IsZero() {
		w.Until = w.Until.UTC()
	}
	w.DeclaredAt = time.UnixMicro(w.DeclaredAt.UnixMicro()).UTC()
	return w, nil
}

// WindowAudit fills the defaults of a window's audit entry from the window
// as stored (its ID and Version assigned): an empty Subject becomes its
// state.WindowSubject, an empty Detail the window as JSON. It checks the
// entry and returns it as the store keeps it.
func WindowAudit(e state.AuditEntry, w state.WindowRecord) (state.AuditEntry, error) {
	if e.Subject == "" {
		e.Subject = state.WindowSubject(w.Tenant, w.ID)
	}
	if len(e.Detail) == 0 {
		detail, err := json.Marshal(w)
		if err != nil {
			return e, fmt.Errorf("audit entry: detail: %w", err)
		}
		e.Detail = detail
	}
	return Audit(e)
}

// WindowEndsBy returns the ends_by column of w: when every occurrence has
// ended, or nil (NULL) for a recurring window without end.
func WindowEndsBy(d Dialect, w state.WindowRecord) any {
	t, ok := w.EndsBy()
	if !ok {
		return nil
	}
	return d.Time(t)
}

// WindowWhere returns the condition selecting f's windows, whose columns
// are tenant, start_at and ends_by (NULL: never ends), and its parameters.
func WindowWhere(d Dialect, f state.WindowFilter) (string, []any) {
	w := where{d: d}
	if f.Tenant != "" {
		w.conds = append(w.conds, "(tenant = "+w.param(f.Tenant)+" OR tenant = '')")
	}
	if !f.To.IsZero() {
		w.conds = append(w.conds, "start_at < "+w.param(d.Time(f.To)))
	}
	if !f.From.IsZero() {
		w.conds = append(w.conds, "(ends_by IS NULL OR ends_by > "+w.param(d.Time(f.From))+")")
	}
	return w.String(), w.args
}
