package billing_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/billing"
	"github.com/paasmeter/paasmeter/billing/billingtest"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

func TestReconciliation(t *testing.T) {
	ctx := context.Background()
	base := workedExample(t)
	tenants := []string{"caami", "ona"}
	nov := billingtest.Period()
	reconcile := func(t *testing.T, p *platform) []billing.DayCount {
		t.Helper()
		days, err := billing.Reconcile(ctx, p.store, exampleCard(t), tenants, nov)
		if err != nil {
			t.Fatal(err)
		}
		return days
	}
	t.Run("records shipped through the collector reconcile on every day", func(t *testing.T) {
		days := reconcile(t, base)
		if len(days) != 2*30 {
			t.Fatalf("%d institution-days, want 60 (two institutions, 30 days)", len(days))
		}
		var total int64
		for _, d := range days {
			if !d.OK() || d.Stored == 0 {
				t.Errorf("%s %s: accepted %d, stored %d, rated %d", d.Tenant, d.Day, d.Accepted, d.Stored, d.Rated)
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
		reg := prometheus.NewRegistry()
		m, err := billing.NewReconcileMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		m.Set(nov, days, tenants, p.clock.Now())
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
}
