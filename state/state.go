// Package state defines the state store: the platform state that needs
// transactions (DESIGN.md §2) — issued invoices and credit notes with their
// gap-free numbers, frozen inputs kept by content hash, declared maintenance
// windows, and the audit log.
//
// Adapters live beside it: state/embedded (SQLite in the data directory, the
// default) and state/postgres (PostgreSQL, for several collectors). Both pass
// the contract suite in state/statetest, which runs every promise made here
// against two handles on one database, as two processes would hold them.
// state/open picks the adapter from a DSN.
//
// Times are kept to the microsecond, PostgreSQL's precision, and read back in
// UTC.
package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Store is a state store.
type Store interface {
	Documents
	Months
	Frozen
	Audit
	Maintenance
	Leases
	// Ready reports whether the store can serve now.
	Ready(ctx context.Context) error
	// Close releases the store. Calls in flight finish first.
	Close() error
}

// Leases hand a named lease to one holder at a time: a background job that
// must run once among several collectors sharing the store runs only in the
// lease's holder (hub's reconcile-metrics, sla-metrics and log retention).
// Expiries come from the caller's clock, so the holders' clocks must agree
// to well within a lease's TTL (NTP does). The embedded store serves one
// process: there, every caller is always the holder.
type Leases interface {
	// AcquireLease takes the lease name for holder until now+ttl when it is
	// free, expired at now, or already holder's (then it renews it), and
	// reports whether holder has it.
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder has it, so another holder
	// can take it at once instead of after its expiry.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// DocumentKind says what a document is.
type DocumentKind string

// The kinds of documents.
const (
	KindInvoice    DocumentKind = "invoice"
	KindCreditNote DocumentKind = "credit_note"
)

// Document is an issued invoice or credit note. Issued documents never
// change: there is no update and no delete; a correction is a credit note.
type Document struct {
	// Series is the numbering series, e.g. "PM-2026" (prefix and year):
	// numbers restart at 1 in every series.
	Series string
	// Seq is the document's number within Series: 1, 2, 3…, gap-free.
	Seq int64
	// Number is the number shown to people, e.g. "PM-2026-000001", built by
	// the caller from Series and Seq; unique across all series.
	Number string
	Kind   DocumentKind
	Tenant string
	// Period is the month invoiced, "2026-11"; a credit note has the credited
	// invoice's month.
	Period string
	// UniqueKey is optional; when non-empty, at most one document has it
	// (e.g. "invoice/caami/2026-11"), so that a second run of the same
	// invoicing is refused with ErrExists instead of issuing twice.
	UniqueKey string
	// Refers is, for a credit note, the Number of the invoice it corrects (an
	// invoice of the same tenant and period); "" for an invoice.
	Refers string
	// IssuedAt must be whole microseconds (what PostgreSQL keeps): the store
	// refuses to round it, since Body likely holds the same instant and the
	// two must agree bit for bit.
	IssuedAt time.Time
	// Hash is the hex SHA-256 of the document's frozen inputs, computed by the caller.
	Hash string
	// Body is the document as canonical JSON. The store does not interpret
	// it and returns it byte for byte.
	Body []byte
	// Close, on an invoice given to Issue, closes the invoice's Period for
	// its Tenant in the same transaction, under CloseMonth's rules: only its
	// After is read (Tenant, Period, Document and ClosedAt are the
	// document's). The invoice and the close are stored together or not at
	// all, so no run can issue a month's invoice and leave the month open.
	// Documents read back have none: ClosedMonths lists the closes.
	Close *MonthClose
}

// Documents keeps issued invoices and credit notes.
type Documents interface {
	// Issue takes the next number of series and stores a document with it,
	// in one transaction: it calls build with that number (seq), stores the
	// Document build returns — whose Series and Seq must be series and seq —
	// together with audit, and returns the stored document.
	//
	// Numbers are gap-free and never repeated, even when several processes
	// issue concurrently against the same database. If build fails, the
	// document is invalid (an error naming the field), its UniqueKey or
	// Number is taken (ErrExists), a credit note's Refers names no invoice
	// (ErrNotFound), or the store fails, nothing is stored and the number is
	// not consumed.
	//
	// build may be called more than once (again after a serialization
	// conflict), so it must be a pure function of seq. It runs inside the
	// transaction that holds the series, so it should be quick.
	//
	// audit is recorded in the same transaction and needs an Actor and an
	// Action; an empty Subject becomes the document's Number and a zero Time
	// its IssuedAt.
	Issue(ctx context.Context, series string, build func(seq int64) (Document, error), audit AuditEntry) (Document, error)
	// Document returns the document numbered number, or ErrNotFound.
	Document(ctx context.Context, number string) (Document, error)
	// ListDocuments returns the documents f selects, ordered by Series
	// (bytewise) then Seq.
	ListDocuments(ctx context.Context, f DocumentFilter) ([]Document, error)
}

// DocumentFilter selects documents. Every field is optional: empty selects any.
type DocumentFilter struct {
	Series string
	Tenant string
	Period string
	Kind   DocumentKind
	// Refers selects the credit notes of one invoice.
	Refers string
}

// MonthClose records that an institution's month is closed (DESIGN.md §5):
// its own invoice was issued, or there was nothing to invoice. Records of a
// closed month are billed as adjustments on a later invoice, never on the
// month's own.
type MonthClose struct {
	Tenant string
	// Period is the month closed, "2026-11".
	Period string
	// After is the tenant's latest closed month the caller saw when it
	// decided to close Period, "" when none was. The store closes Period
	// only if that is still the latest and, when After is not "", Period is
	// the month right after it: months close one after the other, and two
	// runs that decided from the same state cannot both close. It is not
	// kept: ClosedMonths returns it "".
	After string
	// Document is the number of the invoice that closed the month, "" when
	// there was nothing to invoice.
	Document string
	// ClosedAt is when: whole microseconds, like a document's IssuedAt.
	ClosedAt time.Time
}

// Months keeps which months are closed, per institution.
type Months interface {
	// CloseMonth closes c.Period for c.Tenant with nothing invoiced, and
	// records audit in the same transaction (an empty Subject becomes
	// MonthSubject, a zero Time ClosedAt). When c.After is no longer the
	// tenant's latest closed month, or Period does not follow it, nothing is
	// stored and the error wraps ErrMonthOrder, naming the latest.
	CloseMonth(ctx context.Context, c MonthClose, audit AuditEntry) error
	// ClosedMonths returns tenant's closed months, oldest first.
	ClosedMonths(ctx context.Context, tenant string) ([]MonthClose, error)
}

// MonthSubject is the audit Subject of closing period for tenant:
// "month/<tenant>/<period>".
func MonthSubject(tenant, period string) string { return "month/" + tenant + "/" + period }

// NextPeriod returns the month after period ("2026-12" → "2027-01"), or ""
// when period is not a month YYYY-MM.
func NextPeriod(period string) string {
	t, err := time.Parse("2006-01", period)
	if err != nil || !periodRE.MatchString(period) {
		return ""
	}
	return t.AddDate(0, 1, 0).Format("2006-01")
}

// Validate reports what is wrong with c, naming each field.
func (c *MonthClose) Validate() error {
	var errs []error
	if c.Tenant == "" {
		errs = append(errs, errors.New("tenant: is required"))
	}
	if !periodRE.MatchString(c.Period) {
		errs = append(errs, fmt.Errorf("period: %q is not a month YYYY-MM", c.Period))
	}
	if c.After != "" && !periodRE.MatchString(c.After) {
		errs = append(errs, fmt.Errorf("after: %q is not a month YYYY-MM", c.After))
	}
	switch {
	case c.ClosedAt.IsZero():
		errs = append(errs, errors.New("closed_at: is required"))
	case c.ClosedAt.Nanosecond()%1000 != 0:
		errs = append(errs, fmt.Errorf("closed_at: %s has sub-microsecond digits; truncate it", c.ClosedAt.Format(time.RFC3339Nano)))
	}
	return errors.Join(errs...)
}

// Frozen keeps content by its hash: the rate-card contents and SLA figures an
// invoice was computed from, so that `verify` can re-derive it.
type Frozen interface {
	// Freeze stores content under its SHA-256 and returns the hash (lowercase
	// hex). Freezing the same content again stores nothing new and returns
	// the same hash.
	Freeze(ctx context.Context, content []byte) (hash string, err error)
	// FrozenContent returns the content frozen under hash, or ErrNotFound.
	FrozenContent(ctx context.Context, hash string) ([]byte, error)
}

// AuditEntry is one audited change.
type AuditEntry struct {
	// Seq is assigned by the store: 1, 2, 3…, gap-free, in commit order, so
	// that a missing entry shows.
	Seq int64
	// Time is required (Issue defaults it); the store keeps it to the microsecond.
	Time time.Time
	// Actor is who acted: a configured token name, a user, "billing".
	Actor string
	// Action names what was done, e.g. "invoice.issue".
	Action string
	// Subject is what was changed, e.g. a document number or
	// "maintenance/caami/42"; listed by prefix.
	Subject string
	// Detail is optional JSON, returned byte for byte.
	Detail json.RawMessage
}

// Audit is the state store's append-only audit log.
type Audit interface {
	// AppendAudit stores e and returns it as stored, with its Seq.
	AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error)
	// ListAudit returns the entries f selects, ordered by Seq.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error)
}

