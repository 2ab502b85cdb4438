// Package ubl writes an issued invoice or credit note (billing.Invoice) as a
// UBL 2.1 Invoice or CreditNote following Peppol BIS Billing 3.0, the way
// Belgian public institutions receive e-invoices (DESIGN.md §5), and checks
// such a document against the EN 16931 rules on totals and VAT (Check).
//
// The document is built from the invoice's own figures, never recomputed:
// Render checks what it wrote with Check and refuses to return a document
// that breaks a rule, so an inconsistent invoice cannot leave as an
// e-invoice.
//
// Signs: a credit note of ours carries the credited amounts negated, but a
// UBL CreditNote states what it credits in positive amounts (its type says
// they go the other way). Render therefore negates every amount of a credit
// note: the lines become positive, the reversal of an SLA credit becomes a
// positive allowance again, and the totals are those of the credited
// invoice. A partial credit note's correction line has quantity 1 and a
// negative unit price; as UBL prices must not be negative (BR-27), the
// price is negated rather than the quantity.
//
// Units (UN/ECE Recommendation 20, which Peppol requires for unitCode):
//
//	vCPU-hour  HUR  hour: the item is a vCPU, its quantity counts hours
//	GiB-hour   C62  one: Rec 20 has no gibibyte-hour; the item name says the unit
//	GB         E34  gigabyte (10^9 bytes, as the rate card's GB)
//	hour       HUR  hour
//	(other)    C62  one, e.g. the correction line of a partial credit note
//
// Every item name states its unit, so no meaning rests on the code alone.
package ubl

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/institution"
)

// Peppol BIS Billing 3.0 identifiers.
const (
	CustomizationID = "urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"
	ProfileID       = "urn:fdc:peppol.eu:2017:poacc:billing:01:1.0"
)

// UNCL codes Render writes.
const (
	invoiceTypeCode    = "380" // UNCL 1001: commercial invoice
	creditNoteTypeCode = "381" // UNCL 1001: credit note
	sepaCreditTransfer = "58"  // UNCL 4461: SEPA credit transfer
	discountReasonCode = "95"  // UNCL 5189: discount
	vatScheme          = "VAT"
)

// ErrIncomplete is returned by Render for a document that lacks what Peppol
// BIS Billing 3.0 makes mandatory; the message names the missing fields as
// the configuration spells them.
var ErrIncomplete = errors.New("incomplete for Peppol BIS Billing 3.0")

// ErrRules is returned by Render when the document it built breaks a rule
// Check knows: the invoice's own figures do not add up.
var ErrRules = errors.New("breaks EN 16931 rules")

// Render writes inv as a UBL 2.1 Invoice (kind invoice) or CreditNote (kind
// credit_note) following Peppol BIS Billing 3.0: indented UTF-8 XML with its
// declaration. The output depends on inv alone, so rendering the same
// document twice gives the same bytes. Nothing is written when it fails.
func Render(w io.Writer, inv *billing.Invoice) error {
	d, err := build(inv)
	if err != nil {
		return fmt.Errorf("ubl: %s: %w", name(inv), err)
	}
	b, err := encode(*d)
	if err != nil {
		return fmt.Errorf("ubl: %s: %w", name(inv), err)
	}
	vs, err := Check(b)
	if err != nil {
		return fmt.Errorf("ubl: %s: the rendered document does not read back: %w", name(inv), err)
	}
	if len(vs) > 0 {
		msgs := make([]string, len(vs))
		for i, v := range vs {
			msgs[i] = v.String()
		}
		return fmt.Errorf("ubl: %s: %w: %s", name(inv), ErrRules, strings.Join(msgs, "; "))
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("ubl: %s: %w", name(inv), err)
	}
	return nil
}

// name identifies inv in errors.
func name(inv *billing.Invoice) string {
	if inv.Number == "" {
		return fmt.Sprintf("the draft of %s for %s", inv.Customer.Tenant, inv.Period)
	}
	return inv.Number
}

// builder turns amounts of inv into UBL amounts: in the document's currency,
// with two decimals, negated on a credit note (see the package comment).
type builder struct {
	inv    *billing.Invoice
	credit bool
}

// signed negates d on a credit note.
func (b builder) signed(d decimal.Decimal) decimal.Decimal {
	if b.credit {
		return d.Neg()
	}
	return d
}

func (b builder) amount(d decimal.Decimal) amount {
	return amount{Currency: b.inv.Currency, Value: b.signed(d).StringFixed(2)}
}

