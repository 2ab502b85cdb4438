package collector_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// BenchmarkIngest compares, in one run, usage records per second through the
// collector's HTTP API with direct appends into the same embedded store.
// One op is one batch of 1,000 records; 4 clients send concurrently.
func BenchmarkIngest(b *testing.B) {
	const batch, clients = 1000, 4
	spec := func(n int) loadgen.Spec {
		return loadgen.Spec{Records: n * batch, BatchSize: batch, Concurrency: clients, Tenant: "caami", Node: "node-1", End: now}
	}
	b.Run("direct", func(b *testing.B) {
		store, err := embedded.Open(context.Background(), b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer store.Close()
		batches := loadgen.Batches(spec(b.N))
		b.ResetTimer()
		res, err := loadgen.Direct(context.Background(), store, batches, clients, now)
		if err != nil || res.New != b.N*batch {
			b.Fatalf("direct: %+v, %v", res, err)
		}
		b.ReportMetric(res.PerSecond(), "records/s")
	})
	b.Run("http", func(b *testing.B) {
		e := newEnv(b, nil, nil)
		bodies, err := loadgen.Encode(loadgen.Batches(spec(b.N)))
		if err != nil {
			b.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: time.Minute}
		b.ResetTimer()
		res, err := loadgen.HTTP(context.Background(), client, e.api.URL+"/api/v1/usage", agentNode1, bodies, clients)
		if err != nil || res.New != b.N*batch {
			b.Fatalf("http: %+v, %v", res, err)
		}
		b.ReportMetric(res.PerSecond(), "records/s")
	})
}
