// Package export writes an issued invoice or credit note (billing.Invoice)
// in each of its forms, by name (Write, ContentType, FileName): the PDF for
// people (billing/pdf), the Peppol UBL e-invoice (billing/ubl, "xml"), and
// for accounting JSON and CSV, written here, whose
// layout is a contract: changing it breaks the imports that institutions
// build on it. docs/invoices.md describes both for operators and accountants.
//
// JSON is the document as billing encodes it, indented by two spaces, with a
// trailing newline: the field names of billing.Invoice are the format. Its
// lists (lines, allowances, vat, annex) are [] when empty, never null, so
// that invoices and credit notes have one shape.
//
// CSV is UTF-8 without a byte-order mark, comma-separated, LF line endings,
// quoted as RFC 4180 requires. The first row is the header; then come one row
// per invoice line, one per allowance, one per VAT breakdown, and five totals,
// in that order. The columns, always these and in this order:
//
//	document_number    the invoice or credit note number (empty on a draft)
//	document_kind      invoice or credit_note
//	issue_date         YYYY-MM-DD (empty on a draft)
//	period             the billed month, YYYY-MM
//	tenant             the institution
//	currency           ISO 4217 code, e.g. EUR
//	record_type        line, allowance, vat or total
//	line_no            line: 1, 2, … in the invoice's order
//	meter              line: the rate-card meter (correction on a partial credit note)
//	environment_class  line: prod or nonprod
//	band               line: the 1-based graduated tier band (1 on a flat price and a correction)
//	unit               line: the billing unit, e.g. vCPU-hour
//	quantity           line: quantity in billing units, 6 decimals
//	unit_price         line: price per unit with the rate card's decimals
//	amount             every row: the amount, 2 decimals
//	vat_category       vat: S (standard) or E (exempt)
//	vat_rate           vat: the rate in percent, e.g. 21
//	adjusts_period     line: the earlier month a late-records line bills;
//	                   allowance: the month whose availability earned it
//	description        allowance: its reason; vat: "taxable <amount>" and any
//	                   exemption; total: lines, allowances, tax_exclusive, vat
//	                   or payable
//	refers             every row of a credit note: the number of the invoice
//	                   it corrects (empty on an invoice)
//	tier_range         line: the graduated band's range of the month's
//	                   quantity, e.g. "0–100" (empty on a flat price)
//	rate_version       line: the rate-card version that priced it and its
//	                   effective date, e.g. "v2 from 2026-11-16", when two
//	                   versions priced the month's meter and class
//
// A cell that does not apply to a row's record_type is empty. Amounts carry
// the document's signs: lines are positive and allowances negative on an
// invoice, and a credit note negates every amount of what it credits (so its
// allowances are positive). The amounts of the line and allowance rows add up
// to the tax_exclusive total; tax_exclusive plus the vat rows is payable.
// Numbers are written from decimals, never through floating point.
package export

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/pdf"
	"github.com/paasmeter/paasmeter/billing/ubl"
)

// ErrUnknownFormat is returned by Write for a format not in Formats().
var ErrUnknownFormat = errors.New("unknown export format")

// formats are the known formats by name.
var formats = map[string]struct {
	contentType string
	write       func(io.Writer, *billing.Invoice) error
}{
	"csv":  {"text/csv; charset=utf-8", CSV},
	"json": {"application/json", JSON},
	"pdf":  {"application/pdf", pdf.Render},
	"xml":  {"application/xml", ubl.Render},
}

