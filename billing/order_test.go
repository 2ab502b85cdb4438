package billing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/usage"
)

// startingIn returns the example's institutions with their first month at
// start ("" for their first usage).
func startingIn(start string) []billing.Customer {
	cs := billingtest.Customers()
	for i := range cs {
		cs[i].Start = start
	}
	return cs
}

// billedPerMonth sums, over tenant's issued invoices, the records each
// billed of each month: what must equal the records stored, once each.
func billedPerMonth(t *testing.T, svc *billing.Service, tenant string) map[string]int64 {
	t.Helper()
	invs, err := svc.List(context.Background(), state.DocumentFilter{Tenant: tenant, Kind: state.KindInvoice})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, inv := range invs {
		for _, m := range inv.Inputs.Months {
			out[m.Period] += m.Records
		}
	}
	return out
}

func resultOf(t *testing.T, res []billing.IssueResult, tenant string) billing.IssueResult {
	t.Helper()
	for _, r := range res {
		if r.Tenant == tenant {
			return r
		}
	}
	t.Fatalf("no result for %s in %+v", tenant, res)
	return billing.IssueResult{}
}

// TestMonthsCloseInOrder replays the two sequences of invoice runs that
// billed a record twice before months closed in order (DESIGN.md §5).
func TestMonthsCloseInOrder(t *testing.T) {
	ctx := context.Background()
	september := calendar.Month{Year: 2026, Month: time.September, Loc: brussels}
	october := september.Next()
	septemberIssuable := time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC)
	octoberIssuable := time.Date(2026, 11, 5, 9, 0, 0, 0, time.UTC)
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			t.Run("a late record of a month closed with nothing to invoice is billed once, on the next invoice", func(t *testing.T) {
				t.Parallel()
				p := newPlatform(t, septemberIssuable)
				st := open(t)
				svc := newServiceWith(t, p, st, billingtest.SLA{}, startingIn("2026-09"))
				for _, r := range mustIssue(t, svc, september) {
					if r.Invoice != nil || r.Skipped != "nothing to invoice (the month is closed)" {
						t.Fatalf("September without usage: %s got %v, skipped %q; want it closed with nothing to invoice", r.Tenant, r.Invoice, r.Skipped)
					}
				}
				// A late September record and October's own, then October's run.
				setClock(t, p, octoberIssuable)
				p.ship(t, []usage.Record{
					extraRecord("caami", usage.MeterCPU, time.Date(2026, 9, 20, 10, 0, 0, 0, brussels), 2*3_600_000_000_000),
					extraRecord("caami", usage.MeterCPU, time.Date(2026, 10, 7, 10, 0, 0, 0, brussels), 3_600_000_000_000),
				})
				oct := resultOf(t, mustIssue(t, svc, october), "caami").Invoice
				if oct == nil {
					t.Fatal("caami's October was not issued")
				}
				want := []string{"cpu prod band 1: 1.000000 × 0.0400 = 0.04", "cpu prod band 1: 2.000000 × 0.0400 = 0.08 adjusting 2026-09"}
				if got := lineStrings(oct); strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Errorf("caami's October lines:\n%s\nwant\n%s", join(got), join(want))
				}
				// September's run again, a retried cron job, from this handle
				// and from a second one at once.
				var wg sync.WaitGroup
				for _, svc := range []*billing.Service{svc, newServiceWith(t, p, reopen(t, st), billingtest.SLA{}, startingIn("2026-09"))} {
					wg.Go(func() {
						res, err := svc.Issue(ctx, september, nil, "retry", nil)
						if err != nil {
							t.Errorf("September again: %v", err)
						}
						for _, r := range res {
							if r.Invoice != nil || !strings.HasPrefix(r.Skipped, "closed with nothing to invoice on 2026-10-05") {
								t.Errorf("September again: %s got %v, skipped %q; want it skipped as closed", r.Tenant, r.Invoice, r.Skipped)
							}
						}
					})
				}
				wg.Wait()
				if got := billedPerMonth(t, svc, "caami"); got["2026-09"] != 1 || got["2026-10"] != 1 {
					t.Errorf("records billed per month: %v, want September's and October's once each", got)
				}
				if err := svc.Verify(ctx, oct.Number); err != nil {
					t.Errorf("verify %s: %v", oct.Number, err)
				}
			})

			t.Run("October before September is refused naming September; September's records are billed once", func(t *testing.T) {
				t.Parallel()
				p := newPlatform(t, octoberIssuable)
				st := open(t)
				svc := newServiceWith(t, p, st, billingtest.SLA{}, startingIn(""))
				p.ship(t, []usage.Record{
					extraRecord("caami", usage.MeterCPU, time.Date(2026, 9, 20, 10, 0, 0, 0, brussels), 2*3_600_000_000_000),
					extraRecord("caami", usage.MeterCPU, time.Date(2026, 10, 7, 10, 0, 0, 0, brussels), 3_600_000_000_000),
					extraRecord("ona", usage.MeterCPU, time.Date(2026, 10, 8, 10, 0, 0, 0, brussels), 3_600_000_000_000),
				})
				// A draft of October is fine while September is open.
				if drafts, err := svc.Draft(ctx, october, nil, nil); err != nil || drafts[0].Closed != "" {
					t.Fatalf("draft October before September: %v (closed %q)", err, drafts[0].Closed)
				}
				res, err := svc.Issue(ctx, october, nil, "test", nil)
				if !errors.Is(err, billing.ErrInstitutionsFailed) || !strings.Contains(err.Error(), "issue 2026-09 first") {
					t.Errorf("October before September: %v; want a failed institution, naming 2026-09 as the month to issue first", err)
				}
				if r := resultOf(t, res, "caami"); r.Invoice != nil || !errors.Is(r.Err, billing.ErrMonthOrder) {
					t.Fatalf("caami's October before its September: invoice %v, error %v; want refused for the order", r.Invoice, r.Err)
				}
				// ona's first usage is in October: its October is its first month.
				if r := resultOf(t, res, "ona"); r.Invoice == nil {
					t.Errorf("ona's October: skipped %q, error %v; want it issued beside caami's refusal", r.Skipped, r.Err)
				}
				sep := resultOf(t, mustIssue(t, svc, september, "caami"), "caami").Invoice
				oct := resultOf(t, mustIssue(t, svc, october, "caami"), "caami").Invoice
				if sep == nil || oct == nil {
					t.Fatalf("September %v, October %v: want both issued in order", sep, oct)
				}
				if len(oct.Inputs.Months) != 1 {
					t.Errorf("caami's October bills months %+v, want October's own only", oct.Inputs.Months)
				}
				if r := resultOf(t, mustIssue(t, svc, september, "caami"), "caami"); r.Skipped != "already issued as "+sep.Number {
					t.Errorf("September again: skipped %q, want already issued as %s", r.Skipped, sep.Number)
				}
				if got := billedPerMonth(t, svc, "caami"); got["2026-09"] != 1 || got["2026-10"] != 1 {
					t.Errorf("records billed per month: %v, want September's and October's once each", got)
				}
			})

			t.Run("a configured first month must be issued first", func(t *testing.T) {
				t.Parallel()
				p := newPlatform(t, octoberIssuable)
				svc := newServiceWith(t, p, open(t), billingtest.SLA{}, startingIn("2026-08"))
				res, _ := svc.Issue(ctx, october, []string{"caami"}, "test", nil)
				if r := resultOf(t, res, "caami"); !errors.Is(r.Err, billing.ErrMonthOrder) || !strings.Contains(r.Err.Error(), "issue 2026-08 first") {
					t.Errorf("October of an institution starting in August: %v, want refused naming 2026-08", r.Err)
				}
			})
		})
	}
}

