package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// TestNodeCannotPreemptAnotherNodesRecord is finding 4: node 1 sends a zero
// record for node 2's volume a few minutes ahead of node 2. Its id carries
// its own node, so node 2's real record is new, not a duplicate, and the
// zero record takes nothing from it.
func TestNodeCannotPreemptAnotherNodesRecord(t *testing.T) {
	e := newEnv(t, nil, nil)
	real := usagetest.Volume("caami", "pgdata", now.Add(-10*time.Minute), 60*(10<<30))
	real.Node = "node-2"
	real.SetID()
	forged := real
	forged.Node, forged.Quantity = "node-1", 0
	forged.SetID()

	a := e.post(t, agentNode1, []usage.Record{forged})
	var res collector.IngestReply
	a.decode(t, &res)
	if a.code != 200 || res.New != 1 {
		t.Fatalf("node 1's record: %d %s", a.code, a.body)
	}
	e.clock.Advance(3 * time.Minute)
	a = e.post(t, agentNode2, []usage.Record{real})
	a.decode(t, &res)
	if a.code != 200 || res.IngestResult != (collector.IngestResult{Records: 1, New: 1}) || len(res.Conflicts) != 0 {
		t.Fatalf("node 2's real record: %d %s, want it new", a.code, a.body)
	}
	var got int64
	for _, r := range e.stored(t, "caami") {
		got += r.Quantity
	}
	if got != real.Quantity {
		t.Errorf("stored %d byte-seconds for the volume, want node 2's %d", got, real.Quantity)
	}
	// Node 1 cannot send a record naming node 2 either, whatever its id.
	if a := e.post(t, agentNode1, []usage.Record{real}); a.code != 403 {
		t.Errorf("node 1 sending node 2's record: %d %s, want 403", a.code, a.body)
	}
}

// TestRetryIsDeduplicatedAndConflictIsReported: the same node resending the
// same record gets "duplicate"; the same id with other content is a conflict,
// named in the reply, counted, and the first arrival stays.
func TestRetryIsDeduplicatedAndConflictIsReported(t *testing.T) {
	e := newEnv(t, nil, nil)
	batch := records("caami", 0, 3)
	if a := e.post(t, agentNode1, batch); a.code != 200 {
		t.Fatalf("first send: %d %s", a.code, a.body)
	}
	again := records("caami", 0, 3)
	again[2].Quantity += 1000 // same node, run, source, meter and window: same id
	a := e.post(t, agentNode1, again)
	var res collector.IngestReply
	a.decode(t, &res)
	if a.code != 200 || res.IngestResult != (collector.IngestResult{Records: 3, Duplicates: 2}) {
		t.Fatalf("resend: %d %s, want 2 duplicates and a conflict", a.code, a.body)
	}
	if len(res.Conflicts) != 1 || res.Conflicts[0] != (collector.Conflict{Index: 2, ID: again[2].ID}) {
		t.Fatalf("conflicts = %+v, want index 2, id %s", res.Conflicts, again[2].ID)
	}
	for _, r := range e.stored(t, "caami") {
		if r.ID == batch[2].ID && r.Quantity != batch[2].Quantity {
			t.Errorf("stored quantity %d, want the first arrival's %d", r.Quantity, batch[2].Quantity)
		}
	}
	if n := e.metric(t, "paasmeter_collector_conflicts_total", map[string]string{"kind": "usage", "tenant": "caami"}); n != 1 {
		t.Errorf("conflicts counter = %v, want 1", n)
	}
	if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "usage", "tenant": "caami", "outcome": "conflict"}); n != 1 {
		t.Errorf("conflict outcome counter = %v, want 1", n)
	}
}

// TestImpossibleQuantitiesAreRefused is finding 3's record: 90 records of
// 2^63−1 cpu_ns in 60 s windows; the whole batch is refused with a 400 that
// names the field and the bound, and nothing is stored.
func TestImpossibleQuantitiesAreRefused(t *testing.T) {
	e := newEnv(t, nil, nil)
	recs := records("caami", 0, 90)
	for i := range recs {
		recs[i].Quantity = math.MaxInt64
	}
	recs = append(recs, records("caami", 90, 1)...) // a valid record beside them is returned, not stored
	a := e.post(t, agentNode1, recs)
	if a.code != 400 || !strings.Contains(string(a.body), `"field":"quantity"`) ||
		!strings.Contains(string(a.body), "limits.max_node_cpus") || !strings.Contains(string(a.body), "30720000000000") {
		t.Fatalf("answer %d %s, want 400 naming quantity and the bound of 512 CPUs × 60 s", a.code, a.body)
	}
	if got := e.stored(t, "caami"); len(got) != 0 {
		t.Fatalf("stored %d records of a refused batch", len(got))
	}
}

