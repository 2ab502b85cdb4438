package collector_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

func TestUsageQueryGroupsAndTotalsBeyondInt64(t *testing.T) {
	// Nodes of 10^17 bytes, so that a minute's record can hold 6e18 byte·s.
	cfg := collector.DefaultConfig()
	cfg.Bounds.MaxNodeMemoryBytes = 100_000_000_000_000_000
	e := newEnv(t, &cfg, nil)
	at := now.Add(-10 * time.Minute)
	var recs []usage.Record
	add := func(app string, env usage.Environment, meter usage.Meter, start time.Time, q int64) {
		r := usagetest.Record("caami", fmt.Sprintf("c%d", len(recs)), meter, start, q)
		r.App, r.Environment = app, env
		r.SetID()
		recs = append(recs, r)
	}
	// Two windows of 6e18 byte·s each: their sum, 1.2e19, does not fit an int64.
	add("pricing", usage.EnvProd, usage.MeterMemory, at, 6_000_000_000_000_000_000)
	add("pricing", usage.EnvProd, usage.MeterMemory, at.Add(-24*time.Hour), 6_000_000_000_000_000_000)
	add("pricing", usage.EnvTest, usage.MeterCPU, at, 5)
	add("records", usage.EnvProd, usage.MeterCPU, at, 7)
	if a := e.post(t, agentNode1, recs); a.code != 200 {
		t.Fatalf("ingest: %d %s", a.code, a.body)
	}
	onaRec := usagetest.Record("ona", "x", usage.MeterCPU, at, 1000)
	if a := e.post(t, agentNode1, []usage.Record{onaRec}); a.code != 200 {
		t.Fatalf("ingest: %d %s", a.code, a.body)
	}

	get := func(query string) collector.UsageResponse {
		t.Helper()
		a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/usage?"+query, caamiToken, nil)
		if a.code != 200 {
			t.Fatalf("GET usage?%s: %d %s", query, a.code, a.body)
		}
		var resp collector.UsageResponse
		a.decode(t, &resp)
		return resp
	}

	resp := get("month=2026-11")
	totals := map[usage.Meter]string{}
	for _, mt := range resp.Totals {
		totals[mt.Meter] = mt.Quantity.String()
	}
	if totals[usage.MeterMemory] != "12000000000000000000" || totals[usage.MeterCPU] != "12" || len(totals) != 2 {
		t.Errorf("totals = %v, want memory 12000000000000000000 and cpu 12 (ona's usage excluded)", totals)
	}
	if resp.TimeZone != "Europe/Brussels" || !resp.From.Equal(time.Date(2026, 10, 31, 23, 0, 0, 0, time.UTC)) {
		t.Errorf("month=2026-11 covers %s in %s, want from 2026-11-01 00:00 Brussels", resp.From, resp.TimeZone)
	}

	resp = get("month=2026-11&group_by=app,environment,meter,day")
	var rows []string
	for _, r := range resp.Rows {
		rows = append(rows, fmt.Sprintf("%s/%s/%s/%s=%s", r.App, r.Environment, r.Day, r.Meter, r.Quantity))
	}
	want := "pricing/prod/2026-11-14/memory_byte_seconds=6000000000000000000 pricing/prod/2026-11-15/memory_byte_seconds=6000000000000000000 " +
		"pricing/test/2026-11-15/cpu_ns=5 records/prod/2026-11-15/cpu_ns=7"
	if got := strings.Join(rows, " "); got != want {
		t.Errorf("rows:\n%s\nwant\n%s", got, want)
	}

	resp = get("from=2026-11-15&to=2026-11-16&app=records&meter=cpu_ns")
	if len(resp.Rows) != 1 || resp.Rows[0].Quantity.String() != "7" {
		t.Errorf("filtered rows = %+v, want records' 7 ns", resp.Rows)
	}

	// The JSON carries totals as strings, so no client rounds them to a float.
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/usage?month=2026-11", adminToken, nil)
	if !strings.Contains(string(a.body), `"quantity":"12000000000000000000"`) {
		t.Errorf("JSON answer does not carry the exact total as a string: %s", a.body)
	}
}

func TestUsageQueryRejectsBadParametersByName(t *testing.T) {
	e := newEnv(t, nil, nil)
	tests := map[string]struct{ query, field string }{
		"a malformed from is named":       {"from=yesterday&to=2026-11-02", "from"},
		"a to before from is named":       {"from=2026-11-02&to=2026-11-01", "to"},
		"a range over 400 days is named":  {"from=2025-01-01&to=2026-11-01", "to"},
		"month with from is named":        {"month=2026-11&from=2026-11-01", "month"},
		"a malformed month is named":      {"month=11-2026", "month"},
		"an unknown group is named":       {"group_by=colour", "group_by"},
		"an unknown environment is named": {"environment=staging", "environment"},
		"an unknown meter is named":       {"meter=gpu", "meter"},
		"an unknown parameter is named":   {"tenant=ona", "tenant"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/usage?"+tc.query, caamiToken, nil)
			var ae struct {
				Error  string `json:"error"`
				Detail []struct{ Field, Reason string }
			}
			a.decode(t, &ae)
			if a.code != 400 || len(ae.Detail) == 0 || ae.Detail[0].Field != tc.field || ae.Detail[0].Reason == "" {
				t.Errorf("answered %d %s, want 400 naming %s", a.code, a.body, tc.field)
			}
		})
	}
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/nobody/usage", adminToken, nil)
	if a.code != 404 {
		t.Errorf("admin reading an unknown tenant: %d, want 404", a.code)
	}
	var ae apiError
	if err := json.Unmarshal(a.body, &ae); err != nil || ae.Error == "" {
		t.Errorf("404 without a JSON error: %s", a.body)
	}
}

func TestUsageQueryOverAMonthOfAThousandContainersIsExact(t *testing.T) {
	e := newEnv(t, nil, nil)
	// October 2026 in Brussels: 745 hours (the clocks go back on the 25th), from
	// 2026-09-30T22:00Z. Loaded straight into the store: this is about the query.
	oct := time.Date(2026, 9, 30, 22, 0, 0, 0, time.UTC)
	const containers, hours, gib4 = 1000, 745, int64(4 << 30)
	err := usagetest.HourlyMemory("caami", containers, hours, oct, gib4, 10000, now, func(b []usage.Record) error {
		_, err := e.store.AppendUsage(context.Background(), b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/usage?month=2026-10&meter=memory_byte_seconds", caamiToken, nil)
	var resp collector.UsageResponse
	a.decode(t, &resp)
	want := new(big.Int).Mul(big.NewInt(gib4*3600), big.NewInt(containers*hours)) // 1.152e19 > 2^63
	if len(resp.Totals) != 1 || resp.Totals[0].Quantity.Big().Cmp(want) != 0 || resp.Totals[0].Records != containers*hours {
		t.Fatalf("totals = %+v, want %s byte·s over %d records", resp.Totals, want, containers*hours)
	}
	if !strings.Contains(string(a.body), `"quantity":"`+want.String()+`"`) {
		t.Errorf("the JSON answer does not carry %s exactly", want)
	}
}
