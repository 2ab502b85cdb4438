package collector_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"golang.org/x/sync/errgroup"

	"github.com/paasmeter/paasmeter/collector"
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

// BenchmarkLokiPush measures 100-byte log lines per second through POST
// /loki/api/v1/push (snappy protobuf, pushes of 5,000 lines of 20 streams,
// two clients so that one push is decoded while another is written) into the
// embedded store: compare with the direct appends of metering/embedded's
// BenchmarkAppendLogs, which uses the same lines.
func BenchmarkLokiPush(b *testing.B) {
	const size, streams, clients = 5000, 20, 2
	cfg := collector.DefaultConfig()
	cfg.Logs.IngestionRateBytes, cfg.Logs.IngestionBurstBytes = 1<<30, 1<<30 // measure the pipeline, not the limit
	e := newEnv(b, &cfg, nil)
	text := strings.Repeat("x", 90)
	start := now.Add(-time.Hour)
	bodies := make(chan []byte, b.N)
	for n := range b.N {
		req := push.PushRequest{Streams: make([]push.Stream, streams)}
		for i := range req.Streams {
			req.Streams[i].Labels = fmt.Sprintf(`{app="app-%d", stream="stdout"}`, i)
		}
		for i := range size {
			st := &req.Streams[i%streams]
			st.Entries = append(st.Entries, push.Entry{Timestamp: start.Add(time.Duration(n*size+i) * time.Microsecond), Line: fmt.Sprintf("%09d %s", n*size+i, text)})
		}
		raw, err := req.Marshal()
		if err != nil {
			b.Fatal(err)
		}
		bodies <- snappy.Encode(nil, raw)
	}
	close(bodies)
	b.ResetTimer()
	began := time.Now()
	var g errgroup.Group
	for range clients {
		g.Go(func() error {
			for body := range bodies {
				req, err := http.NewRequest("POST", e.api.URL+"/loki/api/v1/push", bytes.NewReader(body))
				if err != nil {
					return err
				}
				req.Header.Set("Authorization", "Bearer "+caamiToken)
				req.Header.Set("Content-Type", "application/x-protobuf")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					return fmt.Errorf("push answered %d", resp.StatusCode)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*size)/time.Since(began).Seconds(), "lines/s")
}
