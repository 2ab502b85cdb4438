package ratecard_test

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the tests need Europe/Brussels wherever they run

	"github.com/shopspring/decimal"

	"github.com/paasmeter/paasmeter/billing/ratecard"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/internal/golden"
	"github.com/paasmeter/paasmeter/usage"
)

// examplePath is the operators' example: testing it keeps it valid.
const examplePath = "../../deploy/examples/ratecard.yaml"

func loadExample(t testing.TB) *ratecard.Card {
	t.Helper()
	c, err := ratecard.Load(examplePath, clocktest.Brussels(t))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestExample(t *testing.T) {
	c := loadExample(t)
	if c.Currency != "EUR" || len(c.Versions) != 2 {
		t.Fatalf("currency %q, %d versions; want EUR and 2", c.Currency, len(c.Versions))
	}

	t.Run("At picks the version effective at each instant, dates being midnight in Brussels", func(t *testing.T) {
		for _, tc := range []struct {
			at   string
			want string // "" for no version
		}{
			{"2025-12-31T22:59:59Z", ""},
			{"2025-12-31T23:00:00Z", "v1"}, // 2026-01-01 00:00 CET
			{"2026-06-30T12:00:00Z", "v1"},
			{"2026-11-15T22:59:59Z", "v1"},
			{"2026-11-15T23:00:00Z", "v2"}, // 2026-11-16 00:00 CET
			{"2030-01-01T00:00:00Z", "v2"},
		} {
			at, err := time.Parse(time.RFC3339, tc.at)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := c.At(at)
			got := ""
			if ok {
				got = v.Name
			}
			if got != tc.want {
				t.Errorf("At(%s) = %q, want %q", tc.at, got, tc.want)
			}
			if i := c.VersionIndex(at); (i < 0) != (tc.want == "") || i >= 0 && c.Versions[i].Name != tc.want {
				t.Errorf("VersionIndex(%s) = %d, want the index of %q", tc.at, i, tc.want)
			}
		}
	})

	t.Run("each version carries the example's prices, with their digits", func(t *testing.T) {
		for _, tc := range []struct {
			version string
			meter   ratecard.Meter
			class   ratecard.Class
			basis   ratecard.Basis
			unit    ratecard.Unit
			bands   string // up_to:price, space-separated; up_to empty for the unbounded band
			minRun  time.Duration
		}{
			{"v1", ratecard.CPU, ratecard.Prod, ratecard.Used, ratecard.VCPUHour, ":0.0400", 0},
			{"v1", ratecard.CPU, ratecard.NonProd, ratecard.Used, ratecard.VCPUHour, ":0.0200", 0},
			{"v1", ratecard.Memory, ratecard.Prod, ratecard.Reserved, ratecard.GiBHour, ":0.0050", time.Minute},
			{"v1", ratecard.Memory, ratecard.NonProd, ratecard.Reserved, ratecard.GiBHour, ":0.0025", time.Minute},
			{"v1", ratecard.Storage, ratecard.Prod, ratecard.Used, ratecard.GiBHour, ":0.00020", 0},
			{"v1", ratecard.Storage, ratecard.NonProd, ratecard.Used, ratecard.GiBHour, ":0.00020", 0},
			{"v1", ratecard.NetTx, ratecard.Prod, ratecard.Used, ratecard.GB, "100:0.00 :0.0100", 0},
			{"v1", ratecard.NetTx, ratecard.NonProd, ratecard.Used, ratecard.GB, "100:0.00 :0.0100", 0},
			{"v2", ratecard.CPU, ratecard.Prod, ratecard.Used, ratecard.VCPUHour, ":0.0360", 0},
			{"v2", ratecard.CPU, ratecard.NonProd, ratecard.Used, ratecard.VCPUHour, ":0.0200", 0},
			{"v2", ratecard.Memory, ratecard.Prod, ratecard.Reserved, ratecard.GiBHour, ":0.0050", time.Minute},
			{"v2", ratecard.NetTx, ratecard.NonProd, ratecard.Used, ratecard.GB, "100:0.00 :0.0100", 0},
		} {
			v := &c.Versions[0]
			if tc.version == "v2" {
				v = &c.Versions[1]
			}
			r, ok := v.Rate(tc.meter, tc.class)
			if !ok {
				t.Errorf("%s has no rate for %s %s", tc.version, tc.meter, tc.class)
				continue
			}
			if r.Basis != tc.basis || r.Unit != tc.unit || r.MinRunDuration != tc.minRun {
				t.Errorf("%s %s %s: basis %q, unit %q, min run %s; want %q, %q, %s",
					tc.version, tc.meter, tc.class, r.Basis, r.Unit, r.MinRunDuration, tc.basis, tc.unit, tc.minRun)
			}
			if got := bands(r); got != tc.bands {
				t.Errorf("%s %s %s: bands %q, want %q", tc.version, tc.meter, tc.class, got, tc.bands)
			}
		}
	})

	t.Run("a meter the version does not price has no rate", func(t *testing.T) {
		for _, m := range []ratecard.Meter{ratecard.NetRx, ratecard.ContainerSeconds} {
			if _, ok := c.Versions[1].Rate(m, ratecard.Prod); ok {
				t.Errorf("v2 prices %s", m)
			}
		}
	})
}

// bands writes a rate's Bands as up_to:price pairs.
func bands(r *ratecard.Rate) string {
	var parts []string
	for _, b := range r.Bands() {
		up := ""
		if b.UpTo.Valid {
			up = ratecard.Text(b.UpTo.Decimal)
		}
		parts = append(parts, up+":"+ratecard.Text(b.Price))
	}
	return strings.Join(parts, " ")
}

func TestDecimalsKeepTheirText(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"an unquoted price keeps its trailing zeros", "0.0400", "0.0400"},
		{"a double-quoted price keeps its trailing zeros", `"0.0400"`, "0.0400"},
		{"a single-quoted price keeps its trailing zeros", `'0.0400'`, "0.0400"},
		{"a price with ten decimals keeps all of them", "0.0000000001", "0.0000000001"},
		{"a whole price has no decimal point", "2", "2"},
		{"a price beyond float64's precision is exact", "12345678901234567890.123456789", "12345678901234567890.123456789"},
		{"a zero price keeps its decimals", "0.00", "0.00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := "currency: EUR\nversions:\n- version: v1\n  effective: 2026-01-01\n  rates:\n" +
				"  - {meter: container_seconds, class: prod, unit: hour, price: " + tc.yaml + "}\n"
			c, err := ratecard.Parse([]byte(doc), "ratecard.yaml", time.UTC)
			if err != nil {
				t.Fatal(err)
			}
			if got := ratecard.Text(c.Versions[0].Rates[0].Price); got != tc.want {
				t.Errorf("price %s reads as %s, want %s", tc.yaml, got, tc.want)
			}
			if !bytes.Contains(c.Canonical(), []byte(`"price":"`+tc.want+`"`)) {
				t.Errorf("the canonical form does not hold the price as %q: %s", tc.want, c.Canonical())
			}
		})
	}
}

