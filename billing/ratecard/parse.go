package ratecard

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the YAML nodes Parse visits. Aliases are followed, and an
// alias of an alias-filled list multiplies: a small file could otherwise
// expand to billions of rates. A real rate card has a few thousand nodes.
const maxNodes = 100_000

// decimalRE is the decimal syntax of the file and of the canonical form:
// plain digits, no exponent, no float-isms (.5, 1e3, 0x10, 1_000).
var decimalRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// Load reads the rate card file at path; see Parse.
func Load(path string, loc *time.Location) (*Card, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ratecard: %w", err)
	}
	return Parse(data, path, loc)
}

// Parse reads a rate card file (name is used in messages) and validates it.
// Dates (2026-01-01) are 00:00 of that day in loc, the platform's time zone;
// instants are RFC 3339 with an offset. Decimals are read from the text of
// the YAML scalar, quoted or not. Unknown and repeated keys are errors.
//
// The error lists every problem, each a *FieldError with the file, line and
// field, joined with errors.Join. The rates of each version of the result
// are in the canonical order (Meters, then prod before nonprod).
func Parse(data []byte, name string, loc *time.Location) (*Card, error) {
	if loc == nil {
		return nil, fmt.Errorf("ratecard %s: no time zone to read dates in", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{File: name, Msg: "is empty: a rate card needs a currency and versions"}
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return nil, &FieldError{File: name, Line: next.Line, Msg: "holds a second YAML document: a rate card is one document"}
	}
	d := &decoder{loc: loc, lines: map[string]int{}}
	c := d.card(&doc)
	if d.nodes > maxNodes {
		// The card is cut short wherever the limit struck: its other
		// problems would be noise.
		return nil, &FieldError{File: name, Msg: fmt.Sprintf("expands to more than %d YAML nodes (through aliases?)", maxNodes)}
	}
	if all := c.problemsAfter(d.problems); len(all) > 0 {
		for _, e := range all {
			e.File, e.Line = name, d.line(e.Path)
		}
		slices.SortStableFunc(all, func(a, b *FieldError) int { return a.Line - b.Line })
		return nil, all.err()
	}
	for i := range c.Versions {
		slices.SortFunc(c.Versions[i].Rates, compareRates)
	}
	return c, nil
}

// decoder turns the YAML node tree into a Card, collecting every problem.
type decoder struct {
	loc *time.Location
	// lines maps field paths to the line they are on.
	lines    map[string]int
	nodes    int
	problems problems
}

// line returns the line of path, or of its nearest enclosing entry that the
// file has (a missing field is reported where it is missing from).
func (d *decoder) line(path string) int {
	for {
		if l, ok := d.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return 0
		}
		path = path[:i]
	}
}

// resolve follows an alias and records the line of path; it returns nil
// once the decoder has visited maxNodes nodes, and the callers then stop.
func (d *decoder) resolve(n *yaml.Node, path string) *yaml.Node {
	if _, ok := d.lines[path]; !ok {
		d.lines[path] = n.Line
	}
	if d.nodes++; d.nodes > maxNodes {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		return n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// mapping returns the values of the mapping n by key, reporting keys not in
// known and keys given twice. A null (an empty entry) is an empty mapping.
func (d *decoder) mapping(n *yaml.Node, path, what string, known ...string) (map[string]*yaml.Node, bool) {
	if n = d.resolve(n, path); n == nil {
		return nil, false
	}
	if isNull(n) {
		return map[string]*yaml.Node{}, true
	}
	if n.Kind != yaml.MappingNode {
		d.problems.add(path, "must be a mapping: %s", what)
		return nil, false
	}
	fields := map[string]*yaml.Node{}
	keyLines := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := d.resolve(n.Content[i], path)
		if k == nil {
			return nil, false
		}
		if k.Kind != yaml.ScalarNode {
			d.problems.add(path, "line %d: a key must be a name: %s", n.Content[i].Line, what)
			continue
		}
		fp := field(path, k.Value)
		switch l, seen := keyLines[k.Value]; {
		case !slices.Contains(known, k.Value):
			d.lines[fp] = n.Content[i].Line
			d.problems.add(fp, "unknown field: %s", what)
		case seen:
			d.problems.add(fp, "is given twice (first on line %d)", l)
		default:
			keyLines[k.Value] = n.Content[i].Line
			d.lines[fp] = n.Content[i].Line
			fields[k.Value] = n.Content[i+1]
		}
	}
	return fields, true
}

// sequence returns the items of the sequence n; a null is an empty sequence.
func (d *decoder) sequence(n *yaml.Node, path, what string) ([]*yaml.Node, bool) {
	if n = d.resolve(n, path); n == nil {
		return nil, false
	}
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		d.problems.add(path, "must be a list of %s", what)
		return nil, false
	}
	return n.Content, true
}

// scalar returns the text of the scalar n, "" for a null.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n = d.resolve(n, path); n == nil {
		return "", false
	}
	if n.Kind != yaml.ScalarNode {
		d.problems.add(path, "must be a single value, not a list or mapping")
		return "", false
	}
	if isNull(n) {
		return "", true
	}
	return n.Value, true
}

// str decodes an optional text field of f.
func (d *decoder) str(f map[string]*yaml.Node, path, key string) string {
	n := f[key]
	if n == nil {
		return ""
	}
	s, _ := d.scalar(n, field(path, key))
	return s
}

