package billing

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/state"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
)

// runGauges gathers the two invoice run gauges; a missing one is absent
// from the map, so that it cannot pass for a 0.
func runGauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	return got
}

func TestRunMetricsExportTheLastSuccessAndFailureFromTheAuditLog(t *testing.T) {
	ctx := context.Background()
	st, err := stateembedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := &Service{cfg: Config{Customers: []Customer{{Tenant: "caami"}, {Tenant: "ona"}, {Tenant: "vub"}}}}
	oct := calendar.Month{Year: 2026, Month: time.October, Loc: time.UTC}
	reg := prometheus.NewRegistry()
	m := NewRunMetrics(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.maxAge = 0 // every scrape reads the audit log
	reg.MustRegister(m)
	const (
		success = "paasmeter_invoice_run_last_success_timestamp_seconds"
		failure = "paasmeter_invoice_run_last_failure_timestamp_seconds"
		failed  = "paasmeter_invoice_run_failed_institutions"
	)
	appendRun := func(res []IssueResult, runErr error, at time.Time) {
		t.Helper()
		if _, err := st.AppendAudit(ctx, svc.RunAuditEntry(oct, nil, "cron", res, runErr, at)); err != nil {
			t.Fatal(err)
		}
	}
	want := func(step string, ok, bad time.Time, institutions float64) {
		t.Helper()
		got := runGauges(t, reg)
		if v, found := got[failed]; !found || v != institutions {
			t.Errorf("%s: %s = %v (exported: %v), want %v", step, failed, v, found, institutions)
		}
		for name, at := range map[string]time.Time{success: ok, failure: bad} {
			w := 0.0
			if !at.IsZero() {
				w = float64(at.Unix())
			}
			if v, found := got[name]; !found || v != w {
				t.Errorf("%s: %s = %v (exported: %v), want %v", step, name, v, found, w)
			}
		}
	}

	want("before any run", time.Time{}, time.Time{}, 0)
	// Other audit entries do not count, even under the prefix.
	if _, err := st.AppendAudit(ctx, state.AuditEntry{Time: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), Actor: "cli",
		Action: "invoice.issue", Subject: "PM-2026-000001"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendAudit(ctx, state.AuditEntry{Time: time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC), Actor: "cli",
		Action: "something.else", Subject: RunAuditSubjectPrefix + "2026-10", Detail: json.RawMessage(`{"error":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	want("with other audit entries only", time.Time{}, time.Time{}, 0)

	t1 := time.Date(2026, 11, 4, 6, 0, 0, 0, time.UTC)
	appendRun([]IssueResult{{Tenant: "caami", Invoice: &Invoice{}}, {Tenant: "ona", Err: errors.New("store down")}, {Tenant: "vub", Skipped: "nothing"}},
		errors.New("2026-10: 1 of 3 institutions failed: store down"), t1)
	want("after a run that failed one institution", time.Time{}, t1, 1)

	t2 := t1.Add(time.Hour)
	appendRun([]IssueResult{{Tenant: "caami", Skipped: "already issued"}, {Tenant: "ona", Invoice: &Invoice{}}, {Tenant: "vub", Skipped: "nothing to invoice"}}, nil, t2)
	want("after the run that succeeded again", t2, t1, 0)

	t3 := t2.Add(24 * time.Hour)
	appendRun(nil, errors.New("period 2026-10: too early to issue"), t3)
	want("after another failure", t2, t3, 3)
}

func TestRunAuditEntryCountsTheRunsOutcome(t *testing.T) {
	svc := &Service{cfg: Config{Customers: []Customer{{Tenant: "caami"}, {Tenant: "ona"}, {Tenant: "vub"}}}}
	oct := calendar.Month{Year: 2026, Month: time.October, Loc: time.UTC}
	at := time.Date(2026, 11, 4, 6, 0, 0, 123456789, time.UTC)
	for _, c := range []struct {
		name    string
		tenants []string
		res     []IssueResult
		err     error
		want    RunOutcome
	}{
		{"a run that issued one and skipped two", nil,
			[]IssueResult{{Tenant: "caami", Invoice: &Invoice{}}, {Tenant: "ona", Skipped: "already issued"}, {Tenant: "vub", Skipped: "nothing"}}, nil,
			RunOutcome{Period: "2026-10", Issued: 1, Skipped: 2}},
		{"a run that failed one institution and went on", nil,
			[]IssueResult{{Tenant: "caami", Invoice: &Invoice{}}, {Tenant: "ona", Err: errors.New("boom")}, {Tenant: "vub", Skipped: "nothing"}},
			errors.New("2026-10: 1 of 3 institutions failed: boom"),
			RunOutcome{Period: "2026-10", Issued: 1, Skipped: 1, Failed: 1, FailedTenants: []string{"ona"}, Error: "2026-10: 1 of 3 institutions failed: boom"}},
		{"a run interrupted after its first institution", nil,
			[]IssueResult{{Tenant: "caami", Invoice: &Invoice{}}}, errors.New("issue 2026-10: context canceled"),
			RunOutcome{Period: "2026-10", Issued: 1, Failed: 2, Error: "issue 2026-10: context canceled"}},
		{"a run of two institutions refused before the first", []string{"caami", "ona"},
			nil, errors.New("too early"),
			RunOutcome{Period: "2026-10", Failed: 2, Error: "too early"}},
		{"a run naming an unknown institution", []string{"nobody"},
			nil, errors.New("tenant \"nobody\": not found"),
			RunOutcome{Period: "2026-10", Failed: 1, Error: "tenant \"nobody\": not found"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := svc.RunAuditEntry(oct, c.tenants, "cron", c.res, c.err, at)
			if e.Action != RunAuditAction || e.Subject != "invoice-run/2026-10" || e.Actor != "cron" || !e.Time.Equal(at.Truncate(time.Microsecond)) {
				t.Errorf("entry %+v, want action %s, subject invoice-run/2026-10, actor cron, time %s", e, RunAuditAction, at.Truncate(time.Microsecond))
			}
			var got RunOutcome
			if err := json.Unmarshal(e.Detail, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("detail %+v, want %+v", got, c.want)
			}
		})
	}
}
