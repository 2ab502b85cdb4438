package billing

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/usage"
)

// Document kinds.
const (
	KindInvoice    = "invoice"
	KindCreditNote = "credit_note"
)

// Invoice is an invoice or a credit note: the document as issued (and as
// exported to JSON). Amounts are in Currency. On an invoice lines are
// positive and allowances negative; a full credit note carries the credited
// invoice's amounts negated (its lines negative, the allowance reversal
// positive). Either way the amounts of the lines and allowances add up to
// Totals.TaxExclusive.
type Invoice struct {
	Kind string `json:"kind"`
	// Number is empty on a draft.
	Number string `json:"number,omitempty"`
	// IssueDate and DueDate are calendar dates in the platform's time zone.
	IssueDate string `json:"issue_date,omitempty"`
	DueDate   string `json:"due_date,omitempty"`
	Period    string `json:"period"`
	// PeriodStart and PeriodEnd are the first and last day of the period.
	PeriodStart string   `json:"period_start"`
	PeriodEnd   string   `json:"period_end"`
	Currency    string   `json:"currency"`
	Seller      Seller   `json:"seller"`
	Customer    Customer `json:"customer"`
	// Refers is, on a credit note, the number of the invoice it corrects.
	Refers string `json:"refers,omitempty"`
	// Reason says why a credit note was issued.
	Reason     string         `json:"reason,omitempty"`
	Lines      []Line         `json:"lines"`
	Allowances []Allowance    `json:"allowances"`
	VAT        []VATBreakdown `json:"vat"`
	Totals     Totals         `json:"totals"`
	Annex      []AnnexRow     `json:"annex"`
	// Provisional marks a draft computed before the period's grace period
	// ended: records may still arrive.
	Provisional bool `json:"provisional,omitempty"`
	// Closed, on a draft of a month that is closed for the institution,
	// says so: "already issued as PM-2026-000001", or "closed with nothing
	// to invoice on …". Such a draft recomputes the month from every record
	// received by now: it is not what was issued.
	Closed string `json:"closed,omitempty"`
	// Pending, on such a draft, are the lines that the month's records
	// received since it closed add to the next invoice, as adjustments.
	Pending []Line `json:"pending,omitempty"`
	Inputs  Inputs `json:"inputs"`
	// InputsHash is the sha-256 of the canonical JSON of Seller, Customer and
	// Inputs: what issuing froze, and what `verify` checks first.
	InputsHash string `json:"inputs_hash"`
}

// Line is one invoice line: the quantities of one meter and environment
// class priced in one tier band at one unit price.
type Line struct {
	Meter ratecard.Meter `json:"meter"`
	Class ratecard.Class `json:"class"`
	// Band is the 1-based graduated tier band (1 for a flat price).
	Band      int           `json:"band"`
	Unit      ratecard.Unit `json:"unit"`
	Quantity  Quantity      `json:"quantity"`
	UnitPrice Price         `json:"unit_price"`
	Amount    Money         `json:"amount"`
	// Adjusts names the earlier month whose late records this line bills.
	Adjusts string `json:"adjusts,omitempty"`
	// Tier, on a line of a graduated price, is its band's range of the
	// month's quantity, in billing units; absent on a flat price.
	Tier *TierRange `json:"tier,omitempty"`
	// Version and Effective name the rate-card version that priced the
	// line and its effective date, when more than one version priced the
	// month's quantity of the line's meter and class: what explains two
	// prices for one meter.
	Version   string `json:"version,omitempty"`
	Effective string `json:"effective,omitempty"`
}

// The correction line of a partial credit note credits an amount of the
// whole invoice rather than a quantity of one meter: quantity 1 of unit
// "one" (UN/ECE C62) at a flat price, for every class of environment.
const (
	CorrectionMeter ratecard.Meter = "correction"
	CorrectionClass ratecard.Class = "all"
	CorrectionUnit  ratecard.Unit  = "one"
)

