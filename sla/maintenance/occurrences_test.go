package maintenance_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

// utc parses an RFC 3339 time.
func utc(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOccurrences(t *testing.T) {
	bxl := clocktest.Brussels(t)
	decl := func(start string, d time.Duration, every, until string) maintenance.Declaration {
		w := maintenance.Declaration{ID: "w", Scope: sla.Scope{Tenant: "caami"}, Start: utc(t, start), Duration: d, Reason: "r",
			DeclaredAt: utc(t, "2026-01-01T00:00:00Z")}
		if every != "" {
			w.Recurrence = &maintenance.Recurrence{Every: every}
			if until != "" {
				w.Recurrence.Until = utc(t, until)
			}
		}
		return w
	}
	type occ struct{ id, start, end string }
	tests := map[string]struct {
		d        maintenance.Declaration
		from, to string
		want     []occ
	}{
		"a one-off window is one occurrence with the declaration's id": {
			decl("2026-12-10T22:00:00+01:00", 2*time.Hour, "", ""), "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z",
			[]occ{{"w", "2026-12-10T21:00:00Z", "2026-12-10T23:00:00Z"}}},
		"a window ending as the range starts is outside it": {
			decl("2026-12-10T22:00:00Z", 2*time.Hour, "", ""), "2026-12-11T00:00:00Z", "2027-01-01T00:00:00Z", nil},
		"a window starting as the range ends is outside it": {
			decl("2026-12-10T22:00:00Z", 2*time.Hour, "", ""), "2026-12-01T00:00:00Z", "2026-12-10T22:00:00Z", nil},
		"a window overlapping the range's start is inside it": {
			decl("2026-12-10T22:00:00Z", 2*time.Hour, "", ""), "2026-12-10T23:59:00Z", "2027-01-01T00:00:00Z",
			[]occ{{"w", "2026-12-10T22:00:00Z", "2026-12-11T00:00:00Z"}}},
		"a daily window at 22:00 stays at 22:00 in Brussels when summer time starts": {
			decl("2026-03-27T22:00:00+01:00", time.Hour, maintenance.Daily, ""), "2026-03-27T00:00:00Z", "2026-03-31T00:00:00Z",
			[]occ{{"w#1", "2026-03-27T21:00:00Z", "2026-03-27T22:00:00Z"}, {"w#2", "2026-03-28T21:00:00Z", "2026-03-28T22:00:00Z"},
				{"w#3", "2026-03-29T20:00:00Z", "2026-03-29T21:00:00Z"}, {"w#4", "2026-03-30T20:00:00Z", "2026-03-30T21:00:00Z"}}},
		"a daily window at 22:00 stays at 22:00 in Brussels when summer time ends": {
			decl("2026-10-24T22:00:00+02:00", time.Hour, maintenance.Daily, ""), "2026-10-24T00:00:00Z", "2026-10-26T12:00:00Z",
			[]occ{{"w#1", "2026-10-24T20:00:00Z", "2026-10-24T21:00:00Z"}, {"w#2", "2026-10-25T21:00:00Z", "2026-10-25T22:00:00Z"}}},
		"a wall time the spring change skips starts as late as the change moved it": {
			decl("2026-03-28T02:30:00+01:00", time.Hour, maintenance.Daily, ""), "2026-03-28T00:00:00Z", "2026-03-30T12:00:00Z",
			[]occ{{"w#1", "2026-03-28T01:30:00Z", "2026-03-28T02:30:00Z"}, {"w#2", "2026-03-29T01:30:00Z", "2026-03-29T02:30:00Z"},
				{"w#3", "2026-03-30T00:30:00Z", "2026-03-30T01:30:00Z"}}},
		"a wall time the autumn change repeats starts the first time": {
			decl("2026-10-24T02:30:00+02:00", 30*time.Minute, maintenance.Daily, ""), "2026-10-24T00:00:00Z", "2026-10-26T12:00:00Z",
			[]occ{{"w#1", "2026-10-24T00:30:00Z", "2026-10-24T01:00:00Z"}, {"w#2", "2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z"},
				{"w#3", "2026-10-26T01:30:00Z", "2026-10-26T02:00:00Z"}}},
		"a declared start the autumn change repeats is kept as declared": {
			decl("2026-10-25T02:30:00+01:00", 30*time.Minute, maintenance.Daily, ""), "2026-10-25T00:00:00Z", "2026-10-26T12:00:00Z",
			[]occ{{"w#1", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"}, {"w#2", "2026-10-26T01:30:00Z", "2026-10-26T02:00:00Z"}}},
		"a duration is elapsed time, whatever the clocks do": {
			decl("2026-10-25T01:00:00+02:00", 3*time.Hour, "", ""), "2026-10-24T00:00:00Z", "2026-10-26T00:00:00Z",
			[]occ{{"w", "2026-10-24T23:00:00Z", "2026-10-25T02:00:00Z"}}},
		"a weekly window keeps its weekday and wall time": {
			decl("2026-03-22T03:00:00+01:00", time.Hour, maintenance.Weekly, ""), "2026-03-01T00:00:00Z", "2026-04-06T00:00:00Z",
			[]occ{{"w#1", "2026-03-22T02:00:00Z", "2026-03-22T03:00:00Z"}, {"w#2", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"},
				{"w#3", "2026-04-05T01:00:00Z", "2026-04-05T02:00:00Z"}}},
		"a monthly window on the 31st falls on the last day of shorter months": {
			decl("2026-01-31T23:00:00+01:00", time.Hour, maintenance.Monthly, ""), "2026-01-01T00:00:00Z", "2026-05-01T00:00:00Z",
			[]occ{{"w#1", "2026-01-31T22:00:00Z", "2026-01-31T23:00:00Z"}, {"w#2", "2026-02-28T22:00:00Z", "2026-02-28T23:00:00Z"},
				{"w#3", "2026-03-31T21:00:00Z", "2026-03-31T22:00:00Z"}, {"w#4", "2026-04-30T21:00:00Z", "2026-04-30T22:00:00Z"}}},
		"a monthly window keeps its day in a leap year's February": {
			decl("2027-12-30T00:00:00+01:00", time.Hour, maintenance.Monthly, ""), "2028-02-01T00:00:00Z", "2028-03-01T00:00:00Z",
			[]occ{{"w#3", "2028-02-28T23:00:00Z", "2028-02-29T00:00:00Z"}}},
		"until is exclusive: no occurrence starts at it": {
			decl("2026-12-01T22:00:00Z", time.Hour, maintenance.Daily, "2026-12-03T22:00:00Z"), "2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z",
			[]occ{{"w#1", "2026-12-01T22:00:00Z", "2026-12-01T23:00:00Z"}, {"w#2", "2026-12-02T22:00:00Z", "2026-12-02T23:00:00Z"}}},
		"an occurrence in progress at until's time is whole": {
			decl("2026-12-01T22:00:00Z", 2*time.Hour, maintenance.Daily, "2026-12-01T23:00:00Z"), "2026-11-01T00:00:00Z", "2027-01-01T00:00:00Z",
			[]occ{{"w#1", "2026-12-01T22:00:00Z", "2026-12-02T00:00:00Z"}}},
		"an occurrence numbers count from the first, however far the range": {
			decl("2026-01-01T03:00:00Z", time.Hour, maintenance.Daily, ""), "2126-01-01T00:00:00Z", "2126-01-02T00:00:00Z",
			[]occ{{fmt.Sprintf("w#%d", 36524+1), "2126-01-01T03:00:00Z", "2126-01-01T04:00:00Z"}}},
		"a range that is not a range has no occurrence": {
			decl("2026-12-01T22:00:00Z", time.Hour, maintenance.Daily, ""), "2026-12-05T00:00:00Z", "2026-12-05T00:00:00Z", nil},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ws := maintenance.Occurrences(tt.d, bxl, utc(t, tt.from), utc(t, tt.to))
			var got []occ
			for _, w := range ws {
				got = append(got, occ{w.ID, w.Start.UTC().Format(time.RFC3339), w.End.UTC().Format(time.RFC3339)})
				if w.Scope != tt.d.Scope || w.Reason != tt.d.Reason || !w.DeclaredAt.Equal(tt.d.DeclaredAt) {
					t.Errorf("occurrence %+v does not carry the declaration's scope, reason and declaration time", w)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Occurrences =\n%v\nwant\n%v", got, tt.want)
			}
		})
	}
	t.Run("a cancelled window has no occurrence", func(t *testing.T) {
		d := decl("2026-12-01T22:00:00Z", time.Hour, maintenance.Daily, "")
		d.Cancelled = true
		if ws := maintenance.Occurrences(d, bxl, utc(t, "2026-01-01T00:00:00Z"), utc(t, "2027-01-01T00:00:00Z")); len(ws) != 0 {
			t.Errorf("Occurrences = %v, want none", ws)
		}
	})
}

// TestOccurrencesFromAnyStartAgreeWithCountingFromTheFirst checks the jump
// to a range far from the first occurrence against stepping from it.
func TestOccurrencesFromAnyStartAgreeWithCountingFromTheFirst(t *testing.T) {
	bxl := clocktest.Brussels(t)
	start := time.Date(2026, 1, 31, 2, 30, 0, 0, bxl)
	end := start.AddDate(4, 0, 0)
	for _, every := range []string{maintenance.Daily, maintenance.Weekly, maintenance.Monthly} {
		for _, dur := range []time.Duration{time.Minute, 23 * time.Hour, 24 * time.Hour} {
			d := maintenance.Declaration{ID: "w", Start: start, Duration: dur, Reason: "r", Recurrence: &maintenance.Recurrence{Every: every}}
			all := maintenance.Occurrences(d, bxl, time.Time{}, end)
			for from := start.Add(-time.Hour); from.Before(end); from = from.Add(97*time.Hour + 13*time.Minute) {
				to := from.Add(40 * 24 * time.Hour)
				if to.After(end) {
					to = end // all holds nothing later
				}
				var want []sla.Window
				for _, w := range all {
					if w.Start.Before(to) && w.End.After(from) {
						want = append(want, w)
					}
				}
				got := maintenance.Occurrences(d, bxl, from, to)
				if !slices.EqualFunc(got, want, func(a, b sla.Window) bool {
					return a.ID == b.ID && a.Start.Equal(b.Start) && a.End.Equal(b.End)
				}) {
					t.Fatalf("%s for %s over [%s, %s): got %d occurrences, want %d", every, dur, from, to, len(got), len(want))
				}
			}
		}
	}
}
