package clickhouse_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	meteringembedded "github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/usage"
)

// probeMonth generates caami's production apps from 31 October 2026 20:00
// UTC (in the SLA report's lookback) for 60 hours, across two UTC midnights
// and the month's start: replicas probed every 10 s, whose results flip,
// whose probes pause longer than the staleness (and exactly as long), that
// die (by the platform or their owner) and start again, at once between
// two probes or later, are replaced by a
// new container in the same replica, with events the report ignores and
// probe events without a result, some at the very time of a lifecycle
// event; and a dev app, which the report leaves out.
func probeMonth(rng *rand.Rand, staleness time.Duration) []events.Event {
	var out []events.Event
	start := time.Date(2026, 10, 31, 20, 0, 0, 0, time.UTC)
	end := start.Add(60 * time.Hour)
	for _, app := range []struct {
		name     string
		env      usage.Environment
		replicas int
	}{{"pricing", usage.EnvProd, 2}, {"records", usage.EnvProd, 1}, {"portal", usage.EnvProd, 3}, {"sandbox", usage.EnvDev, 1}} {
		for r := range app.replicas {
			ctr, gen := 0, 0
			e := func(typ events.Type, at time.Time) *events.Event {
				out = append(out, events.Event{SchemaVersion: events.SchemaVersion, Tenant: "caami", Project: "claims", App: app.name,
					Environment: app.env, Node: "node-1", ContainerID: fmt.Sprintf("%s-%d-%d", app.name, r, ctr),
					RunID: fmt.Sprintf("%s-%d-%d-run%d", app.name, r, ctr, gen), Replica: fmt.Sprintf("%s-%d", app.name, r),
					Type: typ, Time: at, ReceivedAt: at.Add(time.Second)})
				return &out[len(out)-1]
			}
			t := start.Add(time.Duration(rng.IntN(600)) * time.Second)
			e(events.Created, t)
			e(events.Started, t)
			ok := true
			for t.Before(end) {
				switch x := rng.IntN(1000); {
				case x < 15: // a pause: stale unless exactly the staleness
					t = t.Add(staleness + time.Duration(rng.IntN(300))*time.Second)
				case x < 20:
					t = t.Add(staleness)
				default:
					t = t.Add(10 * time.Second)
				}
				if rng.IntN(100) == 0 {
					ok = !ok
				}
				p := e(events.Probe, t)
				p.Probe = &events.ProbeResult{OK: ok, Kind: "http", LatencyNs: int64(rng.IntN(5_000_000))}
				if !ok {
					p.Probe.Detail = "503"
				}
				switch x := rng.IntN(3000); {
				case x < 3: // dies at the probe's instant, starts again later
					d := e(events.Died, t)
					code := 137
					d.ExitCode, d.Initiator = &code, events.ByPlatform
					if x == 1 {
						d.Initiator = events.ByOwner
					}
					t = t.Add(time.Duration(20+rng.IntN(300)) * time.Second)
					gen++
					typ := events.Started
					if x == 2 {
						typ = events.Restarted
					}
					e(typ, t)
				case x < 4: // restarts between two probes, within the staleness
					d := e(events.Died, t.Add(time.Second))
					code := 1
					d.ExitCode, d.Initiator = &code, events.ByPlatform
					gen++
					e(events.Restarted, t.Add(3*time.Second))
				case x < 5: // replaced by a new container in the same replica
					e(events.Stopped, t).Initiator = events.ByOwner
					e(events.Removed, t.Add(time.Second))
					ctr, gen = ctr+1, 0
					t = t.Add(5 * time.Second)
					e(events.Created, t)
					e(events.Started, t)
				case x < 7:
					e(events.Health, t.Add(time.Second)).Health = "healthy"
				case x < 9:
					e(events.Probe, t.Add(2*time.Second)) // no result
				}
			}
		}
	}
	for i := range out {
		out[i].SetID()
	}
	return out
}

// probeRun is what ScanProbeRuns passes on.
type probeRun struct {
	id   string
	last time.Time
}

