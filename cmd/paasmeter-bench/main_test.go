package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
)

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// run runs a paasmeter-bench command line and returns what it wrote.
func run(t *testing.T, ctx context.Context, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String() + errOut.String(), err
}

func TestBenchIngestRunsThroughTheBatchingWriter(t *testing.T) {
	out, err := run(t, context.Background(), "ingest", "--records", "2000", "--batch", "100", "--concurrency", "4", "--batching", "1ms")
	if err != nil || !strings.Contains(out, "batching writer: max_delay 1ms") || !strings.Contains(out, "ratio http/direct") {
		t.Fatalf("bench ingest: %v\n%s", err, out)
	}
}

func TestBenchClickHouseComparesTheCollectorWithClickhouseClientAndChecksTheMonthSums(t *testing.T) {
	dsn := chtest.Single(t).DSN(t)
	out, err := run(t, context.Background(), "clickhouse", "--dsn", dsn,
		"--records", "3000", "--batch", "500", "--concurrency", "3", "--tenants", "5", "--query-records", "20000")
	if err != nil {
		t.Fatalf("bench clickhouse: %v\n%s", err, out)
	}
	for _, want := range []string{"clickhouse-client: INSERT INTO usage_records", "direct: AppendUsage", "http: POST /api/v1/usage",
		"ratio http/clickhouse-client", "5 institutions, 20000 records", "sums exact"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
