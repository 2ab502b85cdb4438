package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/metering/clickhouse/chtest"
	"github.com/paasmeter/paasmeter/usage"
)

// run runs a command line on the wall clock: for commands whose outcome does
// not depend on the date. Those that do run with runAt.
func run(t *testing.T, ctx context.Context, stdin string, args ...string) (string, error) {
	t.Helper()
	return runAt(t, ctx, clock.System{}, stdin, args...)
}

// runAt runs a command line with clk as the commands' clock (the test hook
// for "now": the binary has no flag for it).
func runAt(t *testing.T, ctx context.Context, clk clock.Clock, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&out, &errOut, func(string) string { return "" }, clk)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String() + errOut.String(), err
}

// stopCommand cancels a command running in the background, whose result
// done carries, and fails the test unless it returns nil within grace.
func stopCommand(t *testing.T, cancel context.CancelFunc, done <-chan error, name string, grace time.Duration) {
	t.Helper()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s after cancellation: %v", name, err)
		}
	case <-time.After(grace):
		t.Fatalf("%s did not stop after cancellation", name)
	}
}

func TestEveryCommandHasHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%q has no short description", c.CommandPath())
		}
		out, err := run(t, context.Background(), "", append(strings.Fields(c.CommandPath())[1:], "--help")...)
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help: %v\n%s", c.CommandPath(), err, out)
		}
		for _, sub := range c.Commands() {
			if sub.Name() != "help" && sub.Name() != "completion" {
				walk(sub)
			}
		}
	}
	walk(newRoot(io.Discard, io.Discard, os.Getenv, clock.System{}))
}

func TestConfigCheck(t *testing.T) {
	out, err := run(t, context.Background(), "", "config", "check", "-c", "../../deploy/examples/paasmeter.yaml")
	if err != nil || !strings.Contains(out, "ok (2 tenants, 4 tokens") {
		t.Errorf("config check of the example: %v\n%s", err, out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("collector:\n  max_records: 0\n"), 0o600)
	if _, err := run(t, context.Background(), "", "config", "check", "-c", bad); err == nil || !strings.Contains(err.Error(), "max_records") {
		t.Errorf("config check of a bad file: %v", err)
	}
}

func TestTokenHashMatchesTheExampleConfig(t *testing.T) {
	out, err := run(t, context.Background(), "pm_example_caami\n", "token", "hash")
	example, _ := os.ReadFile("../../deploy/examples/paasmeter.yaml")
	if err != nil || !bytes.Contains(example, []byte(strings.TrimSpace(out))) {
		t.Errorf("token hash = %q, %v; not the hash in the example config", out, err)
	}
}

func TestMain(m *testing.M) { os.Exit(chtest.Main(m)) }

// TestCollectorCommandServesTheQuickstart runs `paasmeter collector` as the
// README's quickstart does, on the embedded store and on ClickHouse: the
// example batch goes in, is read back, and the command stops cleanly on
// cancellation.
func TestCollectorCommandServesTheQuickstart(t *testing.T) {
	t.Run("embedded store", func(t *testing.T) { testQuickstart(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testQuickstart(t, chtest.Single(t).DSN(t)) })
}

// exampleConfig writes deploy/examples/paasmeter.yaml into dir with its data
// directory there and its file paths resolved from this package's
// directory, applying the further old, new replacement pairs; it returns the
// file's path.
func exampleConfig(t *testing.T, dir string, oldnew ...string) string {
	t.Helper()
	example, err := os.ReadFile("../../deploy/examples/paasmeter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The caller's pairs come first: for the same old text, the first pair wins.
	pairs := append(oldnew, "data_dir: data", "data_dir: "+filepath.Join(dir, "data"),
		"rate_card: deploy/", "rate_card: ../../deploy/", "sla_file: deploy/", "sla_file: ../../deploy/")
	path := filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(path, []byte(strings.NewReplacer(pairs...).Replace(string(example))), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testQuickstart(t *testing.T, meteringDSN string) {
	dir := t.TempDir()
	api, admin := testenv.FreeAddr(t), testenv.FreeAddr(t)
	store := "data_dir: " + filepath.Join(dir, "data")
	if meteringDSN != "" {
		store += "\n  metering_dsn: " + meteringDSN
	}
	path := exampleConfig(t, dir, "127.0.0.1:8080", api, "127.0.0.1:9090", admin, "data_dir: data", store)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := run(t, ctx, "", "collector", "-c", path)
		done <- err
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	batch, err := run(t, context.Background(), "", "usage", "example", "--tenant", "caami", "--node", "node-1")
	if err != nil {
		t.Fatal(err)
	}
	post := func() map[string]int {
		req, _ := http.NewRequest("POST", "http://"+api+"/api/v1/usage", strings.NewReader(batch))
		req.Header.Set("Authorization", "Bearer pm_example_agent_node1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]int
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST usage: %d, %v", resp.StatusCode, err)
		}
		return out
	}
	n := len(usage.Meters) - 1 // every container meter
	if got := post(); got["new"] != n || got["duplicates"] != 0 {
		t.Errorf("first POST = %v, want %d new", got, n)
	}
	if got := post(); got["new"] != 0 || got["duplicates"] != n {
		t.Errorf("second POST = %v, want %d duplicates", got, n)
	}

	req, _ := http.NewRequest("GET", "http://"+api+"/api/v1/tenants/caami/usage?group_by=app", nil)
	req.Header.Set("Authorization", "Bearer pm_example_caami")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"meter":"container_seconds","quantity":"60"`) {
		t.Errorf("GET usage: %d %s", resp.StatusCode, body)
	}

	resp, err = http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`paasmeter_collector_records_total{kind="usage",outcome="new",tenant="caami"} ` + fmt.Sprint(n), "go_goroutines", "paasmeter_build_info"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	stopCommand(t, cancel, done, "collector", 40*time.Second)
}
