// Package statetest is the contract suite every state.Store adapter must
// pass. Adapters call Run from their own tests with a function that opens two
// handles on one fresh, empty database: what two processes (two collectors,
// or a collector and `paasmeter invoice`) hold, so that the suite checks the
// numbering across processes, not only across goroutines of one.
package statetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/state"
)

// Opener returns two handles on the same fresh, empty database. The suite
// closes both. It is called from parallel subtests.
type Opener func(t *testing.T) (a, b state.Store)

// Base is the time the suite's documents are issued at.
var Base = time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)

// Open opens a store of an adapter (open is its Open; where, its directory or
// DSN) for a test, failing t if it cannot, and closes it when t ends (Close
// twice is harmless, so the test may close it before).
func Open[S state.Store](t *testing.T, open func(context.Context, string) (S, error), where string) S {
	t.Helper()
	s, err := open(context.Background(), where)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Run runs the whole contract against stores from open.
func Run(t *testing.T, open Opener) {
	tests := map[string]func(t *testing.T, a, b state.Store){
		"two handles issuing concurrently leave no gap and no duplicate number": testConcurrentIssue,
		"a failing build consumes no number":                                    testFailingBuild,
		"a taken unique key is refused and consumes no number":                  testUniqueKey,
		"a taken number is refused and consumes no number":                      testTakenNumber,
		"an issue whose context ends before commit stores nothing":              testCancelledIssue,
		"a document reads back byte for byte from the other handle":             testRoundTrip,
		"a missing document is not found":                                       testMissingDocument,
		"series number independently and list in bytewise series order":         testSeries,
		"freeze is idempotent and content-addressed":                            testFreeze,
		"the audit entry of an issue is stored with it":                         testIssueAudit,
		"listing filters by series, tenant, period, kind and refers":            testListFilters,
		"bad documents are refused naming the field and consume no number":      testBadDocuments,
		"a credit note must correct an invoice of its tenant and period":        testCreditNoteRefers,
		"audit entries from two handles get gap-free sequence numbers":          testAuditSeq,
		"audit listing filters by subject prefix, literally, and by time":       testAuditFilters,
		"bad audit entries are refused naming the field and consume no number":  testBadAudit,
		"a closed handle is not ready and the other one still works":            testClosed,

		// Closed months (months.go).
		"months close one after the other, each once, per tenant":                        testMonthOrder,
		"an invoice closes its month in its issue, or is refused and consumes no number": testIssueCloses,
		"two handles closing one month at once: exactly one close wins":                  testConcurrentClose,

		// Maintenance windows (windows.go).
		"a window is created with the id it is given, or one the store assigns":   testWindowCreate,
		"a window changes only at the version it was read at":                     testWindowVersion,
		"two handles changing one window at once: exactly one change wins":        testWindowRace,
		"window listing selects by tenant, platform-wide for every one, and time": testWindowFilters,
		"a window and its audit entry are stored together or not at all":          testWindowAudit,
		"bad windows are refused naming the field and store nothing":              testBadWindows,
	}
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		t.Run(name, func(t *testing.T) {
			// Each test has a database of its own, and a server-backed
			// store spends most of a test waiting for round trips.
			t.Parallel()
			a, b := open(t)
			t.Cleanup(func() { a.Close(); b.Close() })
			tests[name](t, a, b)
		})
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

func sha(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// number is how the suite's callers build numbers: "PM-2026-000001".
func number(series string, seq int64) string { return fmt.Sprintf("%s-%06d", series, seq) }

// spec describes a document; build turns it into a build function.
type spec struct {
	kind           state.DocumentKind
	tenant, period string
	key, refers    string
}

func invoice(tenant, period string) spec {
	return spec{kind: state.KindInvoice, tenant: tenant, period: period}
}

func creditNote(tenant, period, refers string) spec {
	return spec{kind: state.KindCreditNote, tenant: tenant, period: period, refers: refers}
}

func (s spec) withKey(key string) spec { s.key = key; return s }

// document is the document s describes with number seq of series.
func (s spec) document(series string, seq int64) state.Document {
	n := number(series, seq)
	body := fmt.Appendf(nil, `{"number":%q,"kind":%q,"tenant":%q,"period":%q}`, n, s.kind, s.tenant, s.period)
	return state.Document{
		Series: series, Seq: seq, Number: n, Kind: s.kind, Tenant: s.tenant, Period: s.period,
		UniqueKey: s.key, Refers: s.refers, IssuedAt: Base, Hash: sha(body), Body: body,
	}
}

func (s spec) build(series string) func(seq int64) (state.Document, error) {
	return func(seq int64) (state.Document, error) { return s.document(series, seq), nil }
}

var issueAudit = state.AuditEntry{Actor: "billing", Action: "invoice.issue", Detail: json.RawMessage(`{"run":"statetest"}`)}

func mustIssue(t *testing.T, s state.Store, series string, sp spec) state.Document {
	t.Helper()
	d, err := s.Issue(ctx(t), series, sp.build(series), issueAudit)
	if err != nil {
		t.Fatalf("Issue in %s: %v", series, err)
	}
	return d
}

func list(t *testing.T, s state.Store, f state.DocumentFilter) []state.Document {
	t.Helper()
	docs, err := s.ListDocuments(ctx(t), f)
	if err != nil {
		t.Fatalf("ListDocuments(%+v): %v", f, err)
	}
	return docs
}

// pluck returns f of each of xs.
func pluck[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func numbers(docs []state.Document) []string {
	return pluck(docs, func(d state.Document) string { return d.Number })
}

func audits(t *testing.T, s state.Store, f state.AuditFilter) []state.AuditEntry {
	t.Helper()
	es, err := s.ListAudit(ctx(t), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return es
}

func subjects(es []state.AuditEntry) []string {
	return pluck(es, func(e state.AuditEntry) string { return e.Subject })
}

// wantNumbers fails t unless the store holds exactly want, in order.
func wantNumbers(t *testing.T, s state.Store, f state.DocumentFilter, want ...string) {
	t.Helper()
	if got := numbers(list(t, s, f)); !slices.Equal(got, want) {
		t.Errorf("ListDocuments(%+v) = %q, want %q", f, got, want)
	}
}

func testConcurrentIssue(t *testing.T, a, b state.Store) {
	const goroutines, issues = 8, 5
	const series = "PM-2026"
	var (
		mu     sync.Mutex
		issued []state.Document
		wg     sync.WaitGroup
	)
	for h, s := range []state.Store{a, b} {
		for g := range goroutines {
			wg.Go(func() {
				for i := range issues {
					// A unique key per issue makes every insert check the index
					// while others insert.
					sp := invoice(fmt.Sprintf("tenant-%d-%d", h, g), "2026-11").withKey(fmt.Sprintf("invoice/%d/%d/%d", h, g, i))
					d, err := s.Issue(ctx(t), series, sp.build(series), issueAudit)
					if err != nil {
						t.Errorf("handle %d goroutine %d issue %d: %v", h, g, i, err)
						return
					}
					mu.Lock()
					issued = append(issued, d)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	const total = 2 * goroutines * issues
	if problem := gapsAndDuplicates(issued, total); problem != "" {
		t.Fatalf("Issue returned %d documents: %s", len(issued), problem)
	}
	want := make([]string, total)
	for i := range want {
		want[i] = number(series, int64(i+1))
	}
	for _, s := range []state.Store{a, b} {
		docs := list(t, s, state.DocumentFilter{})
		if problem := gapsAndDuplicates(docs, total); problem != "" {
			t.Fatalf("%d documents stored: %s", len(docs), problem)
		}
		if !slices.Equal(numbers(docs), want) {
			t.Fatalf("stored numbers %q,\nwant in order %q", numbers(docs), want)
		}
	}
	es := audits(t, b, state.AuditFilter{})
	if len(es) != total {
		t.Fatalf("%d audit entries, want one per issue: %d", len(es), total)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("audit entry %d has seq %d: the audit log has a gap or a duplicate", i, e.Seq)
		}
	}
	gotSubjects := subjects(es)
	slices.Sort(gotSubjects)
	if !slices.Equal(gotSubjects, want) {
		t.Errorf("audit subjects %q, want the issued numbers", gotSubjects)
	}
}

// gapsAndDuplicates says which of the numbers 1..n of docs are missing or
// repeated, and which documents are numbered otherwise ("" when none).
func gapsAndDuplicates(docs []state.Document, n int64) string {
	count := map[int64]int{}
	var problems []string
	for _, d := range docs {
		count[d.Seq]++
		if d.Seq < 1 || d.Seq > n || d.Number != number(d.Series, d.Seq) {
			problems = append(problems, fmt.Sprintf("unexpected seq %d number %q", d.Seq, d.Number))
		}
	}
	for seq := int64(1); seq <= n; seq++ {
		switch c := count[seq]; {
		case c == 0:
			problems = append(problems, fmt.Sprintf("seq %d missing", seq))
		case c > 1:
			problems = append(problems, fmt.Sprintf("seq %d issued %d times", seq, c))
		}
	}
	return strings.Join(problems, "; ")
}

func testFailingBuild(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	mustIssue(t, a, series, invoice("caami", "2026-11"))
	boom := errors.New("the rate card is missing")
	var calledWith []int64
	_, err := a.Issue(ctx(t), series, func(seq int64) (state.Document, error) {
		calledWith = append(calledWith, seq)
		return state.Document{}, boom
	}, issueAudit)
	if !errors.Is(err, boom) {
		t.Fatalf("Issue with a failing build: %v, want the build's error", err)
	}
	if len(calledWith) == 0 || slices.ContainsFunc(calledWith, func(seq int64) bool { return seq != 2 }) {
		t.Errorf("build called with %v, want the next number, 2", calledWith)
	}
	if d := mustIssue(t, b, series, invoice("ona", "2026-11")); d.Seq != 2 {
		t.Errorf("the issue after a failed build got seq %d, want 2: the failed build consumed a number", d.Seq)
	}
	wantNumbers(t, a, state.DocumentFilter{}, number(series, 1), number(series, 2))
	if got := subjects(audits(t, a, state.AuditFilter{})); !slices.Equal(got, []string{number(series, 1), number(series, 2)}) {
		t.Errorf("audit subjects %q: the failed issue left an entry", got)
	}
}

func testUniqueKey(t *testing.T, a, b state.Store) {
	const series, key = "PM-2026", "invoice/caami/2026-11"
	first := mustIssue(t, a, series, invoice("caami", "2026-11").withKey(key))
	for _, s := range []state.Store{a, b} {
		_, err := s.Issue(ctx(t), series, invoice("caami", "2026-11").withKey(key).build(series), issueAudit)
		if !errors.Is(err, state.ErrExists) {
			t.Fatalf("second issue with unique key %q: %v, want ErrExists", key, err)
		}
		if !strings.Contains(err.Error(), "unique_key") {
			t.Errorf("error %q does not name the field unique_key", err)
		}
	}
	if d := mustIssue(t, b, series, invoice("caami", "2026-10").withKey("invoice/caami/2026-10")); d.Seq != 2 {
		t.Errorf("the issue after a refused key got seq %d, want 2", d.Seq)
	}
	if d := mustIssue(t, a, series, invoice("caami", "2026-11")); d.Seq != 3 {
		t.Errorf("an issue without a key got seq %d, want 3: an empty key must collide with nothing", d.Seq)
	}
	if d := mustIssue(t, b, series, invoice("ona", "2026-11")); d.Seq != 4 {
		t.Errorf("a second issue without a key got seq %d, want 4", d.Seq)
	}
	got, err := a.Document(ctx(t), first.Number)
	if err != nil || got.UniqueKey != key {
		t.Errorf("Document(%q) = key %q, %v; want the first holder of %q", first.Number, got.UniqueKey, err, key)
	}
	if n := len(audits(t, a, state.AuditFilter{})); n != 4 {
		t.Errorf("%d audit entries, want 4: a refused issue left one", n)
	}
}

func testTakenNumber(t *testing.T, a, b state.Store) {
	// Numbers are unique across series: a caller that builds the same
	// number in two series is refused, not stored twice.
	same := func(series string) func(seq int64) (state.Document, error) {
		return func(seq int64) (state.Document, error) {
			d := invoice("caami", "2026-11").document(series, seq)
			d.Number = "DUPLICATE-1"
			return d, nil
		}
	}
	if _, err := a.Issue(ctx(t), "X", same("X"), issueAudit); err != nil {
		t.Fatal(err)
	}
	_, err := b.Issue(ctx(t), "Y", same("Y"), issueAudit)
	if !errors.Is(err, state.ErrExists) || !strings.Contains(err.Error(), "number") {
		t.Fatalf("a second document numbered DUPLICATE-1: %v, want ErrExists naming number", err)
	}
	if d := mustIssue(t, b, "Y", invoice("caami", "2026-11")); d.Seq != 1 {
		t.Errorf("series Y's first document got seq %d after a refused one, want 1", d.Seq)
	}
}

func testCancelledIssue(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := a.Issue(c, series, func(seq int64) (state.Document, error) {
		cancel() // the caller gives up while the number is held
		return invoice("caami", "2026-11").document(series, seq), nil
	}, issueAudit)
	if err == nil {
		t.Fatal("Issue whose context ended before commit succeeded")
	}
	wantNumbers(t, b, state.DocumentFilter{})
	if d := mustIssue(t, b, series, invoice("caami", "2026-11")); d.Seq != 1 {
		t.Errorf("the issue after a cancelled one got seq %d, want 1", d.Seq)
	}
	if d := mustIssue(t, a, series, invoice("ona", "2026-11")); d.Seq != 2 {
		t.Errorf("the cancelled handle's next issue got seq %d, want 2", d.Seq)
	}
}

func testRoundTrip(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	// Not canonical on purpose: the store must not reformat what it is given.
	body := []byte("{\"number\": \"PM-2026-000001\" ,\n \"total\": 1234.50, \"b\":1, \"a\": \"Caisse auxiliaire d'assurance maladie-invalidité \\u00e9 é\", \"big\": 123456789012345678901234567890}")
	cet := time.FixedZone("CET", 3600)
	issued := time.Date(2026, 12, 3, 10, 15, 30, 123456000, cet)
	var in state.Document
	out, err := a.Issue(ctx(t), series, func(seq int64) (state.Document, error) {
		in = state.Document{Series: series, Seq: seq, Number: number(series, seq), Kind: state.KindInvoice,
			Tenant: "caami", Period: "2026-11", UniqueKey: "invoice/caami/2026-11", IssuedAt: issued,
			Hash: sha(body), Body: bytes.Clone(body)}
		return in, nil
	}, issueAudit)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.IssuedAt = issued.UTC()
	if !reflect.DeepEqual(out, want) {
		t.Errorf("Issue returned\n%+v\nwant (IssuedAt in UTC)\n%+v", out, want)
	}
	credit := creditNote("caami", "2026-11", out.Number).withKey("credit/caami/2026-11/1")
	outCredit := mustIssue(t, a, "CN-2026", credit)
	for _, s := range []state.Store{b, a} {
		for _, w := range []state.Document{want, credit.document("CN-2026", 1)} {
			got, err := s.Document(ctx(t), w.Number)
			if err != nil {
				t.Fatalf("Document(%q): %v", w.Number, err)
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("Document(%q) =\n%+v\nwant\n%+v", w.Number, got, w)
			}
			if got.IssuedAt.Location() != time.UTC {
				t.Errorf("Document(%q).IssuedAt is in %v, want UTC", w.Number, got.IssuedAt.Location())
			}
		}
	}
	if !reflect.DeepEqual(outCredit, credit.document("CN-2026", 1)) {
		t.Errorf("Issue returned %+v for the credit note", outCredit)
	}
	got, err := b.Document(ctx(t), want.Number)
	if err == nil && !bytes.Equal(got.Body, body) {
		t.Errorf("body read back as\n%s\nwant byte for byte\n%s", got.Body, body)
	}
}

func testMissingDocument(t *testing.T, a, b state.Store) {
	mustIssue(t, a, "PM-2026", invoice("caami", "2026-11"))
	for _, n := range []string{"PM-2026-000002", "pm-2026-000001", ""} {
		if _, err := b.Document(ctx(t), n); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("Document(%q): %v, want ErrNotFound", n, err)
		}
	}
}

func testSeries(t *testing.T, a, b state.Store) {
	// Bytewise order puts "Z" before "a", which a linguistic collation would not.
	steps := []struct {
		s      state.Store
		series string
		want   int64
	}{
		{a, "PM-2026", 1}, {b, "PM-2027", 1}, {a, "PM-2026", 2}, {b, "a-2026", 1},
		{b, "PM-2026", 3}, {a, "Z-2026", 1}, {a, "PM-2027", 2}, {b, "a-2026", 2},
	}
	for i, st := range steps {
		d := mustIssue(t, st.s, st.series, invoice(fmt.Sprintf("tenant-%d", i), "2026-11"))
		if d.Seq != st.want {
			t.Errorf("step %d: issue in %s got seq %d, want %d", i, st.series, d.Seq, st.want)
		}
	}
	wantNumbers(t, a, state.DocumentFilter{},
		"PM-2026-000001", "PM-2026-000002", "PM-2026-000003", "PM-2027-000001", "PM-2027-000002",
		"Z-2026-000001", "a-2026-000001", "a-2026-000002")
}

func testFreeze(t *testing.T, a, b state.Store) {
	content := []byte(`{"version":"2026-01","prices":{"cpu_ns":{"prod":"0.045"}}}`)
	contents := [][]byte{content, []byte(`{"availability":"99.85"}`), {0x00, 0xff, 0xfe, '\n'}, {}}
	hashes := map[string]bool{}
	for _, c := range contents {
		h, err := a.Freeze(ctx(t), c)
		if err != nil {
			t.Fatalf("Freeze(%q): %v", c, err)
		}
		if h != sha(c) {
			t.Errorf("Freeze(%q) = %s, want its SHA-256 %s", c, h, sha(c))
		}
		hashes[h] = true
		again, err := b.Freeze(ctx(t), bytes.Clone(c))
		if err != nil || again != h {
			t.Errorf("freezing %q again from the other handle = %s, %v; want %s, nil", c, again, err, h)
		}
		for _, s := range []state.Store{a, b} {
			got, err := s.FrozenContent(ctx(t), h)
			if err != nil {
				t.Fatalf("FrozenContent(%s): %v", h, err)
			}
			if !bytes.Equal(got, c) {
				t.Errorf("FrozenContent(%s) = %q, want %q", h, got, c)
			}
		}
	}
	if len(hashes) != len(contents) {
		t.Errorf("%d distinct contents got %d distinct hashes", len(contents), len(hashes))
	}
	for _, h := range []string{sha([]byte("never frozen")), "", "not-a-hash"} {
		if _, err := b.FrozenContent(ctx(t), h); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("FrozenContent(%q): %v, want ErrNotFound", h, err)
		}
	}
}

func testIssueAudit(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	detail := json.RawMessage(`{"cutoff": "2026-12-03T00:00:00Z", "records": 1234}`)
	d1, err := a.Issue(ctx(t), series, invoice("caami", "2026-11").build(series),
		state.AuditEntry{Actor: "ops@caami", Action: "invoice.issue", Detail: detail})
	if err != nil {
		t.Fatal(err)
	}
	explicit := state.AuditEntry{Time: Base.Add(time.Hour), Actor: "billing", Action: "invoice.issue", Subject: "invoice/ona/2026-11"}
	d2, err := b.Issue(ctx(t), series, invoice("ona", "2026-11").build(series), explicit)
	if err != nil {
		t.Fatal(err)
	}
	want := []state.AuditEntry{
		{Seq: 1, Time: d1.IssuedAt, Actor: "ops@caami", Action: "invoice.issue", Subject: d1.Number, Detail: detail},
		{Seq: 2, Time: Base.Add(time.Hour), Actor: "billing", Action: "invoice.issue", Subject: "invoice/ona/2026-11"},
	}
	got := audits(t, b, state.AuditFilter{})
	if len(got) != len(want) {
		t.Fatalf("audit log %+v, want %+v", got, want)
	}
	for i := range want {
		if !sameAudit(got[i], want[i]) {
			t.Errorf("audit entry %d = %+v, want %+v (an empty subject is the number, a zero time the issue time)", i, got[i], want[i])
		}
	}
	if d2.Seq != 2 {
		t.Errorf("second issue got seq %d", d2.Seq)
	}
}

// sameAudit compares entries, their details byte for byte (nil and empty alike).
func sameAudit(got, want state.AuditEntry) bool {
	return got.Seq == want.Seq && got.Time.Equal(want.Time) && got.Time.Location() == time.UTC &&
		got.Actor == want.Actor && got.Action == want.Action && got.Subject == want.Subject &&
		bytes.Equal(got.Detail, want.Detail)
}

func testListFilters(t *testing.T, a, b state.Store) {
	mustIssue(t, a, "PM-2026", invoice("caami", "2026-10")) // PM-2026-000001
	mustIssue(t, b, "PM-2026", invoice("caami", "2026-11")) // PM-2026-000002
	mustIssue(t, a, "PM-2026", invoice("ona", "2026-11"))   // PM-2026-000003
	mustIssue(t, b, "PM-2027", invoice("caami", "2027-01")) // PM-2027-000001
	mustIssue(t, a, "CN-2026", creditNote("caami", "2026-11", "PM-2026-000002"))
	mustIssue(t, b, "CN-2026", creditNote("ona", "2026-11", "PM-2026-000003"))
	mustIssue(t, a, "CN-2026", creditNote("caami", "2026-11", "PM-2026-000002"))
	tests := []struct {
		f    state.DocumentFilter
		want []string
	}{
		{state.DocumentFilter{}, []string{"CN-2026-000001", "CN-2026-000002", "CN-2026-000003",
			"PM-2026-000001", "PM-2026-000002", "PM-2026-000003", "PM-2027-000001"}},
		{state.DocumentFilter{Series: "PM-2026"}, []string{"PM-2026-000001", "PM-2026-000002", "PM-2026-000003"}},
		{state.DocumentFilter{Tenant: "caami"}, []string{"CN-2026-000001", "CN-2026-000003",
			"PM-2026-000001", "PM-2026-000002", "PM-2027-000001"}},
		{state.DocumentFilter{Period: "2026-11"}, []string{"CN-2026-000001", "CN-2026-000002", "CN-2026-000003",
			"PM-2026-000002", "PM-2026-000003"}},
		{state.DocumentFilter{Tenant: "caami", Period: "2026-11", Kind: state.KindInvoice}, []string{"PM-2026-000002"}},
		{state.DocumentFilter{Kind: state.KindCreditNote}, []string{"CN-2026-000001", "CN-2026-000002", "CN-2026-000003"}},
		{state.DocumentFilter{Refers: "PM-2026-000002"}, []string{"CN-2026-000001", "CN-2026-000003"}},
		{state.DocumentFilter{Tenant: "ona", Period: "2026-10"}, nil},
		{state.DocumentFilter{Tenant: "CAAMI"}, nil},
	}
	for _, tt := range tests {
		wantNumbers(t, b, tt.f, tt.want...)
	}
}

func testBadDocuments(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	ona := mustIssue(t, a, "PM-2025", invoice("ona", "2026-11"))
	tests := []struct {
		name   string
		mutate func(d *state.Document)
		field  string
	}{
		{"another series", func(d *state.Document) { d.Series = "PM-2027" }, "series"},
		{"another seq", func(d *state.Document) { d.Seq++ }, "seq"},
		{"no number", func(d *state.Document) { d.Number = "" }, "number"},
		{"an unknown kind", func(d *state.Document) { d.Kind = "quote" }, "kind"},
		{"no tenant", func(d *state.Document) { d.Tenant = "" }, "tenant"},
		{"a month 13", func(d *state.Document) { d.Period = "2026-13" }, "period"},
		{"a day for a period", func(d *state.Document) { d.Period = "2026-11-01" }, "period"},
		{"no issue time", func(d *state.Document) { d.IssuedAt = time.Time{} }, "issued_at"},
		{"an issue time in nanoseconds", func(d *state.Document) { d.IssuedAt = d.IssuedAt.Add(1) }, "issued_at"},
		{"a short hash", func(d *state.Document) { d.Hash = "abc123" }, "hash"},
		{"an uppercase hash", func(d *state.Document) { d.Hash = strings.ToUpper(d.Hash) }, "hash"},
		{"a truncated body", func(d *state.Document) { d.Body = d.Body[:len(d.Body)-1] }, "body"},
		{"no body", func(d *state.Document) { d.Body = nil }, "body"},
		{"an invoice that refers to another", func(d *state.Document) { d.Refers = ona.Number }, "refers"},
		{"a credit note that refers to nothing", func(d *state.Document) { d.Kind = state.KindCreditNote }, "refers"},
	}
	for _, tt := range tests {
		_, err := b.Issue(ctx(t), series, func(seq int64) (state.Document, error) {
			d := invoice("caami", "2026-11").document(series, seq)
			tt.mutate(&d)
			return d, nil
		}, issueAudit)
		if err == nil {
			t.Errorf("%s: stored", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.field+":") {
			t.Errorf("%s: error %q does not name the field %s", tt.name, err, tt.field)
		}
		if errors.Is(err, state.ErrExists) || errors.Is(err, state.ErrNotFound) {
			t.Errorf("%s: error %q is ErrExists or ErrNotFound, want a validation error", tt.name, err)
		}
	}
	if d := mustIssue(t, a, series, invoice("caami", "2026-11")); d.Seq != 1 {
		t.Errorf("the first valid document of %s got seq %d, want 1: a refused one consumed a number", series, d.Seq)
	}
	wantNumbers(t, b, state.DocumentFilter{Series: series}, number(series, 1))
}

func testCreditNoteRefers(t *testing.T, a, b state.Store) {
	inv := mustIssue(t, a, "PM-2026", invoice("caami", "2026-11"))
	credit := mustIssue(t, b, "CN-2026", creditNote("caami", "2026-11", inv.Number))
	tests := []struct {
		name     string
		sp       spec
		field    string
		notFound bool
	}{
		{"an unknown invoice", creditNote("caami", "2026-11", "PM-2026-000099"), "refers", true},
		{"another tenant's invoice", creditNote("ona", "2026-11", inv.Number), "refers", false},
		{"another month than the invoice's", creditNote("caami", "2026-10", inv.Number), "period", false},
		{"a credit note", creditNote("caami", "2026-11", credit.Number), "refers", false},
	}
	for _, tt := range tests {
		_, err := a.Issue(ctx(t), "CN-2026", tt.sp.build("CN-2026"), issueAudit)
		if err == nil {
			t.Errorf("a credit note of %s was stored", tt.name)
			continue
		}
		if !strings.Contains(err.Error(), tt.field+":") {
			t.Errorf("a credit note of %s: error %q does not name the field %s", tt.name, err, tt.field)
		}
		if errors.Is(err, state.ErrNotFound) != tt.notFound {
			t.Errorf("a credit note of %s: errors.Is(%q, ErrNotFound) = %v, want %v", tt.name, err, !tt.notFound, tt.notFound)
		}
	}
	if d := mustIssue(t, b, "CN-2026", creditNote("caami", "2026-11", inv.Number)); d.Seq != 2 {
		t.Errorf("the next valid credit note got seq %d, want 2", d.Seq)
	}
}

func testAuditSeq(t *testing.T, a, b state.Store) {
	const n = 10
	var (
		mu   sync.Mutex
		seqs []int64
		wg   sync.WaitGroup
	)
	for h, s := range []state.Store{a, b} {
		for i := range n {
			wg.Go(func() {
				e, err := s.AppendAudit(ctx(t), state.AuditEntry{Time: Base, Actor: "ops", Action: "test",
					Subject: fmt.Sprintf("concurrent/%d/%d", h, i)})
				if err != nil {
					t.Errorf("AppendAudit: %v", err)
					return
				}
				mu.Lock()
				seqs = append(seqs, e.Seq)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.Sort(seqs)
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("AppendAudit returned seqs %v, want exactly 1..%d", seqs, 2*n)
		}
	}
	es := audits(t, a, state.AuditFilter{})
	if len(es) != 2*n {
		t.Fatalf("%d entries listed, want %d", len(es), 2*n)
	}
	for i, e := range es {
		if e.Seq != int64(i+1) {
			t.Fatalf("entry %d listed with seq %d: not ordered by seq, or a gap", i, e.Seq)
		}
	}
}

func testAuditFilters(t *testing.T, a, b state.Store) {
	entries := []state.AuditEntry{
		{Time: Base.Add(123456789), Actor: "ops", Action: "maintenance.create", Subject: "maintenance/caami/1",
			Detail: json.RawMessage(`{ "start" : "2026-12-10T22:00:00Z" }`)},
		{Time: Base.Add(time.Minute), Actor: "ops", Action: "maintenance.create", Subject: "maintenance/ona/2"},
		{Time: Base.Add(2 * time.Minute), Actor: "billing", Action: "invoice.issue", Subject: "PM-2026-000001"},
		{Time: Base.Add(3 * time.Minute), Actor: "ops", Action: "test", Subject: "a_b"},
		{Time: Base.Add(4 * time.Minute), Actor: "ops", Action: "test", Subject: "axb"},
		{Time: Base.Add(5 * time.Minute), Actor: "ops", Action: "test", Subject: "a%c"},
	}
	var stored []state.AuditEntry
	for i, e := range entries {
		s := []state.Store{a, b}[i%2]
		got, err := s.AppendAudit(ctx(t), e)
		if err != nil {
			t.Fatalf("AppendAudit(%+v): %v", e, err)
		}
		want := e
		want.Seq = int64(i + 1)
		want.Time = time.UnixMicro(e.Time.UnixMicro()).UTC() // kept to the microsecond
		if !sameAudit(got, want) {
			t.Errorf("AppendAudit returned %+v, want %+v", got, want)
		}
		stored = append(stored, want)
	}
	all := audits(t, a, state.AuditFilter{})
	if len(all) != len(stored) {
		t.Fatalf("listed %d entries, want %d", len(all), len(stored))
	}
	for i := range stored {
		if !sameAudit(all[i], stored[i]) {
			t.Errorf("entry %d listed as %+v, want %+v", i, all[i], stored[i])
		}
	}
	tests := []struct {
		f    state.AuditFilter
		want []string
	}{
		{state.AuditFilter{SubjectPrefix: "maintenance/"}, []string{"maintenance/caami/1", "maintenance/ona/2"}},
		{state.AuditFilter{SubjectPrefix: "maintenance/caami/"}, []string{"maintenance/caami/1"}},
		{state.AuditFilter{SubjectPrefix: "Maintenance/"}, []string{}},
		{state.AuditFilter{SubjectPrefix: "a_"}, []string{"a_b"}},
		{state.AuditFilter{SubjectPrefix: "a%"}, []string{"a%c"}},
		{state.AuditFilter{SubjectPrefix: "a"}, []string{"a_b", "axb", "a%c"}},
		{state.AuditFilter{From: Base.Add(time.Minute), To: Base.Add(3 * time.Minute)}, []string{"maintenance/ona/2", "PM-2026-000001"}},
		{state.AuditFilter{From: Base.Add(4 * time.Minute)}, []string{"axb", "a%c"}},
		{state.AuditFilter{To: Base.Add(time.Minute)}, []string{"maintenance/caami/1"}},
		{state.AuditFilter{SubjectPrefix: "maintenance/", From: Base.Add(time.Second)}, []string{"maintenance/ona/2"}},
	}
	for _, tt := range tests {
		got := subjects(audits(t, b, tt.f))
		if !slices.Equal(got, tt.want) {
			t.Errorf("ListAudit(%+v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func testBadAudit(t *testing.T, a, b state.Store) {
	good := state.AuditEntry{Time: Base, Actor: "ops", Action: "maintenance.create", Subject: "maintenance/caami/1"}
	tests := []struct {
		mutate func(e *state.AuditEntry)
		field  string
	}{
		{func(e *state.AuditEntry) { e.Time = time.Time{} }, "time"},
		{func(e *state.AuditEntry) { e.Actor = "" }, "actor"},
		{func(e *state.AuditEntry) { e.Action = "" }, "action"},
		{func(e *state.AuditEntry) { e.Detail = json.RawMessage(`{"a":`) }, "detail"},
	}
	for _, tt := range tests {
		e := good
		tt.mutate(&e)
		if _, err := a.AppendAudit(ctx(t), e); err == nil || !strings.Contains(err.Error(), tt.field+":") {
			t.Errorf("AppendAudit(%+v): %v, want an error naming %s", e, err, tt.field)
		}
	}
	// An issue with a bad audit entry stores neither.
	bad := issueAudit
	bad.Actor = ""
	if _, err := b.Issue(ctx(t), "PM-2026", invoice("caami", "2026-11").build("PM-2026"), bad); err == nil || !strings.Contains(err.Error(), "actor:") {
		t.Errorf("Issue with an audit entry without actor: %v, want an error naming actor", err)
	}
	wantNumbers(t, a, state.DocumentFilter{})
	e, err := b.AppendAudit(ctx(t), good)
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 1 {
		t.Errorf("the first valid entry got seq %d, want 1: a refused one consumed a number", e.Seq)
	}
	if d := mustIssue(t, a, "PM-2026", invoice("caami", "2026-11")); d.Seq != 1 {
		t.Errorf("the first valid issue got seq %d, want 1", d.Seq)
	}
}

func testClosed(t *testing.T, a, b state.Store) {
	if err := a.Ready(ctx(t)); err != nil {
		t.Fatalf("Ready on an open store: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Ready(ctx(t)); !errors.Is(err, state.ErrNotReady) {
		t.Errorf("Ready after Close: %v, want ErrNotReady", err)
	}
	if _, err := a.Issue(ctx(t), "PM-2026", invoice("caami", "2026-11").build("PM-2026"), issueAudit); err == nil {
		t.Error("Issue on a closed store succeeded")
	}
	if err := b.Ready(ctx(t)); err != nil {
		t.Fatalf("Ready on the other handle: %v", err)
	}
	if d := mustIssue(t, b, "PM-2026", invoice("caami", "2026-11")); d.Seq != 1 {
		t.Errorf("the other handle's first issue got seq %d, want 1", d.Seq)
	}
}