// TestReportedNodeCapacityBoundsUsage: an agent that reports its node's
// CPUs and memory is held to them; a bad report is refused naming the header.
func TestReportedNodeCapacityBoundsUsage(t *testing.T) {
	e := newEnv(t, nil, nil)
	post := func(recs []usage.Record, header ...string) answer {
		return do(t, "POST", e.api.URL+"/api/v1/usage", agentNode1, bytes.NewReader(encode(t, recs)), header...)
	}
	cpu := usagetest.Record("caami", "c1", usage.MeterCPU, now.Add(-10*time.Minute), 4*int64(time.Minute))
	mem := usagetest.Record("caami", "c1", usage.MeterMemory, now.Add(-10*time.Minute), 60*(8<<30))
	if a := post([]usage.Record{cpu, mem}, usage.HeaderNodeCPUs, "4", usage.HeaderNodeMemoryBytes, "8589934592"); a.code != 200 {
		t.Fatalf("usage within the node's capacity: %d %s", a.code, a.body)
	}
	cpu2 := usagetest.Record("caami", "c2", usage.MeterCPU, now.Add(-10*time.Minute), 4*int64(time.Minute)+1)
	a := post([]usage.Record{cpu2}, usage.HeaderNodeCPUs, "4")
	if a.code != 400 || !strings.Contains(string(a.body), "4 CPUs (node CPUs reported)") {
		t.Fatalf("more CPU than 4 CPUs give: %d %s, want 400 naming the reported CPUs", a.code, a.body)
	}
	mem2 := usagetest.Record("caami", "c2", usage.MeterMemory, now.Add(-10*time.Minute), 60*(8<<30)+1)
	if a := post([]usage.Record{mem2}, usage.HeaderNodeMemoryBytes, "8589934592"); a.code != 400 || !strings.Contains(string(a.body), "node memory reported") {
		t.Fatalf("more memory than the node has: %d %s, want 400", a.code, a.body)
	}
	if a := post([]usage.Record{cpu2}, usage.HeaderNodeCPUs, "-1"); a.code != 400 || !strings.Contains(string(a.body), usage.HeaderNodeCPUs) {
		t.Fatalf("a bad header: %d %s, want 400 naming it", a.code, a.body)
	}
	if got := e.stored(t, "caami"); len(got) != 2 {
		t.Fatalf("stored %d records, want the 2 within bounds", len(got))
	}
}

func TestBoundsConfigIsValidated(t *testing.T) {
	cfg := collector.DefaultConfig()
	cfg.Bounds.MaxNodeCPUs = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "limits.max_node_cpus") {
		t.Fatalf("Validate = %v, want it to name limits.max_node_cpus", err)
	}
}

// platformEvent returns a platform-initiated died event of ona's run abc on node.
func platformEvent(node string, at time.Time) events.Event {
	d := eventstest.Event("ona", "abc", events.Died, at)
	d.Node, d.Initiator = node, events.ByPlatform
	d.SetID()
	return d
}

func startedOn(node string, at time.Time) events.Event {
	s := eventstest.Event("ona", "abc", events.Started, at)
	s.Node = node
	s.SetID()
	return s
}

