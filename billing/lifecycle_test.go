package billing_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver, to tamper with the stores' files
	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/usage"
)

// brussels is the worked example's platform time zone.
var brussels = billingtest.Brussels()

// novemberIssuable is when November 2026's invoices may first be issued:
// the month's end plus the default grace period of 3 days, written out here
// rather than asked of the service so that an error in IssuableFrom shows.
var novemberIssuable = time.Date(2026, 12, 4, 0, 0, 0, 0, brussels)

// workedExample returns a platform holding the worked example's records,
// received an hour before issueTime, with its clock at issueTime.
func workedExample(t *testing.T) *platform {
	t.Helper()
	p := newPlatform(t, issueTime.Add(-time.Hour))
	p.ship(t, billingtest.Records())
	p.clock.Advance(time.Hour)
	return p
}

// fork returns a platform whose metering store is a copy of p's and whose
// clock is its own, starting at p's time: shipping the worked example takes
// most of a test's time under -race, and a copy takes a few milliseconds.
// The fork has no collector: append to its store directly.
func fork(t *testing.T, p *platform) *platform {
	t.Helper()
	src, ok := p.store.(*embedded.Store)
	if !ok {
		t.Fatalf("fork: the platform's metering store is a %T, not the embedded store", p.store)
	}
	dir := t.TempDir()
	db := rawDB(t, src.Path())
	// VACUUM INTO writes a consistent copy, WAL included, while the store stays open.
	if _, err := db.Exec(`VACUUM INTO ?`, filepath.Join(dir, embedded.FileName)); err != nil {
		t.Fatalf("copy the metering store: %v", err)
	}
	st, err := embedded.Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &platform{clock: clock.NewManual(p.clock.Now()), store: st}
}

// setClock moves p's clock forward to at.
func setClock(t *testing.T, p *platform, at time.Time) {
	t.Helper()
	d := at.Sub(p.clock.Now())
	if d < 0 {
		t.Fatalf("setClock: %s is before the clock's %s", at, p.clock.Now())
	}
	p.clock.Advance(d)
}

// extraRecord is one hour of meter m from start on a container of its own (so
// that its id collides with none of the worked example's), in production.
func extraRecord(tenant string, m usage.Meter, start time.Time, q int64) usage.Record {
	r := usage.Record{SchemaVersion: usage.SchemaVersion, Tenant: tenant, Project: "extra", App: "batch", Environment: usage.EnvProd,
		ContainerID: "c-" + tenant + "-batch", RunID: "r-" + tenant + "-batch-1", Node: "node-1", Meter: m, Quantity: q,
		WindowStart: start.UTC(), WindowEnd: start.Add(time.Hour).UTC()}
	r.SetID()
	return r
}

// appendReceived stores recs directly in p's metering store as received at
// receivedAt, bypassing the collector: what a record the collector accepted
// then looks like, or what someone writing to the store behind its back adds.
func appendReceived(t *testing.T, p *platform, receivedAt time.Time, recs ...usage.Record) {
	t.Helper()
	for i := range recs {
		recs[i].ReceivedAt = receivedAt.UTC()
	}
	res, err := p.store.AppendUsage(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Duplicates) > 0 {
		t.Fatalf("records %v were already stored", res.Duplicates)
	}
}

// rawDB opens the SQLite file at path behind its store's back, as someone
// with access to the data directory could.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+url.PathEscape(path)+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// reopen opens a second handle on st's database, as a second process (a
// second collector, or `paasmeter invoice` beside the collector) holds one.
func reopen(t *testing.T, st state.Store) state.Store {
	t.Helper()
	return st.(*stateFixture).reopen(t)
}

// mustExecState runs a tampering statement on st's database behind its back;
// it must change exactly one row.
func mustExecState(t *testing.T, st state.Store, query string, args ...any) {
	t.Helper()
	res, err := st.(*stateFixture).exec(t, query, args...)
	mustChangeOne(t, query, res, err)
}

// mustExec runs a tampering statement that must change exactly one row: one
// that changed nothing would let the test pass without tampering.
func mustExec(t *testing.T, db *sql.DB, query string, args ...any) {
	t.Helper()
	res, err := db.Exec(query, args...)
	mustChangeOne(t, query, res, err)
}