// TierText is the line's band as people read it: its range of the month's
// quantity with the unit ("0–100 GB"), "" on a flat price.
func (l Line) TierText() string {
	if l.Tier == nil {
		return ""
	}
	return l.Tier.String() + " " + string(l.Unit)
}

// VersionText names the rate-card version that priced the line and its
// effective date ("v2 from 2026-11-16"), when two versions priced the
// month: "" otherwise.
func (l Line) VersionText() string {
	if l.Version == "" {
		return ""
	}
	return l.Version + " from " + l.Effective
}

// TierRange is a graduated band: the month's quantity from From up to UpTo
// ("" for the last band, which has no bound), in billing units.
type TierRange struct {
	From string `json:"from"`
	UpTo string `json:"up_to,omitempty"`
}

// String writes the range as people read it: "0–100", "100+".
func (t TierRange) String() string {
	if t.UpTo == "" {
		return t.From + "+"
	}
	return t.From + "–" + t.UpTo
}

// Allowance is a document-level allowance: the SLA credit.
type Allowance struct {
	Reason string `json:"reason"`
	// Period is the month whose availability earned it.
	Period       string          `json:"period"`
	Availability decimal.Decimal `json:"availability"`
	Percent      decimal.Decimal `json:"percent"`
	// Base is the sum of the production lines of Period.
	Base   Money `json:"base"`
	Amount Money `json:"amount"`
}

// VATBreakdown is the VAT of one category.
type VATBreakdown struct {
	Category        string          `json:"category"`
	Rate            decimal.Decimal `json:"rate"`
	Taxable         Money           `json:"taxable"`
	Amount          Money           `json:"amount"`
	ExemptionReason string          `json:"exemption_reason,omitempty"`
	ExemptionCode   string          `json:"exemption_code,omitempty"`
}

// Totals are the document's sums.
type Totals struct {
	Lines        Money `json:"lines"`
	Allowances   Money `json:"allowances"`
	TaxExclusive Money `json:"tax_exclusive"`
	VAT          Money `json:"vat"`
	Payable      Money `json:"payable"`
}

// AnnexRow is an invoice's quantity of one meter for one project and environment.
type AnnexRow struct {
	Project     string            `json:"project"`
	Environment usage.Environment `json:"environment"`
	Meter       ratecard.Meter    `json:"meter"`
	Unit        ratecard.Unit     `json:"unit"`
	Quantity    Quantity          `json:"quantity"`
	Adjusts     string            `json:"adjusts,omitempty"`
	// When Quantity (what was billed) holds more than was measured, it is
	// broken out: Measured, plus MinRunTopUp (a run shorter than the rate
	// card's minimum run duration, billed as if it lasted that long) and
	// ReservedUplift (the reserved quantity billed above the used one under
	// the max basis). Absent when billed = measured, as the usage API
	// reports it.
	Measured       *Quantity `json:"measured,omitempty"`
	MinRunTopUp    *Quantity `json:"min_run_top_up,omitempty"`
	ReservedUplift *Quantity `json:"reserved_uplift,omitempty"`
}

// Inputs are what an invoice is derived from, frozen when it is issued.
type Inputs struct {
	Tenant string `json:"tenant"`
	Period string `json:"period"`
	// Cutoff is the issue cutoff: records received after it are not billed.
	Cutoff time.Time `json:"cutoff"`
	// RateCard is the hash under which the rate card's canonical content is frozen.
	RateCard string `json:"rate_card"`
	// CreditTiers turned each month's availability into its credit percent.
	CreditTiers []credit.Tier `json:"credit_tiers,omitempty"`
	// Months are the invoiced month first, then each earlier month whose late
	// records are billed as adjustments.
	Months []MonthInput `json:"months,omitempty"`
	// Invoice is, for a credit note, the credited invoice's inputs hash, and
	// Credit what is credited.
	Invoice string       `json:"invoice,omitempty"`
	Credit  *CreditInput `json:"credit,omitempty"`
}

