package statetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/state"
)

// window is a valid one-off window of tenant starting at Base plus days, two
// hours long, to create (Version 0, no ID).
func window(tenant string, days int) state.WindowRecord {
	return state.WindowRecord{Tenant: tenant, Start: Base.AddDate(0, 0, days), DurationSeconds: 7200,
		Reason: "kernel upgrade", DeclaredAt: Base, Source: state.WindowSourceAPI}
}

var windowAudit = state.AuditEntry{Time: Base, Actor: "ops", Action: "maintenance.declare"}

func mustDeclare(t *testing.T, s state.Store, w state.WindowRecord) state.WindowRecord {
	t.Helper()
	got, err := s.DeclareWindow(ctx(t), w, windowAudit)
	if err != nil {
		t.Fatalf("DeclareWindow(%+v): %v", w, err)
	}
	return got
}

func windowIDs(ws []state.WindowRecord) []string {
	return pluck(ws, func(w state.WindowRecord) string { return w.ID })
}

func testWindowCreate(t *testing.T, a, b state.Store) {
	cet := time.FixedZone("CET", 3600)
	in := state.WindowRecord{Tenant: "caami", Project: "pricing", App: "api", Start: time.Date(2026, 12, 10, 23, 0, 0, 0, cet),
		DurationSeconds: 5400, Every: "weekly", Until: time.Date(2027, 3, 1, 0, 0, 0, 0, cet), Reason: "database patches, é",
		DeclaredAt: time.Date(2026, 12, 3, 10, 15, 30, 123456789, cet), Source: state.WindowSourceAPI}
	first := mustDeclare(t, a, in)
	want := in
	want.ID, want.Version = first.ID, 1
	want.Start, want.Until = in.Start.UTC(), in.Until.UTC()
	want.DeclaredAt = time.UnixMicro(in.DeclaredAt.UnixMicro()).UTC() // kept to the microsecond
	if first.ID == "" || strings.Trim(first.ID, "0123456789") != "" {
		t.Errorf("the store assigned id %q, want a decimal number", first.ID)
	}
	if !reflect.DeepEqual(first, want) {
		t.Errorf("DeclareWindow returned\n%+v\nwant\n%+v", first, want)
	}
	second := mustDeclare(t, b, window("", 7))
	if second.ID == first.ID || second.Version != 1 {
		t.Errorf("the second window got id %q version %d; want another id than %q, version 1", second.ID, second.Version, first.ID)
	}
	named := window("ona", 8)
	named.ID, named.Source = "nightly-backup", state.WindowSourceConfig
	if got := mustDeclare(t, a, named); got.ID != "nightly-backup" || got.Source != state.WindowSourceConfig {
		t.Errorf("a window created with id nightly-backup was stored as %q (source %q)", got.ID, got.Source)
	}
	for _, s := range []state.Store{b, a} {
		got, err := s.Window(ctx(t), first.ID)
		if err != nil {
			t.Fatalf("Window(%q): %v", first.ID, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Window(%q) =\n%+v\nwant\n%+v", first.ID, got, want)
		}
		if got.Start.Location() != time.UTC || got.Until.Location() != time.UTC || got.DeclaredAt.Location() != time.UTC {
			t.Errorf("Window(%q) times are not in UTC: %+v", first.ID, got)
		}
	}
	if got, err := b.Window(ctx(t), second.ID); err != nil || !got.Until.IsZero() || got.Every != "" {
		t.Errorf("Window(%q) = %+v, %v; want a one-off window without until", second.ID, got, err)
	}
	for _, id := range []string{"999", "NIGHTLY-BACKUP", ""} {
		if _, err := a.Window(ctx(t), id); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("Window(%q): %v, want ErrNotFound", id, err)
		}
	}
	again := window("caami", 9)
	again.ID = "nightly-backup"
	if _, err := b.DeclareWindow(ctx(t), again, windowAudit); !errors.Is(err, state.ErrExists) || !strings.Contains(err.Error(), "id:") {
		t.Errorf("creating a second window nightly-backup: %v, want ErrExists naming id", err)
	}
	if got, err := a.Window(ctx(t), "nightly-backup"); err != nil || got.Tenant != "ona" {
		t.Errorf("after a refused creation, nightly-backup = %+v, %v; want ona's first one", got, err)
	}
}

