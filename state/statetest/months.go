package statetest

import (
	"errors"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/paasmeter/paasmeter/state"
)

var closeAudit = state.AuditEntry{Actor: "billing", Action: "month.close"}

func monthClose(tenant, period, after string) state.MonthClose {
	return state.MonthClose{Tenant: tenant, Period: period, After: after, ClosedAt: Base}
}

// closing is s's invoice asking Issue to close its month after after.
func (s spec) closing(series, after string) func(seq int64) (state.Document, error) {
	return func(seq int64) (state.Document, error) {
		d := s.document(series, seq)
		d.Close = &state.MonthClose{After: after}
		return d, nil
	}
}

// closedMonths lists tenant's closed months as "period:document".
func closedMonths(t *testing.T, s state.Store, tenant string) []string {
	t.Helper()
	cs, err := s.ClosedMonths(ctx(t), tenant)
	if err != nil {
		t.Fatalf("ClosedMonths(%s): %v", tenant, err)
	}
	var out []string
	for _, c := range cs {
		if c.Tenant != tenant || !c.ClosedAt.Equal(Base) {
			t.Errorf("ClosedMonths(%s) returned %+v: not the tenant's, or not closed at %s", tenant, c, Base)
		}
		out = append(out, c.Period+":"+c.Document)
	}
	return out
}

func wantClosed(t *testing.T, s state.Store, tenant string, want ...string) {
	t.Helper()
	if got := closedMonths(t, s, tenant); !slices.Equal(got, want) {
		t.Errorf("closed months of %s: %q, want %q", tenant, got, want)
	}
}

// wantOrderError checks that err refuses a close for its order, naming want.
func wantOrderError(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: stored", what)
	case !errors.Is(err, state.ErrMonthOrder):
		t.Errorf("%s: %v, want ErrMonthOrder", what, err)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: %q does not name %s", what, err, want)
	}
}

func testMonthOrder(t *testing.T, a, b state.Store) {
	if err := a.CloseMonth(ctx(t), monthClose("caami", "2026-09", ""), closeAudit); err != nil {
		t.Fatalf("close the first month: %v", err)
	}
	wantOrderError(t, "closing a month that skips one", b.CloseMonth(ctx(t), monthClose("caami", "2026-11", "2026-09"), closeAudit), "2026-10 must close first")
	wantOrderError(t, "closing after a stale latest month", b.CloseMonth(ctx(t), monthClose("caami", "2026-10", ""), closeAudit), "2026-09")
	wantOrderError(t, "closing a closed month again", b.CloseMonth(ctx(t), monthClose("caami", "2026-09", ""), closeAudit), "closed already")
	wantOrderError(t, "closing a month before the latest", b.CloseMonth(ctx(t), monthClose("caami", "2026-08", "2026-09"), closeAudit), "closed already")
	if err := b.CloseMonth(ctx(t), monthClose("caami", "2026-10", "2026-09"), closeAudit); err != nil {
		t.Fatalf("close the next month from the other handle: %v", err)
	}
	// A year's end is no gap.
	if err := a.CloseMonth(ctx(t), monthClose("ona", "2026-12", ""), closeAudit); err != nil {
		t.Fatal(err)
	}
	if err := b.CloseMonth(ctx(t), monthClose("ona", "2027-01", "2026-12"), closeAudit); err != nil {
		t.Fatalf("close January after December: %v", err)
	}
	wantClosed(t, a, "caami", "2026-09:", "2026-10:")
	wantClosed(t, b, "ona", "2026-12:", "2027-01:")
	wantClosed(t, a, "other")
	es := audits(t, b, state.AuditFilter{SubjectPrefix: "month/caami/"})
	if got, want := subjects(es), []string{"month/caami/2026-09", "month/caami/2026-10"}; !slices.Equal(got, want) {
		t.Errorf("audit subjects %q, want one per close: %q", got, want)
	}
	bad := monthClose("", "2026-13", "")
	err := a.CloseMonth(ctx(t), bad, closeAudit)
	for _, field := range []string{"tenant:", "period:"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("a close of no tenant in month 13: %v, want an error naming %s", err, field)
		}
	}
	if err := a.CloseMonth(ctx(t), monthClose("caami", "2026-11", "2026-10"), state.AuditEntry{}); err == nil {
		t.Error("a close with an audit entry of no actor was stored")
	}
	wantClosed(t, b, "caami", "2026-09:", "2026-10:")
}

