// Package state defines the state store: the platform state that needs
// transactions (DESIGN.md §2) — issued invoices and credit notes with their
// gap-free numbers, frozen inputs kept by content hash, and the audit log.
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
	Frozen
	Audit
	// Ready reports whether the store can serve now.
	Ready(ctx context.Context) error
	// Close releases the store. Calls in flight finish first.
	Close() error
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
