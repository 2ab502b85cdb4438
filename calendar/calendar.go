// Package calendar holds the calendar month in the platform's time zone: the
// period institutions are billed for and their SLA is measured over. It sits
// at the bottom of the tree so that billing and sla share it without either
// importing the other.
package calendar

import (
	"fmt"
	"time"
)

// Month is a calendar month in a time zone.
type Month struct {
	Year  int
	Month time.Month
	Loc   *time.Location
}

// Parse reads "2026-11" as November 2026 in loc.
func Parse(s string, loc *time.Location) (Month, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return Month{}, fmt.Errorf("period: %q is not a month like 2026-11", s)
	}
	return Month{Year: t.Year(), Month: t.Month(), Loc: loc}, nil
}

// MonthOf returns the month t falls in, in loc.
func MonthOf(t time.Time, loc *time.Location) Month {
	l := t.In(loc)
	return Month{Year: l.Year(), Month: l.Month(), Loc: loc}
}

// String returns the month as "2026-11".
func (m Month) String() string { return fmt.Sprintf("%04d-%02d", m.Year, int(m.Month)) }

// Start is the first instant of the month.
func (m Month) Start() time.Time { return time.Date(m.Year, m.Month, 1, 0, 0, 0, 0, m.Loc) }

// End is the first instant of the next month.
func (m Month) End() time.Time { return time.Date(m.Year, m.Month+1, 1, 0, 0, 0, 0, m.Loc) }

// Next returns the following month.
func (m Month) Next() Month { return MonthOf(m.End(), m.Loc) }
