package usage

import (
	"encoding/json"
	"fmt"
	"math/big"
	"math/bits"
)

// Total is an exact sum of non-negative base-unit quantities, up to 2^128−1.
//
// A month of 1,000 containers at 4 GiB is 1.15e19 byte·s, beyond int64, and SQL
// engines either fail (SQLite) or wrap silently (ClickHouse's sum(Int64)) past that.
// Stores therefore aggregate each quantity as two 32-bit halves (see SplitSums) and
// recombine them here.
//
// Totals marshal to JSON as decimal strings, because JSON numbers above 2^53 lose
// precision in most decoders.
type Total struct{ hi, lo uint64 }

// Add adds q to t.
func (t *Total) Add(q uint64) {
	var carry uint64
	t.lo, carry = bits.Add64(t.lo, q, 0)
	t.hi += carry
}

// Plus returns t + o.
func (t Total) Plus(o Total) Total {
	lo, carry := bits.Add64(t.lo, o.lo, 0)
	return Total{hi: t.hi + o.hi + carry, lo: lo}
}

// FromSplitSums recombines the sums of the high and low 32-bit halves of a set of
// quantities: Σq = Σ(q>>32)·2^32 + Σ(q&0xFFFFFFFF). Each half-sum fits an int64 for
// up to 2^31 rows, so any SQL engine can compute them exactly.
func FromSplitSums(hiSum, loSum uint64) Total {
	t := Total{hi: hiSum >> 32, lo: hiSum << 32}
	t.Add(loSum)
	return t
}

// Big returns t as a big.Int.
func (t Total) Big() *big.Int {
	b := new(big.Int).SetUint64(t.hi)
	b.Lsh(b, 64)
	return b.Or(b, new(big.Int).SetUint64(t.lo))
}

// String returns t in decimal.
func (t Total) String() string {
	if t.hi == 0 {
		return fmt.Sprint(t.lo)
	}
	return t.Big().String()
}

// ParseTotal parses a decimal Total.
func ParseTotal(s string) (Total, error) {
	b, ok := new(big.Int).SetString(s, 10)
	if !ok || b.Sign() < 0 || b.BitLen() > 128 {
		return Total{}, fmt.Errorf("usage: %q is not a total between 0 and 2^128-1", s)
	}
	lo := new(big.Int).And(b, new(big.Int).SetUint64(^uint64(0))).Uint64()
	return Total{hi: new(big.Int).Rsh(b, 64).Uint64(), lo: lo}, nil
}

// MarshalJSON encodes t as a decimal string.
func (t Total) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON decodes a decimal string.
func (t *Total) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("usage: total must be a decimal string: %w", err)
	}
	v, err := ParseTotal(s)
	if err != nil {
		return err
	}
	*t = v
	return nil
}
