package maintenance

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"time"

	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/state"
)

// Store is what the Service keeps declarations in: a state.Store is one.
type Store interface {
	state.Maintenance
	ListAudit(ctx context.Context, f state.AuditFilter) ([]state.AuditEntry, error)
}

// Options are what a Service is built from. Store is required.
type Options struct {
	Store Store
	// Location is the platform's time zone, in which recurring windows keep
	// their wall-clock time (default UTC).
	Location *time.Location
	// LeadTime is how long before it starts a window must be declared
	// (default DefaultLeadTime).
	LeadTime time.Duration
	// Institutions, if not nil, are the configured institutions: a window
	// of any other is refused.
	Institutions institution.Directory
	Clock        clock.Clock
	Logger       *slog.Logger
}

// Service keeps the maintenance windows: it checks every declaration and
// change against the rules (Check) at the clock's time, stores it with its
// audit entry, and expands the windows for the SLA calculator.
type Service struct {
	store        Store
	loc          *time.Location
	lead         time.Duration
	institutions institution.Directory
	clock        clock.Clock
	log          *slog.Logger
}

var _ sla.WindowSource = (*Service)(nil)

// The audit actions of the changes of a window.
const (
	ActionDeclare = "maintenance.declare"
	ActionChange  = "maintenance.change"
	ActionCancel  = "maintenance.cancel"
)

// ConfigActor is the audit actor of the configuration file's declarations.
const ConfigActor = "config"

