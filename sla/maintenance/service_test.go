package maintenance_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/clock/clocktest"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
	"github.com/paasmeter/paasmeter/state"
	"github.com/paasmeter/paasmeter/state/embedded"
)

type fixture struct {
	svc   *maintenance.Service
	store *embedded.Store
	clock *clock.Manual
	dir   string
}

// newFixture is a Service over a fresh embedded state store, at now, in
// Brussels, with the default lead time and the institutions caami and ona.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: clock.NewManual(now), dir: t.TempDir()}
	f.store, f.svc = f.open(t)
	return f
}

// open opens another handle on f's store, and a Service over it.
func (f *fixture) open(t *testing.T) (*embedded.Store, *maintenance.Service) {
	t.Helper()
	st, err := embedded.Open(context.Background(), f.dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := maintenance.New(maintenance.Options{Store: st, Location: clocktest.Brussels(t), Clock: f.clock,
		Institutions: institution.Of("caami", "ona"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return st, svc
}

func (f *fixture) declare(t *testing.T, d maintenance.Declaration) maintenance.Declaration {
	t.Helper()
	got, err := f.svc.Declare(context.Background(), d, "ops")
	if err != nil {
		t.Fatalf("Declare(%v): %v", d, err)
	}
	return got
}

func (f *fixture) audit(t *testing.T, prefix string) []state.AuditEntry {
	t.Helper()
	es, err := f.store.ListAudit(context.Background(), state.AuditFilter{SubjectPrefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func actions(es []state.AuditEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Actor+" "+e.Action+" "+e.Subject)
	}
	return out
}

// fresh is a declaration to create (no ID, no version) of tenant at now+at.
func fresh(tenant string, at, d time.Duration) maintenance.Declaration {
	return maintenance.Declaration{Scope: sla.Scope{Tenant: tenant}, Start: now.Add(at), Duration: d, Reason: "upgrade"}
}

func wantRefusal(t *testing.T, err error, field string) *maintenance.FieldError {
	t.Helper()
	fe, ok := maintenance.IsRefusal(err)
	if !ok || fe.Field != field {
		t.Fatalf("got %v, want a refusal naming %s", err, field)
	}
	return fe
}

func TestALateDeclarationIsRefusedAndLeavesNothing(t *testing.T) {
	f := newFixture(t)
	_, err := f.svc.Declare(context.Background(), fresh("caami", 4*day, time.Hour), "ops")
	fe := wantRefusal(t, err, "start")
	if !fe.Earliest.Equal(now.Add(lead)) {
		t.Errorf("refusal names %s as the earliest start, want %s", fe.Earliest, now.Add(lead))
	}
	if ds, err := f.svc.List(context.Background(), "", time.Time{}, time.Time{}); err != nil || len(ds) != 0 {
		t.Errorf("List = %v, %v; want nothing stored", ds, err)
	}
	if es := f.audit(t, ""); len(es) != 0 {
		t.Errorf("audit log %v, want nothing", actions(es))
	}
	_, err = f.svc.Declare(context.Background(), fresh("nobody", 10*day, time.Hour), "ops")
	wantRefusal(t, err, "tenant")
}

func TestAStartedWindowCannotMoveOrGrowButMayEndEarly(t *testing.T) {
	f := newFixture(t)
	w := f.declare(t, fresh("caami", 6*day, 2*time.Hour))
	if w.ID == "" || w.Version != 1 || !w.DeclaredAt.Equal(now) || w.Source != maintenance.SourceAPI {
		t.Fatalf("declared %+v, want an id, version 1, declared now, from the API", w)
	}
	f.clock.Advance(6*day + 30*time.Minute) // half an hour into it
	moved := w
	moved.Start = w.Start.Add(7 * day)
	_, err := f.svc.Declare(context.Background(), moved, "ops")
	wantRefusal(t, err, "start")
	longer := w
	longer.Duration = 3 * time.Hour
	_, err = f.svc.Declare(context.Background(), longer, "ops")
	wantRefusal(t, err, "duration")
	shorter := w
	shorter.Duration = time.Hour
	got, err := f.svc.Declare(context.Background(), shorter, "ops")
	if err != nil {
		t.Fatalf("ending it early: %v", err)
	}
	if got.Version != 2 || got.Duration != time.Hour || !got.DeclaredAt.Equal(now) {
		t.Errorf("ended early as %+v; want version 2, one hour, still declared at %s", got, now)
	}
	subject := state.WindowSubject("caami", w.ID)
	if got, want := actions(f.audit(t, "maintenance/")), []string{"ops maintenance.declare " + subject, "ops maintenance.change " + subject}; !slices.Equal(got, want) {
		t.Errorf("audit log %q, want %q", got, want)
	}
}

func TestAChangeBeforeTheStartIsDeclaredWhenItAddsTime(t *testing.T) {
	f := newFixture(t)
	w := f.declare(t, fresh("caami", 10*day, 2*time.Hour))
	f.clock.Advance(day)
	later := w
	later.Start = w.Start.Add(10 * day)
	moved, err := f.svc.Declare(context.Background(), later, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if !moved.DeclaredAt.Equal(now.Add(day)) || moved.Version != 2 {
		t.Errorf("moved %+v; want it declared anew, at %s, version 2", moved, now.Add(day))
	}
	f.clock.Advance(17 * day) // two days before the new start
	shorter := moved
	shorter.Duration = time.Hour
	got, err := f.svc.Declare(context.Background(), shorter, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if !got.DeclaredAt.Equal(moved.DeclaredAt) {
		t.Errorf("shortened: declared at %s, want %s kept (taking time away needs no notice)", got.DeclaredAt, moved.DeclaredAt)
	}
	back := got
	back.Start = got.Start.Add(-day)
	_, err = f.svc.Declare(context.Background(), back, "ops")
	wantRefusal(t, err, "start")
	_, err = f.svc.Declare(context.Background(), moved, "ops") // read at version 2, now 3
	if !errors.Is(err, state.ErrConflict) {
		t.Errorf("a change at a stale version: %v, want ErrConflict", err)
	}
	unknown := got
	unknown.ID = "404"
	if _, err := f.svc.Declare(context.Background(), unknown, "ops"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("a change of a window that does not exist: %v, want ErrNotFound", err)
	}
	same, err := f.svc.Declare(context.Background(), got, "ops")
	if err != nil || same.Version != got.Version {
		t.Errorf("a change that changes nothing = %+v, %v; want it as it was, unstored", same, err)
	}
	if n := len(f.audit(t, "")); n != 3 {
		t.Errorf("%d audit entries, want 3: declared, moved, shortened", n)
	}
}

func TestCancel(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	future := f.declare(t, fresh("caami", 10*day, time.Hour))
	daily := fresh("ona", 6*day, 2*time.Hour)
	daily.Recurrence = &maintenance.Recurrence{Every: maintenance.Daily}
	daily = f.declare(t, daily)
	oneOffSoon := f.declare(t, fresh("ona", 6*day, time.Hour))

	// Inside the lead time, but not started: cancelled whole.
	f.clock.Advance(8 * day)
	got, err := f.svc.Cancel(ctx, future.ID, "ops")
	if err != nil || !got.Cancelled {
		t.Fatalf("Cancel of a window that has not started = %+v, %v; want it cancelled", got, err)
	}
	again, err := f.svc.Cancel(ctx, future.ID, "ops")
	if err != nil || again.Version != got.Version {
		t.Errorf("Cancel again = %+v, %v; want it unchanged", again, err)
	}
	// Two days into the daily window, within today's occurrence: it ends
	// with the occurrence in progress.
	inOccurrence := now.Add(8*day + 30*time.Minute)
	ws, _ := f.svc.Windows(ctx, "ona", now, now.Add(30*day))
	f.clock.Advance(30*time.Minute + 17*time.Second)
	got, err = f.svc.Cancel(ctx, daily.ID, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if got.Recurrence == nil || !got.Recurrence.Until.Equal(inOccurrence.Add(time.Minute)) || got.Cancelled {
		t.Errorf("Cancel of a started daily window = %+v, want it to end at %s", got.Recurrence, inOccurrence.Add(time.Minute))
	}
	after, err := f.svc.Windows(ctx, "ona", now, now.Add(30*day))
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for _, w := range ws {
		if w.Start.Before(inOccurrence) {
			before = append(before, w.ID)
		}
	}
	if got := windowIDs(after); !slices.Equal(got, before) {
		t.Errorf("after the cancel the occurrences are %q, want those that had started, %q", got, before)
	}
	_, err = f.svc.Cancel(ctx, oneOffSoon.ID, "ops")
	wantRefusal(t, err, "cancelled") // ended: nothing left to cancel
	if _, err := f.svc.Cancel(ctx, "404", "ops"); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("Cancel of a window that does not exist: %v, want ErrNotFound", err)
	}
	es := f.audit(t, "")
	if got := actions(es[len(es)-2:]); !slices.Equal(got, []string{"ops maintenance.cancel " + state.WindowSubject("caami", future.ID),
		"ops maintenance.cancel " + state.WindowSubject("ona", daily.ID)}) {
		t.Errorf("the last audit entries are %q, want the two cancels", got)
	}
}

func windowIDs(ws []sla.Window) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.ID)
	}
	return out
}

func TestWindowsApplyToTheirTenantAndPlatformWideToEveryone(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	platform := f.declare(t, fresh("", 7*day, time.Hour))
	caami := f.declare(t, fresh("caami", 8*day, time.Hour))
	app := fresh("caami", 6*day, time.Hour)
	app.Scope.Project, app.Scope.App = "pricing", "api"
	caamiApp := f.declare(t, app)
	ona := f.declare(t, fresh("ona", 9*day, time.Hour))
	cancelled := f.declare(t, fresh("caami", 10*day, time.Hour))
	if _, err := f.svc.Cancel(ctx, cancelled.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		tenant string
		want   []string
	}{
		"caami gets the platform's, its own and its app's, by start": {"caami", []string{caamiApp.ID, platform.ID, caami.ID}},
		"ona gets the platform's and its own":                        {"ona", []string{platform.ID, ona.ID}},
		"an institution without windows gets the platform's":         {"nobody", []string{platform.ID}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			ws, err := f.svc.Windows(ctx, tt.tenant, now, now.Add(30*day))
			if err != nil {
				t.Fatal(err)
			}
			if got := windowIDs(ws); !slices.Equal(got, tt.want) {
				t.Errorf("Windows(%s) = %q, want %q", tt.tenant, got, tt.want)
			}
		})
	}
	if _, err := f.svc.Windows(ctx, "caami", now, now); err == nil {
		t.Error("Windows over an empty range: no error")
	}
	ds, err := f.svc.List(ctx, "caami", now.Add(10*day), now.Add(11*day))
	if err != nil || len(ds) != 1 || ds[0].ID != cancelled.ID || !ds[0].Cancelled {
		t.Errorf("List of caami on the cancelled window's day = %v, %v; want it, cancelled", ds, err)
	}
	if ds[0].Start.Location().String() != "Europe/Brussels" {
		t.Errorf("List gives times in %s, want the platform's time zone", ds[0].Start.Location())
	}
}

func TestChangesListWhatTheSLAReportOfAPeriodShows(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// The period is the 10th to the 20th day from now.
	from, to := now.Add(10*day), now.Add(20*day)
	platform := f.declare(t, fresh("", 12*day, time.Hour))
	caami := f.declare(t, fresh("caami", 15*day, time.Hour))
	ona := f.declare(t, fresh("ona", 15*day, time.Hour))
	outside := f.declare(t, fresh("caami", 25*day, time.Hour))
	movedOut := f.declare(t, fresh("caami", 11*day, time.Hour))
	f.clock.Advance(day)
	m := movedOut
	m.Start = now.Add(40 * day)
	if _, err := f.svc.Declare(ctx, m, "ops"); err != nil {
		t.Fatal(err)
	}
	cancelled := f.declare(t, fresh("caami", 16*day, time.Hour))
	if _, err := f.svc.Cancel(ctx, cancelled.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(30 * day) // after the period: its report is made, later changes are not in it
	if _, err := f.svc.Cancel(ctx, m.ID, "ops"); err != nil {
		t.Fatal(err)
	}
	es, err := f.svc.Changes(ctx, "caami", from, to)
	if err != nil {
		t.Fatal(err)
	}
	subject := func(tenant string, d maintenance.Declaration) string { return state.WindowSubject(tenant, d.ID) }
	want := []string{
		"ops maintenance.declare " + subject("", platform),
		"ops maintenance.declare " + subject("caami", caami),
		"ops maintenance.declare " + subject("caami", movedOut),
		"ops maintenance.change " + subject("caami", movedOut),
		"ops maintenance.declare " + subject("caami", cancelled),
		"ops maintenance.cancel " + subject("caami", cancelled),
	}
	if got := actions(es); !slices.Equal(got, want) {
		t.Errorf("Changes(caami) =\n%q\nwant (not ona's %s, not %s outside the period, not changes after it)\n%q", got, ona.ID, outside.ID, want)
	}
}

func TestSyncConfig(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	nightly := fresh("caami", 7*day, time.Hour)
	nightly.ID = "nightly"
	nightly.Recurrence = &maintenance.Recurrence{Every: maintenance.Daily}
	late := fresh("", 2*day, time.Hour)
	late.ID = "late"
	numeric := fresh("", 10*day, time.Hour)
	numeric.ID = "42"
	refusals, err := f.svc.SyncConfig(ctx, []maintenance.Declaration{nightly, late, numeric})
	if err != nil {
		t.Fatal(err)
	}
	if len(refusals) != 2 || refusals[0].ID != "late" || refusals[1].ID != "42" {
		t.Fatalf("refusals %v, want late (start) and 42 (id)", refusals)
	}
	wantRefusal(t, refusals[0].Err, "start")
	wantRefusal(t, refusals[1].Err, "id")
	stored, err := f.store.Window(ctx, "nightly")
	if err != nil || stored.Source != maintenance.SourceConfig || !stored.DeclaredAt.Equal(now) || stored.Version != 1 {
		t.Fatalf("nightly stored as %+v, %v; want it from the config, declared now, version 1", stored, err)
	}

	// A restart a day later with the same file: nothing changes, and the
	// late window is still late: the file cannot backdate it.
	f.clock.Advance(day)
	refusals, err = f.svc.SyncConfig(ctx, []maintenance.Declaration{nightly, late})
	if err != nil || len(refusals) != 1 || refusals[0].ID != "late" {
		t.Fatalf("second sync: %v, %v; want late refused again", refusals, err)
	}
	if es := f.audit(t, ""); len(es) != 1 {
		t.Errorf("audit log %q, want only nightly's declaration", actions(es))
	}

	// The API may not change the file's window, but may cancel it.
	api := nightly
	api.Version, api.Reason = 1, "changed through the API"
	_, err = f.svc.Declare(ctx, api, "ops")
	wantRefusal(t, err, "id")

	// The file moves it later: checked and stored like any change.
	moved := nightly
	moved.Start = nightly.Start.Add(7 * day)
	if refusals, err := f.svc.SyncConfig(ctx, []maintenance.Declaration{moved}); err != nil || len(refusals) != 0 {
		t.Fatalf("sync of a moved window: %v, %v", refusals, err)
	}
	stored, _ = f.store.Window(ctx, "nightly")
	if !stored.Start.Equal(moved.Start) || stored.Version != 2 || !stored.DeclaredAt.Equal(now.Add(day)) {
		t.Errorf("moved to %+v, want its new start at version 2, declared anew", stored)
	}
	// Once started, the file cannot extend it.
	f.clock.Advance(20 * day)
	longer := moved
	longer.Duration = 2 * time.Hour
	refusals, err = f.svc.SyncConfig(ctx, []maintenance.Declaration{longer})
	if err != nil || len(refusals) != 1 {
		t.Fatalf("sync of an extension after the start: %v, %v; want it refused", refusals, err)
	}
	wantRefusal(t, refusals[0].Err, "duration")
	if _, err := f.svc.Cancel(ctx, "nightly", "ops"); err != nil {
		t.Fatalf("Cancel of the file's window: %v", err)
	}
	es := f.audit(t, "maintenance/caami/nightly")
	if got := actions(es); !slices.Equal(got, []string{"config maintenance.declare maintenance/caami/nightly",
		"config maintenance.change maintenance/caami/nightly", "ops maintenance.cancel maintenance/caami/nightly"}) {
		t.Errorf("nightly's audit entries %q", got)
	}
}

func TestCollectorsSyncingTheSameFileTogetherDeclareOnce(t *testing.T) {
	f := newFixture(t)
	d := fresh("", 10*day, time.Hour)
	d.ID = "quarterly"
	var wg sync.WaitGroup
	for range 4 {
		_, svc := f.open(t)
		wg.Go(func() {
			refusals, err := svc.SyncConfig(context.Background(), []maintenance.Declaration{d})
			if err != nil || len(refusals) != 0 {
				t.Errorf("SyncConfig: %v, %v", refusals, err)
			}
		})
	}
	wg.Wait()
	if es := f.audit(t, ""); len(es) != 1 {
		t.Errorf("audit log %q, want one declaration", actions(es))
	}
}

func TestAnInstitutionNamedPlatformGetsNoneOfAnothersChanges(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	st, _ := f.open(t)
	svc, err := maintenance.New(maintenance.Options{Store: st, Clock: f.clock, Institutions: institution.Of("platform", "caami"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, tenant := range []string{"", "platform", "caami"} {
		d, err := svc.Declare(ctx, fresh(tenant, 10*day, time.Hour), "ops")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	tests := map[string]struct {
		tenant string
		want   []string
	}{
		"caami gets the platform-wide window's and its own, not the institution platform's": {"caami", []string{ids[0], ids[2]}},
		"the institution platform gets the platform-wide window's and its own, once each":   {"platform", []string{ids[0], ids[1]}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			es, err := svc.Changes(ctx, tt.tenant, now, now.Add(30*day))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, e.Subject[strings.LastIndexByte(e.Subject, '/')+1:])
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Changes(%s) are of windows %q, want %q", tt.tenant, got, tt.want)
			}
		})
	}
}
