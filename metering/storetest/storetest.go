// Package storetest is the contract suite every metering.Store adapter must pass.
// Adapters call Run from their own tests with a function that opens a fresh,
// empty store.
package storetest

import (
	"context"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/usage"
	"github.com/paasmeter/paasmeter/usage/usagetest"
)

// Opener returns a fresh, empty store. The suite closes it.
type Opener func(t *testing.T) metering.Store

// Base is the month the suite's records fall in.
var Base = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// Capabilities says which promises of the contract an adapter cannot keep.
// The zero value is the whole contract; each field relaxes one promise, and
// the suite then asserts the weaker promise the adapter documents instead.
type Capabilities struct {
	// RacyDuplicateCounts: when appends that share records run concurrently,
	// a record may be reported new by more than one of them. ClickHouse has no
	// unique constraint: its adapter checks which ids are stored before it
	// inserts, and two concurrent appends can both find a record absent.
	// Stored data stays exact, since reads keep one copy of each id (the
	// first arrival). The suite then asserts that every record reads back
	// exactly once, each is reported new by at least one of its senders, and
	// the new and duplicate counts add up to what was sent. The accepted
	// ledger counts what the appends reported new, so it then holds at least
	// as many records as are stored, where it would otherwise hold as many.
	RacyDuplicateCounts bool
}

// Run runs the whole contract against stores from open.
func Run(t *testing.T, open Opener, caps Capabilities) {
	testConcurrentOverlap := func(t *testing.T, s metering.Store) { testConcurrentOverlap(t, s, caps) }
	tests := map[string]func(t *testing.T, s metering.Store){
		"appended records read back with every field intact":                            testRoundTrip,
		"the same batch sent twice is stored once and keeps the first received_at":      testResendKeepsFirst,
		"a record repeated inside one batch is stored once":                             testDuplicateInBatch,
		"a repeated id with other content is a conflict and the first arrival stays":    testConflict,
		"two clients appending overlapping batches concurrently store each record once": testConcurrentOverlap,
		"a batch that fails part-way stores nothing":                                    testAtomic,
		"a month of 1,000 containers at 4 GiB totals exactly beyond int64":              testNoOverflow,
		"usage groups by app, environment, meter and calendar day across a DST change":  testGroupByDay,
		"queries and scans see only the requested tenant and filters":                   testTenantIsolation,
		"a closed store is not ready and refuses appends":                               testClosed,
		"accepted counts the new records per tenant and hour of window start":           testAcceptedPerHour,
		"a replayed batch adds nothing to accepted":                                     testAcceptedReplay,
		"a batch with a duplicate inside counts it once":                                testAcceptedDuplicateInBatch,
		"another tenant's records are not in the ledger":                                testAcceptedTenants,
		"events read back with every field intact":                                      testEventRoundTrip,
		"the same events sent twice are stored once and keep the first arrival":         testEventResend,
		"event scans see only the requested tenant, apps, types and environments":       testEventFilters,
		"a run's node is the node of its earliest event":                                testRunNode,
		"log streams count per tenant, and the keys not stored yet count as new":        testLogStreamCount,
		"a tenant with 40,000 streams reads its lines and labels":                       testLogManyStreams,
		"deleting old lines deletes the streams they leave empty":                       testLogRetentionOfStreams,
		"a stream that gets a line while retention runs keeps its labels and lines":     testLogRetentionRacingAppends,
		"log lines read back with their labels, time and text, newest first":            testLogRoundTrip,
		"the same log lines sent twice are stored once and keep the first arrival":      testLogResend,
		"a selector picks streams by =, !=, =~, !~ and lines by |=, !=, |~, !~":         testLogSelectors,
		"log pages follow each other through the cursor without loss or repeat":         testLogPages,
		"log reads and label lists see only the requested tenant":                       testLogTenantIsolation,
		"a log scan stops where its reader refuses a line and goes on from there":       testLogScanRefusals,
		"deleting a tenant's old lines keeps its recent ones and other tenants'":        testLogRetention,
	}
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { s.Close() })
			tests[name](t, s)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// batch returns n records of tenant, one per container c0..c{n-1}, received at recv.
func batch(tenant string, first, n int, recv time.Time) []usage.Record {
	out := make([]usage.Record, n)
	for i := range out {
		out[i] = usagetest.Record(tenant, fmt.Sprintf("c%06d", first+i), usage.MeterCPU, Base, int64(1000+first+i))
		out[i].ReceivedAt = recv
	}
	return out
}

// mustAppend appends recs with add, a store's AppendUsage or AppendLogs,
// failing t if it cannot.
func mustAppend[T any](t *testing.T, add func(context.Context, []T) (metering.AppendResult, error), recs []T) metering.AppendResult {
	t.Helper()
	res, err := add(ctx(t), recs)
	if err != nil {
		t.Fatalf("append %T: %v", recs, err)
	}
	return res
}

