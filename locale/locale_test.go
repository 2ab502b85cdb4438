package locale_test

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/paasmeter/paasmeter/locale"
)

func TestNumbersAreWrittenWithCLDRsSeparatorsToTheLastDigit(t *testing.T) {
	values := []string{"0", "7", "-9.09", "999.99", "1000", "-1000.5", "36000.000000", "1234567.89", "-100000000.01"}
	// French and Dutch as Belgium writes them; English as CLDR's "en" (en-BE
	// writes a decimal comma, which no English reader expects).
	tags := map[locale.Lang]string{locale.English: "en", locale.French: "fr-BE", locale.Dutch: "nl-BE"}
	for _, l := range locale.Langs() {
		p := message.NewPrinter(language.MustParse(tags[l]))
		for _, v := range values {
			d := decimal.RequireFromString(v)
			places := max(0, -d.Exponent())
			f, _ := d.Float64()
			if want, got := p.Sprintf("%.*f", places, f), l.Number(v); got != want {
				t.Errorf("%s: Number(%s) = %q, x/text (CLDR) writes %q", l, v, got, want)
			}
		}
	}
	// Beyond a float64's precision the text stays exact.
	if got := locale.French.Number("123456789012345678.99"); got != "123\u00a0456\u00a0789\u00a0012\u00a0345\u00a0678,99" {
		t.Errorf("a large amount: %q", got)
	}
	if got := locale.Dutch.Number("not a number"); got != "not a number" {
		t.Errorf("text that is no number: %q, want it as it is", got)
	}
}

func TestAmountsDatesAndMonthsReadAsEachLanguageWritesThem(t *testing.T) {
	dec4 := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	first := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	last := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		lang                         locale.Lang
		money, date, month, rng, far string
	}{
		{locale.English, "€1,234.50", "4 December 2026", "November 2026", "1–30 November 2026", "30 November – 4 December 2026"},
		{locale.French, "1\u00a0234,50\u00a0€", "4 décembre 2026", "novembre 2026", "1er–30 novembre 2026", "30 novembre – 4 décembre 2026"},
		{locale.Dutch, "€\u00a01.234,50", "4 december 2026", "november 2026", "1–30 november 2026", "30 november – 4 december 2026"},
	} {
		got := []string{tc.lang.Money("1234.50", "EUR"), tc.lang.Date(dec4), tc.lang.Month(first), tc.lang.DayRange(first, last), tc.lang.DayRange(last, dec4)}
		want := []string{tc.money, tc.date, tc.month, tc.rng, tc.far}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%s: got %q, want %q", tc.lang, got, want)
		}
	}
	if got := locale.French.Date(first); got != "1er novembre 2026" {
		t.Errorf("French writes the first of a month %q", got)
	}
	if got := locale.Dutch.Money("-7.40", "CHF"); got != "CHF\u00a0-7,40" {
		t.Errorf("another currency: %q", got)
	}
	if got := locale.French.Number("99.85") + locale.French.PercentSign(); got != "99,85\u00a0%" {
		t.Errorf("a percentage in French: %q", got)
	}
	if got := locale.English.Money("-7.40", "EUR"); got != "-€7.40" {
		t.Errorf("a negative amount in English: %q, CLDR writes -€7.40", got)
	}
	if got := locale.English.DayRange(last, time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)); got != "30 November 2026 – 2 January 2027" {
		t.Errorf("across years: %q", got)
	}
}

func TestParseNamesTheLanguagesItTakes(t *testing.T) {
	for in, want := range map[string]locale.Lang{"": locale.English, "en": locale.English, "FR": locale.French, " nl ": locale.Dutch} {
		if got, err := locale.Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := locale.Parse("de"); err == nil || !strings.Contains(err.Error(), "en, fr or nl") {
		t.Errorf("Parse(de) = %v, want an error naming the languages", err)
	}
}
