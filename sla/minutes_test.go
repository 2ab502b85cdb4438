package sla_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/sla"
)

func brussels(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func config(t testing.TB) sla.Config {
	t.Helper()
	cfg := sla.DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// lifecycle returns a lifecycle event of container ctr, replica replica, of
// caami's claims/pricing in prod.
func lifecycle(typ events.Type, replica, ctr string, at time.Time, by events.Initiator) events.Event {
	e := eventstest.Event("caami", ctr, typ, at)
	e.Replica, e.Initiator = replica, by
	if typ == events.Died && by != events.ByOwner {
		code := 137 // killed, or crashed: not a clean exit
		e.ExitCode = &code
	}
	e.SetID()
	return e
}

// outcome is how one probe goes.
type outcome int

const (
	pass   outcome = iota
	fail           // the probe ran and failed
	silent         // no probe: the agent or its node is down
)

// during returns o for probes in [from, to), pass otherwise; later
// arguments win over earlier ones.
func during(rules ...any) func(time.Time) outcome {
	return func(t time.Time) outcome {
		res := pass
		for i := 0; i+3 <= len(rules); i += 3 {
			from, to, o := rules[i].(time.Time), rules[i+1].(time.Time), rules[i+2].(outcome)
			if !t.Before(from) && t.Before(to) {
				res = o
			}
		}
		return res
	}
}

// replica returns a run of one replica: started at start, probed every
// `every` from start+every while before end, as res says.
func replica(name, ctr string, start, end time.Time, every time.Duration, res func(time.Time) outcome) []events.Event {
	evs := []events.Event{lifecycle(events.Started, name, ctr, start, "")}
	for at := start.Add(every); at.Before(end); at = at.Add(every) {
		o := res(at)
		if o == silent {
			continue
		}
		e := eventstest.Event("caami", ctr, events.Probe, at)
		e.Replica = name
		e.Probe.OK = o == pass
		if !e.Probe.OK {
			e.Probe.Detail = "HTTP 503"
		}
		e.SetID()
		evs = append(evs, e)
	}
	return evs
}

func concat(parts ...[]events.Event) []events.Event {
	var out []events.Event
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// counts are the figures of an AppMinutes a test checks.
type counts struct {
	Up, DownPlatform, DownTenant, Maintenance, NotEligible, Future int64
}

func countsOf(a *sla.AppMinutes) counts {
	return counts{a.Up, a.DownPlatform, a.DownTenant, a.Maintenance, a.NotEligible, a.Future}
}

func TestClassify(t *testing.T) {
	loc := brussels(t)
	cfg := config(t)
	day := func(hms string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04:05", "2026-03-10 "+hms, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// Every case looks at 11:00–14:00 (180 minutes) of one day; the app's
	// replicas start at 10:00, in the lookback.
	from, to, later := day("11:00:00"), day("14:00:00"), day("23:00:00")
	start, end := day("10:00:00"), day("14:05:00")
	s := 10 * time.Second
	window := sla.Window{ID: "w1", Scope: sla.Scope{Tenant: "caami"}, Start: day("12:00:00"), End: day("13:00:00"),
		Reason: "storage firmware", DeclaredAt: day("10:00:00").AddDate(0, 0, -7)}
	tests := []struct {
		name    string
		evs     []events.Event
		windows []sla.Window
		now     time.Time
		want    counts
	}{
		{
			name: "a healthy replica is up every minute",
			evs:  replica("pricing-0", "c0", start, end, s, during()),
			want: counts{Up: 180},
		},
		{
			name:    "an outage inside a maintenance window leaves both the numerator and the denominator",
			evs:     replica("pricing-0", "c0", start, end, s, during(day("12:10:00"), day("12:40:00"), silent)),
			windows: []sla.Window{window},
			want:    counts{Up: 120, Maintenance: 60},
		},
		{
			name:    "an outage overlapping a window's start counts only its minutes before the window",
			evs:     replica("pricing-0", "c0", start, end, s, during(day("11:50:00"), day("12:20:00"), silent)),
			windows: []sla.Window{window},
			want:    counts{Up: 110, DownPlatform: 10, Maintenance: 60},
		},
		{
			name:    "an outage spanning a whole window counts its minutes on both sides of it",
			evs:     replica("pricing-0", "c0", start, end, s, during(day("11:55:00"), day("13:05:00"), silent)),
			windows: []sla.Window{window},
			want:    counts{Up: 110, DownPlatform: 10, Maintenance: 60},
		},
		{
			name: "a minute with 25 s of failed probes is up",
			evs:  replica("pricing-0", "c0", start, end, 5*time.Second, during(day("12:30:00"), day("12:30:25"), fail)),
			want: counts{Up: 180},
		},
		{
			name: "a minute with 35 s of failed probes is down, and the tenant's",
			evs:  replica("pricing-0", "c0", start, end, 5*time.Second, during(day("12:30:00"), day("12:30:35"), fail)),
			want: counts{Up: 179, DownTenant: 1},
		},
		{
			name: "a minute with 25 s without probe data is up",
			evs:  replica("pricing-0", "c0", start, end, 5*time.Second, during(day("12:29:35"), day("12:30:25"), silent)),
			want: counts{Up: 180},
		},
		{
			name: "no probe data from a dead agent is down, caused by the platform",
			evs:  replica("pricing-0", "c0", start, end, s, during(day("12:00:00"), end, silent)),
			want: counts{Up: 60, DownPlatform: 120},
		},
		{
			name: "a tenant crash, probes failing then the container dying on its own, is down, caused by the tenant",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:05:00"), s, during(day("12:00:00"), end, fail)),
				[]events.Event{lifecycle(events.Died, "pricing-0", "c0", day("12:05:00"), "")},
				replica("pricing-0", "c1", day("12:10:00"), end, s, during())),
			want: counts{Up: 170, DownTenant: 10},
		},
		{
			name: "a container found dead after its node was down is the platform's, not a tenant crash",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Died, "pricing-0", "c0", day("12:20:00"), "")},
				replica("pricing-0", "c1", day("12:25:00"), end, s, during())),
			want: counts{Up: 155, DownPlatform: 25},
		},
		{
			name: "an OOM kill within the app's own limit is the tenant's",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.OOM, "pricing-0", "c0", day("12:00:00"), ""), func() events.Event {
					e := lifecycle(events.Died, "pricing-0", "c0", day("12:00:00"), "")
					e.OOMKilled = true
					e.SetID()
					return e
				}()},
				replica("pricing-0", "c1", day("12:03:00"), end, s, during())),
			want: counts{Up: 177, DownTenant: 3},
		},
		{
			name: "a platform kill, died and stopped by the platform, is down, caused by the platform",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Died, "pricing-0", "c0", day("12:00:00"), events.ByPlatform),
					lifecycle(events.Stopped, "pricing-0", "c0", day("12:00:00"), events.ByPlatform),
					lifecycle(events.Removed, "pricing-0", "c0", day("12:01:00"), "")},
				replica("pricing-0", "c1", day("12:10:00"), end, s, during())),
			want: counts{Up: 170, DownPlatform: 10},
		},
		{
			name: "a replica killed by the platform while the other fails its probes makes the minutes the platform's",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Stopped, "pricing-0", "c0", day("12:00:00"), events.ByPlatform)},
				replica("pricing-0", "c1", day("12:10:00"), end, s, during()),
				replica("pricing-1", "d0", start, end, s, during(day("11:30:00"), day("12:30:00"), fail))),
			want: counts{Up: 170, DownPlatform: 10},
		},
		{
			name: "an app stopped by its owner is neither eligible nor down",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Stopped, "pricing-0", "c0", day("12:00:00"), events.ByOwner),
					lifecycle(events.Died, "pricing-0", "c0", day("12:00:00"), events.ByOwner),
					lifecycle(events.Removed, "pricing-0", "c0", day("12:05:00"), "")},
				replica("pricing-0", "c1", day("13:00:00"), end, s, during())),
			want: counts{Up: 120, NotEligible: 60},
		},
		{
			name: "an app removed by its owner stays not eligible",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Stopped, "pricing-0", "c0", day("12:00:00"), events.ByOwner),
					lifecycle(events.Removed, "pricing-0", "c0", day("12:00:30"), "")}),
			want: counts{Up: 60, NotEligible: 120},
		},
		{
			name: "an owner scaling an app down keeps it up on the replicas left",
			evs: concat(
				replica("pricing-0", "c0", start, end, s, during()),
				replica("pricing-1", "d0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Stopped, "pricing-1", "d0", day("12:00:00"), events.ByOwner)}),
			want: counts{Up: 180},
		},
		{
			name: "an app does not exist, and is not eligible, before its first event",
			evs:  replica("pricing-0", "c0", day("12:30:00"), end, s, during()),
			want: counts{Up: 90, NotEligible: 90},
		},
		{
			name: "a replica restarted in place keeps its probes",
			evs: concat(
				replica("pricing-0", "c0", start, day("12:00:00"), s, during()),
				[]events.Event{lifecycle(events.Died, "pricing-0", "c0", day("12:00:00"), "")},
				replica("pricing-0", "c0", day("12:00:05"), end, s, during())),
			want: counts{Up: 180},
		},
		{
			name: "two replicas where one passes keep the app up",
			evs: concat(
				replica("pricing-0", "c0", start, end, s, during(day("12:00:00"), day("13:00:00"), fail)),
				replica("pricing-1", "d0", start, end, s, during())),
			want: counts{Up: 180},
		},
		{
			name: "two replicas both failing make the app down",
			evs: concat(
				replica("pricing-0", "c0", start, end, s, during(day("12:00:00"), day("12:10:00"), fail)),
				replica("pricing-1", "d0", start, end, s, during(day("12:00:00"), day("12:10:00"), fail))),
			want: counts{Up: 170, DownTenant: 10},
		},
		{
			name: "a replica failing its probes while the other's node is silent is the tenant's",
			evs: concat(
				replica("pricing-0", "c0", start, end, s, during(day("12:00:00"), day("12:10:00"), fail)),
				replica("pricing-1", "d0", start, end, s, during(day("12:00:00"), day("12:10:00"), silent))),
			want: counts{Up: 170, DownTenant: 10},
		},
		{
			name: "a minute with as many seconds without data as failed goes to the platform",
			evs: replica("pricing-0", "c0", start, end, s, during(
				day("12:00:00"), day("12:00:01"), fail, day("12:00:01"), day("12:01:00"), silent)),
			want: counts{Up: 179, DownPlatform: 1},
		},
		{
			name: "a minute with more failed seconds than seconds without data goes to the tenant",
			evs: replica("pricing-0", "c0", start, end, s, during(
				day("12:00:00"), day("12:00:20"), fail, day("12:00:20"), day("12:01:00"), silent)),
			want: counts{Up: 179, DownTenant: 1},
		},
		{
			name: "an app without a health check is up while its container runs",
			evs:  []events.Event{lifecycle(events.Started, "pricing-0", "c0", start, "")},
			want: counts{Up: 180},
		},
		{
			name: "the current period counts only the minutes that ended before now",
			evs:  replica("pricing-0", "c0", start, end, s, during()),
			now:  day("12:30:30"),
			want: counts{Up: 90, Future: 90},
		},
		{
			name: "the current period counts no minute of an outage still in the future",
			evs:  replica("pricing-0", "c0", start, day("12:30:00"), s, during()),
			now:  day("12:30:30"),
			want: counts{Up: 90, Future: 90},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = later
			}
			got := sla.Classify(tc.evs, tc.windows, from, to, now, cfg)
			if c := countsOf(&got); c != tc.want {
				t.Errorf("got %+v, want %+v", c, tc.want)
			}
			if got.Total != 180 || got.Eligible != got.Up+got.DownPlatform+got.DownTenant ||
				got.Total != got.Eligible+got.Maintenance+got.NotEligible+got.Future {
				t.Errorf("minutes do not add up: %+v", countsOf(&got))
			}
			if got.Project != "claims" || got.App != "pricing" {
				t.Errorf("app %s/%s, want claims/pricing", got.Project, got.App)
			}
			var out int64
			for _, o := range got.Outages {
				out += o.Minutes
				if o.End.Sub(o.Start) != time.Duration(o.Minutes)*time.Minute {
					t.Errorf("outage %+v: its span is not its minutes", o)
				}
			}
			if out != got.DownPlatform+got.DownTenant {
				t.Errorf("outages list %d minutes, %d were down", out, got.DownPlatform+got.DownTenant)
			}
		})
	}
}

