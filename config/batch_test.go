package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/config"
)

func TestTheBatchingWriterIsOnForClickHouseAndOffForTheEmbeddedStoreUnlessConfigured(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		on   bool
	}{
		{"store:\n  data_dir: d\n", false},
		{"store:\n  metering_dsn: clickhouse://127.0.0.1:9000/pm\n", true},
		{"store:\n  batch: {enabled: true}\n", true},
		{"store:\n  metering_dsn: clickhouse://127.0.0.1:9000/pm\n  batch: {enabled: false}\n", false},
	} {
		c, err := config.Parse([]byte(tc.yaml), "x.yaml", noEnv)
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Store.MeteringBatch() != nil; got != tc.on {
			t.Errorf("%q: batching writer on = %v, want %v", tc.yaml, got, tc.on)
		}
	}
	c, err := config.Parse([]byte("store:\n  metering_dsn: clickhouse://127.0.0.1:9000/pm\n  batch: {max_delay: 50ms}\n"), "x.yaml", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Store.MeteringBatch(); b.MaxDelay != 50*time.Millisecond || b.MaxRecords != 50_000 || b.MaxQueued != 200_000 {
		t.Errorf("store.batch = %+v, want max_delay 50ms and the other defaults", b)
	}
}

func TestBadBatchSettingsAreNamedWithTheirPath(t *testing.T) {
	_, err := config.Parse([]byte("store:\n  batch: {max_records: 0, retry_after: 0s}\n"), "x.yaml", noEnv)
	for _, want := range []string{"store.batch.max_records:", "store.batch.retry_after:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
}
