package main

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/usage"
)

// asMainEnv makes a re-executed test binary act as paasmeter-bench: invoice
// runs its phases in child processes of os.Executable(), which under go test
// is this test binary.
const asMainEnv = "PAASMETER_TEST_AS_MAIN"

func init() {
	if os.Getenv(asMainEnv) != "1" {
		return
	}
	root := newRoot(os.Stdout, os.Stderr)
	root.SetArgs(os.Args[1:])
	if err := root.ExecuteContext(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "paasmeter-bench:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func TestBenchInvoiceDraftsEveryInstitutionAndReusesItsStore(t *testing.T) {
	t.Setenv(asMainEnv, "1")
	dir := t.TempDir()
	args := []string{"invoice", "--institutions", "5", "--records", "20000", "--batch", "3000", "--dir", dir,
		"--ratecard", "../../deploy/examples/ratecard.yaml"}
	out, err := run(t, context.Background(), args...)
	if err != nil {
		t.Fatalf("bench invoice: %v\n%s", err, out)
	}
	for _, want := range []string{"5 institutions, 20000 usage records of 2026-11", "fill: 20000 records appended",
		"sqlite: SELECT tenant, meter, environment", "scan: ScanUsage", "draft: Service.Draft of 2026-11",
		"with a context that cannot be cancelled", "draft: 5 invoices, 20000 records billed, sum of payable EUR "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, context.Background(), args...)
	if err != nil || !strings.Contains(out, "fill: skipped") || !strings.Contains(out, "draft: 5 invoices") {
		t.Errorf("bench invoice again on its store: %v\n%s", err, out)
	}
	// Other records are not mistaken for these.
	args[4] = "20001"
	if out, err := run(t, context.Background(), args...); err == nil || !strings.Contains(err.Error(), "other records") {
		t.Errorf("bench invoice with other --records on the same --dir: %v\n%s", err, out)
	}
}

func TestBenchInvoiceDraftsOverClickHouseByteForByteAsTheEmbeddedStoreAndReusesItsDatabase(t *testing.T) {
	t.Setenv(asMainEnv, "1")
	args := []string{"invoice", "--institutions", "4", "--records", "12000", "--batch", "3000", "--dir", t.TempDir(),
		"--ratecard", "../../deploy/examples/ratecard.yaml", "--clickhouse", "--clickhouse-dsn", chtest.Single(t).DSN(t)}
	out, err := run(t, context.Background(), args...)
	if err != nil {
		t.Fatalf("bench invoice --clickhouse: %v\n%s", err, out)
	}
	for _, want := range []string{"load: 12000 records by clickhouse-client", "draft over ClickHouse: Service.Draft of 2026-11",
		"draft over ClickHouse: 4 invoices, 12000 records billed", "drafts over ClickHouse and the embedded store: byte for byte the same"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if m := regexp.MustCompile(`merged \(OPTIMIZE … FINAL of every partition\) in \S+: (\d+) parts, (\d+) partitions`).FindStringSubmatch(out); m == nil || m[1] != m[2] {
		t.Errorf("the load did not merge each partition into one part: %q\n%s", m, out)
	}
	// ClickHouse alone, on the database the first run filled.
	out, err = run(t, context.Background(), append(args, "--embedded=false")...)
	if err != nil || !strings.Contains(out, "load: skipped") || strings.Contains(out, "sqlite:") || !strings.Contains(out, "draft over ClickHouse: 4 invoices") {
		t.Errorf("bench invoice --clickhouse --embedded=false again: %v\n%s", err, out)
	}
}

func TestBenchInvoiceRecordsAreValidAndAddUp(t *testing.T) {
	loc, err := time.LoadLocation(benchInvoiceZone)
	if err != nil {
		t.Fatal(err)
	}
	now := benchInvoiceNow
	for _, c := range []struct{ institutions, records int }{{3, 10_001}, {2, 30_000}, {7, 5}} {
		perTenant := map[string]int{}
		ids := map[string]bool{}
		err := benchInvoiceRecords(c.institutions, c.records, 997, loc, func(b []usage.Record) error {
			for i, r := range b {
				if ids[r.ID] {
					return fmt.Errorf("id %s twice", r.ID)
				}
				ids[r.ID] = true
				perTenant[r.Tenant]++
				if r.ReceivedAt.Before(r.WindowEnd) || r.ReceivedAt.After(now) || r.WindowStart.In(loc).Month() != time.November {
					return fmt.Errorf("record %+v: window or received_at outside November", r)
				}
				r.ReceivedAt = time.Time{} // stamped by the collector, not the agent
				if ps := usage.Validate(&r, i, now, usage.DefaultLimits()); ps != nil {
					return fmt.Errorf("record %+v: %v", r, ps)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%d institutions, %d records: %v", c.institutions, c.records, err)
		}
		if len(ids) != c.records {
			t.Errorf("%d institutions: %d records, want %d", c.institutions, len(ids), c.records)
		}
		for tenant, n := range perTenant {
			if n < c.records/c.institutions || n > c.records/c.institutions+1 {
				t.Errorf("%d institutions, %d records: %s has %d", c.institutions, c.records, tenant, n)
			}
		}
	}
}
