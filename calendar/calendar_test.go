package calendar

import (
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
)

func TestMonths(t *testing.T) {
	brussels := clocktest.Brussels(t)
	tests := []struct {
		name        string
		at          time.Time
		want, next  string
		start, end  string
		lengthHours float64
	}{
		{name: "New Year's Eve 23:30 UTC is already January in Brussels", at: time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC),
			want: "2027-01", next: "2027-02", start: "2026-12-31T23:00:00Z", end: "2027-01-31T23:00:00Z", lengthHours: 744},
		{name: "March loses the hour of the spring DST change", at: time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC),
			want: "2026-03", next: "2026-04", start: "2026-02-28T23:00:00Z", end: "2026-03-31T22:00:00Z", lengthHours: 743},
		{name: "a leap February has 29 days", at: time.Date(2028, 2, 29, 12, 0, 0, 0, time.UTC),
			want: "2028-02", next: "2028-03", start: "2028-01-31T23:00:00Z", end: "2028-02-29T23:00:00Z", lengthHours: 696},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := MonthOf(tc.at, brussels)
			if m.String() != tc.want || m.Next().String() != tc.next {
				t.Errorf("month %s then %s, want %s then %s", m, m.Next(), tc.want, tc.next)
			}
			if s, e := m.Start().UTC().Format(time.RFC3339), m.End().UTC().Format(time.RFC3339); s != tc.start || e != tc.end {
				t.Errorf("from %s to %s, want %s to %s", s, e, tc.start, tc.end)
			}
			if h := m.End().Sub(m.Start()).Hours(); h != tc.lengthHours {
				t.Errorf("%v hours long, want %v", h, tc.lengthHours)
			}
			p, err := Parse(tc.want, brussels)
			if err != nil || p != m {
				t.Errorf("Parse(%q) = %v, %v; want %v", tc.want, p, err, m)
			}
		})
	}
	for _, bad := range []string{"2026-13", "2026/11", "November", ""} {
		if _, err := Parse(bad, brussels); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
