package ubl

import (
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"

	"github.com/shopspring/decimal"
)

// Violation is a rule a document breaks.
type Violation struct {
	// Rule is the rule's identifier, e.g. BR-CO-10 or PEPPOL-EN16931-R003.
	Rule string
	// Message says what in the document breaks it, with the figures.
	Message string
}

// String returns "BR-CO-10: message".
func (v Violation) String() string { return v.Rule + ": " + v.Message }

// Check reads a UBL 2.1 Invoice or CreditNote and returns the violations of
// the EN 16931 and Peppol rules below, in this order. It returns an error,
// and no violations, for bytes that are not such a document or whose
// amounts are not decimals; it does not validate against the schema (use
// the UBL 2.1 XSD for that).
//
// The rules, paraphrased from EN 16931-1 and Peppol BIS Billing 3.0:
//
//	BR-CO-10  LineExtensionAmount = Σ line net amounts
//	BR-CO-11  AllowanceTotalAmount = Σ document allowances (may be absent when there are none)
//	BR-CO-12  ChargeTotalAmount = Σ document charges (may be absent when there are none)
//	BR-CO-13  TaxExclusiveAmount = LineExtensionAmount − AllowanceTotalAmount + ChargeTotalAmount
//	BR-CO-14  a TaxTotal's TaxAmount = Σ its TaxSubtotal tax amounts
//	BR-CO-15  TaxInclusiveAmount = TaxExclusiveAmount + the TaxAmount in the document currency
//	BR-CO-16  PayableAmount = TaxInclusiveAmount − PrepaidAmount + PayableRoundingAmount
//	BR-CO-17  a subtotal's tax = its taxable amount × its rate / 100, rounded to cents
//	BR-CO-25  a positive PayableAmount needs a DueDate or a PaymentTerms note
//	BR-S-01   lines, allowances or charges of category S need an S subtotal
//	BR-S-02   S lines need a seller VAT identifier (or tax registration or tax representative)
//	BR-S-03   so do S allowances
//	BR-S-04   so do S charges
//	BR-S-05   an S line's rate is above zero
//	BR-S-06   an S allowance's rate is above zero
//	BR-S-07   an S charge's rate is above zero
//	BR-S-08   per rate, the S taxable amount = Σ S lines − S allowances + S charges at that rate
//	BR-S-09   an S subtotal's tax = taxable × rate / 100, rounded to cents
//	BR-S-10   an S subtotal has no exemption reason nor code
//	BR-E-01   lines, allowances or charges of category E need exactly one E subtotal
//	BR-E-02   E lines need a seller VAT identifier (or tax registration or tax representative)
//	BR-E-03   so do E allowances
//	BR-E-04   so do E charges
//	BR-E-05   an E line's rate is zero
//	BR-E-06   an E allowance's rate is zero
//	BR-E-07   an E charge's rate is zero
//	BR-E-08   the E taxable amount = Σ E lines − E allowances + E charges
//	BR-E-09   an E subtotal's tax is zero
//	BR-E-10   an E subtotal has an exemption reason code or text
//	BR-27     a line's item net price is not negative
//	PEPPOL-EN16931-R003  a BuyerReference or an OrderReference ID is present
//	PEPPOL-EN16931-R120  a line's net amount = quantity × price / base quantity
//	                     − line allowances + line charges, within 0.02
//	PEPPOL-EN16931-R121  a price's base quantity is above zero
//
// No rule here looks at an E subtotal's own rate: a non-zero one breaks
// BR-CO-17 or BR-E-09 as soon as taxable × rate / 100 comes to a cent.
// Amounts are compared exactly (Render writes them from decimals), except
// in R120, which allows Peppol's 0.02. BR-CO-17 and BR-S-09 round half away
// from zero, as billing does; the CEN schematron rounds half up, which is
// the same on the positive amounts Render writes.
func Check(doc []byte) ([]Violation, error) {
	f, err := read(doc)
	if err != nil {
		return nil, err
	}
	var out []Violation
	for _, r := range rules {
		for _, m := range r.check(f) {
			out = append(out, Violation{Rule: r.id, Message: m})
		}
	}
	return out, nil
}