// TestOneBadRecordBlocksNoOne forces a record the rate card cannot price
// (its window starts before the first version) into one institution's
// store, behind the collector that refuses it: that institution fails, the
// other is issued, and the run's error names the failure.
func TestOneBadRecordBlocksNoOne(t *testing.T) {
	p := fork(t, workedExample(t))
	svc := newService(t, p, openEmbeddedState(t, t.TempDir()), billingtest.SLA{})
	appendReceived(t, p, p.clock.Now().Add(-time.Minute),
		extraRecord("ona", usage.MeterCPU, time.Date(2025, 12, 1, 10, 0, 0, 0, brussels), 3_600_000_000_000))
	res, err := svc.Issue(context.Background(), billingtest.Period(), nil, "test", nil)
	if !errors.Is(err, billing.ErrInstitutionsFailed) || !errors.Is(err, billing.ErrNoRateCardVersion) || !strings.Contains(err.Error(), "issue ona 2026-11") {
		t.Errorf("the run's error: %v; want one naming ona's failure for no rate-card version", err)
	}
	if r := resultOf(t, res, "ona"); r.Invoice != nil || !errors.Is(r.Err, billing.ErrNoRateCardVersion) {
		t.Errorf("ona: invoice %v, error %v; want it failed for no rate-card version", r.Invoice, r.Err)
	}
	if r := resultOf(t, res, "caami"); r.Invoice == nil || r.Err != nil {
		t.Errorf("caami: skipped %q, error %v; want it issued beside ona's failure", r.Skipped, r.Err)
	}
}

