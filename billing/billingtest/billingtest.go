// Package billingtest holds the billing issue's worked example (two
// institutions in November 2026, two rate-card versions) as usage records,
// and the documents billing issued from them, for the golden tests of billing,
// its renderings and its commands.
package billingtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/paasmeter/paasmeter/usage"
)

// Brussels is the platform time zone of the example.
func Brussels() *time.Location {
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		panic(fmt.Sprintf("billingtest: the tz database has no Europe/Brussels: %v", err))
	}
	return loc
}

// Period is November 2026 in Brussels.
func Period() calendar.Month {
	return calendar.Month{Year: 2026, Month: time.November, Loc: Brussels()}
}

// Seller is the example's platform operator.
func Seller() billing.Seller {
	return billing.Seller{Name: "State Cloud Platform Services", IBAN: "BE71096123456769", BIC: "GKCCBEBB",
		Party: institution.Party{LegalName: "State Cloud Platform Services SA", VATID: "BE0123456749", CompanyID: "0123456749",
			EndpointID: "0123456749", EndpointScheme: "0208", Email: "billing@statecloud.example",
			Address: institution.Address{Street: "Rue de la Loi 16", City: "Bruxelles", PostalCode: "1000", Country: "BE"}}}
}

// Customers are the example's institutions, in the order they are invoiced.
// Their first month is the example's: runs that began in October are billed
// as adjustments on November's invoice.
func Customers() []billing.Customer {
	return []billing.Customer{
		{Tenant: "caami", Name: "Caisse auxiliaire d'assurance maladie-invalidité", BuyerReference: "CAAMI-IT-2026",
			VAT: billing.VAT{Category: billing.VATStandard, Rate: decimal.NewFromInt(21)},
			Party: institution.Party{VATID: "BE0206733130", CompanyID: "0206733130", EndpointID: "0206733130", EndpointScheme: "0208",
				Address: institution.Address{Street: "Rue du Trône 30", City: "Bruxelles", PostalCode: "1000", Country: "BE"}}, Start: Period().String()},
		{Tenant: "ona", Name: "Office national des allocations familiales", BuyerReference: "ONA-PO-4471",
			VAT: billing.VAT{Category: billing.VATExempt, Rate: decimal.Zero, ExemptionReason: "Exempt public-sector service", ExemptionCode: "VATEX-EU-132"},
			Party: institution.Party{CompanyID: "0206747580", EndpointID: "0206747580", EndpointScheme: "0208",
				Address: institution.Address{Street: "Rue de Trèves 70", City: "Bruxelles", PostalCode: "1000", Country: "BE"}}, Start: Period().String()},
	}
}

// Availability is the example's November production availability per institution.
func Availability() map[string]decimal.Decimal {
	return map[string]decimal.Decimal{"caami": decimal.RequireFromString("99.85"), "ona": decimal.RequireFromString("99.95")}
}

const (
	gib  = int64(1) << 30
	hour = int64(3600)
)

// Records returns the example's usage: hourly windows (the collector takes
// windows of at most an hour) that add up exactly to the figures of the
// issue, plus records the rate card does not bill (used memory under a
// reserved basis, container seconds), which must change nothing.
func Records() []usage.Record {
	loc := Brussels()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, loc)
	v2 := time.Date(2026, 11, 16, 0, 0, 0, 0, loc)
	end := time.Date(2026, 12, 1, 0, 0, 0, 0, loc)
	var out []usage.Record
	b := builder{out: &out}

	// caami
	web := src{tenant: "caami", project: "portal", app: "web", env: usage.EnvProd, container: "c-caami-web", run: "r-caami-web-1"}
	b.spread(web, usage.MeterCPU, start, v2, 3_601_800_000_000_000)
	b.spread(web, usage.MeterCPU, v2, end, 2_880_900_000_000_000)
	b.spread(web, usage.MeterMemoryLimit, start, end, 11_132_555_231_232_000)
	b.spread(web, usage.MeterMemory, start, end, 3_000_000_000_000_000) // used: not billed on a reserved basis
	b.spread(web, usage.MeterContainerSeconds, start, end, 720*hour)    // not on the rate card
	b.spread(web, usage.MeterNetTx, start, end, 150_000_000_000)
	db := src{tenant: "caami", project: "portal", app: "db", env: usage.EnvProd, volume: "v-caami-db"}
	b.spread(db, usage.MeterStorageByteSeconds, start, end, 139_156_940_390_400_000)
	test := src{tenant: "caami", project: "portal", app: "web", env: usage.EnvTest, container: "c-caami-web-test", run: "r-caami-web-test-1"}
	b.spread(test, usage.MeterCPU, start, end, 433_200_000_000_000)
	b.spread(test, usage.MeterMemoryLimit, start, end, 5_566_277_615_616_000)

	// ona
	app := src{tenant: "ona", project: "allocations", app: "api", env: usage.EnvProd, container: "c-ona-api", run: "r-ona-api-1"}
	b.spread(app, usage.MeterCPU, start, v2, 180_000_000_000_000)
	b.spread(app, usage.MeterCPU, v2, end, 180_000_000_000_000)
	b.spread(app, usage.MeterMemoryLimit, start, end, 720*hour*gib)
	b.spread(app, usage.MeterNetTx, start, end, 20_000_000_000)
	// 30 runs of a 5-second batch job with a 1 GiB limit, one a day at noon.
	for d := range 30 {
		job := src{tenant: "ona", project: "allocations", app: "nightly", env: usage.EnvProd,
			container: fmt.Sprintf("c-ona-job-%02d", d+1), run: fmt.Sprintf("r-ona-job-%02d", d+1)}
		ws := time.Date(2026, 11, d+1, 12, 0, 0, 0, loc)
		b.add(job, usage.MeterMemoryLimit, ws, ws.Add(5*time.Second), 5*gib)
		b.add(job, usage.MeterCPU, ws, ws.Add(5*time.Second), 0) // cpu used nothing worth a cent
	}
	return out
}

