package embedded

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

func TestACancelledScanStopsWithinABatchOfRows(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	n := 3 * scanCheckEvery
	recs := make([]usage.Record, n)
	for i := range recs {
		recs[i] = usagetest.Record("caami", "c1", usage.MeterCPU, start.Add(time.Duration(i)*time.Minute), 1)
		recs[i].ReceivedAt = start
	}
	if _, err := st.AppendUsage(ctx, recs); err != nil {
		t.Fatal(err)
	}
	scanCtx, cancel := context.WithCancel(ctx)
	seen := 0
	err = st.ScanUsage(scanCtx, metering.UsageFilter{Tenant: "caami", From: start, To: start.AddDate(0, 1, 0)}, func(r usage.Record) error {
		if r.Tenant != "caami" {
			t.Fatalf("record of tenant %q", r.Tenant)
		}
		seen++
		if seen == 1 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || seen > scanCheckEvery {
		t.Fatalf("scan returned %v after %d of %d rows; want context.Canceled within %d rows", err, seen, n, scanCheckEvery)
	}
	all := 0
	if err := st.ScanUsage(ctx, metering.UsageFilter{Tenant: "caami", From: start, To: start.AddDate(0, 1, 0)}, func(usage.Record) error { all++; return nil }); err != nil || all != n {
		t.Fatalf("an uncancelled scan read %d of %d rows (%v)", all, n, err)
	}
}
