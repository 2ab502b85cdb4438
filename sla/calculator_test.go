package sla_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/internal/golden"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/usage"
)

// staticWindows returns every window it holds, whoever asks: the engine must
// keep only those that apply.
type staticWindows []sla.Window

func (s staticWindows) Windows(context.Context, string, time.Time, time.Time) ([]sla.Window, error) {
	return s, nil
}

// as moves evs to another tenant, app and environment.
func as(tenant, project, app string, env usage.Environment, evs []events.Event) []events.Event {
	out := make([]events.Event, len(evs))
	for i, e := range evs {
		e.Tenant, e.Project, e.App, e.Environment = tenant, project, app, env
		e.SetID()
		out[i] = e
	}
	return out
}

// november is caami's November 2026 in the embedded store:
//
//   - claims/pricing (prod, no health check) runs from 31 October 22:00
//     (in the lookback); the platform kills it on 5 November 10:00 and starts
//     it again 500 minutes later;
//   - claims/records (prod) is deployed on 16 November 00:00, probed every 10 s,
//     fails its probes 12:00–12:30, and is replaced by its owner on 17
//     November with a run without a health check;
//   - claims/legacy (prod) was stopped and removed by its owner on 31 October:
//     it is seen in the lookback only and is not part of November;
//   - claims/sandbox is dev: killed and never restarted, it does not count;
//   - a platform-wide window (20 November 02:00–04:00), one of records
//     (25 November 01:00–01:30), one of another institution, one in December.
type november struct {
	loc     *time.Location
	period  calendar.Month
	windows staticWindows
	store   *embedded.Store
	engine  *sla.Calculator
}

