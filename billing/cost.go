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
// shares add up to inv's totals to the cent. An adjustment's share may be
// negative (a late record that shrank a minimum-run top-up). An invoice
// whose annex cannot carry its lines (a partial credit note, which has none)
// is an error.
func Shares(inv *Invoice) ([]ScopeCost, error) {
	type scope struct {
		project string
		env     usage.Environment
	}
	// shareKey is the lines shared out together: one meter and class of
	// one month, whatever their bands and rate-card versions.
	type shareKey struct {
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

	amounts := map[shareKey]decimal.Decimal{}
	var keys []shareKey
	for _, l := range inv.Lines {
		k := shareKey{l.Meter, l.Class, l.Adjusts}
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
	// The shares add up by construction; an invoice whose own totals do not
	// add up (a bug elsewhere) is refused rather than shared out wrong.
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

// share splits total (whole cents) among weights (nil is none) in
// proportion, to the cent: each part rounded down, then the cents left
// over one each to the largest remainders (the first on a tie), so the
// parts add up to total exactly; a negative total is shared as its size and
// negated. A zero total is zero parts, whatever the weights.
//
// Weights may be negative: an adjustment month's annex is what its late
// records changed, and a late record can shrink a run's minimum-run top-up,
// so one project's row may be negative while another's bills the line;
// each then carries its signed share, as the invoice nets them. Weights that
// cancel out (a late record that moved quantity from one rate-card
// version's line to another's) share the total by their sizes instead.
func share(total decimal.Decimal, weights []*big.Rat) ([]decimal.Decimal, error) {
	parts := make([]decimal.Decimal, len(weights))
	for i := range parts {
		parts[i] = decimal.Zero
	}
	if total.IsZero() {
		return parts, nil
	}
	cents := total.Shift(2)
	if !cents.IsInteger() {
		return nil, fmt.Errorf("%s is not a whole number of cents", total.String())
	}
	sum := new(big.Rat)
	for _, w := range weights {
		if w != nil {
			sum.Add(sum, w)
		}
	}
	if sum.Sign() == 0 {
		abs := make([]*big.Rat, len(weights))
		for i, w := range weights {
			if w != nil {
				abs[i] = new(big.Rat).Abs(w)
				sum.Add(sum, abs[i])
			}
		}
		weights = abs
	}
	if sum.Sign() == 0 {
		return nil, fmt.Errorf("%s: %w", total.StringFixed(2), errNoWeight)
	}
	// A negative total is shared as its size, then negated, so that a credit
	// note's shares are exactly its invoice's, negated.
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
		// Div is Euclidean division: with the positive denominator a Rat
		// keeps, it rounds down, so every remainder is in [0, 1) and the
		// cents left over are fewer than the parts.
		q := new(big.Int).Div(exact.Num(), exact.Denom())
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
	if cents.IsNegative() {
		for i := range parts {
			parts[i] = parts[i].Neg()
		}
	}
	return parts, nil
}