func TestBands(t *testing.T) {
	t.Run("a flat price is one unbounded band at that price", func(t *testing.T) {
		r := ratecard.Rate{Price: decimal.RequireFromString("0.0400")}
		b := r.Bands()
		if len(b) != 1 || b[0].UpTo.Valid || ratecard.Text(b[0].Price) != "0.0400" {
			t.Errorf("Bands() = %+v", b)
		}
	})
	t.Run("tiers are the bands, and changing the bands leaves the rate alone", func(t *testing.T) {
		r := ratecard.Rate{Tiers: []ratecard.Tier{
			{UpTo: decimal.NewNullDecimal(decimal.NewFromInt(100)), Price: decimal.Zero},
			{Price: decimal.RequireFromString("0.01")},
		}}
		if got := bands(&r); got != "100:0 :0.01" {
			t.Errorf("bands %q", got)
		}
		r.Bands()[0].Price = decimal.NewFromInt(7)
		if !r.Tiers[0].Price.IsZero() {
			t.Error("changing a band changed the rate's tier")
		}
	})
}

func TestMeters(t *testing.T) {
	for _, tc := range []struct {
		meter          ratecard.Meter
		used, reserved usage.Meter
		reservedScale  int64
		unit           ratecard.Unit
		divisor        int64
		hasBasis       bool
	}{
		{ratecard.CPU, usage.MeterCPU, usage.MeterCPULimit, 1_000_000, ratecard.VCPUHour, 3_600_000_000_000, true},
		{ratecard.Memory, usage.MeterMemory, usage.MeterMemoryLimit, 1, ratecard.GiBHour, 3600 * 1024 * 1024 * 1024, true},
		{ratecard.Storage, usage.MeterStorageByteSeconds, "", 0, ratecard.GiBHour, 3_865_470_566_400, false},
		{ratecard.NetTx, usage.MeterNetTx, "", 0, ratecard.GB, 1_000_000_000, false},
		{ratecard.NetRx, usage.MeterNetRx, "", 0, ratecard.GB, 1_000_000_000, false},
		{ratecard.ContainerSeconds, usage.MeterContainerSeconds, "", 0, ratecard.Hour, 3600, false},
	} {
		t.Run(string(tc.meter)+" is billed from its usage meters in "+string(tc.unit), func(t *testing.T) {
			m := tc.meter
			used, reserved := m.Sources()
			if used != tc.used || reserved != tc.reserved {
				t.Errorf("Sources() = %q, %q; want %q, %q", used, reserved, tc.used, tc.reserved)
			}
			if s := m.Scale(used); s != 1 {
				t.Errorf("Scale(%s) = %d, want 1", used, s)
			}
			if s := m.Scale(reserved); s != tc.reservedScale {
				t.Errorf("Scale(%q) = %d, want %d", reserved, s, tc.reservedScale)
			}
			if s := m.Scale(usage.MeterNetRx); m != ratecard.NetRx && s != 0 {
				t.Errorf("Scale(net_rx_bytes) = %d, want 0: it is not a source of %s", s, m)
			}
			if m.Unit() != tc.unit || m.Divisor() != tc.divisor || m.HasBasis() != tc.hasBasis || !m.Valid() {
				t.Errorf("unit %q, divisor %d, has basis %t; want %q, %d, %t", m.Unit(), m.Divisor(), m.HasBasis(), tc.unit, tc.divisor, tc.hasBasis)
			}
			for _, src := range []usage.Meter{used, reserved} {
				if got, ok := ratecard.MeterOf(src); src != "" && (!ok || got != m) {
					t.Errorf("MeterOf(%s) = %q, %t; want %s", src, got, ok, m)
				}
			}
		})
	}
	t.Run("every usage meter is a source of a rate-card meter", func(t *testing.T) {
		for _, mi := range usage.Meters {
			if _, ok := ratecard.MeterOf(mi.Meter); !ok {
				t.Errorf("MeterOf(%s) is false", mi.Meter)
			}
		}
		if m, ok := ratecard.MeterOf("gpu_ns"); ok {
			t.Errorf("MeterOf(gpu_ns) = %q", m)
		}
	})
	t.Run("an unknown meter has no unit, divisor or sources", func(t *testing.T) {
		m := ratecard.Meter("gpu")
		used, reserved := m.Sources()
		if m.Valid() || m.Unit() != "" || m.Divisor() != 0 || used != "" || reserved != "" || m.Scale("") != 0 {
			t.Errorf("gpu: valid %t, unit %q, divisor %d, sources %q %q", m.Valid(), m.Unit(), m.Divisor(), used, reserved)
		}
	})
	t.Run("prod is its own class and every other environment is nonprod", func(t *testing.T) {
		for env, want := range map[usage.Environment]ratecard.Class{
			usage.EnvProd: ratecard.Prod, usage.EnvAcc: ratecard.NonProd, usage.EnvTest: ratecard.NonProd,
			usage.EnvDev: ratecard.NonProd, "staging": "",
		} {
			if got := ratecard.ClassOf(env); got != want {
				t.Errorf("ClassOf(%q) = %q, want %q", env, got, want)
			}
		}
	})
}