func testWindowVersion(t *testing.T, a, b state.Store) {
	w := mustDeclare(t, a, window("caami", 10))
	change := w
	change.DurationSeconds, change.Reason = 3600, "shorter"
	got, err := b.DeclareWindow(ctx(t), change, state.AuditEntry{Time: Base, Actor: "ops", Action: "maintenance.change"})
	if err != nil {
		t.Fatalf("changing at version 1: %v", err)
	}
	if got.Version != 2 || got.DurationSeconds != 3600 || got.ID != w.ID {
		t.Errorf("the change returned %+v, want id %q at version 2 lasting 3600 s", got, w.ID)
	}
	stale := w // still at version 1
	stale.Reason = "a change from a stale read"
	if _, err := a.DeclareWindow(ctx(t), stale, windowAudit); !errors.Is(err, state.ErrConflict) || !strings.Contains(err.Error(), "version:") {
		t.Errorf("changing at a stale version: %v, want ErrConflict naming version", err)
	}
	ahead := got
	ahead.Version = 7
	if _, err := a.DeclareWindow(ctx(t), ahead, windowAudit); !errors.Is(err, state.ErrConflict) {
		t.Errorf("changing at a version never stored: %v, want ErrConflict", err)
	}
	missing := got
	missing.ID = "no-such-window"
	if _, err := a.DeclareWindow(ctx(t), missing, windowAudit); !errors.Is(err, state.ErrNotFound) {
		t.Errorf("changing a window that does not exist: %v, want ErrNotFound", err)
	}
	stored, err := a.Window(ctx(t), w.ID)
	if err != nil || !reflect.DeepEqual(stored, got) {
		t.Errorf("after refused changes Window = %+v, %v; want the accepted change %+v", stored, err, got)
	}
	cancel := stored
	cancel.Cancelled = true
	if got, err := a.DeclareWindow(ctx(t), cancel, windowAudit); err != nil || !got.Cancelled || got.Version != 3 {
		t.Errorf("cancelling at version 2 = %+v, %v; want it cancelled at version 3", got, err)
	}
	if n := len(audits(t, b, state.AuditFilter{})); n != 3 {
		t.Errorf("%d audit entries, want 3: one per stored change, none for the refused ones", n)
	}
}

func testWindowRace(t *testing.T, a, b state.Store) {
	w := mustDeclare(t, a, window("caami", 10))
	const each = 4
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		won       []string
		conflicts int
	)
	for h, s := range []state.Store{a, b} {
		for g := range each {
			wg.Go(func() {
				change := w
				change.Reason = fmt.Sprintf("change %d/%d", h, g)
				_, err := s.DeclareWindow(ctx(t), change, windowAudit)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won = append(won, change.Reason)
				case errors.Is(err, state.ErrConflict):
					conflicts++
				default:
					t.Errorf("handle %d change %d: %v", h, g, err)
				}
			})
		}
	}
	wg.Wait()
	if len(won) != 1 || conflicts != 2*each-1 {
		t.Fatalf("%d changes from version 1 stored (%q) and %d refused; want exactly one stored", len(won), won, conflicts)
	}
	got, err := b.Window(ctx(t), w.ID)
	if err != nil || got.Version != 2 || got.Reason != won[0] {
		t.Errorf("Window = %+v, %v; want the winning change %q at version 2", got, err, won[0])
	}
	if n := len(audits(t, a, state.AuditFilter{})); n != 2 {
		t.Errorf("%d audit entries, want 2: the creation and the one change stored", n)
	}
}

