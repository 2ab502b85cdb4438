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
)

// BenchmarkAppendUsage measures one writer appending batches of realistic
// records (1,000 containers of 50 institutions, one window a minute), each of
// the size the batching writer flushes at its defaults, into the ClickHouse
// store: an op is one append, its duplicate check and its insert. Besides
// records/s, which the server's share of the machine sets as much as the
// store does, it reports this process's CPU per record: what the store's
// append path costs a collector.
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
	batches := loadgen.Batches(loadgen.Spec{Records: b.N * size, BatchSize: size, Concurrency: 1, Tenant: "bench", Tenants: 50, Node: "node-1", End: now})
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	res, err := loadgen.Direct(ctx, s, batches, 1, now)
	b.StopTimer()
	if err != nil || res.New != b.N*size {
		b.Fatalf("%+v, %v", res, err)
	}
	b.ReportMetric(res.PerSecond(), "records/s")
	b.ReportMetric(float64(processCPU()-cpu0)/float64(res.New), "cpu-ns/record")
}

// processCPU is the CPU time this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
