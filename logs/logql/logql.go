// Package logql parses the subset of LogQL the collector serves: a stream
// selector followed by line filters,
//
//	{app="pricing", env!="dev", container=~"api-.*"} |= "error" != "health" |~ `5\d\d`
//
// which is what Grafana's log browser and most operators' queries need. Metric
// queries, parsers (| json, | logfmt), label filters and formatting stages are
// refused with an error that names them, so a caller learns what is missing
// instead of getting a wrong answer.
package logql

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/paasmeter/paasmeter/logs"
)

// Error is a query the parser refuses. Pos is the byte offset of the problem.
type Error struct {
	Pos int
	Msg string
}

func (e *Error) Error() string { return fmt.Sprintf("logql: at position %d: %s", e.Pos, e.Msg) }

// Parse parses a log query of the supported subset. The selector must have a
// matcher that does not match the empty value, as Loki requires, so that no
// query scans every stream of a tenant by accident.
func Parse(query string) (logs.Selector, error) {
	p := &parser{src: query}
	var sel logs.Selector
	p.skipSpace()
	if p.peek() != '{' {
		return sel, p.notASelector()
	}
	matchers, err := p.selector(true)
	if err != nil {
		return sel, err
	}
	sel.Matchers = matchers
	nonEmpty := false
	for _, m := range matchers {
		if !m.Matches(map[string]string{}) {
			nonEmpty = true
		}
	}
	if !nonEmpty {
		return sel, &Error{0, `a stream selector needs at least one matcher that does not match the empty value (app=~".+", not app=~".*")`}
	}
	for {
		p.skipSpace()
		if p.eof() {
			return sel, nil
		}
		f, err := p.filter()
		if err != nil {
			return sel, err
		}
		sel.Filters = append(sel.Filters, f)
	}
}

// ParseLabels parses a label set as Loki's push protocol carries it,
// `{app="pricing", env="prod"}`: equality matchers only, each name once.
func ParseLabels(s string) (map[string]string, error) {
	p := &parser{src: s}
	p.skipSpace()
	if p.peek() != '{' {
		return nil, &Error{p.pos, "a label set starts with {"}
	}
	matchers, err := p.selector(false)
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if !p.eof() {
		return nil, &Error{p.pos, "unexpected text after the label set"}
	}
	labels := make(map[string]string, len(matchers))
	for _, m := range matchers {
		labels[m.Name] = m.Value
	}
	return labels, nil
}

// Format prints sel as a query Parse reads back to the same selector.
func Format(sel logs.Selector) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range sel.Matchers {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.String())
	}
	b.WriteByte('}')
	for _, f := range sel.Filters {
		b.WriteByte(' ')
		b.WriteString(f.String())
	}
	return b.String()
}

type parser struct {
	src string
	pos int
}

func (p *parser) eof() bool { return p.pos >= len(p.src) }

func (p *parser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.src[p.pos]
}

func (p *parser) skipSpace() {
	for !p.eof() && strings.IndexByte(" \t\r\n", p.src[p.pos]) >= 0 {
		p.pos++
	}
}

// notASelector explains why a query that does not start with { is refused.
func (p *parser) notASelector() error {
	if p.eof() {
		return &Error{p.pos, "the query is empty: a log query starts with a stream selector such as {app=\"pricing\"}"}
	}
	if name := p.identAt(p.pos); name != "" {
		rest := strings.TrimLeft(p.src[p.pos+len(name):], " \t\r\n")
		if strings.HasPrefix(rest, "(") || strings.HasPrefix(rest, "by") || strings.HasPrefix(rest, "without") {
			return &Error{p.pos, fmt.Sprintf("metric queries (%s, rate, count_over_time, sum by …) are not supported: "+
				"only a stream selector followed by line filters |=, !=, |~, !~", name)}
		}
	}
	return &Error{p.pos, fmt.Sprintf("unexpected %q: a log query starts with a stream selector in braces, such as {app=\"pricing\"}", p.peek())}
}

