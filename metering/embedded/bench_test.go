package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// BenchmarkAppendUsage measures one writer appending batches of realistic
// records (1,000 containers, one window per minute) straight into the store.
func BenchmarkAppendUsage(b *testing.B) {
	for _, size := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := embedded.Open(context.Background(), b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			now := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
			batches := loadgen.Batches(loadgen.Spec{Records: b.N * size, BatchSize: size, Concurrency: 1, Tenant: "caami", Node: "node-1", End: now})
			b.ResetTimer()
			res, err := loadgen.Direct(context.Background(), s, batches, 1, now)
			if err != nil || res.New != b.N*size {
				b.Fatalf("%+v, %v", res, err)
			}
			b.ReportMetric(res.PerSecond(), "records/s")
		})
	}
}
