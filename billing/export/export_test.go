package export_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/internal/golden"
)

func TestGolden(t *testing.T) {
	caami, ona := billingtest.Issued(t, "PM-2026-000001"), billingtest.Issued(t, "PM-2026-000002")
	tests := []struct {
		name   string
		inv    *billing.Invoice
		format string
		golden string
	}{
		{"the CSV of an invoice with an SLA credit and standard VAT is its golden file", caami, "csv", "PM-2026-000001.csv"},
		{"the JSON of an invoice with an SLA credit and standard VAT is its golden file", caami, "json", "PM-2026-000001.json"},
		{"the CSV of a VAT-exempt invoice without allowances is its golden file", ona, "csv", "PM-2026-000002.csv"},
		{"the JSON of a VAT-exempt invoice without allowances is its golden file", ona, "json", "PM-2026-000002.json"},
		{"the CSV of a credit note of a whole invoice is its golden file", billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "wrong institution"), "csv", "PMC-2026-000001.csv"},
		{"the CSV of a partial credit note, a correction line without band or unit, is its golden file", billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill"), "csv", "PMC-2026-000002.csv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := export.Write(&buf, tt.inv, tt.format); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tt.golden), buf.Bytes())
		})
	}
}

// csvRow is one exported CSV row by column name.
type csvRow map[string]string

// exportCSV exports inv as CSV and parses it, checking that every row has the
// header's columns.
func exportCSV(t *testing.T, inv *billing.Invoice) (b []byte, header []string, rows []csvRow) {
	t.Helper()
	var buf bytes.Buffer
	if err := export.CSV(&buf, inv); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(buf.Bytes())).ReadAll()
	if err != nil {
		t.Fatalf("the export is not CSV: %v", err)
	}
	if len(recs) == 0 {
		t.Fatal("the export has no header")
	}
	for _, rec := range recs[1:] {
		r := csvRow{}
		for i, c := range recs[0] {
			r[c] = rec[i]
		}
		rows = append(rows, r)
	}
	return buf.Bytes(), recs[0], rows
}

// addsUp checks the sums an accountant relies on: the lines and allowances
// rows make the tax-exclusive total, which with the VAT rows makes the
// payable total, and each total row is the sum of its rows.
func addsUp(rows []csvRow) error {
	sum := map[string]decimal.Decimal{}
	total := map[string]decimal.Decimal{}
	for _, r := range rows {
		amount, err := decimal.NewFromString(r["amount"])
		if err != nil {
			return fmt.Errorf("%s row: amount %q: %w", r["record_type"], r["amount"], err)
		}
		if r["record_type"] == "total" {
			if _, dup := total[r["description"]]; dup {
				return fmt.Errorf("two %s total rows", r["description"])
			}
			total[r["description"]] = amount
			continue
		}
		sum[r["record_type"]] = sum[r["record_type"]].Add(amount)
	}
	for _, name := range []string{"lines", "allowances", "tax_exclusive", "vat", "payable"} {
		if _, ok := total[name]; !ok {
			return fmt.Errorf("no %s total row", name)
		}
	}
	for _, c := range []struct {
		what      string
		got, want decimal.Decimal
	}{
		{"line rows vs the lines total", sum["line"], total["lines"]},
		{"allowance rows vs the allowances total", sum["allowance"], total["allowances"]},
		{"line and allowance rows vs the tax_exclusive total", sum["line"].Add(sum["allowance"]), total["tax_exclusive"]},
		{"vat rows vs the vat total", sum["vat"], total["vat"]},
		{"tax_exclusive and vat rows vs the payable total", total["tax_exclusive"].Add(sum["vat"]), total["payable"]},
	} {
		if !c.got.Equal(c.want) {
			return fmt.Errorf("%s: %s ≠ %s", c.what, c.got.StringFixed(2), c.want.StringFixed(2))
		}
	}
	return nil
}

