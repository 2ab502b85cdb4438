package spool_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/runtime/spool"
)

// BenchmarkAppend measures durable Appends of 300-byte entries, one and a
// hundred per call; each call is one write and one fsync.
func BenchmarkAppend(b *testing.B) {
	entry := []byte(strings.Repeat("x", 300))
	for _, per := range []int{1, 100} {
		b.Run(fmt.Sprintf("per-call=%d", per), func(b *testing.B) {
			s, err := spool.Open(b.TempDir(), spool.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			data := make([][]byte, per)
			for i := range data {
				data[i] = entry
			}
			for b.Loop() {
				if _, err := s.Append("usage", data...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*per)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
