package usage_test

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/batch"
	"github.com/paasmeter/paasmeter/batch/batchtest"
	"github.com/paasmeter/paasmeter/internal/jsonkey"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// FuzzDecodeBatch feeds arbitrary bodies to the batch decoder. Whatever the
// input, it must not panic, and its answer must be one of: every record valid,
// or an error that says why, with problems that point into the batch.
func FuzzDecodeBatch(f *testing.F) {
	good := usagetest.Record("caami", "abc", usage.MeterCPU, start, 100)
	vol := usagetest.Volume("ona", "pgdata", start, 1<<40)
	f.Add(batchJSON(good, vol))
	f.Add(batchJSON())
	f.Add(strings.Replace(batchJSON(good), `"quantity":100`, `"quantity":-1`, 1))
	f.Add(strings.Replace(batchJSON(good), `"node"`, `"x":{"y":[1,2]},"node"`, 1))
	f.Add(`{"records":[{"window_start":"2026-13-45T00:00:00Z"}]}`)
	f.Add(`{"records":[null, 1, "x", []]}`)
	f.Add(`{"records":{}}`)
	f.Add(strings.Replace(batchJSON(good), `"tenant":"caami"`, `"tenant":"caami","tenant":"ona"`, 1))
	f.Add(strings.Replace(batchJSON(good), `"tenant":"caami"`, `"tenant":"caami","TENANT":"ona"`, 1))
	f.Add(`[]`)
	lim := usage.DefaultLimits()
	lim.MaxRecords = 50
	decode := func(r io.Reader) ([]usage.Record, error) { return usage.DecodeBatch(r, now, lim) }
	f.Fuzz(func(t *testing.T, body string) {
		recs, err := decode(strings.NewReader(body))
		var inv *batch.InvalidError
		var tm *batch.TooManyError
		switch {
		case err == nil:
			if key, ok := jsonkey.Repeated([]byte(body)); ok {
				t.Fatalf("accepted a batch that repeats the key %s", key)
			}
			for i := range recs {
				if ps := usage.Validate(&recs[i], i, now, lim); len(ps) > 0 {
					t.Fatalf("accepted an invalid record: %v", ps)
				}
			}
			// An accepted batch survives a round trip unchanged.
			again := batchtest.RoundTrip(t, recs, usage.EncodeBatch, decode)
			for i := range recs {
				if again[i] != recs[i] {
					t.Fatalf("record %d changed in a round trip: %+v != %+v", i, again[i], recs[i])
				}
			}
		case errors.As(err, &inv):
			if len(inv.Problems) == 0 || inv.Records > lim.MaxRecords {
				t.Fatalf("InvalidError without problems or beyond the limit: %+v", inv)
			}
			for _, p := range inv.Problems {
				if p.Index < 0 || p.Index >= inv.Records || p.Field == "" || p.Reason == "" {
					t.Fatalf("problem %+v does not point into a batch of %d records", p, inv.Records)
				}
			}
		case errors.As(err, &tm), errors.Is(err, batch.ErrMalformed):
		default:
			t.Fatalf("unexpected error kind: %v", err)
		}
	})
}
