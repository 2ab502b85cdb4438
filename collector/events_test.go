package collector_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/batch/batchtest"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/metering"
)

// postEvents posts a batch of events as token.
func (e *env) postEvents(t *testing.T, token string, evs []events.Event) answer {
	t.Helper()
	return do(t, "POST", e.api.URL+"/api/v1/events", token, strings.NewReader(batchtest.Body(events.EncodeBatch, evs...)))
}

func TestEventsAreStoredOnceAndKeepTheFirstArrival(t *testing.T) {
	e := newEnv(t, nil, nil)
	at := now.Add(-time.Minute)
	evs := []events.Event{eventstest.Event("caami", "abc", events.Started, at), eventstest.Event("caami", "abc", events.OOM, at.Add(time.Second)),
		eventstest.Event("caami", "abc", events.Died, at.Add(2*time.Second)), eventstest.Event("ona", "def", events.Probe, at)}
	first := e.clock.Now()
	var res collector.IngestResult
	a := e.postEvents(t, agentNode1, evs)
	a.decode(t, &res)
	if a.code != 200 || res != (collector.IngestResult{Records: 4, New: 4}) {
		t.Fatalf("first send: %d %s", a.code, a.body)
	}
	e.clock.Advance(time.Minute)
	a = e.postEvents(t, agentNode1, evs)
	a.decode(t, &res)
	if a.code != 200 || res != (collector.IngestResult{Records: 4, Duplicates: 4}) {
		t.Fatalf("resend: %d %s", a.code, a.body)
	}
	var stored []events.Event
	err := e.store.ScanEvents(context.Background(), metering.EventFilter{Tenant: "caami", From: at.Add(-time.Hour), To: now.Add(time.Hour)},
		func(ev events.Event) error { stored = append(stored, ev); return nil })
	if err != nil || len(stored) != 3 {
		t.Fatalf("stored %d caami events (%v), want 3", len(stored), err)
	}
	for _, ev := range stored {
		if !ev.ReceivedAt.Equal(first) {
			t.Errorf("event %s received_at %s, want the first arrival %s", ev.Type, ev.ReceivedAt, first)
		}
	}
	if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "event", "tenant": "caami", "outcome": "duplicate"}); n != 3 {
		t.Errorf("duplicate event counter = %v, want 3", n)
	}
}

func TestBadEventBatchesStoreNothing(t *testing.T) {
	at := now.Add(-time.Minute)
	tests := map[string]struct {
		token  string
		change func(ev *events.Event)
		code   int
		field  string
	}{
		"a died event without exit code is named":     {agentNode1, func(ev *events.Event) { ev.Type = events.Died; ev.SetID() }, 400, "exit_code"},
		"an unknown type is named":                    {agentNode1, func(ev *events.Event) { ev.Type = "exploded"; ev.SetID() }, 400, "type"},
		"an event an hour in the future is named":     {agentNode1, func(ev *events.Event) { ev.Time = now.Add(time.Hour); ev.SetID() }, 400, "time"},
		"a forged id is named":                        {agentNode1, func(ev *events.Event) { ev.ContainerID = "zzz" }, 400, "id"},
		"an event of an unconfigured tenant is named": {agentNode1, func(ev *events.Event) { ev.Tenant = "nobody"; ev.SetID() }, 400, "tenant"},
		"an event of another node is forbidden":       {agentNode2, func(*events.Event) {}, 403, ""},
		"an institution token may not write events":   {caamiToken, func(*events.Event) {}, 403, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil, nil)
			evs := []events.Event{eventstest.Event("caami", "abc", events.Started, at), eventstest.Event("caami", "abc", events.Stopped, at.Add(time.Second))}
			tc.change(&evs[1])
			a := e.postEvents(t, tc.token, evs)
			if a.code != tc.code {
				t.Fatalf("answered %d %s, want %d", a.code, a.body, tc.code)
			}
			if tc.field != "" {
				var ae apiError
				a.decode(t, &ae)
				var d problemsDetail
				if err := json.Unmarshal(ae.Detail, &d); err != nil || len(d.Problems) == 0 || d.Problems[0].Index != 1 || d.Problems[0].Field != tc.field {
					t.Errorf("detail %s, want records[1].%s first", ae.Detail, tc.field)
				}
			}
			n := 0
			e.store.ScanEvents(context.Background(), metering.EventFilter{Tenant: "caami", From: at.Add(-time.Hour), To: now.Add(2 * time.Hour)},
				func(events.Event) error { n++; return nil })
			if n != 0 {
				t.Errorf("a rejected batch stored %d events", n)
			}
		})
	}
}
