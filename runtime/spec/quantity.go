package spec

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Bytes is a size written as a plain number of bytes or with a binary (Ki, Mi,
// Gi, Ti) or decimal (k, M, G, T) suffix, as in Kubernetes.
type Bytes uint64

// UnmarshalText parses a size.
func (b *Bytes) UnmarshalText(text []byte) error {
	v, err := parseQuantity(string(text), map[string]float64{
		"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40})
	if err != nil {
		return fmt.Errorf("%q is not a size such as 512Mi or 10Gi", text)
	}
	*b = Bytes(v)
	return nil
}

// UnmarshalYAML parses a size and names its line when it cannot.
func (b *Bytes) UnmarshalYAML(n *yaml.Node) error {
	return lineError(n, b.UnmarshalText([]byte(n.Value)))
}

// String writes the size with the largest binary suffix that keeps it whole.
func (b Bytes) String() string {
	for _, u := range []struct {
		s string
		v uint64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if uint64(b) >= u.v && uint64(b)%u.v == 0 {
			return fmt.Sprintf("%d%s", uint64(b)/u.v, u.s)
		}
	}
	return strconv.FormatUint(uint64(b), 10)
}

// Millicores is CPU written as cores ("1.5") or millicores ("500m").
type Millicores uint64

// UnmarshalText parses a CPU amount.
func (m *Millicores) UnmarshalText(text []byte) error {
	v, err := parseQuantity(string(text), map[string]float64{"": 1000, "m": 1})
	if err != nil {
		return fmt.Errorf("%q is not a CPU amount such as 500m or 1.5", text)
	}
	*m = Millicores(v)
	return nil
}

// UnmarshalYAML parses a CPU amount and names its line when it cannot.
func (m *Millicores) UnmarshalYAML(n *yaml.Node) error {
	return lineError(n, m.UnmarshalText([]byte(n.Value)))
}

func lineError(n *yaml.Node, err error) error {
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	return nil
}

// String writes the amount in cores.
func (m Millicores) String() string { return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) }

func parseQuantity(s string, units map[string]float64) (uint64, error) {
	s = strings.TrimSpace(s)
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := s, ""
	if i >= 0 {
		num, unit = s[:i], s[i:]
	}
	mult, ok := units[unit]
	if !ok || num == "" {
		return 0, fmt.Errorf("bad quantity %q", s)
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad quantity %q", s)
	}
	v := math.Round(f * mult)
	if v >= math.MaxUint64/2 {
		return 0, fmt.Errorf("quantity %q too large", s)
	}
	return uint64(v), nil
}