// build maps inv onto a UBL document.
func build(inv *billing.Invoice) (*document, error) {
	if inv.Kind != billing.KindInvoice && inv.Kind != billing.KindCreditNote {
		return nil, fmt.Errorf("kind %q is neither %s nor %s", inv.Kind, billing.KindInvoice, billing.KindCreditNote)
	}
	if err := complete(inv); err != nil {
		return nil, err
	}
	if err := inv.Customer.VAT.Validate(); err != nil {
		return nil, fmt.Errorf("customer %w", err)
	}
	for _, f := range []struct{ name, date string }{{"issue_date", inv.IssueDate}, {"due_date", inv.DueDate},
		{"period_start", inv.PeriodStart}, {"period_end", inv.PeriodEnd}} {
		if f.date == "" {
			continue
		}
		if _, err := parseDate(f.date); err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
	}

	b := builder{inv: inv, credit: inv.Kind == billing.KindCreditNote}
	d := &document{
		CustomizationID:      CustomizationID,
		ProfileID:            ProfileID,
		ID:                   inv.Number,
		IssueDate:            inv.IssueDate,
		DocumentCurrencyCode: inv.Currency,
		BuyerReference:       inv.Customer.BuyerReference,
		Supplier:             partyOf(inv.Seller.Party, inv.Seller.Name),
		Customer:             partyOf(inv.Customer.Party, inv.Customer.Name),
	}
	if inv.PeriodStart != "" || inv.PeriodEnd != "" {
		d.InvoicePeriod = &period{StartDate: inv.PeriodStart, EndDate: inv.PeriodEnd}
	}
	if b.credit {
		d.XMLName.Local = "CreditNote"
		d.CreditNoteTypeCode = creditNoteTypeCode
		d.Note = inv.Reason
		if inv.Refers != "" {
			d.BillingReference = &billingReference{Invoice: documentRef{ID: inv.Refers}}
		}
		// A CreditNote has no DueDate, yet BR-CO-25 wants a due date or
		// payment terms whenever an amount is due.
		if inv.DueDate != "" {
			d.PaymentTerms = &paymentTerms{Note: "Credit due by " + inv.DueDate}
		}
	} else {
		d.XMLName.Local = "Invoice"
		d.DueDate = inv.DueDate
		d.InvoiceTypeCode = invoiceTypeCode
		d.Note = "Platform usage of " + inv.Period
		if inv.Seller.IBAN != "" {
			d.PaymentMeans = &paymentMeans{Code: sepaCreditTransfer, PaymentID: inv.Number,
				Account: financialAccount{ID: inv.Seller.IBAN}}
			if inv.Seller.BIC != "" {
				d.PaymentMeans.Account.Branch = &documentRef{ID: inv.Seller.BIC}
			}
		}
		if inv.DueDate != "" {
			d.PaymentTerms = &paymentTerms{Note: paymentNote(inv.IssueDate, inv.DueDate)}
		}
	}

	vat := inv.Customer.VAT
	for _, a := range inv.Allowances {
		// An allowance of ours is negative on an invoice and positive on a
		// credit note; a UBL allowance is positive in both.
		amt := b.signed(a.Amount.Neg())
		if amt.IsNegative() {
			return nil, fmt.Errorf("allowance %q of %s raises the amount due: only allowances that lower it are written", a.Reason, a.Amount.StringFixed(2))
		}
		base := b.amount(a.Base.Decimal)
		d.AllowanceCharges = append(d.AllowanceCharges, allowanceCharge{
			ReasonCode:  discountReasonCode,
			Reason:      a.Reason,
			Multiplier:  a.Percent.String(),
			Amount:      amount{Currency: inv.Currency, Value: amt.StringFixed(2)},
			BaseAmount:  &base,
			TaxCategory: &taxCategory{ID: vat.Category, Percent: vat.Rate.String(), TaxScheme: vatScheme},
		})
	}

	tt := taxTotal{TaxAmount: b.amount(inv.Totals.VAT.Decimal)}
	for _, v := range inv.VAT {
		tt.Subtotals = append(tt.Subtotals, taxSubtotal{
			TaxableAmount: b.amount(v.Taxable.Decimal),
			TaxAmount:     b.amount(v.Amount.Decimal),
			Category: taxCategory{ID: v.Category, Percent: v.Rate.String(), ExemptionReasonCode: v.ExemptionCode,
				ExemptionReason: v.ExemptionReason, TaxScheme: vatScheme},
		})
	}
	d.TaxTotals = []taxTotal{tt}

	t := inv.Totals
	d.Totals = monetaryTotal{
		LineExtension: b.amount(t.Lines.Decimal),
		TaxExclusive:  b.amount(t.TaxExclusive.Decimal),
		TaxInclusive:  b.amount(t.TaxExclusive.Add(t.VAT.Decimal)),
		Payable:       b.amount(t.Payable.Decimal),
	}
	if len(inv.Allowances) > 0 {
		total := b.amount(t.Allowances.Neg())
		d.Totals.AllowanceTotal = &total
	}

	for i, l := range inv.Lines {
		ul := b.line(i+1, l)
		if b.credit {
			ul.CreditedQuantity = ul.InvoicedQuantity
			ul.InvoicedQuantity = nil
			d.CreditNoteLines = append(d.CreditNoteLines, ul)
		} else {
			d.InvoiceLines = append(d.InvoiceLines, ul)
		}
	}
	return d, nil
}