// selector parses {name op "value", …}; anyOp allows all four operators,
// otherwise only = (a push's label set).
func (p *parser) selector(anyOp bool) ([]*logs.Matcher, error) {
	p.pos++ // {
	var out []*logs.Matcher
	seen := map[string]bool{}
	for {
		p.skipSpace()
		if p.peek() == '}' {
			p.pos++
			return out, nil
		}
		start := p.pos
		name := p.identAt(p.pos)
		if name == "" {
			if p.eof() {
				return nil, &Error{p.pos, "unterminated stream selector: missing }"}
			}
			return nil, &Error{p.pos, fmt.Sprintf("expected a label name, found %q", p.peek())}
		}
		p.pos += len(name)
		p.skipSpace()
		op := logs.MatchOp(p.operator("=~", "!~", "!=", "="))
		if op == "" {
			return nil, &Error{p.pos, fmt.Sprintf("expected =, !=, =~ or !~ after label %s", name)}
		}
		if !anyOp && op != logs.MatchEqual {
			return nil, &Error{p.pos - len(op), fmt.Sprintf("label %s: a label set has only = pairs, not %s", name, op)}
		}
		p.skipSpace()
		value, err := p.str()
		if err != nil {
			return nil, err
		}
		if !anyOp {
			if seen[name] {
				return nil, &Error{start, fmt.Sprintf("label %s appears twice", name)}
			}
			seen[name] = true
		}
		m, err := logs.NewMatcher(name, op, value)
		if err != nil {
			return nil, &Error{start, err.Error()}
		}
		out = append(out, m)
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
		default:
			if p.eof() {
				return nil, &Error{p.pos, "unterminated stream selector: missing }"}
			}
			return nil, &Error{p.pos, fmt.Sprintf("expected , or } after the matcher of %s, found %q", name, p.peek())}
		}
	}
}

// filter parses one line filter, and names what it finds instead of one.
func (p *parser) filter() (*logs.Filter, error) {
	start := p.pos
	op := logs.FilterOp(p.operator("|=", "|~", "!=", "!~"))
	switch {
	case op != "":
	case strings.HasPrefix(p.src[p.pos:], "|>") || strings.HasPrefix(p.src[p.pos:], "!>"):
		return nil, &Error{start, "pattern line filters (|>, !>) are not supported: use |= or |~"}
	case p.peek() == '|':
		stage := "a pipeline stage"
		q := p.pos + 1
		for q < len(p.src) && (p.src[q] == ' ' || p.src[q] == '\t') {
			q++
		}
		if name := p.identAt(q); name != "" {
			stage = "| " + name
		}
		return nil, &Error{start, fmt.Sprintf("%s is not supported: parsers (| json, | logfmt), label filters and formatting stages are not; "+
			"only line filters |=, !=, |~, !~ follow the stream selector", stage)}
	case p.peek() == '[':
		return nil, &Error{start, "range vectors ([5m]) belong to metric queries, which are not supported"}
	default:
		return nil, &Error{start, fmt.Sprintf("unexpected %q after the stream selector: expected a line filter |=, !=, |~ or !~", p.peek())}
	}
	p.skipSpace()
	if name := p.identAt(p.pos); name != "" {
		return nil, &Error{p.pos, fmt.Sprintf("line filter functions such as %s(…) are not supported: the filter takes a string", name)}
	}
	value, err := p.str()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if name := p.identAt(p.pos); name == "or" {
		return nil, &Error{p.pos, `"or" between line filter values is not supported: use |~ "a|b"`}
	}
	f, err := logs.NewFilter(op, value)
	if err != nil {
		return nil, &Error{start, err.Error()}
	}
	return f, nil
}

// operator consumes the first of ops the input continues with (longest first).
func (p *parser) operator(ops ...string) string {
	for _, op := range ops {
		if strings.HasPrefix(p.src[p.pos:], op) {
			p.pos += len(op)
			return op
		}
	}
	return ""
}

// identAt returns the label name starting at i: [a-zA-Z_][a-zA-Z0-9_]*.
func (p *parser) identAt(i int) string {
	j := i
	for j < len(p.src) {
		c := p.src[j]
		if c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || j > i && '0' <= c && c <= '9' {
			j++
			continue
		}
		break
	}
	return p.src[i:j]
}

// str parses a double-quoted string (Go escapes, as LogQL has) or a raw
// backtick string.
func (p *parser) str() (string, error) {
	start := p.pos
	switch p.peek() {
	case '`':
		end := strings.IndexByte(p.src[p.pos+1:], '`')
		if end < 0 {
			return "", &Error{start, "unterminated `string`"}
		}
		p.pos += end + 2
		return p.src[start+1 : p.pos-1], nil
	case '"':
		for i := p.pos + 1; i < len(p.src); i++ {
			switch p.src[i] {
			case '\\':
				i++ // the escaped byte cannot end the string
			case '"':
				s, err := strconv.Unquote(p.src[start : i+1])
				if err != nil {
					return "", &Error{start, fmt.Sprintf("bad string %s: %v", p.src[start:i+1], err)}
				}
				p.pos = i + 1
				return s, nil
			}
		}
		return "", &Error{start, `unterminated "string"`}
	}
	if p.eof() {
		return "", &Error{start, "expected a string, found the end of the query"}
	}
	return "", &Error{start, fmt.Sprintf("expected a \"string\" or `string`, found %q", p.peek())}
}
