package ubl

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/internal/testenv"
)

// saxonEnv overrides where Saxon-HE's jar is.
const saxonEnv = "PAASMETER_SAXON_JAR"

// stylesheets are the official Peppol BIS Billing 3.0 rules, compiled: a
// copy travels with the tests (testdata/peppol-bis-3/README.md).
var stylesheets = []string{"CEN-EN16931-UBL.xslt", "PEPPOL-EN16931-UBL.xslt"}

// documents are every document the package's tests render as valid: the
// golden files' and variants for what those lack (adjustments, zero totals,
// an exempt credit note). TestRender and TestOfficialPeppolRules both take
// them, so that each rendered document also meets the official rules.
func documents(t testing.TB) []example {
	caami, ona, full, partial := examples(t)
	adjusted := *caami.inv
	adjusted.Number, adjusted.Lines = "PM-2026-000101", slices.Clone(caami.inv.Lines)
	for i := range adjusted.Lines {
		if i%2 == 1 {
			adjusted.Lines[i].Adjusts = "2026-10"
		}
	}
	// The free tier's lines alone: every amount zero.
	zero := *ona.inv
	zero.Number, zero.Lines = "PM-2026-000102", nil
	for _, l := range ona.inv.Lines {
		if l.Amount.IsZero() {
			zero.Lines = append(zero.Lines, l)
		}
	}
	zero.VAT = slices.Clone(ona.inv.VAT)
	zero.VAT[0].Taxable = money("0.00")
	zero.Totals = billing.Totals{Lines: money("0.00"), Allowances: money("0.00"), TaxExclusive: money("0.00"), VAT: money("0.00"), Payable: money("0.00")}
	return []example{caami, ona, full, partial,
		{"an invoice with adjustment lines", &adjusted, ""},
		{"an invoice of zero total", &zero, ""},
		{"the credit note of the whole exempt invoice", billingtest.CreditNote(t, ona.inv, "PMC-2026-000101", "2026-12-10", "", "wrong institution"), ""},
		{"a partial credit note of the exempt invoice", billingtest.CreditNote(t, ona.inv, "PMC-2026-000102", "2026-12-11", "1.00", "goodwill"), ""},
	}
}

// saxon returns the java binary and Saxon-HE's jar, or ends the test
// (failing it under CI=true) when either is missing.
func saxon(t *testing.T) (java, jar string) {
	t.Helper()
	jar = os.Getenv(saxonEnv)
	if jar == "" {
		jar = "/usr/share/java/Saxon-HE.jar"
	}
	java, err := exec.LookPath("java")
	if _, serr := os.Stat(jar); err != nil || serr != nil {
		testenv.Missing(t, "no java or no Saxon-HE jar at "+jar+": install Debian's libsaxonhe-java (make test does, through scripts/test-deps.sh), or set "+saxonEnv)
	}
	return java, jar
}

// svrl is what the stylesheets report of a document.
type svrl struct {
	Failed []struct {
		ID       string `xml:"id,attr"`
		Flag     string `xml:"flag,attr"`
		Location string `xml:"location,attr"`
		Text     string `xml:"text"`
	} `xml:"failed-assert"`
	Fired []struct{} `xml:"fired-rule"`
}

// TestOfficialPeppolRules runs the official EN 16931 and Peppol stylesheets
// over every document the tests render: an access point rejects a document
// with a fatal failed assert. Check, which names a problem before a
// document is written, knows a subset of these rules only.
func TestOfficialPeppolRules(t *testing.T) {
	java, jar := saxon(t)
	in := t.TempDir()
	docs := documents(t)
	for _, ex := range docs {
		if err := os.WriteFile(filepath.Join(in, ex.inv.Number+".xml"), render(t, ex.inv), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, xsl := range stylesheets {
		out := filepath.Join(t.TempDir(), "svrl")
		if err := os.Mkdir(out, 0o755); err != nil {
			t.Fatal(err)
		}
		// One JVM per stylesheet for every document: compiling one takes
		// seconds, applying it milliseconds. -Xss8m: the rules recurse deep.
		cmd := exec.Command(java, "-Xss8m", "-cp", jar, "net.sf.saxon.Transform",
			"-s:"+in, "-xsl:"+filepath.Join("testdata", "peppol-bis-3", xsl), "-o:"+out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("saxon %s: %v\n%s", xsl, err, b)
		}
		for _, ex := range docs {
			b, err := os.ReadFile(filepath.Join(out, ex.inv.Number+".xml"))
			if err != nil {
				t.Fatalf("%s over %s: %v", xsl, ex.name, err)
			}
			var r svrl
			if err := xml.Unmarshal(b, &r); err != nil {
				t.Fatalf("%s over %s: the report: %v", xsl, ex.name, err)
			}
			// A report without a fired rule would pass anything.
			if len(r.Fired) == 0 {
				t.Errorf("%s over %s: no rule fired:\n%.500s", xsl, ex.name, b)
			}
			for _, f := range r.Failed {
				msg := fmt.Sprintf("%s over %s: %s %s at %s: %s", xsl, ex.name, f.Flag, f.ID, f.Location, strings.TrimSpace(f.Text))
				if f.Flag == "fatal" {
					t.Error(msg)
				} else {
					t.Log(msg)
				}
			}
		}
	}
}

// TestOfficialPeppolRulesCatchABadEndpoint makes sure the run above can
// fail: a document whose buyer endpoint breaks the 0208 check digits.
func TestOfficialPeppolRulesCatchABadEndpoint(t *testing.T) {
	caami, _, _, _ := examples(t)
	doc := render(t, caami.inv)
	bad := bytes.Replace(doc, []byte(`schemeID="0208">`+caami.inv.Customer.Party.EndpointID), []byte(`schemeID="0208">12AB`), 1)
	if bytes.Equal(bad, doc) {
		t.Fatal("the buyer's endpoint is not in the document")
	}
	java, jar := saxon(t)
	src := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(src, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(java, "-Xss8m", "-cp", jar, "net.sf.saxon.Transform", "-s:"+src,
		"-xsl:"+filepath.Join("testdata", "peppol-bis-3", "PEPPOL-EN16931-UBL.xslt")).CombinedOutput()
	if err != nil {
		t.Fatalf("saxon: %v\n%s", err, b)
	}
	if !bytes.Contains(b, []byte("PEPPOL-COMMON-R043")) {
		t.Errorf("the Peppol rules passed an endpoint 12AB in scheme 0208:\n%.1000s", b)
	}
}
