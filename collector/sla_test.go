package collector_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/events/eventstest"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/slahttp"
	"github.com/paasmeter/paasmeter/state"
)

// engineReports serves the SLA calculator's reports, with no maintenance window.
type engineReports struct{ *sla.Calculator }

func (e engineReports) Report(ctx context.Context, tenant string, p calendar.Month) (*sla.Report, []state.AuditEntry, error) {
	r, err := e.Calculator.Report(ctx, tenant, p)
	return r, nil, err
}

// withSLA gives the collector SLA reports from the engine over its store.
func withSLA(t *testing.T) func(*setup) {
	return func(o *setup) {
		eng, err := sla.NewCalculator(o.Store, nil, sla.DefaultConfig(), o.Clock)
		if err != nil {
			t.Fatal(err)
		}
		o.reports = engineReports{eng}
	}
}

func TestInstitutionsReadTheirSLAReport(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil, nil, withSLA(t))
	// caami's prod app started at 10:00 and passed its probes every 10 s
	// until 10:30, then nothing came for ten minutes (its node was down),
	// then it passed again until noon, when the report is asked for.
	start := time.Date(2026, 11, 15, 10, 0, 0, 0, time.UTC)
	evs := []events.Event{eventstest.Event("caami", "c1", events.Started, start)}
	for at := start.Add(10 * time.Second); !at.After(now); at = at.Add(10 * time.Second) {
		if at.After(start.Add(30*time.Minute)) && at.Before(start.Add(40*time.Minute)) {
			continue
		}
		evs = append(evs, eventstest.Event("caami", "c1", events.Probe, at))
	}
	for i := range evs {
		evs[i].ReceivedAt = now
	}
	if _, err := e.store.AppendEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/sla?month=2026-11", caamiToken, nil)
	if a.code != http.StatusOK {
		t.Fatalf("GET caami's SLA: %d %s", a.code, a.body)
	}
	var rep slahttp.SLAResponse
	if err := json.Unmarshal(a.body, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Apps) != 1 || rep.Apps[0].App != "pricing" || rep.Apps[0].DownPlatform != 10 || rep.Apps[0].DownTenant != 0 {
		t.Fatalf("report %s: want claims/pricing with the 10 platform down minutes 10:30–10:39 (no data from 10:30:30)", a.body)
	}
	if rep.Period != "2026-11" || rep.WindowChanges == nil || !strings.Contains(string(a.body), `"credit_percent"`) {
		t.Errorf("report %s: want the period, the credit and a (empty) list of window changes", a.body)
	}
	if a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/sla?month=2026-13", caamiToken, nil); a.code != http.StatusBadRequest || !strings.Contains(string(a.body), "month") {
		t.Errorf("a bad month: %d %s, want 400 naming month", a.code, a.body)
	}
	if a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/sla", onaToken, nil); a.code != http.StatusForbidden {
		t.Errorf("ona asking for caami's SLA: %d %s, want 403", a.code, a.body)
	}
	if a := do(t, "GET", e.api.URL+"/api/v1/tenants/ona/sla?month=2026-11", onaToken, nil); a.code != http.StatusOK || strings.Contains(string(a.body), "pricing") {
		t.Errorf("ona's own report: %d %s, want 200 without caami's app", a.code, a.body)
	}
}

func TestSLARouteWithoutAnEngineSaysSo(t *testing.T) {
	e := newEnv(t, nil, nil)
	if a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/sla", caamiToken, nil); a.code != http.StatusNotImplemented {
		t.Errorf("GET the SLA without an engine: %d %s, want 501", a.code, a.body)
	}
}