func testIssueCloses(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	d, err := a.Issue(ctx(t), series, invoice("caami", "2026-10").closing(series, ""), issueAudit)
	if err != nil {
		t.Fatalf("issue an invoice that closes its month: %v", err)
	}
	_, err = b.Issue(ctx(t), series, invoice("caami", "2026-10").closing(series, ""), issueAudit)
	wantOrderError(t, "a second invoice closing the same month", err, "closed already")
	_, err = b.Issue(ctx(t), series, invoice("caami", "2026-12").closing(series, "2026-10"), issueAudit)
	wantOrderError(t, "an invoice closing a month that skips one", err, "2026-11 must close first")
	// The refused ones consumed no number and left no document.
	d2, err := b.Issue(ctx(t), series, invoice("caami", "2026-11").closing(series, "2026-10"), issueAudit)
	if err != nil {
		t.Fatalf("issue the next month's invoice: %v", err)
	}
	if d.Seq != 1 || d2.Seq != 2 {
		t.Errorf("the closing invoices got %d and %d, want 1 and 2: a refused one consumed a number", d.Seq, d2.Seq)
	}
	wantNumbers(t, a, state.DocumentFilter{Tenant: "caami"}, d.Number, d2.Number)
	wantClosed(t, a, "caami", "2026-10:"+d.Number, "2026-11:"+d2.Number)
	if got, err := a.Document(ctx(t), d.Number); err != nil || got.Close != nil {
		t.Errorf("read back %s: %+v, %v: want the document without a close", d.Number, got.Close, err)
	}
	// A credit note closes nothing, and an invoice without Close leaves its
	// month as it was.
	_, err = a.Issue(ctx(t), series, func(seq int64) (state.Document, error) {
		cn := creditNote("caami", "2026-10", d.Number).document(series, seq)
		cn.Close = &state.MonthClose{After: "2026-11"}
		return cn, nil
	}, issueAudit)
	if err == nil || !strings.Contains(err.Error(), "close:") {
		t.Errorf("a credit note closing a month: %v, want an error naming close", err)
	}
	mustIssue(t, b, series, invoice("caami", "2026-12"))
	wantClosed(t, b, "caami", "2026-10:"+d.Number, "2026-11:"+d2.Number)
}

func testConcurrentClose(t *testing.T, a, b state.Store) {
	const series = "PM-2026"
	const racers = 6
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		won      int
		problems []string
	)
	for _, s := range []state.Store{a, b} {
		for g := range racers {
			wg.Go(func() {
				// Every racer read "nothing closed" and closes the same month:
				// half by issuing its invoice, half finding nothing to invoice.
				var err error
				if g%2 == 0 {
					_, err = s.Issue(ctx(t), series, invoice("caami", "2026-11").closing(series, ""), issueAudit)
				} else {
					err = s.CloseMonth(ctx(t), monthClose("caami", "2026-11", ""), closeAudit)
				}
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case !errors.Is(err, state.ErrMonthOrder):
					problems = append(problems, err.Error())
				}
			})
		}
	}
	wg.Wait()
	if len(problems) > 0 {
		t.Fatalf("racers failed otherwise than for the order: %q", problems)
	}
	if won != 1 {
		t.Fatalf("%d racers closed 2026-11, want exactly 1", won)
	}
	closed := closedMonths(t, a, "caami")
	if len(closed) != 1 || !strings.HasPrefix(closed[0], "2026-11:") {
		t.Fatalf("closed months %q, want 2026-11 once", closed)
	}
	docs := list(t, b, state.DocumentFilter{Tenant: "caami"})
	if doc := strings.TrimPrefix(closed[0], "2026-11:"); len(docs) > 1 || (len(docs) == 1) != (doc != "") || (doc != "" && docs[0].Number != doc) {
		t.Errorf("documents %q with the close %q: an invoice was issued without closing its month, or the other way round", numbers(docs), closed[0])
	}
}

// Upgrade is what an adapter's upgrade test stores with the first schema and
// checks once the store is reopened with the current one: a frozen content,
// and an invoice of caami for 2026-11 issued without closing its month, as a
// store of a schema before closed months did.
type Upgrade struct {
	frozen string
	issued state.Document
}

// BeforeUpgrade stores in s what the upgrade must keep: the adapter's test
// then downgrades the schema, reopens the store, and calls Check.
func BeforeUpgrade(t *testing.T, s state.Store) Upgrade {
	t.Helper()
	h, err := s.Freeze(ctx(t), []byte(`{"v":1}`))
	if err != nil {
		t.Fatal(err)
	}
	return Upgrade{frozen: h, issued: mustIssue(t, s, "PM-2026", invoice("caami", "2026-11"))}
}

// Check checks that the upgraded s kept the frozen content, gained
// maintenance windows (numbered from 1), closed the month of the invoice, and
// closes the next month after it.
func (u Upgrade) Check(t *testing.T, s state.Store) {
	t.Helper()
	if got, err := s.FrozenContent(ctx(t), u.frozen); err != nil || string(got) != `{"v":1}` {
		t.Errorf("after the upgrade FrozenContent = %q, %v", got, err)
	}
	w, err := s.DeclareWindow(ctx(t), state.WindowRecord{Start: Base, DurationSeconds: 60, Reason: "r", DeclaredAt: Base,
		Source: state.WindowSourceAPI}, state.AuditEntry{Time: Base, Actor: "ops", Action: "maintenance.declare"})
	if err != nil || w.ID != "1" {
		t.Errorf("DeclareWindow after the upgrade = %+v, %v; want window 1", w, err)
	}
	wantClosed(t, s, "caami", "2026-11:"+u.issued.Number)
	if err := s.CloseMonth(ctx(t), monthClose("caami", "2026-12", "2026-11"), closeAudit); err != nil {
		t.Errorf("close the month after the upgraded one: %v", err)
	}
}

// WantNewerSchemaRefused checks what opening a database whose schema is newer
// than the binary returned: an error that says so (s, opened anyway, is closed).
func WantNewerSchemaRefused(t *testing.T, s io.Closer, err error) {
	t.Helper()
	if err == nil {
		s.Close()
		t.Fatal("a schema newer than the binary was opened")
	}
	if !strings.Contains(err.Error(), "newer than this binary") {
		t.Errorf("error %q does not say the schema is newer", err)
	}
}
