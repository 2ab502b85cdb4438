package collector_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billinghttp"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/state"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/statetest"
)

// The documents invoicing.issue issues, in this order.
const (
	caamiNovember = "PM-2026-000001"
	onaNovember   = "PM-2026-000002"
	caamiCredit   = "PMC-2026-000001" // a week after caami's November invoice
	onaCredit     = "PMC-2026-000002"
	caamiDecember = "PM-2027-000001" // issued in January, after the credit notes
)

// invoicing is a billing service over a test collector's metering store and
// its own embedded state store: the collector serves what it issues.
type invoicing struct {
	svc   *billing.Service
	clock *clock.Manual
}

// withInvoicing makes newEnv's collector serve inv's documents.
func withInvoicing(t *testing.T, inv *invoicing) func(*setup) {
	return func(o *setup) {
		t.Helper()
		inv.clock = clock.NewManual(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)) // after November's grace period
		inv.svc = billingOver(t, o.Store, billingtest.SLA{}, inv.clock)
		o.invoices, o.drafts = inv.svc, inv.svc
	}
}

// billingOver is billing of the worked example's institutions over the
// records of usage, with the SLA figures of sla, in a fresh state store.
func billingOver(t *testing.T, usage billing.UsageSource, sla billing.SLASource, c clock.Clock) *billing.Service {
	t.Helper()
	st := statetest.Open(t, stateembedded.Open, t.TempDir())
	card, err := ratecard.Load(filepath.Join("..", "deploy", "examples", "ratecard.yaml"), billingtest.Brussels())
	if err != nil {
		t.Fatal(err)
	}
	cfg := billing.DefaultConfig()
	cfg.Location, cfg.Seller, cfg.Customers = billingtest.Brussels(), billingtest.Seller(), billingtest.Customers()
	svc, err := billing.New(billing.Options{Config: cfg, Card: card, Usage: usage, SLA: sla, State: st, Clock: c,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// issue stores the billing worked example (November 2026) and caami's first
// day of it again in December, then issues the documents named above. Their
// issue dates do not follow their series: caami's December invoice is its
// last document, though the store lists it before the credit notes.
func (inv *invoicing) issue(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	recs := billingtest.Records()
	dayTwo := time.Date(2026, 11, 2, 0, 0, 0, 0, billingtest.Brussels())
	for _, r := range recs {
		if r.Tenant == "caami" && r.WindowStart.Before(dayTwo) {
			r.WindowStart, r.WindowEnd = r.WindowStart.Add(30*24*time.Hour), r.WindowEnd.Add(30*24*time.Hour)
			r.SetID()
			recs = append(recs, r)
		}
	}
	for i := range recs {
		recs[i].ReceivedAt = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	}
	if _, err := e.store.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	var got []string
	issue := func(p calendar.Month, tenants ...string) {
		res, err := inv.svc.Issue(ctx, p, tenants, "test", nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			got = append(got, r.Invoice.Number)
		}
	}
	credit := func(number string) {
		amount := decimal.RequireFromString("1.00")
		cn, err := inv.svc.CreditNote(ctx, number, &amount, "goodwill", "test")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, cn.Number)
	}
	issue(billingtest.Period())
	inv.clock.Advance(7 * 24 * time.Hour)
	credit(caamiNovember)
	credit(onaNovember)
	inv.clock.Advance(25 * 24 * time.Hour) // 2027-01-05, after December's grace period
	issue(calendar.Month{Year: 2026, Month: time.December, Loc: billingtest.Brussels()}, "caami")
	if want := []string{caamiNovember, onaNovember, caamiCredit, onaCredit, caamiDecember}; !slices.Equal(got, want) {
		t.Fatalf("issued %v, want %v", got, want)
	}
}

func invoicesEnv(t *testing.T) (*env, *invoicing) {
	t.Helper()
	inv := &invoicing{}
	e := newEnv(t, nil, nil, withInvoicing(t, inv))
	inv.issue(t, e)
	return e, inv
}

func TestInstitutionsListAndDownloadTheirInvoicesInEveryFormat(t *testing.T) {
	e, inv := invoicesEnv(t)
	ctx := context.Background()
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/invoices", caamiToken, nil)
	if a.code != http.StatusOK {
		t.Fatalf("list: %d %s", a.code, a.body)
	}
	var list billinghttp.InvoicesResponse
	a.decode(t, &list)
	var numbers []string
	for _, s := range list.Invoices {
		numbers = append(numbers, s.Number)
	}
	if want := []string{caamiNovember, caamiCredit, caamiDecember}; list.Tenant != "caami" || !slices.Equal(numbers, want) {
		t.Fatalf("caami's list: tenant %q, documents %v, want %v oldest first and none of ona's:\n%s", list.Tenant, numbers, want, a.body)
	}
	for _, s := range list.Invoices {
		doc, err := inv.svc.Document(ctx, s.Number)
		if err != nil {
			t.Fatal(err)
		}
		if s.Kind != doc.Kind || s.Period != doc.Period || s.IssueDate != doc.IssueDate || s.DueDate != doc.DueDate || s.Currency != "EUR" ||
			!s.Payable.Equal(doc.Totals.Payable.Decimal) || s.Refers != doc.Refers {
			t.Errorf("%s listed as %+v, issued as %s %s issued %s due %s, payable %s %s, refers %q", s.Number, s, doc.Kind, doc.Period,
				doc.IssueDate, doc.DueDate, doc.Totals.Payable.StringFixed(2), doc.Currency, doc.Refers)
		}
		if len(s.Links) != len(export.Formats()) {
			t.Errorf("%s links to %v, want one link per format %v", s.Number, s.Links, export.Formats())
		}
		for _, f := range export.Formats() {
			link := s.Links[f]
			if want := "/api/v1/tenants/caami/invoices/" + s.Number + "." + f; link != want {
				t.Errorf("%s's %s link is %q, want %q", s.Number, f, link, want)
				continue
			}
			a := do(t, "GET", e.api.URL+link, caamiToken, nil)
			var want bytes.Buffer
			if err := export.Write(&want, doc, f); err != nil {
				t.Fatal(err)
			}
			if a.code != http.StatusOK || !bytes.Equal(a.body, want.Bytes()) {
				t.Errorf("GET %s: %d, %d bytes, want 200 and the %d bytes of export.Write:\n%.300s", link, a.code, len(a.body), want.Len(), a.body)
			}
			if got, want := a.header.Get("Content-Type"), export.ContentType(f); got != want {
				t.Errorf("GET %s: Content-Type %q, want %q", link, got, want)
			}
			if got, want := a.header.Get("Content-Disposition"), `attachment; filename="`+export.FileName(doc, f)+`"`; got != want {
				t.Errorf("GET %s: Content-Disposition %q, want %q", link, got, want)
			}
		}
	}
}

func TestAnotherInstitutionsInvoiceIsNotFoundUnderOnesOwnTenant(t *testing.T) {
	e, _ := invoicesEnv(t)
	for _, c := range []struct{ token, tenant, theirs string }{
		{caamiToken, "caami", onaNovember}, {caamiToken, "caami", onaCredit}, {onaToken, "ona", caamiNovember}, {onaToken, "ona", caamiDecember},
	} {
		for _, f := range export.Formats() {
			a := do(t, "GET", e.api.URL+"/api/v1/tenants/"+c.tenant+"/invoices/"+c.theirs+"."+f, c.token, nil)
			// The answer must not tell that the number exists: it is the one
			// for a number nobody was issued.
			unknown := do(t, "GET", e.api.URL+"/api/v1/tenants/"+c.tenant+"/invoices/PM-2026-999999."+f, c.token, nil)
			if a.code != http.StatusNotFound || unknown.code != http.StatusNotFound ||
				string(a.body) != strings.ReplaceAll(string(unknown.body), "PM-2026-999999", c.theirs) {
				t.Errorf("%s asking for %s.%s: %d %s, want the 404 of an unknown number: %d %s", c.tenant, c.theirs, f, a.code, a.body,
					unknown.code, unknown.body)
			}
		}
	}
}

func TestInvoiceFileNamesAreChecked(t *testing.T) {
	e, _ := invoicesEnv(t)
	for _, c := range []struct {
		file string
		want []string
	}{
		{caamiNovember, []string{"is not an invoice file name"}},
		{".csv", []string{"is not an invoice file name"}},
		{url.PathEscape("PM 2026.csv"), []string{"is not an invoice file name"}},
		{caamiNovember + ".docx", append([]string{`unknown format \"docx\"`}, export.Formats()...)},
		{caamiNovember + ".csv.gz", append([]string{`unknown format \"csv.gz\"`}, export.Formats()...)},
	} {
		a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/invoices/"+c.file, caamiToken, nil)
		if a.code != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", c.file, a.code, a.body)
		}
		for _, w := range c.want {
			if !strings.Contains(string(a.body), w) {
				t.Errorf("%s: the answer %s does not say %s", c.file, a.body, w)
			}
		}
	}
}

func TestOperatorInvoiceReadsAreAudited(t *testing.T) {
	e, _ := invoicesEnv(t)
	for _, token := range []string{caamiToken, adminToken} {
		for _, path := range []string{"/api/v1/tenants/caami/invoices", "/api/v1/tenants/caami/invoices/" + caamiNovember + ".csv"} {
			if a := do(t, "GET", e.api.URL+path, token, nil); a.code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, a.code, a.body)
			}
		}
	}
	got := e.readAudit(t)
	want := []accesslog.Entry{
		{Time: now, Actor: "ops", Action: "GET /api/v1/tenants/{tenant}/invoices", Tenant: "caami", Detail: "/api/v1/tenants/caami/invoices"},
		{Time: now, Actor: "ops", Action: "GET /api/v1/tenants/{tenant}/invoices/{file}", Tenant: "caami",
			Detail: "/api/v1/tenants/caami/invoices/" + caamiNovember + ".csv"},
	}
	wantAudit(t, got, want) // only the operator's
}

