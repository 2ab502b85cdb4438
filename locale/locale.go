// Package locale is what paasmeter writes for people in their language:
// the languages an institution may choose, and numbers, amounts and dates
// as each language writes them. Its catalogs of messages live with what
// renders them (billing/pdf's beside the PDF).
//
// Numbers are formatted from their decimal text, never through a float, so
// an amount prints to the cent whatever its size; the tests hold the
// separators to CLDR's, through golang.org/x/text.
package locale

import (
	"fmt"
	"strings"
	"time"
)

// Lang is a language paasmeter writes in, as its ISO 639-1 code.
type Lang string

// The languages. English is the default; French and Dutch are those of
// Belgium's public institutions (German, the third, is not written yet).
const (
	English Lang = "en"
	French  Lang = "fr"
	Dutch   Lang = "nl"
)

// Langs lists the languages, the default first.
func Langs() []Lang { return []Lang{English, French, Dutch} }

// Parse returns the language s names; "" is English.
func Parse(s string) (Lang, error) {
	switch l := Lang(strings.ToLower(strings.TrimSpace(s))); l {
	case "":
		return English, nil
	case English, French, Dutch:
		return l, nil
	}
	return "", fmt.Errorf("%q is not a language paasmeter writes: use en, fr or nl", s)
}

// separators are CLDR's (as golang.org/x/text has them) for fr-BE, nl-BE
// and en: French groups thousands with a no-break space, Dutch with a dot,
// and both write a decimal comma; English is written as CLDR's "en", with a
// decimal point, since en-BE's decimal comma is not what its readers expect.
func (l Lang) separators() (group, decimal string) {
	switch l {
	case French:
		return "\u00a0", ","
	case Dutch:
		return ".", ","
	}
	return ",", "."
}

// Number writes a decimal number given as its text ("-1234.5", as
// decimal.Decimal's StringFixed writes it) with l's separators: "-1,234.5",
// "-1 234,5" (a no-break space), "-1.234,5". Text that is not a decimal number is returned as it is.
func (l Lang) Number(s string) string {
	group, dec := l.separators()
	return Grouped(s, group, dec)
}

// Grouped writes the decimal number s with group between each three digits
// of its integer part and dec as its decimal separator; text that is not a
// decimal number is returned as it is.
func Grouped(s, group, dec string) string {
	sign, digits := "", s
	if strings.HasPrefix(s, "-") {
		sign, digits = "-", s[1:]
	}
	whole, frac, hasFrac := strings.Cut(digits, ".")
	if !allDigits(whole) || (hasFrac && !allDigits(frac)) {
		return s
	}
	var b strings.Builder
	b.WriteString(sign)
	for i := range len(whole) {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteString(group)
		}
		b.WriteByte(whole[i])
	}
	if hasFrac {
		b.WriteString(dec + frac)
	}
	return b.String()
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Money writes an amount (its decimal text) in currency (ISO 4217) as l
// does: "€106.30", "106,30 €", "€ 106,30"; a currency other than the euro
// by its code.
func (l Lang) Money(amount, currency string) string {
	sign := currency
	if currency == "EUR" {
		sign = "€"
	}
	n := l.Number(amount)
	switch {
	case l == French:
		return n + "\u00a0" + sign
	case l == Dutch:
		return sign + "\u00a0" + n
	case sign == "€":
		if rest, neg := strings.CutPrefix(n, "-"); neg {
			return "-€" + rest // CLDR's "-€7.40"
		}
		return sign + n
	}
	return sign + "\u00a0" + n
}

// PercentSign is what follows a percentage's number: a no-break space and
// "%" in French, a space and "%" otherwise ("99,85 %", "99.85 %").
func (l Lang) PercentSign() string {
	if l == French {
		return "\u00a0%"
	}
	return " %"
}

var months = map[Lang][12]string{
	English: {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"},
	French:  {"janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre", "novembre", "décembre"},
	Dutch:   {"januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus", "september", "oktober", "november", "december"},
}

func (l Lang) month(m time.Month) string {
	names, ok := months[l]
	if !ok {
		names = months[English]
	}
	return names[m-1]
}

// Day writes t's day of the month as l does before a month's name: French
// writes the first "1er".
func (l Lang) Day(t time.Time) string {
	if l == French && t.Day() == 1 {
		return "1er"
	}
	return fmt.Sprint(t.Day())
}

// Date writes t's calendar date (in t's location): "4 December 2026",
// "4 décembre 2026", "4 december 2026".
func (l Lang) Date(t time.Time) string {
	return fmt.Sprintf("%s %s %d", l.Day(t), l.month(t.Month()), t.Year())
}

// Month writes t's month: "November 2026", "novembre 2026", "november 2026".
func (l Lang) Month(t time.Time) string {
	return fmt.Sprintf("%s %d", l.month(t.Month()), t.Year())
}

// DayRange writes the days from start to end (inclusive, calendar dates):
// "1–30 November 2026" within a month, else "30 November – 2 December 2026"
// (each date in full across years).
func (l Lang) DayRange(start, end time.Time) string {
	switch {
	case start.Year() == end.Year() && start.Month() == end.Month():
		return l.Day(start) + "–" + l.Date(end)
	case start.Year() == end.Year():
		return fmt.Sprintf("%s %s – %s", l.Day(start), l.month(start.Month()), l.Date(end))
	}
	return l.Date(start) + " – " + l.Date(end)
}