// AuditFilter selects audit entries. Every field is optional: zero selects any.
type AuditFilter struct {
	// SubjectPrefix selects entries whose Subject starts with it (bytewise).
	SubjectPrefix string
	// From and To bound Time: From ≤ Time < To.
	From, To time.Time
}

// ErrNotFound is returned when a document or frozen content does not exist.
var ErrNotFound = errors.New("state: not found")

// ErrExists is returned by Issue when a document with the same UniqueKey or
// Number is already stored.
var ErrExists = errors.New("state: already exists")

// ErrMonthOrder is returned when closing a month would break their order:
// the month is closed already, or the latest closed month is not the one the
// caller saw.
var ErrMonthOrder = errors.New("state: months close in order")

// ErrConflict is returned by DeclareWindow when the window changed since
// the version the caller read: read it again and redo the change.
var ErrConflict = errors.New("state: changed since it was read")

// ErrNotReady is returned by a store that cannot serve: closed, or its
// server unreachable.
var ErrNotReady = errors.New("state store not ready")

var (
	periodRE = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)
	hashRE   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// Validate reports what is wrong with d, naming each field.
func (d *Document) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	if d.Series == "" {
		bad("series", "is required")
	}
	if d.Seq < 1 {
		bad("seq", "%d must be at least 1", d.Seq)
	}
	if d.Number == "" {
		bad("number", "is required")
	}
	switch d.Kind {
	case KindInvoice:
		if d.Refers != "" {
			bad("refers", "an invoice refers to no document (got %q)", d.Refers)
		}
	case KindCreditNote:
		if d.Refers == "" {
			bad("refers", "a credit note must name the invoice it corrects")
		}
	default:
		bad("kind", "%q is not %q or %q", d.Kind, KindInvoice, KindCreditNote)
	}
	if d.Tenant == "" {
		bad("tenant", "is required")
	}
	if !periodRE.MatchString(d.Period) {
		bad("period", "%q is not a month YYYY-MM", d.Period)
	}
	switch {
	case d.IssuedAt.IsZero():
		bad("issued_at", "is required")
	case d.IssuedAt.Nanosecond()%1000 != 0:
		bad("issued_at", "%s has sub-microsecond digits; truncate it (the store keeps microseconds)", d.IssuedAt.Format(time.RFC3339Nano))
	}
	if !hashRE.MatchString(d.Hash) {
		bad("hash", "%q is not a lowercase hex SHA-256", d.Hash)
	}
	if !json.Valid(d.Body) {
		bad("body", "is not valid JSON")
	}
	if d.Close != nil && d.Kind != KindInvoice {
		bad("close", "only an invoice closes a month")
	}
	return errors.Join(errs...)
}

