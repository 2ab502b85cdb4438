package billinghttp

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
)

func money(s string) billing.Money { return billing.Money{Decimal: decimal.RequireFromString(s)} }

func TestTheProjectionExtrapolatesTheMonthsOwnLinesAndAddsAdjustmentsAsTheyStand(t *testing.T) {
	december := calendar.Month{Year: 2026, Month: time.December, Loc: time.UTC}
	draft := func(cutoff time.Time) *billing.Invoice {
		return &billing.Invoice{Period: "2026-12",
			Lines:      []billing.Line{{Amount: money("1.00")}, {Amount: money("10.00"), Adjusts: "2026-11"}},
			Allowances: []billing.Allowance{{Period: "2026-11", Amount: money("-1.00")}},
			Customer:   billing.Customer{VAT: billing.VAT{Rate: decimal.NewFromInt(21)}},
			Totals:     billing.Totals{TaxExclusive: money("10.00")},
			Inputs:     billing.Inputs{Cutoff: cutoff}}
	}
	// Three days of December's 31: its own 1.00 becomes 10.33; November's
	// adjustment (10.00 less its 1.00 credit) stays 9.00. 19.33 + 21 % VAT (4.06).
	p := project(draft(time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)), december)
	if p == nil || !p.Payable.Equal(decimal.RequireFromString("23.39")) {
		t.Errorf("projection %+v, want 23.39", p)
	}
	for name, cutoff := range map[string]time.Time{
		"in the month's first day": time.Date(2026, 12, 1, 23, 0, 0, 0, time.UTC),
		"once the month is over":   time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC),
	} {
		if p := project(draft(cutoff), december); p != nil {
			t.Errorf("%s: projection %+v, want none", name, p)
		}
	}
}

// countingDrafts is a Drafter that counts its drafts and holds each until
// release closes.
type countingDrafts struct {
	n       atomic.Int32
	release chan struct{}
}

func (d *countingDrafts) Draft(_ context.Context, p calendar.Month, tenants []string, _ billing.Progress) ([]*billing.Invoice, error) {
	d.n.Add(1)
	<-d.release
	return []*billing.Invoice{{Period: p.String(), Customer: billing.Customer{Tenant: tenants[0]}, Inputs: billing.Inputs{Cutoff: p.Start()}}}, nil
}

func TestManyAsksForOneCostComputeItOnceAndKeepItAMinute(t *testing.T) {
	d := &countingDrafts{release: make(chan struct{})}
	c := clock.NewManual(time.Date(2026, 12, 10, 12, 0, 0, 0, time.UTC))
	costs := NewCosts(d, nil, c, nil)
	month := calendar.Month{Year: 2026, Month: time.December, Loc: time.UTC}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := costs.Cost(context.Background(), "caami", month); err != nil {
				t.Error(err)
			}
		}()
	}
	for d.n.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	close(d.release)
	wg.Wait()
	// One draft of December and one of November (the month before).
	if n := d.n.Load(); n != 2 {
		t.Errorf("20 asks made %d drafts, want 2", n)
	}
	if _, err := costs.Cost(context.Background(), "caami", month); err != nil || d.n.Load() != 2 {
		t.Errorf("asked again at once: %v, %d drafts; want the kept answer", err, d.n.Load())
	}
	c.Advance(time.Minute)
	if _, err := costs.Cost(context.Background(), "caami", month); err != nil || d.n.Load() != 4 {
		t.Errorf("asked a minute later: %v, %d drafts; want it computed again", err, d.n.Load())
	}
}

func TestCostErrorsSayWhatToDo(t *testing.T) {
	month := calendar.Month{Year: 2026, Month: time.November, Loc: time.UTC}
	for _, tc := range []struct {
		err  error
		want int
	}{
		{billing.ErrNotFound, http.StatusNotFound},
		{billing.ErrNoRateCardVersion, http.StatusUnprocessableEntity},
		{errUnshareable, http.StatusInternalServerError},
		{errors.New("clickhouse: connection refused"), http.StatusServiceUnavailable},
	} {
		if got, msg := CostError(tc.err, month); got != tc.want || msg == "" {
			t.Errorf("%v: %d %q, want %d", tc.err, got, msg, tc.want)
		}
	}
}