// num is a decimal read from a document; ok is false when it is absent.
type num struct {
	v  decimal.Decimal
	ok bool
}

// is reports whether n is present and equals d.
func (n num) is(d decimal.Decimal) bool { return n.ok && n.v.Equal(d) }

// or0 is n, or zero when it is absent.
func (n num) or0() decimal.Decimal {
	if !n.ok {
		return decimal.Zero
	}
	return n.v
}

func (n num) String() string {
	if !n.ok {
		return "absent"
	}
	return show(n.v)
}

// show writes an amount with at least two decimals.
func show(d decimal.Decimal) string { return d.StringFixed(max(2, -d.Exponent())) }

// facts are what the rules look at, read from a document.
type facts struct {
	buyerReference, orderReference string
	// dueDate and paymentTerms: the document has a DueDate, a PaymentTerms note.
	dueDate, paymentTerms bool
	// sellerTaxID: the seller has a VAT identifier, a tax registration
	// identifier, or a tax representative with a VAT identifier.
	sellerTaxID bool
	lines       []lineFacts
	allowances  []chargeFacts
	charges     []chargeFacts
	taxTotals   []taxTotalFacts
	// vat is the TaxAmount of the TaxTotal in the document currency.
	vat                                                num
	lineExtension, taxExclusive, taxInclusive, payable num
	allowanceTotal, chargeTotal, prepaid, rounding     num
}

type lineFacts struct {
	id                            string
	net, quantity, price, baseQty num
	lineAllowances, lineCharges   decimal.Decimal
	category                      string
	rate                          num
}

// chargeFacts is a document-level allowance or charge.
type chargeFacts struct {
	amount   num
	category string
	rate     num
}

type taxTotalFacts struct {
	amount    num
	subtotals []subtotalFacts
}

type subtotalFacts struct {
	taxable, tax                   num
	category                       string
	rate                           num
	exemptionCode, exemptionReason string
}

