package embedded_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// BenchmarkAppendUsage measures direct inserts into the embedded store, the
// baseline the HTTP ingest path is compared with (make bench).
func BenchmarkAppendUsage(b *testing.B) {
	for _, size := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := embedded.Open(context.Background(), b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			base := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
			recs := make([]usage.Record, size)
			n := 0
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				for j := range recs {
					recs[j] = usagetest.Record("caami", fmt.Sprintf("c%09d", n), usage.MeterCPU, base, 1)
					recs[j].ReceivedAt = base
					n++
				}
				b.StartTimer()
				if _, err := s.AppendUsage(context.Background(), recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