// TestForgedPlatformEventsAreRefused is finding 3's events: a node saying
// the platform killed a run it did not run. Only the node that first
// reported the run may; the batch is refused naming the event's initiator.
func TestForgedPlatformEventsAreRefused(t *testing.T) {
	e := newEnv(t, nil, nil)
	at := now.Add(-30 * time.Minute)
	if a := e.postEvents(t, agentNode2, []events.Event{startedOn("node-2", at)}); a.code != 200 {
		t.Fatalf("node 2's started event: %d %s", a.code, a.body)
	}
	// Node 1 forges a started event of node 2's run, then the platform's kill.
	a := e.postEvents(t, agentNode1, []events.Event{startedOn("node-1", at.Add(time.Minute)), platformEvent("node-1", at.Add(2*time.Minute))})
	if a.code != 400 || !strings.Contains(string(a.body), `"field":"initiator"`) || !strings.Contains(string(a.body), `reported first by node \"node-2\"`) {
		t.Fatalf("forged platform kill of node 2's run: %d %s, want 400 naming initiator and node-2", a.code, a.body)
	}
	// A platform kill of a run nobody reported is refused too.
	other := platformEvent("node-1", at.Add(3*time.Minute))
	other.ContainerID, other.RunID = "ghost", "ghost-run1"
	other.SetID()
	if a := e.postEvents(t, agentNode1, []events.Event{other}); a.code != 400 || !strings.Contains(string(a.body), "no earlier event") {
		t.Fatalf("platform kill of a run never reported: %d %s, want 400", a.code, a.body)
	}
	// The node that ran it may, in a later batch …
	var res collector.IngestReply
	a = e.postEvents(t, agentNode2, []events.Event{platformEvent("node-2", at.Add(4*time.Minute))})
	a.decode(t, &res)
	if a.code != 200 || res.New != 1 {
		t.Fatalf("node 2's platform kill of its run: %d %s", a.code, a.body)
	}
	// … or in the batch that reports the run's start.
	fresh := []events.Event{startedOn("node-1", at), platformEvent("node-1", at.Add(time.Minute))}
	for i := range fresh {
		fresh[i].ContainerID, fresh[i].RunID = "xyz", "xyz-run1"
		fresh[i].SetID()
	}
	if a := e.postEvents(t, agentNode1, fresh); a.code != 200 {
		t.Fatalf("started and killed in one batch: %d %s", a.code, a.body)
	}
	var kills int
	err := e.store.ScanEvents(context.Background(), metering.EventFilter{Tenant: "ona", From: now.Add(-time.Hour), To: now},
		func(ev events.Event) error {
			if ev.Initiator == events.ByPlatform && ev.Node == "node-1" && ev.RunID == "abc-run1" {
				kills++
			}
			return nil
		})
	if err != nil || kills != 0 {
		t.Fatalf("stored %d forged platform kills (%v), want none", kills, err)
	}
}

// ona's figures an attacker would change: its SLA report for November, as
// ona reads it, and its November draft with the SLA calculator's credit.
type onaFigures struct {
	report string
	draft  string
}

