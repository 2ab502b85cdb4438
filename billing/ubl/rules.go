package ubl

import (
	"fmt"

	"github.com/shopspring/decimal"
)

// rule is a rule Check applies: check returns one message per violation.
type rule struct {
	id    string
	check func(f *facts) []string
}

// VAT category codes (UNCL 5305) the category rules are about.
const (
	standardRated = "S"
	exempt        = "E"
)

// rules are the rules Check applies, in the order of its doc comment, which
// paraphrases each.
var rules = []rule{
	{"BR-CO-10", func(f *facts) []string {
		return equals("LineExtensionAmount", f.lineExtension, "the sum of the line net amounts", sumNet(f.lines))
	}},
	{"BR-CO-11", func(f *facts) []string {
		return sumTotal("AllowanceTotalAmount", f.allowanceTotal, "allowances", f.allowances)
	}},
	{"BR-CO-12", func(f *facts) []string { return sumTotal("ChargeTotalAmount", f.chargeTotal, "charges", f.charges) }},
	{"BR-CO-13", func(f *facts) []string {
		return equals("TaxExclusiveAmount", f.taxExclusive, "LineExtensionAmount − AllowanceTotalAmount + ChargeTotalAmount",
			f.lineExtension.or0().Sub(f.allowanceTotal.or0()).Add(f.chargeTotal.or0()))
	}},
	{"BR-CO-14", func(f *facts) (out []string) {
		for i, t := range f.taxTotals {
			if len(t.subtotals) == 0 {
				continue // a TaxTotal in the tax currency has no breakdown
			}
			sum := decimal.Zero
			for _, s := range t.subtotals {
				sum = sum.Add(s.tax.or0())
			}
			out = append(out, equals(fmt.Sprintf("the TaxAmount of TaxTotal %d", i+1), t.amount, "the sum of its subtotals' tax amounts", sum)...)
		}
		return out
	}},
	{"BR-CO-15", func(f *facts) []string {
		return equals("TaxInclusiveAmount", f.taxInclusive, "TaxExclusiveAmount + the TaxAmount in the document currency",
			f.taxExclusive.or0().Add(f.vat.or0()))
	}},
	{"BR-CO-16", func(f *facts) []string {
		return equals("PayableAmount", f.payable, "TaxInclusiveAmount − PrepaidAmount + PayableRoundingAmount",
			f.taxInclusive.or0().Sub(f.prepaid.or0()).Add(f.rounding.or0()))
	}},
	{"BR-CO-17", subtotalTax("")},
	{"BR-CO-25", func(f *facts) []string {
		if f.payable.ok && f.payable.v.IsPositive() && !f.dueDate && !f.paymentTerms {
			return []string{fmt.Sprintf("PayableAmount %s is due, but there is neither a DueDate nor a PaymentTerms note", f.payable)}
		}
		return nil
	}},

	{"BR-S-01", breakdown(standardRated, false)},
	{"BR-S-02", sellerTaxID(standardRated, kindLine)},
	{"BR-S-03", sellerTaxID(standardRated, kindAllowance)},
	{"BR-S-04", sellerTaxID(standardRated, kindCharge)},
	{"BR-S-05", itemRate(standardRated, kindLine, "above zero", decimal.Decimal.IsPositive)},
	{"BR-S-06", itemRate(standardRated, kindAllowance, "above zero", decimal.Decimal.IsPositive)},
	{"BR-S-07", itemRate(standardRated, kindCharge, "above zero", decimal.Decimal.IsPositive)},
	{"BR-S-08", taxable(standardRated, true)},
	{"BR-S-09", subtotalTax(standardRated)},
	{"BR-S-10", exemption(standardRated, false)},

	{"BR-E-01", breakdown(exempt, true)},
	{"BR-E-02", sellerTaxID(exempt, kindLine)},
	{"BR-E-03", sellerTaxID(exempt, kindAllowance)},
	{"BR-E-04", sellerTaxID(exempt, kindCharge)},
	{"BR-E-05", itemRate(exempt, kindLine, "zero", decimal.Decimal.IsZero)},
	{"BR-E-06", itemRate(exempt, kindAllowance, "zero", decimal.Decimal.IsZero)},
	{"BR-E-07", itemRate(exempt, kindCharge, "zero", decimal.Decimal.IsZero)},
	{"BR-E-08", taxable(exempt, false)},
	{"BR-E-09", func(f *facts) (out []string) {
		for _, s := range f.subtotals(exempt) {
			out = append(out, equals("the TaxAmount of the E subtotal", s.tax, "zero", decimal.Zero)...)
		}
		return out
	}},
	{"BR-E-10", exemption(exempt, true)},

	{"BR-27", func(f *facts) (out []string) {
		for _, l := range f.lines {
			if l.price.ok && l.price.v.IsNegative() {
				out = append(out, fmt.Sprintf("line %s: PriceAmount %s is negative", l.id, l.price))
			}
		}
		return out
	}},
	{"PEPPOL-EN16931-R003", func(f *facts) []string {
		if f.buyerReference == "" && f.orderReference == "" {
			return []string{"neither a BuyerReference nor an OrderReference ID"}
		}
		return nil
	}},
	{"PEPPOL-EN16931-R120", func(f *facts) (out []string) {
		slack := decimal.New(2, -2)
		for _, l := range f.lines {
			base := decimal.NewFromInt(1)
			if l.baseQty.ok {
				base = l.baseQty.v
			}
			if !base.IsPositive() {
				continue // R121's
			}
			want := l.quantity.or0().Mul(l.price.or0()).Div(base).Sub(l.lineAllowances).Add(l.lineCharges)
			if l.net.or0().Sub(want).Abs().GreaterThan(slack) {
				out = append(out, fmt.Sprintf("line %s: LineExtensionAmount %s is not quantity %s × price %s / base quantity %s (%s)",
					l.id, l.net, l.quantity, l.price, show(base), show(want)))
			}
		}
		return out
	}},
	{"PEPPOL-EN16931-R121", func(f *facts) (out []string) {
		for _, l := range f.lines {
			if l.baseQty.ok && !l.baseQty.v.IsPositive() {
				out = append(out, fmt.Sprintf("line %s: BaseQuantity %s is not above zero", l.id, l.baseQty))
			}
		}
		return out
	}},
}

