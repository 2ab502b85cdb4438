package supervise_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/nodetest"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/supervise"
	"github.com/paasmeter/paasmeter/usage"
)

// platform parses a spec whose apps are given as YAML list items, all in
// project "claims" of institution inst, with a roomy quota.
func platform(t *testing.T, inst, apps string) *spec.Spec {
	t.Helper()
	s, err := spec.Parse([]byte(platformYAML(inst, apps)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func platformYAML(inst, apps string) string {
	return fmt.Sprintf(`institutions:
  - id: %s
    quota: {cpu: 4, memory: 2Gi, containers: 6}
    projects:
      - id: claims
        apps:
%s`, inst, apps)
}

// app renders one app of the test image; extra is more YAML keys, one per line.
func app(id, env, cmd string, extra ...string) string {
	s := fmt.Sprintf("          - id: %s\n            env: %s\n            image: paasmeter-test/busybox:1\n            command: [sh, -c, %q]\n"+
		"            resources: {cpu: 100m, memory: 32Mi, pids: 32}\n", id, env, cmd)
	for _, e := range extra {
		s += "            " + e + "\n"
	}
	return s
}

// web serves a /healthz of "ok" on port 8080.
const web = "mkdir -p /tmp/www && echo ok > /tmp/www/healthz && exec httpd -f -p 8080 -h /tmp/www"

// containers returns the node's containers of app, inspected, oldest run first.
func containers(t *testing.T, n *nodetest.Node, app string) []container.InspectResponse {
	t.Helper()
	var out []container.InspectResponse
	for _, c := range n.Managed(context.Background()) {
		if c.Labels[engine.LabelApp] != app {
			continue
		}
		in, err := n.Cli.ContainerInspect(context.Background(), c.ID)
		if err != nil {
			continue // removed meanwhile
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Config.Labels[engine.LabelRun] < out[j].Config.Labels[engine.LabelRun]
	})
	return out
}

// exited counts the containers that ran and ended.
func exited(cs []container.InspectResponse) int {
	n := 0
	for _, c := range cs {
		if end, err := time.Parse(time.RFC3339Nano, c.State.FinishedAt); err == nil && c.State.Status == container.StateExited && end.Year() > 1 {
			n++
		}
	}
	return n
}

func running(cs []container.InspectResponse) int {
	n := 0
	for _, c := range cs {
		if c.State.Running {
			n++
		}
	}
	return n
}

func stamp(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// usageByRun returns the stored usage records of app, by run.
func usageByRun(t *testing.T, n *nodetest.Node, tenant, app string) map[string][]usage.Record {
	t.Helper()
	out := map[string][]usage.Record{}
	err := n.Store.ScanUsage(context.Background(), metering.UsageFilter{Tenant: tenant, From: time.Now().Add(-time.Hour),
		To: time.Now().Add(time.Hour), Apps: []string{app}}, func(r usage.Record) error {
		out[r.RunID] = append(out[r.RunID], r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func storedEvents(t *testing.T, n *nodetest.Node, tenant, app string, typ events.Type) []events.Event {
	t.Helper()
	var out []events.Event
	err := n.Store.ScanEvents(context.Background(), metering.EventFilter{Tenant: tenant, From: time.Now().Add(-time.Hour),
		To: time.Now().Add(time.Hour), Apps: []string{app}}, func(e events.Event) error {
		if e.Type == typ {
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// goneAfterDie is the agent's engine as it looks when a container is removed
// the instant it dies (docker run --rm, or a clean-up racing the agent): from
// its die event on, inspecting or listing it finds nothing.
type goneAfterDie struct {
	engine.Engine
	mu   sync.Mutex
	gone map[string]bool
}

func (g *goneAfterDie) Events(ctx context.Context, since time.Time) (<-chan engine.Event, <-chan error) {
	evs, errs := g.Engine.Events(ctx, since)
	out := make(chan engine.Event)
	go func() {
		defer close(out)
		for ev := range evs {
			if ev.Type == engine.EventDie {
				g.mu.Lock()
				g.gone[ev.ContainerID] = true
				g.mu.Unlock()
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errs
}

func (g *goneAfterDie) Inspect(ctx context.Context, id string) (engine.Container, error) {
	g.mu.Lock()
	gone := g.gone[id]
	g.mu.Unlock()
	if gone {
		return engine.Container{}, fmt.Errorf("inspect %s: %w", id, cerrdefs.ErrNotFound)
	}
	return g.Engine.Inspect(ctx, id)
}

func (g *goneAfterDie) List(ctx context.Context) ([]engine.Container, error) {
	list, err := g.Engine.List(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.DeleteFunc(list, func(c engine.Container) bool { return g.gone[c.ID] }), err
}

// noRecordedEnd is the supervisor's engine when it recorded no finish time for
// an exited container.
type noRecordedEnd struct{ supervise.Docker }

func (d noRecordedEnd) ContainerInspect(ctx context.Context, id string) (container.InspectResponse, error) {
	in, err := d.Docker.ContainerInspect(ctx, id)
	if err == nil && in.State != nil && !in.State.Running {
		in.State.FinishedAt = "0001-01-01T00:00:00Z"
	}
	return in, err
}

// The crashing replica's runs end where nothing can be inspected: the agent
// finds each container gone after its die event, and the supervisor gets no
// finish time from the engine. Each run is still billed and has its died
// event with its real exit code, and each backoff still runs from a time after
// the crash, never from year 1.
func TestACrashingReplicaIsRestartedWithBackoffThenGivenUpAndEachRunIsBilledApart(t *testing.T) {
	t.Parallel()
	pol := spec.Restart{Policy: "on-failure", Backoff: time.Second, MaxBackoff: 8 * time.Second, MaxAttempts: 2}
	n := nodetest.Start(t, nodetest.Options{Sample: time.Second, Window: 10 * time.Second, RemoveGrace: time.Hour,
		WrapEngine: func(e engine.Engine) engine.Engine { return &goneAfterDie{Engine: e, gone: map[string]bool{}} },
		WrapDocker: func(d supervise.Docker) supervise.Docker { return noRecordedEnd{d} },
		Platform:   platform(t, "caami", app("crashy", "test", "sleep 1; exit 3", "restart: {policy: on-failure, backoff: 1s, max_backoff: 8s, max_attempts: 2}"))})
	var cs []container.InspectResponse
	// All three runs must have ended: a run just created, or started but not
	// yet exited, has no exit code or finish time to check.
	dockertest.Eventually(t, 60*time.Second, "the replica did not run three times", func() bool {
		cs = containers(t, n, "crashy")
		return len(cs) == 3 && exited(cs) == 3
	})
	for i, c := range cs {
		if got := c.Config.Labels[supervise.LabelAttempt]; got != fmt.Sprint(i) {
			t.Errorf("run %d is labelled attempt %s", i, got)
		}
		if c.State.ExitCode != 3 {
			t.Errorf("run %d exited %d, want 3", i, c.State.ExitCode)
		}
		if i > 0 {
			gap := stamp(t, c.State.StartedAt).Sub(stamp(t, cs[i-1].State.FinishedAt))
			if want := supervise.Backoff(pol, i-1); gap < want-50*time.Millisecond {
				t.Errorf("restart %d came %s after the crash, before its backoff of %s", i, gap, want)
			}
		}
	}
	// The next backoff would be 4s: the supervisor has given up by then.
	time.Sleep(supervise.Backoff(pol, 2) + 2*time.Second)
	if cs := containers(t, n, "crashy"); len(cs) != 3 || running(cs) != 0 {
		t.Errorf("after giving up there are %d runs, %d running; want 3 and none", len(cs), running(cs))
	}
	if v := promtest.Value(t, n.Reg, "paasmeter_runtime_replicas", map[string]string{"app": "crashy", "state": "given_up"}); v != 1 {
		t.Errorf("the given_up replica gauge is %v, want 1", v)
	}
	if v := promtest.Value(t, n.Reg, "paasmeter_runtime_unknown_run_ends_total", nil); v != 3 {
		t.Errorf("the runtime counted %v runs without a recorded end, want the 3", v)
	}
	var runs map[string][]usage.Record
	var died []events.Event
	dockertest.Eventually(t, 30*time.Second, "the three runs' usage and died events did not all reach the store", func() bool {
		runs = usageByRun(t, n, "caami", "crashy")
		died = storedEvents(t, n, "caami", "crashy", events.Died)
		return len(runs) == 3 && len(died) == 3
	})
	for _, e := range died {
		if e.ExitCode == nil || *e.ExitCode != 3 {
			t.Errorf("run %s died with exit code %v, want 3 from its die event", e.RunID, e.ExitCode)
		}
	}
	for _, c := range cs {
		run := c.Config.Labels[engine.LabelRun]
		var secs int64
		for _, r := range runs[run] {
			if r.ContainerID != c.ID {
				t.Errorf("run %s has a record of container %.12s, want %.12s", run, r.ContainerID, c.ID)
			}
			if r.Meter == usage.MeterContainerSeconds {
				secs += r.Quantity
			}
		}
		if secs < 1 || secs > 2 {
			t.Errorf("run %s is billed %d container-seconds, want the 1-2 s it ran", run, secs)
		}
	}
}

func TestARestartedAgentAdoptsTheRunningReplicasAndMetersThemWithoutGapOrOverlap(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nodetest.Options{Sample: time.Second, Window: 5 * time.Second,
		Platform: platform(t, "caami", app("steady", "prod", "exec sleep 3600", "replicas: 2"))})
	var before []container.InspectResponse
	dockertest.Eventually(t, 30*time.Second, "two replicas did not start", func() bool {
		before = containers(t, n, "steady")
		return running(before) == 2
	})
	time.Sleep(6 * time.Second) // at least one window closed before the restart
	n.Stop()
	time.Sleep(3 * time.Second) // the node runs without its agent for a while
	n.Restart()
	restarted := time.Now()
	time.Sleep(12 * time.Second) // windows close after the restart
	after := containers(t, n, "steady")
	ids := func(cs []container.InspectResponse) []string {
		var out []string
		for _, c := range cs {
			out = append(out, c.ID)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(ids(before), ids(after)) || running(after) != 2 {
		t.Fatalf("the restarted agent did not adopt the replicas: before %v, after %v (%d running)", ids(before), ids(after), running(after))
	}
	runs := usageByRun(t, n, "caami", "steady")
	for _, c := range before {
		var windows []usage.Record
		for _, r := range runs[c.Config.Labels[engine.LabelRun]] {
			if r.Meter == usage.MeterContainerSeconds {
				windows = append(windows, r)
			}
		}
		sort.Slice(windows, func(i, j int) bool { return windows[i].WindowStart.Before(windows[j].WindowStart) })
		if len(windows) < 3 {
			t.Fatalf("%.12s has %d windows, want several", c.ID, len(windows))
		}
		if last := windows[len(windows)-1].WindowEnd; !last.After(restarted) {
			t.Errorf("%.12s: no window closed after the restart (last ends %s)", c.ID, last)
		}
		started := stamp(t, c.State.StartedAt)
		if !windows[0].WindowStart.Equal(started.UTC().Truncate(time.Microsecond)) && !windows[0].WindowStart.Equal(started.UTC()) {
			t.Errorf("%.12s: the first window starts at %s, not at the run's start %s", c.ID, windows[0].WindowStart, started)
		}
		for i := 1; i < len(windows); i++ {
			if prev, w := windows[i-1], windows[i]; !w.WindowStart.Equal(prev.WindowEnd) {
				t.Errorf("%.12s: window %s–%s follows one ending %s: a gap or an overlap", c.ID, w.WindowStart, w.WindowEnd, prev.WindowEnd)
			}
		}
	}
}

func TestProbeEventsShowHealthyAndFailingAppsAndAFailingOneIsRestarted(t *testing.T) {
	t.Parallel()
	n := nodetest.Start(t, nodetest.Options{Sample: time.Second, Window: 10 * time.Second, RemoveGrace: time.Hour,
		Platform: platform(t, "caami",
			app("web", "prod", web, "health: {http: {path: /healthz, port: 8080}, interval: 1s, timeout: 900ms}")+
				app("db", "prod", web, "health: {tcp: {port: 8080}, interval: 1s, timeout: 900ms}")+
				app("worker", "prod", "exec sleep 3600", "health: {exec: [test, -x, /bin/sh], interval: 1s, timeout: 900ms}")+
				app("broken", "prod", web, "health: {http: {path: /missing, port: 8080}, interval: 1s, timeout: 500ms, retries: 2}",
					"restart: {policy: always, backoff: 1s}"))})
	probes := func(app string) (ok, failed []events.Event) {
		for _, e := range storedEvents(t, n, "caami", app, events.Probe) {
			if e.Probe.OK {
				ok = append(ok, e)
			} else {
				failed = append(failed, e)
			}
		}
		return ok, failed
	}
	for _, a := range []struct{ app, kind string }{{"web", "http"}, {"db", "tcp"}, {"worker", "exec"}} {
		// (A loaded test machine may make one probe miss its timeout: a
		// healthy app passes most, not necessarily all.)
		dockertest.Eventually(t, 30*time.Second, a.app+" does not pass its "+a.kind+" probes", func() bool {
			ok, failed := probes(a.app)
			return len(ok) >= 2 && len(ok) > len(failed) && ok[0].Probe.Kind == a.kind && ok[0].Replica == a.app+"-0" && ok[0].Node == n.Name
		})
	}
	dockertest.Eventually(t, 30*time.Second, "the failing app was not restarted after its failed probes", func() bool {
		_, failed := probes("broken")
		return len(failed) >= 2 && len(containers(t, n, "broken")) >= 2
	})
	_, failed := probes("broken")
	if !strings.Contains(failed[0].Probe.Detail, "404") {
		t.Errorf("a failed probe says %q, want the 404 it got", failed[0].Probe.Detail)
	}
	first := containers(t, n, "broken")[0]
	if first.State.Running {
		t.Errorf("the unhealthy replica %.12s still runs", first.ID)
	}
	if v := promtest.Value(t, n.Reg, "paasmeter_runtime_restarts_total", map[string]string{"app": "broken"}); v < 1 {
		t.Errorf("restarts of the failing app counted %v, want at least 1", v)
	}
}

// TestInstitutionsCannotReachEachOthersContainers checks each institution's
// network from inside a container: its own institution's service answers
// (the positive control), the other institution's does not.
func TestInstitutionsCannotReachEachOthersContainers(t *testing.T) {
	t.Parallel()
	a, b := "caami", "ona"
	s, err := spec.Parse([]byte(platformYAML(a, app("web", "prod", web)+app("client", "prod", "exec sleep 3600"))+
		strings.TrimPrefix(platformYAML(b, app("web", "prod", web)), "institutions:\n")), "iso.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, nodetest.Options{Sample: 10 * time.Second, Window: time.Minute, Tenants: []string{a, b}, Platform: s})
	ip := map[string]string{}
	var client string
	dockertest.Eventually(t, 30*time.Second, "the three containers did not start", func() bool {
		for _, c := range n.Managed(context.Background()) {
			if c.State != container.StateRunning {
				continue
			}
			tenant, appID := c.Labels[engine.LabelTenant], c.Labels[engine.LabelApp]
			if appID == "client" {
				client = c.ID
			} else if net := c.NetworkSettings.Networks[supervise.Network(tenant)]; net != nil && net.IPAddress != "" {
				ip[tenant] = net.IPAddress
			}
		}
		return client != "" && ip[a] != "" && ip[b] != ""
	})
	fetch := func(target string) int {
		// (busybox-static's wget crashes on lookups; nc speaks the HTTP here.)
		return dockertest.Exec(t, n.Cli, client, "sh", "-c", "printf 'GET /healthz HTTP/1.0\r\n\r\n' | nc -w 2 "+target+" 8080 | grep -q '200 OK'")
	}
	dockertest.Eventually(t, 10*time.Second, "a container cannot reach its own institution's web app (positive control)", func() bool {
		return fetch(ip[a]) == 0
	})
	if code := fetch(ip[b]); code == 0 {
		t.Errorf("a container of %s reached %s's web app at %s", a, b, ip[b])
	}
}

func TestASpecChangeRollsReplicasOneAtATimeAndASpecOverQuotaIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "platform.yaml")
	write := func(yaml string) {
		// A new modification time even within the file system's granularity.
		if err := os.WriteFile(path+".new", []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".new", path); err != nil {
			t.Fatal(err)
		}
	}
	version := func(v string, replicas int) string {
		return platformYAML("caami", app("rolling", "prod", web, fmt.Sprintf("replicas: %d", replicas),
			"env_vars: {VERSION: \""+v+"\"}", "health: {http: {path: /healthz, port: 8080}, interval: 1s, timeout: 500ms}"))
	}
	write(version("1", 3))
	s, err := spec.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	n := nodetest.Start(t, nodetest.Options{Sample: 10 * time.Second, Window: time.Minute, RemoveGrace: time.Hour, Platform: s, PlatformPath: path})
	var v1 []container.InspectResponse
	dockertest.Eventually(t, 30*time.Second, "three replicas did not start", func() bool {
		v1 = containers(t, n, "rolling")
		return running(v1) == 3
	})

	write(version("1", 9)) // 9 replicas: over the quota of 6 containers
	dockertest.Eventually(t, 10*time.Second, "the spec over quota was not refused", func() bool {
		return promtest.Value(t, n.Reg, "paasmeter_runtime_spec_reloads_total", map[string]string{"outcome": "refused"}) == 1
	})
	time.Sleep(time.Second)
	if cs := containers(t, n, "rolling"); len(cs) != 3 || running(cs) != 3 {
		t.Fatalf("after a refused spec there are %d containers, %d running; want the same 3", len(cs), running(cs))
	}

	write(version("2", 3))
	var all []container.InspectResponse
	dockertest.Eventually(t, 60*time.Second, "the replicas were not all replaced", func() bool {
		all = containers(t, n, "rolling")
		fresh := 0
		for _, c := range all {
			if c.State.Running && slices.Contains(c.Config.Env, "VERSION=2") {
				fresh++
			}
		}
		return fresh == 3 && running(all) == 3
	})
	var stops, starts []time.Time
	for _, c := range all {
		if slices.Contains(c.Config.Env, "VERSION=2") {
			starts = append(starts, stamp(t, c.State.StartedAt))
		} else {
			stops = append(stops, stamp(t, c.State.FinishedAt))
		}
	}
	slices.SortFunc(stops, time.Time.Compare)
	slices.SortFunc(starts, time.Time.Compare)
	if len(stops) != 3 {
		t.Fatalf("%d old replicas stopped, want 3", len(stops))
	}
	dockertest.Eventually(t, 20*time.Second, "the old replicas' died events, initiated by the owner's spec change, were not stored", func() bool {
		owner := 0
		for _, e := range storedEvents(t, n, "caami", "rolling", events.Died) {
			if e.Initiator == events.ByOwner {
				owner++
			}
		}
		return owner == 3
	})
	// The next old replica is stopped only once the new one before it passed a
	// probe, which happens at the earliest one probe interval after its start.
	for i := 0; i+1 < len(stops); i++ {
		if gap := stops[i+1].Sub(starts[i]); gap < time.Second-50*time.Millisecond {
			t.Errorf("old replica %d stopped %s after new replica %d started: not one at a time", i+1, gap, i)
		}
	}
}