// Formats lists the known formats, sorted.
func Formats() []string {
	out := make([]string, 0, len(formats))
	for f := range formats {
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// Write writes inv in format ("csv" or "json").
func Write(w io.Writer, inv *billing.Invoice, format string) error {
	f, ok := formats[format]
	if !ok {
		return fmt.Errorf("%w %q: the formats are %s", ErrUnknownFormat, format, strings.Join(Formats(), ", "))
	}
	return f.write(w, inv)
}

// ContentType returns the media type of format, "" for an unknown format
// (Write reports that as an error).
func ContentType(format string) string { return formats[format].contentType }

// FileName returns the name a download of inv in format goes by: its number
// and the format's extension, e.g. PM-2026-000001.csv. A draft has no number
// yet, so its name says what it is: draft-caami-2026-11.csv. It returns "" for
// an unknown format.
func FileName(inv *billing.Invoice, format string) string {
	if _, ok := formats[format]; !ok {
		return ""
	}
	if inv.Number == "" {
		return fmt.Sprintf("draft-%s-%s.%s", inv.Customer.Tenant, inv.Period, format)
	}
	return inv.Number + "." + format
}

// JSON writes inv as indented JSON, two spaces, with a trailing newline.
func JSON(w io.Writer, inv *billing.Invoice) error {
	doc := *inv
	doc.Lines, doc.Allowances, doc.VAT, doc.Annex = orEmpty(doc.Lines), orEmpty(doc.Allowances), orEmpty(doc.VAT), orEmpty(doc.Annex)
	b, err := json.MarshalIndent(&doc, "", "  ")
	if err != nil {
		return fmt.Errorf("export %s as JSON: %w", name(inv), err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("export %s as JSON: %w", name(inv), err)
	}
	return nil
}

// orEmpty returns s, or an empty slice for nil, which JSON writes as [].
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// columns is the CSV header; the package comment documents each column.
var columns = []string{
	"document_number", "document_kind", "issue_date", "period", "tenant", "currency",
	"record_type", "line_no", "meter", "environment_class", "band", "unit", "quantity", "unit_price",
	"amount", "vat_category", "vat_rate", "adjusts_period", "description", "refers", "tier_range", "rate_version",
}

// row is what varies between the rows of a document; the document columns
// that start every row come from the invoice.
type row struct {
	recordType, lineNo, meter, class, band, unit, quantity, unitPrice, amount,
	vatCategory, vatRate, adjusts, description, tier, version string
}

// CSV writes inv as CSV: a header row, then its lines, allowances, VAT
// breakdowns and totals, in the columns the package comment lists.
func CSV(w io.Writer, inv *billing.Invoice) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(columns); err != nil {
		return fmt.Errorf("export %s as CSV: %w", name(inv), err)
	}
	for _, r := range rows(inv) {
		rec := []string{inv.Number, inv.Kind, inv.IssueDate, inv.Period, inv.Customer.Tenant, inv.Currency,
			r.recordType, r.lineNo, r.meter, r.class, r.band, r.unit, r.quantity, r.unitPrice,
			r.amount, r.vatCategory, r.vatRate, r.adjusts, r.description, inv.Refers, r.tier, r.version}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("export %s as CSV: %w", name(inv), err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("export %s as CSV: %w", name(inv), err)
	}
	return nil
}

// rows returns the CSV rows of inv after the header.
func rows(inv *billing.Invoice) []row {
	out := make([]row, 0, len(inv.Lines)+len(inv.Allowances)+len(inv.VAT)+5)
	for i, l := range inv.Lines {
		band := ""
		if l.Band > 0 { // band 0: a correction line issued before it had band 1
			band = strconv.Itoa(l.Band)
		}
		r := row{recordType: "line", lineNo: strconv.Itoa(i + 1), meter: string(l.Meter), class: string(l.Class),
			band: band, unit: string(l.Unit), quantity: l.Quantity.StringFixed(6), unitPrice: l.UnitPrice.String(),
			amount: cents(l.Amount), adjusts: l.Adjusts, version: l.VersionText()}
		if l.Tier != nil {
			r.tier = l.Tier.String()
		}
		out = append(out, r)
	}
	for _, a := range inv.Allowances {
		out = append(out, row{recordType: "allowance", amount: cents(a.Amount), adjusts: a.Period, description: a.Reason})
	}
	for _, v := range inv.VAT {
		out = append(out, row{recordType: "vat", amount: cents(v.Amount), vatCategory: v.Category, vatRate: v.Rate.String(),
			description: vatDescription(v)})
	}
	t := inv.Totals
	for _, tot := range []struct {
		name   string
		amount billing.Money
	}{
		{"lines", t.Lines}, {"allowances", t.Allowances}, {"tax_exclusive", t.TaxExclusive}, {"vat", t.VAT}, {"payable", t.Payable},
	} {
		out = append(out, row{recordType: "total", amount: cents(tot.amount), description: tot.name})
	}
	return out
}

// vatDescription says what a VAT breakdown was computed on and, for an
// exemption, why: "taxable 7.40; exempt: <reason> (<code>)".
func vatDescription(v billing.VATBreakdown) string {
	d := "taxable " + cents(v.Taxable)
	switch r, c := v.ExemptionReason, v.ExemptionCode; {
	case r != "" && c != "":
		d += fmt.Sprintf("; exempt: %s (%s)", r, c)
	case r != "" || c != "":
		d += "; exempt: " + r + c
	}
	return d
}

// cents writes an amount with two decimals, as the JSON does.
func cents(m billing.Money) string { return m.StringFixed(2) }

// name identifies inv in errors.
func name(inv *billing.Invoice) string {
	if inv.Number == "" {
		return fmt.Sprintf("the draft of %s for %s", inv.Customer.Tenant, inv.Period)
	}
	return inv.Number
}