func TestCSVAddsUp(t *testing.T) {
	caami, ona := billingtest.Issued(t, "PM-2026-000001"), billingtest.Issued(t, "PM-2026-000002")
	offByACent := *caami
	offByACent.Totals.TaxExclusive = billing.Money{Decimal: caami.Totals.TaxExclusive.Add(decimal.RequireFromString("0.01"))}
	tests := []struct {
		name    string
		inv     *billing.Invoice
		wantErr string
	}{
		{"an invoice with an SLA credit adds up", caami, ""},
		{"a VAT-exempt invoice without allowances adds up", ona, ""},
		{"a credit note of a whole invoice adds up", billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "wrong institution"), ""},
		{"a partial credit note adds up", billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill"), ""},
		{"an invoice whose tax-exclusive total is a cent off does not add up", &offByACent, "vs the tax_exclusive total: 87.85 ≠ 87.86"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _, rows := exportCSV(t, tt.inv)
			err := addsUp(rows)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("the CSV does not add up: %v\n%s", err, b)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestCreditNoteAmountsAreNegative(t *testing.T) {
	caami, ona := billingtest.Issued(t, "PM-2026-000001"), billingtest.Issued(t, "PM-2026-000002")
	tests := []struct {
		name string
		inv  *billing.Invoice
		// allowances are the original invoice's allowance amounts, which a
		// credit note negates into positive ones.
		allowances []string
	}{
		{"a credit note of an invoice with an SLA credit is negative but for its allowance", billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "wrong institution"), []string{"9.09"}},
		{"a credit note of a VAT-exempt invoice is negative", billingtest.CreditNote(t, ona, "PMC-2026-000002", "2026-12-10", "", "wrong institution"), nil},
		{"a partial credit note is negative", billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, rows := exportCSV(t, tt.inv)
			var allowances []string
			for _, r := range rows {
				if r["document_kind"] != billing.KindCreditNote {
					t.Errorf("%s row: document_kind %q, want credit_note", r["record_type"], r["document_kind"])
				}
				amount := decimal.RequireFromString(r["amount"])
				switch {
				case r["record_type"] == "allowance":
					allowances = append(allowances, r["amount"])
				case r["record_type"] == "total" && r["description"] == "allowances":
					// the sign of the credited allowances
				case amount.IsPositive():
					t.Errorf("%s row %s: amount %s is positive", r["record_type"], r["line_no"]+r["description"], r["amount"])
				}
				// A whole credit negates quantities, a partial one the unit
				// price: either way the line's amount is their product.
				if r["record_type"] == "line" {
					q, p := decimal.RequireFromString(r["quantity"]), decimal.RequireFromString(r["unit_price"])
					if !q.Mul(p).Round(2).Equal(amount) {
						t.Errorf("line %s: %s × %s is not its amount %s", r["line_no"], r["quantity"], r["unit_price"], r["amount"])
					}
				}
				if r["record_type"] == "total" && r["description"] == "payable" && !amount.IsNegative() {
					t.Errorf("payable %s, want a negative amount", r["amount"])
				}
			}
			if !slices.Equal(allowances, tt.allowances) {
				t.Errorf("allowance amounts %q, want %q", allowances, tt.allowances)
			}
		})
	}
}

func TestJSONRoundTrips(t *testing.T) {
	for _, number := range []string{"PM-2026-000001", "PM-2026-000002"} {
		t.Run("the JSON export of "+number+" is the issued document, its empty lists [], and decodes to the same document", func(t *testing.T) {
			inv, stored := billingtest.Issued(t, number), billingtest.IssuedJSON(t, number)
			// ona's invoice has no SLA credit: billing keeps no list, the
			// export writes [] as a credit note's.
			if len(inv.Allowances) == 0 {
				inv.Allowances = nil
			}
			var out bytes.Buffer
			if err := export.JSON(&out, inv); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), stored) {
				t.Errorf("the export differs from the worked example it was decoded from:\n%s", out.Bytes())
			}
			var again billing.Invoice
			if err := json.Unmarshal(out.Bytes(), &again); err != nil {
				t.Fatalf("the export does not decode: %v", err)
			}
			var out2 bytes.Buffer
			if err := export.JSON(&out2, &again); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out2.Bytes(), out.Bytes()) {
				t.Errorf("re-encoding the decoded export differs:\n%s\nvs\n%s", out2.Bytes(), out.Bytes())
			}
		})
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