// MonthInput is one month an invoice bills records of.
type MonthInput struct {
	Period    string    `json:"period"`
	Selection Selection `json:"selection"`
	// Records and Digest describe the selected records (see rated.Digest),
	// digested by DigestVersion: absent on invoices issued before there was
	// more than one (the sequential sha-256), which `verify` re-derives so.
	Records       int64  `json:"records"`
	Digest        string `json:"digest"`
	DigestVersion int    `json:"digest_version,omitempty"`
	// Days is what the invoice billed of each calendar day (of window
	// start), so that reconciliation can check every record is billed
	// exactly once, and verify name the days that changed.
	Days map[string]DayBill `json:"days,omitempty"`
	// SLA is the month's availability, absent when the institution had no
	// production app; CreditPercent what it earned under the credit tiers.
	SLA           *credit.Figures `json:"sla,omitempty"`
	CreditPercent decimal.Decimal `json:"credit_percent"`
}

// DayBill is what an invoice billed of one day of a month: the number of
// records, and the digest (a truncated sha-256) of the day's records it
// selected — for an adjustment, of all those received by its cutoff.
type DayBill struct {
	Records int64  `json:"records"`
	Digest  string `json:"digest"`
}

// inputsHash returns the hex sha-256 of what inv was derived from.
func (inv *Invoice) inputsHash() string {
	b, err := json.Marshal(struct {
		Seller   Seller   `json:"seller"`
		Customer Customer `json:"customer"`
		Inputs   Inputs   `json:"inputs"`
	}{inv.Seller, inv.Customer, inv.Inputs})
	if err != nil {
		panic(fmt.Sprintf("billing: inputs do not encode: %v", err)) // plain data: cannot happen
	}
	return sha256Hex(b)
}

// Money is an amount rounded to cents; JSON writes it with two decimals.
type Money struct{ decimal.Decimal }

// Quantity is a quantity in billing units rounded to 6 decimals.
type Quantity struct{ decimal.Decimal }

// Price is a unit price as the rate card writes it ("0.0400").
type Price struct{ decimal.Decimal }

// MarshalJSON writes "40.02".
func (m Money) MarshalJSON() ([]byte, error) { return json.Marshal(m.StringFixed(2)) }

// UnmarshalJSON reads a decimal string.
func (m *Money) UnmarshalJSON(b []byte) error { return m.Decimal.UnmarshalJSON(b) }

// MarshalJSON writes "1000.500000".
func (q Quantity) MarshalJSON() ([]byte, error) { return json.Marshal(q.StringFixed(6)) }

// neg returns -q, nil for nil.
func (q *Quantity) neg() *Quantity {
	if q == nil {
		return nil
	}
	return &Quantity{q.Neg()}
}

// UnmarshalJSON reads a decimal string.
func (q *Quantity) UnmarshalJSON(b []byte) error { return q.Decimal.UnmarshalJSON(b) }

// String writes the price with the decimals the rate card gave it.
func (p Price) String() string { return p.StringFixed(max(0, -p.Exponent())) }

// Format prints the price as String does, for every verb: decimal.Decimal's
// own Format, promoted otherwise, drops the rate card's trailing zeros
// (0.95 for 0.9500, 0 for 0.00) in text output.
func (p Price) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, p.String()) }

// MarshalJSON writes the price with the rate card's decimals.
func (p Price) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// UnmarshalJSON reads a decimal string, keeping its decimals.
func (p *Price) UnmarshalJSON(b []byte) error { return p.Decimal.UnmarshalJSON(b) }

func money(d decimal.Decimal) Money { return Money{d.Round(2)} }

// lineKey is what DESIGN.md §5 keys invoice lines by.
type lineKey struct {
	meter   ratecard.Meter
	class   ratecard.Class
	band    int
	price   string
	adjusts string
}

type lineAcc struct {
	base    big.Rat
	unit    ratecard.Unit
	price   decimal.Decimal
	version int  // the first version that priced it, to keep lines in time order
	mixed   bool // another version priced it too, at the same price
	tier    *TierRange
}

type meterClass struct {
	meter ratecard.Meter
	class ratecard.Class
}

