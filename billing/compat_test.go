package billing

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	meteringembedded "github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla/credit"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/usage"
)

// compatFixture is a service with one issued November invoice over three
// hours of CPU, whose stored documents a test rewrites as an earlier release
// wrote them.
type compatFixture struct {
	svc    *Service
	ms     *meteringembedded.Store
	st     *stateembedded.Store
	dir    string
	number string
}

func newCompatFixture(t *testing.T) *compatFixture {
	t.Helper()
	ctx := context.Background()
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	f := &compatFixture{dir: t.TempDir()}
	if f.ms, err = meteringembedded.Open(ctx, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.ms.Close() })
	if f.st, err = stateembedded.Open(ctx, f.dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.st.Close() })
	var recs []usage.Record
	for i := range 3 {
		ws := time.Date(2026, 11, 3+i, 10, 0, 0, 0, loc).UTC()
		r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: "caami", Project: "p", App: "a", Environment: usage.EnvProd,
			ContainerID: "c", RunID: "r", Node: "n", Meter: usage.MeterCPU, Quantity: 3_600_000_000_000,
			WindowStart: ws, WindowEnd: ws.Add(time.Hour), ReceivedAt: ws.Add(2 * time.Hour)}
		r.SetID()
		recs = append(recs, r)
	}
	if _, err := f.ms.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	card, err := ratecard.Load(filepath.Join("..", "deploy", "examples", "ratecard.yaml"), loc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Location, cfg.Seller = loc, Seller{Name: "S"}
	cfg.Customers = []Customer{{Tenant: "caami", Name: "C", VAT: VAT{Category: VATStandard, Rate: decimal.NewFromInt(21)}}}
	f.svc, err = New(Options{Config: cfg, Card: card, Usage: f.ms, SLA: noSLA{}, State: f.st,
		Clock: clock.NewManual(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := f.svc.Issue(ctx, calendar.Month{Year: 2026, Month: time.November, Loc: loc}, nil, "test", nil)
	if err != nil || res[0].Invoice == nil {
		t.Fatalf("issue: %+v, %v", res, err)
	}
	f.number = res[0].Invoice.Number
	return f
}

// rewrite stores document number as old returns it: the body an earlier
// release wrote, and its inputs hash.
func (f *compatFixture) rewrite(t *testing.T, number string, old func(*Invoice)) {
	t.Helper()
	d, err := f.st.Document(context.Background(), number)
	if err != nil {
		t.Fatal(err)
	}
	var inv Invoice
	if err := json.Unmarshal(d.Body, &inv); err != nil {
		t.Fatal(err)
	}
	old(&inv)
	inv.InputsHash = inv.inputsHash()
	body, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(f.dir, stateembedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE documents SET body = ?, hash = ? WHERE number = ?`, body, inv.InputsHash, number); err != nil {
		t.Fatal(err)
	}
}

// TestAnInvoiceIssuedBeforePerDayBillingStillVerifies: invoices issued
// before they said what they billed per day (MonthInput.Days) must still
// re-derive bit for bit, and still catch a changed record.
func TestAnInvoiceIssuedBeforePerDayBillingStillVerifies(t *testing.T) {
	ctx := context.Background()
	f := newCompatFixture(t)
	f.rewrite(t, f.number, func(old *Invoice) {
		for i := range old.Inputs.Months {
			old.Inputs.Months[i].Days = nil
		}
	})
	if err := f.svc.Verify(ctx, f.number); err != nil {
		t.Errorf("verify an invoice issued without days: %v", err)
	}
	mdb, err := sql.Open("sqlite3", "file:"+f.ms.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer mdb.Close()
	if res, err := mdb.Exec(`UPDATE usage_records SET quantity = quantity + 1
		WHERE window_start = (SELECT window_start FROM usage_records ORDER BY window_start LIMIT 1 OFFSET 1)`); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("the change of a record changed %d rows", n)
	}
	if err := f.svc.Verify(ctx, f.number); err == nil {
		t.Error("verify passed an invoice issued without days after a record changed")
	}
}

// TestDocumentsIssuedBeforeBothKindsHadOneShapeStillVerify: invoices and
// credit notes now have one shape (allowances [] rather than null, a
// correction line with a class, band and unit), and what an earlier release
// issued in the old shape still re-derives bit for bit.
func TestDocumentsIssuedBeforeBothKindsHadOneShapeStillVerify(t *testing.T) {
	ctx := context.Background()
	f := newCompatFixture(t)
	inv, err := f.svc.Document(ctx, f.number)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Allowances == nil {
		t.Error("an invoice without SLA credit has allowances null; want []")
	}
	amount := decimal.RequireFromString("0.05")
	cn, err := f.svc.CreditNote(ctx, f.number, &amount, "goodwill", "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(cn.Lines) != 1 {
		t.Fatalf("a partial credit note has %d lines, want 1", len(cn.Lines))
	}
	if l := cn.Lines[0]; l.Meter != CorrectionMeter || l.Class != CorrectionClass || l.Band != 1 || l.Unit != CorrectionUnit {
		t.Errorf("the correction line is %s/%s band %d in %q, want %s/%s band 1 in %q", l.Meter, l.Class, l.Band, l.Unit,
			CorrectionMeter, CorrectionClass, CorrectionUnit)
	}
	if cn.Allowances == nil {
		t.Error("a credit note has allowances null; want []")
	}
	f.rewrite(t, f.number, func(old *Invoice) { old.Allowances = nil })
	f.rewrite(t, cn.Number, func(old *Invoice) { old.Lines[0].Class, old.Lines[0].Band, old.Lines[0].Unit = "", 0, "" })
	for _, number := range []string{f.number, cn.Number} {
		if err := f.svc.Verify(ctx, number); err != nil {
			t.Errorf("verify %s as an earlier release issued it: %v", number, err)
		}
	}
	// The shim restores only the old shape: a stored credit note
	// whose correction line lost its price still fails.
	f.rewrite(t, cn.Number, func(old *Invoice) { old.Lines[0].UnitPrice = Price{decimal.NewFromInt(-2)} })
	if err := f.svc.Verify(ctx, cn.Number); err == nil {
		t.Error("verify passed a credit note whose correction line was altered")
	}
}

// noSLA has no figures for anyone.
type noSLA struct{}

func (noSLA) SLA(context.Context, string, calendar.Month) (credit.Figures, bool, error) {
	return credit.Figures{}, false, nil
}