// equals is the message when got is not want, or nil.
func equals(what string, got num, of string, want decimal.Decimal) []string {
	if got.is(want) {
		return nil
	}
	return []string{fmt.Sprintf("%s is %s, not %s, %s", what, got, of, show(want))}
}

func sumNet(lines []lineFacts) decimal.Decimal {
	sum := decimal.Zero
	for _, l := range lines {
		sum = sum.Add(l.net.or0())
	}
	return sum
}

// sumTotal checks a document's total of allowances or charges: absent with
// none, their sum otherwise.
func sumTotal(what string, total num, of string, items []chargeFacts) []string {
	if !total.ok && len(items) == 0 {
		return nil
	}
	sum := decimal.Zero
	for _, c := range items {
		sum = sum.Add(c.amount.or0())
	}
	return equals(what, total, "the sum of the document's "+of, sum)
}

// subtotals returns the VAT breakdowns of a category, "" for all.
func (f *facts) subtotals(category string) []subtotalFacts {
	var out []subtotalFacts
	for _, t := range f.taxTotals {
		for _, s := range t.subtotals {
			if category == "" || s.category == category {
				out = append(out, s)
			}
		}
	}
	return out
}

// kind selects what a rule about taxed items looks at.
type kind int

const (
	kindLine kind = iota
	kindAllowance
	kindCharge
)

// taxed is a line, allowance or charge as the VAT breakdown counts it.
type taxed struct {
	kind     kind
	label    string // "line 2", "allowance 1"
	category string
	rate     num
	// amount is what it adds to its category's taxable amount.
	amount decimal.Decimal
}

// items returns the document's lines, allowances and charges of a category.
func (f *facts) items(category string) []taxed {
	var out []taxed
	for _, l := range f.lines {
		out = append(out, taxed{kindLine, "line " + l.id, l.category, l.rate, l.net.or0()})
	}
	for i, a := range f.allowances {
		out = append(out, taxed{kindAllowance, fmt.Sprintf("allowance %d", i+1), a.category, a.rate, a.amount.or0().Neg()})
	}
	for i, c := range f.charges {
		out = append(out, taxed{kindCharge, fmt.Sprintf("charge %d", i+1), c.category, c.rate, c.amount.or0()})
	}
	n := 0
	for _, t := range out {
		if t.category == category {
			out[n] = t
			n++
		}
	}
	return out[:n]
}

