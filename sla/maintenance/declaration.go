// Package maintenance is the maintenance windows of DESIGN.md §6: their
// declarations (platform-wide, per institution or per app; one-off or
// recurring), the rules a declaration and every change of it must follow,
// their expansion into occurrences for the SLA calculator (sla.WindowSource), and
// the Service that keeps them in the state store with an audit entry per
// change.
//
// The rules (Check):
//
//   - a window counts only if declared at least the lead time (default
//     five days) before it starts, so a new one starting sooner is refused,
//     naming the earliest start allowed;
//   - once started it cannot be moved or extended; ending an occurrence in
//     progress early is allowed, and so is ending a recurring one (setting
//     its until earlier, but not before an occurrence that has started);
//   - before it starts, a change that only takes time away (shorter, later
//     start within the old window, earlier until, cancelled) is allowed; a
//     change that makes it cover any time it did not (moved, earlier or
//     later, longer, more occurrences) must itself be declared the lead time
//     ahead, and counts as declared when made.
//
// Starts and durations are whole minutes, the SLA's unit; a duration is
// elapsed time, 1 minute to 24 hours. A recurring window's occurrences start
// at the same wall-clock time in the platform's time zone, across daylight
// saving changes.
package maintenance

import (
	"fmt"
	"regexp"
	"time"

	"github.com/paasmeter/paasmeter/sla"
)

// DefaultLeadTime is how long before it starts a window must be declared
// when the configuration does not say (DESIGN.md §6: five days).
const DefaultLeadTime = 120 * time.Hour

// The bounds of a window's duration.
const (
	MinDuration = time.Minute
	MaxDuration = 24 * time.Hour
)

// The recurrences.
const (
	Daily   = "daily"
	Weekly  = "weekly"
	Monthly = "monthly"
)

// The sources of a declaration: who owns it.
const (
	// SourceAPI is the admin API and `paasmeter maintenance`.
	SourceAPI = "api"
	// SourceConfig is the configuration file (maintenance.windows), which
	// alone may change such a declaration; the API may only cancel it.
	SourceConfig = "config"
)

// Declaration is a declared maintenance window.
type Declaration struct {
	// ID is assigned by the store for a declaration of the API; the
	// configuration file gives its own.
	ID    string
	Scope sla.Scope
	// Start is the start of the (first) occurrence: whole minutes.
	Start time.Time
	// Duration is the elapsed time of each occurrence: whole minutes,
	// MinDuration to MaxDuration.
	Duration time.Duration
	// Recurrence is nil for a one-off window.
	Recurrence *Recurrence
	// Reason is shown in the SLA report: required.
	Reason string
	// DeclaredAt is set by the Service: when the declaration, or its last
	// change that made it cover time it did not, was stored.
	DeclaredAt time.Time
	// Cancelled declarations have no occurrence at all; only one that has
	// not started can be cancelled (a recurring one that has is ended by
	// its Until).
	Cancelled bool
	// Version is the store's: 0 for a declaration to create; a change must
	// give the version it was read at.
	Version int64
	// Source is SourceAPI or SourceConfig.
	Source string
}

// Recurrence repeats a window.
type Recurrence struct {
	// Every is Daily, Weekly or Monthly. A monthly window on a day some
	// months lack (29 to 31) falls on their last day.
	Every string
	// Until ends the recurrence: no occurrence starts at or after it. Zero
	// means no end.
	Until time.Time
}

