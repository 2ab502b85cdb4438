package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/usage"
)

// flatCard prices a production vCPU-hour at 10.00 EUR from 2020 on, so the
// amounts of TestInvoiceCommandsFollowTheClock are the same in any month.
const flatCard = `currency: EUR
versions:
  - version: v1
    effective: 2020-01-01
    rates:
      - {meter: cpu, class: prod, basis: used, unit: vCPU-hour, price: "10.00"}
`

// clockConfig writes a configuration with flatCard and no SLA file over a
// data directory holding one production vCPU-hour of caami and of ona on
// the first day of month, received the day after the month ended.
func clockConfig(t *testing.T, month time.Time) string {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	card := filepath.Join(dir, "ratecard.yaml")
	if err := os.WriteFile(card, []byte(flatCard), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := embedded.Open(ctx, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := month.Add(10 * time.Hour)
	received := month.AddDate(0, 1, 1)
	var recs []usage.Record
	for _, tenant := range []string{"caami", "ona"} {
		r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: tenant, Project: "claims", App: "api", Environment: usage.EnvProd,
			ContainerID: "c-" + tenant, RunID: "r-" + tenant, Node: "node-1", Meter: usage.MeterCPU, Quantity: 3_600_000_000_000,
			WindowStart: start.UTC(), WindowEnd: start.Add(time.Hour).UTC(), ReceivedAt: received.UTC()}
		r.SetID()
		recs = append(recs, r)
	}
	if _, err := st.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	return exampleConfig(t, dir, "  sla_file: deploy/examples/sla.yaml\n", "", "rate_card: deploy/examples/ratecard.yaml", "rate_card: "+card)
}

// TestInvoiceCommandsFollowTheClock runs the date-sensitive commands at each
// of clocktest's instants, with the clock hook set to it: the running month
// is provisional and cannot be issued, the month before it only once its
// grace period has passed, the invoices are numbered in the year of the
// platform's time zone, and a maintenance window counts only when declared
// the lead time ahead of the clock. Records sit two months back, always
// issuable. A command that read the wall clock would disagree with the hook
// at most of these dates.
func TestInvoiceCommandsFollowTheClock(t *testing.T) {
	for _, in := range clocktest.Instants(t) {
		t.Run(in.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			bxl := in.Time.Location()
			running := time.Date(in.Time.Year(), in.Time.Month(), 1, 0, 0, 0, 0, bxl)
			previous, data := running.AddDate(0, -1, 0), running.AddDate(0, -2, 0)
			graceOver := !in.Time.Before(running.Add(72 * time.Hour))
			year := in.Time.Year()
			month := func(m time.Time) string { return m.Format("2006-01") }
			cfg := clockConfig(t, data)
			clk := clock.NewManual(in.Time)
			cmd := func(args ...string) (string, error) {
				t.Helper()
				return runAt(t, ctx, clk, "", append([]string{"--config", cfg}, args...)...)
			}
			mustSay := func(step, out string, err error, want ...string) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v\n%s", step, err, out)
				}
				for _, w := range want {
					if !strings.Contains(out, w) {
						t.Errorf("%s: output lacks %q:\n%s", step, w, out)
					}
				}
			}

			out, err := cmd("invoice", "draft", "--period", month(running), "--tenant", "caami")
			mustSay("a draft of the running month", out, err, "DRAFT (provisional")
			if out, err := cmd("invoice", "issue", "--period", month(running)); err == nil || !strings.Contains(err.Error(), "too early to issue") {
				t.Errorf("issuing the running month %s: %v, want too early\n%s", month(running), err, out)
			}
			out, err = cmd("invoice", "issue", "--period", month(data))
			mustSay("issuing the month two back", out, err,
				fmt.Sprintf("caami\tPM-%d-000001\tissued\tpayable 12.10 EUR", year), fmt.Sprintf("ona\tPM-%d-000002\tissued\tpayable 10.00 EUR", year))
			out, err = cmd("invoice", "issue", "--period", month(previous))
			switch {
			case graceOver && err != nil:
				t.Errorf("issuing %s after its grace period: %v\n%s", month(previous), err, out)
			case !graceOver && (err == nil || !strings.Contains(err.Error(), "too early to issue")):
				t.Errorf("issuing %s within its grace period: %v, want too early\n%s", month(previous), err, out)
			}
			out, err = cmd("invoice", "verify")
			mustSay("verify", out, err, fmt.Sprintf("PM-%d-000001\tok", year), fmt.Sprintf("PM-%d-000002\tok", year))
			out, err = cmd("reconcile", "--period", month(data))
			mustSay("reconcile", out, err, "no difference")
			out, err = cmd("sla", "report", "--month", month(running), "--format", "json")
			mustSay("the running month's SLA report", out, err, fmt.Sprintf(`"period": %q`, month(running)))

			lead := 120 * time.Hour // maintenance.lead_time's default
			declare := func(start time.Time) (string, error) {
				return cmd("maintenance", "declare", "--tenant", "caami", "--start", start.Format(time.RFC3339),
					"--duration", "1h", "--reason", "patches")
			}
			if out, err := declare(in.Time.Add(lead - time.Minute).Truncate(time.Minute)); err == nil {
				t.Errorf("a window a minute short of the lead time was declared:\n%s", out)
			}
			out, err = declare(in.Time.Add(lead + time.Hour).Truncate(time.Minute))
			mustSay("a window declared the lead time ahead", out, err)
		})
	}
}