func TestFormats(t *testing.T) {
	caami := billingtest.Issued(t, "PM-2026-000001")
	draft := *caami
	draft.Number, draft.IssueDate = "", ""
	tests := []struct {
		name        string
		inv         *billing.Invoice
		format      string
		contentType string
		fileName    string
	}{
		{"a CSV download is CSV text named after the invoice number", caami, "csv", "text/csv; charset=utf-8", "PM-2026-000001.csv"},
		{"a JSON download is JSON named after the invoice number", caami, "json", "application/json", "PM-2026-000001.json"},
		{"a draft's download is named after its tenant and period", &draft, "csv", "text/csv; charset=utf-8", "draft-caami-2026-11.csv"},
		{"a PDF download is a PDF named after the invoice number", caami, "pdf", "application/pdf", "PM-2026-000001.pdf"},
		{"an e-invoice download is XML named after the invoice number", caami, "xml", "application/xml", "PM-2026-000001.xml"},
		{"an unknown format has no content type nor file name", caami, "docx", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := export.ContentType(tt.format); got != tt.contentType {
				t.Errorf("ContentType(%q) = %q, want %q", tt.format, got, tt.contentType)
			}
			if got := export.FileName(tt.inv, tt.format); got != tt.fileName {
				t.Errorf("FileName(%q) = %q, want %q", tt.format, got, tt.fileName)
			}
		})
	}

	t.Run("writing an unknown format is an error that lists the known ones", func(t *testing.T) {
		var buf bytes.Buffer
		err := export.Write(&buf, caami, "docx")
		if !errors.Is(err, export.ErrUnknownFormat) || !strings.Contains(err.Error(), strings.Join(export.Formats(), ", ")) {
			t.Errorf("got %v, want ErrUnknownFormat listing %s", err, strings.Join(export.Formats(), ", "))
		}
		if buf.Len() > 0 {
			t.Errorf("wrote %q for an unknown format", buf.Bytes())
		}
	})

	for _, format := range []string{"csv", "json"} {
		t.Run("a failing writer's error is returned from a "+format+" export", func(t *testing.T) {
			disk := errors.New("disk full")
			if err := export.Write(failingWriter{disk}, caami, format); !errors.Is(err, disk) {
				t.Errorf("got %v, want the writer's error", err)
			}
		})
	}
}

// TestColumnsAreDocumented keeps the two descriptions of the CSV columns,
// the package comment and docs/invoices.md, in step with what CSV writes.
func TestColumnsAreDocumented(t *testing.T) {
	caami := billingtest.Issued(t, "PM-2026-000001")
	_, header, _ := exportCSV(t, caami)
	want := []string{"document_number", "document_kind", "issue_date", "period", "tenant", "currency", "record_type",
		"line_no", "meter", "environment_class", "band", "unit", "quantity", "unit_price", "amount", "vat_category",
		"vat_rate", "adjusts_period", "description", "refers", "tier_range", "rate_version"}
	if !slices.Equal(header, want) {
		t.Fatalf("header %q, want %q", header, want)
	}

	f, err := parser.ParseFile(token.NewFileSet(), "export.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	var pkgDoc []string
	for _, l := range strings.Split(f.Doc.Text(), "\n") {
		// The column list is the comment's code block: a tab, the column, its meaning.
		if rest, ok := strings.CutPrefix(l, "\t"); ok && rest != "" && rest[0] != ' ' {
			pkgDoc = append(pkgDoc, strings.Fields(rest)[0])
		}
	}

	md, err := os.ReadFile(filepath.Join("..", "..", "docs", "invoices.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(md), "\n## CSV columns\n")
	table, _, _ = strings.Cut(table, "\n## ")
	var docs []string
	for _, l := range strings.Split(table, "\n") {
		// Table rows start with the column in backquotes: | `tenant` | …
		if rest, ok := strings.CutPrefix(l, "| `"); ok {
			col, _, _ := strings.Cut(rest, "`")
			docs = append(docs, col)
		}
	}

	for _, d := range []struct {
		name string
		cols []string
	}{{"the package comment", pkgDoc}, {"the CSV columns section of the operator docs", docs}} {
		t.Run(d.name+" lists the columns CSV writes, in order", func(t *testing.T) {
			if !slices.Equal(d.cols, header) {
				t.Errorf("%s lists %q, CSV writes %q", d.name, d.cols, header)
			}
		})
	}
}