// price turns rated quantities into lines. Graduated tiers count the month's
// cumulative quantity per meter and class, earlier versions first, starting
// from start (what earlier invoices billed of the month, for adjustments).
func price(card *ratecard.Card, loc *time.Location, q map[qkey]*big.Rat, start map[meterClass]*big.Rat, adjusts string) []Line {
	keys := make([]qkey, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b qkey) int {
		return cmp.Or(cmp.Compare(a.meter, b.meter), cmp.Compare(a.class, b.class), cmp.Compare(a.version, b.version))
	})
	acc := map[lineKey]*lineAcc{}
	cum := map[meterClass]*big.Rat{}
	versions := map[meterClass][]int{} // the versions that priced each, in order
	for _, k := range keys {
		mc := meterClass{k.meter, k.class}
		c := cum[mc]
		if c == nil {
			c = new(big.Rat)
			if s := start[mc]; s != nil {
				c.Set(s)
			}
			cum[mc] = c
		}
		versions[mc] = append(versions[mc], k.version)
		rate, _ := card.Versions[k.version].Rate(k.meter, k.class)
		div := new(big.Rat).SetInt64(k.meter.Divisor())
		lo := new(big.Rat)
		from, to := new(big.Rat).Set(c), new(big.Rat).Add(c, q[k])
		bandFrom := "0"
		for i, band := range rate.Bands() {
			var hi *big.Rat // nil: unbounded
			if band.UpTo.Valid {
				hi = new(big.Rat).Mul(band.UpTo.Decimal.Rat(), div)
			}
			a := maxRat(from, lo)
			b := to
			if hi != nil && hi.Cmp(b) < 0 {
				b = hi
			}
			if b.Cmp(a) > 0 {
				lk := lineKey{meter: k.meter, class: k.class, band: i + 1, price: Price{band.Price}.String(), adjusts: adjusts}
				la := acc[lk]
				if la == nil {
					la = &lineAcc{unit: rate.Unit, price: band.Price, version: k.version}
					if len(rate.Tiers) > 0 {
						la.tier = &TierRange{From: bandFrom}
						if band.UpTo.Valid {
							la.tier.UpTo = band.UpTo.Decimal.String()
						}
					}
					acc[lk] = la
				}
				la.mixed = la.mixed || la.version != k.version
				la.base.Add(&la.base, new(big.Rat).Sub(b, a))
			}
			if hi == nil {
				break
			}
			lo, bandFrom = hi, band.UpTo.Decimal.String()
		}
		c.Set(to)
	}
	type ordered struct {
		Line
		version int
	}
	out := make([]ordered, 0, len(acc))
	for lk, la := range acc {
		div := new(big.Rat).SetInt64(lk.meter.Divisor())
		qty := decimal.NewFromBigRat(new(big.Rat).Quo(&la.base, div), 6)
		l := Line{Meter: lk.meter, Class: lk.class, Band: lk.band, Unit: la.unit,
			Quantity: Quantity{qty}, UnitPrice: Price{la.price}, Amount: money(qty.Mul(la.price)), Adjusts: lk.adjusts, Tier: la.tier}
		if len(versions[meterClass{lk.meter, lk.class}]) > 1 && !la.mixed {
			v := card.Versions[la.version]
			l.Version, l.Effective = v.Name, v.Effective.In(loc).Format(time.DateOnly)
		}
		out = append(out, ordered{l, la.version})
	}
	slices.SortFunc(out, func(a, b ordered) int {
		return cmp.Or(cmp.Compare(a.Adjusts, b.Adjusts), classOrder(a.Class)-classOrder(b.Class),
			meterOrder(a.Meter)-meterOrder(b.Meter), cmp.Compare(a.Band, b.Band),
			cmp.Compare(a.version, b.version), a.UnitPrice.Cmp(b.UnitPrice.Decimal))
	})
	lines := make([]Line, len(out))
	for i, o := range out {
		lines[i] = o.Line
	}
	return lines
}

