package maintenance_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/sla"
	"github.com/paasmeter/paasmeter/sla/maintenance"
)

// alertmanager starts a real Alertmanager (Debian's prometheus-alertmanager)
// with one null receiver and no clustering, and returns its URL; it is
// killed when the test ends. Without it the test fails under CI=true, where
// `make test` must have installed it, and is skipped elsewhere.
func alertmanager(t *testing.T) string {
	t.Helper()
	var bin string
	for _, name := range []string{"prometheus-alertmanager", "alertmanager", "/usr/bin/prometheus-alertmanager"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		msg := "alertmanager not found: run `make test` as root (it installs Debian's prometheus-alertmanager package)"
		testenv.Missing(t, msg)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfg, []byte("route:\n  receiver: \"null\"\nreceivers:\n  - name: \"null\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A free port: taken, then given back for Alertmanager to take.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var logs bytes.Buffer
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--cluster.listen-address=", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	// Closed, not sent on, when it exits: both the wait for readiness and
	// the cleanup may need to see it.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	base := "http://" + addr
	// A short timeout: should another process have taken the port, it may
	// never answer.
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := hc.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		select {
		case <-exited:
			t.Fatalf("alertmanager exited before it was ready: %v\n%s", waitErr, logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited // its output is complete
			t.Fatalf("alertmanager at %s not ready after 10s\n%s", base, logs.String())
		}
	}
}

// counts is a SyncResult's counts, to compare in one go.
func counts(r maintenance.SyncResult) string {
	return fmt.Sprintf("created %d, updated %d, expired %d, unchanged %d", r.Count(maintenance.SyncCreate), r.Count(maintenance.SyncUpdate),
		r.Count(maintenance.SyncExpire), r.Count(maintenance.SyncUnchanged))
}

// live returns Alertmanager's silences that are not expired, by the
// occurrence their comment names ("" for the others).
func live(t *testing.T, am *maintenance.AlertmanagerClient) map[string][]maintenance.Silence {
	t.Helper()
	ss, err := am.ListSilences(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]maintenance.Silence{}
	for _, s := range ss {
		if s.State == maintenance.SilenceExpired {
			continue
		}
		occ, _ := maintenance.OccurrenceOf(s.Comment)
		out[occ] = append(out[occ], s)
	}
	return out
}

func matchers(s maintenance.Silence) string {
	var ms []string
	for _, m := range s.Matchers {
		ms = append(ms, m.String())
	}
	slices.Sort(ms)
	return strings.Join(ms, ",")
}

// only returns the one live silence of occ.
func only(t *testing.T, silences map[string][]maintenance.Silence, occ string) maintenance.Silence {
	t.Helper()
	if len(silences[occ]) != 1 {
		t.Fatalf("window %s has %d live silences, want 1: %+v", occ, len(silences[occ]), silences[occ])
	}
	return silences[occ][0]
}

func TestSilencesFollowTheMaintenanceWindowsInARealAlertmanager(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	am := &maintenance.AlertmanagerClient{BaseURL: alertmanager(t) + "/"} // a trailing slash is allowed
	// Alertmanager runs on the wall clock: the windows are placed around it.
	now := time.Now()
	base := now.Truncate(time.Minute)

	// An operator's own silence, which the sync must never touch.
	foreign, err := am.PostSilence(ctx, maintenance.Silence{Matchers: []maintenance.Matcher{{Name: "node", Value: "node1", IsEqual: true}},
		StartsAt: now, EndsAt: now.Add(time.Hour), CreatedBy: "operator", Comment: "maintenance MW-42: node1 kernel update"})
	if err != nil {
		t.Fatal(err)
	}

	app := sla.Window{ID: "7", Scope: sla.Scope{Tenant: "ulb", Project: "web", App: "shop"}, Start: base.Add(time.Hour),
		End: base.Add(3 * time.Hour), Reason: "database upgrade"}
	institution := sla.Window{ID: "8#2", Scope: sla.Scope{Tenant: "kul"}, Start: base.Add(2 * time.Hour), End: base.Add(4 * time.Hour),
		Reason: "weekly network work"}
	platform := sla.Window{ID: "MW-1", Start: base.Add(-10 * time.Minute), End: base.Add(50 * time.Minute), Reason: "node reboots"}
	ended := sla.Window{ID: "9", Scope: sla.Scope{Tenant: "ulb"}, Start: base.Add(-2 * time.Hour), End: base.Add(-time.Hour), Reason: "over"}

	r, err := maintenance.SyncSilences(ctx, am, []sla.Window{app, institution, platform, ended}, now, "paasmeter-test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := counts(r), "created 3, updated 0, expired 0, unchanged 0"; got != want {
		t.Fatalf("first sync: %s, want %s: %+v", got, want, r.Changes)
	}
	silences := live(t, am)
	for _, c := range []struct {
		w        sla.Window
		matchers string
		state    string
	}{
		{app, `app="shop",project="web",tenant="ulb"`, maintenance.SilencePending},
		{institution, `tenant="kul"`, maintenance.SilencePending},
		{platform, `severity=~"page|ticket"`, maintenance.SilenceActive},
	} {
		s := only(t, silences, c.w.ID)
		if got := matchers(s); got != c.matchers {
			t.Errorf("window %s: matchers %s, want %s", c.w.ID, got, c.matchers)
		}
		if s.State != c.state {
			t.Errorf("window %s: silence %s, want %s", c.w.ID, s.State, c.state)
		}
		if want := "paasmeter maintenance " + c.w.ID + ": " + c.w.Reason; s.Comment != want || s.CreatedBy != "paasmeter-test" {
			t.Errorf("window %s: comment %q by %q, want %q by paasmeter-test", c.w.ID, s.Comment, s.CreatedBy, want)
		}
		if !s.EndsAt.Equal(c.w.End) {
			t.Errorf("window %s: silence ends %s, want %s", c.w.ID, s.EndsAt, c.w.End)
		}
		// A window in progress is silenced from its creation on:
		// Alertmanager starts no silence in the past.
		if c.state == maintenance.SilencePending && !s.StartsAt.Equal(c.w.Start) ||
			c.state == maintenance.SilenceActive && (s.StartsAt.Before(c.w.Start) || s.StartsAt.After(time.Now())) {
			t.Errorf("window %s (%s to %s): silence starts %s", c.w.ID, c.w.Start, c.w.End, s.StartsAt)
		}
	}
	if len(silences[ended.ID]) != 0 {
		t.Errorf("the window that ended got a silence: %+v", silences[ended.ID])
	}
	if s := only(t, silences, ""); s.ID != foreign {
		t.Errorf("the operator's silence is %s, want %s", s.ID, foreign)
	}
	ids := map[string]string{}
	for occ, ss := range silences {
		ids[occ] = ss[0].ID
	}

	// Again: nothing to do.
	r, err = maintenance.SyncSilences(ctx, am, []sla.Window{app, institution, platform, ended}, time.Now(), "paasmeter-test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := counts(r), "created 0, updated 0, expired 0, unchanged 3"; got != want {
		t.Fatalf("second sync: %s, want %s: %+v", got, want, r.Changes)
	}
	for occ, ss := range live(t, am) {
		if len(ss) != 1 || ss[0].ID != ids[occ] {
			t.Errorf("after the second sync window %q has silences %+v, want only %s", occ, ss, ids[occ])
		}
	}

	// The app's window moves, the one in progress ends early, the
	// institution's is cancelled.
	app.Start, app.End = base.Add(2*time.Hour), base.Add(5*time.Hour)
	platform.End = base.Add(40 * time.Minute)
	windows := []sla.Window{app, platform}
	plan, err := maintenance.PlanSilences(ctx, am, windows, time.Now(), "paasmeter-test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := counts(plan), "created 0, updated 2, expired 1, unchanged 0"; got != want {
		t.Fatalf("dry run: %s, want %s: %+v", got, want, plan.Changes)
	}
	if got := live(t, am); len(got[institution.ID]) != 1 || !got[app.ID][0].EndsAt.Equal(base.Add(3*time.Hour)) {
		t.Fatalf("the dry run changed silences: %+v", got)
	}
	r, err = maintenance.ApplySilences(ctx, am, plan)
	if err != nil {
		t.Fatal(err)
	}
	silences = live(t, am)
	if s := only(t, silences, app.ID); !s.StartsAt.Equal(app.Start) || !s.EndsAt.Equal(app.End) || matchers(s) != `app="shop",project="web",tenant="ulb"` {
		t.Errorf("moved window: silence %s to %s (%s), want %s to %s", s.StartsAt, s.EndsAt, matchers(s), app.Start, app.End)
	}
	if s := only(t, silences, platform.ID); !s.EndsAt.Equal(platform.End) || s.State != maintenance.SilenceActive {
		t.Errorf("shortened window: silence %s ends %s, want active to %s", s.State, s.EndsAt, platform.End)
	}
	if len(silences[institution.ID]) != 0 {
		t.Errorf("the cancelled window's silence was not expired: %+v", silences[institution.ID])
	}
	for _, c := range r.Changes {
		if c.Action == maintenance.SyncUpdate && c.Silence.ID != silences[c.Occurrence][0].ID {
			t.Errorf("update of %s reports silence %s, Alertmanager has %s", c.Occurrence, c.Silence.ID, silences[c.Occurrence][0].ID)
		}
		t.Logf("%s %s: silence %s (was %s)", c.Action, c.Occurrence, c.Silence.ID, c.PreviousID)
	}
	if s := only(t, silences, ""); s.ID != foreign {
		t.Errorf("the operator's silence is %s, want %s", s.ID, foreign)
	}

	// And the updates are stable: nothing left to do.
	r, err = maintenance.SyncSilences(ctx, am, windows, time.Now(), "paasmeter-test")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := counts(r), "created 0, updated 0, expired 0, unchanged 2"; got != want {
		t.Fatalf("sync after the changes: %s, want %s: %+v", got, want, r.Changes)
	}
}

func TestAlertmanagerErrorsNameTheURLAndStatus(t *testing.T) {
	t.Parallel()
	base := alertmanager(t)
	am := &maintenance.AlertmanagerClient{BaseURL: base}
	ctx := context.Background()
	past := time.Now().Add(-time.Hour)
	_, err := am.PostSilence(ctx, maintenance.Silence{Matchers: []maintenance.Matcher{{Name: "tenant", Value: "ulb", IsEqual: true}},
		StartsAt: past.Add(-time.Hour), EndsAt: past, CreatedBy: "test", Comment: "in the past"})
	if err == nil || !strings.Contains(err.Error(), "POST "+base+"/api/v2/silences") || !strings.Contains(err.Error(), "400") {
		t.Errorf("a silence ending in the past: %v, want a 400 naming POST %s/api/v2/silences", err, base)
	}
	err = am.ExpireSilence(ctx, "no-such-silence")
	if err == nil || !strings.Contains(err.Error(), base+"/api/v2/silence/no-such-silence") {
		t.Errorf("expiring a silence that does not exist: %v, want an error naming its URL", err)
	}
	// Nothing listens there any more once a listener is closed.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + l.Addr().String()
	l.Close()
	_, err = (&maintenance.AlertmanagerClient{BaseURL: gone}).ListSilences(ctx)
	if err == nil || !strings.Contains(err.Error(), gone+"/api/v2/silences") {
		t.Errorf("an Alertmanager that is down: %v, want an error naming its URL", err)
	}
}

func TestSilenceMatchersOfEachScope(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		scope sla.Scope
		want  string
	}{
		{sla.Scope{}, `severity=~"page|ticket"`},
		{sla.Scope{Tenant: "ulb"}, `tenant="ulb"`},
		{sla.Scope{Tenant: "ulb", Project: "web", App: "shop"}, `tenant="ulb",project="web",app="shop"`},
	} {
		var got []string
		for _, m := range maintenance.SilenceMatchers(c.scope) {
			got = append(got, m.String())
		}
		if strings.Join(got, ",") != c.want {
			t.Errorf("%+v: %s, want %s", c.scope, strings.Join(got, ","), c.want)
		}
	}
	for comment, want := range map[string]string{
		"paasmeter maintenance 42#3: kernel":  "42#3",
		"paasmeter maintenance MW-1: x: y":    "MW-1",
		"paasmeter maintenance MW-1 no colon": "",
		"maintenance MW-42: node1":            "",
	} {
		if got, _ := maintenance.OccurrenceOf(comment); got != want {
			t.Errorf("OccurrenceOf(%q) = %q, want %q", comment, got, want)
		}
	}
}
