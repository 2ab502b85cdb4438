package config

import (
	"errors"
	"fmt"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/locale"
	"github.com/paasmeter/paasmeter/sla/credit"
)

// BillingConfig configures the invoice run (DESIGN.md §5).
type BillingConfig struct {
	// RateCard is the versioned rate-card file (billing/ratecard); relative
	// paths are taken from the working directory.
	RateCard string `yaml:"rate_card"`
	// SLAFile, when set, gives each institution's monthly availability
	// (billing/slafile) in place of the SLA calculator's figures: for months the
	// engine cannot measure (before the platform's events were kept) or an
	// availability agreed by hand.
	SLAFile string `yaml:"sla_file"`
	// GracePeriod after a month ends before its invoices can be issued.
	GracePeriod time.Duration `yaml:"grace_period"`
	// CutoffLag is how far an invoice's cutoff stays behind its issue
	// (billing.Config.CutoffLag): records received within it go on the next invoice.
	CutoffLag time.Duration `yaml:"cutoff_lag"`
	// InvoicePrefix and CreditNotePrefix start the numbers (PM-2026-000001).
	InvoicePrefix    string `yaml:"invoice_prefix"`
	CreditNotePrefix string `yaml:"credit_note_prefix"`
	// PaymentTerms is the time from issue to due date.
	PaymentTerms time.Duration `yaml:"payment_terms"`
	// AdjustMonths is how many earlier months an invoice looks into for
	// records that arrived after those months were invoiced.
	AdjustMonths int `yaml:"adjust_months"`
	// ReconcileInterval is how often the collector reconciles the current
	// month and exports paasmeter_reconcile_*; 0 turns it off.
	ReconcileInterval time.Duration `yaml:"reconcile_interval"`
	// SLACreditTiers turn availability into a credit percent.
	SLACreditTiers []credit.Tier `yaml:"sla_credit_tiers"`
	// Seller is the platform operator as its invoices name it.
	Seller billing.Seller `yaml:"seller"`
}

// defaultBilling is BillingConfig's defaults.
func defaultBilling() BillingConfig {
	d := billing.DefaultConfig()
	return BillingConfig{GracePeriod: d.GracePeriod, CutoffLag: billing.DefaultCutoffLag, InvoicePrefix: d.InvoicePrefix, CreditNotePrefix: d.CreditNotePrefix,
		PaymentTerms: d.PaymentTerms, AdjustMonths: d.AdjustMonths, SLACreditTiers: d.CreditTiers, ReconcileInterval: time.Hour}
}

// defaultVATRate is Belgium's standard rate.
const defaultVATRate = "21"

// vatOf converts an institution's VAT treatment to billing's form.
func vatOf(c institution.VAT) (billing.VAT, error) {
	switch c.Category {
	case "", "standard":
		rate := c.Rate
		if rate == "" {
			rate = defaultVATRate
		}
		r, err := decimal.NewFromString(rate)
		if err != nil {
			return billing.VAT{}, fmt.Errorf("vat.rate: %q is not a number", c.Rate)
		}
		v := billing.VAT{Category: billing.VATStandard, Rate: r}
		return v, v.Validate()
	case "exempt":
		if c.Rate != "" && c.Rate != "0" {
			return billing.VAT{}, fmt.Errorf("vat.rate: an exempt institution has no VAT rate (got %s)", c.Rate)
		}
		v := billing.VAT{Category: billing.VATExempt, Rate: decimal.Zero, ExemptionReason: c.ExemptionReason, ExemptionCode: c.ExemptionCode}
		return v, v.Validate()
	}
	return billing.VAT{}, fmt.Errorf("vat.category: %q must be standard or exempt", c.Category)
}

// validateBilling adds billing's problems to errs.
func (c *Config) validateBilling() []error {
	var errs []error
	for i, t := range c.Tenants {
		if _, err := vatOf(t.VAT); err != nil {
			errs = append(errs, fmt.Errorf("tenants[%d].%w", i, err))
		}
		if _, err := locale.Parse(t.Language); err != nil {
			errs = append(errs, fmt.Errorf("tenants[%d].language: %w", i, err))
		}
	}
	// The billing section is checked as a whole only where invoices are
	// made; the institutions' Peppol identifiers always are (BillingConfig
	// checks them with the rest), so that none reaches an e-invoice.
	if c.Billing.RateCard == "" {
		for i, t := range c.Tenants {
			if err := t.Party.Validate(fmt.Sprintf("tenants[%d]", i)); err != nil {
				errs = append(errs, err)
			}
		}
		return errs
	}
	if _, err := c.BillingConfig(); err != nil {
		errs = append(errs, unjoin(err)...)
	}
	return errs
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// BillingConfig returns the invoice run's configuration: the billing section
// and the institutions as customers, in the order of the file.
func (c *Config) BillingConfig() (billing.Config, error) {
	loc, err := c.Location()
	if err != nil {
		return billing.Config{}, errors.New("time_zone: is not valid")
	}
	b := c.Billing
	out := billing.Config{Location: loc, Seller: b.Seller, CreditTiers: b.SLACreditTiers, GracePeriod: b.GracePeriod, InvoicePrefix: b.InvoicePrefix,
		CreditNotePrefix: b.CreditNotePrefix, PaymentTerms: b.PaymentTerms, AdjustMonths: b.AdjustMonths, CutoffLag: b.CutoffLag}
	for _, t := range c.Tenants {
		v, err := vatOf(t.VAT)
		if err != nil {
			continue // reported by validateBilling with the tenant's index
		}
		// English stays "": the documents of institutions that chose no
		// language read, and hash, as they did before there was a choice.
		lang, _ := locale.Parse(t.Language)
		if lang == locale.English {
			lang = ""
		}
		out.Customers = append(out.Customers, billing.Customer{Tenant: t.ID, Name: t.Name, BuyerReference: t.BuyerReference, VAT: v, Party: t.Party,
			Language: lang, Start: t.BillingStart})
	}
	return out, out.Validate()
}
