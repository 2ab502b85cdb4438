package pdf

import (
	"maps"
	"slices"

	"github.com/paasmeter/paasmeter/billing"
)

// Missing lays inv out and returns the messages its language's catalog
// lacks, which printed in English.
func Missing(inv *billing.Invoice) ([]string, error) {
	r, err := layout(inv, 0)
	if err != nil {
		return nil, err
	}
	return slices.Sorted(maps.Keys(r.missing)), nil
}