func TestClassifyOutages(t *testing.T) {
	loc := brussels(t)
	day := func(hms string) time.Time {
		tm, _ := time.ParseInLocation("2006-01-02 15:04:05", "2026-03-10 "+hms, loc)
		return tm
	}
	evs := replica("pricing-0", "c0", day("10:00:00"), day("14:00:00"), 10*time.Second,
		during(day("11:10:00"), day("11:20:00"), fail, day("11:20:00"), day("11:25:00"), silent))
	got := sla.Classify(evs, nil, day("11:00:00"), day("12:00:00"), day("13:00:00"), config(t))
	want := []sla.Outage{
		{Start: day("11:10:00"), End: day("11:20:00"), Cause: sla.CauseTenant, Minutes: 10},
		// The last failed probe (11:19:50) holds until 11:20:20: the minute of
		// 11:20 has 20 failed seconds and 40 without data.
		{Start: day("11:20:00"), End: day("11:25:00"), Cause: sla.CausePlatform, Minutes: 5},
	}
	if len(got.Outages) != len(want) {
		t.Fatalf("outages %+v, want %+v", got.Outages, want)
	}
	for i := range want {
		g, w := got.Outages[i], want[i]
		if !g.Start.Equal(w.Start) || !g.End.Equal(w.End) || g.Cause != w.Cause || g.Minutes != w.Minutes {
			t.Errorf("outage %d = %+v, want %+v", i, g, w)
		}
	}
	if got.Availability.String() != "91.6667" {
		t.Errorf("availability %s, want 91.6667 (55 of 60 minutes: tenant-caused minutes are not counted against it)", got.Availability)
	}
}