func scanAll(t *testing.T, s metering.Store, tenant string) []usage.Record {
	t.Helper()
	var out []usage.Record
	err := s.ScanUsage(ctx(t), metering.UsageFilter{Tenant: tenant, From: Base.AddDate(-1, 0, 0), To: Base.AddDate(1, 0, 0)},
		func(r usage.Record) error { out = append(out, r); return nil })
	if err != nil {
		t.Fatalf("ScanUsage: %v", err)
	}
	return out
}

func testRoundTrip(t *testing.T, s metering.Store) {
	recv := Base.Add(90*time.Second + 123456789)
	in := []usage.Record{
		usagetest.Record("caami", "abc123", usage.MeterMemory, Base, 4<<30*60),
		usagetest.Volume("caami", "claims-pgdata", Base.Add(time.Minute), 10<<30*60),
	}
	in[0].WindowEnd = Base.Add(17*time.Second + 500*time.Millisecond) // a final partial window
	in[0].SetID()
	for i := range in {
		in[i].ReceivedAt = recv
	}
	if res := mustAppend(t, s.AppendUsage, in); len(res.Duplicates) != 0 {
		t.Fatalf("fresh records reported as duplicates: %v", res.Duplicates)
	}
	got := scanAll(t, s, "caami")
	if len(got) != len(in) {
		t.Fatalf("scanned %d records, want %d", len(got), len(in))
	}
	for i := range in {
		if got[i] != in[i] {
			t.Errorf("record %d read back as\n%+v\nwant\n%+v", i, got[i], in[i])
		}
	}
}

func testResendKeepsFirst(t *testing.T, s metering.Store) {
	first := batch("caami", 0, 50, Base.Add(2*time.Minute))
	if res := mustAppend(t, s.AppendUsage, first); len(res.Duplicates) != 0 {
		t.Fatalf("first send: %d duplicates, want 0", len(res.Duplicates))
	}
	again := batch("caami", 0, 50, Base.Add(5*time.Minute))
	again[7].Quantity = 999999 // a resend never changes what was stored
	res := mustAppend(t, s.AppendUsage, again)
	if len(res.Duplicates) != 50 {
		t.Fatalf("second send: %d duplicates, want 50", len(res.Duplicates))
	}
	if !slices.Equal(res.Conflicts, []int{7}) {
		t.Fatalf("second send: conflicts %v, want [7], the one whose content differs", res.Conflicts)
	}
	got := scanAll(t, s, "caami")
	if len(got) != 50 {
		t.Fatalf("stored %d records, want 50", len(got))
	}
	for _, r := range got {
		if !r.ReceivedAt.Equal(Base.Add(2 * time.Minute)) {
			t.Fatalf("record %s has received_at %s, want the first arrival's %s", r.ID, r.ReceivedAt, Base.Add(2*time.Minute))
		}
		if r.Quantity == 999999 {
			t.Fatalf("record %s took the duplicate's quantity", r.ID)
		}
	}
}

func testDuplicateInBatch(t *testing.T, s metering.Store) {
	recs := batch("caami", 0, 3, Base.Add(time.Minute))
	recs = append(recs, recs[1])
	res := mustAppend(t, s.AppendUsage, recs)
	if !slices.Equal(res.Duplicates, []int{3}) {
		t.Fatalf("duplicates = %v, want [3]", res.Duplicates)
	}
	if n := len(scanAll(t, s, "caami")); n != 3 {
		t.Fatalf("stored %d records, want 3", n)
	}
}

func testConflict(t *testing.T, s metering.Store) {
	recs := batch("caami", 0, 3, Base.Add(time.Minute))
	forged := recs[1]
	forged.Quantity = 0 // the same id, other content: inside the batch
	recs = append(recs, forged)
	res := mustAppend(t, s.AppendUsage, recs)
	if !slices.Equal(res.Duplicates, []int{3}) || !slices.Equal(res.Conflicts, []int{3}) {
		t.Fatalf("in one batch: duplicates %v, conflicts %v; want [3] and [3]", res.Duplicates, res.Conflicts)
	}
	// … and across appends, beside a plain resend.
	again := batch("caami", 0, 3, Base.Add(2*time.Minute))
	again[2].Quantity++
	res = mustAppend(t, s.AppendUsage, again)
	if !slices.Equal(res.Duplicates, []int{0, 1, 2}) || !slices.Equal(res.Conflicts, []int{2}) {
		t.Fatalf("across appends: duplicates %v, conflicts %v; want [0 1 2] and [2]", res.Duplicates, res.Conflicts)
	}
	got := scanAll(t, s, "caami")
	if len(got) != 3 {
		t.Fatalf("stored %d records, want 3", len(got))
	}
	want := map[string]int64{}
	for _, r := range batch("caami", 0, 3, Base) {
		want[r.ID] = r.Quantity
	}
	for _, r := range got {
		if r.Quantity != want[r.ID] || !r.ReceivedAt.Equal(Base.Add(time.Minute)) {
			t.Errorf("record %s: quantity %d received %s; want the first arrival's %d at %s", r.ID, r.Quantity, r.ReceivedAt, want[r.ID], Base.Add(time.Minute))
		}
	}
}

