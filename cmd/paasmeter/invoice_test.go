package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/state"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
)

// midNovember is the clock of the invoice commands' tests: October 2026,
// where invoiceConfig puts its records, is past its grace period, and
// November is the running month. TestInvoiceCommandsFollowTheClock runs the
// commands at other dates.
func midNovember() *clock.Manual {
	return clock.NewManual(time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC))
}

// invoiceConfig writes a configuration over a data directory holding the
// billing issue's worked example moved back to October 2026, as if the
// collector had received it on 2 November.
func invoiceConfig(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	st, err := embedded.Open(ctx, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	recs := billingtest.Records()
	received := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	for i := range recs {
		recs[i].WindowStart = recs[i].WindowStart.AddDate(0, -1, 0)
		recs[i].WindowEnd = recs[i].WindowEnd.AddDate(0, -1, 0)
		recs[i].ReceivedAt = received
		recs[i].SetID()
	}
	for len(recs) > 0 {
		n := min(len(recs), 5000)
		if _, err := st.AppendUsage(ctx, recs[:n]); err != nil {
			t.Fatal(err)
		}
		recs = recs[n:]
	}
	st.Close()
	return exampleConfig(t, dir)
}

func TestInvoiceCommandsIssueVerifyCreditAndReconcile(t *testing.T) {
	ctx := context.Background()
	cfg := invoiceConfig(t)
	steps := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"a draft of the running month is provisional", []string{"invoice", "draft", "--period", "2026-11", "--tenant", "caami"},
			[]string{"DRAFT (provisional"}, ""},
		{"issuing the running month is refused", []string{"invoice", "issue", "--period", "2026-11"}, nil, "too early to issue"},
		{"October is issued in the configured order", []string{"invoice", "issue", "--period", "2026-10"},
			[]string{"caami\tPM-2026-000001\tissued", "ona\tPM-2026-000002\tissued\tpayable 7.60 EUR"}, ""},
		{"issuing again issues nothing", []string{"invoice", "issue", "--period", "2026-10"},
			[]string{"caami\t-\tskipped\talready issued as PM-2026-000001"}, ""},
		{"the CSV export carries the total", []string{"invoice", "show", "PM-2026-000002", "--format", "csv"},
			[]string{"PM-2026-000002,invoice", ",total,,,,,,,,7.60,,,,payable"}, ""},
		{"every issued invoice verifies", []string{"invoice", "verify"}, []string{"PM-2026-000001\tok", "PM-2026-000002\tok"}, ""},
		{"a partial credit note is numbered in its own series", []string{"invoice", "credit", "PM-2026-000002", "--amount", "1.00", "--reason", "goodwill"},
			[]string{"PMC-2026-000001\tcredit note of PM-2026-000002\tpayable -1.00 EUR"}, ""},
		{"the listing shows both kinds", []string{"invoice", "list", "--tenant", "ona"}, []string{"PM-2026-000002", "PMC-2026-000001"}, ""},
		{"October reconciles", []string{"reconcile", "--period", "2026-10"}, []string{"no difference"}, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, err := runAt(t, ctx, midNovember(), "", append([]string{"--config", cfg}, s.args...)...)
			if s.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), s.wantErr) {
					t.Fatalf("err = %v, want one saying %q; output:\n%s", err, s.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v; output:\n%s", err, out)
			}
			for _, w := range s.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestReconcileExitsNonZeroOnADifference(t *testing.T) {
	ctx := context.Background()
	cfg := invoiceConfig(t)
	db, err := sql.Open("sqlite3", filepath.Join(filepath.Dir(cfg), "data", embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM usage_records WHERE id = (SELECT id FROM usage_records WHERE tenant = 'caami' ORDER BY window_start LIMIT 1)`); err != nil {
		t.Fatal(err)
	}
	out, err := runAt(t, ctx, midNovember(), "", "--config", cfg, "reconcile", "--period", "2026-10")
	if err == nil || !strings.Contains(err.Error(), "1 institution-days of 60 differ") || !strings.Contains(out, "caami  2026-10-01       176     175    175       0      175  DIFFERENCE") {
		t.Fatalf("err = %v, want 1 of 60 institution-days differing on caami's 2026-10-01; output:\n%s", err, out)
	}
}

func TestInvoiceRenderWritesEveryFormatOfIssuedDocuments(t *testing.T) {
	ctx := context.Background()
	cfg := invoiceConfig(t)
	for _, args := range [][]string{{"invoice", "issue", "--period", "2026-10"},
		{"invoice", "credit", "PM-2026-000002", "--amount", "1.00", "--reason", "goodwill"}} {
		if out, err := runAt(t, ctx, midNovember(), "", append([]string{"--config", cfg}, args...)...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// rendered checks that render wrote exactly these files into dir, and printed their paths.
	rendered := func(t *testing.T, out, dir string, want []string) {
		t.Helper()
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("%s holds %v, want %v", dir, got, want)
		}
		for _, name := range want {
			path := filepath.Join(dir, name)
			b, err := os.ReadFile(path)
			if err != nil || len(b) == 0 {
				t.Errorf("%s: %d bytes, %v: want the document", path, len(b), err)
			}
			if strings.HasSuffix(name, ".csv") && !bytes.HasPrefix(b, []byte("document_number,document_kind,")) {
				t.Errorf("%s does not start with the CSV header:\n%.200s", path, b)
			}
			if !strings.Contains(out, path+"\n") {
				t.Errorf("render did not print %s:\n%s", path, out)
			}
		}
	}

	t.Run("every format of the named documents, into a new directory", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "invoices", "2026-10")
		out, err := runAt(t, ctx, midNovember(), "", "--config", cfg, "invoice", "render", "PM-2026-000001", "PMC-2026-000001", "--out", dir)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var want []string
		for _, f := range export.Formats() {
			want = append(want, "PM-2026-000001."+f, "PMC-2026-000001."+f)
		}
		rendered(t, out, dir, want)
	})
	t.Run("every issued document in one format", func(t *testing.T) {
		dir := t.TempDir()
		out, err := runAt(t, ctx, midNovember(), "", "--config", cfg, "invoice", "render", "--all", "--format", "csv", "--out", dir)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		rendered(t, out, dir, []string{"PM-2026-000001.csv", "PM-2026-000002.csv", "PMC-2026-000001.csv"})
	})
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"an unknown format is refused, naming the known ones", []string{"PM-2026-000001", "--format", "csv,docx"}, append([]string{`"docx"`}, export.Formats()...)},
		{"an unknown document is refused", []string{"PM-2026-000099"}, []string{"PM-2026-000099", "not found"}},
		{"documents or --all must be named", nil, []string{"--all"}},
		{"not both", []string{"PM-2026-000001", "--all"}, []string{"--all"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			out, err := runAt(t, ctx, midNovember(), "", append([]string{"--config", cfg, "invoice", "render", "--out", dir}, c.args...)...)
			if err == nil {
				t.Fatalf("render %v succeeded:\n%s", c.args, out)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("render %v: %v, want it to say %s", c.args, err, w)
				}
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused render created %s (%v)", dir, err)
			}
		})
	}
}

// TestCollectorServesTheIssuedInvoices runs the collector as the command
// builds it from a configuration with a rate card: it serves what `invoice
// issue` stored, each institution its own.
func TestCollectorServesTheIssuedInvoices(t *testing.T) {
	ctx := context.Background()
	cfgPath := invoiceConfig(t)
	if out, err := runAt(t, ctx, midNovember(), "", "--config", cfgPath, "invoice", "issue", "--period", "2026-10"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	srv := collectorHub(t, ctx, cfgPath).CollectorServer()
	api := httptest.NewServer(srv.Handler())
	defer api.Close()
	get := func(path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", api.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer pm_example_caami")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/api/v1/tenants/caami/invoices"); code != http.StatusOK || !strings.Contains(body, `"number":"PM-2026-000001"`) ||
		strings.Contains(body, "PM-2026-000002") {
		t.Errorf("caami's invoices: %d %s, want PM-2026-000001 only", code, body)
	}
	if code, body := get("/api/v1/tenants/caami/invoices/PM-2026-000001.csv"); code != http.StatusOK || !strings.HasPrefix(body, "document_number,") {
		t.Errorf("caami's invoice as CSV: %d %.200s", code, body)
	}
	if code, body := get("/api/v1/tenants/caami/invoices/PM-2026-000002.csv"); code != http.StatusNotFound {
		t.Errorf("ona's invoice under caami: %d %.200s, want 404", code, body)
	}
}

// TestCollectorWhoseInvoiceStoreCannotOpenFailsCleanly: a failure after the
// metering store opened is returned, and the stores opened so far are closed
// (that close once ran through a nil func and panicked).
func TestCollectorWhoseInvoiceStoreCannotOpenFailsCleanly(t *testing.T) {
	cfgPath := invoiceConfig(t)
	// A directory where the state store's database file goes.
	if err := os.Mkdir(filepath.Join(filepath.Dir(cfgPath), "data", stateembedded.FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }, clock: midNovember(), configPath: cfgPath}
	cfg, err := a.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hub.Open(context.Background(), cfg, a.hubOptions(a.logger(cfg)), hub.Collector); err == nil || !strings.Contains(err.Error(), "state") {
		t.Fatalf("opening the collector: %v, want the state store's error", err)
	}
}

func TestSLAReportCommandReportsEveryInstitution(t *testing.T) {
	cfg := invoiceConfig(t)
	out, err := runAt(t, context.Background(), midNovember(), "", "--config", cfg, "sla", "report", "--month", "2026-10", "--format", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{`"tenant": "caami"`, `"tenant": "ona"`, `"period": "2026-10"`, `"availability": "100"`} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %s:\n%s", want, out)
		}
	}
	if _, err := runAt(t, context.Background(), midNovember(), "", "--config", cfg, "sla", "report", "--month", "2026-10", "--tenant", "nobody"); err == nil ||
		!strings.Contains(err.Error(), "--tenant") {
		t.Errorf("an unknown institution: %v, want an error naming --tenant", err)
	}
}

// TestInvoiceIssueRecordsEveryRunInTheAuditForTheCollector: `invoice issue`
// leaves its outcome in the state store's audit log, failure (with the
// run's own error still returned) and success alike, and the collector
// exports the last of each for PaasmeterInvoiceRunFailed.
func TestInvoiceIssueRecordsEveryRunInTheAuditForTheCollector(t *testing.T) {
	ctx := context.Background()
	cfgPath := invoiceConfig(t)
	out, err := runAt(t, ctx, midNovember(), "", "--config", cfgPath, "invoice", "issue", "--period", "2099-12")
	if !errors.Is(err, billing.ErrTooEarly) {
		t.Fatalf("issuing 2099-12: %v, want billing.ErrTooEarly; output:\n%s", err, out)
	}
	if out, err := runAt(t, ctx, midNovember(), "", "--config", cfgPath, "invoice", "issue", "--period", "2026-10", "--actor", "cron"); err != nil {
		t.Fatalf("issuing 2026-10: %v; output:\n%s", err, out)
	}

	st, err := stateembedded.Open(ctx, filepath.Join(filepath.Dir(cfgPath), "data"))
	if err != nil {
		t.Fatal(err)
	}
	es, err := st.ListAudit(ctx, state.AuditFilter{SubjectPrefix: billing.RunAuditSubjectPrefix})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 {
		t.Fatalf("%d invoice run audit entries, want 2 (the failure, then the success): %+v", len(es), es)
	}
	var outcomes [2]billing.RunOutcome
	for i, e := range es {
		if e.Action != billing.RunAuditAction {
			t.Errorf("entry %d: action %q, want %q", i, e.Action, billing.RunAuditAction)
		}
		if err := json.Unmarshal(e.Detail, &outcomes[i]); err != nil {
			t.Fatalf("entry %d: detail %s: %v", i, e.Detail, err)
		}
	}
	if es[0].Subject != "invoice-run/2099-12" || es[0].Actor != "cli" || outcomes[0].Period != "2099-12" ||
		!strings.Contains(outcomes[0].Error, "too early to issue") || outcomes[0].Failed != 2 || outcomes[0].Issued != 0 {
		t.Errorf("the failed run's entry: %+v %+v, want invoice-run/2099-12 by cli, too early, both institutions failed", es[0], outcomes[0])
	}
	if es[1].Subject != "invoice-run/2026-10" || es[1].Actor != "cron" || !reflect.DeepEqual(outcomes[1], billing.RunOutcome{Period: "2026-10", Issued: 2}) {
		t.Errorf("the successful run's entry: %+v %+v, want invoice-run/2026-10 by cron, 2 issued, no error", es[1], outcomes[1])
	}

	srv := collectorHub(t, ctx, cfgPath).CollectorServer()
	admin := httptest.NewServer(srv.AdminHandler())
	defer admin.Close()
	resp, err := http.Get(admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	for name, at := range map[string]time.Time{
		"paasmeter_invoice_run_last_failure_timestamp_seconds": es[0].Time,
		"paasmeter_invoice_run_last_success_timestamp_seconds": es[1].Time,
	} {
		want := fmt.Sprintf("\n%s %s\n", name, strconv.FormatFloat(float64(at.UnixMicro())/1e6, 'g', -1, 64))
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", strings.TrimSpace(want))
		}
	}
}

// collectorHub opens the collector's hub as the command builds it from the
// configuration at cfgPath, with the clock in mid-November; it is closed
// when the test ends.
func collectorHub(t *testing.T, ctx context.Context, cfgPath string) *hub.Hub {
	t.Helper()
	a := &app{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }, clock: midNovember(), configPath: cfgPath}
	cfg, err := a.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	h, err := hub.Open(ctx, cfg, a.hubOptions(a.logger(cfg)), hub.Collector)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Error(err)
		}
	})
	return h
}