// breakdown: items of a category need a VAT breakdown of it, or exactly one.
func breakdown(category string, exactlyOne bool) func(*facts) []string {
	return func(f *facts) []string {
		if len(f.items(category)) == 0 {
			return nil
		}
		switch n := len(f.subtotals(category)); {
		case n == 0:
			return []string{fmt.Sprintf("lines, allowances or charges of category %s but no %s TaxSubtotal", category, category)}
		case n > 1 && exactlyOne:
			return []string{fmt.Sprintf("%d TaxSubtotals of category %s, not one", n, category)}
		}
		return nil
	}
}

// sellerTaxID: items of a category need the seller's VAT or tax registration identifier.
func sellerTaxID(category string, k kind) func(*facts) []string {
	return func(f *facts) []string {
		if f.sellerTaxID {
			return nil
		}
		for _, t := range f.items(category) {
			if t.kind == k {
				return []string{fmt.Sprintf("%s is of category %s but the seller has no VAT nor tax registration identifier", t.label, category)}
			}
		}
		return nil
	}
}

// itemRate: items of a kind and category have a rate that ok accepts.
func itemRate(category string, k kind, want string, ok func(decimal.Decimal) bool) func(*facts) []string {
	return func(f *facts) (out []string) {
		for _, t := range f.items(category) {
			if t.kind == k && (!t.rate.ok || !ok(t.rate.v)) {
				out = append(out, fmt.Sprintf("%s of category %s: rate %s, not %s", t.label, category, t.rate, want))
			}
		}
		return out
	}
}

// taxable: a category's taxable amount is what its items add up to, per
// rate or over all rates.
func taxable(category string, byRate bool) func(*facts) []string {
	return func(f *facts) (out []string) {
		for _, s := range f.subtotals(category) {
			if byRate && !s.rate.ok {
				out = append(out, fmt.Sprintf("a TaxSubtotal of category %s has no rate", category))
				continue
			}
			sum := decimal.Zero
			for _, t := range f.items(category) {
				if !byRate || t.rate.is(s.rate.v) {
					sum = sum.Add(t.amount)
				}
			}
			what := fmt.Sprintf("the TaxableAmount of the %s subtotal", category)
			of := fmt.Sprintf("the %s lines − allowances + charges", category)
			if byRate {
				what = fmt.Sprintf("the TaxableAmount of the %s subtotal at %s %%", category, s.rate.v)
				of += " at that rate"
			}
			out = append(out, equals(what, s.taxable, of, sum)...)
		}
		return out
	}
}

// subtotalTax: a subtotal's tax is its taxable amount × rate, rounded half
// away from zero to cents as billing rounds; for subtotals of a category,
// "" for all. A subtotal without a rate is left to the rules on rates.
func subtotalTax(category string) func(*facts) []string {
	return func(f *facts) (out []string) {
		for _, s := range f.subtotals(category) {
			if !s.rate.ok {
				continue
			}
			want := s.taxable.or0().Mul(s.rate.v).Shift(-2).Round(2)
			what := fmt.Sprintf("the TaxAmount of the %s subtotal at %s %%", s.category, s.rate.v)
			out = append(out, equals(what, s.tax, "TaxableAmount × rate / 100", want)...)
		}
		return out
	}
}

// exemption: a subtotal of a category has (need) or has not an exemption
// reason code or text.
func exemption(category string, need bool) func(*facts) []string {
	return func(f *facts) (out []string) {
		for _, s := range f.subtotals(category) {
			has := s.exemptionCode != "" || s.exemptionReason != ""
			switch {
			case need && !has:
				out = append(out, fmt.Sprintf("the %s subtotal has neither an exemption reason code nor a reason", category))
			case !need && has:
				out = append(out, fmt.Sprintf("the %s subtotal has an exemption reason (%q, %q)", category, s.exemptionCode, s.exemptionReason))
			}
		}
		return out
	}
}
