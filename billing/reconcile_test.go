package billing_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/usage"
)

func TestReconciliation(t *testing.T) {
	ctx := context.Background()
	base := workedExample(t)
	tenants := []string{"caami", "ona"}
	nov := billingtest.Period()
	reconcileWith := func(t *testing.T, p *platform, st state.Store) []billing.DayCount {
		t.Helper()
		days, err := billing.Reconcile(ctx, p.store, st, exampleCard(t), tenants, nov)
		if err != nil {
			t.Fatal(err)
		}
		return days
	}
	reconcile := func(t *testing.T, p *platform) []billing.DayCount {
		t.Helper()
		return reconcileWith(t, p, openEmbeddedState(t, t.TempDir()))
	}
	// metrics exports days as the reconcile job does, at p's time.
	metrics := func(t *testing.T, p *platform, days []billing.DayCount) *prometheus.Registry {
		t.Helper()
		reg := prometheus.NewRegistry()
		m, err := billing.NewReconcileMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		m.Set(nov, days, tenants, p.clock.Now())
		return reg
	}
	t.Run("records shipped through the collector reconcile on every day", func(t *testing.T) {
		days := reconcile(t, base)
		if len(days) != 2*30 {
			t.Fatalf("%d institution-days, want 60 (two institutions, 30 days)", len(days))
		}
		var total int64
		for _, d := range days {
			if !d.OK() || d.Stored == 0 || d.Billed != 0 || d.Pending != d.Stored {
				t.Errorf("%s %s: accepted %d, stored %d, rated %d, billed %d, pending %d; want all pending: nothing is issued",
					d.Tenant, d.Day, d.Accepted, d.Stored, d.Rated, d.Billed, d.Pending)
			}
			total += d.Rated
		}
		if want := int64(len(billingtest.Records())); total != want {
			t.Errorf("%d records rated in all, %d were shipped", total, want)
		}
	})
	t.Run("a record lost from the store shows on its day and in the metrics", func(t *testing.T) {
		p := fork(t, base)
		mustExec(t, rawDB(t, p.store.(*embedded.Store).Path()),
			`DELETE FROM usage_records WHERE id = (SELECT id FROM usage_records WHERE tenant = 'ona' ORDER BY window_start LIMIT 1)`)
		days := reconcile(t, p)
		var bad []billing.DayCount
		for _, d := range days {
			if !d.OK() {
				bad = append(bad, d)
			}
		}
		if len(bad) != 1 || bad[0].Tenant != "ona" || bad[0].Day != "2026-11-01" || bad[0].Accepted != bad[0].Stored+1 || bad[0].Rated != bad[0].Stored {
			t.Fatalf("differences %+v, want ona on 2026-11-01 with one record accepted but neither stored nor rated", bad)
		}
		reg := metrics(t, p, days)
		if v := promtest.Value(t, reg, "paasmeter_reconcile_difference_days", map[string]string{"tenant": "ona", "period": "2026-11"}); v != 1 {
			t.Errorf("ona's difference days = %v, want 1", v)
		}
		if v := promtest.Value(t, reg, "paasmeter_reconcile_difference_days", map[string]string{"tenant": "caami", "period": "2026-11"}); v != 0 {
			t.Errorf("caami's difference days = %v, want 0", v)
		}
		acc := promtest.Value(t, reg, "paasmeter_reconcile_records", map[string]string{"tenant": "ona", "period": "2026-11", "stage": "accepted"})
		st := promtest.Value(t, reg, "paasmeter_reconcile_records", map[string]string{"tenant": "ona", "period": "2026-11", "stage": "stored"})
		if acc != st+1 {
			t.Errorf("ona: accepted %v, stored %v; want one more accepted", acc, st)
		}
	})

	for name, open := range stateStores(t) {
		t.Run("on the "+name+" state store", func(t *testing.T) {
			t.Run("issued invoices bill every record exactly once; a late one is pending, then billed", func(t *testing.T) {
				p := fork(t, base)
				st := open(t)
				svc := newService(t, p, st, billingtest.SLA{})
				mustIssue(t, svc, nov)
				for _, d := range reconcileWith(t, p, st) {
					if !d.OK() || d.Billed != d.Stored || d.Pending != 0 {
						t.Errorf("%s %s after issue: stored %d, billed %d, pending %d; want every record billed once", d.Tenant, d.Day, d.Stored, d.Billed, d.Pending)
					}
				}
				late := extraRecord("caami", usage.MeterCPU, time.Date(2026, 11, 20, 10, 0, 0, 0, brussels), 3_600_000_000_000)
				setClock(t, p, time.Date(2027, 1, 4, 9, 0, 0, 0, time.UTC))
				appendReceived(t, p, p.clock.Now(), late)
				pending := func(days []billing.DayCount) (n int64) {
					for _, d := range days {
						if !d.OK() {
							t.Errorf("%s %s: %+v, want no difference", d.Tenant, d.Day, d)
						}
						n += d.Pending
					}
					return n
				}
				if n := pending(reconcileWith(t, p, st)); n != 1 {
					t.Errorf("%d records pending with a late one, want 1", n)
				}
				mustIssue(t, svc, nov.Next())
				if n := pending(reconcileWith(t, p, st)); n != 0 {
					t.Errorf("%d records pending after December billed the late one, want 0", n)
				}
			})
			t.Run("a record billed twice or never shows on its day", func(t *testing.T) {
				p := fork(t, base)
				st := open(t)
				svc := newService(t, p, st, billingtest.SLA{})
				inv := invoicesOf(t, mustIssue(t, svc, nov))[1] // ona's
				// Forced into the state store: ona's invoice once more, as
				// if a run had issued it a second time.
				d, err := st.Document(ctx, inv.Number)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := st.Issue(ctx, "FORCED", func(seq int64) (state.Document, error) {
					d.Series, d.Seq, d.Number, d.UniqueKey = "FORCED", seq, fmt.Sprintf("FORCED-%d", seq), "forced"
					return d, nil
				}, state.AuditEntry{Actor: "test", Action: "force"}); err != nil {
					t.Fatal(err)
				}
				// And a record the store holds as received before caami's
				// cutoff, which no invoice billed.
				appendReceived(t, p, inv.Inputs.Cutoff.Add(-time.Minute),
					extraRecord("caami", usage.MeterCPU, time.Date(2026, 11, 20, 10, 0, 0, 0, brussels), 3_600_000_000_000))
				days := reconcileWith(t, p, st)
				bad := map[string]int{}
				for _, d := range days {
					if d.OK() {
						continue
					}
					bad[d.Tenant]++
					switch {
					case d.Tenant == "ona" && d.Billed != 2*d.Stored:
						t.Errorf("ona %s: stored %d, billed %d; want it billed twice", d.Day, d.Stored, d.Billed)
					case d.Tenant == "caami" && (d.Day != "2026-11-20" || d.Billed+1 != d.Stored):
						t.Errorf("caami %s: stored %d, billed %d; want 2026-11-20 with one record never billed", d.Day, d.Stored, d.Billed)
					}
				}
				if bad["ona"] != 30 || bad["caami"] != 1 {
					t.Errorf("days with a difference: %v, want ona's 30 (billed twice) and caami's 1 (never billed)", bad)
				}
				reg := metrics(t, p, days)
				stored := promtest.Value(t, reg, "paasmeter_reconcile_records", map[string]string{"tenant": "ona", "period": "2026-11", "stage": "stored"})
				if v := promtest.Value(t, reg, "paasmeter_reconcile_records", map[string]string{"tenant": "ona", "period": "2026-11", "stage": "billed"}); v != 2*stored {
					t.Errorf("ona's billed records = %v, want twice the %v stored", v, stored)
				}
				if v := promtest.Value(t, reg, "paasmeter_reconcile_difference_days", map[string]string{"tenant": "caami", "period": "2026-11"}); v != 1 {
					t.Errorf("caami's difference days = %v, want 1", v)
				}
			})
		})
	}
}
