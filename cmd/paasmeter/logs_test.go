package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/accesslog"
	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/institution"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering/embedded"
)

// logsCollector runs a collector with an agent token and caami's token, and
// returns its URL and a function that ships lines as node-1's agent.
func logsCollector(t *testing.T) (string, func(lines ...logs.Line)) {
	t.Helper()
	st, err := embedded.Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	authn, err := auth.NewAuthenticator([]auth.TokenConfig{
		{Name: "agent", Role: auth.RoleAgent, Node: "node-1", Tenants: []string{"caami"}, SHA256: auth.Hash("agent-token")},
		{Name: "caami", Role: auth.RoleInstitution, Tenant: "caami", SHA256: auth.Hash("caami-token")},
	})
	if err != nil {
		t.Fatal(err)
	}
	auditLog, err := accesslog.OpenFile(filepath.Join(t.TempDir(), "access.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { auditLog.Close() })
	srv, err := collector.New(collector.Options{Config: collector.DefaultConfig(), Store: st, Auth: authn, AccessLog: auditLog,
		Institutions: institution.Of("caami", "ona"), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	api := httptest.NewServer(srv.Handler())
	t.Cleanup(api.Close)
	ship := func(lines ...logs.Line) {
		t.Helper()
		var b bytes.Buffer
		if err := logs.EncodeBatch(&b, lines); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", api.URL+"/api/v1/logs", &b)
		req.Header.Set("Authorization", "Bearer agent-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("shipping lines: %d", resp.StatusCode)
		}
	}
	return api.URL, ship
}

func containerLine(app string, at time.Time, text string) logs.Line {
	l := logs.Line{SchemaVersion: logs.SchemaVersion, Tenant: "caami", Time: at.UTC(), Line: text,
		Labels: map[string]string{logs.LabelApp: app, logs.LabelEnv: "prod", logs.LabelNode: "node-1", logs.LabelContainer: app + "-1", logs.LabelStream: "stdout"}}
	l.SetID()
	return l
}

// runLogs runs paasmeter logs with PAASMETER_TOKEN set to token.
func runLogs(ctx context.Context, out io.Writer, token string, args ...string) error {
	root := newRoot(out, out, func(k string) string {
		if k == "PAASMETER_TOKEN" {
			return token
		}
		return ""
	}, clock.System{}) // the lines are stamped from the wall clock, and --since counts back from it
	root.SetArgs(append([]string{"logs"}, args...))
	return root.ExecuteContext(ctx)
}

func TestLogsCommandPrintsTheNewestLinesOldestFirst(t *testing.T) {
	url, ship := logsCollector(t)
	base := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	ship(containerLine("pricing", base, "one"), containerLine("records", base.Add(time.Minute), "two: error"),
		containerLine("pricing", base.Add(2*time.Minute), "three: error"), containerLine("pricing", base.Add(9*time.Minute), "four"))
	stamp := func(d time.Duration) string { return base.Add(d).UTC().Format("2006-01-02T15:04:05.000000000Z07:00") }
	labels := func(app string) string {
		return fmt.Sprintf(`{app=%q, container=%q, env="prod", node="node-1", stream="stdout"}`, app, app+"-1")
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"the newest --limit lines, oldest first", []string{"--limit", "2"},
			[]string{stamp(2*time.Minute) + " " + labels("pricing") + " three: error", stamp(9*time.Minute) + " " + labels("pricing") + " four"}},
		{"--app and --contains filter", []string{"--app", "pricing", "--contains", "error"}, []string{stamp(2*time.Minute) + " " + labels("pricing") + " three: error"}},
		{"--since bounds how far back", []string{"--since", "5m"}, []string{stamp(9*time.Minute) + " " + labels("pricing") + " four"}},
	}
	for _, c := range cases {
		var out bytes.Buffer
		if err := runLogs(context.Background(), &out, "caami-token", append([]string{"--tenant", "caami", "--collector", url}, c.args...)...); err != nil {
			t.Errorf("%s: %v\n%s", c.name, err, out.String())
			continue
		}
		if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s: printed\n%s\nwant\n%s", c.name, out.String(), strings.Join(c.want, "\n"))
		}
	}
}

// TestLogsCommandEscapesControlCharacters: a tenant's line carrying ANSI
// sequences reaches the operator's terminal as visible text.
func TestLogsCommandEscapesControlCharacters(t *testing.T) {
	url, ship := logsCollector(t)
	ship(containerLine("pricing", time.Now().Add(-time.Minute), "red \x1b[31mALERT\x1b[0m \x1b]0;retitled\x07\tdone"))
	var out bytes.Buffer
	if err := runLogs(context.Background(), &out, "caami-token", "--tenant", "caami", "--collector", url); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	if strings.ContainsAny(got, "\x1b\x07") || !strings.HasSuffix(got, ` red \x1b[31mALERT\x1b[0m \x1b]0;retitled\x07`+"\tdone\n") {
		t.Errorf("printed %q, want the escape sequences written out", got)
	}
}

func TestLogsCommandFollowsNewLinesAndPrintsEachOnce(t *testing.T) {
	url, ship := logsCollector(t)
	base := time.Now().Add(-time.Minute)
	ship(containerLine("pricing", base, "before"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out testenv.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runLogs(ctx, &out, "caami-token", "--tenant", "caami", "--collector", url, "--follow", "--interval", "20ms")
	}()
	waitFor := func(text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("%q never printed; output:\n%s", text, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("before")
	ship(containerLine("pricing", base.Add(time.Second), "after 1"), containerLine("pricing", base.Add(2*time.Second), "after 2"))
	waitFor("after 2")
	// A line that arrives late, older than the newest printed, is still followed.
	ship(containerLine("records", base.Add(1500*time.Millisecond), "late"))
	waitFor("late")
	time.Sleep(100 * time.Millisecond) // several more polls, which must print nothing again
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("logs --follow ended with %v", err)
	}
	for _, text := range []string{"before", "after 1", "after 2", "late"} {
		if n := strings.Count(out.String(), " "+text+"\n"); n != 1 {
			t.Errorf("%q printed %d times:\n%s", text, n, out.String())
		}
	}
}

func TestLogsCommandSaysWhyItCannotRead(t *testing.T) {
	url, _ := logsCollector(t)
	cases := []struct {
		name, token string
		args        []string
		want        string
	}{
		{"no token", "", []string{"--tenant", "caami"}, "set PAASMETER_TOKEN or --token-file"},
		{"a missing token file", "", []string{"--tenant", "caami", "--token-file", filepath.Join(t.TempDir(), "none")}, "token file"},
		{"another tenant", "caami-token", []string{"--tenant", "ona"}, `403 Forbidden: this token may not read tenant "ona"`},
		{"a bad token", "wrong", []string{"--tenant", "caami"}, "401 Unauthorized"},
		{"no tenant", "caami-token", nil, `required flag(s) "tenant" not set`},
		{"a limit past the maximum", "caami-token", []string{"--tenant", "caami", "--limit", "5001"}, "--limit 5001 must be from 1 to 5000"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		err := runLogs(context.Background(), &out, c.token, append(c.args, "--collector", url)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
	}
}
