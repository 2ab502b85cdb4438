package billinghttp

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/state"
)

// Drafter drafts invoices. *billing.Service is one.
type Drafter interface {
	// Draft computes the invoices of p for tenants with every record
	// received up to now, less the cutoff lag; nothing is stored.
	Draft(ctx context.Context, p calendar.Month, tenants []string, progress billing.Progress) ([]*billing.Invoice, error)
}

// CostResponse is the answer of GET /api/v1/tenants/{tenant}/cost: what the
// institution's month comes to so far, by the invoice draft's arithmetic.
type CostResponse struct {
	Tenant   string `json:"tenant"`
	Month    string `json:"month"`
	Currency string `json:"currency"`
	// Cutoff is the draft's: records received after it are not in it.
	Cutoff time.Time `json:"cutoff"`
	// Provisional is true until the month's grace period is over: records
	// may still arrive.
	Provisional bool `json:"provisional"`
	// Closed, on a month already invoiced, says so ("already issued as …"):
	// the figures are then the month recomputed from every record received
	// by now, not what was issued.
	Closed string `json:"closed,omitempty"`
	// Totals are the draft's: Payable is what its invoice would ask now.
	Totals billing.Totals `json:"totals"`
	// Scopes share the totals out by project and environment (Method).
	Scopes []billing.ScopeCost `json:"scopes"`
	Method string              `json:"method"`
	// Projection is the month's payable extrapolated to its end, while the
	// month runs.
	Projection *Projection `json:"projection,omitempty"`
	// Previous is the month before, beside it.
	Previous PreviousMonth `json:"previous"`
}

// Projection is a month's payable extrapolated to the month's end.
type Projection struct {
	Payable billing.Money `json:"payable"`
	Method  string        `json:"method"`
}

// projectionMethod says how the projection is made.
const projectionMethod = "linear: the payable so far × the month's length ÷ the time from the month's start to the cutoff; " +
	"graduated tiers and the SLA credit are extrapolated as they stand"

// PreviousMonth is the month before the one asked for.
type PreviousMonth struct {
	Month string `json:"month"`
	// Invoice is the number of the month's invoice when one was issued, and
	// Payable its payable; else Payable is the month's draft's.
	Invoice string        `json:"invoice,omitempty"`
	Payable billing.Money `json:"payable"`
}

// getCost is GET /api/v1/tenants/{tenant}/cost?month=YYYY-MM (default: the
// current month in the platform's time zone).
func (h *handlers) getCost(w http.ResponseWriter, r *http.Request, _ auth.Principal) {
	tenant, now := r.PathValue("tenant"), h.clock.Now()
	month := calendar.MonthOf(now, h.loc)
	if s := r.URL.Query().Get("month"); s != "" {
		m, err := calendar.Parse(s, h.loc)
		if err != nil {
			route.WriteError(w, http.StatusBadRequest, fmt.Sprintf("month: %s is not a month like 2026-11", route.Quote(s)), nil)
			return
		}
		if !m.Start().Before(now) {
			route.WriteError(w, http.StatusBadRequest, fmt.Sprintf("month: %s has not started", m), nil)
			return
		}
		month = m
	}
	resp, err := Cost(r.Context(), h.drafts, h.invoices, tenant, month)
	if err != nil {
		h.costFailed(w, tenant, month, err)
		return
	}
	route.WriteJSON(w, http.StatusOK, resp)
}

// Cost is what tenant's month comes to so far: its draft, shared out, with
// the projection and the month before. invoices, if set, finds the previous
// month's issued invoice. The API and the portal both answer with it.
func Cost(ctx context.Context, drafts Drafter, invoices InvoiceReader, tenant string, month calendar.Month) (*CostResponse, error) {
	inv, err := draft(ctx, drafts, month, tenant)
	if err != nil {
		return nil, err
	}
	scopes, err := billing.Shares(inv)
	if err != nil {
		return nil, err
	}
	resp := &CostResponse{Tenant: tenant, Month: month.String(), Currency: inv.Currency, Cutoff: inv.Inputs.Cutoff.UTC(),
		Provisional: inv.Provisional, Closed: inv.Closed, Totals: inv.Totals, Scopes: scopes, Method: billing.CostMethod}
	if elapsed := inv.Inputs.Cutoff.Sub(month.Start()); elapsed > 0 && inv.Inputs.Cutoff.Before(month.End()) {
		scale := new(big.Rat).SetFrac(big.NewInt(int64(month.End().Sub(month.Start()))), big.NewInt(int64(elapsed)))
		projected := decimal.NewFromBigRat(new(big.Rat).Mul(inv.Totals.Payable.Rat(), scale), 2)
		resp.Projection = &Projection{Payable: billing.Money{Decimal: projected}, Method: projectionMethod}
	}
	if resp.Previous, err = previous(ctx, drafts, invoices, month, tenant); err != nil {
		return nil, err
	}
	return resp, nil
}

// draft is tenant's draft invoice of month.
func draft(ctx context.Context, drafts Drafter, month calendar.Month, tenant string) (*billing.Invoice, error) {
	invs, err := drafts.Draft(ctx, month, []string{tenant}, nil)
	if err != nil {
		return nil, err
	}
	if len(invs) != 1 {
		return nil, fmt.Errorf("%d drafts of %s for %s", len(invs), month, tenant)
	}
	return invs[0], nil
}

// previous is the month before month: its issued invoice, or its draft.
func previous(ctx context.Context, drafts Drafter, invoices InvoiceReader, month calendar.Month, tenant string) (PreviousMonth, error) {
	prev := calendar.MonthOf(month.Start().Add(-time.Hour), month.Loc)
	out := PreviousMonth{Month: prev.String()}
	if invoices != nil {
		issued, err := invoices.List(ctx, state.DocumentFilter{Tenant: tenant, Period: prev.String(), Kind: state.KindInvoice})
		if err != nil {
			return out, err
		}
		if len(issued) > 0 { // a month has one invoice of its own
			out.Invoice, out.Payable = issued[0].Number, issued[0].Totals.Payable
			return out, nil
		}
	}
	inv, err := draft(ctx, drafts, prev, tenant)
	if err != nil {
		return out, err
	}
	out.Payable = inv.Totals.Payable
	return out, nil
}

// costFailed answers a cost that could not be computed.
func (h *handlers) costFailed(w http.ResponseWriter, tenant string, month calendar.Month, err error) {
	if errors.Is(err, billing.ErrNoRateCardVersion) {
		route.WriteError(w, http.StatusUnprocessableEntity, fmt.Sprintf("%s cannot be priced: %v", month, err), nil)
		return
	}
	h.log.Error("cost so far failed", "tenant", tenant, "month", month.String(), "err", err)
	route.WriteError(w, http.StatusServiceUnavailable, fmt.Sprintf("the cost of %s could not be computed now", month), nil)
}
