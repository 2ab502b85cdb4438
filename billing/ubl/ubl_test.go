package ubl

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/internal/golden"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

func money(s string) billing.Money { return billing.Money{Decimal: decimal.RequireFromString(s)} }

// examples are the documents the golden files hold.
type example struct {
	name string
	inv  *billing.Invoice
	// golden is the file the document renders to; "" for a variant of one.
	golden string
}

func examples(t testing.TB) (caami, ona, full, partial example) {
	c, o := billingtest.Issued(t, "PM-2026-000001"), billingtest.Issued(t, "PM-2026-000002")
	return example{"the invoice with an SLA credit and standard VAT", c, "PM-2026-000001.xml"},
		example{"the VAT-exempt invoice without allowances", o, "PM-2026-000002.xml"},
		example{"the credit note of the whole invoice with an SLA credit", billingtest.CreditNote(t, c, "PMC-2026-000001", "2026-12-10", "", "wrong institution"), "PMC-2026-000001.xml"},
		example{"the partial credit note, a correction line", billingtest.CreditNote(t, c, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill"), "PMC-2026-000002.xml"}
}

func render(t testing.TB, inv *billing.Invoice) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Render(&buf, inv); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRender(t *testing.T) {
	for _, ex := range documents(t) {
		t.Run(ex.name+" renders the same bytes every time, those of its golden file if it has one", func(t *testing.T) {
			got := render(t, ex.inv)
			if ex.golden != "" {
				golden.Check(t, filepath.Join("testdata", ex.golden), got)
			}
			if again := render(t, ex.inv); !bytes.Equal(again, got) {
				t.Errorf("rendering again gives other bytes:\n%s\nvs\n%s", again, got)
			}
		})
		t.Run(ex.name+" breaks none of the rules Check knows", func(t *testing.T) {
			vs, err := Check(render(t, ex.inv))
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				t.Error(v)
			}
		})
		t.Run(ex.name+" is valid against the UBL 2.1 schema", func(t *testing.T) {
			if out, err := validate(t, render(t, ex.inv)); err != nil {
				t.Errorf("xmllint: %v\n%s", err, out)
			}
		})
		t.Run(ex.name+" decodes and encodes back to the same bytes, as the rule fixtures rely on", func(t *testing.T) {
			b := render(t, ex.inv)
			var d document
			if err := decode(b, &d); err != nil {
				t.Fatal(err)
			}
			again, err := encode(d)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Errorf("re-encoded:\n%s\nrendered:\n%s", again, b)
			}
		})
	}
}

// schemaEnv overrides where the UBL 2.1 schemas are: the folder holding xsd/.
const schemaEnv = "PAASMETER_UBL_SCHEMAS"

// validate runs xmllint on doc against the schema of its root element. It
// fails the test under CI=true and skips it elsewhere when xmllint or the
// schemas are missing.
func validate(t *testing.T, doc []byte) ([]byte, error) {
	t.Helper()
	dir := os.Getenv(schemaEnv)
	if dir == "" {
		// A copy of the OASIS files travels with the tests, so any checkout validates offline.
		dir = filepath.Join("testdata", "ubl-2.1")
	}
	xsd := filepath.Join(dir, "xsd", "maindoc", "UBL-Invoice-2.1.xsd")
	if bytes.Contains(doc, []byte("<CreditNote ")) {
		xsd = filepath.Join(dir, "xsd", "maindoc", "UBL-CreditNote-2.1.xsd")
	}
	var missing string
	if _, err := os.Stat(xsd); err != nil {
		missing = "no UBL 2.1 schemas: " + err.Error() + "; they ship in testdata/ubl-2.1, or set " + schemaEnv
	}
	xmllint, err := exec.LookPath("xmllint")
	if err != nil {
		missing = "no xmllint: install Debian's libxml2-utils (make test does, through scripts/test-deps.sh)"
	}
	if missing != "" {
		testenv.Missing(t, missing)
	}
	cmd := exec.Command(xmllint, "--noout", "--schema", xsd, "-")
	cmd.Stdin = bytes.NewReader(doc)
	return cmd.CombinedOutput()
}

