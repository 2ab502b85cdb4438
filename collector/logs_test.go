package collector_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/batch/batchtest"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
)

// logLine returns a valid line of tenant's container on node-1 at at.
func logLine(tenant, app, container, env string, at time.Time, text string) logs.Line {
	l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: tenant, Time: at.UTC(), Line: text,
		Labels: map[string]string{logs.LabelProject: "claims", logs.LabelApp: app, logs.LabelEnv: env, logs.LabelNode: "node-1",
			logs.LabelContainer: container, logs.LabelStream: "stdout"}}
	l.SetID()
	return l
}

// postLogs posts a batch of log lines as token.
func (e *env) postLogs(t *testing.T, token string, lines []logs.Line) answer {
	t.Helper()
	return do(t, "POST", e.api.URL+"/api/v1/logs", token, strings.NewReader(batchtest.Body(logs.EncodeBatch, lines...)))
}

// readLogs calls GET /api/v1/tenants/{tenant}/logs?query and wants a 200.
func (e *env) readLogs(t *testing.T, token, tenant, query string) collector.LogsResponse {
	t.Helper()
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/"+tenant+"/logs?"+query, token, nil)
	if a.code != http.StatusOK {
		t.Fatalf("GET logs?%s: %d %s", query, a.code, a.body)
	}
	var resp collector.LogsResponse
	a.decode(t, &resp)
	return resp
}

// storedLines returns every stored line of tenant, oldest first.
func (e *env) storedLines(t *testing.T, tenant string) []logs.Line {
	t.Helper()
	q := metering.LogQuery{Tenant: tenant, From: e.clock.Now().AddDate(-2, 0, 0), To: e.clock.Now().AddDate(1, 0, 0), Limit: metering.MaxLogLimit, Forward: true}
	page, err := metering.QueryLogs(context.Background(), e.store, q)
	if err != nil {
		t.Fatal(err)
	}
	return page.Lines
}

func lineTexts[T any](lines []T, text func(T) string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = text(l)
	}
	return out
}

func apiTexts(lines []collector.LogLine) []string {
	return lineTexts(lines, func(l collector.LogLine) string { return l.Line })
}

func TestAgentLogBatchesAreStoredOnceAndBoundToTheNode(t *testing.T) {
	e := newEnv(t, nil, nil)
	batch := []logs.Line{
		logLine("caami", "pricing", "c1", "prod", now.Add(-time.Minute), "started"),
		logLine("caami", "pricing", "c1", "prod", now.Add(-time.Second), "listening on :8080"),
		logLine("ona", "records", "c2", "prod", now.Add(-time.Second), "ready"),
	}
	var res collector.IngestResult
	a := e.postLogs(t, agentNode1, batch)
	a.decode(t, &res)
	if a.code != 200 || res != (collector.IngestResult{Records: 3, New: 3}) {
		t.Fatalf("first send: %d %s", a.code, a.body)
	}
	a = e.postLogs(t, agentNode1, batch)
	a.decode(t, &res)
	if a.code != 200 || res != (collector.IngestResult{Records: 3, Duplicates: 3}) {
		t.Fatalf("resend: %d %s, want 3 duplicates", a.code, a.body)
	}
	if got := lineTexts(e.storedLines(t, "caami"), func(l logs.Line) string { return l.Line }); !slices.Equal(got, []string{"started", "listening on :8080"}) {
		t.Errorf("caami's stored lines = %q", got)
	}
	for outcome, want := range map[string]float64{"new": 2, "duplicate": 2} {
		if n := e.metric(t, "paasmeter_collector_records_total", map[string]string{"kind": "logs", "tenant": "caami", "outcome": outcome}); n != want {
			t.Errorf("records_total{kind=logs,tenant=caami,outcome=%s} = %v, want %v", outcome, n, want)
		}
	}

	for _, c := range []struct {
		name, token string
	}{{"another node's agent", agentNode2}, {"an institution", caamiToken}, {"an operator", adminToken}} {
		if a := e.postLogs(t, c.token, batch[:1]); a.code != http.StatusForbidden {
			t.Errorf("%s posting node-1's lines: %d %s, want 403", c.name, a.code, a.body)
		}
	}
}

