package billing_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/billing/export"
	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/golden"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/state"
	stateembedded "github.com/paasmeter/paasmeter/state/embedded"
	"github.com/paasmeter/paasmeter/state/postgres"
	"github.com/paasmeter/paasmeter/state/postgres/pgtest"
	"github.com/paasmeter/paasmeter/state/statetest"
	"github.com/paasmeter/paasmeter/usage"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql on PostgreSQL, to tamper behind the store's back
)

const agentToken = "pm_test_agent"

// platform is a collector over an embedded metering store with a manual
// clock, and the way to feed it records as an agent does.
type platform struct {
	clock *clock.Manual
	store metering.Store
	url   string
}

func newPlatform(t *testing.T, now time.Time) *platform {
	t.Helper()
	ctx := context.Background()
	st, err := embedded.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn, err := auth.NewAuthenticator([]auth.TokenConfig{{Name: "agent", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{auth.AnyTenant}, SHA256: auth.Hash(agentToken)}})
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewManual(now)
	// The property tests draw quantities for the invoice arithmetic, not for
	// any machine: no physical bound applies.
	cfg := collector.DefaultConfig()
	cfg.Bounds = usage.Bounds{MaxNodeCPUs: math.MaxInt64, MaxNodeMemoryBytes: math.MaxInt64, MaxLinkBytesPerSecond: math.MaxInt64, MaxVolumeBytes: math.MaxInt64}
	srv, err := collector.New(collector.Options{Config: cfg, Store: st, Auth: authn,
		Institutions: institution.Of("caami", "ona"), Location: billingtest.Brussels(), Clock: clk,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	return &platform{clock: clk, store: st, url: api.URL}
}

// ship posts recs to the collector in batches, as an agent does.
func (p *platform) ship(t *testing.T, recs []usage.Record) {
	t.Helper()
	for len(recs) > 0 {
		n := min(len(recs), 5000)
		var body bytes.Buffer
		if err := usage.EncodeBatch(&body, recs[:n]); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(http.MethodPost, p.url+"/api/v1/usage", &body)
		req.Header.Set("Authorization", "Bearer "+agentToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /api/v1/usage: %s: %s", resp.Status, msg)
		}
		recs = recs[n:]
	}
}

// stateFixture is a state store under test and the ways to get behind its
// back: a second handle on the same database, as a second collector holds,
// and the database itself, for tampering.
type stateFixture struct {
	state.Store
	reopen func(t *testing.T) state.Store
	// exec runs a statement on the database behind the store's back; ?
	// placeholders are rewritten for the adapter's SQL dialect.
	exec func(t *testing.T, query string, args ...any) (sql.Result, error)
}

// stateStores opens each state-store adapter on a fresh database: the
// embedded one and PostgreSQL (a private server, state/postgres/pgtest).
func stateStores(t *testing.T) map[string]func(t *testing.T) state.Store {
	return map[string]func(t *testing.T) state.Store{
		"embedded": func(t *testing.T) state.Store {
			dir := t.TempDir()
			f := &stateFixture{Store: openEmbeddedState(t, dir)}
			f.reopen = func(t *testing.T) state.Store { return openEmbeddedState(t, dir) }
			f.exec = func(t *testing.T, q string, args ...any) (sql.Result, error) {
				return rawDB(t, filepath.Join(dir, "state.db")).Exec(q, args...)
			}
			return f
		},
		"PostgreSQL": func(t *testing.T) state.Store {
			dsn := pgtest.DSN(t)
			f := &stateFixture{Store: statetest.Open(t, postgres.Open, dsn)}
			f.reopen = func(t *testing.T) state.Store { return statetest.Open(t, postgres.Open, dsn) }
			f.exec = func(t *testing.T, q string, args ...any) (sql.Result, error) {
				db, err := sql.Open("pgx", dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				n := 0
				q = regexp.MustCompile(`\?`).ReplaceAllStringFunc(q, func(string) string { n++; return fmt.Sprintf("$%d", n) })
				return db.Exec(q, args...)
			}
			return f
		},
	}
}

func openEmbeddedState(t *testing.T, dir string) state.Store {
	return statetest.Open(t, stateembedded.Open, dir)
}

// TestMain stops the private PostgreSQL server when the tests end.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func exampleCard(t *testing.T) *ratecard.Card {
	t.Helper()
	card, err := ratecard.Load(filepath.Join("..", "deploy", "examples", "ratecard.yaml"), billingtest.Brussels())
	if err != nil {
		t.Fatal(err)
	}
	return card
}

func newService(t *testing.T, p *platform, st state.Store, sla billing.SLASource) *billing.Service {
	t.Helper()
	return newServiceWith(t, p, st, sla, billingtest.Customers())
}

// newServiceWith is newService for other institutions.
func newServiceWith(t *testing.T, p *platform, st state.Store, sla billing.SLASource, customers []billing.Customer, opts ...func(*billing.Config)) *billing.Service {
	t.Helper()
	cfg := billing.DefaultConfig()
	cfg.Location = billingtest.Brussels()
	cfg.Seller = billingtest.Seller()
	cfg.Customers = customers
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := billing.New(billing.Options{Config: cfg, Card: exampleCard(t), Usage: p.store, SLA: sla, State: st, Clock: p.clock,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// issueTime is after November 2026's grace period (3 days into December, Brussels).
var issueTime = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

func TestWorkedExampleIsInvoicedToTheCent(t *testing.T) {
	ctx := context.Background()
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			p := newPlatform(t, issueTime.Add(-time.Hour))
			p.ship(t, billingtest.Records())
			p.clock.Advance(time.Hour)
			svc := newService(t, p, open(t), billingtest.SLA{})
			res, err := svc.Issue(ctx, billingtest.Period(), nil, "test", nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != 2 || res[0].Invoice == nil || res[1].Invoice == nil {
				t.Fatalf("issue results: %+v", res)
			}
			want := []struct{ tenant, number, payable, vat string }{
				{"caami", "PM-2026-000001", "106.30", "18.45"},
				{"ona", "PM-2026-000002", "7.40", "0.00"},
			}
			for i, w := range want {
				inv := res[i].Invoice
				if inv.Customer.Tenant != w.tenant || inv.Number != w.number || inv.Totals.Payable.StringFixed(2) != w.payable || inv.Totals.VAT.StringFixed(2) != w.vat {
					t.Errorf("invoice %d: %s %s payable %s VAT %s, want %s %s payable %s VAT %s", i, inv.Customer.Tenant, inv.Number,
						inv.Totals.Payable.StringFixed(2), inv.Totals.VAT.StringFixed(2), w.tenant, w.number, w.payable, w.vat)
				}
				// The exports accounting imports, golden to the byte.
				for _, format := range []string{"json", "csv"} {
					var b bytes.Buffer
					if err := export.Write(&b, inv, format); err != nil {
						t.Fatal(err)
					}
					golden.Check(t, filepath.Join("testdata", "worked-example", w.number+"."+format), b.Bytes())
				}
				if err := svc.Verify(ctx, w.number); err != nil {
					t.Errorf("verify %s: %v", w.number, err)
				}
			}
			caami := res[0].Invoice
			var got []string
			for _, l := range caami.Lines {
				got = append(got, fmt.Sprintf("%s %s band %d: %s × %s = %s", l.Meter, l.Class, l.Band, l.Quantity.StringFixed(6), l.UnitPrice.String(), l.Amount.StringFixed(2)))
			}
			wantLines := []string{
				"cpu prod band 1: 1000.500000 × 0.0400 = 40.02",
				"cpu prod band 1: 800.250000 × 0.0360 = 28.81",
				"memory prod band 1: 2880.000000 × 0.0050 = 14.40",
				"storage_byte_seconds prod band 1: 36000.000000 × 0.00020 = 7.20",
				"net_tx_bytes prod band 1: 100.000000 × 0.00 = 0.00",
				"net_tx_bytes prod band 2: 50.000000 × 0.0100 = 0.50",
				"cpu nonprod band 1: 120.333333 × 0.0200 = 2.41",
				"memory nonprod band 1: 1440.000000 × 0.0025 = 3.60",
			}
			if fmt.Sprint(got) != fmt.Sprint(wantLines) {
				t.Errorf("caami's lines:\n%s\nwant\n%s", join(got), join(wantLines))
			}
			tot := caami.Totals
			if a := caami.Allowances; len(a) != 1 || a[0].Base.StringFixed(2) != "90.93" || a[0].Amount.StringFixed(2) != "-9.09" ||
				tot.Lines.StringFixed(2) != "96.94" || tot.TaxExclusive.StringFixed(2) != "87.85" {
				t.Errorf("caami: lines %s, allowances %+v, taxable %s; want 96.94, one SLA credit of 9.09 on 90.93, 87.85",
					tot.Lines.StringFixed(2), caami.Allowances, tot.TaxExclusive.StringFixed(2))
			}
		})
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for _, l := range s {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}
