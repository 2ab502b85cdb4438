package pdf_test

import (
	"bytes"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/pdf"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/internal/golden"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/locale"
)

// long is inv with 120 lines: its own, then groups of 20 production
// adjustment lines of earlier months, so that the lines table spans pages
// and breaks inside a group. Its totals are inv's: the test looks at the
// layout, not the sums.
func long(inv *billing.Invoice) *billing.Invoice {
	out := *inv
	out.Lines = append([]billing.Line(nil), inv.Lines...)
	for i := 0; len(out.Lines) < 120; i++ {
		l := inv.Lines[i%len(inv.Lines)]
		l.Class = ratecard.Prod
		l.Adjusts = time.Date(2026, time.Month(1+i/20), 1, 0, 0, 0, 0, time.UTC).Format("2006-01")
		l.Quantity = billing.Quantity{Decimal: decimal.NewFromInt(int64(i + 1))}
		l.Amount = billing.Money{Decimal: l.Quantity.Mul(l.UnitPrice.Decimal).Round(2)}
		out.Lines = append(out.Lines, l)
	}
	return &out
}

func render(t *testing.T, inv *billing.Invoice) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := pdf.Render(&buf, inv); err != nil {
		t.Fatalf("render: %v", err)
	}
	return buf.Bytes()
}

// tool finds a poppler-utils command: CI must have it, elsewhere a test
// without it skips.
func tool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s is not installed: `make test` installs it, or apt-get install poppler-utils", name)
	testenv.Missing(t, msg)
	return ""
}

// text is pdftotext -layout of b, the pages first to last (0: to the end).
func text(t *testing.T, b []byte, first, last int) string {
	t.Helper()
	args := []string{"-layout", "-enc", "UTF-8", "-f", fmt.Sprint(first)}
	if last > 0 {
		args = append(args, "-l", fmt.Sprint(last))
	}
	cmd := exec.Command(tool(t, "pdftotext"), append(args, "-", "-")...)
	cmd.Stdin = bytes.NewReader(b)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("pdftotext: %v: %s", err, stderr.String())
	}
	return string(out)
}

// contains checks that text has each of want.
func contains(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("the text has no %q:\n%s", w, text)
		}
	}
}

func TestRender(t *testing.T) {
	caami := billingtest.Issued(t, "PM-2026-000001")
	ona := billingtest.Issued(t, "PM-2026-000002")

	t.Run("the invoice with an SLA credit and 21 % VAT shows its number, reference, parties, credit and payable", func(t *testing.T) {
		got := text(t, render(t, caami), 1, 0)
		contains(t, got, "Invoice", "PM-2026-000001", "CAAMI-IT-2026", "Your reference",
			"State Cloud Platform Services", "Caisse auxiliaire d'assurance maladie-invalidité", "Rue du Trône 30",
			"VAT BE0206733130", "Peppol 0208:0206733130", "1–30 November 2026", "3 January 2027",
			"36 000.000000", "0.00020", "-9.09", "87.85", "18.45", "€ 106.30", "99.85 %", "below 99.9 %: 10 %",
			"Maintenance windows: none declared", "BE71 0961 2345 6769", "please mention PM-2026-000001",
			"Annex: usage per project and environment", "portal", "1 800.750000", "page 1 of 2", "page 2 of 2")
	})
	t.Run("the VAT-exempt invoice shows its exemption and payable", func(t *testing.T) {
		got := text(t, render(t, ona), 1, 0)
		contains(t, got, "Invoice", "PM-2026-000002", "ONA-PO-4471", "State Cloud Platform Services",
			"Office national des allocations familiales", "Rue de Trèves 70", "Enterprise no. 0206747580",
			"E · exempt", "Exempt public-sector service (VATEX-EU-132)", "€ 7.40")
	})
	t.Run("a credit note of a whole invoice names the invoice it corrects and the reason", func(t *testing.T) {
		got := text(t, render(t, billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "billed to the wrong institution")), 1, 0)
		contains(t, got, "Credit note", "PMC-2026-000001", "Corrects invoice", "PM-2026-000001",
			"billed to the wrong institution", "-1 000.500000", "9.09", "€ -106.30", "credits € 106.30 against invoice PM-2026-000001", "SLA credit 2026-11 reversed")
	})
	t.Run("a partial credit note shows its correction line and no annex", func(t *testing.T) {
		b := render(t, billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill après l'incident du 12 novembre"))
		got := text(t, b, 1, 0)
		contains(t, got, "Credit note", "PMC-2026-000002", "PM-2026-000001", "Correction", "goodwill après l'incident", "-50.00", "-10.50", "€ -60.50")
		if strings.Contains(got, "Annex") {
			t.Errorf("a partial credit note has an annex page:\n%s", got)
		}
	})
	t.Run("a draft says it is one and asks for no payment", func(t *testing.T) {
		draft := *caami
		draft.Number, draft.IssueDate, draft.DueDate, draft.Provisional = "", "", "", true
		got := text(t, render(t, &draft), 1, 0)
		contains(t, got, "DRAFT", "provisional", "not a request for payment", "Draft invoice caami 2026-11")
	})
	t.Run("a month without production apps says there are no SLA figures", func(t *testing.T) {
		inv := *ona
		inv.Inputs.Months = []billing.MonthInput{{Period: "2026-11"}}
		contains(t, text(t, render(t, &inv), 1, 1), "no production app")
	})
	t.Run("a character outside Windows-1252 prints as a question mark, never as a dot", func(t *testing.T) {
		inv := *caami
		inv.Customer.Name = "Urząd 1"
		contains(t, text(t, render(t, &inv), 1, 1), "Urz?d 1")
	})
	t.Run("a long invoice spans pages, its lines table repeating its header", func(t *testing.T) {
		b := render(t, long(caami))
		page2 := text(t, b, 2, 2)
		contains(t, page2, "Description", "Unit price", "Amount", "page 2 of", "adjusts 2026-0")
		contains(t, text(t, b, 3, 0), "Description", "Unit price", "(continued)", "page 3 of")
	})
}