func TestClassifyMonthBoundary(t *testing.T) {
	loc := brussels(t)
	cfg := config(t)
	mar := billing.Period{Year: 2026, Month: time.March, Loc: loc}
	at := func(s string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// The agent is down from 23:50 on 28 February to 00:10 on 1 March; the
	// owner stops the app at 01:00.
	evs := concat(
		replica("pricing-0", "c0", at("2026-02-28 10:00"), at("2026-03-01 01:00"), 10*time.Second,
			during(at("2026-02-28 23:50"), at("2026-03-01 00:10"), silent)),
		[]events.Event{lifecycle(events.Stopped, "pricing-0", "c0", at("2026-03-01 01:00"), events.ByOwner)})
	got := sla.Classify(evs, nil, mar.Start(), mar.End(), at("2026-04-02 00:00"), cfg)
	want := counts{Up: 50, DownPlatform: 10, NotEligible: 44580 - 60}
	if c := countsOf(&got); c != want || got.Total != 44580 {
		t.Errorf("March: %+v of %d minutes, want %+v of 44580: only March's minutes of the outage count", c, got.Total, want)
	}
	feb := billing.Period{Year: 2026, Month: time.February, Loc: loc}
	got = sla.Classify(evs, nil, feb.Start(), feb.End(), at("2026-04-02 00:00"), cfg)
	if got.DownPlatform != 10 || got.Up != 14*60-10 {
		t.Errorf("February: %d down, %d up; want 10 down (from 23:50) and 830 up", got.DownPlatform, got.Up)
	}
}

func TestMonthLengths(t *testing.T) {
	loc := brussels(t)
	tests := []struct {
		name  string
		month time.Month
		want  int64
	}{
		{"March 2026 in Brussels has 44,580 minutes: the clocks go forward an hour", time.March, 44580},
		{"October 2026 in Brussels has 44,700 minutes: the clocks go back an hour", time.October, 44700},
		{"November 2026 has 43,200 minutes", time.November, 43200},
		{"February 2026 has 40,320 minutes", time.February, 40320},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := billing.Period{Year: 2026, Month: tc.month, Loc: loc}
			got := sla.Classify(nil, nil, p.Start(), p.End(), p.End().AddDate(0, 1, 0), config(t))
			if got.Total != tc.want || got.NotEligible != tc.want {
				t.Errorf("total %d, not eligible %d; want %d of each for an app that never ran", got.Total, got.NotEligible, tc.want)
			}
			if !got.Availability.Equal(decimal.NewFromInt(100)) {
				t.Errorf("availability %s without an eligible minute, want 100", got.Availability)
			}
		})
	}
}