func testWindowFilters(t *testing.T, a, b state.Store) {
	day := 24 * time.Hour
	platform := mustDeclare(t, a, window("", 10))   // Base+10d, 2 h
	caami := mustDeclare(t, b, window("caami", 11)) // Base+11d
	app := window("caami", 12)                      // Base+12d, one app of caami
	app.Project, app.App = "pricing", "api"
	caamiApp := mustDeclare(t, a, app)
	ona := mustDeclare(t, b, window("ona", 11)) // Base+11d, same start as caami's
	weekly := window("ona", 3)                  // Base+3d, every week until Base+31d
	weekly.Every, weekly.Until = "weekly", Base.Add(31*day)
	onaWeekly := mustDeclare(t, a, weekly)
	forever := window("", 20) // Base+20d, every day, no end
	forever.Every = "daily"
	platformDaily := mustDeclare(t, b, forever)
	cancelled := window("caami", 40)
	cancelled.Cancelled = true
	caamiCancelled := mustDeclare(t, a, cancelled)
	// Equal starts list by id, bytewise: the order of the stored ids.
	sameStart := []string{caami.ID, ona.ID}
	slices.Sort(sameStart)

	at := func(d time.Duration) time.Time { return Base.Add(d) }
	tests := []struct {
		name string
		f    state.WindowFilter
		want []string
	}{
		{"everything", state.WindowFilter{},
			append(append([]string{onaWeekly.ID, platform.ID}, sameStart...), caamiApp.ID, platformDaily.ID, caamiCancelled.ID)},
		{"caami: its own, its app's and the platform's", state.WindowFilter{Tenant: "caami"},
			[]string{platform.ID, caami.ID, caamiApp.ID, platformDaily.ID, caamiCancelled.ID}},
		{"ona: its own and the platform's", state.WindowFilter{Tenant: "ona"},
			[]string{onaWeekly.ID, platform.ID, ona.ID, platformDaily.ID}},
		{"an institution without windows still sees the platform's", state.WindowFilter{Tenant: "nobody"},
			[]string{platform.ID, platformDaily.ID}},
		{"a range ending as a window starts excludes it", state.WindowFilter{Tenant: "caami", From: at(9 * day), To: at(10 * day)}, nil},
		{"a range starting as a window ends excludes it", state.WindowFilter{Tenant: "caami", From: at(10*day + 2*time.Hour), To: at(11 * day)}, nil},
		{"a range overlapping a window's last minute includes it", state.WindowFilter{Tenant: "caami",
			From: at(10*day + 2*time.Hour - time.Minute), To: at(11 * day)}, []string{platform.ID}},
		{"a recurring window is selected over its whole span", state.WindowFilter{Tenant: "ona", From: at(25 * day), To: at(26 * day)},
			[]string{onaWeekly.ID, platformDaily.ID}},
		{"and not after its until and last occurrence", state.WindowFilter{Tenant: "ona", From: at(31*day + 2*time.Hour), To: at(60 * day)},
			[]string{platformDaily.ID}},
		{"a recurring window without end is selected for ever", state.WindowFilter{From: at(3650 * day)},
			[]string{platformDaily.ID}},
		{"cancelled windows are listed", state.WindowFilter{Tenant: "caami", From: at(40 * day), To: at(41 * day)},
			[]string{platformDaily.ID, caamiCancelled.ID}},
		{"only To", state.WindowFilter{To: at(10*day + time.Minute)}, []string{onaWeekly.ID, platform.ID}},
	}
	for _, tt := range tests {
		ws, err := a.ListWindows(ctx(t), tt.f)
		if err != nil {
			t.Fatalf("%s: ListWindows(%+v): %v", tt.name, tt.f, err)
		}
		if got := windowIDs(ws); !slices.Equal(got, tt.want) {
			t.Errorf("%s: ListWindows(%+v) = %q, want %q", tt.name, tt.f, got, tt.want)
		}
	}
	ws, err := b.ListWindows(ctx(t), state.WindowFilter{Tenant: "caami", From: at(12 * day), To: at(13 * day)})
	if err != nil || len(ws) != 1 || !reflect.DeepEqual(ws[0], caamiApp) {
		t.Errorf("ListWindows returned %+v, %v; want caami's app window as stored", ws, err)
	}
}

