package billing

import (
	"cmp"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/usage"
)

// ScopeCost is one project and environment's share of an invoice.
type ScopeCost struct {
	Project     string            `json:"project"`
	Environment usage.Environment `json:"environment"`
	// Lines is its share of the lines, Credit of the SLA credit (negative
	// or zero), VAT of the VAT; Payable is their sum.
	Lines   Money `json:"lines"`
	Credit  Money `json:"credit"`
	VAT     Money `json:"vat"`
	Payable Money `json:"payable"`
}

// CostMethod says how Shares shares an invoice out, for those who read them.
const CostMethod = "Each line's amount is shared among the projects and environments by their share of the line's " +
	"meter, class and month in the annex (billed quantities: a graduated tier or a second rate-card version is " +
	"shared at the line's average price); each month's SLA credit by their share of that month's production lines; " +
	"the VAT by their share of the taxable amount. Each share is rounded to the cent, the cents left over going to " +
	"the largest remainders, so that the shares add up to the invoice's totals exactly."

// Shares shares inv's amounts out among the projects and environments of
// its annex (CostMethod says how), sorted by project then environment. The
// shares add up to inv's totals to the cent; an invoice whose annex cannot
// carry its lines (a partial credit note, which has none) is an error.
func Shares(inv *Invoice) ([]ScopeCost, error) {
	type scope struct {
		project string
		env     usage.Environment
	}
	type lineKey struct {
		meter   ratecard.Meter
		class   ratecard.Class
		adjusts string
	}
	var scopes []scope
	index := map[scope]int{}
	for _, a := range inv.Annex {
		s := scope{a.Project, a.Environment}
		if _, ok := index[s]; !ok {
			index[s] = len(scopes)
			scopes = append(scopes, s)
		}
	}
	slices.SortFunc(scopes, func(a, b scope) int {
		return cmp.Or(cmp.Compare(a.project, b.project), cmp.Compare(a.env, b.env))
	})
	for i, s := range scopes {
		index[s] = i
	}
	n := len(scopes)
	lines := make([]decimal.Decimal, n)
	// prod[month] is each scope's share of that month's production lines.
	prod := map[string][]decimal.Decimal{}

	amounts := map[lineKey]decimal.Decimal{}
	var keys []lineKey
	for _, l := range inv.Lines {
		k := lineKey{l.Meter, l.Class, l.Adjusts}
		if _, ok := amounts[k]; !ok {
			keys = append(keys, k)
		}
		amounts[k] = amounts[k].Add(l.Amount.Decimal)
	}
	for _, k := range keys {
		byScope := map[int]*big.Rat{}
		for _, a := range inv.Annex {
			if a.Meter == k.meter && ratecard.ClassOf(a.Environment) == k.class && a.Adjusts == k.adjusts {
				addRat(byScope, index[scope{a.Project, a.Environment}], a.Quantity.Rat())
			}
		}
		weights := make([]*big.Rat, n)
		for i, w := range byScope {
			weights[i] = w
		}
		parts, err := share(amounts[k], weights)
		if err != nil {
			return nil, fmt.Errorf("billing: %s %s lines%s: %w", k.meter, k.class, adjustsText(k.adjusts), err)
		}
		month := cmp.Or(k.adjusts, inv.Period)
		for i, p := range parts {
			lines[i] = lines[i].Add(p)
			if k.class == ratecard.Prod {
				if prod[month] == nil {
					prod[month] = make([]decimal.Decimal, n)
				}
				prod[month][i] = prod[month][i].Add(p)
			}
		}
	}

	credit := make([]decimal.Decimal, n)
	for _, a := range inv.Allowances {
		parts, err := share(a.Amount.Decimal, rats(prod[a.Period]))
		if err != nil {
			return nil, fmt.Errorf("billing: SLA credit of %s: %w", a.Period, err)
		}
		for i, p := range parts {
			credit[i] = credit[i].Add(p)
		}
	}
	taxable := make([]decimal.Decimal, n)
	for i := range taxable {
		taxable[i] = lines[i].Add(credit[i])
	}
	vat, err := share(inv.Totals.VAT.Decimal, rats(taxable))
	if err != nil {
		return nil, fmt.Errorf("billing: VAT: %w", err)
	}
	out := make([]ScopeCost, n)
	payable := decimal.Zero
	for i, s := range scopes {
		p := taxable[i].Add(vat[i])
		payable = payable.Add(p)
		out[i] = ScopeCost{Project: s.project, Environment: s.env, Lines: Money{lines[i]}, Credit: Money{credit[i]}, VAT: Money{vat[i]}, Payable: Money{p}}
	}
	if !payable.Equal(inv.Totals.Payable.Decimal) {
		return nil, fmt.Errorf("billing: the shares add up to %s, the invoice's payable is %s", payable.StringFixed(2), inv.Totals.Payable.StringFixed(2))
	}
	return out, nil
}

func adjustsText(adjusts string) string {
	if adjusts == "" {
		return ""
	}
	return " adjusting " + adjusts
}

// rats returns ds as weights; nil ds is no weight at all.
func rats(ds []decimal.Decimal) []*big.Rat {
	out := make([]*big.Rat, len(ds))
	for i, d := range ds {
		out[i] = d.Rat()
	}
	return out
}

var errNoWeight = errors.New("an amount with nothing to share it by")

// share splits total (whole cents) among weights (nil or ≥ 0) in
// proportion, to the cent: each part rounded toward zero, then the cents
// left over one each to the largest remainders (the first on a tie), so the
// parts add up to total exactly. A zero total is zero parts, whatever the
// weights; a non-zero total needs a positive weight.
func share(total decimal.Decimal, weights []*big.Rat) ([]decimal.Decimal, error) {
	parts := make([]decimal.Decimal, len(weights))
	for i := range parts {
		parts[i] = decimal.Zero
	}
	if total.IsZero() {
		return parts, nil
	}
	sum := new(big.Rat)
	for _, w := range weights {
		if w != nil {
			if w.Sign() < 0 {
				return nil, fmt.Errorf("a negative weight %s", w.FloatString(6))
			}
			sum.Add(sum, w)
		}
	}
	if sum.Sign() == 0 {
		return nil, fmt.Errorf("%s: %w", total.StringFixed(2), errNoWeight)
	}
	cents := total.Shift(2)
	if !cents.IsInteger() {
		return nil, fmt.Errorf("%s is not a whole number of cents", total.String())
	}
	neg := cents.IsNegative()
	whole := cents.Abs().BigInt()
	type rem struct {
		i int
		r *big.Rat
	}
	var rems []rem
	left := new(big.Int).Set(whole)
	for i, w := range weights {
		if w == nil || w.Sign() == 0 {
			continue
		}
		exact := new(big.Rat).Mul(new(big.Rat).SetInt(whole), w)
		exact.Quo(exact, sum)
		q := new(big.Int).Quo(exact.Num(), exact.Denom())
		left.Sub(left, q)
		parts[i] = decimal.NewFromBigInt(q, -2)
		rems = append(rems, rem{i, new(big.Rat).Sub(exact, new(big.Rat).SetInt(q))})
	}
	slices.SortStableFunc(rems, func(a, b rem) int { return b.r.Cmp(a.r) })
	for k := 0; left.Sign() > 0; k++ {
		i := rems[k].i
		parts[i] = parts[i].Add(decimal.New(1, -2))
		left.Sub(left, big.NewInt(1))
	}
	if neg {
		for i := range parts {
			parts[i] = parts[i].Neg()
		}
	}
	return parts, nil
}
