package sla_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/credit"
)

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
			c.CreditTiers = []credit.Tier{{Below: decimal.NewFromInt(99), Credit: decimal.NewFromInt(101)}}
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
	loc := clocktest.Brussels(b)
	p := calendar.Month{Year: 2026, Month: time.January, Loc: loc}
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
