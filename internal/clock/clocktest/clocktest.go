// Package clocktest names the dates at which the date-sensitive tests run.
//
// A test that asks a calendar question (which month is running, whether a
// grace period has passed, which year numbers an invoice, whether a
// maintenance window is declared early enough) must give the same verdict on
// any day. Running it at each of these instants, through the injected clock,
// is how we know: a component that reads the wall clock instead, or a test
// that hard-codes a month, disagrees with the clock at most of them.
package clocktest

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// NowEnv names an extra instant (RFC 3339) to add to Instants, to replay a
// date on which a test failed: PAASMETER_TEST_NOW=2029-03-01T00:00:00+01:00.
const NowEnv = "PAASMETER_TEST_NOW"

// Instant is a named "now".
type Instant struct {
	Name string
	Time time.Time
}

// Brussels is the platform's default time zone, the one the instants are
// chosen in.
func Brussels(tb testing.TB) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		tb.Fatalf("Europe/Brussels: %v", err)
	}
	return loc
}

// Instants returns the instants every date-sensitive test runs at: the
// edges of a month, of the default 3-day grace period, of a year and of
// daylight saving time in Brussels, a leap day, a date years ahead, and
// today (the wall clock, read here only to add one more date, never to
// decide a verdict). NowEnv adds one.
func Instants(tb testing.TB) []Instant {
	tb.Helper()
	bxl := Brussels(tb)
	at := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, bxl) }
	out := []Instant{
		{"the last minute of a month", at(2027, time.January, 31, 23, 59)},
		{"the first minute of a month", at(2027, time.February, 1, 0, 0)},
		{"the last minute of the grace period", at(2027, time.February, 3, 23, 59)},
		{"the first minute after the grace period", at(2027, time.February, 4, 0, 0)},
		{"the day summer time starts", at(2027, time.March, 28, 3, 30)},
		// 02:30 happens twice that night; in UTC it is unambiguous: the second one.
		{"the day summer time ends", time.Date(2027, time.October, 31, 1, 30, 0, 0, time.UTC).In(bxl)},
		{"1 January, in Brussels while still 31 December in UTC", at(2027, time.January, 1, 0, 30)},
		{"29 February 2028", at(2028, time.February, 29, 12, 0)},
		{"a date in 2031", at(2031, time.June, 17, 9, 15)},
		{"today", time.Now().In(bxl).Truncate(time.Second)},
	}
	if v := os.Getenv(NowEnv); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			tb.Fatalf("%s=%q: %v", NowEnv, v, err)
		}
		out = append(out, Instant{fmt.Sprintf("%s=%s", NowEnv, v), t.In(bxl)})
	}
	return out
}