// decimal decodes a decimal from the scalar's text, so that it keeps its
// digits and never passes through a float.
func (d *decoder) decimal(n *yaml.Node, path string) (decimal.Decimal, bool) {
	s, ok := d.scalar(n, path)
	if !ok {
		return decimal.Decimal{}, false
	}
	v, err := parseDecimal(s)
	if err != nil {
		d.problems.add(path, "%v", err)
		return decimal.Decimal{}, false
	}
	return v, true
}

func parseDecimal(s string) (decimal.Decimal, error) {
	if !decimalRE.MatchString(s) {
		return decimal.Decimal{}, fmt.Errorf("%q is not a decimal number such as 0.0400", s)
	}
	v, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("%q: %w", s, err)
	}
	return v, nil
}

func (d *decoder) card(doc *yaml.Node) *Card {
	c := &Card{}
	if len(doc.Content) == 0 {
		return c
	}
	f, ok := d.mapping(doc.Content[0], "", "a rate card has currency and versions", "currency", "versions")
	if !ok {
		return c
	}
	c.Currency = d.str(f, "", "currency")
	if n := f["versions"]; n != nil {
		items, _ := d.sequence(n, "versions", "versions")
		c.Versions = make([]Version, len(items))
		for i, it := range items {
			d.version(&c.Versions[i], it, item("versions", i))
		}
	}
	return c
}

func (d *decoder) version(v *Version, n *yaml.Node, path string) {
	f, ok := d.mapping(n, path, "a version has version, effective and rates", "version", "effective", "rates")
	if !ok {
		return
	}
	v.Name = d.str(f, path, "version")
	if n := f["effective"]; n != nil {
		v.Effective = d.instant(n, field(path, "effective"))
	}
	if n := f["rates"]; n != nil {
		rp := field(path, "rates")
		items, _ := d.sequence(n, rp, "rates")
		v.Rates = make([]Rate, len(items))
		for i, it := range items {
			d.rate(&v.Rates[i], it, item(rp, i))
		}
	}
}

// instant decodes a date, 00:00 in the platform's time zone, or an RFC 3339
// instant; the result is in UTC.
func (d *decoder) instant(n *yaml.Node, path string) time.Time {
	s, ok := d.scalar(n, path)
	if !ok || s == "" {
		return time.Time{}
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, d.loc); err == nil {
		return t.UTC()
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	d.problems.add(path, "%q is neither a date such as 2026-01-01 nor an RFC 3339 instant such as 2026-01-01T00:00:00+01:00", s)
	return time.Time{}
}

func (d *decoder) rate(r *Rate, n *yaml.Node, path string) {
	f, ok := d.mapping(n, path, "a rate has meter, class, basis, unit, price or tiers, and min_run_duration",
		"meter", "class", "basis", "unit", "price", "tiers", "min_run_duration")
	if !ok {
		return
	}
	r.Meter = Meter(d.str(f, path, "meter"))
	r.Class = Class(d.str(f, path, "class"))
	r.Basis = Basis(d.str(f, path, "basis"))
	r.Unit = Unit(d.str(f, path, "unit"))
	if r.Meter.Valid() && !r.Meter.HasBasis() {
		// The file leaves the basis out where there is no choice; the Card
		// says Used, so that the billing engine need not know which.
		if f["basis"] != nil {
			d.problems.add(field(path, "basis"), "%s has no basis: it is always billed on what was used; leave basis out", r.Meter)
		}
		r.Basis = Used
	}
	price, tiers := f["price"], f["tiers"]
	switch {
	case price == nil && tiers == nil:
		d.problems.add(field(path, "price"), "is required, or tiers")
	case price != nil && tiers != nil:
		d.problems.add(field(path, "price"), "give either a price or tiers, not both")
	}
	if price != nil {
		r.Price, _ = d.decimal(price, field(path, "price"))
	}
	if tiers != nil {
		tp := field(path, "tiers")
		items, ok := d.sequence(tiers, tp, "tiers such as {up_to: 100, price: 0.00}")
		if ok && len(items) == 0 {
			d.problems.add(tp, "needs at least one tier")
		}
		r.Tiers = make([]Tier, len(items))
		for i, it := range items {
			d.tier(&r.Tiers[i], it, item(tp, i))
		}
	}
	if n := f["min_run_duration"]; n != nil {
		mp := field(path, "min_run_duration")
		if s, ok := d.scalar(n, mp); ok {
			var err error
			if r.MinRunDuration, err = time.ParseDuration(s); err != nil {
				d.problems.add(mp, "%q is not a duration such as 60s or 5m", s)
			}
		}
	}
}

func (d *decoder) tier(t *Tier, n *yaml.Node, path string) {
	f, ok := d.mapping(n, path, "a tier has up_to (except the last) and price", "up_to", "price")
	if !ok {
		return
	}
	if n := f["up_to"]; n != nil {
		up := field(path, "up_to")
		// A null up_to is the unbounded last tier, like a missing one.
		if s, ok := d.scalar(n, up); ok && s != "" {
			var err error
			if t.UpTo.Decimal, err = parseDecimal(s); err != nil {
				d.problems.add(up, "%v", err)
			}
			t.UpTo.Valid = err == nil
		}
	}
	if n := f["price"]; n != nil {
		t.Price, _ = d.decimal(n, field(path, "price"))
	} else {
		d.problems.add(field(path, "price"), "is required")
	}
}