// Validate reports what is wrong with e, naming each field. Seq is ignored:
// the store assigns it.
func (e *AuditEntry) Validate() error {
	var errs []error
	if e.Time.IsZero() {
		errs = append(errs, errors.New("time: is required"))
	}
	if e.Actor == "" {
		errs = append(errs, errors.New("actor: is required"))
	}
	if e.Action == "" {
		errs = append(errs, errors.New("action: is required"))
	}
	if len(e.Detail) > 0 && !json.Valid(e.Detail) {
		errs = append(errs, errors.New("detail: is not valid JSON"))
	}
	return errors.Join(errs...)
}

// WindowRecord is a declared maintenance window (DESIGN.md §6) as the store
// keeps it: one declaration, one-off or recurring. The store checks its shape
// only; the declaration rules (lead time, no change once started) are
// package sla/maintenance's, which also expands recurrences.
type WindowRecord struct {
	// ID is assigned by the store on creation when empty: a decimal number.
	// A given one (a declaration of the configuration file) must not be all
	// digits, so that it never collides with an assigned one, nor hold '/'.
	ID string `json:"id"`
	// Tenant, Project and App are the scope: all empty for the whole
	// platform, Tenant alone for an institution, all three for one app.
	Tenant  string `json:"tenant,omitempty"`
	Project string `json:"project,omitempty"`
	App     string `json:"app,omitempty"`
	// Start is the (first) occurrence's start, in whole microseconds: the
	// store refuses to round it.
	Start time.Time `json:"start"`
	// DurationSeconds is each occurrence's length, elapsed time.
	DurationSeconds int64 `json:"duration_seconds"`
	// Every is "" for a one-off window, or daily, weekly or monthly.
	Every string `json:"every,omitempty"`
	// Until, for a recurring window, ends it: no occurrence starts at or
	// after it. Zero means no end. Whole microseconds, like Start.
	Until      time.Time `json:"until,omitzero"`
	Reason     string    `json:"reason"`
	DeclaredAt time.Time `json:"declared_at"`
	Cancelled  bool      `json:"cancelled,omitempty"`
	// Version is 0 in a window to create; the store sets 1, and adds 1 at
	// every change, which must give the version it changes.
	Version int64 `json:"version"`
	// Source is who owns the declaration: "api" (the admin API or the
	// command line) or "config" (the configuration file).
	Source string `json:"source"`
}

