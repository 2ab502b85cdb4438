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
	for range 3000 {
		total := decimal.New(rng.Int64N(2_000_000_000)-1_000_000_000, -2)
		weights := make([]*big.Rat, 1+rng.IntN(12))
		sum := new(big.Rat)
		for i := range weights {
			if rng.IntN(4) == 0 {
				continue // a scope without this meter
			}
			weights[i] = big.NewRat(rng.Int64N(1_000_000)-200_000, 1+rng.Int64N(1000)) // some negative: adjustments
			sum.Add(sum, weights[i])
		}
		if sum.Sign() == 0 {
			continue // TestShareOfWeightsThatCancelOut
		}
		parts, err := share(total, weights)
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

func TestShareOfSignedAndCancellingWeights(t *testing.T) {
	rat := func(s string) *big.Rat { r, _ := new(big.Rat).SetString(s); return r }
	for _, tc := range []struct {
		name    string
		total   string
		weights []*big.Rat
		want    []string
	}{
		{"a late record that shrank one project's top-up nets against another's usage", "0.23", []*big.Rat{rat("10"), rat("-5.4")}, []string{"0.50", "-0.27"}},
		{"a credit note's negated quantities share its negative amount", "-106.30", []*big.Rat{rat("-3"), rat("-1")}, []string{"-79.73", "-26.57"}},
		{"weights that cancel out share by their sizes", "1.00", []*big.Rat{rat("2"), rat("-2"), nil}, []string{"0.50", "0.50", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts, err := share(decimal.RequireFromString(tc.total), tc.weights)
			if err != nil {
				t.Fatal(err)
			}
			for i, w := range tc.want {
				if !parts[i].Equal(decimal.RequireFromString(w)) {
					t.Errorf("parts %v, want %v", parts, tc.want)
					break
				}
			}
		})
	}
	if _, err := share(decimal.RequireFromString("1.00"), []*big.Rat{nil, new(big.Rat)}); err == nil {
		t.Error("an amount with no weight at all: no error")
	}
}