type src struct {
	tenant, project, app string
	env                  usage.Environment
	container, run       string
	volume               string
}

type builder struct{ out *[]usage.Record }

// spread splits total over the hourly windows of [from, to), the remainder
// on the first.
func (b builder) spread(s src, m usage.Meter, from, to time.Time, total int64) {
	n := int64(to.Sub(from) / time.Hour)
	per, rest := total/n, total%n
	for i := range n {
		q := per
		if i == 0 {
			q += rest
		}
		ws := from.Add(time.Duration(i) * time.Hour)
		b.add(s, m, ws, ws.Add(time.Hour), q)
	}
}

func (b builder) add(s src, m usage.Meter, ws, we time.Time, q int64) {
	r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: s.tenant, Project: s.project, App: s.app, Environment: s.env,
		ContainerID: s.container, RunID: s.run, Volume: s.volume, Node: "node-1", Meter: m, Quantity: q,
		WindowStart: ws.UTC(), WindowEnd: we.UTC()}
	r.SetID()
	*b.out = append(*b.out, r)
}

// SLA serves Availability for the example's period as a billing.SLASource.
type SLA struct{}

// SLA implements billing.SLASource.
func (SLA) SLA(_ context.Context, tenant string, p calendar.Month) (credit.Figures, bool, error) {
	a, ok := Availability()[tenant]
	if !ok || p.String() != Period().String() {
		return credit.Figures{}, false, nil
	}
	return credit.Figures{Availability: a, Source: "billingtest"}, true, nil
}

// CreditNote is billing's credit note of inv as issued on issueDate (YYYY-MM-DD,
// due 30 days later) under number: of the whole invoice when amount is "", else
// of that tax-exclusive amount.
func CreditNote(t testing.TB, inv *billing.Invoice, number, issueDate, amount, reason string) *billing.Invoice {
	t.Helper()
	in := &billing.CreditInput{Reason: reason}
	if amount != "" {
		in.Amount = &billing.Money{Decimal: decimal.RequireFromString(amount)}
	}
	day, err := time.Parse(time.DateOnly, issueDate)
	if err != nil {
		t.Fatal(err)
	}
	cn, err := billing.CreditNoteOf(inv, in, day)
	if err != nil {
		t.Fatal(err)
	}
	cn.Number, cn.IssueDate, cn.DueDate = number, issueDate, day.AddDate(0, 0, 30).Format(time.DateOnly)
	return cn
}

// IssuedJSON returns a document of the worked example as billing's golden
// test issued and stored it (billing/testdata/worked-example/number.json).
func IssuedJSON(t testing.TB, number string) []byte {
	t.Helper()
	// Found from this file, so that tests of any package read the one copy.
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("billingtest: no caller information to find the worked example")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(self), "..", "testdata", "worked-example", number+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Issued is the document IssuedJSON returns, decoded.
func Issued(t testing.TB, number string) *billing.Invoice {
	t.Helper()
	var inv billing.Invoice
	if err := json.Unmarshal(IssuedJSON(t, number), &inv); err != nil {
		t.Fatalf("decode %s: %v", number, err)
	}
	return &inv
}