// complete reports the Peppol-mandatory fields inv lacks, by their
// configuration and document names.
func complete(inv *billing.Invoice) error {
	var missing []string
	for _, f := range []struct{ name, value string }{
		{"number", inv.Number},
		{"issue_date", inv.IssueDate},
		{"currency", inv.Currency},
		{"seller.name", inv.Seller.Name},
		{"seller.party.endpoint_id", inv.Seller.Party.EndpointID},
		{"seller.party.endpoint_scheme", inv.Seller.Party.EndpointScheme},
		{"seller.party.address.country", inv.Seller.Party.Address.Country},
		{"customer.name", inv.Customer.Name},
		{"customer.buyer_reference", inv.Customer.BuyerReference},
		{"customer.party.endpoint_id", inv.Customer.Party.EndpointID},
		{"customer.party.endpoint_scheme", inv.Customer.Party.EndpointScheme},
		{"customer.party.address.country", inv.Customer.Party.Address.Country},
	} {
		if strings.TrimSpace(f.value) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: no %s", ErrIncomplete, strings.Join(missing, ", "))
	}
	return nil
}

func parseDate(s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a date like 2026-12-04", s)
	}
	return t, nil
}

// paymentNote states the payment terms from the issue and due dates, which
// build has checked.
func paymentNote(issue, due string) string {
	i, _ := parseDate(issue)
	d, _ := parseDate(due)
	if days := int(d.Sub(i) / (24 * time.Hour)); days > 0 {
		return fmt.Sprintf("Payment within %d days, by %s", days, due)
	}
	return "Due " + due
}

// partyOf maps a billing party onto a UBL one; name is its trading name,
// and its registration name unless the party has a legal name.
func partyOf(bp institution.Party, name string) party {
	a := bp.Address
	p := party{
		EndpointID:  &identifier{SchemeID: bp.EndpointScheme, Value: bp.EndpointID},
		Name:        name,
		Address:     &address{Street: a.Street, City: a.City, PostalZone: a.PostalCode, Country: a.Country},
		LegalEntity: &legalEntity{RegistrationName: cmp.Or(bp.LegalName, name), CompanyID: bp.CompanyID},
	}
	if bp.Email != "" {
		p.Contact = &contact{Email: bp.Email}
	}
	if bp.VATID != "" {
		p.TaxSchemes = []partyTaxScheme{{CompanyID: bp.VATID, TaxScheme: vatScheme}}
	}
	return p
}

// line maps an invoice line onto a UBL line numbered n, with its quantity as
// InvoicedQuantity (build moves it for a credit note). Quantity × price
// keeps the line's signed amount: the quantity takes the sign, unless the
// price is negative (a correction line), whose sign goes to the quantity so
// that the price is not negative.
func (b builder) line(n int, l billing.Line) line {
	qty, unit := b.signed(l.Quantity.Decimal), l.UnitPrice.Decimal
	if unit.IsNegative() {
		qty, unit = qty.Neg(), unit.Neg()
	}
	code := unitCode(l.Unit)
	vat := b.inv.Customer.VAT
	return line{
		ID:               fmt.Sprint(n),
		InvoicedQuantity: &quantity{UnitCode: code, Value: qty.StringFixed(6)},
		LineExtension:    b.amount(l.Amount.Decimal),
		Item: item{
			Name:          itemName(l),
			SellersItemID: &documentRef{ID: string(l.Meter)},
			TaxCategory:   taxCategory{ID: vat.Category, Percent: vat.Rate.String(), TaxScheme: vatScheme},
		},
		Price: price{
			Amount:       amount{Currency: b.inv.Currency, Value: billing.Price{Decimal: unit}.String()},
			BaseQuantity: &quantity{UnitCode: code, Value: "1"},
		},
	}
}

// unitCode is the UN/ECE Rec 20 code of a billing unit (see the package
// comment for the choice).
func unitCode(u ratecard.Unit) string {
	switch u {
	case ratecard.VCPUHour, ratecard.Hour:
		return "HUR"
	case ratecard.GB:
		return "E34"
	}
	return "C62"
}

// itemName describes a line: "cpu in vCPU-hour, prod, band 1", and for
// late records the month they belong to.
func itemName(l billing.Line) string {
	if l.Meter == billing.CorrectionMeter {
		return "correction of the credited invoice's amount"
	}
	parts := []string{string(l.Meter)}
	if l.Unit != "" {
		parts[0] += " in " + string(l.Unit)
	}
	if l.Class != "" {
		parts = append(parts, string(l.Class))
	}
	if t := l.TierText(); t != "" {
		parts = append(parts, "tier "+t)
	}
	if v := l.VersionText(); v != "" {
		parts = append(parts, "rate "+v)
	}
	if l.Adjusts != "" {
		parts = append(parts, "late usage of "+l.Adjusts)
	}
	return strings.Join(parts, ", ")
}
