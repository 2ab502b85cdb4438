// Package institution is the one definition of the platform's customer: a
// public institution, as the configuration declares it (tenants[] in the
// file). Every part takes what it needs from it rather than describing the
// institution again: the collector the tenants it accepts records of and
// how long it keeps their logs, billing the customer its documents are
// addressed to, tokens the tenant they may read (by ID).
//
// It sits at the bottom of the tree: it imports none of ours.
package institution

import (
	"slices"
	"time"
)

// DefaultLogRetention is how long an institution's log lines are kept when
// its log_retention is left out.
const DefaultLogRetention = 30 * 24 * time.Hour

// Institution is one institution on the platform.
type Institution struct {
	// ID is the tenant's name in records, tokens and URLs.
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// LogRetention is how long the collector keeps the institution's log
	// lines; 0 (left out) means DefaultLogRetention.
	LogRetention time.Duration `yaml:"log_retention"`
	// BuyerReference is the reference the institution's accounting matches
	// invoices with (mandatory on Peppol e-invoices).
	BuyerReference string `yaml:"buyer_reference"`
	// VAT is the institution's VAT treatment; standard 21 % when left out.
	VAT VAT `yaml:"vat"`
	// BillingStart is the institution's first billed month ("2026-01"):
	// months close in order from it. Left out, the month of its first usage.
	BillingStart string `yaml:"billing_start"`
	// Language is what its documents are written in: en (the default), fr
	// or nl (locale.Parse).
	Language string `yaml:"language"`
	// Party is the institution's identity on e-invoices: legal_name, vat_id,
	// company_id, endpoint_id, endpoint_scheme, address, email.
	Party Party `yaml:",inline"`
}

// Retention is how long the institution's log lines are kept, the default
// applied.
func (i Institution) Retention() time.Duration {
	if i.LogRetention == 0 {
		return DefaultLogRetention
	}
	return i.LogRetention
}

// VAT is an institution's VAT treatment as the file states it; billing
// turns it into the figures its documents carry.
type VAT struct {
	// Category is standard (the default) or exempt.
	Category string `yaml:"category"`
	// Rate in percent for the standard category; 21 when left out.
	Rate string `yaml:"rate"`
	// ExemptionReason and ExemptionCode (e.g. VATEX-EU-132) explain an exemption.
	ExemptionReason string `yaml:"exemption_reason"`
	ExemptionCode   string `yaml:"exemption_code"`
}

// Directory is the platform's institutions, in the order of the file.
type Directory []Institution

// Has reports whether id is an institution of the directory: records,
// events and windows of any other tenant are refused.
func (d Directory) Has(id string) bool {
	return slices.ContainsFunc(d, func(i Institution) bool { return i.ID == id })
}

// IDs returns the institutions' IDs in the directory's order.
func (d Directory) IDs() []string {
	ids := make([]string, len(d))
	for n, i := range d {
		ids[n] = i.ID
	}
	return ids
}

// Of returns IDs as institutions that declare nothing but their ID: what
// tests and tools that only need the tenant wall start from.
func Of(ids ...string) Directory {
	d := make(Directory, len(ids))
	for n, id := range ids {
		d[n] = Institution{ID: id}
	}
	return d
}