func TestInvoiceRoutesWithoutBillingSaySo(t *testing.T) {
	e := newEnv(t, nil, nil)
	for _, path := range []string{"/api/v1/tenants/caami/invoices", "/api/v1/tenants/caami/invoices/" + caamiNovember + ".csv"} {
		a := do(t, "GET", e.api.URL+path, caamiToken, nil)
		if a.code != http.StatusNotImplemented || !strings.Contains(string(a.body), "billing.rate_card") {
			t.Errorf("GET %s without billing: %d %s, want 501 naming billing.rate_card", path, a.code, a.body)
		}
	}
}

// failingInvoices is an invoice store that is down.
type failingInvoices struct{}

func (failingInvoices) List(context.Context, state.DocumentFilter) ([]*billing.Invoice, error) {
	return nil, state.ErrNotReady
}

func (failingInvoices) Document(context.Context, string) (*billing.Invoice, error) {
	return nil, state.ErrNotReady
}

func TestInvoiceStoreFailuresAreServiceUnavailable(t *testing.T) {
	e := newEnv(t, nil, nil, func(o *setup) { o.invoices = failingInvoices{} })
	for _, path := range []string{"/api/v1/tenants/caami/invoices", "/api/v1/tenants/caami/invoices/" + caamiNovember + ".csv"} {
		if a := do(t, "GET", e.api.URL+path, caamiToken, nil); a.code != http.StatusServiceUnavailable {
			t.Errorf("GET %s with the store down: %d %s, want 503", path, a.code, a.body)
		}
	}
}