func mustChangeOne(t *testing.T, query string, res sql.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("%s changed %d rows (%v), want 1", query, n, err)
	}
}

// replaced returns b with old replaced by repl, failing when old is absent.
func replaced(t *testing.T, b []byte, old, repl string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s is not in %.300s…", old, b)
	}
	return bytes.ReplaceAll(b, []byte(old), []byte(repl))
}

func mustIssue(t *testing.T, svc *billing.Service, p calendar.Month, tenants ...string) []billing.IssueResult {
	t.Helper()
	res, err := svc.Issue(context.Background(), p, tenants, "test", nil)
	if err != nil {
		t.Fatalf("issue %s: %v", p, err)
	}
	return res
}

// mustDraft drafts p's invoices of tenants (every institution when none).
func mustDraft(t *testing.T, svc *billing.Service, p calendar.Month, tenants ...string) []*billing.Invoice {
	t.Helper()
	drafts, err := svc.Draft(context.Background(), p, tenants, nil)
	if err != nil {
		t.Fatalf("draft %s: %v", p, err)
	}
	return drafts
}

// invoicesOf returns the invoices res issued, failing on any institution skipped.
func invoicesOf(t *testing.T, res []billing.IssueResult) []*billing.Invoice {
	t.Helper()
	var out []*billing.Invoice
	for _, r := range res {
		if r.Invoice == nil {
			t.Fatalf("%s was skipped (%s), want it invoiced", r.Tenant, r.Skipped)
		}
		out = append(out, r.Invoice)
	}
	return out
}

func lineStrings(inv *billing.Invoice) []string {
	var out []string
	for _, l := range inv.Lines {
		s := fmt.Sprintf("%s %s band %d: %s × %s = %s", l.Meter, l.Class, l.Band, l.Quantity.StringFixed(6), l.UnitPrice.String(), l.Amount.StringFixed(2))
		if l.Adjusts != "" {
			s += " adjusting " + l.Adjusts
		}
		out = append(out, s)
	}
	return out
}

func eur(s string) *decimal.Decimal {
	d := decimal.RequireFromString(s)
	return &d
}

// extraCustomers are n more institutions, so that two runs race over more
// than the worked example's two.
func extraCustomers(n int) []billing.Customer {
	out := make([]billing.Customer, n)
	for i := range out {
		tenant := fmt.Sprintf("inst-%02d", i+1)
		out[i] = billing.Customer{Tenant: tenant, Name: "Institution " + tenant, BuyerReference: "REF-" + tenant,
			VAT: billing.VAT{Category: billing.VATStandard, Rate: decimal.NewFromInt(21)}}
	}
	return out
}

