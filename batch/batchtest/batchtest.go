// Package batchtest holds the checks and helpers that tests of every batch
// decoder share.
package batchtest

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/batch"
)

// CheckRefusal fails t unless err, a decoder's refusal of a batch, is of a
// kind package batch documents: an *InvalidError whose every problem names a
// field of a record inside the batch, a *TooManyError, or ErrMalformed.
func CheckRefusal(t *testing.T, err error) {
	t.Helper()
	var inv *batch.InvalidError
	var tm *batch.TooManyError
	switch {
	case errors.As(err, &inv):
		for _, p := range inv.Problems {
			if p.Index < 0 || p.Index >= inv.Records || p.Field == "" {
				t.Fatalf("problem %+v does not point into a batch of %d", p, inv.Records)
			}
		}
	case errors.As(err, &tm), errors.Is(err, batch.ErrMalformed):
	default:
		t.Fatalf("unexpected error kind: %v", err)
	}
}

// Body returns recs as a batch body, encoded by encode (a package's EncodeBatch).
func Body[T any](encode func(io.Writer, []T) error, recs ...T) string {
	var b strings.Builder
	if err := encode(&b, recs); err != nil {
		panic(err) // a test's own records: nothing to recover from
	}
	return b.String()
}

// RoundTrip encodes recs, a batch a decoder accepted, with encode and decodes
// the body again with decode, failing t unless it accepts the same number of
// records; it returns them for the caller to compare.
func RoundTrip[T any](t *testing.T, recs []T, encode func(io.Writer, []T) error, decode func(io.Reader) ([]T, error)) []T {
	t.Helper()
	again, err := decode(strings.NewReader(Body(encode, recs...)))
	if err != nil || len(again) != len(recs) {
		t.Fatalf("re-decoding an accepted batch: %d records of %d, %v", len(again), len(recs), err)
	}
	return again
}

// FuzzDecoder fuzzes a package's batch decoder with the seeds f holds:
// whatever the body, decode does not panic; a batch it accepts survives a
// round trip through encode, each record compared with its first decoding by
// same; a batch it refuses is refused as CheckRefusal demands.
func FuzzDecoder[T any](f *testing.F, encode func(io.Writer, []T) error, decode func(io.Reader) ([]T, error), same func(i int, again, first *T) bool) {
	f.Fuzz(func(t *testing.T, body string) {
		recs, err := decode(strings.NewReader(body))
		if err != nil {
			CheckRefusal(t, err)
			return
		}
		again := RoundTrip(t, recs, encode, decode)
		for i := range recs {
			if !same(i, &again[i], &recs[i]) {
				t.Fatalf("record %d changed or turned invalid in a round trip", i)
			}
		}
	})
}