// FieldError is a declaration refused: malformed, or against a rule. It
// names the field, as the admin API's JSON spells it (recurrence.until).
type FieldError struct {
	Field  string
	Reason string
	// Earliest is, when the lead time refused a start, the earliest start
	// allowed at the time of the refusal.
	Earliest time.Time
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

func refuse(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// label is an institution, project or app: a DNS label, as in usage records.
var label = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// id is what a declaration ID may be: it goes in URL paths and audit subjects.
var id = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// maxReason bounds the reason, which every SLA report repeats.
const maxReason = 1000

// Validate reports the first thing wrong with d on its own, whatever the
// time: its scope, start, duration, recurrence and reason.
func Validate(d Declaration) error {
	if d.ID != "" && !id.MatchString(d.ID) {
		return refuse("id", "%q must be 1-128 letters, digits, '.', '_' or '-'", d.ID)
	}
	sc := d.Scope
	for _, f := range []struct{ field, v string }{{"tenant", sc.Tenant}, {"project", sc.Project}, {"app", sc.App}} {
		if f.v != "" && !label.MatchString(f.v) {
			return refuse(f.field, "%q must be 1-63 lower-case letters, digits or '-', starting and ending with a letter or digit", f.v)
		}
	}
	switch {
	case sc.Tenant == "" && (sc.Project != "" || sc.App != ""):
		return refuse("tenant", "is required with a project or an app (a window is the platform's, an institution's or one app's)")
	case sc.Project != "" && sc.App == "":
		return refuse("app", "is required with a project: a window is the platform's, an institution's or one app's")
	case sc.App != "" && sc.Project == "":
		return refuse("project", "is required with an app")
	}
	switch {
	case d.Start.IsZero():
		return refuse("start", "is required")
	case !wholeMinute(d.Start):
		return refuse("start", "%s must be a whole minute", d.Start.Format(time.RFC3339Nano))
	}
	switch {
	case d.Duration < MinDuration || d.Duration > MaxDuration:
		return refuse("duration", "%s must be from %s to %s", d.Duration, MinDuration, MaxDuration)
	case d.Duration%time.Minute != 0:
		return refuse("duration", "%s must be whole minutes", d.Duration)
	}
	if r := d.Recurrence; r != nil {
		switch r.Every {
		case Daily, Weekly, Monthly:
		default:
			return refuse("recurrence.every", "%q must be %s, %s or %s", r.Every, Daily, Weekly, Monthly)
		}
		if !r.Until.IsZero() && !r.Until.After(d.Start) {
			return refuse("recurrence.until", "%s must be after start %s (cancel a window that should not occur at all)",
				r.Until.Format(time.RFC3339), d.Start.Format(time.RFC3339))
		}
	}
	switch {
	case d.Reason == "":
		return refuse("reason", "is required: the SLA report shows it")
	case len(d.Reason) > maxReason:
		return refuse("reason", "is %d bytes, longer than %d", len(d.Reason), maxReason)
	}
	switch d.Source {
	case "", SourceAPI, SourceConfig:
	default:
		return refuse("source", "%q must be %s or %s", d.Source, SourceAPI, SourceConfig)
	}
	return nil
}

func wholeMinute(t time.Time) bool { return t.Nanosecond() == 0 && t.Unix()%60 == 0 }

// EarliestStart is the earliest start a window declared at now may have: the
// lead time later, rounded up to a whole minute, and after now.
func EarliestStart(now time.Time, leadTime time.Duration) time.Time {
	t := now.Add(leadTime)
	if r := t.Truncate(time.Minute); !r.Equal(t) {
		t = r.Add(time.Minute)
	}
	if !t.After(now) {
		t = t.Add(time.Minute)
	}
	return t
}

// Check reports whether d may be stored at now: declared, when old is nil,
// or else as a change of old (the declaration as stored). It returns nil or
// a *FieldError naming the field refused.
func Check(old *Declaration, d Declaration, now time.Time, leadTime time.Duration) error {
	if err := Validate(d); err != nil {
		return err
	}
	earliest := EarliestStart(now, leadTime)
	if old == nil {
		if d.Cancelled {
			return refuse("cancelled", "a new window cannot be cancelled")
		}
		if d.Start.Before(earliest) {
			return tooLate("start", d, leadTime, earliest)
		}
		return nil
	}
	switch {
	case d.ID != old.ID:
		return refuse("id", "%q is not the window changed, %q", d.ID, old.ID)
	case d.Scope.Tenant != old.Scope.Tenant:
		return refuse("tenant", "a window's scope does not change: cancel it and declare another")
	case d.Scope.Project != old.Scope.Project:
		return refuse("project", "a window's scope does not change: cancel it and declare another")
	case d.Scope.App != old.Scope.App:
		return refuse("app", "a window's scope does not change: cancel it and declare another")
	}
	if old.Cancelled {
		if !sameSchedule(*old, d) || d.Reason != old.Reason {
			return refuse("cancelled", "window %s is cancelled and no longer changes: declare a new one", old.ID)
		}
		return nil
	}
	if now.Before(old.Start) {
		if covers(*old, d) {
			return nil // takes time away, or changes the reason only
		}
		if d.Start.Before(earliest) {
			return tooLate(grown(*old, d), d, leadTime, earliest)
		}
		return nil
	}
	return checkStarted(*old, d, now)
}

// tooLate refuses a start sooner than the lead time allows.
func tooLate(field string, d Declaration, leadTime time.Duration, earliest time.Time) *FieldError {
	what := "a window"
	if field != "start" {
		what = "a change that makes a window cover time it did not"
	}
	e := refuse(field, "%s must be declared at least %s before it starts: it would start at %s, and the earliest start allowed now is %s",
		what, leadTime, d.Start.Format(time.RFC3339), earliest.In(d.Start.Location()).Format(time.RFC3339))
	e.Earliest = earliest
	return e
}

// checkStarted checks a change of old, whose first occurrence started at or
// before now: no move, no extension, no cancellation of what has started.
func checkStarted(old, d Declaration, now time.Time) error {
	startedAt := old.Start.Format(time.RFC3339)
	if d.Cancelled {
		if old.Recurrence != nil {
			return refuse("cancelled", "window %s started at %s and cannot be cancelled: set recurrence.until to cancel its later occurrences", old.ID, startedAt)
		}
		return refuse("cancelled", "window %s started at %s and cannot be cancelled: shorten its duration to end it early", old.ID, startedAt)
	}
	if !d.Start.Equal(old.Start) {
		return refuse("start", "window %s started at %s: it cannot move", old.ID, startedAt)
	}
	if old.Recurrence == nil {
		if d.Recurrence != nil {
			return refuse("recurrence", "window %s started at %s: it cannot become recurring", old.ID, startedAt)
		}
		oldEnd := old.Start.Add(old.Duration)
		switch {
		case d.Duration == old.Duration:
			return nil
		case d.Duration > old.Duration:
			return refuse("duration", "window %s started at %s: it cannot be extended", old.ID, startedAt)
		case !now.Before(oldEnd):
			return refuse("duration", "window %s ended at %s: it no longer changes", old.ID, oldEnd.Format(time.RFC3339))
		}
		// Ending early: at the current minute at the earliest, so that
		// minutes already inside the window stay inside it.
		if end, floor := d.Start.Add(d.Duration), now.Truncate(time.Minute); end.Before(floor) {
			return refuse("duration", "window %s can end early, but not before the current minute: %s at the earliest (a duration of %s)",
				old.ID, floor.Format(time.RFC3339), floor.Sub(d.Start))
		}
		return nil
	}
	if d.Recurrence == nil || d.Recurrence.Every != old.Recurrence.Every {
		return refuse("recurrence.every", "window %s started at %s: its recurrence cannot change (set recurrence.until to end it)", old.ID, startedAt)
	}
	if d.Duration != old.Duration {
		return refuse("duration", "window %s started at %s: its occurrences cannot change length (set recurrence.until to end it)", old.ID, startedAt)
	}
	ou, nu := old.Recurrence.Until, d.Recurrence.Until
	switch {
	case nu.Equal(ou):
		return nil
	case nu.IsZero() || (!ou.IsZero() && nu.After(ou)):
		return refuse("recurrence.until", "window %s started at %s: it cannot be extended", old.ID, startedAt)
	case !nu.After(now):
		return refuse("recurrence.until", "%s would cancel occurrences that have started: it must be after now, %s",
			nu.Format(time.RFC3339), now.Format(time.RFC3339))
	}
	return nil
}

// covers reports whether old covers all the time d does, so that the change
// from old to d takes time away and needs no lead time. It need not see
// every such change: one it misses is checked against the lead time.
func covers(old, d Declaration) bool {
	if d.Cancelled {
		return true
	}
	dEnd, oldEnd := d.Start.Add(d.Duration), old.Start.Add(old.Duration)
	switch {
	case d.Recurrence == nil:
		// Within old's first occurrence (or its only one).
		return !d.Start.Before(old.Start) && !dEnd.After(oldEnd)
	case old.Recurrence == nil:
		return false
	}
	ou, nu := old.Recurrence.Until, d.Recurrence.Until
	return d.Recurrence.Every == old.Recurrence.Every && d.Start.Equal(old.Start) && d.Duration <= old.Duration &&
		(ou.IsZero() || (!nu.IsZero() && !nu.After(ou)))
}

// grown names the field of a change that makes a window cover more.
func grown(old, d Declaration) string {
	switch {
	case !d.Start.Equal(old.Start):
		return "start"
	case d.Duration > old.Duration:
		return "duration"
	case (d.Recurrence == nil) != (old.Recurrence == nil):
		return "recurrence"
	case d.Recurrence.Every != old.Recurrence.Every:
		return "recurrence.every"
	}
	return "recurrence.until"
}

// sameSchedule reports whether a and b have the same start, duration,
// recurrence and cancellation.
func sameSchedule(a, b Declaration) bool {
	if !a.Start.Equal(b.Start) || a.Duration != b.Duration || a.Cancelled != b.Cancelled || (a.Recurrence == nil) != (b.Recurrence == nil) {
		return false
	}
	return a.Recurrence == nil || (a.Recurrence.Every == b.Recurrence.Every && a.Recurrence.Until.Equal(b.Recurrence.Until))
}

// same reports whether a and b declare the same window: scope, schedule
// and reason.
func same(a, b Declaration) bool {
	return a.Scope == b.Scope && a.Reason == b.Reason && sameSchedule(a, b)
}