func TestConcurrentIssueRuns(t *testing.T) {
	ctx := context.Background()
	customers := append(billingtest.Customers(), extraCustomers(10)...)
	var tenants []string
	for _, c := range customers {
		tenants = append(tenants, c.Tenant)
	}
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			t.Run("two concurrent issue runs leave no gap and no duplicate number", func(t *testing.T) {
				p := newPlatform(t, issueTime.Add(-time.Hour))
				p.ship(t, billingtest.Records())
				// The collector knows only the worked example's tenants: the
				// others' records go to the store as it would have stored them.
				for i, tenant := range tenants[2:] {
					ws := time.Date(2026, 11, 10+i, 10, 0, 0, 0, brussels)
					appendReceived(t, p, p.clock.Now(), extraRecord(tenant, usage.MeterCPU, ws, int64(i+1)*3_600_000_000_000),
						extraRecord(tenant, usage.MeterNetTx, ws, 1_000_000_000))
				}
				p.clock.Advance(time.Hour)
				reversed := slices.Clone(tenants)
				slices.Reverse(reversed)
				for round := range 4 {
					// Each round races on a fresh database: in even rounds both
					// runs walk the institutions in the same order, so they
					// collide on every one; in odd rounds one walks backwards,
					// so they meet in the middle.
					a := open(t)
					b := reopen(t, a)
					runs := []struct {
						svc     *billing.Service
						tenants []string
					}{{newServiceWith(t, p, a, billingtest.SLA{}, customers), nil}, {newServiceWith(t, p, b, billingtest.SLA{}, customers), nil}}
					if round%2 == 1 {
						runs[1].tenants = reversed
					}
					results := make([][]billing.IssueResult, len(runs))
					errs := make([]error, len(runs))
					start := make(chan struct{})
					var wg sync.WaitGroup
					for i, r := range runs {
						wg.Go(func() {
							<-start
							results[i], errs[i] = r.svc.Issue(ctx, billingtest.Period(), r.tenants, fmt.Sprintf("run-%d", i), nil)
						})
					}
					close(start)
					wg.Wait()

					numbers := map[string][]string{} // tenant → the numbers the runs issued it
					for i, res := range results {
						if errs[i] != nil {
							t.Fatalf("round %d, run %d: %v", round, i, errs[i])
						}
						if len(res) != len(tenants) {
							t.Errorf("round %d, run %d: %d results, want one per institution (%d)", round, i, len(res), len(tenants))
						}
						for _, r := range res {
							switch {
							case r.Invoice != nil:
								if r.Invoice.Customer.Tenant != r.Tenant {
									t.Errorf("round %d, run %d: the result of %s holds the invoice of %s", round, i, r.Tenant, r.Invoice.Customer.Tenant)
								}
								numbers[r.Tenant] = append(numbers[r.Tenant], r.Invoice.Number)
							case !strings.HasPrefix(r.Skipped, "already issued"):
								t.Errorf("round %d, run %d: %s skipped with %q, want \"already issued…\"", round, i, r.Tenant, r.Skipped)
							}
						}
					}
					for _, tenant := range tenants {
						if len(numbers[tenant]) != 1 {
							t.Errorf("round %d: %s was issued %v by the two runs, want exactly one invoice", round, tenant, numbers[tenant])
						}
					}
					for h, st := range []state.Store{a, b} {
						docs, err := st.ListDocuments(ctx, state.DocumentFilter{})
						if err != nil {
							t.Fatal(err)
						}
						var got, want []string
						for i, d := range docs {
							got = append(got, d.Number)
							want = append(want, fmt.Sprintf("PM-2026-%06d", i+1))
							if n := numbers[d.Tenant]; len(n) != 1 || n[0] != d.Number {
								t.Errorf("round %d, handle %d: %s is stored for %s, the runs issued it %v", round, h, d.Number, d.Tenant, n)
							}
						}
						// Listed in number order, exactly 1 to N is no gap and no duplicate.
						if len(docs) != len(tenants) || !slices.Equal(got, want) {
							t.Errorf("round %d, handle %d: stored %v, want PM-2026-000001 to PM-2026-%06d", round, h, got, len(tenants))
						}
					}
					audit, err := a.ListAudit(ctx, state.AuditFilter{SubjectPrefix: "PM-2026-"})
					if err != nil {
						t.Fatal(err)
					}
					if len(audit) != len(tenants) {
						t.Errorf("round %d: %d audit entries of issued invoices, want %d: the run that lost a race recorded nothing", round, len(audit), len(tenants))
					}
					if round == 0 {
						// The invoices issued through either handle verify through the other.
						for _, tenant := range tenants {
							for _, n := range numbers[tenant] {
								if err := runs[1].svc.Verify(ctx, n); err != nil {
									t.Errorf("verify %s: %v", n, err)
								}
							}
						}
					}
				}
			})
		})
	}
}

