// Package metering defines the metering store: where usage records, events
// and log lines are kept, deduplicated by id, append-only (log lines also expire).
//
// Adapters live beside it: metering/embedded (SQLite in a data directory, the
// default) and metering/clickhouse (one ClickHouse server, or a cluster sharded
// by institution). Every adapter must pass the contract suite in
// metering/storetest, which says where an adapter may promise less.
package metering

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/usage"
)

// Store is a metering store.
type Store interface {
	UsageAppender
	UsageReader
	AcceptedReader
	EventAppender
	EventReader
	RunReader
	LogAppender
	LogReader
	LogRetention
	// Ready reports whether the store can take writes now.
	Ready(ctx context.Context) error
	// Close releases the store. Calls in flight finish first.
	Close() error
}

// UsageAppender stores usage records.
type UsageAppender interface {
	// AppendUsage stores recs, all or nothing, and returns only once they are
	// durable. A record whose id is already stored — or repeated earlier in recs —
	// is a duplicate: it is not stored again and the first arrival (with its
	// received_at) is kept. A duplicate whose content (usage.ContentHash)
	// differs from the first arrival's is also a conflict: still not stored,
	// but reported apart, since no resend of one measurement differs. Records
	// must be valid (usage.Validate) and carry their received_at.
	//
	// The new records are counted in the accepted ledger (AcceptedReader), per
	// tenant and hour of window start, beside the records themselves.
	//
	// On error nothing of recs is stored, so the caller may retry the same batch.
	AppendUsage(ctx context.Context, recs []usage.Record) (AppendResult, error)
}

// AppendResult says what an append did.
type AppendResult struct {
	// Duplicates holds the indexes (into the appended slice) of the records that
	// were duplicates, in ascending order. Every other record was new.
	Duplicates []int
	// Conflicts holds the indexes, ascending, of those duplicates whose content
	// differs from the first arrival's: a subset of Duplicates. A first arrival
	// stored before the store kept content hashes has none to compare, and a
	// repeat of it is a plain duplicate.
	Conflicts []int
}

// UsageReader reads stored usage records of one tenant.
type UsageReader interface {
	// QueryUsage aggregates a tenant's usage. Totals are exact (see usage.Total).
	QueryUsage(ctx context.Context, q UsageQuery) ([]UsageRow, error)
	// ScanUsage calls fn for every stored record of f.Tenant whose window starts
	// in [f.From, f.To), ordered by window start then id. It stops at fn's first error.
	ScanUsage(ctx context.Context, f UsageFilter, fn func(usage.Record) error) error
}

// AcceptedReader reads the ledger of accepted records: how many records each append reported as new, per tenant and
// UTC hour of their window start. It is written by AppendUsage beside the records, not derived from them, so
// reconciliation can compare the two.
type AcceptedReader interface {
	// AcceptedUsage returns the tenant's accepted counts of the hours in [from, to), ascending; hours without
	// accepted records are left out.
	AcceptedUsage(ctx context.Context, tenant string, from, to time.Time) ([]AcceptedRow, error)
}

// AcceptedRow is the number of records of one tenant accepted as new for one hour.
type AcceptedRow struct {
	// Hour is the UTC hour the records' window starts in.
	Hour time.Time
	// Records counts the records appends reported new for that hour.
	Records int64
}

// UsageFilter selects records of one tenant by window start.
type UsageFilter struct {
	Tenant string
	// From and To bound the window start: From ≤ window_start < To.
	From, To time.Time
	// Optional filters; empty means all.
	Projects     []string
	Apps         []string
	Environments []usage.Environment
	Meters       []usage.Meter
}

// Dimension is a grouping key of a usage query besides the meter, which is always grouped.
type Dimension string

// The dimensions usage can be grouped by.
const (
	ByProject     Dimension = "project"
	ByApp         Dimension = "app"
	ByEnvironment Dimension = "environment"
	ByDay         Dimension = "day"
)

// Dimensions lists every dimension in the order rows are sorted by.
var Dimensions = []Dimension{ByProject, ByApp, ByEnvironment, ByDay}

// MaxQueryRange bounds how much time one usage query may cover.
const MaxQueryRange = 400 * 24 * time.Hour

// UsageQuery is an aggregation over a tenant's usage.
type UsageQuery struct {
	UsageFilter
	// GroupBy lists the dimensions to group by; the meter is always grouped.
	GroupBy []Dimension
	// Location defines days for ByDay. Nil means UTC.
	Location *time.Location
}