func TestBadLogBatchesNameEachLineAndFieldAndStoreNothing(t *testing.T) {
	e := newEnv(t, nil, nil)
	long := logLine("caami", "pricing", "c1", "prod", now.Add(-time.Second), strings.Repeat("x", 256<<10+1))
	forged := logLine("caami", "pricing", "c1", "prod", now.Add(-2*time.Second), "forged")
	forged.ID = strings.Repeat("0", 32)
	future := logLine("caami", "pricing", "c1", "prod", now.Add(time.Hour), "from the future")
	good := logLine("caami", "pricing", "c1", "prod", now.Add(-3*time.Second), "fine")
	a := e.postLogs(t, agentNode1, []logs.Line{good, long, forged, future})
	if a.code != http.StatusBadRequest {
		t.Fatalf("answered %d %s, want 400", a.code, a.body)
	}
	var body struct {
		Detail problemsDetail `json:"detail"`
	}
	a.decode(t, &body)
	var got []string
	for _, p := range body.Detail.Problems {
		got = append(got, fmt.Sprintf("%d.%s", p.Index, p.Field))
	}
	if !slices.Equal(got, []string{"1.line", "2.id", "3.time"}) {
		t.Errorf("problems %v (%s), want 1.line, 2.id, 3.time", got, a.body)
	}
	if n := len(e.storedLines(t, "caami")); n != 0 {
		t.Errorf("%d lines stored from a rejected batch", n)
	}
}

func TestLogReadsSelectByLabelsTextAndTimeNewestFirst(t *testing.T) {
	e := newEnv(t, nil, nil)
	seed := []logs.Line{
		logLine("caami", "pricing", "c1", "prod", now.Add(-2*time.Hour), "old: before the default hour"),
		logLine("caami", "pricing", "c1", "prod", now.Add(-50*time.Minute), "GET /price 200"),
		logLine("caami", "pricing", "c2", "prod", now.Add(-40*time.Minute), "GET /price 500 upstream error"),
		logLine("caami", "pricing", "c3", "dev", now.Add(-30*time.Minute), "debug: cache miss"),
		logLine("caami", "records", "c4", "prod", now.Add(-20*time.Minute), "error: disk full"),
		logLine("ona", "pricing", "c9", "prod", now.Add(-10*time.Minute), "ona's line"),
	}
	if a := e.postLogs(t, agentNode1, seed); a.code != 200 {
		t.Fatalf("seeding: %d %s", a.code, a.body)
	}
	cases := []struct {
		name, query string
		want        []string
	}{
		{"no parameters give the last hour, newest first", "",
			[]string{"error: disk full", "debug: cache miss", "GET /price 500 upstream error", "GET /price 200"}},
		{"app selects one app", "app=pricing", []string{"debug: cache miss", "GET /price 500 upstream error", "GET /price 200"}},
		{"container selects one container", "container=c2", []string{"GET /price 500 upstream error"}},
		{"env selects one environment", "env=dev", []string{"debug: cache miss"}},
		{"contains filters the text", "contains=error", []string{"error: disk full", "GET /price 500 upstream error"}},
		{"regex filters the text", "regex=" + url.QueryEscape(`\s5\d\d\s`), []string{"GET /price 500 upstream error"}},
		{"all of them apply together", "app=pricing&env=prod&contains=GET&regex=200", []string{"GET /price 200"}},
		{"from reaches further back", "from=" + now.Add(-3*time.Hour).Format(time.RFC3339) + "&app=pricing&container=c1",
			[]string{"GET /price 200", "old: before the default hour"}},
		{"to is exclusive", "to=" + now.Add(-40*time.Minute).Format(time.RFC3339) + "&from=" + now.Add(-3*time.Hour).Format(time.RFC3339),
			[]string{"GET /price 200", "old: before the default hour"}},
		{"forward gives the oldest first", "direction=forward&limit=2", []string{"GET /price 200", "GET /price 500 upstream error"}},
		{"a selector that matches nothing gives no lines", "app=nope", []string{}},
	}
	for _, c := range cases {
		resp := e.readLogs(t, caamiToken, "caami", c.query)
		if got := apiTexts(resp.Lines); !slices.Equal(got, c.want) {
			t.Errorf("%s (%s): got %q, want %q", c.name, c.query, got, c.want)
		}
	}

	resp := e.readLogs(t, caamiToken, "caami", "container=c2")
	want := seed[2]
	if len(resp.Lines) != 1 || !resp.Lines[0].Time.Equal(want.Time) || resp.Lines[0].ID != want.ID || logs.StreamKey(resp.Lines[0].Labels) != logs.StreamKey(want.Labels) {
		t.Errorf("line = %+v, want time %s, id %s, labels %v", resp.Lines, want.Time, want.ID, want.Labels)
	}
	if !resp.To.Equal(now) || !resp.From.Equal(now.Add(-time.Hour)) || resp.Direction != "backward" || resp.Tenant != "caami" {
		t.Errorf("answer covers %s..%s %s of %s, want the last hour backward of caami", resp.From, resp.To, resp.Direction, resp.Tenant)
	}
}