func TestVerifyDetectsTamperedInputs(t *testing.T) {
	ctx := context.Background()
	type tamper func(t *testing.T, p *platform, st state.Store, inv *billing.Invoice)
	tampers := []struct {
		name string
		// names is what verify's error must name: the day changed, and no other.
		names  string
		tamper tamper
	}{
		{"a stored record's quantity is changed by one", "changed on 2026-11-01 (", func(t *testing.T, p *platform, _ state.Store, _ *billing.Invoice) {
			// One nanosecond of CPU changes no amount: only the records' digest catches it.
			db := rawDB(t, p.store.(*embedded.Store).Path())
			mustExec(t, db, `UPDATE usage_records SET quantity = quantity + 1
				WHERE tenant = 'caami' AND id = (SELECT id FROM usage_records WHERE tenant = 'caami' AND meter = ? ORDER BY window_start LIMIT 1)`,
				string(usage.MeterCPU))
		}},
		{"a record received before the cutoff is added after issue", "changed on 2026-11-20 (", func(t *testing.T, p *platform, _ state.Store, inv *billing.Invoice) {
			appendReceived(t, p, inv.Inputs.Cutoff.Add(-time.Hour), extraRecord("caami", usage.MeterCPU, time.Date(2026, 11, 20, 10, 0, 0, 0, brussels), 3_600_000_000_000))
		}},
		{"the frozen rate card's content is altered", "", func(t *testing.T, _ *platform, st state.Store, inv *billing.Invoice) {
			content, err := st.FrozenContent(ctx, inv.Inputs.RateCard)
			if err != nil {
				t.Fatal(err)
			}
			mustExecState(t, st, `UPDATE frozen SET content = ? WHERE hash = ?`, replaced(t, content, `"0.0400"`, `"0.0500"`), inv.Inputs.RateCard)
		}},
		{"the payable amount in the issued document is altered", "", func(t *testing.T, _ *platform, st state.Store, inv *billing.Invoice) {
			d, err := st.Document(ctx, inv.Number)
			if err != nil {
				t.Fatal(err)
			}
			mustExecState(t, st, `UPDATE documents SET body = ? WHERE number = ?`, replaced(t, d.Body, `"payable":"106.30"`, `"payable":"96.30"`), inv.Number)
		}},
		{"the SLA figures in the issued document are altered", "", func(t *testing.T, _ *platform, st state.Store, inv *billing.Invoice) {
			d, err := st.Document(ctx, inv.Number)
			if err != nil {
				t.Fatal(err)
			}
			mustExecState(t, st, `UPDATE documents SET body = ? WHERE number = ?`, replaced(t, d.Body, `"availability":"99.85"`, `"availability":"99.95"`), inv.Number)
		}},
	}
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			t.Run("verify fails on any tampered input", func(t *testing.T) {
				base := workedExample(t)
				for _, tc := range tampers {
					t.Run(tc.name, func(t *testing.T) {
						p := fork(t, base)
						st := open(t)
						svc := newService(t, p, st, billingtest.SLA{})
						inv := invoicesOf(t, mustIssue(t, svc, billingtest.Period(), "caami"))[0]
						// Without this, a Verify that always fails would pass the test.
						if err := svc.Verify(ctx, inv.Number); err != nil {
							t.Fatalf("verify %s before tampering: %v", inv.Number, err)
						}
						tc.tamper(t, p, st, inv)
						err := svc.Verify(ctx, inv.Number)
						if !errors.Is(err, billing.ErrVerify) {
							t.Fatalf("verify %s after tampering: %v, want an error wrapping %q", inv.Number, err, billing.ErrVerify)
						}
						if tc.names != "" && (!strings.Contains(err.Error(), tc.names) || strings.Count(err.Error(), "issued with") != 2) {
							t.Errorf("verify %s after tampering: %q, want it to name %q and no other day", inv.Number, err, tc.names)
						}
					})
				}
			})
		})
	}
}