func newNovember(t *testing.T) *november {
	t.Helper()
	ctx := context.Background()
	loc := clocktest.Brussels(t)
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	pricing := as("caami", "claims", "pricing", usage.EnvProd, []events.Event{
		lifecycle(events.Started, "pricing-0", "pa0", at("2026-10-31 22:00"), ""),
		lifecycle(events.Died, "pricing-0", "pa0", at("2026-11-05 10:00"), events.ByPlatform),
		lifecycle(events.Stopped, "pricing-0", "pa0", at("2026-11-05 10:00"), events.ByPlatform),
		lifecycle(events.Started, "pricing-0", "pa1", at("2026-11-05 18:20"), ""),
	})
	records := as("caami", "claims", "records", usage.EnvProd, concat(
		replica("records-0", "re0", at("2026-11-16 00:00"), at("2026-11-17 00:00"), 10*time.Second,
			during(at("2026-11-16 12:00"), at("2026-11-16 12:30"), fail)),
		[]events.Event{
			lifecycle(events.Stopped, "records-0", "re0", at("2026-11-17 00:00"), events.ByOwner),
			lifecycle(events.Started, "records-0", "re1", at("2026-11-17 00:00"), ""),
		}))
	legacy := as("caami", "claims", "legacy", usage.EnvProd, []events.Event{
		lifecycle(events.Stopped, "legacy-0", "le0", at("2026-10-31 12:00"), events.ByOwner),
		lifecycle(events.Removed, "legacy-0", "le0", at("2026-10-31 12:05"), ""),
	})
	sandbox := as("caami", "claims", "sandbox", usage.EnvDev, []events.Event{
		lifecycle(events.Started, "sandbox-0", "sa0", at("2026-11-01 09:00"), ""),
		lifecycle(events.Stopped, "sandbox-0", "sa0", at("2026-11-02 09:00"), events.ByPlatform),
	})
	ona := as("ona", "benefits", "portal", usage.EnvDev, []events.Event{
		lifecycle(events.Started, "portal-0", "po0", at("2026-11-01 09:00"), ""),
	})
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	all := concat(pricing, records, legacy, sandbox, ona)
	for i := range all {
		all[i].ReceivedAt = all[i].Time.Add(2 * time.Second)
	}
	if _, err := st.AppendEvents(ctx, all); err != nil {
		t.Fatal(err)
	}
	declared := at("2026-11-01 09:00")
	n := &november{
		loc:    loc,
		store:  st,
		period: calendar.Month{Year: 2026, Month: time.November, Loc: loc},
		windows: staticWindows{
			{ID: "mw-records", Scope: sla.Scope{Tenant: "caami", Project: "claims", App: "records"},
				Start: at("2026-11-25 01:00"), End: at("2026-11-25 01:30"), Reason: "database migration", DeclaredAt: declared},
			{ID: "mw-platform", Start: at("2026-11-20 02:00"), End: at("2026-11-20 04:00"), Reason: "engine upgrade", DeclaredAt: declared},
			{ID: "mw-ona", Scope: sla.Scope{Tenant: "ona"}, Start: at("2026-11-10 00:00"), End: at("2026-11-10 06:00"),
				Reason: "not caami's", DeclaredAt: declared},
			{ID: "mw-december", Scope: sla.Scope{Tenant: "caami"}, Start: at("2026-12-02 00:00"), End: at("2026-12-02 01:00"),
				Reason: "next month", DeclaredAt: declared},
		},
	}
	n.engine, err = sla.NewCalculator(st, n.windows, config(t), clock.NewManual(at("2026-12-04 09:00")))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (n *november) at(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.ParseInLocation("2006-01-02 15:04:05", s, n.loc)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// report is caami's report of month m at now, from a calculator of its own
// on ev and ws (calculators are stateless: one per clock).
func report(t *testing.T, ev metering.EventReader, ws sla.WindowSource, m calendar.Month, now time.Time) *sla.Report {
	t.Helper()
	eng, err := sla.NewCalculator(ev, ws, config(t), clock.NewManual(now))
	if err != nil {
		t.Fatal(err)
	}
	r, err := eng.Report(context.Background(), "caami", m)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// appCounts are the figures of one app in a report.
type appCounts struct {
	App string
	counts
	Eligible int64
}

func appsOf(r *sla.Report) []appCounts {
	var out []appCounts
	for i := range r.Apps {
		a := &r.Apps[i]
		out = append(out, appCounts{a.Project + "/" + a.App, countsOf(a), a.Eligible})
	}
	return out
}

func TestCalculatorReport(t *testing.T) {
	n := newNovember(t)
	tests := []struct {
		name          string
		now           string
		apps          []appCounts
		availability  string
		credit        string
		until         string
		windows       []string
		eligible      int64
		down, tenants int64
	}{
		{
			name: "a closed month weighs the institution's availability by the minutes of its production apps",
			now:  "2026-12-04 09:00:00",
			apps: []appCounts{
				// 98.8394 % on its own, which would earn 25 %.
				{"claims/pricing", counts{Up: 42580, DownPlatform: 500, Maintenance: 120}, 43080},
				{"claims/records", counts{Up: 21420, DownTenant: 30, Maintenance: 150, NotEligible: 21600}, 21450},
			},
			// (64,530 − 500) / 64,530 = 99.22517 %: below 99.9, not below 99.
			availability: "99.2252", credit: "10", eligible: 64530, down: 500, tenants: 30,
			until:   "2026-12-01 00:00:00",
			windows: []string{"mw-platform", "mw-records"},
		},
		{
			name: "the running month counts the minutes that ended a settling minute before now",
			now:  "2026-11-16 12:15:30",
			apps: []appCounts{
				{"claims/pricing", counts{Up: 21834, DownPlatform: 500, Future: 43200 - 22334}, 22334},
				{"claims/records", counts{Up: 720, DownTenant: 14, NotEligible: 21600, Future: 43200 - 21600 - 734}, 734},
			},
			// (23,068 − 500) / 23,068
			availability: "97.8325", credit: "25", eligible: 23068, down: 500, tenants: 14,
			until:   "2026-11-16 12:14:00",
			windows: []string{"mw-platform", "mw-records"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := report(t, n.store, n.windows, n.period, n.at(t, tc.now))
			got := appsOf(r)
			if len(got) != len(tc.apps) {
				t.Fatalf("apps %+v, want %+v", got, tc.apps)
			}
			for i := range got {
				if got[i] != tc.apps[i] {
					t.Errorf("app %d = %+v, want %+v", i, got[i], tc.apps[i])
				}
			}
			if r.Availability.String() != tc.availability || r.CreditPercent.String() != tc.credit {
				t.Errorf("availability %s %%, credit %s %%; want %s %% and %s %%", r.Availability, r.CreditPercent, tc.availability, tc.credit)
			}
			if r.Eligible != tc.eligible || r.DownPlatform != tc.down || r.DownTenant != tc.tenants {
				t.Errorf("eligible %d, down %d (platform) %d (tenant); want %d, %d, %d", r.Eligible, r.DownPlatform, r.DownTenant,
					tc.eligible, tc.down, tc.tenants)
			}
			if want := n.at(t, tc.until); !r.Until.Equal(want) {
				t.Errorf("until %s, want %s", r.Until, want)
			}
			var ids []string
			for _, w := range r.Windows {
				ids = append(ids, w.ID)
			}
			if len(ids) != len(tc.windows) || ids[0] != tc.windows[0] || ids[1] != tc.windows[1] {
				t.Errorf("windows %v, want %v: the institution's windows of the month only", ids, tc.windows)
			}
		})
	}
}

func TestCalculatorReportGolden(t *testing.T) {
	n := newNovember(t)
	r, err := n.engine.Report(context.Background(), "caami", n.period)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden.Check(t, filepath.Join("testdata", "report-caami-2026-11.json"), got)
}

func TestCalculatorSLA(t *testing.T) {
	ctx := context.Background()
	n := newNovember(t)
	tests := []struct {
		name   string
		tenant string
		ok     bool
		want   credit.Figures
	}{
		{
			name: "an institution with production apps gets its figures from the engine", tenant: "caami", ok: true,
			want: credit.Figures{EligibleMinutes: 64530, DownMinutes: 500, Source: "sla engine"},
		},
		{name: "an institution with only non-production apps has no figures", tenant: "ona"},
		{name: "an unknown institution has no figures", tenant: "nobody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fig, ok, err := n.engine.SLA(ctx, tc.tenant, n.period)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.ok {
				t.Fatalf("ok %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if fig.EligibleMinutes != tc.want.EligibleMinutes || fig.DownMinutes != tc.want.DownMinutes || fig.Source != tc.want.Source ||
				fig.Availability.String() != "99.2252" {
				t.Errorf("figures %+v, want %+v at 99.2252 %%", fig, tc.want)
			}
			if credit := credit.Percent(credit.DefaultTiers(), fig.Availability); credit.String() != "10" {
				t.Errorf("billing derives a credit of %s %% from the figures, the report says 10 %%", credit)
			}
		})
	}
}

func TestExporter(t *testing.T) {
	ctx := context.Background()
	n := newNovember(t)
	reg := prometheus.NewRegistry()
	x, err := sla.NewExporter(reg, n.engine)
	if err != nil {
		t.Fatal(err)
	}
	app := func(project, a string, more ...string) map[string]string {
		l := map[string]string{"tenant": "caami", "project": project, "app": a}
		if len(more) == 2 {
			l[more[0]] = more[1]
		}
		return l
	}
	t.Run("during a platform-wide window every production app shows it, with the month's minutes so far", func(t *testing.T) {
		now := n.at(t, "2026-11-20 03:00:00")
		if err := x.Update(ctx, []string{"caami", "ona"}, now); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"pricing", "records"} {
			if v := promtest.Value(t, reg, "paasmeter_sla_maintenance_active", app("claims", a)); v != 1 {
				t.Errorf("claims/%s: maintenance_active %v, want 1", a, v)
			}
		}
		// 1–19 November and 20 November 00:00–02:58 have ended a minute before 03:00.
		for state, want := range map[string]float64{"up": 27539 - 59 - 500, "down_platform": 500, "down_tenant": 0, "maintenance": 59, "not_eligible": 0} {
			if v := promtest.Value(t, reg, "paasmeter_sla_minutes", app("claims", "pricing", "state", state)); v != want {
				t.Errorf("claims/pricing %s: %v minutes, want %v", state, v, want)
			}
		}
		if v := promtest.Value(t, reg, "paasmeter_sla_minutes", app("claims", "sandbox")); v != 0 {
			t.Errorf("the dev app has %v minutes exported, want none", v)
		}
		want, _ := report(t, n.store, n.windows, n.period, now).Availability.Float64()
		if v := promtest.Value(t, reg, "paasmeter_sla_availability_percent", map[string]string{"tenant": "caami"}); v != want {
			t.Errorf("availability %v, want the report's %v", v, want)
		}
		if v := promtest.Value(t, reg, "paasmeter_sla_last_report_timestamp_seconds", nil); v != float64(now.Unix()) {
			t.Errorf("last report at %v, want %v", v, now.Unix())
		}
	})
	t.Run("after the window no app shows maintenance", func(t *testing.T) {
		if err := x.Update(ctx, []string{"caami"}, n.at(t, "2026-11-20 05:00:00")); err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{"pricing", "records"} {
			if v := promtest.Value(t, reg, "paasmeter_sla_maintenance_active", app("claims", a)); v != 0 {
				t.Errorf("claims/%s: maintenance_active %v, want 0", a, v)
			}
		}
	})
	t.Run("an institution no longer listed loses its series", func(t *testing.T) {
		if err := x.Update(ctx, nil, n.at(t, "2026-11-20 06:00:00")); err != nil {
			t.Fatal(err)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "paasmeter_sla_last_report_timestamp_seconds" && len(mf.GetMetric()) > 0 {
				t.Errorf("%s still has %d series", mf.GetName(), len(mf.GetMetric()))
			}
		}
	})
}

// TestTheRunningMonthIsReportedUpToTheClockAtAnyDate reports, at each of
// clocktest's instants, the running month of a production app that has run
// since before it: every minute from the month's start to a settling minute
// before the clock is up, the rest of the month is still to come, whatever
// the month's length, a change of daylight saving time within it, or a clock
// in the month's first minute.
func TestTheRunningMonthIsReportedUpToTheClockAtAnyDate(t *testing.T) {
	ctx := context.Background()
	for _, in := range clocktest.Instants(t) {
		t.Run(in.Name, func(t *testing.T) {
			t.Parallel()
			loc := in.Time.Location()
			start := time.Date(in.Time.Year(), in.Time.Month(), 1, 0, 0, 0, 0, loc)
			month := int64(start.AddDate(0, 1, 0).Sub(start) / time.Minute)
			until := in.Time.Truncate(time.Minute).Add(-time.Minute)
			if until.Before(start) {
				until = start
			}
			up := int64(until.Sub(start) / time.Minute)

			st, err := embedded.Open(ctx, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			evs := as("caami", "claims", "pricing", usage.EnvProd, []events.Event{
				lifecycle(events.Started, "pricing-0", "pa0", start.Add(-time.Hour), "")})
			evs[0].ReceivedAt = evs[0].Time.Add(time.Second)
			if _, err := st.AppendEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			r := report(t, st, staticWindows{}, calendar.MonthOf(in.Time, loc), in.Time)
			want := []appCounts{{"claims/pricing", counts{Up: up, Future: month - up}, up}}
			if got := appsOf(r); len(got) != 1 || got[0] != want[0] {
				t.Errorf("apps %+v, want %+v (a month of %d minutes, %d of them past)", got, want, month, up)
			}
			if !r.Until.Equal(until) {
				t.Errorf("reported until %s, want %s", r.Until.In(loc), until)
			}
		})
	}
}
