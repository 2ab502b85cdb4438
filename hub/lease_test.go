package hub

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/state/postgres/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// exported returns the values of name's series in reg, by their lease label
// when they have one.
func exported(t *testing.T, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "lease" {
					key = l.GetValue()
				}
			}
			out[key] += m.GetGauge().GetValue()
		}
	}
	return out
}

// TestTwoCollectorsOnOnePostgreSQLRunEachLeasedJobOnce opens the collector
// of two hubs on one PostgreSQL: each leased job runs, and its figures are
// exported, on one of them; when that one closes, the other takes over.
func TestTwoCollectorsOnOnePostgreSQLRunEachLeasedJobOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	leases := []string{string(ReconcileMetrics), string(SLAMetrics), logRetentionLease}
	var hubs []*Hub
	for range 2 {
		h, _, err := open(t, exampleConfig(t, "# state_dsn: postgres://paasmeter@127.0.0.1:5432/paasmeter", "state_dsn: "+dsn), Collector)
		if err != nil {
			t.Fatal(err)
		}
		hubs = append(hubs, h)
	}
	// The first opened took every lease before the second asked.
	first, second := exported(t, hubs[0].registry, "paasmeter_collector_lease_held"), exported(t, hubs[1].registry, "paasmeter_collector_lease_held")
	for _, l := range leases {
		if first[l] != 1 || second[l] != 0 {
			t.Errorf("lease %s held by the first: %v, by the second: %v; want the first only", l, first[l], second[l])
		}
	}
	for _, name := range []string{"paasmeter_sla_last_report_timestamp_seconds", "paasmeter_reconcile_last_success_timestamp_seconds"} {
		if len(exported(t, hubs[0].registry, name)) != 1 || len(exported(t, hubs[1].registry, name)) != 0 {
			t.Errorf("%s exported by the first: %v, by the second: %v; want the first only", name,
				exported(t, hubs[0].registry, name), exported(t, hubs[1].registry, name))
		}
	}

	// The first stops cleanly: it releases its leases, and the second takes
	// them at its next renewal and runs the jobs at once.
	if err := hubs[0].Close(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the second collector takes the leases and exports the figures", func() error {
		held := exported(t, hubs[1].registry, "paasmeter_collector_lease_held")
		for _, l := range leases {
			if held[l] != 1 {
				return fmt.Errorf("lease %s not held: %v", l, held)
			}
		}
		for _, name := range []string{"paasmeter_sla_last_report_timestamp_seconds", "paasmeter_reconcile_last_success_timestamp_seconds"} {
			if v := exported(t, hubs[1].registry, name)[""]; v == 0 {
				return fmt.Errorf("%s not exported yet", name)
			}
		}
		return nil
	})
}
