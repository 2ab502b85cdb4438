package billing

import (
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

func TestShareSplitsAnyAmountExactlyAndEachPartWithinACentOfItsProportion(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	cent := big.NewRat(1, 100)
	for range 2000 {
		total := decimal.New(rng.Int64N(2_000_000_000)-1_000_000_000, -2)
		weights := make([]*big.Rat, 1+rng.IntN(12))
		sum := new(big.Rat)
		for i := range weights {
			if rng.IntN(4) == 0 {
				continue // a scope without this meter
			}
			weights[i] = big.NewRat(rng.Int64N(1_000_000), 1+rng.Int64N(1000))
			sum.Add(sum, weights[i])
		}
		parts, err := share(total, weights)
		if sum.Sign() == 0 {
			if err == nil && !total.IsZero() {
				t.Fatalf("%s shared by no weight: no error", total)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got := decimal.Zero
		for i, p := range parts {
			got = got.Add(p)
			if weights[i] == nil || weights[i].Sign() == 0 {
				if !p.IsZero() {
					t.Fatalf("a part of no weight got %s", p)
				}
				continue
			}
			exact := new(big.Rat).Mul(total.Rat(), weights[i])
			exact.Quo(exact, sum)
			if off := new(big.Rat).Sub(p.Rat(), exact); new(big.Rat).Abs(off).Cmp(cent) >= 0 {
				t.Fatalf("%s by %v: part %d is %s, %s from its proportion", total, weights, i, p, off.FloatString(4))
			}
		}
		if !got.Equal(total) {
			t.Fatalf("%s by %v: the parts add up to %s", total, weights, got)
		}
	}
}