// New builds a Service.
func New(o Options) (*Service, error) {
	if o.Store == nil {
		return nil, errors.New("maintenance: a store is required")
	}
	if o.LeadTime < 0 {
		return nil, fmt.Errorf("maintenance: lead time %s is negative", o.LeadTime)
	}
	if o.LeadTime == 0 {
		o.LeadTime = DefaultLeadTime
	}
	if o.Location == nil {
		o.Location = time.UTC
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Service{store: o.Store, loc: o.Location, lead: o.LeadTime, institutions: o.Institutions, clock: o.Clock, log: o.Logger}, nil
}

// LeadTime returns how long before it starts a window must be declared.
func (s *Service) LeadTime() time.Duration { return s.lead }

// Declare declares d for actor: a new window when d.ID is empty (the store
// assigns its ID), else a change of the window d.ID at d.Version, which
// must be the stored one (an error wrapping state.ErrConflict if not, or
// state.ErrNotFound). A declaration against the rules is refused with a
// *FieldError; so is a change of a window of the configuration file, which
// only the file changes. It returns the declaration as stored.
func (s *Service) Declare(ctx context.Context, d Declaration, actor string) (Declaration, error) {
	if d.ID == "" {
		d.Source = SourceAPI
		return s.create(ctx, d, actor)
	}
	old, err := s.window(ctx, d.ID, d.Version)
	if err != nil {
		return Declaration{}, err
	}
	if old.Source == SourceConfig {
		return Declaration{}, refuse("id", "window %s is declared in the configuration file (maintenance.windows): change it there", old.ID)
	}
	return s.change(ctx, old, d, actor, ActionChange)
}

// Cancel cancels the occurrences of window id that have not started, for
// actor: a window that has not started is cancelled; a recurring one that
// has ends with its occurrence in progress, or its last one (its Until is
// set to the next minute). A cancelled or ended window is returned as it
// is. A one-off window in progress is refused (a *FieldError): it has no
// later occurrence; shorten it to end it early.
func (s *Service) Cancel(ctx context.Context, id, actor string) (Declaration, error) {
	old, err := s.window(ctx, id, -1)
	if err != nil {
		return Declaration{}, err
	}
	now := s.clock.Now()
	d := old
	switch {
	case old.Cancelled:
		return old, nil
	case now.Before(old.Start):
		d.Cancelled = true
	case old.Recurrence == nil:
		return Declaration{}, refuse("cancelled", "window %s started at %s and has no later occurrence: shorten its duration to end it early",
			old.ID, old.Start.Format(time.RFC3339))
	default:
		// Occurrences start on whole minutes: those that started by now
		// start before the next minute, and stay.
		until := now.Truncate(time.Minute).Add(time.Minute)
		if u := old.Recurrence.Until; !u.IsZero() && !until.Before(u) {
			return old, nil // no later occurrence
		}
		d.Recurrence = &Recurrence{Every: old.Recurrence.Every, Until: until}
	}
	return s.change(ctx, old, d, actor, ActionCancel)
}

// window reads the declaration id, at version when version is not -1.
func (s *Service) window(ctx context.Context, id string, version int64) (Declaration, error) {
	r, err := s.store.Window(ctx, id)
	if err != nil {
		return Declaration{}, fmt.Errorf("maintenance window %s: %w", id, err)
	}
	if version != -1 && r.Version != version {
		return Declaration{}, fmt.Errorf("version: maintenance window %s is at version %d, not %d: read it again: %w", id, r.Version, version, state.ErrConflict)
	}
	return s.declaration(r), nil
}

// create checks and stores the new declaration d, declared now.
func (s *Service) create(ctx context.Context, d Declaration, actor string) (Declaration, error) {
	now := s.clock.Now()
	d.Version, d.Cancelled, d.DeclaredAt = 0, false, now
	if err := s.check(nil, d, now); err != nil {
		return Declaration{}, err
	}
	return s.store1(ctx, d, actor, ActionDeclare, now)
}

// change checks and stores d as a change of old. A change that makes the
// window cover time it did not is declared now; one that only takes time
// away keeps its declaration time. A change that changes nothing is not
// stored.
func (s *Service) change(ctx context.Context, old, d Declaration, actor, action string) (Declaration, error) {
	now := s.clock.Now()
	d.Version, d.Source, d.DeclaredAt = old.Version, old.Source, old.DeclaredAt
	if err := s.check(&old, d, now); err != nil {
		return Declaration{}, err
	}
	if same(old, d) {
		return old, nil
	}
	if !covers(old, d) {
		d.DeclaredAt = now
	}
	return s.store1(ctx, d, actor, action, now)
}

func (s *Service) check(old *Declaration, d Declaration, now time.Time) error {
	if t := d.Scope.Tenant; t != "" && s.institutions != nil && !s.institutions.Has(t) {
		return refuse("tenant", "%q is not a configured institution", t)
	}
	return Check(old, d, now, s.lead)
}

// store1 stores d with its audit entry.
func (s *Service) store1(ctx context.Context, d Declaration, actor, action string, now time.Time) (Declaration, error) {
	r, err := s.store.DeclareWindow(ctx, record(d), state.AuditEntry{Time: now, Actor: actor, Action: action})
	if err != nil {
		return Declaration{}, fmt.Errorf("maintenance window %s: %w", d.ID, err)
	}
	stored := s.declaration(r)
	s.log.Info("maintenance window stored", "action", action, "actor", actor, "window", stored.String(), "version", stored.Version)
	return stored, nil
}

// List returns the declarations that apply to tenant (all of them when
// tenant is empty) and have an occurrence overlapping [from, to), or would
// have had if not cancelled: cancelled ones are listed. A zero from or to
// leaves that side open.
func (s *Service) List(ctx context.Context, tenant string, from, to time.Time) ([]Declaration, error) {
	rs, err := s.store.ListWindows(ctx, state.WindowFilter{Tenant: tenant, From: from, To: to})
	if err != nil {
		return nil, fmt.Errorf("maintenance windows: %w", err)
	}
	out := []Declaration{}
	for _, r := range rs {
		d := s.declaration(r)
		schedule := d
		schedule.Cancelled = false
		if overlaps(schedule, s.loc, from, to) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Windows implements sla.WindowSource: the occurrences of the windows that
// apply to tenant and overlap [from, to), ordered by start, then ID.
func (s *Service) Windows(ctx context.Context, tenant string, from, to time.Time) ([]sla.Window, error) {
	if from.IsZero() || !from.Before(to) {
		return nil, fmt.Errorf("maintenance windows of %s: [%s, %s) is not a time range", tenant, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	rs, err := s.store.ListWindows(ctx, state.WindowFilter{Tenant: tenant, From: from, To: to})
	if err != nil {
		return nil, fmt.Errorf("maintenance windows of %s: %w", tenant, err)
	}
	var out []sla.Window
	for _, r := range rs {
		out = append(out, Occurrences(s.declaration(r), s.loc, from, to)...)
	}
	slices.SortFunc(out, func(a, b sla.Window) int { return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// Changes returns, ordered, the audit entries of the changes made before to
// of the windows that apply to tenant and had, in any state they were in,
// an occurrence overlapping [from, to): what the SLA report of that period
// lists, including a window moved out of it or cancelled.
func (s *Service) Changes(ctx context.Context, tenant string, from, to time.Time) ([]state.AuditEntry, error) {
	prefixes := []string{"maintenance/"}
	if tenant != "" {
		prefixes = []string{state.WindowSubject(tenant, ""), state.WindowSubject("", "")}
	}
	var entries []state.AuditEntry
	for _, p := range slices.Compact(prefixes) { // one prefix for a tenant named "platform"
		es, err := s.store.ListAudit(ctx, state.AuditFilter{SubjectPrefix: p, To: to})
		if err != nil {
			return nil, fmt.Errorf("maintenance changes of %s: %w", tenant, err)
		}
		entries = append(entries, es...)
	}
	// Every stored change's entry holds the window as it became (the
	// store's default detail): a window is in the period if one of its
	// states was.
	in := map[string]bool{}
	for _, e := range entries {
		var r state.WindowRecord
		if json.Unmarshal(e.Detail, &r) != nil || r.ID == "" {
			continue
		}
		d := s.declaration(r)
		d.Cancelled = false
		// The subject prefix of a tenant named "platform" would also match
		// the platform-wide windows: the record says whose a window is.
		if (tenant == "" || r.Tenant == "" || r.Tenant == tenant) && overlaps(d, s.loc, from, to) {
			in[e.Subject] = true
		}
	}
	out := []state.AuditEntry{}
	for _, e := range entries {
		if in[e.Subject] {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b state.AuditEntry) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}

// Refusal is a declaration of the configuration file that was not stored.
type Refusal struct {
	ID  string
	Err error
}

// SyncConfig stores the configuration file's declarations, each with its
// own ID: a new one is declared now — so the lead time counts from when the
// store first sees it, and editing the file cannot backdate a window — and
// a changed one is checked as a change from the API is. A declaration the
// rules refuse is logged and returned, not an error; the error is the
// store's. A window of the file that left it stays declared (it may have
// started); SyncConfig logs it.
func (s *Service) SyncConfig(ctx context.Context, decls []Declaration) ([]Refusal, error) {
	var refusals []Refusal
	inFile := map[string]bool{}
	for _, d := range decls {
		inFile[d.ID] = true
		err := s.sync(ctx, d)
		var fe *FieldError
		switch {
		case errors.As(err, &fe):
			s.log.Warn("maintenance window of the configuration refused", "id", d.ID, "err", err)
			refusals = append(refusals, Refusal{ID: d.ID, Err: err})
		case err != nil:
			return refusals, err
		}
	}
	now := s.clock.Now()
	rs, err := s.store.ListWindows(ctx, state.WindowFilter{From: now})
	if err != nil {
		return refusals, fmt.Errorf("maintenance windows: %w", err)
	}
	for _, r := range rs {
		if r.Source == SourceConfig && !r.Cancelled && !inFile[r.ID] {
			s.log.Warn("maintenance window declared by the configuration is no longer in it: it stays declared until cancelled (paasmeter maintenance cancel)",
				"id", r.ID, "window", s.declaration(r).String())
		}
	}
	return refusals, nil
}

// sync stores one declaration of the file. Another collector may sync the
// same file at the same time: a creation or change it made first is read
// again, and then usually found equal.
func (s *Service) sync(ctx context.Context, d Declaration) error {
	d.Source = SourceConfig
	for attempt := 1; ; attempt++ {
		err := s.sync1(ctx, d)
		if attempt == 3 || (!errors.Is(err, state.ErrExists) && !errors.Is(err, state.ErrConflict)) {
			return err
		}
	}
}

func (s *Service) sync1(ctx context.Context, d Declaration) error {
	if err := ValidateConfig(d); err != nil {
		return err
	}
	r, err := s.store.Window(ctx, d.ID)
	switch {
	case errors.Is(err, state.ErrNotFound):
		_, err = s.create(ctx, d, ConfigActor)
		return err
	case err != nil:
		return fmt.Errorf("maintenance window %s: %w", d.ID, err)
	}
	old := s.declaration(r)
	if old.Source != SourceConfig {
		return refuse("id", "%q is a window declared through the API, not the configuration: give this one another id", d.ID)
	}
	if same(old, d) {
		return nil
	}
	_, err = s.change(ctx, old, d, ConfigActor, ActionChange)
	return err
}

// configID is what the ID of a declaration of the configuration file may
// be. The store assigns numbers: the file's start with a letter, so that the
// two never meet.
var configID = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,127}$`)

// ValidateConfig is Validate for a declaration of the configuration file,
// which must also have an ID of its own.
func ValidateConfig(d Declaration) error {
	if !configID.MatchString(d.ID) {
		return refuse("id", "%q must start with a letter, then letters, digits, '.', '_' or '-' (at most 128)", d.ID)
	}
	return Validate(d)
}

// record is d as the store keeps it.
func record(d Declaration) state.WindowRecord {
	r := state.WindowRecord{ID: d.ID, Tenant: d.Scope.Tenant, Project: d.Scope.Project, App: d.Scope.App, Start: d.Start,
		DurationSeconds: int64(d.Duration / time.Second), Reason: d.Reason, DeclaredAt: d.DeclaredAt, Cancelled: d.Cancelled,
		Version: d.Version, Source: d.Source}
	if d.Recurrence != nil {
		r.Every, r.Until = d.Recurrence.Every, d.Recurrence.Until
	}
	return r
}

// declaration is r with its times in the platform's time zone.
func (s *Service) declaration(r state.WindowRecord) Declaration {
	d := Declaration{ID: r.ID, Scope: sla.Scope{Tenant: r.Tenant, Project: r.Project, App: r.App}, Start: r.Start.In(s.loc),
		Duration: time.Duration(r.DurationSeconds) * time.Second, Reason: r.Reason, DeclaredAt: r.DeclaredAt.In(s.loc),
		Cancelled: r.Cancelled, Version: r.Version, Source: r.Source}
	if r.Every != "" {
		d.Recurrence = &Recurrence{Every: r.Every}
		if !r.Until.IsZero() {
			d.Recurrence.Until = r.Until.In(s.loc)
		}
	}
	return d
}

// IsRefusal reports whether err is a declaration refused by the rules or
// malformed, and returns it.
func IsRefusal(err error) (*FieldError, bool) {
	var fe *FieldError
	ok := errors.As(err, &fe)
	return fe, ok
}