func TestLogReadsPageThroughTheCursorWithoutLossOrRepeat(t *testing.T) {
	e := newEnv(t, nil, nil)
	var seed []logs.Line
	for i := range 25 {
		seed = append(seed, logLine("caami", "pricing", "c1", "prod", now.Add(-time.Duration(30-i)*time.Minute), fmt.Sprintf("line %02d", i)))
	}
	if a := e.postLogs(t, agentNode1, seed); a.code != 200 {
		t.Fatalf("seeding: %d %s", a.code, a.body)
	}
	for _, dir := range []string{"backward", "forward"} {
		var got []string
		query := "limit=10&direction=" + dir
		pages := 0
		for {
			resp := e.readLogs(t, caamiToken, "caami", query)
			pages++
			got = append(got, apiTexts(resp.Lines)...)
			if resp.Next == "" {
				break
			}
			if pages > 5 {
				t.Fatalf("%s: the cursor never ends", dir)
			}
			query = "limit=10&direction=" + dir + "&cursor=" + url.QueryEscape(resp.Next)
		}
		want := lineTexts(seed, func(l logs.Line) string { return l.Line })
		if dir == "backward" {
			slices.Reverse(want)
		}
		if pages != 3 || !slices.Equal(got, want) {
			t.Errorf("%s: %d pages gave %q, want 3 pages of %q", dir, pages, got, want)
		}
	}
}

func TestLogReadsRejectBadParametersByName(t *testing.T) {
	e := newEnv(t, nil, nil)
	seed := []logs.Line{logLine("caami", "pricing", "c1", "prod", now.Add(-2*time.Minute), "a"), logLine("caami", "pricing", "c1", "prod", now.Add(-time.Minute), "b")}
	if a := e.postLogs(t, agentNode1, seed); a.code != 200 {
		t.Fatalf("seeding: %d %s", a.code, a.body)
	}
	caamiCursor := e.readLogs(t, caamiToken, "caami", "limit=1").Next
	if caamiCursor == "" {
		t.Fatal("a page of 1 of 2 lines has no next cursor")
	}
	cases := []struct{ tenant, query, field string }{
		{"caami", "from=yesterday", "from"},
		{"caami", "to=2026-13-01T00:00:00Z", "to"},
		{"caami", "from=" + now.Format(time.RFC3339) + "&to=" + now.Add(-time.Hour).Format(time.RFC3339), "from"},
		{"caami", "limit=0", "limit"},
		{"caami", "limit=5001", "limit"},
		{"caami", "limit=many", "limit"},
		{"caami", "direction=sideways", "direction"},
		{"caami", "regex=" + url.QueryEscape("(unclosed"), "regex"},
		{"caami", "cursor=garbage", "cursor"},
		{"caami", "cursor=" + url.QueryEscape(caamiCursor[:len(caamiCursor)-1]), "cursor"},
		{"ona", "cursor=" + url.QueryEscape(caamiCursor), "cursor"},
		{"caami", "application=pricing", "application"},
	}
	for _, c := range cases {
		token := map[string]string{"caami": caamiToken, "ona": onaToken}[c.tenant]
		a := do(t, "GET", e.api.URL+"/api/v1/tenants/"+c.tenant+"/logs?"+c.query, token, nil)
		var body struct {
			Detail []struct{ Field, Reason string } `json:"detail"`
		}
		a.decode(t, &body)
		if a.code != http.StatusBadRequest || len(body.Detail) == 0 || body.Detail[0].Field != c.field {
			t.Errorf("%s?%s: %d %s, want 400 naming %s", c.tenant, c.query, a.code, a.body, c.field)
		}
	}
}

