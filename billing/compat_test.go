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
	"github.com/paasmeter/paasmeter/internal/clock"
	meteringembedded "github.com/paasmeter/paasmeter/metering/embedded"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/usage"
)

// TestAnInvoiceIssuedBeforePerDayBillingStillVerifies: invoices issued
// before they said what they billed per day (MonthInput.Days) must still
// re-derive bit for bit, and still catch a changed record.
func TestAnInvoiceIssuedBeforePerDayBillingStillVerifies(t *testing.T) {
	ctx := context.Background()
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	ms, err := meteringembedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	dir := t.TempDir()
	st, err := stateembedded.Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var recs []usage.Record
	for i := range 3 {
		ws := time.Date(2026, 11, 3+i, 10, 0, 0, 0, loc).UTC()
		r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: "caami", Project: "p", App: "a", Environment: usage.EnvProd,
			ContainerID: "c", RunID: "r", Node: "n", Meter: usage.MeterCPU, Quantity: 3_600_000_000_000,
			WindowStart: ws, WindowEnd: ws.Add(time.Hour), ReceivedAt: ws.Add(2 * time.Hour)}
		r.SetID()
		recs = append(recs, r)
	}
	if _, err := ms.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	card, err := ratecard.Load(filepath.Join("..", "deploy", "examples", "ratecard.yaml"), loc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Location, cfg.Seller = loc, Seller{Name: "S"}
	cfg.Customers = []Customer{{Tenant: "caami", Name: "C", VAT: VAT{Category: VATStandard, Rate: decimal.NewFromInt(21)}}}
	svc, err := New(Options{Config: cfg, Card: card, Usage: ms, SLA: noSLA{}, State: st,
		Clock: clock.NewManual(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	res, err := svc.Issue(ctx, Period{Year: 2026, Month: time.November, Loc: loc}, nil, "test", nil)
	if err != nil || res[0].Invoice == nil {
		t.Fatalf("issue: %+v, %v", res, err)
	}
	number := res[0].Invoice.Number
	// The invoice as an earlier release issued it: no days, its hash without them.
	d, err := st.Document(ctx, number)
	if err != nil {
		t.Fatal(err)
	}
	var old Invoice
	if err := json.Unmarshal(d.Body, &old); err != nil {
		t.Fatal(err)
	}
	for i := range old.Inputs.Months {
		old.Inputs.Months[i].Days = nil
	}
	old.InputsHash = old.inputsHash()
	body, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite3", "file:"+filepath.Join(dir, stateembedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE documents SET body = ?, hash = ? WHERE number = ?`, body, old.InputsHash, number); err != nil {
		t.Fatal(err)
	}
	if err := svc.Verify(ctx, number); err != nil {
		t.Errorf("verify an invoice issued without days: %v", err)
	}
	mdb, err := sql.Open("sqlite3", "file:"+ms.Path())
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
	if err := svc.Verify(ctx, number); err == nil {
		t.Error("verify passed an invoice issued without days after a record changed")
	}
}

// noSLA has no figures for anyone.
type noSLA struct{}

func (noSLA) SLA(context.Context, string, Period) (SLAFigures, bool, error) {
	return SLAFigures{}, false, nil
}