// Validate reports what is wrong with q, naming the parameter.
func (q *UsageQuery) Validate() error {
	var errs []error
	if q.Tenant == "" {
		errs = append(errs, errors.New("tenant: is required"))
	}
	switch {
	case q.From.IsZero() || q.To.IsZero():
		errs = append(errs, errors.New("from, to: both are required"))
	case !q.To.After(q.From):
		errs = append(errs, errors.New("to: must be after from"))
	case q.To.Sub(q.From) > MaxQueryRange:
		errs = append(errs, fmt.Errorf("to: a query may cover at most %d days", int(MaxQueryRange/(24*time.Hour))))
	}
	for _, d := range q.GroupBy {
		if !slices.Contains(Dimensions, d) {
			errs = append(errs, fmt.Errorf("group_by: %q is not one of project, app, environment, meter, day", d))
		}
	}
	return errors.Join(errs...)
}

// Groups reports whether q groups by d.
func (q *UsageQuery) Groups(d Dimension) bool { return slices.Contains(q.GroupBy, d) }

// UsageRow is one group of a usage query. Dimensions not grouped by are empty.
type UsageRow struct {
	Project     string            `json:"project,omitempty"`
	App         string            `json:"app,omitempty"`
	Environment usage.Environment `json:"environment,omitempty"`
	// Day is the calendar day (YYYY-MM-DD) of the window start in the query's location.
	Day      string      `json:"day,omitempty"`
	Meter    usage.Meter `json:"meter"`
	Quantity usage.Total `json:"quantity"`
	Records  int64       `json:"records"`
}

// SortRows puts rows in the canonical order: by project, app, environment, day, meter.
func SortRows(rows []UsageRow) {
	slices.SortFunc(rows, func(a, b UsageRow) int {
		for _, c := range [][2]string{{a.Project, b.Project}, {a.App, b.App}, {string(a.Environment), string(b.Environment)},
			{a.Day, b.Day}, {string(a.Meter), string(b.Meter)}} {
			if c[0] != c[1] {
				if c[0] < c[1] {
					return -1
				}
				return 1
			}
		}
		return 0
	})
}

// EventAppender stores events.
type EventAppender interface {
	// AppendEvents stores evs with the same guarantees as AppendUsage: all or
	// nothing, durable on return, duplicates (same id) keep the first arrival,
	// and those whose content (events.ContentHash) differs are conflicts.
	AppendEvents(ctx context.Context, evs []events.Event) (AppendResult, error)
}

// EventReader reads stored events of one tenant.
type EventReader interface {
	// ScanEvents calls fn for every stored event of f.Tenant whose time is in
	// [f.From, f.To), ordered by time then id. It stops at fn's first error.
	ScanEvents(ctx context.Context, f EventFilter, fn func(events.Event) error) error
}

// ProbeRunReader is an EventReader that collapses probe results in the
// store. The SLA report reads a month of a tenant's production events, a
// probe result every 10 s for each replica, and needs only where each run
// of equal results begins and ends: the report finds the port by a type
// assertion and reads through ScanEvents where a store lacks it.
type ProbeRunReader interface {
	EventReader
	// ScanProbeRuns calls fn for every event ScanEvents would, in its order,
	// with the time of last the event's own, except for probe results
	// (probe events with a result). Those form runs: the probe results of
	// one container (project, app and container id) in that order, with the
	// same outcome, each at most gap after the one before, with no started,
	// restarted, died, stopped or removed event of the container among the
	// events f selects between them. fn gets a run's first probe result with
	// last the time of the run's last one, and none of the others. A store
	// may split a run into several, which the caller joins again by the same
	// rule. Like any read beside appends, events stored while it runs may be
	// left out; a store that reads twice may also pass one of them without
	// splitting a run at it (the report's Settle keeps them rare, and the
	// next report has them).
	ScanProbeRuns(ctx context.Context, f EventFilter, gap time.Duration, fn func(e events.Event, last time.Time) error) error
}

// RunReader tells which node reported a container run.
type RunReader interface {
	// RunNode returns the node of the earliest stored event (by time, then
	// id) of the tenant's run (container and run id), and false when none is
	// stored. The node that first reported a run is the one that ran it: the
	// collector accepts the run's platform-initiated events from it alone.
	RunNode(ctx context.Context, tenant, containerID, runID string) (node string, found bool, err error)
}

// EventFilter selects events of one tenant by time.
type EventFilter struct {
	Tenant   string
	From, To time.Time
	// Optional filters; empty means all.
	Apps         []string
	Types        []events.Type
	Environments []usage.Environment
}