// xsdDecimal is the lexical form of xsd:decimal. Anything else (an exponent
// in particular, which decimal would accept and blow up to a huge number)
// is not an amount; nor is one with more digits than decimal decodes.
var xsdDecimal = regexp.MustCompile(`^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)

// truncate keeps an error message short whatever a document holds.
func truncate(s string) string {
	if r := []rune(s); len(r) > 40 {
		return string(r[:40]) + "…"
	}
	return s
}

// reader converts a document's numbers, keeping the first error.
type reader struct{ err error }

// num reads s, named what in an error; absent when s is empty.
func (r *reader) num(what, s string) num {
	s = strings.TrimSpace(s)
	if s == "" {
		return num{}
	}
	if xsdDecimal.MatchString(s) {
		if v, err := decimal.NewFromString(s); err == nil {
			return num{v: v, ok: true}
		}
	}
	if r.err == nil {
		r.err = fmt.Errorf("%s: %q is not a decimal", what, truncate(s))
	}
	return num{}
}

func (r *reader) amount(what string, a *amount) num {
	if a == nil {
		return num{}
	}
	return r.num(what, a.Value)
}

func (r *reader) quantity(what string, q *quantity) num {
	if q == nil {
		return num{}
	}
	return r.num(what, q.Value)
}

// read parses doc into the facts the rules check.
func read(doc []byte) (*facts, error) {
	var d document
	if err := decode(doc, &d); err != nil {
		return nil, fmt.Errorf("not a UBL document: %w", err)
	}
	lines, qty := d.InvoiceLines, func(l *line) *quantity { return l.InvoicedQuantity }
	switch d.XMLName {
	case xml.Name{Space: nsInvoice, Local: "Invoice"}:
	case xml.Name{Space: nsCreditNote, Local: "CreditNote"}:
		lines, qty = d.CreditNoteLines, func(l *line) *quantity { return l.CreditedQuantity }
	default:
		return nil, fmt.Errorf("the root element {%s}%s is neither a UBL 2.1 Invoice nor a CreditNote", d.XMLName.Space, d.XMLName.Local)
	}

	var r reader
	f := &facts{buyerReference: strings.TrimSpace(d.BuyerReference), dueDate: strings.TrimSpace(d.DueDate) != "",
		paymentTerms: d.PaymentTerms != nil && strings.TrimSpace(d.PaymentTerms.Note) != ""}
	if d.OrderReference != nil {
		f.orderReference = strings.TrimSpace(d.OrderReference.ID)
	}
	for _, s := range d.Supplier.TaxSchemes {
		f.sellerTaxID = f.sellerTaxID || strings.TrimSpace(s.CompanyID) != ""
	}
	if d.TaxRepresentative != nil {
		for _, s := range d.TaxRepresentative.TaxSchemes {
			f.sellerTaxID = f.sellerTaxID || (strings.TrimSpace(s.CompanyID) != "" && strings.TrimSpace(s.TaxScheme) == vatScheme)
		}
	}
	for i := range lines {
		l := &lines[i]
		what := "line " + l.ID
		lf := lineFacts{id: l.ID, net: r.amount(what+" LineExtensionAmount", &l.LineExtension),
			quantity: r.quantity(what+" quantity", qty(l)), price: r.amount(what+" PriceAmount", &l.Price.Amount),
			baseQty: r.quantity(what+" BaseQuantity", l.Price.BaseQuantity), lineAllowances: decimal.Zero, lineCharges: decimal.Zero,
			category: strings.TrimSpace(l.Item.TaxCategory.ID), rate: r.num(what+" ClassifiedTaxCategory Percent", l.Item.TaxCategory.Percent)}
		for _, ac := range l.AllowanceCharges {
			a := r.amount(what+" AllowanceCharge Amount", &ac.Amount).or0()
			if ac.ChargeIndicator {
				lf.lineCharges = lf.lineCharges.Add(a)
			} else {
				lf.lineAllowances = lf.lineAllowances.Add(a)
			}
		}
		f.lines = append(f.lines, lf)
	}
	for i, ac := range d.AllowanceCharges {
		what := fmt.Sprintf("document AllowanceCharge %d", i+1)
		c := chargeFacts{amount: r.amount(what+" Amount", &ac.Amount)}
		if ac.TaxCategory != nil {
			c.category = strings.TrimSpace(ac.TaxCategory.ID)
			c.rate = r.num(what+" TaxCategory Percent", ac.TaxCategory.Percent)
		}
		if ac.ChargeIndicator {
			f.charges = append(f.charges, c)
		} else {
			f.allowances = append(f.allowances, c)
		}
	}
	for i, tt := range d.TaxTotals {
		what := fmt.Sprintf("TaxTotal %d", i+1)
		t := taxTotalFacts{amount: r.amount(what+" TaxAmount", &tt.TaxAmount)}
		if !f.vat.ok && strings.TrimSpace(tt.TaxAmount.Currency) == strings.TrimSpace(d.DocumentCurrencyCode) {
			f.vat = t.amount
		}
		for j, st := range tt.Subtotals {
			what := fmt.Sprintf("%s TaxSubtotal %d", what, j+1)
			t.subtotals = append(t.subtotals, subtotalFacts{taxable: r.amount(what+" TaxableAmount", &st.TaxableAmount),
				tax: r.amount(what+" TaxAmount", &st.TaxAmount), category: strings.TrimSpace(st.Category.ID),
				rate: r.num(what+" Percent", st.Category.Percent), exemptionCode: strings.TrimSpace(st.Category.ExemptionReasonCode),
				exemptionReason: strings.TrimSpace(st.Category.ExemptionReason)})
		}
		f.taxTotals = append(f.taxTotals, t)
	}
	mt := &d.Totals
	f.lineExtension = r.amount("LineExtensionAmount", &mt.LineExtension)
	f.taxExclusive = r.amount("TaxExclusiveAmount", &mt.TaxExclusive)
	f.taxInclusive = r.amount("TaxInclusiveAmount", &mt.TaxInclusive)
	f.payable = r.amount("PayableAmount", &mt.Payable)
	f.allowanceTotal = r.amount("AllowanceTotalAmount", mt.AllowanceTotal)
	f.chargeTotal = r.amount("ChargeTotalAmount", mt.ChargeTotal)
	f.prepaid = r.amount("PrepaidAmount", mt.Prepaid)
	f.rounding = r.amount("PayableRoundingAmount", mt.Rounding)
	if r.err != nil {
		return nil, r.err
	}
	return f, nil
}
