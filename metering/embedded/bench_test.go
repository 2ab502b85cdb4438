package embedded_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/logs"
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

// BenchmarkAppendLogs measures one writer appending batches of 100-byte log
// lines of 20 streams straight into the store, the lines and their ids built
// beforehand: the store's own ceiling for log ingest.
func BenchmarkAppendLogs(b *testing.B) {
	const size = 5000
	s, err := embedded.Open(context.Background(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	text := strings.Repeat("x", 90)
	streams := make([]map[string]string, 20)
	for i := range streams {
		streams[i] = map[string]string{logs.LabelApp: fmt.Sprintf("app-%d", i), logs.LabelStream: "stdout"}
	}
	batches := make([][]logs.Line, b.N)
	for n := range batches {
		batches[n] = make([]logs.Line, size)
		for i := range batches[n] {
			l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: "caami", Time: now.Add(time.Duration(n*size+i) * time.Microsecond),
				Labels: streams[i*len(streams)/size], Line: fmt.Sprintf("%09d %s", n*size+i, text), ReceivedAt: now}
			l.SetID()
			batches[n][i] = l
		}
	}
	b.ResetTimer()
	for _, batch := range batches {
		if _, err := s.AppendLogs(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "lines/s")
}