// probeRuns applies metering.ProbeRunReader's rule to evs, in ScanEvents'
// order, splitting runs at each UTC midnight as the ClickHouse store does.
func probeRuns(evs []events.Event, gap time.Duration) []probeRun {
	type state struct {
		open bool
		ok   bool
		last time.Time
		run  int
	}
	day := func(t time.Time) int64 { return t.UnixNano() / int64(24*time.Hour) }
	ctrs := map[[3]string]*state{}
	var out []probeRun
	for _, e := range evs {
		k := [3]string{e.Project, e.App, e.ContainerID}
		c := ctrs[k]
		if c == nil {
			c = &state{}
			ctrs[k] = c
		}
		switch {
		case e.Type == events.Probe && e.Probe != nil:
			if c.open && c.ok == e.Probe.OK && e.Time.Sub(c.last) <= gap && day(e.Time) == day(c.last) {
				c.last, out[c.run].last = e.Time, e.Time
				continue
			}
			c.open, c.ok, c.last, c.run = true, e.Probe.OK, e.Time, len(out)
		case e.Type == events.Started, e.Type == events.Restarted, e.Type == events.Died, e.Type == events.Stopped, e.Type == events.Removed:
			c.open = false
		}
		out = append(out, probeRun{e.ID, e.Time})
	}
	return out
}

// eventsOnly hides a store's ScanProbeRuns, so that the report reads every
// event.
type eventsOnly struct{ metering.EventReader }

func TestTheSLAReportFromProbeRunsInTheServerIsTheReportFromEveryEvent(t *testing.T) {
	cfg := sla.DefaultConfig()
	evs := probeMonth(rand.New(rand.NewPCG(19, 11)), cfg.ProbeStaleness)
	probes := 0
	for _, e := range evs {
		if e.Type == events.Probe {
			probes++
		}
	}
	t.Logf("%d events, %d of them probes", len(evs), probes)
	month := calendar.Month{Year: 2026, Month: time.November, Loc: cfg.Location}
	clk := clock.NewManual(month.End().Add(48 * time.Hour))
	report := func(t *testing.T, ev metering.EventReader) []byte {
		t.Helper()
		calc, err := sla.NewCalculator(ev, nil, cfg, clk)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := calc.Report(context.Background(), "caami", month)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.MarshalIndent(rep, "", " ")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	store := func(t *testing.T, s metering.Store) {
		t.Helper()
		for i := 0; i < len(evs); i += 5000 {
			if _, err := s.AppendEvents(context.Background(), evs[i:min(i+5000, len(evs))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	emb, err := meteringembedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	if _, ok := any(emb).(metering.ProbeRunReader); ok {
		t.Fatal("the embedded store collapses probe runs: compare with a reader of every event instead")
	}
	store(t, emb)
	want := report(t, emb)
	var got struct{ Apps []sla.AppMinutes }
	if err := json.Unmarshal(want, &got); err != nil {
		t.Fatal(err)
	}
	var platform, tenant int64
	for _, a := range got.Apps {
		platform, tenant = platform+a.DownPlatform, tenant+a.DownTenant
	}
	if len(got.Apps) != 3 || platform == 0 || tenant == 0 {
		t.Fatalf("the generated month should give 3 production apps with minutes down by both causes: %d apps, %d and %d down", len(got.Apps), platform, tenant)
	}

	for name, target := range map[string]dsner{"single server": chtest.Single(t), "two shards": chtest.TwoShards(t)} {
		t.Run(name, func(t *testing.T) {
			s := open(t, target)
			store(t, s)
			if got := report(t, s); string(got) != string(want) {
				t.Errorf("the report from probe runs differs from the one from every event:\nclickhouse %s\nembedded   %s", got, want)
			}
			if got := report(t, eventsOnly{s}); string(got) != string(want) {
				t.Errorf("the report from every event differs between the stores:\nclickhouse %s\nembedded   %s", got, want)
			}
			f := metering.EventFilter{Tenant: "caami", From: month.Start().Add(-cfg.Lookback), To: month.End(), Environments: []usage.Environment{usage.EnvProd}}
			var runs []probeRun
			var all []events.Event
			if err := s.ScanProbeRuns(context.Background(), f, cfg.ProbeStaleness, func(e events.Event, last time.Time) error {
				runs = append(runs, probeRun{e.ID, last})
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := s.ScanEvents(context.Background(), f, func(e events.Event) error { all = append(all, e); return nil }); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d events read as %d", len(all), len(runs))
			if want := probeRuns(all, cfg.ProbeStaleness); !slices.Equal(runs, want) {
				t.Errorf("ScanProbeRuns passed %d events, the rule gives %d", len(runs), len(want))
				for i := range min(len(runs), len(want)) {
					if runs[i] != want[i] {
						t.Errorf("first difference, at %d: %+v, want %+v", i, runs[i], want[i])
						break
					}
				}
			}
			if len(runs)*10 > len(all) {
				t.Errorf("ScanProbeRuns passed %d of the %d events: the probe runs are not collapsed", len(runs), len(all))
			}
		})
	}
}