// The sources of a window.
const (
	WindowSourceAPI    = "api"
	WindowSourceConfig = "config"
)

// Maintenance keeps the declared maintenance windows.
type Maintenance interface {
	// DeclareWindow stores w with audit, in one transaction, and returns w as
	// stored. A w of Version 0 is created, with a store-assigned ID when
	// its ID is empty (ErrExists when its ID is taken); any other w changes
	// the window of its ID if that is still at w.Version (ErrConflict when
	// not, ErrNotFound when there is no such window). The stored Version is
	// 1 on creation and one more at every change.
	//
	// audit needs a Time, an Actor and an Action; an empty Subject becomes
	// WindowSubject of the stored window, and an empty Detail the stored
	// window as JSON, so that the audit log holds every state a window had.
	DeclareWindow(ctx context.Context, w WindowRecord, audit AuditEntry) (WindowRecord, error)
	// Window returns the window of id, or ErrNotFound.
	Window(ctx context.Context, id string) (WindowRecord, error)
	// ListWindows returns the windows f selects, cancelled ones included,
	// ordered by Start then ID (bytewise).
	ListWindows(ctx context.Context, f WindowFilter) ([]WindowRecord, error)
}

// WindowFilter selects windows. Every field is optional: zero selects any.
type WindowFilter struct {
	// Tenant selects the windows that apply to the institution: its own,
	// its apps', and the platform-wide ones.
	Tenant string
	// From and To select the windows that may have an occurrence
	// overlapping [From, To): a recurring window is selected over its whole
	// span, from Start to Until (and on, without Until).
	From, To time.Time
}

// WindowSubject is the audit Subject of the changes of window id of tenant:
// "maintenance/<tenant>/<id>", or "maintenance/platform/<id>" for a
// platform-wide window, so that a prefix lists an institution's.
func WindowSubject(tenant, id string) string {
	if tenant == "" {
		tenant = "platform"
	}
	return "maintenance/" + tenant + "/" + id
}

var (
	// windowIDRE is what a given window ID may be: it goes in audit subjects
	// and URL paths.
	windowIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	digitsRE   = regexp.MustCompile(`^[0-9]+$`)
)

// Validate reports what is wrong with w, naming each field.
func (w *WindowRecord) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{field}, args...)...))
	}
	switch {
	case w.Version < 0:
		bad("version", "%d is negative", w.Version)
	case w.ID == "" && w.Version > 0:
		bad("id", "is required to change a window")
	case w.ID != "" && w.Version == 0 && digitsRE.MatchString(w.ID):
		bad("id", "%q is all digits, which only the store assigns", w.ID)
	case w.ID != "" && !windowIDRE.MatchString(w.ID):
		bad("id", "%q must be 1-128 letters, digits, '.', '_' or '-'", w.ID)
	}
	if w.App != "" && w.Project == "" {
		bad("project", "is required with an app")
	}
	if w.Project != "" && w.Tenant == "" {
		bad("tenant", "is required with a project")
	}
	micro := func(field string, t time.Time) {
		if t.Nanosecond()%1000 != 0 {
			bad(field, "%s has sub-microsecond digits (the store keeps microseconds)", t.Format(time.RFC3339Nano))
		}
	}
	if w.Start.IsZero() {
		bad("start", "is required")
	}
	micro("start", w.Start)
	if w.DurationSeconds <= 0 {
		bad("duration_seconds", "%d must be positive", w.DurationSeconds)
	}
	switch w.Every {
	case "":
		if !w.Until.IsZero() {
			bad("until", "a one-off window has no until")
		}
	case "daily", "weekly", "monthly":
		if !w.Until.IsZero() && !w.Until.After(w.Start) {
			bad("until", "%s must be after start %s", w.Until.Format(time.RFC3339), w.Start.Format(time.RFC3339))
		}
		micro("until", w.Until)
	default:
		bad("every", "%q must be empty, daily, weekly or monthly", w.Every)
	}
	if w.DeclaredAt.IsZero() {
		bad("declared_at", "is required")
	}
	if w.Source != WindowSourceAPI && w.Source != WindowSourceConfig {
		bad("source", "%q must be %s or %s", w.Source, WindowSourceAPI, WindowSourceConfig)
	}
	return errors.Join(errs...)
}

// EndsBy returns when every occurrence of w has ended, and false for a
// recurring window without end.
func (w *WindowRecord) EndsBy() (time.Time, bool) {
	d := time.Duration(w.DurationSeconds) * time.Second
	switch {
	case w.Every == "":
		return w.Start.Add(d), true
	case !w.Until.IsZero():
		// The last occurrence starts before Until.
		return w.Until.Add(d), true
	}
	return time.Time{}, false
}
