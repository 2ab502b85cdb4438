package main

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
)

func TestParseSizes(t *testing.T) {
	got, err := parseSizes("300k, 1M,10M,100000000")
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{300_000, 1_000_000, 10_000_000, 100_000_000}; !slices.Equal(got, want) {
		t.Errorf("parseSizes = %v, want %v", got, want)
	}
	for _, bad := range []string{"", "1M,1M", "10M,1M", "0", "-1k", "1G", "1.5M"} {
		if _, err := parseSizes(bad); err == nil {
			t.Errorf("parseSizes(%q) took it", bad)
		}
	}
}

// The curve's every phase checks its count of records against those
// generated, so a run that succeeds has them all.
func TestBenchCurveMeasuresEveryPhaseAtEachSizeOnBothStores(t *testing.T) {
	t.Setenv(asMainEnv, "1")
	for _, store := range []string{"embedded", "clickhouse"} {
		t.Run(store, func(t *testing.T) {
			args := []string{"curve", "--store", store, "--sizes", "3k,6k", "--institutions", "4", "--batch", "1000",
				"--ratecard", "../../deploy/examples/ratecard.yaml"}
			if store == "clickhouse" {
				args = append(args, "--clickhouse-dsn", chtest.Single(t).DSN(t))
			}
			out, err := run(t, context.Background(), args...)
			if err != nil {
				t.Fatalf("bench curve: %v\n%s", err, out)
			}
			if m := regexp.MustCompile(`FINAL of every partition in \S+: (\d+) parts, (\d+) partitions`).FindAllStringSubmatch(out, -1); store == "clickhouse" &&
				(len(m) != 2 || m[0][1] != m[0][2] || m[1][1] != m[1][2]) {
				t.Errorf("the ingest did not merge each partition into one part at each size: %q\n%s", m, out)
			}
			for _, want := range []string{"curve on the " + store + " store", "3000       ingest", "3000       disk: ", "bytes per record",
				"3000       query", "3000       draft", "3000       reconcile", "6000       reconcile", "growth 3000→6000 records (×2): ingest ×"} {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
}