func testConcurrentOverlap(t *testing.T, s metering.Store, caps Capabilities) {
	// Client A sends records 0..599, client B 300..899, both in batches of 100,
	// at the same time: 900 distinct records, 300 of them sent twice.
	const clients, perClient, overlap, size = 2, 600, 300, 100
	var mu sync.Mutex
	newCount, dupCount := 0, 0
	reportedNew := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := 0; b < perClient; b += size {
				recs := batch("caami", c*(perClient-overlap)+b, size, Base.Add(time.Duration(c+1)*time.Minute))
				res, err := s.AppendUsage(context.Background(), recs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				newCount += len(recs) - len(res.Duplicates)
				dupCount += len(res.Duplicates)
				for i, r := range recs {
					if !slices.Contains(res.Duplicates, i) {
						reportedNew[r.ID] = true
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	want := clients*perClient - overlap
	switch {
	case !caps.RacyDuplicateCounts && (newCount != want || dupCount != overlap):
		t.Errorf("appends reported %d new and %d duplicates, want %d and %d", newCount, dupCount, want, overlap)
	case newCount+dupCount != clients*perClient:
		t.Errorf("appends reported %d new and %d duplicates of %d records sent", newCount, dupCount, clients*perClient)
	case len(reportedNew) != want:
		t.Errorf("%d distinct records were reported new, want every one of the %d", len(reportedNew), want)
	}
	got := scanAll(t, s, "caami")
	if len(got) != want {
		t.Fatalf("stored %d records, want %d", len(got), want)
	}
	seen := map[string]bool{}
	for _, r := range got {
		if seen[r.ID] {
			t.Fatalf("record %s stored twice", r.ID)
		}
		seen[r.ID] = true
	}
	// The ledger holds what the appends reported new: every stored record
	// once, or some more than once where the adapter's counts are racy.
	var accepted int64
	rows, err := s.AcceptedUsage(ctx(t), "caami", ledgerFrom, ledgerTo)
	if err != nil {
		t.Fatalf("AcceptedUsage: %v", err)
	}
	for _, r := range rows {
		accepted += r.Records
	}
	if accepted != int64(newCount) {
		t.Errorf("the ledger accepted %d records, the appends reported %d new", accepted, newCount)
	}
	reconcile(t, s, "caami", caps.RacyDuplicateCounts)
}

func testAtomic(t *testing.T, s metering.Store) {
	recs := batch("caami", 0, 10, Base.Add(time.Minute))
	recs[9].ID = "not-an-id"
	if _, err := s.AppendUsage(ctx(t), recs); err == nil {
		t.Fatal("append of a batch with a broken record succeeded")
	}
	if n := len(scanAll(t, s, "caami")); n != 0 {
		t.Fatalf("a failed batch left %d records behind", n)
	}
	// The batch, repaired, then goes through whole: the failure left no partial state.
	recs[9].SetID()
	if res := mustAppend(t, s.AppendUsage, recs); len(res.Duplicates) != 0 {
		t.Fatalf("repaired batch: %d duplicates, want 0", len(res.Duplicates))
	}
}

func testNoOverflow(t *testing.T, s metering.Store) {
	// 1,000 containers × 744 hourly windows (October 2026) × 4 GiB × 3600 s.
	const containers, hours = 1000, 31 * 24
	const gib4 = int64(4 << 30)
	err := usagetest.HourlyMemory("caami", containers, hours, Base, gib4, 10000, Base.AddDate(0, 1, 0), func(b []usage.Record) error {
		_, err := s.AppendUsage(ctx(t), b)
		return err
	})
	if err != nil {
		t.Fatalf("AppendUsage: %v", err)
	}
	rows, err := s.QueryUsage(ctx(t), metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: "caami", From: Base, To: Base.AddDate(0, 1, 0)}})
	if err != nil {
		t.Fatalf("QueryUsage: %v", err)
	}
	want := new(big.Int).Mul(big.NewInt(gib4*3600), big.NewInt(containers*hours))
	if want.IsInt64() {
		t.Fatal("test data does not exceed int64")
	}
	if len(rows) != 1 || rows[0].Quantity.Big().Cmp(want) != 0 || rows[0].Records != containers*hours {
		t.Fatalf("rows = %+v, want one row of %s byte·s over %d records", rows, want, containers*hours)
	}
}

func testGroupByDay(t *testing.T, s metering.Store) {
	brussels, err := time.LoadLocation("Europe/Brussels")
	if err != nil {
		t.Fatal(err)
	}
	// Brussels leaves summer time on 2026-10-25 at 01:00 UTC.
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	var recs []usage.Record
	add := func(app string, env usage.Environment, meter usage.Meter, start string, q int64) {
		r := usagetest.Record("caami", "c-"+app+string(env), meter, at(start), q)
		r.App, r.Environment = app, env
		r.SetID()
		r.ReceivedAt = at("2026-11-01T00:00:00Z")
		recs = append(recs, r)
	}
	add("pricing", usage.EnvProd, usage.MeterCPU, "2026-10-24T21:59:00Z", 1) // 23:59 CEST on the 24th
	add("pricing", usage.EnvProd, usage.MeterCPU, "2026-10-24T22:00:00Z", 2) // 00:00 CEST on the 25th
	add("pricing", usage.EnvProd, usage.MeterCPU, "2026-10-25T22:59:00Z", 4) // 23:59 CET on the 25th
	add("pricing", usage.EnvProd, usage.MeterCPU, "2026-10-25T23:00:00Z", 8) // 00:00 CET on the 26th
	add("pricing", usage.EnvTest, usage.MeterCPU, "2026-10-25T12:00:00Z", 16)
	add("records", usage.EnvProd, usage.MeterNetRx, "2026-10-25T12:00:00Z", 32)
	mustAppend(t, s.AppendUsage, recs)

	q := metering.UsageQuery{
		UsageFilter: metering.UsageFilter{Tenant: "caami", From: at("2026-10-24T22:00:00Z"), To: at("2026-10-31T23:00:00Z")},
		GroupBy:     []metering.Dimension{metering.ByApp, metering.ByEnvironment, metering.ByDay},
		Location:    brussels,
	}
	rows, err := s.QueryUsage(ctx(t), q)
	if err != nil {
		t.Fatalf("QueryUsage: %v", err)
	}
	got := make([]string, len(rows))
	for i, r := range rows {
		got[i] = fmt.Sprintf("%s %s %s %s %s/%d", r.App, r.Environment, r.Day, r.Meter, r.Quantity, r.Records)
	}
	want := []string{
		"pricing prod 2026-10-25 cpu_ns 6/2",
		"pricing prod 2026-10-26 cpu_ns 8/1",
		"pricing test 2026-10-25 cpu_ns 16/1",
		"records prod 2026-10-25 net_rx_bytes 32/1",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n%q\nwant\n%q", got, want)
	}

	q.GroupBy = nil
	q.Meters = []usage.Meter{usage.MeterCPU}
	rows, err = s.QueryUsage(ctx(t), q)
	if err != nil {
		t.Fatalf("QueryUsage: %v", err)
	}
	if len(rows) != 1 || rows[0].Quantity.String() != "30" || rows[0].Project != "" || rows[0].Day != "" {
		t.Errorf("ungrouped cpu rows = %+v, want one total of 30", rows)
	}
}

func testTenantIsolation(t *testing.T, s metering.Store) {
	mustAppend(t, s.AppendUsage, batch("caami", 0, 5, Base.Add(time.Minute)))
	mustAppend(t, s.AppendUsage, batch("ona", 100, 3, Base.Add(time.Minute)))
	for _, r := range scanAll(t, s, "ona") {
		if r.Tenant != "ona" {
			t.Fatalf("scan for ona returned a record of %s", r.Tenant)
		}
	}
	rows, err := s.QueryUsage(ctx(t), metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: "ona", From: Base, To: Base.AddDate(0, 1, 0)}})
	if err != nil {
		t.Fatalf("QueryUsage: %v", err)
	}
	if len(rows) != 1 || rows[0].Records != 3 {
		t.Fatalf("ona's rows = %+v, want one row of 3 records", rows)
	}
	rows, err = s.QueryUsage(ctx(t), metering.UsageQuery{UsageFilter: metering.UsageFilter{Tenant: "ona", From: Base, To: Base.AddDate(0, 1, 0),
		Apps: []string{"other"}}})
	if err != nil {
		t.Fatalf("QueryUsage: %v", err)
	}
	if len(rows) != 0 {
		t.Fatalf("filter on an app without usage returned %+v", rows)
	}
}

func testClosed(t *testing.T, s metering.Store) {
	if err := s.Ready(ctx(t)); err != nil {
		t.Fatalf("open store not ready: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Ready(ctx(t)); err == nil {
		t.Fatal("closed store reports ready")
	}
	if _, err := s.AppendUsage(ctx(t), batch("caami", 0, 1, Base)); err == nil {
		t.Fatal("closed store accepted an append")
	}
}