// base is a valid card that the invalid cases below break one edit at a time.
const base = `currency: EUR
versions:
  - version: v1
    effective: 2026-01-01
    rates:
      - meter: cpu
        class: prod
        basis: used
        unit: vCPU-hour
        price: 0.0400
      - meter: memory
        class: prod
        basis: reserved
        unit: GiB-hour
        price: 0.0050
        min_run_duration: 60s
      - meter: net_tx_bytes
        class: prod
        unit: GB
        tiers:
          - {up_to: 100, price: 0.00}
          - {up_to: 1000, price: 0.0100}
          - {price: 0.0050}
  - version: v2
    effective: 2026-11-16
    rates:
      - meter: container_seconds
        class: nonprod
        unit: hour
        price: 0.001
`

func TestBaseIsValid(t *testing.T) {
	if _, err := ratecard.Parse([]byte(base), "ratecard.yaml", time.UTC); err != nil {
		t.Fatal(err)
	}
}

func TestInvalid(t *testing.T) {
	const v2rate = "      - meter: container_seconds\n        class: nonprod\n        unit: hour\n        price: 0.001\n"
	for _, tc := range []struct {
		name string
		// old is replaced by new in base; doc, when given, is the whole file.
		old, new, doc string
		// want is the expected message after the file name and line.
		want string
	}{
		{name: "a lower-case currency is refused", old: "currency: EUR", new: "currency: eur",
			want: `currency: "eur" is not an ISO 4217 code`},
		{name: "a missing currency is refused", old: "currency: EUR\n", new: "",
			want: "currency: is required"},
		{name: "a card without versions is refused", doc: "currency: EUR\nversions: []\n",
			want: "versions: at least one version is required"},
		{name: "versions that are not a list are refused", doc: "currency: EUR\nversions: {version: v1}\n",
			want: "versions: must be a list of versions"},
		{name: "a version without a name is refused", old: "version: v1", new: `version: ""`,
			want: "versions[0].version: is required"},
		{name: "a version name with a space is refused", old: "version: v1", new: "version: v 1",
			want: `versions[0].version: "v 1" must be 1 to 64 letters`},
		{name: "two versions with the same name are refused", old: "version: v2", new: "version: v1",
			want: `versions[1].version: "v1" is already the name of versions[0]`},
		{name: "a version without an effective date is refused", old: "    effective: 2026-11-16\n", new: "",
			want: "versions[1].effective: is required"},
		{name: "an effective date that is not a date is refused", old: "effective: 2026-11-16", new: "effective: 2026-13-01",
			want: `versions[1].effective: "2026-13-01" is neither a date`},
		{name: "an effective instant without a zone is refused", old: "effective: 2026-11-16", new: "effective: 2026-11-16 00:00:00",
			want: `versions[1].effective: "2026-11-16 00:00:00" is neither a date`},
		{name: "an effective date before the previous version's is refused", old: "effective: 2026-11-16", new: "effective: 2025-12-31",
			want: "versions[1].effective: 2025-12-31T00:00:00Z must be after versions[0]'s 2026-01-01T00:00:00Z"},
		{name: "an effective date equal to the previous version's is refused", old: "effective: 2026-11-16", new: "effective: 2026-01-01T00:00:00Z",
			want: "versions[1].effective: 2026-01-01T00:00:00Z must be after versions[0]'s 2026-01-01T00:00:00Z"},
		{name: "an effective year beyond 9998 is refused", old: "effective: 2026-11-16", new: "effective: 9999-06-01",
			want: "versions[1].effective: 9999-06-01T00:00:00Z is not between 1970 and 9998"},
		{name: "a version without rates is refused", old: "    rates:\n" + v2rate, new: "    rates: []\n",
			want: "versions[1].rates: at least one rate is required"},
		{name: "a meter and class priced twice in a version are refused", old: v2rate, new: v2rate + v2rate,
			want: "versions[1].rates[1]: container_seconds for nonprod is already priced by rates[0] of this version"},
		{name: "an unknown meter is refused", old: "meter: cpu", new: "meter: gpu",
			want: `versions[0].rates[0].meter: "gpu" is not a meter: use cpu, memory, storage_byte_seconds, net_tx_bytes, net_rx_bytes or container_seconds`},
		{name: "a rate without a meter is refused", old: "      - meter: cpu\n        class: prod", new: "      - class: prod",
			want: "versions[0].rates[0].meter: is required"},
		{name: "an unknown class is refused", old: "class: prod", new: "class: staging",
			want: `versions[0].rates[0].class: "staging" is not a class`},
		{name: "a rate without a class is refused", old: "        class: nonprod\n", new: "",
			want: "versions[1].rates[0].class: is required"},
		{name: "cpu without a basis is refused", old: "        basis: used\n", new: "",
			want: "versions[0].rates[0].basis: is required for cpu: used, reserved or max"},
		{name: "an unknown basis is refused", old: "basis: used", new: "basis: peak",
			want: `versions[0].rates[0].basis: "peak" is not a basis`},
		{name: "a basis on a meter that has none is refused", old: "        unit: GB\n", new: "        basis: used\n        unit: GB\n",
			want: "versions[0].rates[2].basis: net_tx_bytes has no basis"},
		{name: "a unit that does not fit the meter is refused", old: "unit: vCPU-hour", new: "unit: GiB-hour",
			want: `versions[0].rates[0].unit: "GiB-hour" does not fit cpu, which is priced per vCPU-hour`},
		{name: "a rate without a unit is refused", old: "        unit: hour\n", new: "",
			want: "versions[1].rates[0].unit: is required: container_seconds is priced per hour"},
		{name: "a rate with neither price nor tiers is refused", old: "        price: 0.0400\n", new: "",
			want: "versions[0].rates[0].price: is required, or tiers"},
		{name: "a rate with both a price and tiers is refused", old: "        unit: GB\n", new: "        unit: GB\n        price: 0\n",
			want: "versions[0].rates[2].price: give either a price or tiers, not both"},
		{name: "a negative price is refused", old: "price: 0.0400", new: "price: -0.0400",
			want: "versions[0].rates[0].price: -0.0400 must not be negative"},
		{name: "a price with more than ten decimal places is refused", old: "price: 0.0400", new: "price: 0.04000000000",
			want: "versions[0].rates[0].price: 0.04000000000 has more than 10 decimal places"},
		{name: "a price in exponent notation is refused", old: "price: 0.0400", new: "price: 4e-2",
			want: `versions[0].rates[0].price: "4e-2" is not a decimal number such as 0.0400`},
		{name: "a price that is a list is refused", old: "price: 0.0400", new: "price: [1]",
			want: "versions[0].rates[0].price: must be a single value, not a list or mapping"},
		{name: "an empty list of tiers is refused", old: "price: 0.001", new: "tiers: []",
			want: "versions[1].rates[0].tiers: needs at least one tier"},
		{name: "a tier bound below the previous one is refused", old: "up_to: 1000", new: "up_to: 50",
			want: "versions[0].rates[2].tiers[1].up_to: 50 must be greater than the previous tier's 100"},
		{name: "a tier bound equal to the previous one is refused", old: "up_to: 1000", new: "up_to: 100.0",
			want: "versions[0].rates[2].tiers[1].up_to: 100.0 must be greater than the previous tier's 100"},
		{name: "a tier bound of zero is refused", old: "up_to: 100,", new: "up_to: 0,",
			want: "versions[0].rates[2].tiers[0].up_to: 0 must be greater than 0"},
		{name: "a tier bound finer than the quantities' six decimals is refused", old: "up_to: 1000", new: "up_to: 1000.0000001",
			want: "versions[0].rates[2].tiers[1].up_to: 1000.0000001 has more than 6 decimal places"},
		{name: "a tier before the last without a bound is refused", old: "{up_to: 1000, price: 0.0100}", new: "{price: 0.0100}",
			want: "versions[0].rates[2].tiers[1].up_to: is required on every tier but the last"},
		{name: "a bound on the last tier is refused", old: "{price: 0.0050}", new: "{up_to: 5000, price: 0.0050}",
			want: "versions[0].rates[2].tiers[2].up_to: the last tier has no up_to"},
		{name: "a tier without a price is refused", old: "{price: 0.0050}", new: "{}",
			want: "versions[0].rates[2].tiers[2].price: is required"},
		{name: "a tier bound that is not a decimal is refused", old: "up_to: 1000", new: "up_to: 1_000",
			want: `versions[0].rates[2].tiers[1].up_to: "1_000" is not a decimal number`},
		{name: "a minimum run duration on the used basis is refused", old: "        price: 0.0400\n", new: "        price: 0.0400\n        min_run_duration: 60s\n",
			want: "versions[0].rates[0].min_run_duration: applies only to container_seconds and to cpu and memory on the reserved or max basis"},
		{name: "a minimum run duration on a meter without basis other than container_seconds is refused", old: "        unit: GB\n", new: "        unit: GB\n        min_run_duration: 1s\n",
			want: "versions[0].rates[2].min_run_duration: applies only to"},
		{name: "a negative minimum run duration is refused", old: "min_run_duration: 60s", new: "min_run_duration: -60s",
			want: "versions[0].rates[1].min_run_duration: -1m0s must not be negative"},
		{name: "a minimum run duration beyond a day is refused", old: "min_run_duration: 60s", new: "min_run_duration: 25h",
			want: "versions[0].rates[1].min_run_duration: 25h0m0s is longer than the limit of 24h0m0s"},
		{name: "a minimum run duration without a unit is refused", old: "min_run_duration: 60s", new: "min_run_duration: 60",
			want: `versions[0].rates[1].min_run_duration: "60" is not a duration such as 60s or 5m`},
		{name: "an unknown field is refused", old: "price: 0.0400", new: "prise: 0.0400",
			want: "versions[0].rates[0].prise: unknown field: a rate has meter, class, basis, unit, price or tiers, and min_run_duration"},
		{name: "an unknown top-level field is refused", old: "currency: EUR", new: "currency: EUR\nvat: 21",
			want: "vat: unknown field: a rate card has currency and versions"},
		{name: "a field given twice is refused", old: "price: 0.0400", new: "price: 0.0400\n        price: 0.0500",
			want: "versions[0].rates[0].price: is given twice (first on line 10)"},
		{name: "a rate that is not a mapping is refused", old: v2rate, new: "      - cpu\n",
			want: "versions[1].rates[0]: must be a mapping: a rate has meter"},
		{name: "an empty file is refused", doc: "# nothing yet\n",
			want: "is empty"},
		{name: "two YAML documents are refused", doc: base + "---\n" + base,
			want: "holds a second YAML document"},
		{name: "a YAML syntax error is refused", doc: "currency: [EUR\n",
			want: "yaml: line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := tc.doc
			if doc == "" {
				if !strings.Contains(base, tc.old) {
					t.Fatalf("the base card has no %q", tc.old)
				}
				doc = strings.Replace(base, tc.old, tc.new, 1)
			}
			c, err := ratecard.Parse([]byte(doc), "ratecard.yaml", time.UTC)
			if err == nil {
				t.Fatalf("accepted:\n%s\ncanonical: %s", doc, c.Canonical())
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n%v\ndoes not say %q", err, tc.want)
			}
			for _, e := range unjoin(err) {
				if !strings.HasPrefix(e.Error(), "ratecard.yaml") {
					t.Errorf("%q does not name the file", e)
				}
			}
		})
	}
}

