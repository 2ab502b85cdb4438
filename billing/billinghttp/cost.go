package billinghttp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/collector/route"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/memo"
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
const projectionMethod = "linear: the month's own lines and SLA credit so far × the month's length ÷ the time from its " +
	"start to the cutoff, plus the adjustments of earlier months as they stand, then VAT; graduated tiers are " +
	"extrapolated as they stand; none in the month's first day"

// PreviousMonth is the month before the one asked for.
type PreviousMonth struct {
	Month string `json:"month"`
	// Invoice is the number of the month's invoice when one was issued, and
	// Payable its payable (credit notes against it are not deducted); else
	// Payable is the month's draft's.
	Invoice string        `json:"invoice,omitempty"`
	Payable billing.Money `json:"payable"`
	// Unavailable says the month's figure could not be read now; the rest
	// of the answer stands.
	Unavailable bool `json:"unavailable,omitempty"`
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
	resp, err := h.costs.Cost(r.Context(), tenant, month)
	if err != nil {
		status, msg := CostError(err, month)
		if status >= 500 && r.Context().Err() == nil {
			h.log.Error("cost so far failed", "tenant", tenant, "month", month.String(), "err", err)
		}
		route.WriteError(w, status, msg, nil)
		return
	}
	route.WriteJSON(w, http.StatusOK, resp)
}

// errUnshareable marks a draft that Shares could not share out: a bug, not
// a store that is down.
var errUnshareable = errors.New("the draft cannot be shared out by project")

// CostError is the status and message that answer err from Costs.Cost.
func CostError(err error, month calendar.Month) (int, string) {
	switch {
	case errors.Is(err, billing.ErrNotFound):
		return http.StatusNotFound, "no such institution in the billing configuration"
	case errors.Is(err, billing.ErrNoRateCardVersion):
		return http.StatusUnprocessableEntity, fmt.Sprintf("%s cannot be priced: %v", month, err)
	case errors.Is(err, errUnshareable):
		return http.StatusInternalServerError, fmt.Sprintf("the cost of %s could not be shared out by project and environment", month)
	}
	return http.StatusServiceUnavailable, fmt.Sprintf("the cost of %s could not be computed now; try again in a minute", month)
}

// Costs computes institutions' costs so far, for the API and the portal
// alike. A cost is an invoice draft or two, a scan of the month's records,
// so at most costWorkers run at once, one per institution and month however
// many ask for it, and each answer is kept for costFresh: the cutoff moves
// by the minute anyway.
type Costs struct {
	drafts   Drafter
	invoices InvoiceReader
	log      *slog.Logger
	memo     *memo.Memo[*CostResponse]
}

const (
	costWorkers = 2
	costFresh   = time.Minute
	// costTimeout bounds one computation, which outlives the request that
	// started it so that others waiting for it get its answer.
	costTimeout = 2 * time.Minute
	// maxCachedCosts bounds the answers kept: institutions × the months
	// they look at.
	maxCachedCosts = 1000
)

// NewCosts computes costs from drafts; invoices, if set, finds the previous
// months' issued invoices. clock and log default to the system's.
func NewCosts(drafts Drafter, invoices InvoiceReader, c clock.Clock, log *slog.Logger) *Costs {
	return &Costs{drafts: drafts, invoices: invoices, log: cmp.Or(log, slog.Default()),
		memo: memo.New[*CostResponse](costWorkers, costFresh, costTimeout, maxCachedCosts, c)}
}

// Cost is what tenant's month comes to so far: its draft, shared out, with
// the projection and the month before.
func (c *Costs) Cost(ctx context.Context, tenant string, month calendar.Month) (*CostResponse, error) {
	return c.memo.Get(ctx, tenant+" "+month.String(), func(ctx context.Context) (*CostResponse, error) {
		return c.compute(ctx, tenant, month)
	})
}

func (c *Costs) compute(ctx context.Context, tenant string, month calendar.Month) (*CostResponse, error) {
	inv, err := draft(ctx, c.drafts, month, tenant)
	if err != nil {
		return nil, err
	}
	scopes, err := billing.Shares(inv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUnshareable, err)
	}
	resp := &CostResponse{Tenant: tenant, Month: month.String(), Currency: inv.Currency, Cutoff: inv.Inputs.Cutoff.UTC(),
		Provisional: inv.Provisional, Closed: inv.Closed, Totals: inv.Totals, Scopes: scopes, Method: billing.CostMethod,
		Projection: project(inv, month)}
	// The month before is beside it, when it can be read.
	if resp.Previous, err = c.previous(ctx, month, tenant); err != nil {
		c.log.Warn("cost so far: the previous month could not be read", "tenant", tenant, "month", resp.Previous.Month, "err", err)
		resp.Previous.Unavailable, resp.Previous.Payable = true, billing.Money{}
	}
	return resp, nil
}

// project extrapolates inv, a draft of month, to the month's end
// (projectionMethod); nil when the cutoff is in the month's first day or
// past its end.
func project(inv *billing.Invoice, month calendar.Month) *Projection {
	elapsed := inv.Inputs.Cutoff.Sub(month.Start())
	if elapsed < 24*time.Hour || !inv.Inputs.Cutoff.Before(month.End()) {
		return nil
	}
	own := decimal.Zero
	for _, l := range inv.Lines {
		if l.Adjusts == "" {
			own = own.Add(l.Amount.Decimal)
		}
	}
	for _, a := range inv.Allowances {
		if a.Period == inv.Period {
			own = own.Add(a.Amount.Decimal)
		}
	}
	scale := new(big.Rat).SetFrac(big.NewInt(int64(month.End().Sub(month.Start()))), big.NewInt(int64(elapsed)))
	taxable := decimal.NewFromBigRat(new(big.Rat).Mul(own.Rat(), scale), 2).Add(inv.Totals.TaxExclusive.Sub(own))
	vat := taxable.Mul(inv.Customer.VAT.Rate).Div(decimal.NewFromInt(100)).Round(2)
	return &Projection{Payable: billing.Money{Decimal: taxable.Add(vat)}, Method: projectionMethod}
}

// draft is tenant's draft invoice of month.
func draft(ctx context.Context, drafts Drafter, month calendar.Month, tenant string) (*billing.Invoice, error) {
	invs, err := drafts.Draft(ctx, month, []string{tenant}, nil)
	if err != nil {
		return nil, fmt.Errorf("draft of %s: %w", month, err)
	}
	if len(invs) != 1 {
		return nil, fmt.Errorf("%d drafts of %s for %s", len(invs), month, tenant)
	}
	return invs[0], nil
}

// previous is the month before month: its issued invoice, or its draft.
func (c *Costs) previous(ctx context.Context, month calendar.Month, tenant string) (PreviousMonth, error) {
	prev := calendar.MonthOf(month.Start().Add(-time.Hour), month.Loc)
	out := PreviousMonth{Month: prev.String()}
	if c.invoices != nil {
		issued, err := c.invoices.List(ctx, state.DocumentFilter{Tenant: tenant, Period: prev.String(), Kind: state.KindInvoice})
		if err != nil {
			return out, err
		}
		if len(issued) > 0 { // a month has one invoice of its own
			out.Invoice, out.Payable = issued[0].Number, issued[0].Totals.Payable
			return out, nil
		}
	}
	inv, err := draft(ctx, c.drafts, prev, tenant)
	if err != nil {
		return out, err
	}
	out.Payable = inv.Totals.Payable
	return out, nil
}
