package clickhouse_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	meteringembedded "github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/sla/credit"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/usage"
)

// aggregateCard prices October 2026 with two versions (the second from the
// 16th), the max basis and minimum run durations that change between them,
// tiers, and a meter left unpriced (net_rx_bytes).
const aggregateCard = `
currency: EUR
versions:
  - version: v1
    effective: 2026-01-01
    rates:
      - {meter: cpu, class: prod, basis: max, unit: vCPU-hour, price: 0.0400, min_run_duration: 10m}
      - {meter: cpu, class: nonprod, basis: used, unit: vCPU-hour, price: 0.0200}
      - {meter: memory, class: prod, basis: reserved, unit: GiB-hour, price: 0.0050, min_run_duration: 60s}
      - {meter: memory, class: nonprod, basis: max, unit: GiB-hour, price: 0.0025}
      - {meter: storage_byte_seconds, class: prod, unit: GiB-hour, price: 0.00020}
      - {meter: net_tx_bytes, class: prod, unit: GB, tiers: [{up_to: 1, price: 0.00}, {price: 0.0100}]}
      - {meter: net_tx_bytes, class: nonprod, unit: GB, price: 0.0100}
      - {meter: container_seconds, class: nonprod, unit: hour, price: 0.001, min_run_duration: 5m}
  - version: v2
    effective: 2026-10-16
    rates:
      - {meter: cpu, class: prod, basis: max, unit: vCPU-hour, price: 0.0360, min_run_duration: 15m}
      - {meter: cpu, class: nonprod, basis: max, unit: vCPU-hour, price: 0.0200}
      - {meter: memory, class: prod, basis: used, unit: GiB-hour, price: 0.0050}
      - {meter: memory, class: nonprod, basis: max, unit: GiB-hour, price: 0.0025, min_run_duration: 2m}
      - {meter: storage_byte_seconds, class: prod, unit: GiB-hour, price: 0.00025}
      - {meter: net_tx_bytes, class: prod, unit: GB, tiers: [{up_to: 1, price: 0.00}, {price: 0.0100}]}
      - {meter: net_tx_bytes, class: nonprod, unit: GB, price: 0.0100}
      - {meter: container_seconds, class: nonprod, unit: hour, price: 0.001, min_run_duration: 5m}
`

// aggregateMonth generates a month of several institutions around October
// 2026 in Brussels (25 hours on the 25th): runs of every length, some
// shorter than the minimum and some across the month's edges and the rate
// card's versions; windows where used wins and where reserved does, with
// one side missing, or a meter reported twice (by two nodes); volumes;
// and records received after the October invoice's cutoff.
func aggregateMonth(rng *rand.Rand, loc *time.Location) []usage.Record {
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, loc)
	end := time.Date(2026, 11, 1, 0, 0, 0, 0, loc)
	late := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	envs := []usage.Environment{usage.EnvProd, usage.EnvDev, usage.EnvTest, usage.EnvAcc}
	var out []usage.Record
	add := func(r usage.Record) {
		r.SchemaVersion = usage.SchemaVersion
		r.App = "app"
		if r.Node == "" {
			r.Node = "node-1"
		}
		r.ReceivedAt = r.WindowEnd.Add(time.Duration(rng.IntN(90)) * time.Second)
		if rng.IntN(30) == 0 {
			r.ReceivedAt = late
		}
		r.SetID()
		out = append(out, r)
	}
	for ti := range 5 {
		tenant := fmt.Sprintf("inst%d", ti)
		for ci := range 8 {
			base := usage.Record{Tenant: tenant, Project: fmt.Sprintf("p%d", ci%2), Environment: envs[(ci+ti)%len(envs)],
				ContainerID: fmt.Sprintf("c%d", ci)}
			for ri := range 4 {
				r := base
				r.RunID = fmt.Sprintf("r%d", ri)
				// From two hours before the month to an hour after it.
				from := start.Add(-2*time.Hour + time.Duration(rng.Int64N(int64(end.Sub(start)+3*time.Hour))))
				switch ri {
				case 0: // across the month's start
					from = start.Add(-time.Duration(1+rng.IntN(5)) * time.Minute)
				case 1: // across its end
					from = end.Add(-time.Duration(10+rng.IntN(600)) * time.Second)
				}
				long := []time.Duration{20 * time.Second, 90 * time.Second, 4 * time.Minute, 13 * time.Minute, 40 * time.Minute, 3 * time.Hour}
				runEnd := from.Add(long[rng.IntN(len(long))])
				for ws := from; ws.Before(runEnd); ws = ws.Add(time.Minute) {
					we := ws.Add(time.Minute)
					if we.After(runEnd) {
						we = runEnd
					}
					secs := int64(we.Sub(ws) / time.Second)
					w := r
					w.WindowStart, w.WindowEnd = ws, we
					meter := func(m usage.Meter, q int64) {
						x := w
						x.Meter, x.Quantity = m, q
						add(x)
					}
					if rng.IntN(8) != 0 {
						meter(usage.MeterCPU, rng.Int64N(2*int64(we.Sub(ws))))
					}
					if rng.IntN(8) != 0 {
						meter(usage.MeterCPULimit, []int64{500, 1000, 1500}[rng.IntN(3)]*secs)
					}
					if rng.IntN(20) == 0 { // a second node reports the window too
						x := w
						x.Node, x.Meter, x.Quantity = "node-2", usage.MeterCPU, rng.Int64N(2*int64(we.Sub(ws)))
						add(x)
					}
					meter(usage.MeterMemory, rng.Int64N(1<<30)*secs)
					if rng.IntN(6) != 0 {
						meter(usage.MeterMemoryLimit, (1<<29)*secs)
					}
					meter(usage.MeterNetTx, rng.Int64N(50_000_000))
					meter(usage.MeterNetRx, rng.Int64N(50_000_000))
					meter(usage.MeterContainerSeconds, secs)
				}
			}
		}
		for h := start.Add(-time.Hour); h.Before(end.Add(time.Hour)); h = h.Add(time.Hour) {
			add(usage.Record{Tenant: tenant, Project: "p0", Environment: usage.EnvProd, Volume: "vol", Meter: usage.MeterStorageByteSeconds,
				WindowStart: h, WindowEnd: h.Add(time.Hour), Quantity: rng.Int64N(10<<30) * 3600})
		}
	}
	return out
}