func TestLateRecords(t *testing.T) {
	ctx := context.Background()
	november, december := billingtest.Period(), billingtest.Period().Next()
	january := december.Next()
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			t.Run("a late record lands on the next invoice as an adjustment", func(t *testing.T) {
				p := workedExample(t)
				st := open(t)
				svc := newService(t, p, st, billingtest.SLA{})
				nov := invoicesOf(t, mustIssue(t, svc, november))
				novBody := map[string][]byte{}
				for _, inv := range nov {
					d, err := st.Document(ctx, inv.Number)
					if err != nil {
						t.Fatal(err)
					}
					novBody[inv.Number] = d.Body
				}
				caamiNov := nov[0]

				setClock(t, p, time.Date(2026, 12, 10, 9, 0, 0, 0, time.UTC))
				late := time.Date(2026, 11, 20, 10, 0, 0, 0, brussels) // v2's prices
				ws := time.Date(2026, 12, 5, 10, 0, 0, 0, brussels)
				p.ship(t, []usage.Record{
					// 10 GB on top of the 150 GB November billed: all above the free 100 GB.
					extraRecord("caami", usage.MeterNetTx, late, 10_000_000_000),
					// 25 vCPU-hours.
					extraRecord("caami", usage.MeterCPU, late, 25*3_600_000_000_000),
					// December's own usage: 10 and 5 vCPU-hours.
					extraRecord("caami", usage.MeterCPU, ws, 10*3_600_000_000_000),
					extraRecord("ona", usage.MeterCPU, ws, 5*3_600_000_000_000),
				})
				// December's grace period ends on January 4 at 00:00 in Brussels.
				setClock(t, p, time.Date(2027, 1, 4, 9, 0, 0, 0, time.UTC))
				decInv := invoicesOf(t, mustIssue(t, svc, december))
				caami, ona := decInv[0], decInv[1]
				if caami.Number != "PM-2027-000001" || ona.Number != "PM-2027-000002" {
					t.Errorf("December's invoices are %s and %s, want PM-2027-000001 and PM-2027-000002", caami.Number, ona.Number)
				}
				wantLines := []string{
					"cpu prod band 1: 10.000000 × 0.0360 = 0.36",
					"cpu prod band 1: 25.000000 × 0.0360 = 0.90 adjusting 2026-11",
					"net_tx_bytes prod band 2: 10.000000 × 0.0100 = 0.10 adjusting 2026-11",
				}
				if got := lineStrings(caami); !slices.Equal(got, wantLines) {
					t.Errorf("caami's December lines:\n%s\nwant\n%s", join(got), join(wantLines))
				}
				// November's frozen 10 % SLA credit applies to its adjustment;
				// December has no SLA figures.
				tot := caami.Totals
				if a := caami.Allowances; len(a) != 1 || a[0].Period != "2026-11" || a[0].Base.StringFixed(2) != "1.00" || a[0].Amount.StringFixed(2) != "-0.10" ||
					tot.TaxExclusive.StringFixed(2) != "1.26" || tot.VAT.StringFixed(2) != "0.26" || tot.Payable.StringFixed(2) != "1.52" {
					t.Errorf("caami's December: allowances %+v, taxable %s, VAT %s, payable %s; want one of -0.10 on November's 1.00, 1.26, 0.26, 1.52",
						caami.Allowances, tot.TaxExclusive.StringFixed(2), tot.VAT.StringFixed(2), tot.Payable.StringFixed(2))
				}
				if m := caami.Inputs.Months; len(m) != 2 || m[0].Period != "2026-12" || !m[0].Selection.After.IsZero() ||
					m[1].Period != "2026-11" || !m[1].Selection.After.Equal(caamiNov.Inputs.Cutoff) || !m[1].Selection.UpTo.Equal(caami.Inputs.Cutoff) || m[1].Records != 2 {
					t.Errorf("caami's December months: %+v\nwant 2026-12, then 2026-11's 2 records received in (%s, %s]", m, caamiNov.Inputs.Cutoff, caami.Inputs.Cutoff)
				}
				if got := lineStrings(ona); len(ona.Inputs.Months) != 1 || !slices.Equal(got, []string{"cpu prod band 1: 5.000000 × 0.0360 = 0.18"}) {
					t.Errorf("ona's December: lines %v, months %+v; want only its 5 vCPU-hours, no adjustment", got, ona.Inputs.Months)
				}

				for number, body := range novBody {
					d, err := st.Document(ctx, number)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(d.Body, body) {
						t.Errorf("%s changed after December was issued: %s", number, d.Body)
					}
				}
				for _, inv := range append(nov, decInv...) {
					if err := svc.Verify(ctx, inv.Number); err != nil {
						t.Errorf("verify %s: %v", inv.Number, err)
					}
				}
				for _, r := range mustIssue(t, svc, december) {
					if r.Invoice != nil || !strings.HasPrefix(r.Skipped, "already issued as PM-2027-") {
						t.Errorf("issuing December again: %s got %v, skipped %q; want it skipped as already issued", r.Tenant, r.Invoice, r.Skipped)
					}
				}

				// January's usage; February 4 is past January's grace period.
				p.ship(t, []usage.Record{extraRecord("caami", usage.MeterCPU, time.Date(2027, 1, 2, 10, 0, 0, 0, brussels), 3_600_000_000_000)})
				setClock(t, p, time.Date(2027, 2, 4, 9, 0, 0, 0, time.UTC))
				jan := invoicesOf(t, mustIssue(t, svc, january, "caami"))[0]
				if got := lineStrings(jan); len(jan.Inputs.Months) != 1 || !slices.Equal(got, []string{"cpu prod band 1: 1.000000 × 0.0360 = 0.04"}) {
					t.Errorf("caami's January: lines %v, months %+v; want only its vCPU-hour: the late November records were billed in December", got, jan.Inputs.Months)
				}
			})
		})
	}
}

