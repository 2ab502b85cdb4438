package billing

import (
	"math"
	"math/big"
	"testing"
)

func TestSumsStayExactPastInt64(t *testing.T) {
	tests := []struct {
		name string
		add  []amount
		want string
	}{
		{"small amounts add in an int64", []amount{{n: 1}, {n: 2}, {n: 3}}, "6"},
		{"a sum past int64 carries into big", []amount{{n: math.MaxInt64}, {n: math.MaxInt64}, {n: 2}}, "18446744073709551616"},
		{"a reserved CPU quantity scaled past int64 is exact", []amount{scaled(math.MaxInt64/1000, 1_000_000), {n: 1}},
			new(big.Int).Add(new(big.Int).Mul(big.NewInt(math.MaxInt64/1000), big.NewInt(1_000_000)), big.NewInt(1)).String()},
		{"a negative amount subtracts", []amount{{n: 10}, {n: -4}}, "6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sum
			for _, a := range tt.add {
				s.add(a)
			}
			if got := s.rat().RatString(); got != tt.want {
				t.Errorf("sum = %s, want %s", got, tt.want)
			}
		})
	}
	if scaled(3, 1_000_000).b != nil || scaled(math.MaxInt64, 2).b == nil {
		t.Error("scaled uses big.Int exactly when the product does not fit an int64")
	}
}
