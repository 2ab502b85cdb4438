// Package loadgen drives usage ingest for benchmarks: it generates valid
// batches ahead of time, then pushes them either over HTTP to a collector or
// straight into a metering store, so both paths can be compared in one run.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
)

// Spec describes the load.
type Spec struct {
	Records     int
	BatchSize   int
	Concurrency int
	// Tenant names the records' institution; with Tenants > 1 the containers
	// are spread over institutions Tenant-000, Tenant-001, …
	Tenant  string
	Tenants int
	Node    string
	// End is the end of the newest window; records go back from there.
	End time.Time
}

// Validate reports what is wrong with s.
func (s Spec) Validate() error {
	if s.Records <= 0 || s.BatchSize <= 0 || s.Concurrency <= 0 {
		return fmt.Errorf("loadgen: records (%d), batch size (%d) and concurrency (%d) must be positive", s.Records, s.BatchSize, s.Concurrency)
	}
	return nil
}

// containers is how many distinct containers the generated records come from.
const containers = 1000

// TenantIDs returns the institutions the records belong to.
func (s Spec) TenantIDs() []string {
	if s.Tenants <= 1 {
		return []string{s.Tenant}
	}
	out := make([]string, s.Tenants)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", s.Tenant, i)
	}
	return out
}

// Batches returns s.Records distinct valid records cut into batches: containers
// c0000..c0999 (spread over the spec's institutions) each with one 60-second
// cpu_ns window per minute, going back from s.End.
func Batches(s Spec) [][]usage.Record {
	record := s.Generator()
	var out [][]usage.Record
	for lo := 0; lo < s.Records; lo += s.BatchSize {
		b := make([]usage.Record, min(s.BatchSize, s.Records-lo))
		for i := range b {
			b[i] = record(lo + i)
		}
		out = append(out, b)
	}
	return out
}

// Generator returns the function that makes record i of the records Batches
// returns, its id set, for a caller that streams them instead.
func (s Spec) Generator() func(i int) usage.Record {
	tenants := s.TenantIDs()
	end := s.End.UTC().Truncate(time.Minute)
	return func(i int) usage.Record {
		start := end.Add(-time.Duration(i/containers+1) * time.Minute)
		c := fmt.Sprintf("c%04d", i%containers)
		r := usage.Record{
			SchemaVersion: usage.SchemaVersion, Tenant: tenants[i%containers%len(tenants)], Project: "claims", App: "pricing",
			Environment: usage.EnvProd, ContainerID: c, RunID: c + "-1", Node: s.Node, Meter: usage.MeterCPU,
			Quantity: int64(1_000_000 + i), WindowStart: start, WindowEnd: start.Add(time.Minute),
		}
		r.SetID()
		return r
	}
}

// Encode returns each batch as its JSON request body.
func Encode(batches [][]usage.Record) ([][]byte, error) {
	out := make([][]byte, len(batches))
	for i, b := range batches {
		var buf bytes.Buffer
		if err := usage.EncodeBatch(&buf, b); err != nil {
			return nil, err
		}
		out[i] = buf.Bytes()
	}
	return out, nil
}

// Result is what one run achieved.
type Result struct {
	Records    int
	New        int
	Duplicates int
	Elapsed    time.Duration
}

// PerSecond is the throughput in records per second.
func (r Result) PerSecond() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

// run calls do for every batch index with n workers and sums the results.
func run(ctx context.Context, batches, n int, do func(ctx context.Context, i int) (newRecs, dups int, err error)) (Result, error) {
	var next atomic.Int64
	var mu sync.Mutex
	var res Result
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= batches || ctx.Err() != nil {
					return
				}
				nw, dp, err := do(ctx, i)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				res.New += nw
				res.Duplicates += dp
				res.Records += nw + dp
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, firstErr
}

// Direct appends the batches straight into store with n concurrent writers.
func Direct(ctx context.Context, store metering.UsageAppender, batches [][]usage.Record, n int, receivedAt time.Time) (Result, error) {
	for _, b := range batches {
		for i := range b {
			b[i].ReceivedAt = receivedAt
		}
	}
	return run(ctx, len(batches), n, func(ctx context.Context, i int) (int, int, error) {
		res, err := store.AppendUsage(ctx, batches[i])
		if err != nil {
			return 0, 0, fmt.Errorf("batch %d: %w", i, err)
		}
		return len(batches[i]) - len(res.Duplicates), len(res.Duplicates), nil
	})
}

// HTTP posts the bodies to url (…/api/v1/usage) with n concurrent clients. A 429
// or 503 is retried after a short pause, as an agent would.
func HTTP(ctx context.Context, client *http.Client, url, token string, bodies [][]byte, n int) (Result, error) {
	return run(ctx, len(bodies), n, func(ctx context.Context, i int) (int, int, error) {
		for {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(bodies[i]))
			if err != nil {
				return 0, 0, err
			}
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				return 0, 0, fmt.Errorf("batch %d: %w", i, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return 0, 0, fmt.Errorf("batch %d: read answer: %w", i, err)
			}
			switch resp.StatusCode {
			case http.StatusOK:
				var out struct{ New, Duplicates int }
				if err := json.Unmarshal(body, &out); err != nil {
					return 0, 0, fmt.Errorf("batch %d: decode answer: %w", i, err)
				}
				return out.New, out.Duplicates, nil
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				select {
				case <-ctx.Done():
					return 0, 0, ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			default:
				return 0, 0, fmt.Errorf("batch %d: %s: %s", i, resp.Status, bytes.TrimSpace(body))
			}
		}
	})
}
