package logs

import (
	"fmt"
	"regexp"
	"strings"
)

// MatchOp is how a label matcher compares: =, !=, =~ or !~ (LogQL's).
type MatchOp string

// The label match operators.
const (
	MatchEqual     MatchOp = "="
	MatchNotEqual  MatchOp = "!="
	MatchRegexp    MatchOp = "=~"
	MatchNotRegexp MatchOp = "!~"
)

// Matcher selects streams by one label. Build it with NewMatcher.
type Matcher struct {
	Name  string
	Op    MatchOp
	Value string
	re    *regexp.Regexp
}

// NewMatcher returns a matcher; a regexp is anchored at both ends, as in
// Prometheus and Loki. A label a stream lacks has the value "".
func NewMatcher(name string, op MatchOp, value string) (*Matcher, error) {
	m := &Matcher{Name: name, Op: op, Value: value}
	switch op {
	case MatchEqual, MatchNotEqual:
	case MatchRegexp, MatchNotRegexp:
		re, err := regexp.Compile("^(?:" + value + ")$")
		if err != nil {
			return nil, fmt.Errorf("label %s: bad regexp %q: %w", name, value, err)
		}
		m.re = re
	default:
		return nil, fmt.Errorf("label %s: unknown operator %q", name, op)
	}
	return m, nil
}

// Matches reports whether a stream with labels is selected.
func (m *Matcher) Matches(labels map[string]string) bool {
	v := labels[m.Name]
	switch m.Op {
	case MatchEqual:
		return v == m.Value
	case MatchNotEqual:
		return v != m.Value
	case MatchRegexp:
		return m.re.MatchString(v)
	default:
		return !m.re.MatchString(v)
	}
}

func (m *Matcher) String() string { return fmt.Sprintf("%s%s%q", m.Name, m.Op, m.Value) }

// FilterOp is a line filter: |= (contains), != (does not contain), |~
// (matches) or !~ (does not match).
type FilterOp string

// The line filter operators.
const (
	FilterContains    FilterOp = "|="
	FilterNotContains FilterOp = "!="
	FilterRegexp      FilterOp = "|~"
	FilterNotRegexp   FilterOp = "!~"
)

// Filter selects lines by their text. Build it with NewFilter.
type Filter struct {
	Op    FilterOp
	Value string
	re    *regexp.Regexp
}

// NewFilter returns a line filter; a regexp matches anywhere in the line, as in LogQL.
func NewFilter(op FilterOp, value string) (*Filter, error) {
	f := &Filter{Op: op, Value: value}
	switch op {
	case FilterContains, FilterNotContains:
	case FilterRegexp, FilterNotRegexp:
		re, err := regexp.Compile(value)
		if err != nil {
			return nil, fmt.Errorf("line filter: bad regexp %q: %w", value, err)
		}
		f.re = re
	default:
		return nil, fmt.Errorf("line filter: unknown operator %q", op)
	}
	return f, nil
}

// Matches reports whether line passes the filter.
func (f *Filter) Matches(line string) bool {
	switch f.Op {
	case FilterContains:
		return strings.Contains(line, f.Value)
	case FilterNotContains:
		return !strings.Contains(line, f.Value)
	case FilterRegexp:
		return f.re.MatchString(line)
	default:
		return !f.re.MatchString(line)
	}
}

func (f *Filter) String() string { return fmt.Sprintf("%s %q", f.Op, f.Value) }

// Selector is a stream selector with its line filters: what a LogQL log
// query of the supported subset says.
type Selector struct {
	Matchers []*Matcher
	Filters  []*Filter
}

// MatchesStream reports whether every matcher selects labels.
func (s *Selector) MatchesStream(labels map[string]string) bool {
	for _, m := range s.Matchers {
		if !m.Matches(labels) {
			return false
		}
	}
	return true
}

// MatchesLine reports whether line passes every filter.
func (s *Selector) MatchesLine(line string) bool {
	for _, f := range s.Filters {
		if !f.Matches(line) {
			return false
		}
	}
	return true
}