func testWindowAudit(t *testing.T, a, b state.Store) {
	audit := state.AuditEntry{Time: Base.Add(time.Second), Actor: "ops@platform", Action: "maintenance.declare"}
	platform, err := a.DeclareWindow(ctx(t), window("", 10), audit)
	if err != nil {
		t.Fatal(err)
	}
	explicit := audit
	explicit.Subject, explicit.Detail = "maintenance/custom", json.RawMessage(`{"why": "given"}`)
	caami, err := b.DeclareWindow(ctx(t), window("caami", 10), explicit)
	if err != nil {
		t.Fatal(err)
	}
	es := audits(t, b, state.AuditFilter{SubjectPrefix: "maintenance/"})
	if got, want := subjects(es), []string{"maintenance/platform/" + platform.ID, "maintenance/custom"}; !slices.Equal(got, want) {
		t.Fatalf("audit subjects %q, want %q (an empty subject is the window's)", got, want)
	}
	var detail state.WindowRecord
	if err := json.Unmarshal(es[0].Detail, &detail); err != nil {
		t.Fatalf("the default detail %s is not a window: %v", es[0].Detail, err)
	}
	if !reflect.DeepEqual(detail, platform) {
		t.Errorf("the default detail is\n%+v\nwant the window as stored\n%+v", detail, platform)
	}
	if string(es[1].Detail) != `{"why": "given"}` || es[1].Actor != "ops@platform" || !es[1].Time.Equal(audit.Time) {
		t.Errorf("the second entry %+v does not keep what it was given", es[1])
	}
	// An audit entry the store refuses stores no window, and a change
	// refused stores no entry.
	bad := audit
	bad.Actor = ""
	if _, err := a.DeclareWindow(ctx(t), window("ona", 10), bad); err == nil || !strings.Contains(err.Error(), "actor:") {
		t.Errorf("DeclareWindow with an audit entry without actor: %v, want an error naming actor", err)
	}
	change := caami
	change.Reason = "moved"
	change.Version = 5
	if _, err := a.DeclareWindow(ctx(t), change, audit); !errors.Is(err, state.ErrConflict) {
		t.Errorf("a stale change: %v, want ErrConflict", err)
	}
	ws, err := a.ListWindows(ctx(t), state.WindowFilter{})
	if err != nil || len(ws) != 2 {
		t.Errorf("ListWindows = %d windows, %v; want the 2 stored with their entries", len(ws), err)
	}
	if es := audits(t, a, state.AuditFilter{}); len(es) != 2 || es[1].Seq != 2 {
		t.Errorf("audit log %+v, want the 2 entries of the stored windows, numbered 1 and 2", es)
	}
	// The next entry is still numbered without a gap.
	next := mustDeclare(t, b, window("ona", 11))
	if es := audits(t, a, state.AuditFilter{SubjectPrefix: "maintenance/ona/"}); len(es) != 1 || es[0].Seq != 3 || es[0].Subject != "maintenance/ona/"+next.ID {
		t.Errorf("ona's audit entries %+v, want one numbered 3", es)
	}
}

func testBadWindows(t *testing.T, a, b state.Store) {
	w := mustDeclare(t, a, window("caami", 10))
	tests := []struct {
		name   string
		mutate func(w *state.WindowRecord)
		field  string
	}{
		{"an all-digit id to create", func(w *state.WindowRecord) { w.ID = "42" }, "id"},
		{"an id with a slash", func(w *state.WindowRecord) { w.ID = "a/b" }, "id"},
		{"a change without id", func(w *state.WindowRecord) { w.Version = 1 }, "id"},
		{"a negative version", func(w *state.WindowRecord) { w.Version = -1 }, "version"},
		{"an app without project", func(w *state.WindowRecord) { w.App = "api" }, "project"},
		{"a project without tenant", func(w *state.WindowRecord) { w.Tenant, w.Project = "", "pricing" }, "tenant"},
		{"no start", func(w *state.WindowRecord) { w.Start = time.Time{} }, "start"},
		{"a start in nanoseconds", func(w *state.WindowRecord) { w.Start = w.Start.Add(1) }, "start"},
		{"no duration", func(w *state.WindowRecord) { w.DurationSeconds = 0 }, "duration_seconds"},
		{"an unknown recurrence", func(w *state.WindowRecord) { w.Every = "hourly" }, "every"},
		{"an until on a one-off window", func(w *state.WindowRecord) { w.Until = w.Start.Add(time.Hour) }, "until"},
		{"an until before the start", func(w *state.WindowRecord) { w.Every, w.Until = "daily", w.Start.Add(-time.Hour) }, "until"},
		{"no declaration time", func(w *state.WindowRecord) { w.DeclaredAt = time.Time{} }, "declared_at"},
		{"an unknown source", func(w *state.WindowRecord) { w.Source = "" }, "source"},
	}
	for _, tt := range tests {
		bad := window("caami", 10)
		tt.mutate(&bad)
		_, err := b.DeclareWindow(ctx(t), bad, windowAudit)
		if err == nil || !strings.Contains(err.Error(), tt.field+":") {
			t.Errorf("%s: DeclareWindow = %v, want an error naming %s", tt.name, err, tt.field)
		}
		if errors.Is(err, state.ErrExists) || errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrConflict) {
			t.Errorf("%s: %v is a store error, want a validation error", tt.name, err)
		}
	}
	ws, err := a.ListWindows(ctx(t), state.WindowFilter{})
	if err != nil || len(ws) != 1 || ws[0].ID != w.ID {
		t.Errorf("ListWindows = %+v, %v; want only the valid window", ws, err)
	}
	if n := len(audits(t, a, state.AuditFilter{})); n != 1 {
		t.Errorf("%d audit entries, want 1: a refused window left one", n)
	}
}
