package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// invoiceConfig writes a configuration over a data directory holding the
// billing issue's worked example moved back to October 2026 (whose grace
// period has passed by the wall clock), as if the collector had received it.
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
	example, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", "paasmeter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("data_dir: data", "data_dir: "+filepath.Join(dir, "data"),
		"rate_card: deploy/examples/ratecard.yaml", "rate_card: "+filepath.Join("..", "..", "deploy", "examples", "ratecard.yaml"),
		"sla_file: deploy/examples/sla.yaml", "sla_file: "+filepath.Join("..", "..", "deploy", "examples", "sla.yaml")).Replace(string(example))
	path := filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
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
			out, err := run(t, ctx, "", append([]string{"--config", cfg}, s.args...)...)
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
	out, err := run(t, ctx, "", "--config", cfg, "reconcile", "--period", "2026-10")
	if err == nil || !strings.Contains(err.Error(), "1 institution-days of 60 differ") || !strings.Contains(out, "caami  2026-10-01       176     175    175  DIFFERENCE") {
		t.Fatalf("err = %v, want 1 of 60 institution-days differing on caami's 2026-10-01; output:\n%s", err, out)
	}
}
