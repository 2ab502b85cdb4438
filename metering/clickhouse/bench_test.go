package clickhouse_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/loadgen"
	"github.com/paasmeter/paasmeter/metering/batching"
	"github.com/paasmeter/paasmeter/metering/clickhouse"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/usage"
)

// BenchmarkAppendUsage measures one writer appending batches of new, realistic
// records (1,000 containers of 50 institutions, one window a minute), each of
// the size the batching writer flushes at its defaults, into the ClickHouse
// store: an op is one append, its duplicate check and its insert. Besides
// records/s, which the server's share of the machine sets as much as the
// store does, it reports this process's CPU per record during the appends:
// what the store's append path costs a collector, garbage collection included.
//
//	go test -run '^$' -bench AppendUsage -benchtime 20x -cpuprofile cpu.out ./metering/clickhouse/
func BenchmarkAppendUsage(b *testing.B) {
	ctx := context.Background()
	s, err := clickhouse.Open(ctx, chtest.Single(b).DSN(b), quiet)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	size := batching.DefaultConfig().MaxRecords
	now := time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)
	record := loadgen.Spec{Tenant: "bench", Tenants: 50, Node: "node-1", End: now}.Generator()
	batch := make([]usage.Record, size)
	var cpu time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for op := range b.N {
		// Each op's records are new (earlier windows): made outside the timer.
		b.StopTimer()
		for i := range batch {
			batch[i] = record(op*size + i)
			batch[i].ReceivedAt = now
		}
		b.StartTimer()
		cpu0 := processCPU()
		res, err := s.AppendUsage(ctx, batch)
		cpu += processCPU() - cpu0
		if err != nil || len(res.Duplicates) > 0 {
			b.Fatalf("%d duplicates, %v", len(res.Duplicates), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(cpu)/float64(b.N*size), "cpu-ns/record")
}

// processCPU is the CPU time this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
