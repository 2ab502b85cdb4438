// Package ratecard is the rate card of DESIGN.md §5: a versioned file of
// prices per rate-card meter and environment class, each version effective
// from an instant and carrying its whole content, so that the version an
// invoice used can be frozen with it (Canonical) and read back bit for bit
// (ParseCanonical).
//
// Prices and tier bounds are decimals read from the file's text, never
// through a float: "0.0400" stays 0.0400, with its four decimal places.
package ratecard

import (
	"cmp"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Card is a rate card.
type Card struct {
	// Currency is the ISO 4217 code all prices are in, e.g. EUR.
	Currency string
	// Versions are in the order they take effect.
	Versions []Version
}

// Version is one version of a rate card: every price in force from
// Effective until the next version's.
type Version struct {
	// Name identifies the version on invoices, e.g. v1.
	Name string
	// Effective is the instant the version takes effect, in UTC.
	Effective time.Time
	// Rates price each (meter, class) at most once; a meter and class no
	// rate names is not billed in this version.
	Rates []Rate
}

// Rate prices a meter for an environment class.
type Rate struct {
	Meter Meter
	Class Class
	// Basis is which of the meter's sources is billed; Used for the meters
	// that have no choice (Meter.HasBasis).
	Basis Basis
	// Unit is the billing unit the prices are per; always Meter.Unit().
	Unit Unit
	// Price is the flat price per unit; it is zero when Tiers are given.
	Price decimal.Decimal
	// Tiers, when given, price graduated bands of the institution's monthly
	// quantity of this meter and class instead of Price.
	Tiers []Tier
	// MinRunDuration bills a shorter run as if it had lasted this long (0:
	// no minimum). Only reserved and max bases and container_seconds have one.
	MinRunDuration time.Duration
}

// Tier is one band of graduated prices: the quantity above the previous
// tier's UpTo (or 0) up to its own UpTo, in billing units, is priced at Price.
type Tier struct {
	// UpTo is the band's upper bound; not Valid for the last, unbounded band.
	UpTo  decimal.NullDecimal
	Price decimal.Decimal
}

// Bounds that keep a rate card sane.
const (
	// maxPriceDecimals allows sub-cent prices per unit (0.00020 EUR per
	// GiB-hour) with room to spare; amounts are rounded to cents anyway.
	maxPriceDecimals = 10
	// maxUpToDecimals is the precision line quantities are rounded to
	// (DESIGN.md §5): a finer tier bound could never be told apart.
	maxUpToDecimals = 6
	// maxMinRunDuration: a minimum beyond a day is a typo, not a policy.
	maxMinRunDuration = 24 * time.Hour
)

// The effective instants the canonical form's RFC 3339 UTC timestamps can
// hold: four-digit years, whichever offset the file wrote them with.
var (
	minEffective = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxEffective = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
)

var (
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
	// Version names appear on invoices and in file names of exports.
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

// VersionIndex returns the index of the version effective at t: the last
// whose Effective is not after t; -1 when t is before the first version.
func (c *Card) VersionIndex(t time.Time) int {
	// The first version effective after t, minus one.
	i, _ := slices.BinarySearchFunc(c.Versions, t, func(v Version, t time.Time) int {
		if v.Effective.After(t) {
			return 1
		}
		return -1
	})
	return i - 1
}

// At returns the version effective at t, and false when t is before the
// first version.
func (c *Card) At(t time.Time) (*Version, bool) {
	i := c.VersionIndex(t)
	if i < 0 {
		return nil, false
	}
	return &c.Versions[i], true
}

// Rate returns the rate of meter m for class c, and false when the version
// does not price them.
func (v *Version) Rate(m Meter, c Class) (*Rate, bool) {
	for i := range v.Rates {
		if r := &v.Rates[i]; r.Meter == m && r.Class == c {
			return r, true
		}
	}
	return nil, false
}

// Bands returns the rate's tiers, or, for a flat price, one unbounded tier
// at that price, so that both are priced the same way. The slice is the
// caller's.
func (r *Rate) Bands() []Tier {
	if len(r.Tiers) > 0 {
		return slices.Clone(r.Tiers)
	}
	return []Tier{{Price: r.Price}}
}

// FieldError is one problem of a rate card: the field it is at and what is
// wrong with it.
type FieldError struct {
	// File is the name of the file the card was read from, and Line the line
	// of the field (or, for a missing field, of the entry it is missing
	// from); empty and 0 for a card that did not come from a file.
	File string
	Line int
	// Path is the field, e.g. versions[1].rates[0].price; empty when the
	// problem is the whole card's.
	Path string
	// Msg says what is wrong, e.g. "must be greater than 0".
	Msg string
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// problems collects FieldErrors.
type problems []*FieldError

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p problems) err() error {
	errs := make([]error, len(p))
	for i, e := range p {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// field and item build the paths of FieldErrors.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func item(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// Validate reports every problem of c, each a *FieldError naming its field,
// joined with errors.Join; nil when c is a valid rate card.
func (c *Card) Validate() error { return c.problems().err() }

// problemsAfter returns the problems of decoding c followed by those of
// validating it, leaving out the latter at and under the fields decoding
// reported: a field that could not be read is zero in c, and what validation
// says about that zero would only repeat the decoding problem.
func (c *Card) problemsAfter(decoding problems) problems {
	all := decoding
	for _, e := range c.problems() {
		if !slices.ContainsFunc(decoding, func(d *FieldError) bool { return within(e.Path, d.Path) }) {
			all = append(all, e)
		}
	}
	return all
}

// within reports whether path is the field outer or a field inside it.
func within(path, outer string) bool {
	if outer == "" || path == outer {
		return true
	}
	rest, ok := strings.CutPrefix(path, outer)
	return ok && (rest[0] == '.' || rest[0] == '[')
}

func (c *Card) problems() problems {
	var p problems
	switch {
	case c.Currency == "":
		p.add("currency", "is required, e.g. EUR")
	case !currencyRE.MatchString(c.Currency):
		p.add("currency", "%q is not an ISO 4217 code: three upper-case letters such as EUR", c.Currency)
	}
	if len(c.Versions) == 0 {
		p.add("versions", "at least one version is required")
	}
	names := map[string]int{}
	prev := -1 // the last version with an effective instant
	for i := range c.Versions {
		v := &c.Versions[i]
		vp := item("versions", i)
		switch j, seen := names[v.Name]; {
		case v.Name == "":
			p.add(field(vp, "version"), "is required, e.g. v1")
		case !versionRE.MatchString(v.Name):
			p.add(field(vp, "version"), "%q must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", v.Name)
		case seen:
			p.add(field(vp, "version"), "%q is already the name of versions[%d]", v.Name, j)
		default:
			names[v.Name] = i
		}
		switch {
		case v.Effective.IsZero():
			p.add(field(vp, "effective"), "is required: a date such as 2026-01-01 or an RFC 3339 instant")
		case v.Effective.Before(minEffective) || !v.Effective.Before(maxEffective):
			p.add(field(vp, "effective"), "%s is not between %d and %d", v.Effective.UTC().Format(time.RFC3339Nano), minEffective.Year(), maxEffective.Year()-1)
		case prev >= 0 && !v.Effective.After(c.Versions[prev].Effective):
			p.add(field(vp, "effective"), "%s must be after versions[%d]'s %s: versions are listed in the order they take effect",
				v.Effective.UTC().Format(time.RFC3339Nano), prev, c.Versions[prev].Effective.UTC().Format(time.RFC3339Nano))
		}
		if !v.Effective.IsZero() {
			prev = i
		}
		v.problems(&p, vp)
	}
	return p
}

func (v *Version) problems(p *problems, path string) {
	rp := field(path, "rates")
	if len(v.Rates) == 0 {
		p.add(rp, "at least one rate is required")
	}
	type key struct {
		m Meter
		c Class
	}
	seen := map[key]int{}
	for i := range v.Rates {
		r := &v.Rates[i]
		r.problems(p, item(rp, i))
		if !r.Meter.Valid() || !r.Class.Valid() {
			continue
		}
		k := key{r.Meter, r.Class}
		if j, ok := seen[k]; ok {
			p.add(item(rp, i), "%s for %s is already priced by rates[%d] of this version", r.Meter, r.Class, j)
			continue
		}
		seen[k] = i
	}
}

func (r *Rate) problems(p *problems, path string) {
	m := r.Meter
	switch {
	case m == "":
		p.add(field(path, "meter"), "is required")
	case !m.Valid():
		p.add(field(path, "meter"), "%q is not a meter: use %s", m, list(Meters()))
	}
	switch {
	case r.Class == "":
		p.add(field(path, "class"), "is required")
	case !r.Class.Valid():
		p.add(field(path, "class"), "%q is not a class: use prod or nonprod (dev, test and acc)", r.Class)
	}
	if m.Valid() {
		switch {
		case !m.HasBasis() && r.Basis != Used:
			p.add(field(path, "basis"), "%q: %s is always billed on what was used (used)", r.Basis, m)
		case r.Basis == "":
			p.add(field(path, "basis"), "is required for %s: used, reserved or max", m)
		case !r.Basis.Valid():
			p.add(field(path, "basis"), "%q is not a basis: use used, reserved or max", r.Basis)
		}
		switch {
		case r.Unit == "":
			p.add(field(path, "unit"), "is required: %s is priced per %s", m, m.Unit())
		case r.Unit != m.Unit():
			p.add(field(path, "unit"), "%q does not fit %s, which is priced per %s", r.Unit, m, m.Unit())
		}
	}
	if len(r.Tiers) > 0 {
		if !r.Price.IsZero() {
			p.add(field(path, "price"), "give either a price or tiers, not both")
		}
	} else {
		priceProblems(p, field(path, "price"), r.Price)
	}
	tp := field(path, "tiers")
	for i, t := range r.Tiers {
		ip := item(tp, i)
		priceProblems(p, field(ip, "price"), t.Price)
		up := field(ip, "up_to")
		if i == len(r.Tiers)-1 {
			if t.UpTo.Valid {
				p.add(up, "the last tier has no up_to: it prices everything above the tier before it")
			}
			continue
		}
		var prev decimal.NullDecimal
		if i > 0 {
			prev = r.Tiers[i-1].UpTo
		}
		switch {
		case !t.UpTo.Valid:
			p.add(up, "is required on every tier but the last")
		case t.UpTo.Decimal.Sign() <= 0:
			p.add(up, "%s must be greater than 0", Text(t.UpTo.Decimal))
		case prev.Valid && !t.UpTo.Decimal.GreaterThan(prev.Decimal):
			p.add(up, "%s must be greater than the previous tier's %s", Text(t.UpTo.Decimal), Text(prev.Decimal))
		case -t.UpTo.Decimal.Exponent() > maxUpToDecimals:
			p.add(up, "%s has more than %d decimal places, the precision of billed quantities", Text(t.UpTo.Decimal), maxUpToDecimals)
		}
	}
	switch d := r.MinRunDuration; {
	case d == 0:
	case d < 0:
		p.add(field(path, "min_run_duration"), "%s must not be negative", d)
	case d > maxMinRunDuration:
		p.add(field(path, "min_run_duration"), "%s is longer than the limit of %s", d, maxMinRunDuration)
	case m.Valid() && !(m == ContainerSeconds || m.HasBasis() && (r.Basis == Reserved || r.Basis == Max)):
		p.add(field(path, "min_run_duration"), "applies only to container_seconds and to cpu and memory on the reserved or max basis")
	}
}

func priceProblems(p *problems, path string, d decimal.Decimal) {
	switch {
	case d.IsNegative():
		p.add(path, "%s must not be negative", Text(d))
	case -d.Exponent() > maxPriceDecimals:
		p.add(path, "%s has more than %d decimal places", Text(d), maxPriceDecimals)
	}
}

// Text returns a decimal as the rate card wrote it, with its decimal places
// ("0.0400", not "0.04"): the form of prices on invoices and in Canonical.
func Text(d decimal.Decimal) string {
	return d.StringFixed(max(-d.Exponent(), 0))
}

// list joins names for messages: "a, b or c".
func list[S ~string](names []S) string {
	var b strings.Builder
	for i, n := range names {
		switch {
		case i == 0:
		case i == len(names)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(n))
	}
	return b.String()
}

// compareRates orders rates as Meters and then prod before nonprod, the
// order of Parse's and ParseCanonical's results; unknown meters and classes
// (an invalid card) sort last, by name.
func compareRates(a, b Rate) int {
	rank := func(m Meter) int {
		if i := slices.Index(Meters(), m); i >= 0 {
			return i
		}
		return len(Meters())
	}
	classRank := func(c Class) int {
		switch c {
		case Prod:
			return 0
		case NonProd:
			return 1
		}
		return 2
	}
	return cmp.Or(
		cmp.Compare(rank(a.Meter), rank(b.Meter)),
		cmp.Compare(a.Meter, b.Meter),
		cmp.Compare(classRank(a.Class), classRank(b.Class)),
		cmp.Compare(a.Class, b.Class),
	)
}
