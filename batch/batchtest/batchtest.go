// Package batchtest holds the checks that tests of every batch decoder share.
package batchtest

import (
	"errors"
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
