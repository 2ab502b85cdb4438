package billing

import (
	"math"
	"math/big"
	"math/bits"
)

// amount is a base quantity: n, or b when it does not fit an int64 (a
// reserved CPU record scaled to nanoseconds can exceed one).
type amount struct {
	n int64
	b *big.Int
}

// scaled returns q × scale exactly; q and scale are not negative.
func scaled(q, scale int64) amount {
	hi, lo := bits.Mul64(uint64(q), uint64(scale))
	if hi == 0 && lo <= math.MaxInt64 {
		return amount{n: int64(lo)}
	}
	return amount{b: new(big.Int).Mul(big.NewInt(q), big.NewInt(scale))}
}

func (a amount) big() *big.Int {
	if a.b != nil {
		return a.b
	}
	return big.NewInt(a.n)
}

func (a amount) cmp(o amount) int {
	if a.b == nil && o.b == nil {
		switch {
		case a.n < o.n:
			return -1
		case a.n > o.n:
			return 1
		}
		return 0
	}
	return a.big().Cmp(o.big())
}

// sum adds amounts exactly in an int64 until that would overflow, which
// keeps the month's millions of additions off math/big.
type sum struct {
	n int64
	b big.Int // what no longer fit in n
}

func (s *sum) add(a amount) {
	if a.b != nil {
		s.b.Add(&s.b, a.b)
		return
	}
	if r := s.n + a.n; (a.n >= 0) == (r >= s.n) { // no overflow
		s.n = r
		return
	}
	s.b.Add(&s.b, big.NewInt(s.n))
	s.n = a.n
}

// rat returns the sum.
func (s *sum) rat() *big.Rat {
	return new(big.Rat).SetInt(new(big.Int).Add(&s.b, big.NewInt(s.n)))
}

func addSum[K comparable](m map[K]*sum, k K, a amount) {
	s := m[k]
	if s == nil {
		s = &sum{}
		m[k] = s
	}
	s.add(a)
}
