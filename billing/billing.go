// Package billing turns stored usage records into monthly invoices, exactly
// as DESIGN.md §5 defines them: records priced by the rate-card version
// effective at their window start, graduated tiers over the month's
// cumulative quantity, lines rounded once, an SLA credit allowance, VAT per
// category, gap-free numbers, frozen inputs that `verify` re-derives bit for
// bit, late records as adjustment lines on the next invoice, and credit notes.
//
// The money engine is pure (rate.go prices a selection of records, invoice.go
// totals a document); Service (service.go) is the invoice run around it: it
// reads usage from the metering store, the SLA figures from an SLASource, and
// keeps issued documents in the state store. A store that sums in the server
// (metering.UsageAggregator: ClickHouse) is rated from its sums, to the same
// invoice as the row scan (aggregate.go). Renderings live beside it:
// billing/export (CSV and JSON).
package billing

import (
	"context"
	"fmt"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/locale"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/usage"
)

// UsageSource is what billing reads from the metering store.
type UsageSource interface {
	ScanUsage(ctx context.Context, f metering.UsageFilter, fn func(usage.Record) error) error
}

// SLASource gives an institution's availability figures for a month.
type SLASource interface {
	// SLA returns the tenant's production availability in period. A tenant
	// with no production app has no figures: return ok false.
	SLA(ctx context.Context, tenant string, period calendar.Month) (fig credit.Figures, ok bool, err error)
}

// Customer is what an invoice needs to know about an institution.
type Customer struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
	// BuyerReference is the reference the institution's accounting matches
	// invoices with (mandatory in Peppol BIS Billing 3.0).
	BuyerReference string `json:"buyer_reference,omitempty"`
	VAT            VAT    `json:"vat"`
	// Party is the institution's legal identity for e-invoices.
	Party institution.Party `json:"party"`
	// Language is what the institution's PDF documents are written in,
	// frozen with the document so that a re-render is the same file; empty
	// is English.
	Language locale.Lang `json:"language,omitempty"`
	// Start is the institution's first month ("2026-01"), from which its
	// months close one after the other; "" takes the month of its first
	// usage. Records of earlier months are adjustments on the first invoice.
	// Not part of the documents: it only orders the runs.
	Start string `json:"-"`
}

// Seller is the platform operator as it appears on its invoices.
type Seller struct {
	Name  string            `json:"name" yaml:"name"`
	Party institution.Party `json:"party" yaml:"party"`
	// IBAN and BIC are where institutions pay.
	IBAN string `json:"iban,omitempty" yaml:"iban"`
	BIC  string `json:"bic,omitempty" yaml:"bic"`
}

// VAT categories (EN 16931 / UNCL 5305 codes).
const (
	VATStandard = "S"
	VATExempt   = "E"
)

// VAT is an institution's VAT treatment: one category per institution.
type VAT struct {
	// Category is VATStandard or VATExempt.
	Category string `json:"category"`
	// Rate in percent, e.g. 21; zero for exempt.
	Rate decimal.Decimal `json:"rate"`
	// ExemptionReason and ExemptionCode (e.g. VATEX-EU-132) explain an exemption.
	ExemptionReason string `json:"exemption_reason,omitempty"`
	ExemptionCode   string `json:"exemption_code,omitempty"`
}

// Validate reports what is wrong with v, naming the field.
func (v VAT) Validate() error {
	switch v.Category {
	case VATStandard:
		if !v.Rate.IsPositive() || v.Rate.GreaterThan(decimal.NewFromInt(100)) {
			return fmt.Errorf("vat.rate: %s must be above 0 and at most 100 for the standard category", v.Rate)
		}
	case VATExempt:
		if !v.Rate.IsZero() {
			return fmt.Errorf("vat.rate: must be 0 for an exempt institution, not %s", v.Rate)
		}
		if v.ExemptionReason == "" && v.ExemptionCode == "" {
			return fmt.Errorf("vat.exemption_reason: an exempt institution needs a reason or an exemption code")
		}
	default:
		return fmt.Errorf("vat.category: %q is not S (standard) or E (exempt)", v.Category)
	}
	return nil
}