func TestAvailability(t *testing.T) {
	tests := []struct {
		name               string
		eligible, platform int64
		want               string
	}{
		{"no eligible minute is 100 %", 0, 0, "100"},
		{"no platform-caused down minute is 100 %", 44640, 0, "100"},
		{"a third down is rounded to four decimals", 3, 1, "66.6667"},
		{"45 minutes down in a 31-day month is below 99.9 %", 44640, 45, "99.8992"},
		{"44 minutes down in a 31-day month is not", 44640, 44, "99.9014"},
		{"a quotient ending in 5 at the fifth decimal is rounded up", 160000, 1, "99.9994"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sla.Availability(tc.eligible, tc.platform); got.String() != tc.want {
				t.Errorf("Availability(%d, %d) = %s, want %s", tc.eligible, tc.platform, got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*sla.Config)
		field  string
	}{
		{"the defaults are valid", func(*sla.Config) {}, ""},
		{"a config without a time zone is refused", func(c *sla.Config) { c.Location = nil }, "location"},
		{"a down threshold longer than a minute is refused", func(c *sla.Config) { c.DownThreshold = 61 * time.Second }, "down_threshold"},
		{"a zero probe staleness is refused", func(c *sla.Config) { c.ProbeStaleness = 0 }, "probe_staleness"},
		{"a lookback shorter than the staleness is refused", func(c *sla.Config) { c.Lookback = time.Second }, "lookback"},
		{"no credit tier is refused", func(c *sla.Config) { c.CreditTiers = nil }, "credit_tiers"},
		{"a credit above 100 % is refused", func(c *sla.Config) {
			c.CreditTiers = []billing.CreditTier{{Below: decimal.NewFromInt(99), Credit: decimal.NewFromInt(101)}}
		}, "credit_tiers[0].credit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := config(t)
			tc.change(&c)
			err := c.Validate()
			switch {
			case tc.field == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.field != "" && (err == nil || !strings.Contains(err.Error(), tc.field+":")):
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
}

// BenchmarkClassifyMonth classifies one app with two replicas probed every
// 10 s for all of a 31-day month (535,680 probe events, one replica failing
// for an hour): in time order as the store returns them, and shuffled by
// replica as a caller may pass them.
func BenchmarkClassifyMonth(b *testing.B) {
	loc := brussels(b)
	p := billing.Period{Year: 2026, Month: time.January, Loc: loc}
	from, to := p.Start(), p.End()
	start := from.Add(-time.Hour)
	byReplica := concat(
		replica("pricing-0", "c0", start, to, 10*time.Second, during()),
		replica("pricing-1", "d0", start, to, 10*time.Second, during(from.Add(240*time.Hour), from.Add(241*time.Hour), fail)))
	inOrder := slices.Clone(byReplica)
	slices.SortStableFunc(inOrder, func(a, b events.Event) int { return a.Time.Compare(b.Time) })
	cfg := config(b)
	for _, bc := range []struct {
		name string
		evs  []events.Event
	}{{"in time order", inOrder}, {"by replica", byReplica}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				got := sla.Classify(bc.evs, nil, from, to, to.Add(time.Hour), cfg)
				if got.Up != 44640 {
					b.Fatalf("%d minutes up, want 44640", got.Up)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/month")
			b.ReportMetric(float64(len(bc.evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
