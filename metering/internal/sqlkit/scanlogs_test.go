package sqlkit

import (
	"encoding/hex"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
)

// TestALogScanLetsReadyGoroutinesRunBeforeItEnds holds the walk to its
// yields: on one P, a goroutine made ready when a scan starts (an agent's
// ingest request, in the collector) must run within the scan, not after it
// or at the runtime's next 10 ms preemption.
func TestALogScanLetsReadyGoroutinesRunBeforeItEnds(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const total = 20 * logYieldEvery
	start := time.Unix(1_800_000_000, 0).UTC()
	chunk := make([]logs.Line, total)
	for i := range chunk {
		chunk[i] = logs.Line{
			Time:   start.Add(time.Duration(i) * time.Millisecond),
			ID:     hex.EncodeToString([]byte(fmt.Sprintf("line-%04d", i))),
			Labels: map[string]string{"app": "web"},
			Line:   "x",
		}
	}
	q := metering.LogQuery{Tenant: "t", From: start, To: start.Add(time.Hour), Limit: total, Forward: true}
	ranAt := make(chan int64, 1)
	var taken atomic.Int64
	fetched := false
	_, err := ScanLogs(q, func(*Cursor, int) ([]logs.Line, error) {
		if fetched {
			return nil, nil
		}
		fetched = true
		go func() { ranAt <- taken.Load() }()
		return chunk, nil
	}, func(logs.Line) bool {
		taken.Add(1)
		return true
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	select {
	case at := <-ranAt:
		if at > logYieldEvery {
			t.Errorf("the ready goroutine ran after %d lines of the scan; want it within the first %d (the scan yields every %d)", at, logYieldEvery, logYieldEvery)
		}
	default:
		t.Errorf("the ready goroutine had not run when the scan of %d lines ended: the scan does not yield", total)
	}
}
