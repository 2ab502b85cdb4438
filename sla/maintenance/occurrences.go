package maintenance

import (
	"strconv"
	"time"

	"github.com/paasmeter/paasmeter/sla"
)

// Occurrences returns d's occurrences that overlap [from, to), in order of
// start: none when d is cancelled or to is not after from. A zero from
// means from d's start.
//
// A one-off window's occurrence has d's ID. The n-th occurrence (from 1) of
// a recurring window has the ID "<d.ID>#<n>" and starts at the first one's
// wall-clock time in loc: a day, a week or a month of the calendar later
// each time, so 22:00 in Brussels stays 22:00 across daylight saving
// changes. A wall time a change skips (02:30 on the last Sunday of March)
// starts as late as the change moved it (03:30); one a change repeats
// (02:30 on the last Sunday of October) starts the first time. A monthly
// window on a day a month lacks falls on the month's last day.
func Occurrences(d Declaration, loc *time.Location, from, to time.Time) []sla.Window {
	if d.Cancelled || !from.Before(to) {
		return nil
	}
	var out []sla.Window
	for o := first(d, loc, from); o.ok && o.start.Before(to); o = o.next() {
		out = append(out, o.window())
	}
	return out
}

// overlaps reports whether d, cancelled or not, has an occurrence
// overlapping [from, to); a zero to means no end.
func overlaps(d Declaration, loc *time.Location, from, to time.Time) bool {
	o := first(d, loc, from)
	return o.ok && (to.IsZero() || o.start.Before(to))
}

// occurrence is the n-th occurrence of d (from 0), or none (ok false).
type occurrence struct {
	d     Declaration
	loc   *time.Location
	n     int
	start time.Time
	ok    bool
}

// first returns d's first occurrence that ends after from.
func first(d Declaration, loc *time.Location, from time.Time) occurrence {
	if loc == nil {
		loc = time.UTC
	}
	o := occurrence{d: d, loc: loc}
	if d.Recurrence == nil {
		o.start, o.ok = d.Start, d.Start.Add(d.Duration).After(from)
		return o
	}
	// Jump close to from, then step: an occurrence ending after from starts
	// after from less a duration (at most a day), and calendar days are 23
	// to 25 hours long; two periods of margin cover both.
	if from.After(d.Start) {
		start := d.Start.In(loc)
		// In seconds, not time.Duration, which saturates after 292 years.
		days := int((from.Unix() - d.Start.Unix()) / (24 * 60 * 60))
		switch d.Recurrence.Every {
		case Daily:
			o.n = days - 2
		case Weekly:
			o.n = days/7 - 2
		case Monthly:
			f := from.In(loc)
			o.n = (f.Year()-start.Year())*12 + int(f.Month()-start.Month()) - 2
		}
		o.n = max(o.n, 0)
	}
	o = o.at(o.n)
	for o.ok && !o.start.Add(d.Duration).After(from) {
		o = o.next()
	}
	return o
}

// at returns the n-th occurrence of o's declaration, or none after its Until.
func (o occurrence) at(n int) occurrence {
	o.n = n
	o.start = nth(o.d, o.loc, n)
	if r := o.d.Recurrence; r == nil {
		o.ok = n == 0
	} else {
		o.ok = r.Until.IsZero() || o.start.Before(r.Until)
	}
	return o
}

func (o occurrence) next() occurrence { return o.at(o.n + 1) }

func (o occurrence) window() sla.Window {
	id := o.d.ID
	if o.d.Recurrence != nil {
		id += "#" + strconv.Itoa(o.n+1)
	}
	return sla.Window{ID: id, Scope: o.d.Scope, Start: o.start, End: o.start.Add(o.d.Duration), Reason: o.d.Reason, DeclaredAt: o.d.DeclaredAt}
}

// nth returns the start of d's n-th occurrence (from 0).
func nth(d Declaration, loc *time.Location, n int) time.Time {
	if n == 0 || d.Recurrence == nil {
		// The declared instant itself, even when its wall time is one a
		// daylight saving change repeats.
		return d.Start
	}
	s := d.Start.In(loc)
	y, m, day := s.Date()
	switch d.Recurrence.Every {
	case Daily:
		day += n
	case Weekly:
		day += 7 * n
	case Monthly:
		// The month n later, then the day clamped to its length.
		first := time.Date(y, m+time.Month(n), 1, 12, 0, 0, 0, loc)
		y, m = first.Year(), first.Month()
		day = min(day, daysIn(y, m))
	}
	return wallTime(y, m, day, s.Hour(), s.Minute(), s.Second(), loc)
}

// daysIn returns the number of days of month m of year y.
func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// wallTime is time.Date, but for a wall time that occurs twice (when clocks
// go back) it is always the first instant; time.Date does not say which.
// A wall time that does not occur (when clocks go forward) is moved forward
// by the change, as time.Date does.
func wallTime(y int, m time.Month, d, hh, mm, ss int, loc *time.Location) time.Time {
	// The date as time.Date normalises it (the 32nd of a month is the next
	// month's 1st), to compare with the earlier instant's.
	y, m, d = time.Date(y, m, d, 12, 0, 0, 0, time.UTC).Date()
	t := time.Date(y, m, d, hh, mm, ss, 0, loc)
	_, offset := t.Zone()
	// Before a change back the offset was larger, and the same wall time
	// then is the earlier instant. No zone changes twice within a day.
	_, before := t.Add(-24 * time.Hour).Zone()
	if before <= offset {
		return t
	}
	earlier := t.Add(-time.Duration(before-offset) * time.Second)
	ey, em, ed := earlier.Date()
	if ey == y && em == m && ed == d && earlier.Hour() == hh && earlier.Minute() == mm && earlier.Second() == ss {
		return earlier
	}
	return t
}
