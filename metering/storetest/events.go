package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

func testRunNode(t *testing.T, s metering.Store) {
	started := eventstest.Event("caami", "abc", events.Started, Base.Add(time.Minute))
	created := eventstest.Event("caami", "abc", events.Created, Base)
	created.Node = "node-2" // earlier, from another node: it fixes the run's node
	created.SetID()
	other := eventstest.Event("ona", "abc", events.Started, Base)
	other.Node = "node-3"
	other.SetID()
	batch := []events.Event{started, created, other}
	for i := range batch {
		batch[i].ReceivedAt = Base.Add(2 * time.Minute)
	}
	if _, err := s.AppendEvents(ctx(t), batch); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant, container, run, node string
		found                        bool
	}{
		{"caami", "abc", "abc-run1", "node-2", true},
		{"ona", "abc", "abc-run1", "node-3", true},
		{"caami", "abc", "abc-run2", "", false},
		{"caami", "abd", "abc-run1", "", false},
		{"other", "abc", "abc-run1", "", false},
	} {
		node, found, err := s.RunNode(ctx(t), tc.tenant, tc.container, tc.run)
		if err != nil || node != tc.node || found != tc.found {
			t.Errorf("RunNode(%s, %s, %s) = %q, %v, %v; want %q, %v", tc.tenant, tc.container, tc.run, node, found, err, tc.node, tc.found)
		}
	}
}

func scanEvents(t *testing.T, s metering.Store, f metering.EventFilter) []events.Event {
	t.Helper()
	if f.From.IsZero() {
		f.From, f.To = Base.AddDate(-1, 0, 0), Base.AddDate(1, 0, 0)
	}
	var out []events.Event
	if err := s.ScanEvents(ctx(t), f, func(e events.Event) error { out = append(out, e); return nil }); err != nil {
		t.Fatalf("ScanEvents: %v", err)
	}
	return out
}

func testEventRoundTrip(t *testing.T, s metering.Store) {
	recv := Base.Add(time.Hour)
	died := eventstest.Event("caami", "abc", events.Died, Base.Add(time.Second))
	code := 137
	died.ExitCode, died.OOMKilled, died.Initiator, died.Replica = &code, true, events.ByPlatform, "pricing-1"
	died.SetID()
	probe := eventstest.Event("caami", "abc", events.Probe, Base.Add(2*time.Second))
	probe.Probe = &events.ProbeResult{OK: false, Kind: "tcp", LatencyNs: 2_000_000_000, Detail: "connection refused"}
	in := []events.Event{eventstest.Event("caami", "abc", events.Started, Base), died, probe,
		eventstest.Event("caami", "abc", events.Health, Base.Add(3*time.Second))}
	for i := range in {
		in[i].ReceivedAt = recv
	}
	res, err := s.AppendEvents(ctx(t), in)
	if err != nil || len(res.Duplicates) != 0 {
		t.Fatalf("AppendEvents = %+v, %v", res, err)
	}
	got := scanEvents(t, s, metering.EventFilter{Tenant: "caami"})
	if len(got) != len(in) {
		t.Fatalf("scanned %d events, want %d", len(got), len(in))
	}
	for i := range in {
		if !reflect.DeepEqual(got[i], in[i]) {
			t.Errorf("event %d read back as\n%s\nwant\n%s", i, show(got[i]), show(in[i]))
		}
	}
}

func show(e events.Event) string {
	var exit any = "-"
	if e.ExitCode != nil {
		exit = *e.ExitCode
	}
	return fmt.Sprintf("%+v exit=%v probe=%+v", e, exit, e.Probe)
}

func testEventResend(t *testing.T, s metering.Store) {
	batch := []events.Event{eventstest.Event("caami", "abc", events.Started, Base), eventstest.Event("caami", "abc", events.OOM, Base.Add(time.Minute))}
	for i := range batch {
		batch[i].ReceivedAt = Base.Add(2 * time.Minute)
	}
	if res, err := s.AppendEvents(ctx(t), batch); err != nil || len(res.Duplicates) != 0 {
		t.Fatalf("first append = %+v, %v", res, err)
	}
	for i := range batch {
		batch[i].ReceivedAt = Base.Add(9 * time.Minute)
	}
	batch = append(batch, batch[0])
	res, err := s.AppendEvents(ctx(t), batch)
	if err != nil || !slices.Equal(res.Duplicates, []int{0, 1, 2}) || len(res.Conflicts) != 0 {
		t.Fatalf("resend = %+v, %v; want every event a duplicate, none a conflict", res, err)
	}
	forged := batch[1]
	forged.Initiator = events.ByPlatform // the same id, other content
	res, err = s.AppendEvents(ctx(t), []events.Event{forged})
	if err != nil || !slices.Equal(res.Duplicates, []int{0}) || !slices.Equal(res.Conflicts, []int{0}) {
		t.Fatalf("conflicting resend = %+v, %v; want a duplicate that is a conflict", res, err)
	}
	got := scanEvents(t, s, metering.EventFilter{Tenant: "caami"})
	if len(got) != 2 {
		t.Fatalf("stored %d events, want 2", len(got))
	}
	for _, e := range got {
		if !e.ReceivedAt.Equal(Base.Add(2 * time.Minute)) {
			t.Errorf("event %s has received_at %s, want the first arrival's", e.ID, e.ReceivedAt)
		}
	}
}

func testEventFilters(t *testing.T, s metering.Store) {
	records := eventstest.Event("caami", "def", events.Started, Base)
	records.App, records.Environment = "records", usage.EnvAcc
	records.SetID()
	in := []events.Event{eventstest.Event("caami", "abc", events.Started, Base), eventstest.Event("caami", "abc", events.Died, Base.Add(time.Minute)),
		records, eventstest.Event("ona", "xyz", events.Started, Base)}
	if _, err := s.AppendEvents(ctx(t), in); err != nil {
		t.Fatal(err)
	}
	count := func(f metering.EventFilter) int { return len(scanEvents(t, s, f)) }
	checks := []struct {
		name string
		f    metering.EventFilter
		want int
	}{
		{"all of caami", metering.EventFilter{Tenant: "caami"}, 3},
		{"all of ona", metering.EventFilter{Tenant: "ona"}, 1},
		{"caami's pricing app", metering.EventFilter{Tenant: "caami", Apps: []string{"pricing"}}, 2},
		{"caami's died events", metering.EventFilter{Tenant: "caami", Types: []events.Type{events.Died}}, 1},
		{"caami's first minute", metering.EventFilter{Tenant: "caami", From: Base, To: Base.Add(time.Minute)}, 2},
		{"caami's production", metering.EventFilter{Tenant: "caami", Environments: []usage.Environment{usage.EnvProd}}, 2},
		{"caami's acceptance and test", metering.EventFilter{Tenant: "caami", Environments: []usage.Environment{usage.EnvAcc, usage.EnvTest}}, 1},
	}
	for _, c := range checks {
		if got := count(c.f); got != c.want {
			t.Errorf("%s: %d events, want %d", c.name, got, c.want)
		}
	}
}