func (e *env) onaFigures(t *testing.T, b *billing.Service) onaFigures {
	t.Helper()
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/ona/sla?month=2026-11", onaToken, nil)
	if a.code != 200 {
		t.Fatalf("ona's SLA report: %d %s", a.code, a.body)
	}
	drafts, err := b.Draft(context.Background(), billingtest.Period(), []string{"ona"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := json.Marshal(drafts)
	if err != nil {
		t.Fatal(err)
	}
	return onaFigures{report: string(a.body), draft: string(d)}
}

// forgedRun is a run of ona's production app on node, started at `at` and
// killed by the platform a minute later: what finding 3 sent to get ona a
// 100 % SLA credit.
func forgedRun(node string, at time.Time) []events.Event {
	evs := []events.Event{eventstest.Event("ona", "forged", events.Started, at), eventstest.Event("ona", "forged", events.Died, at.Add(time.Minute))}
	evs[1].Initiator = events.ByPlatform
	for i := range evs {
		evs[i].Node = node
		evs[i].SetID()
	}
	return evs
}

// TestANodeWritesOnlyForTheInstitutionsItMayRun is the gap issue 19 left
// after finding 3: node-3 may run caami only. It reports a run of ona's and
// the platform's kill of it, usage and log lines of ona (through the agents'
// API and Loki's): each is refused naming the tenant, counted, recorded in
// the access log, and ona's SLA report and draft invoice stay as they were.
// Its caami records still go in, as does ona's from a node that may run ona.
func TestANodeWritesOnlyForTheInstitutionsItMayRun(t *testing.T) {
	e := newEnv(t, nil, nil, withSLA(t))
	ctx := context.Background()
	recs := billingtest.Records()
	for i := range recs {
		recs[i].ReceivedAt = now
	}
	if _, err := e.store.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	calc, err := sla.NewCalculator(e.store, nil, sla.DefaultConfig(), e.clock)
	if err != nil {
		t.Fatal(err)
	}
	// Billing drafts an hour on, when the records received now are past its cutoff.
	b := billingOver(t, e.store, calc, clock.NewManual(now.Add(time.Hour)))
	before := e.onaFigures(t, b)
	at := now.Add(-30 * time.Minute)

	// The forged run and kill, beside a record of caami's that node-3 may write.
	caamiStart := eventstest.Event("caami", "c3", events.Started, at)
	caamiStart.Node = "node-3"
	caamiStart.SetID()
	a := e.postEvents(t, agentNode3, append(forgedRun("node-3", at), caamiStart))
	var d problemsDetail
	var body apiError
	a.decode(t, &body)
	if err := json.Unmarshal(body.Detail, &d); err != nil {
		t.Fatal(err)
	}
	if a.code != 400 || len(d.Problems) != 2 {
		t.Fatalf("node-3's forged run of ona: %d %s, want 400 naming both events", a.code, a.body)
	}
	for i, p := range d.Problems {
		if p.Index != i || p.Field != "tenant" || !strings.Contains(p.Reason, `node "node-3" may not run institution "ona"`) ||
			!strings.Contains(p.Reason, `tokens[].tenants of "agent-3"`) || !strings.Contains(p.Reason, "lists caami only") {
			t.Errorf("problem %d = %+v, want index %d naming the tenant, the node, the key and its list", i, p, i)
		}
	}
	// Its usage and log lines of ona, through every way an agent writes.
	usageOfOna := usagetest.Record("ona", "forged", usage.MeterCPU, now.Add(-10*time.Minute), 1)
	usageOfOna.Node = "node-3"
	usageOfOna.SetID()
	if a := e.post(t, agentNode3, []usage.Record{usageOfOna}); a.code != 400 || !strings.Contains(string(a.body), `"field":"tenant"`) {
		t.Errorf("node-3's usage of ona: %d %s, want 400 naming the tenant", a.code, a.body)
	}
	line := logLine("ona", "pricing", "forged", "prod", now.Add(-time.Minute), "forged line")
	line.Labels[logs.LabelNode] = "node-3"
	line.SetID()
	if a := e.postLogs(t, agentNode3, []logs.Line{line}); a.code != 400 || !strings.Contains(string(a.body), `"field":"tenant"`) {
		t.Errorf("node-3's log line of ona: %d %s, want 400 naming the tenant", a.code, a.body)
	}
	push := fmt.Sprintf(`{"streams":[{"stream":{"node":"node-3","app":"pricing"},"values":[[%q,"forged push"],[%q,"another"]]}]}`,
		fmt.Sprint(now.Add(-time.Minute).UnixNano()), fmt.Sprint(now.Add(-time.Minute+time.Second).UnixNano()))
	if a := e.pushJSON(t, agentNode3, "ona", push, false); a.code != 403 || !strings.Contains(string(a.body), `may not run institution \"ona\"`) {
		t.Errorf("node-3's Loki push for ona: %d %s, want 403 naming the tenant", a.code, a.body)
	}

	if after := e.onaFigures(t, b); after != before {
		t.Errorf("node-3's refused writes changed ona's figures:\nbefore %+v\nafter  %+v", before, after)
	}
	var stored int
	if err := e.store.ScanEvents(ctx, metering.EventFilter{Tenant: "ona", From: now.Add(-time.Hour), To: now.Add(time.Hour)},
		func(events.Event) error { stored++; return nil }); err != nil || stored != 0 {
		t.Errorf("stored %d of ona's events (%v), want none", stored, err)
	}
	for _, r := range e.stored(t, "ona") {
		if r.Node == "node-3" {
			t.Errorf("stored node-3's record of ona %+v", r)
		}
	}
	for kind, want := range map[string]float64{"event": 2, "usage": 1, "logs": 3} {
		if got := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": kind, "tenant": "ona", "outcome": "forbidden"}); got != want {
			t.Errorf("forbidden %s records of ona counted %v, want %v", kind, got, want)
		}
	}
	if got := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "event", "tenant": "caami", "outcome": "returned"}); got != 1 {
		t.Errorf("caami's event beside them counted %v as returned, want 1", got)
	}
	// The access log: one refusal per institution and request, however many records.
	entries := e.readAudit(t)
	var refusals []string
	for _, en := range entries {
		if en.Actor == "agent-3" {
			if en.Tenant != "ona" || en.Outcome != accesslog.Refused || !strings.Contains(en.Detail, "may not run institution") {
				t.Errorf("access-log entry %+v, want a refusal of ona naming the reason", en)
			}
			refusals = append(refusals, fmt.Sprintf("%s %d", en.Action, en.Status))
		}
	}
	if want := []string{"POST /api/v1/events 400", "POST /api/v1/usage 400", "POST /api/v1/logs 400", "POST /loki/api/v1/push 403"}; !slices.Equal(refusals, want) {
		t.Errorf("access log refusals %q, want %q", refusals, want)
	}

	// What node-3 runs still goes in: the agent sets the refused records
	// aside and resends the others.
	if a := e.postEvents(t, agentNode3, []events.Event{caamiStart}); a.code != 200 {
		t.Errorf("node-3's caami event on its own: %d %s", a.code, a.body)
	}
	// The same run from a node that may run ona (node-2 is shared: "*")
	// does change ona's figures: the test would see a forged run get through.
	if a := e.postEvents(t, agentNode2, forgedRun("node-2", at)); a.code != 200 {
		t.Fatalf("node-2's run of ona: %d %s", a.code, a.body)
	}
	if after := e.onaFigures(t, b); after.report == before.report || after.draft == before.draft {
		t.Errorf("a platform kill of ona's run from a node that may run ona changed neither its report nor its draft: the comparison proves nothing")
	}
}