// readAudit returns the entries of the test collector's audit log.
func (e *env) readAudit(t *testing.T) []accesslog.Entry {
	t.Helper()
	b, err := os.ReadFile(e.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []accesslog.Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var en accesslog.Entry
		if err := json.Unmarshal(sc.Bytes(), &en); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, en)
	}
	return out
}

// wantAudit checks the access log's entries got, in order, against want.
func wantAudit(t *testing.T, got, want []accesslog.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("audit entries %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Time.Equal(want[i].Time) || got[i].Actor != want[i].Actor || got[i].Action != want[i].Action || got[i].Tenant != want[i].Tenant ||
			got[i].Detail != want[i].Detail {
			t.Errorf("audit entry %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestOperatorLogReadsAreAuditedAndInstitutionReadsAreNot(t *testing.T) {
	e := newEnv(t, nil, nil)
	if a := e.postLogs(t, agentNode1, []logs.Line{logLine("caami", "pricing", "c1", "prod", now.Add(-time.Minute), "error: patient 42")}); a.code != 200 {
		t.Fatalf("seeding: %d %s", a.code, a.body)
	}
	e.readLogs(t, caamiToken, "caami", "contains=error")
	if a := do(t, "GET", e.api.URL+"/loki/api/v1/labels", caamiToken, nil, "X-Scope-OrgID", "caami"); a.code != 200 {
		t.Fatalf("institution's Loki read: %d %s", a.code, a.body)
	}
	if got := e.readAudit(t); len(got) != 0 {
		t.Fatalf("an institution's reads of its own logs were audited: %+v", got)
	}

	e.readLogs(t, adminToken, "caami", "contains=patient")
	logql := `{app="pricing"} |= "patient"`
	a := do(t, "GET", e.api.URL+"/loki/api/v1/query_range?query="+url.QueryEscape(logql), adminToken, nil, "X-Scope-OrgID", "caami")
	if a.code != 200 || !strings.Contains(string(a.body), "patient 42") {
		t.Fatalf("operator's Loki read: %d %s", a.code, a.body)
	}
	got := e.readAudit(t)
	want := []accesslog.Entry{
		{Time: now, Actor: "ops", Action: "GET /api/v1/tenants/{tenant}/logs", Tenant: "caami", Detail: "/api/v1/tenants/caami/logs?contains=patient"},
		{Time: now, Actor: "ops", Action: "GET /loki/api/v1/query_range", Tenant: "caami", Detail: "/loki/api/v1/query_range?query=" + logql},
	}
	wantAudit(t, got, want)
}

type failingAudit struct{}

func (failingAudit) Record(context.Context, accesslog.Entry) error { return errors.New("disk full") }

func TestOperatorReadsAreRefusedWhenTheAuditLogFails(t *testing.T) {
	for name, rec := range map[string]accesslog.Recorder{"a failing audit log": failingAudit{}, "no audit log": nil} {
		e := newEnv(t, nil, nil, func(o *setup) { o.AccessLog = rec })
		if a := e.postLogs(t, agentNode1, []logs.Line{logLine("caami", "pricing", "c1", "prod", now.Add(-time.Minute), "secret")}); a.code != 200 {
			t.Fatalf("seeding: %d %s", a.code, a.body)
		}
		for _, path := range []string{"/api/v1/tenants/caami/logs", "/api/v1/tenants/caami/usage"} {
			a := do(t, "GET", e.api.URL+path, adminToken, nil)
			if a.code != http.StatusServiceUnavailable || strings.Contains(string(a.body), "secret") {
				t.Errorf("%s: operator read of %s answered %d %s, want 503 without data", name, path, a.code, a.body)
			}
		}
		a := do(t, "GET", e.api.URL+"/loki/api/v1/query_range?query="+url.QueryEscape(`{app="pricing"}`), adminToken, nil, "X-Scope-OrgID", "caami")
		if a.code != http.StatusServiceUnavailable {
			t.Errorf("%s: operator Loki read answered %d %s, want 503", name, a.code, a.body)
		}
		if resp := e.readLogs(t, caamiToken, "caami", ""); len(resp.Lines) != 1 {
			t.Errorf("%s: the institution's own read lost its line: %+v", name, resp)
		}
	}
}