// TestDraftProgressNamesTheInstitutionsInOrder: institutions are drafted side
// by side and finish in any order; the progress line must still say how many
// are done and name the one it counts.
func TestDraftProgressNamesTheInstitutionsInOrder(t *testing.T) {
	p := workedExample(t)
	customers := append(billingtest.Customers(), extraCustomers(6)...)
	svc := newServiceWith(t, p, openEmbeddedState(t, t.TempDir()), billingtest.SLA{}, customers)
	var got []string
	if _, err := svc.Draft(context.Background(), billingtest.Period(), nil, func(done, total int, tenant string) {
		got = append(got, fmt.Sprintf("%d/%d %s", done, total, tenant))
	}); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i, c := range customers {
		want = append(want, fmt.Sprintf("%d/%d %s", i+1, len(customers), c.Tenant))
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("progress:\n%s\nwant\n%s", strings.Join(got, ", "), strings.Join(want, ", "))
	}
}

// TestADraftOfAnIssuedMonthSaysSo: a draft of a closed month recomputes it
// from every record received since; it names the issued invoice and shows
// what the records received since its close add to the next invoice.
func TestADraftOfAnIssuedMonthSaysSo(t *testing.T) {
	p := fork(t, workedExample(t))
	svc := newService(t, p, openEmbeddedState(t, t.TempDir()), billingtest.SLA{})
	nov := invoicesOf(t, mustIssue(t, svc, billingtest.Period(), "caami"))[0]
	setClock(t, p, time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC))
	appendReceived(t, p, p.clock.Now(), extraRecord("caami", usage.MeterCPU, time.Date(2026, 11, 10, 10, 0, 0, 0, brussels), 25*3_600_000_000_000))
	drafts := mustDraft(t, svc, billingtest.Period(), "caami", "ona")
	caami, ona := drafts[0], drafts[1]
	if caami.Closed != "already issued as "+nov.Number {
		t.Errorf("caami's draft of an issued month: closed %q, want it to name %s", caami.Closed, nov.Number)
	}
	want := []string{"cpu prod band 1: 25.000000 × 0.0400 = 1.00 adjusting 2026-11"}
	if got := lineStrings(&billing.Invoice{Lines: caami.Pending}); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("caami's pending adjustments:\n%s\nwant\n%s", join(got), join(want))
	}
	if ona.Closed != "" || len(ona.Pending) != 0 {
		t.Errorf("ona's draft of its open month: closed %q, pending %v; want neither", ona.Closed, ona.Pending)
	}
}

