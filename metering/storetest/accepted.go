package storetest

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// ledgerFrom and ledgerTo bound every record of these tests, in whole UTC days.
var ledgerFrom, ledgerTo = Base.AddDate(0, 0, -1), Base.AddDate(0, 0, 3)

// at returns a record of tenant whose window starts at start, received three
// hours after Base: an hour the ledger must not use.
func at(tenant, container string, start time.Time) usage.Record {
	r := usagetest.Record(tenant, container, usage.MeterCPU, start, 1000)
	r.ReceivedAt = Base.Add(3 * time.Hour)
	return r
}

// accepted returns the tenant's ledger rows in [from, to) as "hour-offset-from-Base:records".
func accepted(t *testing.T, s metering.Store, tenant string, from, to time.Time) []string {
	t.Helper()
	rows, err := s.AcceptedUsage(ctx(t), tenant, from, to)
	if err != nil {
		t.Fatalf("AcceptedUsage: %v", err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		if r.Hour.Location() != time.UTC || !r.Hour.Equal(r.Hour.Truncate(time.Hour)) {
			t.Errorf("ledger hour %s is not a UTC hour", r.Hour)
		}
		out[i] = fmt.Sprintf("%+dh:%d", int(r.Hour.Sub(Base)/time.Hour), r.Records)
	}
	return out
}

func wantAccepted(t *testing.T, s metering.Store, tenant string, from, to time.Time, want ...string) {
	t.Helper()
	if got := accepted(t, s, tenant, from, to); !slices.Equal(got, want) {
		t.Errorf("%s's ledger in [%s, %s) = %q, want %q", tenant, from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano), got, want)
	}
}

// reconcile compares, per UTC day, the records the tenant's ledger accepted
// with those stored (QueryUsage's counts), as reconciliation does: equal, or
// with atLeast, no fewer accepted than stored.
func reconcile(t *testing.T, s metering.Store, tenant string, atLeast bool) {
	t.Helper()
	rows, err := s.AcceptedUsage(ctx(t), tenant, ledgerFrom, ledgerTo)
	if err != nil {
		t.Fatalf("AcceptedUsage: %v", err)
	}
	acc := map[string]int64{}
	for _, r := range rows {
		acc[r.Hour.Format(time.DateOnly)] += r.Records
	}
	usageRows, err := s.QueryUsage(ctx(t), metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: tenant, From: ledgerFrom, To: ledgerTo},
		GroupBy: []metering.Dimension{metering.ByDay}})
	if err != nil {
		t.Fatalf("QueryUsage: %v", err)
	}
	stored := map[string]int64{}
	for _, r := range usageRows {
		stored[r.Day] += r.Records
	}
	if len(stored) == 0 {
		t.Fatalf("%s has no records stored: nothing to reconcile", tenant)
	}
	days := slices.Sorted(maps.Keys(stored))
	for day := range acc {
		if _, ok := stored[day]; !ok {
			days = append(days, day)
		}
	}
	for _, day := range days {
		if a, st := acc[day], stored[day]; a != st && (!atLeast || a < st) {
			t.Errorf("%s on %s: %d records accepted, %d stored", tenant, day, a, st)
		}
	}
}