func TestRenderIsByteIdentical(t *testing.T) {
	caami := billingtest.Issued(t, "PM-2026-000001")
	docs := []struct {
		name, golden string
		inv          *billing.Invoice
	}{
		{"an invoice with an SLA credit and standard VAT renders as its golden PDF", "PM-2026-000001.pdf", caami},
		{"a VAT-exempt invoice renders as its golden PDF", "PM-2026-000002.pdf", billingtest.Issued(t, "PM-2026-000002")},
		{"a credit note of a whole invoice renders as its golden PDF", "PMC-2026-000001.pdf", billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "billed to the wrong institution")},
		{"a partial credit note renders as its golden PDF", "PMC-2026-000002.pdf", billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill après l'incident du 12 novembre")},
	}
	for _, d := range docs {
		t.Run(d.name, func(t *testing.T) {
			got := render(t, d.inv)
			for range 3 { // fpdf keeps maps: several renders would show an order that varies
				if again := render(t, d.inv); !bytes.Equal(got, again) {
					t.Fatalf("re-rendering gives other bytes (%d vs %d)", len(got), len(again))
				}
			}
			// A difference is a layout change: -update rewrites the PDFs and
			// the page-1 PNG, which is what to look at before committing.
			golden.Check(t, filepath.Join("testdata", d.golden), got)
		})
	}
	t.Run("the page-1 PNG in testdata shows the current layout", func(t *testing.T) {
		dir := t.TempDir()
		cmd := exec.Command(tool(t, "pdftoppm"), "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", "-", filepath.Join(dir, "page1"))
		cmd.Stdin = bytes.NewReader(render(t, caami))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pdftoppm: %v: %s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(dir, "page1.png"))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("pdftoppm wrote no PNG: %v", err)
		}
		// A4 at 60 dpi is 496.1 × 701.6 pixels; poppler rounds either way.
		if s := img.Bounds().Size(); s.X < 496 || s.X > 497 || s.Y < 701 || s.Y > 702 {
			t.Errorf("page 1 is %v pixels, want about 496x702 (A4 portrait at 60 dpi)", s)
		}
		// The PNG is for people to look at: poppler versions rasterize
		// differently, so it is rewritten, not compared; the golden PDF is
		// what catches a layout change.
		if golden.Updating() {
			if err := os.WriteFile(filepath.Join("testdata", "PM-2026-000001-page1.png"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// in returns a copy of inv written in lang.
func in(inv *billing.Invoice, lang locale.Lang) *billing.Invoice {
	out := *inv
	out.Customer.Language = lang
	return &out
}

// documents are one of every kind of document and section the renderer draws.
func documents(t *testing.T) map[string]*billing.Invoice {
	caami := billingtest.Issued(t, "PM-2026-000001")
	ona := billingtest.Issued(t, "PM-2026-000002")
	draft := *caami
	draft.Number, draft.IssueDate, draft.DueDate, draft.Provisional = "", "", "", true
	noProd := *ona
	noProd.Inputs.Months = []billing.MonthInput{{Period: "2026-11"}}
	return map[string]*billing.Invoice{
		"an invoice with an SLA credit":  caami,
		"a VAT-exempt invoice":           ona,
		"a draft":                        &draft,
		"a month without production app": &noProd,
		"a full credit note":             billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "billed to the wrong institution"),
		"a partial credit note":          billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "goodwill"),
		"a long invoice":                 long(caami),
	}
}

func TestEveryDocumentIsWrittenWholeInEachLanguage(t *testing.T) {
	for name, inv := range documents(t) {
		for _, lang := range []locale.Lang{locale.French, locale.Dutch} {
			missing, err := pdf.Missing(in(inv, lang))
			if err != nil {
				t.Fatal(err)
			}
			if len(missing) > 0 {
				t.Errorf("%s in %s prints %d messages in English: %q", name, lang, len(missing), missing)
			}
		}
	}
}

func TestTheInstitutionsLanguageWritesItsWordsNumbersAmountsAndDates(t *testing.T) {
	caami := billingtest.Issued(t, "PM-2026-000001")
	credit := billingtest.CreditNote(t, caami, "PMC-2026-000001", "2026-12-10", "", "billed to the wrong institution")
	// French's no-break spaces (locale's tests hold them) come out of
	// pdftotext as spaces.
	nbsp := " "
	for _, tc := range []struct {
		name string
		inv  *billing.Invoice
		want []string
	}{
		{"an invoice in French", in(caami, locale.French), []string{
			"Facture", "PM-2026-000001", "Votre référence", "FACTURÉ À", "Belgique", "1er–30 novembre 2026", "3 janvier 2027",
			"36" + nbsp + "000,000000", "0,00020", "-9,09", "87,85", "Total à payer", "106,30" + nbsp + "€", "99,85" + nbsp + "%",
			"Veuillez virer 106,30" + nbsp + "€ au plus tard le 3 janvier 2027", "Annexe" + nbsp + ": consommation", "1" + nbsp + "800,750000", "page 1 sur "}},
		{"an invoice in Dutch", in(caami, locale.Dutch), []string{
			"Factuur", "PM-2026-000001", "Uw referentie", "GEFACTUREERD AAN", "België", "1–30 november 2026", "3 januari 2027",
			"36.000,000000", "0,00020", "-9,09", "87,85", "Te betalen", "€" + nbsp + "106,30", "99,85 %",
			"Gelieve €" + nbsp + "106,30 uiterlijk op 3 januari 2027 over te maken", "Bijlage: verbruik", "1.800,750000", "pagina 1 van "}},
		{"a credit note in French", in(credit, locale.French), []string{
			"Note de crédit", "PMC-2026-000001", "Corrige la facture", "billed to the wrong institution", "-106,30" + nbsp + "€", "Crédit SLA 2026-11 annulé"}},
		{"a partial credit note in French heads its correction line as one", in(billingtest.CreditNote(t, caami, "PMC-2026-000002", "2026-12-11", "50.00", "geste commercial"), locale.French), []string{
			"Correction de la facture PM-2026-000001", "-50,00", "-60,50" + nbsp + "€"}},
		{"a credit note in Dutch", in(credit, locale.Dutch), []string{
			"Creditnota", "PMC-2026-000001", "Corrigeert factuur", "€" + nbsp + "-106,30", "SLA-tegoed 2026-11 teruggedraaid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			contains(t, text(t, render(t, tc.inv), 1, 0), tc.want...)
		})
	}
	t.Run("a language the renderer does not write is refused, not printed in English", func(t *testing.T) {
		var buf bytes.Buffer
		if err := pdf.Render(&buf, in(caami, "de")); err == nil || !strings.Contains(err.Error(), "customer.language") {
			t.Errorf("Render in de: %v, want an error naming customer.language", err)
		}
	})
}

func TestATranslatedDocumentRendersAsItsGoldenPDF(t *testing.T) {
	caami := billingtest.Issued(t, "PM-2026-000001")
	for _, lang := range []locale.Lang{locale.French, locale.Dutch} {
		t.Run(string(lang), func(t *testing.T) {
			got := render(t, in(caami, lang))
			if again := render(t, in(caami, lang)); !bytes.Equal(got, again) {
				t.Fatal("re-rendering gives other bytes")
			}
			golden.Check(t, filepath.Join("testdata", "PM-2026-000001."+string(lang)+".pdf"), got)
		})
	}
}
