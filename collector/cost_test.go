package collector_test

import (
	"context"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/internal/clock"
)

// withCosts makes newEnv's collector serve costs drafted by a billing
// service whose clock reads at.
func withCosts(t *testing.T, inv *invoicing, at time.Time) func(*setup) {
	return func(o *setup) {
		t.Helper()
		inv.clock = clock.NewManual(at)
		inv.svc = billingOver(t, o.Store, billingtest.SLA{}, inv.clock)
		o.invoices, o.drafts = inv.svc, inv.svc
	}
}

func TestTheCostSoFarIsTheDraftsPayableSharedOutToTheCent(t *testing.T) {
	ctx := context.Background()
	midMonth := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	inv := &invoicing{}
	e := newEnv(t, nil, nil, withCosts(t, inv, midMonth))
	e.clock.Set(midMonth)
	recs := billingtest.Records()
	for i := range recs {
		recs[i].ReceivedAt = midMonth.Add(-2 * time.Hour)
	}
	if _, err := e.store.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}

	for _, query := range []string{"", "?month=2026-11"} { // the current month by default
		a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/cost"+query, caamiToken, nil)
		if a.code != http.StatusOK {
			t.Fatalf("cost%s: %d %s", query, a.code, a.body)
		}
		var got billinghttp.CostResponse
		a.decode(t, &got)
		drafts, err := inv.svc.Draft(ctx, billingtest.Period(), []string{"caami"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		draft := drafts[0]
		if got.Tenant != "caami" || got.Month != "2026-11" || !got.Provisional || !got.Cutoff.Equal(draft.Inputs.Cutoff) ||
			!got.Totals.Payable.Equal(draft.Totals.Payable.Decimal) || !got.Totals.Payable.IsPositive() {
			t.Fatalf("cost%s: %s %s provisional %v cutoff %s payable %s; the draft's: cutoff %s payable %s", query, got.Tenant, got.Month,
				got.Provisional, got.Cutoff, got.Totals.Payable, draft.Inputs.Cutoff, draft.Totals.Payable)
		}
		// caami's month runs in production and development: two scopes.
		sum := decimal.Zero
		for _, s := range got.Scopes {
			sum = sum.Add(s.Payable.Decimal)
		}
		if !sum.Equal(draft.Totals.Payable.Decimal) || len(got.Scopes) < 2 {
			t.Errorf("cost%s: %d scopes add up to %s, the draft's payable is %s", query, len(got.Scopes), sum, draft.Totals.Payable)
		}
		// Extrapolated from the month's start to its cutoff, over the
		// month's 30 days: the taxable amount (November's own lines and
		// credit: there are no adjustments), then caami's 21 % VAT.
		month := billingtest.Period()
		exact := new(big.Rat).Mul(draft.Totals.TaxExclusive.Rat(),
			new(big.Rat).SetFrac64(int64(month.End().Sub(month.Start())), int64(draft.Inputs.Cutoff.Sub(month.Start()))))
		taxable := decimal.NewFromBigRat(exact, 2)
		want := taxable.Add(taxable.Mul(decimal.NewFromInt(21)).Div(decimal.NewFromInt(100)).Round(2))
		if got.Projection == nil || !got.Projection.Payable.Equal(want) || got.Projection.Method == "" {
			t.Errorf("cost%s: projection %+v, want %s with its method", query, got.Projection, want)
		}
		if got.Previous.Month != "2026-10" || got.Previous.Invoice != "" || !got.Previous.Payable.IsZero() {
			t.Errorf("cost%s: previous month %+v, want October with nothing to pay", query, got.Previous)
		}
	}

	t.Run("bad months are refused naming the parameter", func(t *testing.T) {
		for q, want := range map[string]string{"?month=november": "month:", "?month=2026-12": "month: 2026-12 has not started"} {
			a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/cost"+q, caamiToken, nil)
			if a.code != http.StatusBadRequest || !strings.Contains(string(a.body), want) {
				t.Errorf("cost%s: %d %s, want 400 with %q", q, a.code, a.body, want)
			}
		}
	})
	t.Run("another institution's cost is refused", func(t *testing.T) {
		if a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/cost", onaToken, nil); a.code != http.StatusForbidden {
			t.Errorf("ona asking for caami's cost: %d %s", a.code, a.body)
		}
	})
	t.Run("once the month is invoiced, the next shows its invoice beside it", func(t *testing.T) {
		december := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC) // after November's grace period
		inv.clock.Set(december)
		e.clock.Set(december)
		res, err := inv.svc.Issue(ctx, billingtest.Period(), []string{"caami"}, "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/cost", caamiToken, nil)
		var got billinghttp.CostResponse
		a.decode(t, &got)
		issued := res[0].Invoice
		if a.code != http.StatusOK || got.Month != "2026-12" || got.Previous.Invoice != issued.Number ||
			!got.Previous.Payable.Equal(issued.Totals.Payable.Decimal) {
			t.Errorf("December's cost: %d, month %s, previous %+v; want November's %s of %s", a.code, got.Month, got.Previous,
				issued.Number, issued.Totals.Payable)
		}
		novemberAgain := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/cost?month=2026-11", caamiToken, nil)
		var nov billinghttp.CostResponse
		novemberAgain.decode(t, &nov)
		if nov.Closed == "" || nov.Provisional || nov.Projection != nil {
			t.Errorf("November after its invoice: closed %q, provisional %v, projection %+v; want it closed, final, not projected",
				nov.Closed, nov.Provisional, nov.Projection)
		}
	})
}
