package ratecard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/shopspring/decimal"
)

// canonicalFormat names the canonical encoding, so that a frozen card says
// how to read it long after the encoding has moved on.
const canonicalFormat = "paasmeter.ratecard.v1"

// The canonical form's shape: encoding/json writes struct fields in their
// declaration order, which fixes the field order.
type (
	canonicalCard struct {
		Format   string             `json:"format"`
		Currency string             `json:"currency"`
		Versions []canonicalVersion `json:"versions"`
	}
	canonicalVersion struct {
		Name      string          `json:"version"`
		Effective string          `json:"effective"`
		Rates     []canonicalRate `json:"rates"`
	}
	canonicalRate struct {
		Meter          Meter           `json:"meter"`
		Class          Class           `json:"class"`
		Basis          Basis           `json:"basis"`
		Unit           Unit            `json:"unit"`
		Price          *string         `json:"price,omitempty"`
		Tiers          []canonicalTier `json:"tiers,omitempty"`
		MinRunDuration string          `json:"min_run_duration,omitempty"`
	}
	canonicalTier struct {
		UpTo  *string `json:"up_to,omitempty"`
		Price string  `json:"price"`
	}
)

// Canonical returns the card's content as canonical JSON, to be frozen with
// the invoices that used it: fields in a fixed order, no white space,
// decimals as strings with the places the card gave them ("0.0400"),
// effective instants in RFC 3339 UTC, the minimum run duration as Go writes
// durations (1m0s) and left out when 0, each version's rates ordered by
// meter (the order of Meters) and class (prod first). Cards with the same
// content have the same bytes, however their files were written.
func (c *Card) Canonical() []byte {
	cc := canonicalCard{Format: canonicalFormat, Currency: c.Currency, Versions: make([]canonicalVersion, len(c.Versions))}
	for i, v := range c.Versions {
		rates := slices.Clone(v.Rates)
		slices.SortStableFunc(rates, compareRates)
		cv := canonicalVersion{Name: v.Name, Effective: v.Effective.UTC().Format(time.RFC3339Nano), Rates: make([]canonicalRate, len(rates))}
		for j, r := range rates {
			cr := canonicalRate{Meter: r.Meter, Class: r.Class, Basis: r.Basis, Unit: r.Unit}
			if len(r.Tiers) == 0 {
				p := Text(r.Price)
				cr.Price = &p
			}
			for _, t := range r.Tiers {
				ct := canonicalTier{Price: Text(t.Price)}
				if t.UpTo.Valid {
					u := Text(t.UpTo.Decimal)
					ct.UpTo = &u
				}
				cr.Tiers = append(cr.Tiers, ct)
			}
			if r.MinRunDuration != 0 {
				cr.MinRunDuration = r.MinRunDuration.String()
			}
			cv.Rates[j] = cr
		}
		cc.Versions[i] = cv
	}
	out, err := json.Marshal(cc)
	if err != nil {
		// Strings, pointers to strings and slices of them always marshal.
		panic(fmt.Sprintf("ratecard: canonical form: %v", err))
	}
	return out
}

// ParseCanonical reads a card back from its canonical form and validates it.
// It accepts only canonical bytes: for a card c it returns,
// c.Canonical() is exactly data, so a frozen card cannot be read as other
// content than it hashes to.
func ParseCanonical(data []byte) (*Card, error) {
	var cc canonicalCard
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cc); err != nil {
		return nil, fmt.Errorf("ratecard: canonical form: %w", err)
	}
	if cc.Format != canonicalFormat {
		return nil, fmt.Errorf("ratecard: canonical form: format %q, want %q", cc.Format, canonicalFormat)
	}
	var p problems
	c := &Card{Currency: cc.Currency, Versions: make([]Version, len(cc.Versions))}
	for i, cv := range cc.Versions {
		vp := item("versions", i)
		v := &c.Versions[i]
		v.Name = cv.Name
		t, err := time.Parse(time.RFC3339Nano, cv.Effective)
		if err != nil {
			p.add(field(vp, "effective"), "%q is not an RFC 3339 instant", cv.Effective)
		}
		v.Effective = t.UTC()
		v.Rates = make([]Rate, len(cv.Rates))
		for j, cr := range cv.Rates {
			rp := item(field(vp, "rates"), j)
			r := &v.Rates[j]
			*r = Rate{Meter: cr.Meter, Class: cr.Class, Basis: cr.Basis, Unit: cr.Unit}
			if cr.Price != nil {
				r.Price = p.decimal(field(rp, "price"), *cr.Price)
			}
			if cr.Tiers != nil {
				r.Tiers = make([]Tier, len(cr.Tiers))
			}
			for k, ct := range cr.Tiers {
				tp := item(field(rp, "tiers"), k)
				r.Tiers[k].Price = p.decimal(field(tp, "price"), ct.Price)
				if ct.UpTo != nil {
					r.Tiers[k].UpTo.Decimal = p.decimal(field(tp, "up_to"), *ct.UpTo)
					r.Tiers[k].UpTo.Valid = true
				}
			}
			if cr.MinRunDuration != "" {
				if r.MinRunDuration, err = time.ParseDuration(cr.MinRunDuration); err != nil {
					p.add(field(rp, "min_run_duration"), "%q is not a duration", cr.MinRunDuration)
				}
			}
		}
	}
	if p = c.problemsAfter(p); len(p) > 0 {
		return nil, fmt.Errorf("ratecard: canonical form:\n%w", p.err())
	}
	if !bytes.Equal(c.Canonical(), data) {
		return nil, errors.New("ratecard: canonical form: the bytes are not canonical (white space, field order, rate order or number formatting)")
	}
	return c, nil
}

// decimal parses a canonical decimal, reporting a problem at path.
func (p *problems) decimal(path, s string) decimal.Decimal {
	v, err := parseDecimal(s)
	if err != nil {
		p.add(path, "%v", err)
	}
	return v
}