func TestGracePeriod(t *testing.T) {
	ctx := context.Background()
	// The service keeps time to the microsecond: this is the last instant before.
	justBefore := novemberIssuable.Add(-time.Microsecond)
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			base := newPlatform(t, novemberIssuable.Add(-2*time.Hour))
			base.ship(t, billingtest.Records())
			t.Run("issuing before the grace period ends is refused", func(t *testing.T) {
				p := fork(t, base)
				st := open(t)
				svc := newService(t, p, st, billingtest.SLA{})
				setClock(t, p, justBefore)
				if res, err := svc.Issue(ctx, billingtest.Period(), nil, "test", nil); !errors.Is(err, billing.ErrTooEarly) {
					t.Fatalf("issue at %s: %+v, %v; want an error wrapping %q", justBefore, res, err, billing.ErrTooEarly)
				}
				if docs, err := st.ListDocuments(ctx, state.DocumentFilter{}); err != nil || len(docs) != 0 {
					t.Fatalf("a refused issue stored %d documents (%v)", len(docs), err)
				}
				setClock(t, p, novemberIssuable)
				// The refusal consumed no number.
				if inv := invoicesOf(t, mustIssue(t, svc, billingtest.Period())); inv[0].Number != "PM-2026-000001" || inv[1].Number != "PM-2026-000002" {
					t.Errorf("issued at the end of the grace period: %s and %s, want PM-2026-000001 and PM-2026-000002", inv[0].Number, inv[1].Number)
				}
			})
			t.Run("a draft before then is marked provisional", func(t *testing.T) {
				p := fork(t, base)
				st := open(t)
				svc := newService(t, p, st, billingtest.SLA{})
				for _, at := range []time.Time{justBefore, novemberIssuable} {
					setClock(t, p, at)
					drafts := mustDraft(t, svc, billingtest.Period())
					want := at.Before(novemberIssuable)
					for _, d := range drafts {
						if d.Provisional != want || d.Number != "" {
							t.Errorf("draft of %s at %s: provisional %t, number %q; want provisional %t and no number", d.Customer.Tenant, at, d.Provisional, d.Number, want)
						}
					}
				}
				if docs, err := st.ListDocuments(ctx, state.DocumentFilter{}); err != nil || len(docs) != 0 {
					t.Errorf("drafting stored %d documents (%v)", len(docs), err)
				}
			})
		})
	}
}