// peppolless serves one invoice whose institution has no Peppol endpoint.
type peppolless struct{ inv *billing.Invoice }

func (p peppolless) List(context.Context, state.DocumentFilter) ([]*billing.Invoice, error) {
	return []*billing.Invoice{p.inv}, nil
}

func (p peppolless) Document(context.Context, string) (*billing.Invoice, error) { return p.inv, nil }

func TestAnInvoiceThatCannotBeAnEInvoiceSaysWhatIsMissing(t *testing.T) {
	inv := billingtest.Issued(t, caamiNovember)
	inv.Customer.Party.EndpointID = ""
	e := newEnv(t, nil, nil, func(o *setup) { o.invoices = peppolless{inv} })
	a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/invoices/"+caamiNovember+".xml", caamiToken, nil)
	if a.code != http.StatusUnprocessableEntity || !strings.Contains(string(a.body), "endpoint") {
		t.Errorf("GET the e-invoice of an institution without a Peppol endpoint: %d %s, want 422 naming the endpoint", a.code, a.body)
	}
	if a := do(t, "GET", e.api.URL+"/api/v1/tenants/caami/invoices/"+caamiNovember+".pdf", caamiToken, nil); a.code != http.StatusOK {
		t.Errorf("its PDF: %d %s, want 200", a.code, a.body)
	}
}