func TestSchemaValidationRejects(t *testing.T) {
	caami, _, full, _ := examples(t)
	tests := []struct {
		name   string
		inv    *billing.Invoice
		mutate func(b []byte) []byte
	}{
		{"an invoice whose BuyerReference comes after its parties is not valid UBL", caami.inv, func(b []byte) []byte {
			ref := "  <cbc:BuyerReference>CAAMI-IT-2026</cbc:BuyerReference>\n"
			b = bytes.Replace(b, []byte(ref), nil, 1)
			return bytes.Replace(b, []byte("  <cac:PaymentMeans>"), []byte(ref+"  <cac:PaymentMeans>"), 1)
		}},
		{"a credit note with an InvoiceLine is not valid UBL", full.inv, func(b []byte) []byte {
			return bytes.ReplaceAll(b, []byte("cac:CreditNoteLine>"), []byte("cac:InvoiceLine>"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := render(t, tt.inv)
			bad := tt.mutate(b)
			if bytes.Equal(bad, b) {
				t.Fatal("the mutation changed nothing")
			}
			if out, err := validate(t, bad); err == nil {
				t.Errorf("xmllint accepted it:\n%s", out)
			}
		})
	}
}

// TestCreditNoteSigns checks that a UBL credit note states what it credits
// in positive amounts: the credit note of a whole invoice has the invoice's
// allowances, taxes, totals and line amounts.
func TestCreditNoteSigns(t *testing.T) {
	caami, _, full, partial := examples(t)
	var inv, cn, part document
	for _, d := range []struct {
		ex  example
		doc *document
	}{{caami, &inv}, {full, &cn}, {partial, &part}} {
		if err := decode(render(t, d.ex.inv), d.doc); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("the credit note of a whole invoice has the invoice's totals", func(t *testing.T) {
		if !equalJSON(cn.Totals, inv.Totals) {
			t.Errorf("credit note totals %+v, invoice totals %+v", cn.Totals, inv.Totals)
		}
		if cn.Totals.Payable.Value != "106.30" {
			t.Errorf("payable %s, want 106.30", cn.Totals.Payable.Value)
		}
	})
	t.Run("the credit note of a whole invoice has the invoice's SLA credit as an allowance, and its taxes", func(t *testing.T) {
		if !equalJSON(cn.AllowanceCharges, inv.AllowanceCharges) {
			t.Errorf("credit note allowances %+v, invoice allowances %+v", cn.AllowanceCharges, inv.AllowanceCharges)
		}
		if len(cn.AllowanceCharges) != 1 || cn.AllowanceCharges[0].ChargeIndicator || cn.AllowanceCharges[0].Amount.Value != "9.09" {
			t.Errorf("allowances %+v, want one allowance of 9.09", cn.AllowanceCharges)
		}
		if !equalJSON(cn.TaxTotals, inv.TaxTotals) {
			t.Errorf("credit note taxes %+v, invoice taxes %+v", cn.TaxTotals, inv.TaxTotals)
		}
	})
	t.Run("the credit note of a whole invoice has the invoice's lines, with positive quantities", func(t *testing.T) {
		if len(cn.CreditNoteLines) != len(inv.InvoiceLines) {
			t.Fatalf("%d credit note lines, %d invoice lines", len(cn.CreditNoteLines), len(inv.InvoiceLines))
		}
		for i, l := range cn.CreditNoteLines {
			il := inv.InvoiceLines[i]
			if *l.CreditedQuantity != *il.InvoicedQuantity || l.LineExtension != il.LineExtension || l.Price.Amount != il.Price.Amount {
				t.Errorf("line %s: credited %s × %s = %s, invoiced %s × %s = %s", l.ID, l.CreditedQuantity.Value, l.Price.Amount.Value,
					l.LineExtension.Value, il.InvoicedQuantity.Value, il.Price.Amount.Value, il.LineExtension.Value)
			}
		}
	})
	t.Run("a partial credit note credits one unit at a positive price", func(t *testing.T) {
		l := part.CreditNoteLines[0]
		if l.CreditedQuantity.Value != "1.000000" || l.Price.Amount.Value != "50.00" || l.LineExtension.Value != "50.00" {
			t.Errorf("credited %s × %s = %s, want 1 × 50.00 = 50.00", l.CreditedQuantity.Value, l.Price.Amount.Value, l.LineExtension.Value)
		}
		if part.Totals.Payable.Value != "60.50" {
			t.Errorf("payable %s, want 60.50", part.Totals.Payable.Value)
		}
	})
}

func equalJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestRenderRefuses(t *testing.T) {
	edit := func(f func(inv *billing.Invoice)) *billing.Invoice {
		inv := billingtest.Issued(t, "PM-2026-000001")
		f(inv)
		return inv
	}
	tests := []struct {
		name    string
		inv     *billing.Invoice
		is      error
		message string
	}{
		{"a draft, which has no number nor issue date, is not an e-invoice", edit(func(inv *billing.Invoice) { inv.Number, inv.IssueDate = "", "" }),
			ErrIncomplete, "the draft of caami for 2026-11: incomplete for Peppol BIS Billing 3.0: no number, issue_date"},
		{"an institution without a buyer reference cannot be invoiced over Peppol", edit(func(inv *billing.Invoice) { inv.Customer.BuyerReference = "" }),
			ErrIncomplete, "no customer.buyer_reference"},
		{"a seller without a Peppol endpoint cannot invoice over Peppol", edit(func(inv *billing.Invoice) { inv.Seller.Party.EndpointScheme = "" }),
			ErrIncomplete, "no seller.party.endpoint_scheme"},
		{"an invoice whose payable total is a cent off breaks BR-CO-16", edit(func(inv *billing.Invoice) { inv.Totals.Payable = money("106.31") }),
			ErrRules, "BR-CO-16: PayableAmount is 106.31, not TaxInclusiveAmount − PrepaidAmount + PayableRoundingAmount, 106.30"},
		{"an invoice without a due date does not say when it is due, which breaks BR-CO-25", edit(func(inv *billing.Invoice) { inv.DueDate = "" }),
			ErrRules, "BR-CO-25: PayableAmount 106.30 is due, but there is neither a DueDate nor a PaymentTerms note"},
		{"an allowance that raises the amount due is refused", edit(func(inv *billing.Invoice) { inv.Allowances[0].Amount = money("9.09") }),
			nil, `allowance "SLA credit: availability 99.85 % in 2026-11" of 9.09 raises the amount due`},
		{"an unknown kind of document is refused", edit(func(inv *billing.Invoice) { inv.Kind = "debit_note" }),
			nil, `kind "debit_note" is neither invoice nor credit_note`},
		{"an exempt institution without an exemption reason is refused", edit(func(inv *billing.Invoice) {
			inv.Customer.VAT = billing.VAT{Category: billing.VATExempt, Rate: decimal.Zero}
		}), nil, "customer vat.exemption_reason"},
		{"a due date that is not a date is refused", edit(func(inv *billing.Invoice) { inv.DueDate = "2027-02-30" }),
			nil, `due_date: "2027-02-30" is not a date like 2026-12-04`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Render(&buf, tt.inv)
			if err == nil || !strings.Contains(err.Error(), tt.message) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("got %v, want an error with %q (is %v)", err, tt.message, tt.is)
			}
			if buf.Len() > 0 {
				t.Errorf("wrote %d bytes", buf.Len())
			}
		})
	}

	t.Run("a failing writer's error is returned", func(t *testing.T) {
		disk := errors.New("disk full")
		if err := Render(failingWriter{disk}, billingtest.Issued(t, "PM-2026-000001")); !errors.Is(err, disk) {
			t.Errorf("got %v, want the writer's error", err)
		}
	})
}

// linesOf returns the lines of an Invoice or a CreditNote.
func linesOf(d *document) []line {
	if d.XMLName.Local == "CreditNote" {
		return d.CreditNoteLines
	}
	return d.InvoiceLines
}

// Mutations of a rendered document.
func setAmount(a *amount, v string) { a.Value = v }

func subtotal(d *document) *taxSubtotal { return &d.TaxTotals[0].Subtotals[0] }

func noSellerTaxID(d *document) { d.Supplier.TaxSchemes = nil }

// withZero adds a document-level allowance or charge of 0.00 of a category
// and rate, and its total: the document stays consistent, so that a fixture
// can break a rule about allowances or charges alone.
func withZero(charge bool, category, rate string) func(d *document) {
	return func(d *document) {
		d.AllowanceCharges = append(d.AllowanceCharges, allowanceCharge{ChargeIndicator: charge, Reason: "nothing",
			Amount: amount{Currency: "EUR", Value: "0.00"}, TaxCategory: &taxCategory{ID: category, Percent: rate, TaxScheme: vatScheme}})
		switch {
		case charge && d.Totals.ChargeTotal == nil:
			d.Totals.ChargeTotal = &amount{Currency: "EUR", Value: "0.00"}
		case !charge && d.Totals.AllowanceTotal == nil:
			d.Totals.AllowanceTotal = &amount{Currency: "EUR", Value: "0.00"}
		}
	}
}

// all applies mutations in turn.
func all(ms ...func(d *document)) func(d *document) {
	return func(d *document) {
		for _, m := range ms {
			m(d)
		}
	}
}

// totalsAfterTax sets the totals that follow the tax-exclusive one: the tax
// inclusive and payable amounts.
func totalsAfterTax(v string) func(d *document) {
	return func(d *document) { setAmount(&d.Totals.TaxInclusive, v); setAmount(&d.Totals.Payable, v) }
}

func TestCheckCatches(t *testing.T) {
	caami, ona, full, partial := examples(t)
	C, O, CN, P := render(t, caami.inv), render(t, ona.inv), render(t, full.inv), render(t, partial.inv)
	tests := []struct {
		name string
		doc  []byte
		// rule is the rule the fixture breaks (none: it breaks nothing);
		// also the rules that necessarily break with it.
		rule   string
		also   []string
		mutate func(d *document)
	}{
		{"a zero allowance and charge of category S keep the invoice consistent", C, "", nil,
			all(withZero(false, "S", "21"), withZero(true, "S", "21"))},
		{"a zero allowance and charge of category E keep the exempt invoice consistent", O, "", nil,
			all(withZero(false, "E", "0"), withZero(true, "E", "0"))},
		{"an OrderReference stands for a missing BuyerReference", O, "", nil, func(d *document) {
			d.BuyerReference, d.OrderReference = "", &documentRef{ID: "PO-4471"}
		}},

		{"a line a cent above the LineExtensionAmount (the VAT breakdown following the line) breaks BR-CO-10", CN, "BR-CO-10", nil, func(d *document) {
			setAmount(&linesOf(d)[1].LineExtension, "28.82")
			setAmount(&subtotal(d).TaxableAmount, "87.86")
		}},
		{"an allowance a cent above the AllowanceTotalAmount (the VAT breakdown following it) breaks BR-CO-11", C, "BR-CO-11", nil, func(d *document) {
			setAmount(&d.AllowanceCharges[0].Amount, "9.10")
			setAmount(&subtotal(d).TaxableAmount, "87.84")
		}},
		{"a charge without a ChargeTotalAmount breaks BR-CO-12", C, "BR-CO-12", nil, all(withZero(true, "S", "21"), func(d *document) {
			d.Totals.ChargeTotal = nil
		})},
		{"a TaxExclusiveAmount a cent off (the totals after it following) breaks BR-CO-13", C, "BR-CO-13", nil, all(func(d *document) {
			setAmount(&d.Totals.TaxExclusive, "87.86")
		}, totalsAfterTax("106.31"))},
		{"a total TaxAmount a cent above its subtotal's (the totals after it following) breaks BR-CO-14", C, "BR-CO-14", nil, all(func(d *document) {
			setAmount(&d.TaxTotals[0].TaxAmount, "18.46")
		}, totalsAfterTax("106.31"))},
		{"a TaxInclusiveAmount a cent off (the payable amount following) breaks BR-CO-15", C, "BR-CO-15", nil, totalsAfterTax("106.31")},
		{"a PayableAmount a cent off breaks BR-CO-16", P, "BR-CO-16", nil, func(d *document) { setAmount(&d.Totals.Payable, "60.51") }},
		{"a standard-rated tax a cent off (the totals following) breaks BR-CO-17 and BR-S-09", C, "BR-CO-17", []string{"BR-S-09"}, all(func(d *document) {
			setAmount(&subtotal(d).TaxAmount, "18.46")
			setAmount(&d.TaxTotals[0].TaxAmount, "18.46")
		}, totalsAfterTax("106.31"))},
		{"an amount due without a due date nor payment terms breaks BR-CO-25", C, "BR-CO-25", nil, func(d *document) {
			d.DueDate, d.PaymentTerms = "", nil
		}},
		{"a credit note with payment terms needs no due date", P, "", nil, func(d *document) { d.PaymentTerms.Note = "Set off against PM-2026-000001" }},

		{"standard-rated lines without a VAT breakdown break BR-S-01", C, "BR-S-01", nil, func(d *document) { d.TaxTotals[0].Subtotals = nil }},
		{"standard-rated lines of a seller without a VAT identifier break BR-S-02", P, "BR-S-02", nil, noSellerTaxID},
		{"a standard-rated allowance of a seller without a VAT identifier breaks BR-S-03", C, "BR-S-03", []string{"BR-S-02"}, noSellerTaxID},
		{"a standard-rated charge of a seller without a VAT identifier breaks BR-S-04", C, "BR-S-04", []string{"BR-S-02", "BR-S-03"},
			all(withZero(true, "S", "21"), noSellerTaxID)},
		{"a standard-rated line at 0 % breaks BR-S-05", C, "BR-S-05", nil, func(d *document) { linesOf(d)[4].Item.TaxCategory.Percent = "0" }},
		{"a standard-rated allowance at 0 % breaks BR-S-06", C, "BR-S-06", nil, withZero(false, "S", "0")},
		{"a standard-rated charge at 0 % breaks BR-S-07", C, "BR-S-07", nil, withZero(true, "S", "0")},
		{"a standard-rated taxable amount a cent off breaks BR-S-08", C, "BR-S-08", nil, func(d *document) {
			setAmount(&subtotal(d).TaxableAmount, "87.86")
		}},
		{"a standard-rated tax a cent below (the totals following) breaks BR-S-09 and BR-CO-17", CN, "BR-S-09", []string{"BR-CO-17"}, all(func(d *document) {
			setAmount(&subtotal(d).TaxAmount, "18.44")
			setAmount(&d.TaxTotals[0].TaxAmount, "18.44")
		}, totalsAfterTax("106.29"))},
		{"a standard-rated breakdown with an exemption reason breaks BR-S-10", C, "BR-S-10", nil, func(d *document) {
			subtotal(d).Category.ExemptionReason = "Exempt public-sector service"
		}},

		{"exempt lines without a VAT breakdown break BR-E-01", O, "BR-E-01", nil, func(d *document) { d.TaxTotals[0].Subtotals = nil }},
		{"exempt lines of a seller without a VAT identifier break BR-E-02", O, "BR-E-02", nil, noSellerTaxID},
		{"an exempt allowance of a seller without a VAT identifier breaks BR-E-03", O, "BR-E-03", []string{"BR-E-02"},
			all(withZero(false, "E", "0"), noSellerTaxID)},
		{"an exempt charge of a seller without a VAT identifier breaks BR-E-04", O, "BR-E-04", []string{"BR-E-02"},
			all(withZero(true, "E", "0"), noSellerTaxID)},
		{"an exempt line at 21 % breaks BR-E-05", O, "BR-E-05", nil, func(d *document) { linesOf(d)[3].Item.TaxCategory.Percent = "21" }},
		{"an exempt allowance at 21 % breaks BR-E-06", O, "BR-E-06", nil, withZero(false, "E", "21")},
		{"an exempt charge at 21 % breaks BR-E-07", O, "BR-E-07", nil, withZero(true, "E", "21")},
		{"an exempt taxable amount a cent off breaks BR-E-08", O, "BR-E-08", nil, func(d *document) {
			setAmount(&subtotal(d).TaxableAmount, "7.41")
		}},
		{"an exempt tax of 1.00 (the totals following) breaks BR-E-09 and BR-CO-17", O, "BR-E-09", []string{"BR-CO-17"}, all(func(d *document) {
			setAmount(&subtotal(d).TaxAmount, "1.00")
			setAmount(&d.TaxTotals[0].TaxAmount, "1.00")
		}, totalsAfterTax("8.40"))},
		{"an exempt breakdown without an exemption reason nor code breaks BR-E-10", O, "BR-E-10", nil, func(d *document) {
			subtotal(d).Category.ExemptionReason, subtotal(d).Category.ExemptionReasonCode = "", ""
		}},

		{"a negative price (times a negative quantity) breaks BR-27", P, "BR-27", nil, func(d *document) {
			l := &linesOf(d)[0]
			l.CreditedQuantity.Value, l.Price.Amount.Value = "-1.000000", "-50.00"
		}},
		{"an invoice without a BuyerReference breaks PEPPOL-EN16931-R003", O, "PEPPOL-EN16931-R003", nil, func(d *document) { d.BuyerReference = "" }},
		{"a line whose quantity is one more than its amount says breaks PEPPOL-EN16931-R120", C, "PEPPOL-EN16931-R120", nil, func(d *document) {
			linesOf(d)[0].InvoicedQuantity.Value = "1001.500000"
		}},
		{"a price per zero units breaks PEPPOL-EN16931-R121", C, "PEPPOL-EN16931-R121", nil, func(d *document) {
			linesOf(d)[0].Price.BaseQuantity.Value = "0"
		}},
	}

	broken := map[string]bool{}
	for _, tt := range tests {
		broken[tt.rule] = true
		t.Run(tt.name, func(t *testing.T) {
			var d document
			if err := decode(tt.doc, &d); err != nil {
				t.Fatal(err)
			}
			tt.mutate(&d)
			b, err := encode(d)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(b, tt.doc) {
				t.Fatal("the mutation changed nothing")
			}
			vs, err := Check(b)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range vs {
				got = append(got, v.Rule)
			}
			want := tt.also
			if tt.rule != "" {
				want = append([]string{tt.rule}, tt.also...)
			}
			slices.Sort(got)
			got = slices.Compact(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("broke %q, want %q:\n%s", got, want, violations(vs))
			}
		})
	}
	t.Run("every rule Check knows has a fixture that breaks it", func(t *testing.T) {
		for _, r := range rules {
			if !broken[r.id] {
				t.Errorf("no fixture breaks %s", r.id)
			}
		}
	})
}

func violations(vs []Violation) string {
	var s strings.Builder
	for _, v := range vs {
		s.WriteString(v.String() + "\n")
	}
	return s.String()
}

func TestCheckRefuses(t *testing.T) {
	C := render(t, billingtest.Issued(t, "PM-2026-000001"))
	tests := []struct {
		name    string
		doc     []byte
		message string
	}{
		{"bytes that are not XML are not a UBL document", []byte("%PDF-1.7"), "not a UBL document"},
		{"a truncated document is not a UBL document", C[:len(C)/2], "not well-formed XML"},
		{"XML of another kind is neither an Invoice nor a CreditNote", []byte(`<Order xmlns="urn:oasis:names:specification:ubl:schema:xsd:Order-2"/>`),
			"neither a UBL 2.1 Invoice nor a CreditNote"},
		{"an Invoice outside the UBL namespace is not a UBL Invoice", []byte(`<Invoice/>`), "neither a UBL 2.1 Invoice nor a CreditNote"},
		{"an amount with an exponent is not a decimal", bytes.Replace(C, []byte(`"EUR">106.30</cbc:PayableAmount>`), []byte(`"EUR">1e999999999</cbc:PayableAmount>`), 1),
			`PayableAmount: "1e999999999" is not a decimal`},
		{"an amount with more decimals than decimal decodes is not a decimal",
			bytes.Replace(C, []byte(`"EUR">106.30</cbc:PayableAmount>`), []byte(`"EUR">0.`+strings.Repeat("0", 10001)+`1</cbc:PayableAmount>`), 1),
			`PayableAmount: "0.` + strings.Repeat("0", 38) + `…" is not a decimal`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := Check(tt.doc)
			if err == nil || !strings.Contains(err.Error(), tt.message) {
				t.Errorf("got %v, want an error with %q", err, tt.message)
			}
			if len(vs) > 0 {
				t.Errorf("violations along with the error: %v", vs)
			}
		})
	}

	t.Run("other prefixes for the UBL namespaces read the same", func(t *testing.T) {
		b := bytes.ReplaceAll(C, []byte("cbc:"), []byte("b:"))
		b = bytes.ReplaceAll(b, []byte("xmlns:cbc="), []byte("xmlns:b="))
		b = bytes.Replace(b, []byte(`"EUR">106.30</b:PayableAmount>`), []byte(`"EUR">106.31</b:PayableAmount>`), 1)
		vs, err := Check(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(vs) != 1 || vs[0].Rule != "BR-CO-16" {
			t.Errorf("got %v, want BR-CO-16 alone", vs)
		}
	})
}

// FuzzCheck: whatever the bytes, Check does not panic, and never returns
// violations along with an error.
//
// The seeds are the four golden documents without the indentation between
// elements, which Check skips: 5 to 11 kB each, and decoding an input costs
// in proportion to its length, while the engine minimizes each new input in
// time quadratic in it (make fuzz bounds that time).
func FuzzCheck(f *testing.F) {
	caami, ona, full, partial := examples(f)
	indent := regexp.MustCompile(`>\s+<`)
	for _, ex := range []example{caami, ona, full, partial} {
		doc := render(f, ex.inv)
		compact := indent.ReplaceAll(doc, []byte("><"))
		want, err := Check(doc)
		got, errCompact := Check(compact)
		if err != nil || errCompact != nil || !slices.Equal(got, want) {
			f.Fatalf("%s without indentation reads differently: %v, %v; indented %v, %v", ex.name, got, errCompact, want, err)
		}
		f.Add(compact)
	}
	f.Add([]byte(`<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"><cbc:ID/></Invoice>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		vs, err := Check(doc)
		if err != nil && len(vs) > 0 {
			t.Errorf("violations along with an error: %v", err)
		}
	})
}