func TestCreditNotes(t *testing.T) {
	ctx := context.Background()
	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			t.Run("credit notes correct an invoice and never credit more than it", func(t *testing.T) {
				p := workedExample(t)
				st := open(t)
				svc := newService(t, p, st, billingtest.SLA{})
				inv := invoicesOf(t, mustIssue(t, svc, billingtest.Period(), "caami"))[0] // 87.85 + 18.45 VAT = 106.30

				cn, err := svc.CreditNote(ctx, inv.Number, eur("10.00"), "storage billed twice", "test")
				if err != nil {
					t.Fatal(err)
				}
				if cn.Number != "PMC-2026-000001" || cn.Kind != billing.KindCreditNote || cn.Refers != inv.Number ||
					cn.Totals.TaxExclusive.StringFixed(2) != "-10.00" || cn.Totals.VAT.StringFixed(2) != "-2.10" || cn.Totals.Payable.StringFixed(2) != "-12.10" {
					t.Errorf("credit note %s (%s of %s): %s + VAT %s = %s; want PMC-2026-000001, a credit note of %s: -10.00 + VAT -2.10 = -12.10",
						cn.Number, cn.Kind, cn.Refers, cn.Totals.TaxExclusive.StringFixed(2), cn.Totals.VAT.StringFixed(2), cn.Totals.Payable.StringFixed(2), inv.Number)
				}
				if err := svc.Verify(ctx, cn.Number); err != nil {
					t.Errorf("verify %s: %v", cn.Number, err)
				}

				if _, err := svc.CreditNote(ctx, inv.Number, eur("77.86"), "one cent too many", "test"); err == nil {
					t.Error("crediting 77.86 when 77.85 is left was accepted")
				}
				if _, err := svc.CreditNote(ctx, inv.Number, nil, "the whole invoice", "test"); err == nil {
					t.Error("crediting the whole invoice after a partial credit note was accepted")
				}
				if cns, err := st.ListDocuments(ctx, state.DocumentFilter{Refers: inv.Number}); err != nil || len(cns) != 1 {
					t.Fatalf("%d credit notes of %s after two refusals (%v), want 1", len(cns), inv.Number, err)
				}

				// What is left can still be credited, under the next number:
				// the refusals consumed none.
				rest, err := svc.CreditNote(ctx, inv.Number, eur("77.85"), "the rest", "test")
				if err != nil {
					t.Fatal(err)
				}
				// 77.85 × 21 % = 16.3485: with the first note's 2.10, the invoice's 18.45.
				if rest.Number != "PMC-2026-000002" || rest.Totals.VAT.StringFixed(2) != "-16.35" || rest.Totals.Payable.StringFixed(2) != "-94.20" {
					t.Errorf("credit note %s: VAT %s, payable %s; want PMC-2026-000002, -16.35, -94.20", rest.Number, rest.Totals.VAT.StringFixed(2), rest.Totals.Payable.StringFixed(2))
				}
				if err := svc.Verify(ctx, rest.Number); err != nil {
					t.Errorf("verify %s: %v", rest.Number, err)
				}
				if _, err := svc.CreditNote(ctx, inv.Number, eur("0.01"), "nothing is left", "test"); err == nil {
					t.Error("crediting 0.01 of a fully credited invoice was accepted")
				}
			})
			t.Run("partial credit notes covering the whole invoice leave no cent of VAT", func(t *testing.T) {
				p := workedExample(t)
				svc := newService(t, p, open(t), billingtest.SLA{})
				inv := invoicesOf(t, mustIssue(t, svc, billingtest.Period(), "caami"))[0] // 87.85 + 18.45 VAT = 106.30
				// Each on its own: 0.02 × 21 % = 0.0042 → 0.00 and 87.83 × 21 % =
				// 18.4443 → 18.44, one cent short of the invoice's 18.45.
				first, err := svc.CreditNote(ctx, inv.Number, eur("0.02"), "part", "test")
				if err != nil {
					t.Fatal(err)
				}
				last, err := svc.CreditNote(ctx, inv.Number, eur("87.83"), "the rest", "test")
				if err != nil {
					t.Fatal(err)
				}
				vat, payable := first.Totals.VAT.Add(last.Totals.VAT.Decimal), first.Totals.Payable.Add(last.Totals.Payable.Decimal)
				if vat.StringFixed(2) != "-18.45" || payable.StringFixed(2) != "-106.30" || last.Totals.VAT.StringFixed(2) != "-18.45" {
					t.Errorf("credited VAT %s (the last note's %s), payable %s; want -18.45 and -106.30: the invoice's, to the cent",
						vat.StringFixed(2), last.Totals.VAT.StringFixed(2), payable.StringFixed(2))
				}
				for _, cn := range []*billing.Invoice{first, last} {
					if err := svc.Verify(ctx, cn.Number); err != nil {
						t.Errorf("verify %s: %v", cn.Number, err)
					}
				}
			})
		})
	}
}