// unjoin returns the errors that errors.Join joined, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestErrors(t *testing.T) {
	t.Run("every problem is reported, each a FieldError with its file, line and field", func(t *testing.T) {
		doc := strings.NewReplacer("currency: EUR", "currency: euro", "up_to: 1000", "up_to: 50", "prod\n        basis: used", "prod\n        basis: peak").Replace(base)
		_, err := ratecard.Parse([]byte(doc), "cards/ratecard.yaml", time.UTC)
		want := []ratecard.FieldError{
			{File: "cards/ratecard.yaml", Line: 1, Path: "currency"},
			{File: "cards/ratecard.yaml", Line: 8, Path: "versions[0].rates[0].basis"},
			{File: "cards/ratecard.yaml", Line: 22, Path: "versions[0].rates[2].tiers[1].up_to"},
		}
		errs := unjoin(err)
		if len(errs) != len(want) {
			t.Fatalf("%d errors, want %d:\n%v", len(errs), len(want), err)
		}
		for i, e := range errs {
			var fe *ratecard.FieldError
			if !errors.As(e, &fe) {
				t.Fatalf("%v is not a FieldError", e)
			}
			if fe.File != want[i].File || fe.Line != want[i].Line || fe.Path != want[i].Path {
				t.Errorf("error %d at %s:%d %s, want %s:%d %s", i, fe.File, fe.Line, fe.Path, want[i].File, want[i].Line, want[i].Path)
			}
		}
		if !strings.Contains(err.Error(), "cards/ratecard.yaml:22: versions[0].rates[2].tiers[1].up_to: 50 must be greater than the previous tier's 100") {
			t.Errorf("unexpected message:\n%v", err)
		}
	})

	for _, tc := range []struct{ name, doc string }{
		{"a value the decoder cannot read is reported once, not again as missing",
			strings.Replace(base, "effective: 2026-11-16", "effective: soon", 1)},
		{"a file that is not a mapping is reported once, not again for each missing field",
			"- currency: EUR\n"},
		{"a version that is not a mapping is reported once, not again for its missing fields",
			strings.Replace(base, "  - version: v2\n", "  - v2\n  - version: v2\n", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ratecard.Parse([]byte(tc.doc), "ratecard.yaml", time.UTC)
			if n := len(unjoin(err)); err == nil || n != 1 {
				t.Errorf("%d errors, want 1:\n%v", n, err)
			}
		})
	}

	t.Run("a missing file is reported as such", func(t *testing.T) {
		_, err := ratecard.Load(filepath.Join(t.TempDir(), "nope.yaml"), time.UTC)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load of a missing file: %v", err)
		}
	})

	t.Run("parsing without a time zone is an error, not a panic", func(t *testing.T) {
		if _, err := ratecard.Parse([]byte(base), "ratecard.yaml", nil); err == nil {
			t.Error("Parse with a nil location succeeded")
		}
	})

	t.Run("aliases that expand beyond the node limit are refused", func(t *testing.T) {
		tiers := "[&t {price: 1}" + strings.Repeat(", *t", 59) + "]"
		rates := "[&r {meter: cpu, class: prod, basis: used, unit: vCPU-hour, tiers: " + tiers + "}" + strings.Repeat(", *r", 59) + "]"
		doc := "currency: EUR\nversions: [&v {version: v1, effective: 2026-01-01, rates: " + rates + "}" + strings.Repeat(", *v", 59) + "]\n"
		// The error proves the node limit stopped the expansion (60^4 nodes
		// otherwise); how long refusing takes belongs to benchmarks, not here.
		_, err := ratecard.Parse([]byte(doc), "ratecard.yaml", time.UTC)
		if err == nil || err.Error() != "ratecard.yaml: expands to more than 100000 YAML nodes (through aliases?)" {
			t.Errorf("error %v", err)
		}
	})
}

