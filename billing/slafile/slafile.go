// Package slafile is an SLA source that overrides the SLA calculator's figures
// when billing.sla_file is set: each institution's production availability
// per month, from a YAML file an operator maintains (for months the engine
// cannot measure, or an availability agreed by hand).
//
//	# availability in percent of the institution's production apps, per month
//	- {tenant: caami, period: 2026-11, availability: 99.85}
//	- {tenant: ona, period: 2026-11, availability: 99.95}
//
// A month missing from the file means no figures: no SLA credit.
package slafile

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/paasmeter/paasmeter/calendar"
	"github.com/paasmeter/paasmeter/sla/credit"
	"github.com/shopspring/decimal"
	"go.yaml.in/yaml/v3"
)

// Entry is one line of the file.
type Entry struct {
	Tenant       string          `yaml:"tenant"`
	Period       string          `yaml:"period"`
	Availability decimal.Decimal `yaml:"availability"`
}

// File is a parsed SLA file; it implements billing.SLASource.
type File struct {
	name string
	figs map[[2]string]decimal.Decimal
}

var hundred = decimal.NewFromInt(100)

var periodRE = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

// Load reads the file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sla file: %w", err)
	}
	return Parse(data, path)
}

// Parse reads an SLA file's content; name is used in errors.
func Parse(data []byte, name string) (*File, error) {
	var entries []struct {
		Tenant       string `yaml:"tenant"`
		Period       string `yaml:"period"`
		Availability string `yaml:"availability"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil && !errors.Is(err, io.EOF) { // an empty file lists no figures
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	f := &File{name: name, figs: map[[2]string]decimal.Decimal{}}
	var errs []error
	for i, e := range entries {
		if e.Tenant == "" {
			errs = append(errs, fmt.Errorf("%s: [%d].tenant: is required", name, i))
		}
		if !periodRE.MatchString(e.Period) {
			errs = append(errs, fmt.Errorf("%s: [%d].period: %q is not a month like 2026-11", name, i, e.Period))
		}
		a, err := decimal.NewFromString(e.Availability)
		if err != nil || a.IsNegative() || a.GreaterThan(hundred) {
			errs = append(errs, fmt.Errorf("%s: [%d].availability: %q must be a percentage between 0 and 100", name, i, e.Availability))
		}
		k := [2]string{e.Tenant, e.Period}
		if _, dup := f.figs[k]; dup {
			errs = append(errs, fmt.Errorf("%s: [%d]: %s %s is listed twice", name, i, e.Tenant, e.Period))
		}
		f.figs[k] = a
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return f, nil
}

// SLA implements billing.SLASource.
func (f *File) SLA(_ context.Context, tenant string, p calendar.Month) (credit.Figures, bool, error) {
	a, ok := f.figs[[2]string{tenant, p.String()}]
	if !ok {
		return credit.Figures{}, false, nil
	}
	return credit.Figures{Availability: a, Source: "sla file " + filepath.Base(f.name)}, true, nil
}