// draftOf drafts the worked example's invoice of tenant for November.
func draftOf(t *testing.T, tenant string) *billing.Invoice {
	t.Helper()
	svc := newService(t, workedExample(t), openEmbeddedState(t, t.TempDir()), billingtest.SLA{})
	return mustDraft(t, svc, billingtest.Period(), tenant)[0]
}

// TestLinesExplainTheirPrice: the audit found two lines of one meter and
// band at two prices with nothing saying why, and "Tier 1" on flat prices.
func TestLinesExplainTheirPrice(t *testing.T) {
	draft := draftOf(t, "caami")
	var got []string
	for _, l := range draft.Lines {
		if l.Class == "prod" && (l.Meter == "cpu" || l.Meter == "net_tx_bytes" || l.Meter == "memory") {
			got = append(got, fmt.Sprintf("%s %s: tier %q, rate %q", l.Meter, l.UnitPrice, l.TierText(), l.VersionText()))
		}
	}
	want := []string{
		`cpu 0.0400: tier "", rate "v1 from 2026-01-01"`,
		`cpu 0.0360: tier "", rate "v2 from 2026-11-16"`,
		// Both versions priced memory at 0.0050: one line, no version to tell.
		`memory 0.0050: tier "", rate ""`,
		`net_tx_bytes 0.00: tier "0–100 GB", rate ""`,
		`net_tx_bytes 0.0100: tier "100+ GB", rate "v2 from 2026-11-16"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("caami's production lines:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTheAnnexBreaksOutWhatWasNotMeasured: a run shorter than the minimum
// run duration and a reserved quantity above the used one under the max
// basis are billed, but nothing measured them: the annex says how much.
func TestTheAnnexBreaksOutWhatWasNotMeasured(t *testing.T) {
	draft := draftOf(t, "ona")
	var broken []string
	for _, a := range draft.Annex {
		if a.Measured == nil {
			if a.MinRunTopUp != nil || a.ReservedUplift != nil {
				t.Errorf("%s %s: a top-up or an uplift without the measured quantity", a.Project, a.Meter)
			}
			continue
		}
		sum := a.Measured.Decimal
		for _, q := range []*billing.Quantity{a.MinRunTopUp, a.ReservedUplift} {
			if q != nil {
				sum = sum.Add(q.Decimal)
			}
		}
		if !sum.Equal(a.Quantity.Decimal) {
			t.Errorf("%s %s: measured and the rest come to %s, billed %s", a.Project, a.Meter, sum, a.Quantity.StringFixed(6))
		}
		broken = append(broken, fmt.Sprintf("%s %s %s: measured %s, top-up %v", a.Project, a.Environment, a.Meter, a.Measured.StringFixed(6), a.MinRunTopUp))
	}
	if len(broken) == 0 {
		t.Fatal("no annex row broken out: the worked example's short run is billed at its minimum")
	}
	t.Log(strings.Join(broken, "\n"))
}

// TestTheAnnexBreaksOutTheReservedUplift: under the max basis a window is
// billed at the larger of its used and reserved quantities; what the
// reserved one adds is the reserved uplift.
func TestTheAnnexBreaksOutTheReservedUplift(t *testing.T) {
	card, err := ratecard.Parse([]byte(`currency: EUR
versions:
  - version: v1
    effective: 2026-01-01
    rates:
      - {meter: memory, class: prod, basis: max, unit: GiB-hour, price: 0.0050}
`), "max.yaml", brussels)
	if err != nil {
		t.Fatal(err)
	}
	p := newPlatform(t, issueTime)
	const gibHour = 1 << 30 * 3600
	ws := time.Date(2026, 11, 10, 10, 0, 0, 0, brussels)
	var recs []usage.Record
	for _, m := range []struct {
		meter usage.Meter
		q     int64
	}{{usage.MeterMemory, gibHour}, {usage.MeterMemoryLimit, 3 * gibHour}} {
		r := extraRecord("caami", m.meter, ws, m.q)
		recs = append(recs, r)
	}
	appendReceived(t, p, issueTime.Add(-time.Hour), recs...)
	cfg := billing.DefaultConfig()
	cfg.Location, cfg.Seller, cfg.Customers = brussels, billingtest.Seller(), billingtest.Customers()[:1]
	svc, err := billing.New(billing.Options{Config: cfg, Card: card, Usage: p.store, SLA: billingtest.SLA{}, State: openEmbeddedState(t, t.TempDir()),
		Clock: p.clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	drafts := mustDraft(t, svc, billingtest.Period())
	a := drafts[0].Annex
	if len(a) != 1 || a[0].Quantity.StringFixed(6) != "3.000000" || a[0].Measured == nil || a[0].Measured.StringFixed(6) != "1.000000" ||
		a[0].ReservedUplift == nil || a[0].ReservedUplift.StringFixed(6) != "2.000000" || a[0].MinRunTopUp != nil {
		t.Errorf("annex %+v; want 3 GiB-hours billed: 1 measured + 2 reserved uplift", a)
	}
}

// TestARecordReceivedWithinTheCutoffLagIsBilledOnceOnTheNextInvoice: the
// collector stamps a record received before its write lands, so a run may
// not see a record stamped just before it. With billing.cutoff_lag, a
// month's invoice bills what was received up to the lag before its issue,
// and the next invoice bills the rest as adjustments: a record stamped a
// minute before the issue is billed once, on the next invoice, and one
// stamped earlier than the lag on the month's own.
func TestARecordReceivedWithinTheCutoffLagIsBilledOnceOnTheNextInvoice(t *testing.T) {
	september := calendar.Month{Year: 2026, Month: time.September, Loc: brussels}
	issue := time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC)
	lag := func(c *billing.Config) { c.CutoffLag = 10 * time.Minute }
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			p := newPlatform(t, issue)
			svc := newServiceWith(t, p, open(t), billingtest.SLA{}, startingIn("2026-09"), lag)
			appendReceived(t, p, issue.Add(-11*time.Minute), extraRecord("caami", usage.MeterCPU, time.Date(2026, 9, 20, 10, 0, 0, 0, brussels), 3_600_000_000_000))
			appendReceived(t, p, issue.Add(-time.Minute), extraRecord("caami", usage.MeterCPU, time.Date(2026, 9, 21, 10, 0, 0, 0, brussels), 2*3_600_000_000_000))
			sep := resultOf(t, mustIssue(t, svc, september, "caami"), "caami").Invoice
			if sep == nil || !sep.Inputs.Cutoff.Equal(issue.Add(-10*time.Minute)) {
				t.Fatalf("September: %+v, want an invoice with its cutoff 10 minutes before the issue", sep)
			}
			if got, want := lineStrings(sep), []string{"cpu prod band 1: 1.000000 × 0.0400 = 0.04"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("September's lines:\n%s\nwant\n%s", join(got), join(want))
			}
			setClock(t, p, time.Date(2026, 11, 5, 9, 0, 0, 0, time.UTC))
			oct := resultOf(t, mustIssue(t, svc, september.Next(), "caami"), "caami").Invoice
			if got, want := lineStrings(oct), []string{"cpu prod band 1: 2.000000 × 0.0400 = 0.08 adjusting 2026-09"}; oct == nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("October's lines:\n%s\nwant\n%s", join(got), join(want))
			}
			if got := billedPerMonth(t, svc, "caami"); got["2026-09"] != 2 {
				t.Errorf("September's records billed %d times in all, want 2 (each once)", got["2026-09"])
			}
		})
	}
}