// LogAppender stores log lines.
type LogAppender interface {
	// AppendLogs stores lines with the guarantees of AppendUsage: durable on
	// return, all or nothing, the first arrival of an id kept. Lines must be
	// valid (logs.Validate) and carry their received_at.
	AppendLogs(ctx context.Context, lines []logs.Line) (AppendResult, error)
	// CountLogStreams returns how many streams tenant has stored, and how
	// many of keys (logs.StreamKey) are not among them: what appending lines
	// of those streams would add, for the collector's limit on streams.
	CountLogStreams(ctx context.Context, tenant string, keys []string) (stored, missing int, err error)
}

// LogReader reads the stored lines of one tenant.
type LogReader interface {
	// ScanLogs hands take, one at a time, the lines of q.Tenant with a time
	// in [q.From, q.To) that q.Selector selects (stream and text), newest
	// first (oldest first when q.Forward), until q.Limit lines are taken or
	// take refuses one; take must take the first. It returns the cursor of
	// the next page ("" when no line is left). Lines are read from the store
	// in bounded chunks, so a scan's memory does not grow with its page, and
	// no connection is held while take runs.
	ScanLogs(ctx context.Context, q LogQuery, take func(logs.Line) bool) (next string, err error)
	// LogLabels returns the sorted label names of the tenant's streams that
	// have lines in [from, to).
	LogLabels(ctx context.Context, tenant string, from, to time.Time) ([]string, error)
	// LogLabelValues returns the sorted values label name takes in those streams.
	LogLabelValues(ctx context.Context, tenant, name string, from, to time.Time) ([]string, error)
}

// LogRetention forgets old lines.
type LogRetention interface {
	// DeleteLogs deletes the tenant's lines with a time before before and
	// returns how many it deleted. A store that can do so safely (the
	// embedded one) deletes the streams left without lines too.
	DeleteLogs(ctx context.Context, tenant string, before time.Time) (int64, error)
}

// LogQuery selects lines of one tenant.
type LogQuery struct {
	Tenant   string
	From, To time.Time
	// Selector chooses streams by label and lines by text; empty selects all.
	Selector logs.Selector
	// Limit is the most lines returned (1..MaxLogLimit).
	Limit int
	// Forward returns the oldest lines first; the default is newest first.
	Forward bool
	// Cursor continues after the last line of a previous page ("" starts at the beginning).
	Cursor string
}

// MaxLogLimit is the most lines one query returns.
const MaxLogLimit = 5000

// Validate names what is wrong with q.
func (q *LogQuery) Validate() error {
	switch {
	case q.Tenant == "":
		return errors.New("tenant: is required")
	case !q.From.Before(q.To):
		return fmt.Errorf("from: %s must be before to %s", q.From.Format(time.RFC3339Nano), q.To.Format(time.RFC3339Nano))
	case q.Limit < 1 || q.Limit > MaxLogLimit:
		return fmt.Errorf("limit: %d must be between 1 and %d", q.Limit, MaxLogLimit)
	}
	return nil
}

// QueryLogs returns the page of q that r holds: all its lines in memory.
// Readers answering clients stream with ScanLogs instead.
func QueryLogs(ctx context.Context, r LogReader, q LogQuery) (LogPage, error) {
	var page LogPage
	next, err := r.ScanLogs(ctx, q, func(l logs.Line) bool {
		page.Lines = append(page.Lines, l)
		return true
	})
	if err != nil {
		return LogPage{}, err
	}
	page.Next = next
	return page, nil
}

// LogPage is one page of a log query.
type LogPage struct {
	Lines []logs.Line
	// Next continues the query after Lines ("" when there is no more).
	Next string
}

// ErrNotReady is returned by stores that cannot serve right now (closed, or the
// backing server is unreachable).
var ErrNotReady = errors.New("metering store not ready")

// ErrOverloaded is returned by a store that refuses a write because it is
// behind (its write queue is full): nothing was stored, and the same write
// will likely succeed a little later. The collector answers 429.
var ErrOverloaded = errors.New("metering store overloaded")

// RetryLaterError is a write refused without being attempted, or failed, with
// a hint of when to try again. Err says why: it wraps ErrOverloaded (the
// store is behind) or ErrNotReady (the store is down), or the store's own error.
type RetryLaterError struct {
	Err error
	// After is how long the caller should wait before sending the write again.
	After time.Duration
}

func (e *RetryLaterError) Error() string { return e.Err.Error() }

// Unwrap lets errors.Is see ErrOverloaded or ErrNotReady through the hint.
func (e *RetryLaterError) Unwrap() error { return e.Err }
