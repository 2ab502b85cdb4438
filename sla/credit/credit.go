// Package credit is the SLA promise's arithmetic that both the SLA calculator
// and billing use: the availability figures of an institution's month and
// the tiers that turn them into a credit percent (DESIGN.md §6). It imports
// neither, so that sla does not depend on billing, nor billing on sla.
package credit

import "github.com/shopspring/decimal"

// Figures are the availability figures an invoice's SLA credit is computed
// from; invoices freeze them with their inputs.
type Figures struct {
	// Availability is in percent, e.g. 99.85.
	Availability decimal.Decimal `json:"availability"`
	// EligibleMinutes and DownMinutes (platform-caused) when the source knows them.
	EligibleMinutes int64 `json:"eligible_minutes,omitempty"`
	DownMinutes     int64 `json:"down_minutes,omitempty"`
	// Source names where the figures come from (a file, the SLA calculator).
	Source string `json:"source"`
}

// Tier grants Credit percent when availability is below Below percent.
type Tier struct {
	Below  decimal.Decimal `yaml:"below" json:"below"`
	Credit decimal.Decimal `yaml:"credit" json:"credit"`
}

// DefaultTiers are DESIGN.md §6's: below 99.9 % → 10 %, below 99 % → 25 %,
// below 95 % → 100 %.
func DefaultTiers() []Tier {
	return []Tier{
		{Below: decimal.RequireFromString("99.9"), Credit: decimal.NewFromInt(10)},
		{Below: decimal.NewFromInt(99), Credit: decimal.NewFromInt(25)},
		{Below: decimal.NewFromInt(95), Credit: decimal.NewFromInt(100)},
	}
}

// Percent returns the credit an availability earns: the largest credit of
// the tiers it is below.
func Percent(tiers []Tier, availability decimal.Decimal) decimal.Decimal {
	credit := decimal.Zero
	for _, t := range tiers {
		if availability.LessThan(t.Below) && t.Credit.GreaterThan(credit) {
			credit = t.Credit
		}
	}
	return credit
}