func TestValidate(t *testing.T) {
	eff := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	valid := func() *ratecard.Card {
		return &ratecard.Card{Currency: "EUR", Versions: []ratecard.Version{{Name: "v1", Effective: eff, Rates: []ratecard.Rate{
			{Meter: ratecard.Storage, Class: ratecard.Prod, Basis: ratecard.Used, Unit: ratecard.GiBHour, Price: decimal.RequireFromString("0.0002")},
		}}}}
	}
	t.Run("a card built in code validates like a parsed one", func(t *testing.T) {
		if err := valid().Validate(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a meter without a basis must say used in a card built in code", func(t *testing.T) {
		c := valid()
		c.Versions[0].Rates[0].Basis = ""
		if err := c.Validate(); err == nil || err.Error() != `versions[0].rates[0].basis: "": storage_byte_seconds is always billed on what was used (used)` {
			t.Errorf("error %v", err)
		}
	})
	t.Run("a non-zero price beside tiers is refused", func(t *testing.T) {
		c := valid()
		c.Versions[0].Rates[0].Tiers = []ratecard.Tier{{Price: decimal.Zero}}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "versions[0].rates[0].price: give either a price or tiers, not both") {
			t.Errorf("error %v", err)
		}
	})
}

func TestCanonical(t *testing.T) {
	c := loadExample(t)
	got := c.Canonical()
	t.Run("the example's canonical form is the golden file", func(t *testing.T) {
		golden.Check(t, filepath.Join("testdata", "example.canonical.json"), got)
	})

	t.Run("the canonical form reads back into an equal card", func(t *testing.T) {
		back, err := ratecard.ParseCanonical(got)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, c) {
			t.Errorf("read back\n%+v\nwant\n%+v", back, c)
		}
		if !bytes.Equal(back.Canonical(), got) {
			t.Error("the card read back has another canonical form")
		}
	})

	t.Run("the same content written differently has the same canonical bytes", func(t *testing.T) {
		other, err := ratecard.Load(filepath.Join("testdata", "reformatted.yaml"), clocktest.Brussels(t))
		if err != nil {
			t.Fatal(err)
		}
		if o := other.Canonical(); !bytes.Equal(o, got) {
			t.Errorf("canonical form\n%s\nwant\n%s", o, got)
		}
		if !reflect.DeepEqual(other, c) {
			t.Error("the reformatted file parses to another card")
		}
	})

	t.Run("the order of rates in a card built in code does not change its canonical form", func(t *testing.T) {
		shuffled := *c
		shuffled.Versions = []ratecard.Version{c.Versions[0], c.Versions[1]}
		rates := shuffled.Versions[0].Rates
		shuffled.Versions[0].Rates = append([]ratecard.Rate{rates[len(rates)-1]}, rates[:len(rates)-1]...)
		if !bytes.Equal(shuffled.Canonical(), got) {
			t.Error("reordering rates changed the canonical form")
		}
	})

	for _, tc := range []struct {
		name string
		edit func(string) string
		want string
	}{
		{"white space is refused", func(s string) string { return s + "\n" }, "not canonical"},
		{"another field order is refused", func(s string) string {
			return strings.Replace(s, `{"format":"paasmeter.ratecard.v1","currency":"EUR"`, `{"currency":"EUR","format":"paasmeter.ratecard.v1"`, 1)
		}, "not canonical"},
		{"a number instead of a decimal string is refused", func(s string) string {
			return strings.Replace(s, `"price":"0.0400"`, `"price":0.0400`, 1)
		}, "cannot unmarshal number"},
		{"an unknown field is refused", func(s string) string {
			return strings.Replace(s, `"currency":"EUR"`, `"currency":"EUR","vat":"21"`, 1)
		}, `unknown field "vat"`},
		{"another format is refused", func(s string) string {
			return strings.Replace(s, "paasmeter.ratecard.v1", "paasmeter.ratecard.v0", 1)
		}, `format "paasmeter.ratecard.v0"`},
		{"invalid content is refused with its field", func(s string) string {
			return strings.Replace(s, `"price":"0.0400"`, `"price":"-0.0400"`, 1)
		}, "versions[0].rates[0].price: -0.0400 must not be negative"},
		{"a decimal in exponent notation is refused", func(s string) string {
			return strings.Replace(s, `"price":"0.0400"`, `"price":"4e-2"`, 1)
		}, `versions[0].rates[0].price: "4e-2" is not a decimal number`},
		{"an effective instant that is not RFC 3339 is refused", func(s string) string {
			return strings.Replace(s, `"effective":"2025-12-31T23:00:00Z"`, `"effective":"2026-01-01"`, 1)
		}, `versions[0].effective: "2026-01-01" is not an RFC 3339 instant`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := string(got)
			edited := tc.edit(s)
			if edited == s {
				t.Fatal("the edit changed nothing")
			}
			_, err := ratecard.ParseCanonical([]byte(edited))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one that says %q", err, tc.want)
			}
		})
	}
}
