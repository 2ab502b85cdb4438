package maintenance_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

// now is when the tests' changes are made; lead the default lead time.
var (
	now  = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	lead = maintenance.DefaultLeadTime
	day  = 24 * time.Hour
)

// oneOff is a valid one-off declaration of caami starting at now+at.
func oneOff(at, d time.Duration) maintenance.Declaration {
	return maintenance.Declaration{ID: "w", Scope: sla.Scope{Tenant: "caami"}, Start: now.Add(at), Duration: d,
		Reason: "kernel upgrade", Version: 1}
}

func recurring(at, d time.Duration, every string, until time.Time) maintenance.Declaration {
	w := oneOff(at, d)
	w.Recurrence = &maintenance.Recurrence{Every: every, Until: until}
	return w
}

func with(d maintenance.Declaration, f func(d *maintenance.Declaration)) maintenance.Declaration {
	if d.Recurrence != nil {
		r := *d.Recurrence
		d.Recurrence = &r
	}
	f(&d)
	return d
}

func TestCheck(t *testing.T) {
	later := oneOff(10*day, 2*time.Hour)          // declared long ago, starts in 10 days
	soon := oneOff(2*day, 2*time.Hour)            // declared long ago, starts in 2 days
	inProgress := oneOff(-time.Hour, 2*time.Hour) // started an hour ago, ends in an hour
	over := oneOff(-3*time.Hour, 2*time.Hour)     // ended an hour ago
	weeklySoon := recurring(2*day, time.Hour, maintenance.Weekly, now.Add(60*day))
	weeklyStarted := recurring(-15*day, time.Hour, maintenance.Weekly, now.Add(60*day))
	dailyForever := recurring(-15*day, time.Hour, maintenance.Daily, time.Time{})
	cancelled := with(later, func(d *maintenance.Declaration) { d.Cancelled = true })
	tests := map[string]struct {
		old   *maintenance.Declaration
		d     maintenance.Declaration
		field string // "" when accepted
	}{
		// Declarations.
		"a window declared exactly the lead time ahead is accepted":        {nil, oneOff(lead, time.Hour), ""},
		"a window declared a minute short of the lead time is refused":     {nil, oneOff(lead-time.Minute, time.Hour), "start"},
		"a window starting in the past is refused":                         {nil, oneOff(-time.Hour, time.Hour), "start"},
		"a recurring window's first occurrence must respect the lead time": {nil, recurring(day, time.Hour, maintenance.Daily, time.Time{}), "start"},
		"a recurring window declared the lead time ahead is accepted":      {nil, recurring(lead, time.Hour, maintenance.Monthly, time.Time{}), ""},
		"a new window cannot be cancelled":                                 {nil, with(later, func(d *maintenance.Declaration) { d.Cancelled = true }), "cancelled"},
		"a start with seconds is refused":                                  {nil, oneOff(10*day+time.Second, time.Hour), "start"},
		"a window without start is refused":                                {nil, with(later, func(d *maintenance.Declaration) { d.Start = time.Time{} }), "start"},
		"a duration of 30 seconds is refused":                              {nil, oneOff(10*day, 30*time.Second), "duration"},
		"a duration of 90 seconds is refused: whole minutes":               {nil, oneOff(10*day, 90*time.Second), "duration"},
		"a duration over 24 hours is refused":                              {nil, oneOff(10*day, 24*time.Hour+time.Minute), "duration"},
		"a duration of exactly 24 hours is accepted":                       {nil, oneOff(10*day, 24*time.Hour), ""},
		"a duration of one minute is accepted":                             {nil, oneOff(10*day, time.Minute), ""},
		"a platform-wide window is accepted":                               {nil, with(later, func(d *maintenance.Declaration) { d.Scope = sla.Scope{} }), ""},
		"an app's window is accepted":                                      {nil, with(later, func(d *maintenance.Declaration) { d.Scope.Project, d.Scope.App = "pricing", "api" }), ""},
		"an app without project is refused":                                {nil, with(later, func(d *maintenance.Declaration) { d.Scope.App = "api" }), "project"},
		"a project without app is refused: windows are not per project":    {nil, with(later, func(d *maintenance.Declaration) { d.Scope.Project = "pricing" }), "app"},
		"an app without institution is refused":                            {nil, with(later, func(d *maintenance.Declaration) { d.Scope = sla.Scope{Project: "p", App: "a"} }), "tenant"},
		"an institution that is not a DNS label is refused":                {nil, with(later, func(d *maintenance.Declaration) { d.Scope.Tenant = "CAAMI" }), "tenant"},
		"an unknown recurrence is refused":                                 {nil, recurring(10*day, time.Hour, "hourly", time.Time{}), "recurrence.every"},
		"a recurrence ending before it starts is refused":                  {nil, recurring(10*day, time.Hour, maintenance.Daily, now.Add(9*day)), "recurrence.until"},
		"a window without reason is refused":                               {nil, with(later, func(d *maintenance.Declaration) { d.Reason = "" }), "reason"},
		"an id with a slash is refused":                                    {nil, with(later, func(d *maintenance.Declaration) { d.ID = "a/b" }), "id"},
		// Changes before the start.
		"moving a window later, the lead time ahead, is accepted":               {&later, oneOff(20*day, 2*time.Hour), ""},
		"moving a window earlier, still the lead time ahead, is accepted":       {&later, oneOff(6*day, 2*time.Hour), ""},
		"moving a window earlier, inside the lead time, is refused":             {&later, oneOff(3*day, 2*time.Hour), "start"},
		"moving a window later, inside the lead time, is refused":               {&soon, oneOff(3*day, 2*time.Hour), "start"},
		"extending a window inside the lead time is refused":                    {&soon, oneOff(2*day, 3*time.Hour), "duration"},
		"extending a window the lead time ahead is accepted":                    {&later, oneOff(10*day, 3*time.Hour), ""},
		"shortening a window inside the lead time is accepted":                  {&soon, oneOff(2*day, time.Hour), ""},
		"starting later within the old window is accepted inside the lead time": {&soon, oneOff(2*day+30*time.Minute, 90*time.Minute), ""},
		"cancelling a window inside the lead time is accepted":                  {&soon, with(soon, func(d *maintenance.Declaration) { d.Cancelled = true }), ""},
		"changing the reason inside the lead time is accepted":                  {&soon, with(soon, func(d *maintenance.Declaration) { d.Reason = "another reason" }), ""},
		"ending a recurrence earlier before it starts is accepted":              {&weeklySoon, with(weeklySoon, func(d *maintenance.Declaration) { d.Recurrence.Until = now.Add(20 * day) }), ""},
		"shortening a recurrence's occurrences before it starts is accepted":    {&weeklySoon, with(weeklySoon, func(d *maintenance.Declaration) { d.Duration = 30 * time.Minute }), ""},
		"extending a recurrence inside the lead time is refused":                {&weeklySoon, with(weeklySoon, func(d *maintenance.Declaration) { d.Recurrence.Until = now.Add(90 * day) }), "recurrence.until"},
		"making a recurrence endless inside the lead time is refused":           {&weeklySoon, with(weeklySoon, func(d *maintenance.Declaration) { d.Recurrence.Until = time.Time{} }), "recurrence.until"},
		"repeating more often inside the lead time is refused":                  {&weeklySoon, with(weeklySoon, func(d *maintenance.Declaration) { d.Recurrence.Every = maintenance.Daily }), "recurrence.every"},
		"making a one-off window recurring inside the lead time is refused":     {&soon, recurring(2*day, 2*time.Hour, maintenance.Daily, time.Time{}), "recurrence"},
		"keeping only the first occurrence of a recurrence is accepted":         {&weeklySoon, oneOff(2*day, time.Hour), ""},
		"changing the institution is refused":                                   {&later, with(later, func(d *maintenance.Declaration) { d.Scope.Tenant = "ona" }), "tenant"},
		"widening to the platform is refused":                                   {&later, with(later, func(d *maintenance.Declaration) { d.Scope = sla.Scope{} }), "tenant"},
		"a cancelled window does not come back":                                 {&cancelled, later, "cancelled"},
		"a cancelled window does not move":                                      {&cancelled, with(cancelled, func(d *maintenance.Declaration) { d.Start = d.Start.Add(day) }), "cancelled"},
		"a change must keep the window's id":                                    {&later, with(later, func(d *maintenance.Declaration) { d.ID = "x" }), "id"},
		// Changes once started.
		"a window starting now has started and does not move":              {ptr(oneOff(0, time.Hour)), oneOff(10*day, time.Hour), "start"},
		"moving a window in progress is refused, even the lead time ahead": {&inProgress, oneOff(10*day, 2*time.Hour), "start"},
		"extending a window in progress is refused":                        {&inProgress, oneOff(-time.Hour, 3*time.Hour), "duration"},
		"ending a window in progress early is accepted":                    {&inProgress, oneOff(-time.Hour, time.Hour), ""},
		"ending a window in progress before the current minute is refused": {&inProgress, oneOff(-time.Hour, 30*time.Minute), "duration"},
		"shortening a window that ended is refused":                        {&over, oneOff(-3*time.Hour, time.Hour), "duration"},
		"changing the reason of a window that ended is accepted":           {&over, with(over, func(d *maintenance.Declaration) { d.Reason = "done" }), ""},
		"cancelling a window in progress is refused":                       {&inProgress, with(inProgress, func(d *maintenance.Declaration) { d.Cancelled = true }), "cancelled"},
		"making a started window recurring is refused":                     {&inProgress, recurring(-time.Hour, 2*time.Hour, maintenance.Daily, time.Time{}), "recurrence"},
		"a started recurrence's occurrences cannot be lengthened":          {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Duration = 2 * time.Hour }), "duration"},
		"a started recurrence's occurrences cannot be shortened either":    {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Duration = 30 * time.Minute }), "duration"},
		"a started recurrence cannot repeat otherwise":                     {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Recurrence.Every = maintenance.Daily }), "recurrence.every"},
		"a started recurrence cannot stop recurring":                       {&weeklyStarted, oneOff(-15*day, time.Hour), "recurrence.every"},
		"a started recurrence cannot move":                                 {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Start = d.Start.Add(time.Hour) }), "start"},
		"a started recurrence may end earlier, after now":                  {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Recurrence.Until = now.Add(time.Minute) }), ""},
		"an endless started recurrence may be given an end":                {&dailyForever, with(dailyForever, func(d *maintenance.Declaration) { d.Recurrence.Until = now.Add(day) }), ""},
		"a started recurrence cannot end before now":                       {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Recurrence.Until = now }), "recurrence.until"},
		"a started recurrence cannot be extended":                          {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Recurrence.Until = now.Add(90 * day) }), "recurrence.until"},
		"a started recurrence cannot become endless":                       {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Recurrence.Until = time.Time{} }), "recurrence.until"},
		"a started recurrence cannot be cancelled whole":                   {&weeklyStarted, with(weeklyStarted, func(d *maintenance.Declaration) { d.Cancelled = true }), "cancelled"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			err := maintenance.Check(tt.old, tt.d, now, lead)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Check refused it: %v", err)
				}
				return
			}
			var fe *maintenance.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Check = %v, want a *FieldError naming %s", err, tt.field)
			}
			if fe.Field != tt.field || !strings.HasPrefix(err.Error(), tt.field+": ") {
				t.Errorf("Check = %q naming %q, want it to name %q", err, fe.Field, tt.field)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestLeadTimeRefusalNamesTheEarliestStart(t *testing.T) {
	tests := map[string]struct {
		now      time.Time
		lead     time.Duration
		earliest time.Time
	}{
		"on a whole minute, the lead time later":            {now, lead, now.Add(lead)},
		"within a minute, the next whole minute after that": {now.Add(1500 * time.Millisecond), lead, now.Add(lead + time.Minute)},
		"a lead time of 0 still starts after now":           {now, 0, now.Add(time.Minute)},
		"a custom lead time of 7 days is counted from now":  {now, 7 * day, now.Add(7 * day)},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			d := maintenance.Declaration{Start: tt.now.Add(-time.Hour).Truncate(time.Minute), Duration: time.Hour, Reason: "r"}
			err := maintenance.Check(nil, d, tt.now, tt.lead)
			var fe *maintenance.FieldError
			if !errors.As(err, &fe) || fe.Field != "start" {
				t.Fatalf("Check = %v, want a refusal naming start", err)
			}
			if !fe.Earliest.Equal(tt.earliest) || !strings.Contains(err.Error(), tt.earliest.Format(time.RFC3339)) {
				t.Errorf("refusal %q with earliest %s, want it to name %s", err, fe.Earliest, tt.earliest)
			}
			d.Start = fe.Earliest
			if err := maintenance.Check(nil, d, tt.now, tt.lead); err != nil {
				t.Errorf("the earliest start it named is refused too: %v", err)
			}
		})
	}
}