// meterOrder keeps the rate card's order of meters.
func meterOrder(m ratecard.Meter) int { return slices.Index(ratecard.Meters(), m) }

// classOrder puts production first, as the SLA credit applies to it.
func classOrder(c ratecard.Class) int {
	if c == ratecard.Prod {
		return 0
	}
	return 1
}

func maxRat(a, b *big.Rat) *big.Rat {
	if a.Cmp(b) >= 0 {
		return a
	}
	return b
}

// annexRows turns the annex quantities into rows.
func annexRows(annex, topUp, uplift map[annexKey]*big.Rat, adjusts string) []AnnexRow {
	rows := make([]AnnexRow, 0, len(annex))
	for k, v := range annex {
		div := new(big.Rat).SetInt64(k.meter.Divisor())
		units := func(x *big.Rat) *Quantity { return &Quantity{decimal.NewFromBigRat(new(big.Rat).Quo(x, div), 6)} }
		row := AnnexRow{Project: k.project, Environment: k.env, Meter: k.meter, Unit: k.meter.Unit(), Quantity: *units(v), Adjusts: adjusts}
		t, u := topUp[k], uplift[k]
		if (t != nil && t.Sign() != 0) || (u != nil && u.Sign() != 0) {
			measured := new(big.Rat).Set(v)
			if t != nil && t.Sign() != 0 {
				measured.Sub(measured, t)
				row.MinRunTopUp = units(t)
			}
			if u != nil && u.Sign() != 0 {
				measured.Sub(measured, u)
				row.ReservedUplift = units(u)
			}
			row.Measured = units(measured)
		}
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b AnnexRow) int {
		return cmp.Or(cmp.Compare(a.Adjusts, b.Adjusts), cmp.Compare(a.Project, b.Project), cmp.Compare(a.Environment, b.Environment),
			meterOrder(a.Meter)-meterOrder(b.Meter))
	})
	return rows
}

// total computes the allowances, VAT and totals from the lines and inputs.
func (inv *Invoice) total() {
	lines := decimal.Zero
	prod := map[string]decimal.Decimal{}
	for _, l := range inv.Lines {
		lines = lines.Add(l.Amount.Decimal)
		if l.Class == ratecard.Prod {
			m := cmp.Or(l.Adjusts, inv.Period)
			prod[m] = prod[m].Add(l.Amount.Decimal)
		}
	}
	// Never nil: no allowance is [] in JSON, as on a credit note.
	inv.Allowances = []Allowance{}
	allowances := decimal.Zero
	for _, m := range inv.Inputs.Months {
		base := prod[m.Period]
		if !m.CreditPercent.IsPositive() || !base.IsPositive() {
			continue
		}
		amount := base.Mul(m.CreditPercent).Div(decimal.NewFromInt(100)).Round(2)
		if amount.GreaterThan(base) {
			amount = base
		}
		reason := fmt.Sprintf("SLA credit: availability %s %% in %s", m.SLA.Availability.String(), m.Period)
		inv.Allowances = append(inv.Allowances, Allowance{Reason: reason, Period: m.Period, Availability: m.SLA.Availability,
			Percent: m.CreditPercent, Base: money(base), Amount: money(amount.Neg())})
		allowances = allowances.Sub(amount)
	}
	taxable := lines.Add(allowances)
	vat := VATBreakdown{Category: inv.Customer.VAT.Category, Rate: inv.Customer.VAT.Rate, Taxable: money(taxable),
		Amount:          money(taxable.Mul(inv.Customer.VAT.Rate).Div(decimal.NewFromInt(100))),
		ExemptionReason: inv.Customer.VAT.ExemptionReason, ExemptionCode: inv.Customer.VAT.ExemptionCode}
	inv.VAT = []VATBreakdown{vat}
	inv.Totals = Totals{Lines: money(lines), Allowances: money(allowances), TaxExclusive: money(taxable), VAT: vat.Amount,
		Payable: money(taxable.Add(vat.Amount.Decimal))}
}