type noSLA struct{}

func (noSLA) SLA(context.Context, string, calendar.Month) (credit.Figures, bool, error) {
	return credit.Figures{}, false, nil
}

// monthRun is what one store's invoice run of the generated month gives.
type monthRun struct {
	issued    [][]byte // October's invoices as issued
	drafts    []byte   // November's drafts, with October's late records
	reconcile []billing.DayCount
}

func runMonth(t *testing.T, store metering.Store, card *ratecard.Card, loc *time.Location, recs []usage.Record) monthRun {
	t.Helper()
	ctx := context.Background()
	for b := range slices.Chunk(recs, 5000) {
		if _, err := store.AppendUsage(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	st, err := stateembedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := billing.DefaultConfig()
	cfg.Location, cfg.Seller = loc, billing.Seller{Name: "S"}
	var tenants []string
	for i := range 5 {
		tenant := fmt.Sprintf("inst%d", i)
		tenants = append(tenants, tenant)
		cfg.Customers = append(cfg.Customers, billing.Customer{Tenant: tenant, Name: tenant, Start: "2026-10",
			VAT: billing.VAT{Category: billing.VATStandard, Rate: decimal.NewFromInt(21)}})
	}
	clk := clock.NewManual(time.Date(2026, 11, 4, 9, 0, 0, 0, time.UTC))
	svc, err := billing.New(billing.Options{Config: cfg, Card: card, Usage: store, SLA: noSLA{}, State: st, Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	october := calendar.Month{Year: 2026, Month: time.October, Loc: loc}
	res, err := svc.Issue(ctx, october, nil, "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var out monthRun
	for _, r := range res {
		if r.Invoice == nil {
			t.Fatalf("October of %s: nothing issued: %+v", r.Tenant, r)
		}
		if err := svc.Verify(ctx, r.Invoice.Number); err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(r.Invoice)
		if err != nil {
			t.Fatal(err)
		}
		out.issued = append(out.issued, b)
	}
	clk.Set(time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC))
	drafts, err := svc.Draft(ctx, calendar.Month{Year: 2026, Month: time.November, Loc: loc}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if out.drafts, err = json.Marshal(drafts); err != nil {
		t.Fatal(err)
	}
	src, ok := store.(billing.Counts)
	if !ok {
		t.Fatalf("%T does not count", store)
	}
	if out.reconcile, err = billing.Reconcile(ctx, src, st, card, tenants, october); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInvoicesFromServerSumsAreBitIdenticalToTheEmbeddedStore: the invoice
// run over ClickHouse, which sums in the server (metering.UsageAggregator),
// issues and drafts byte for byte what the embedded store's row scan does
// for the same records, and reconciles the same counts.
func TestInvoicesFromServerSumsAreBitIdenticalToTheEmbeddedStore(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	recs := aggregateMonth(rand.New(rand.NewPCG(21, 4)), loc)
	t.Logf("%d records", len(recs))
	// Without a minimum run duration the store's queries group no runs: a
	// card without any takes that path (its constant branches once gave a
	// column of another type).
	noMinimum := regexp.MustCompile(`, min_run_duration: [0-9a-z]+`).ReplaceAllString(aggregateCard, "")
	for _, c := range []struct{ name, card string }{{"with minimum run durations", aggregateCard}, {"without a minimum run duration", noMinimum}} {
		t.Run(c.name, func(t *testing.T) {
			card, err := ratecard.Parse([]byte(c.card), "aggregate card", loc)
			if err != nil {
				t.Fatal(err)
			}
			emb, err := meteringembedded.Open(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { emb.Close() })
			want := runMonth(t, emb, card, loc, recs)
			checkCovers(t, want, c.card == aggregateCard)

			for name, target := range map[string]dsner{"single server": chtest.Single(t), "two shards": chtest.TwoShards(t)} {
				t.Run(name, func(t *testing.T) {
					s, err := clickhouse.Open(context.Background(), target.DSN(t), slog.New(slog.NewTextHandler(io.Discard, nil)))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { s.Close() })
					got := runMonth(t, s, card, loc, recs)
					for i := range want.issued {
						if !bytes.Equal(got.issued[i], want.issued[i]) {
							t.Errorf("issued invoice %d differs:\nclickhouse %s\nembedded   %s", i, got.issued[i], want.issued[i])
						}
					}
					if !bytes.Equal(got.drafts, want.drafts) {
						t.Errorf("November's drafts differ:\nclickhouse %s\nembedded   %s", got.drafts, want.drafts)
					}
					if !slices.Equal(got.reconcile, want.reconcile) {
						t.Errorf("reconciliation differs:\nclickhouse %+v\nembedded   %+v", got.reconcile, want.reconcile)
					}
				})
			}
		})
	}
}

// checkCovers fails when the generated month misses a case the comparison
// is meant to cover: top-ups exactly when the card has minimum run durations.
func checkCovers(t *testing.T, r monthRun, minimums bool) {
	t.Helper()
	var topUp, uplift, adjusts, versions bool
	for _, b := range append(slices.Clone(r.issued), r.drafts) {
		var invs []billing.Invoice
		if b[0] == '[' {
			if err := json.Unmarshal(b, &invs); err != nil {
				t.Fatal(err)
			}
		} else {
			var inv billing.Invoice
			if err := json.Unmarshal(b, &inv); err != nil {
				t.Fatal(err)
			}
			invs = append(invs, inv)
		}
		for _, inv := range invs {
			for _, a := range inv.Annex {
				topUp = topUp || a.MinRunTopUp != nil
				uplift = uplift || a.ReservedUplift != nil
			}
			for _, l := range inv.Lines {
				adjusts = adjusts || l.Adjusts != ""
				versions = versions || l.Version != ""
			}
		}
	}
	if topUp != minimums || !uplift || !adjusts || !versions {
		t.Fatalf("the generated month covers too little: top-up %v, reserved uplift %v, adjustment lines %v, lines per version %v",
			topUp, uplift, adjusts, versions)
	}
	for _, d := range r.reconcile {
		if !d.OK() {
			t.Fatalf("reconciliation of the embedded store: %+v", d)
		}
	}
}

// TestReconciliationRefusesWhatTheInvoiceRunRefuses: records older than the
// rate card's first version fail the invoice run on every store, and so
// must counting them for the reconciliation, which on ClickHouse asks the
// server for counts alone.
func TestReconciliationRefusesWhatTheInvoiceRunRefuses(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	card, err := ratecard.Parse([]byte(`
currency: EUR
versions:
  - version: v1
    effective: 2026-10-16
    rates:
      - {meter: cpu, class: prod, basis: used, unit: vCPU-hour, price: 0.0400}
`), "a card from mid-October", loc)
	if err != nil {
		t.Fatal(err)
	}
	recs := aggregateMonth(rand.New(rand.NewPCG(3, 5)), loc)
	emb, err := meteringembedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	for name, store := range map[string]metering.Store{"embedded": emb, "clickhouse": open(t, chtest.Single(t))} {
		t.Run(name, func(t *testing.T) {
			for b := range slices.Chunk(recs, 5000) {
				if _, err := store.AppendUsage(context.Background(), b); err != nil {
					t.Fatal(err)
				}
			}
			st, err := stateembedded.Open(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			october := calendar.Month{Year: 2026, Month: time.October, Loc: loc}
			_, err = billing.Reconcile(context.Background(), store.(billing.Counts), st, card, []string{"inst0"}, october)
			if !errors.Is(err, billing.ErrNoRateCardVersion) {
				t.Errorf("reconciling October with a card from the 16th: %v, want %v", err, billing.ErrNoRateCardVersion)
			}
		})
	}
}