func testAcceptedPerHour(t *testing.T, s metering.Store) {
	recs := []usage.Record{
		at("caami", "a", Base.Add(-time.Minute)),                // hour -1
		at("caami", "b", Base),                                  // hour 0
		at("caami", "c", Base),                                  // hour 0
		at("caami", "d", Base.Add(59*time.Minute)),              // hour 0, ending in hour 1
		at("caami", "e", Base.Add(time.Hour)),                   // hour 1
		at("caami", "f", Base.Add(25*time.Hour+30*time.Minute)), // hour 25, the next day
		at("caami", "g", Base.Add(48*time.Hour+59*time.Second)), // hour 48
		at("caami", "h", Base.Add(-23*time.Hour)),               // hour -23, the day before
	}
	if res := mustAppend(t, s.AppendUsage, recs); len(res.Duplicates) != 0 {
		t.Fatalf("fresh records reported as duplicates: %v", res.Duplicates)
	}
	// A later append adds to an hour counted already; its duplicate adds nothing.
	more := []usage.Record{at("caami", "i", Base.Add(10*time.Minute)), recs[1], at("caami", "j", Base.Add(20*time.Minute))}
	if res := mustAppend(t, s.AppendUsage, more); !slices.Equal(res.Duplicates, []int{1}) {
		t.Fatalf("second append: duplicates %v, want [1]", res.Duplicates)
	}
	wantAccepted(t, s, "caami", ledgerFrom, ledgerTo, "-23h:1", "-1h:1", "+0h:5", "+1h:1", "+25h:1", "+48h:1")
	wantAccepted(t, s, "caami", Base, Base.Add(48*time.Hour), "+0h:5", "+1h:1", "+25h:1")
	// An hour is in the range when it starts in it.
	wantAccepted(t, s, "caami", Base.Add(time.Nanosecond), Base.Add(48*time.Hour+time.Nanosecond), "+1h:1", "+25h:1", "+48h:1")
	wantAccepted(t, s, "caami", Base.Add(2*time.Hour), Base.Add(25*time.Hour))
	reconcile(t, s, "caami", false)
}

func testAcceptedReplay(t *testing.T, s metering.Store) {
	recs := batch("caami", 0, 20, Base.Add(2*time.Minute))
	mustAppend(t, s.AppendUsage, recs)
	wantAccepted(t, s, "caami", ledgerFrom, ledgerTo, "+0h:20")
	// The agent resends the whole batch after a lost acknowledgement.
	replay := batch("caami", 0, 20, Base.Add(7*time.Minute))
	if res := mustAppend(t, s.AppendUsage, replay); len(res.Duplicates) != len(replay) {
		t.Fatalf("replay: %d duplicates, want %d", len(res.Duplicates), len(replay))
	}
	wantAccepted(t, s, "caami", ledgerFrom, ledgerTo, "+0h:20")
	reconcile(t, s, "caami", false)
}

func testAcceptedDuplicateInBatch(t *testing.T, s metering.Store) {
	recs := []usage.Record{at("caami", "a", Base), at("caami", "b", Base.Add(time.Hour)), at("caami", "c", Base)}
	recs = append(recs, recs[1], recs[0], recs[1])
	if res := mustAppend(t, s.AppendUsage, recs); !slices.Equal(res.Duplicates, []int{3, 4, 5}) {
		t.Fatalf("duplicates = %v, want [3 4 5]", res.Duplicates)
	}
	wantAccepted(t, s, "caami", ledgerFrom, ledgerTo, "+0h:2", "+1h:1")
	reconcile(t, s, "caami", false)
}

func testAcceptedTenants(t *testing.T, s metering.Store) {
	// One append of two tenants' records, interleaved, then one of a tenant alone.
	var mixed []usage.Record
	for i := range 5 {
		mixed = append(mixed, at("caami", fmt.Sprintf("c%d", i), Base))
		if i < 3 {
			mixed = append(mixed, at("ona", fmt.Sprintf("o%d", i), Base.Add(time.Hour)))
		}
	}
	mustAppend(t, s.AppendUsage, mixed)
	mustAppend(t, s.AppendUsage, []usage.Record{at("ona", "o9", Base), at("ona", "o8", Base)})
	wantAccepted(t, s, "caami", ledgerFrom, ledgerTo, "+0h:5")
	wantAccepted(t, s, "ona", ledgerFrom, ledgerTo, "+0h:2", "+1h:3")
	wantAccepted(t, s, "inami", ledgerFrom, ledgerTo)
	reconcile(t, s, "caami", false)
	reconcile(t, s, "ona", false)
}
