package agent_test

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/promtest"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/nodetest"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/usage"
)

// rig is a collector on an embedded store and an agent on the test engine,
// both running in this process (package nodetest).
type rig struct {
	cli   *client.Client
	store metering.Store
	reg   *prometheus.Registry
	node  string
	dead  *spool.Spool
	out   *spool.Spool
}

func newRig(t *testing.T, sampleInterval, window time.Duration) *rig {
	return newRigWith(t, nodetest.Options{Sample: sampleInterval, Window: window})
}

func newRigWith(t *testing.T, o nodetest.Options) *rig {
	t.Helper()
	n := nodetest.Start(t, o)
	return &rig{cli: n.Cli, store: n.Store, reg: n.Reg, node: n.Name, dead: n.Dead, out: n.Out}
}

// runJob starts a labelled container under its own cgroup parent, waits for
// it to exit and returns its id and output.
func (r *rig) runJob(t *testing.T, name string, cmd []string, res container.Resources) (string, string) {
	t.Helper()
	ctx := context.Background()
	res.CgroupParent = "/paasmeter/" + dockertest.Name(t, name)
	// The node label keeps the agents of tests running beside this one on the
	// shared engine off the job: each would meter it and remove its cgroup
	// parent, and the run's final counters with it.
	c, err := r.cli.ContainerCreate(ctx, &container.Config{Image: dockertest.BusyboxImage, Cmd: cmd, Labels: map[string]string{
		engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: name, engine.LabelEnv: "prod", engine.LabelNode: r.node}},
		&container.HostConfig{Resources: res}, nil, nil, dockertest.Name(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := r.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitC, errC := r.cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	logs, err := r.cli.ContainerLogs(ctx, c.ID, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var stdout, stderr strings.Builder
	stdcopy.StdCopy(&stdout, &stderr, logs)
	return c.ID, stdout.String() + stderr.String()
}

// usageOf waits until the store holds the final window of app's run (the one
// ending at the container's FinishedAt) for every container meter, and returns
// the run's totals per meter.
func (r *rig) usageOf(t *testing.T, id, app string) map[usage.Meter]int64 {
	t.Helper()
	in, err := r.cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	started, _ := time.Parse(time.RFC3339Nano, in.State.StartedAt)
	finished, _ := time.Parse(time.RFC3339Nano, in.State.FinishedAt)
	if !finished.After(started) {
		// The engine stamped the start after the process had already died; the
		// agent then closes the run a millisecond after its start.
		finished = started.Add(time.Millisecond)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		sum := map[usage.Meter]int64{}
		final := 0
		err := r.store.ScanUsage(context.Background(), metering.UsageFilter{Tenant: "caami", From: time.Now().Add(-time.Hour),
			To: time.Now().Add(time.Hour), Apps: []string{app}}, func(rec usage.Record) error {
			sum[rec.Meter] += rec.Quantity
			if rec.WindowEnd.Equal(finished.UTC()) {
				final++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// A window's records may reach the spool in several appends when it
		// is nearly full: wait for all seven container meters.
		if final == len(usage.Meters)-1 {
			return sum
		}
		if time.Now().After(deadline) {
			t.Fatalf("the final window of %s (ending %s) never reached the store; have %v", app, finished, sum)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var timeRE = regexp.MustCompile(`user\s+(\d+)m\s*([\d.]+)s\s+sys\s+(\d+)m\s*([\d.]+)s`)

func TestACPUBoundJobIsBilledItsCPU(t *testing.T) {
	r := newRig(t, time.Second, 10*time.Second)
	// busybox time reports the job's own CPU time: the reference.
	id, out := r.runJob(t, "burn", []string{"time", "sh", "-c", "i=0; while [ $i -lt 3300000 ]; do i=$((i+1)); done"}, container.Resources{})
	m := timeRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no time report in %q", out)
	}
	secs := func(min, s string) float64 {
		a, _ := strconv.ParseFloat(min, 64)
		b, _ := strconv.ParseFloat(s, 64)
		return 60*a + b
	}
	want := secs(m[1], m[2]) + secs(m[3], m[4])
	got := float64(r.usageOf(t, id, "burn")[usage.MeterCPU]) / 1e9
	t.Logf("job CPU by time(1): %.3f s; billed: %.3f s", want, got)
	if want < 1 || got < want*0.98 || got > want*1.02+0.02 {
		t.Errorf("billed %.3f CPU-seconds, want %.3f ± 2%%", got, want)
	}
}

func TestAShortJobBetweenSamplesIsBilledItsSecondsCPUAndMemory(t *testing.T) {
	r := newRig(t, time.Minute, time.Minute) // no periodic sample during the job
	id, _ := r.runJob(t, "short", []string{"sleep", "5"}, container.Resources{})
	sum := r.usageOf(t, id, "short")
	in, _ := r.cli.ContainerInspect(context.Background(), id)
	started, _ := time.Parse(time.RFC3339Nano, in.State.StartedAt)
	finished, _ := time.Parse(time.RFC3339Nano, in.State.FinishedAt)
	t.Logf("ran %s; billed %v", finished.Sub(started), sum)
	// sleep 5 runs a little longer on a loaded machine; the run is billed its
	// duration from the engine's start to its exit, rounded to the second.
	if got, want := sum[usage.MeterContainerSeconds], int64((finished.Sub(started)+time.Second/2)/time.Second); got != want || want < 5 {
		t.Errorf("billed %d container-seconds, want %d", got, want)
	}
	if sum[usage.MeterCPU] <= 0 || sum[usage.MeterMemory] <= 0 {
		t.Errorf("billed CPU %d ns and memory %d byte·s, want both above zero", sum[usage.MeterCPU], sum[usage.MeterMemory])
	}
}

func TestAnOOMKillIsCountedOnceAndClosesTheRun(t *testing.T) {
	r := newRig(t, time.Second, 10*time.Second)
	// A shell that reads 64 MiB into a variable under a 16 MiB limit.
	id, _ := r.runJob(t, "oom", []string{"sh", "-c", "x=$(head -c 67108864 /dev/zero | tr '\\0' a); echo ${#x}"},
		container.Resources{Memory: 16 << 20, MemorySwap: 16 << 20})
	in, _ := r.cli.ContainerInspect(context.Background(), id)
	if in.State.ExitCode != 137 {
		t.Fatalf("the container was not killed (exit %d)", in.State.ExitCode)
	}
	r.usageOf(t, id, "oom") // returns once the final window is stored
	deadline := time.Now().Add(30 * time.Second)
	for {
		// (The died event's oom_killed flag is the engine's, which Docker 20.10
		// sometimes sets only after reporting the exit: not asserted.)
		var ooms, died int
		err := r.store.ScanEvents(context.Background(), metering.EventFilter{Tenant: "caami", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour),
			Apps: []string{"oom"}}, func(e events.Event) error {
			switch e.Type {
			case events.OOM:
				ooms++
			case events.Died:
				died++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if ooms == 1 && died == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stored %d oom and %d died events, want 1 and 1", ooms, died)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := promtest.Value(t, r.reg, "container_oom_events_total", map[string]string{"container": strings.TrimPrefix(in.Name, "/")}); n != 1 {
		t.Errorf("container_oom_events_total = %v, want 1", n)
	}
}

// TestMetricsUseCAdvisorNamesWithOnlyPlatformLabelsAndPassPromtool scrapes the
// agent's registry while a labelled container runs and has promtool check it.
func TestMetricsUseCAdvisorNamesWithOnlyPlatformLabelsAndPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "promtool not found: run `make test` as root (it installs Debian's prometheus package)"
		testenv.Missing(t, msg)
	}
	r := newRig(t, time.Second, 10*time.Second)
	ctx := context.Background()
	c, err := r.cli.ContainerCreate(ctx, &container.Config{Image: dockertest.BusyboxImage, Cmd: []string{"sleep", "30"},
		Labels: map[string]string{engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: "web", engine.LabelEnv: "test",
			"com.example.noise": "never a metric label"}},
		&container.HostConfig{Resources: container.Resources{Memory: 32 << 20}}, nil, nil, dockertest.Name(t, "metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	if err := r.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	var body string
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(body, "container_cpu_usage_seconds_total{") {
		if time.Now().After(deadline) {
			t.Fatalf("no container metrics after 20 s:\n%s", body)
		}
		time.Sleep(200 * time.Millisecond)
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_spec_memory_limit_bytes",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total", "container_start_time_seconds",
		"paasmeter_agent_spool_entries", "paasmeter_agent_spool_oldest_age_seconds", "paasmeter_agent_dead_letter_entries"} {
		if !strings.Contains(body, "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	want := `container_spec_memory_limit_bytes{app="web",container="` + strings.TrimPrefix(mustName(t, r, c.ID), "/") + `",env="test",node="` + r.node + `",project="claims",tenant="caami"} 3.3554432e+07`
	if !strings.Contains(body, want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if strings.Contains(body, "noise") {
		t.Error("a Docker label leaked into the metrics")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func mustName(t *testing.T, r *rig, id string) string {
	in, err := r.cli.ContainerInspect(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return in.Name
}

func TestAPersistentVolumeIsBilledItsSizeWhileItExists(t *testing.T) {
	r := newRig(t, time.Second, 2*time.Second)
	ctx := context.Background()
	name := dockertest.Name(t, "pgdata")
	labels := func(node string) map[string]string {
		return map[string]string{engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: "db", engine.LabelEnv: "prod",
			engine.LabelSize: strconv.Itoa(5 << 30), engine.LabelNode: node}
	}
	v, err := r.cli.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: labels(r.node)})
	if err != nil {
		t.Fatal(err)
	}
	// Another node's runtime made this one: its own agent bills it, not this one.
	foreign := dockertest.Name(t, "elsewhere")
	if _, err := r.cli.VolumeCreate(ctx, volume.CreateOptions{Name: foreign, Labels: labels("another-node")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cli.VolumeRemove(context.Background(), foreign, true) })
	time.Sleep(5 * time.Second)
	if err := r.cli.VolumeRemove(ctx, v.Name, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var recs []usage.Record
		r.store.ScanUsage(ctx, metering.UsageFilter{Tenant: "caami", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour),
			Meters: []usage.Meter{usage.MeterStorageByteSeconds}}, func(rec usage.Record) error {
			if rec.Volume == name {
				recs = append(recs, rec)
			}
			if rec.Volume == foreign {
				t.Errorf("the agent of %s billed %s, another node's volume", r.node, foreign)
			}
			return nil
		})
		var sum int64
		for i, rec := range recs {
			sum += rec.Quantity
			if i > 0 && !rec.WindowStart.Equal(recs[i-1].WindowEnd) {
				t.Fatalf("volume windows do not follow each other: %v then %v", recs[i-1].WindowEnd, rec.WindowStart)
			}
		}
		if len(recs) > 0 {
			span := recs[len(recs)-1].WindowEnd.Sub(recs[0].WindowStart)
			want := float64(5<<30) * span.Seconds()
			// Closed once the agent saw the volume gone: at least the 5 s it existed.
			if span >= 5*time.Second && span < 10*time.Second && math.Abs(float64(sum)-want) <= float64(len(recs)+1) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume records %+v do not bill 5 GiB over its life", recs)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// resizedVolumeEngine adds to the engine's volumes one whose size the test
// sets (0: gone), as a Kubernetes claim that is grown.
type resizedVolumeEngine struct {
	engine.Engine
	v    engine.Volume
	size atomic.Uint64
}

func (e *resizedVolumeEngine) Volumes(ctx context.Context) ([]engine.Volume, error) {
	list, err := e.Engine.Volumes(ctx)
	if v := e.v; err == nil && e.size.Load() > 0 {
		v.SizeBytes = e.size.Load()
		list = append(list, v)
	}
	return list, err
}

func TestAResizedVolumeIsBilledItsOldSizeThenItsNewOne(t *testing.T) {
	name := dockertest.Name(t, "grown")
	re := &resizedVolumeEngine{v: engine.Volume{Name: name, Tenant: "caami", Project: "claims", App: "db", Env: usage.EnvProd}}
	re.size.Store(1 << 30)
	r := newRigWith(t, nodetest.Options{Sample: time.Second, Window: 2 * time.Second, WrapEngine: func(e engine.Engine) engine.Engine {
		re.Engine = e
		return re
	}})
	ctx := context.Background()
	scan := func() []usage.Record {
		var recs []usage.Record
		if err := r.store.ScanUsage(ctx, metering.UsageFilter{Tenant: "caami", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour),
			Meters: []usage.Meter{usage.MeterStorageByteSeconds}}, func(rec usage.Record) error {
			if rec.Volume == name {
				recs = append(recs, rec)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(recs, func(a, b usage.Record) int { return a.WindowStart.Compare(b.WindowStart) })
		return recs
	}
	// billedAt is the size a window was billed for: its quantity over its length.
	billedAt := func(rec usage.Record) float64 {
		return float64(rec.Quantity) / rec.WindowEnd.Sub(rec.WindowStart).Seconds()
	}
	deadline := time.Now().Add(30 * time.Second)
	step := 0
	for {
		recs := scan()
		last := len(recs) - 1
		switch {
		case step == 0 && last >= 0:
			re.size.Store(3 << 30)
			step++
		case step == 1 && last >= 0 && math.Abs(billedAt(recs[last])-3<<30) < 1<<20:
			re.size.Store(0)
			step++
		case step == 2 && math.Abs(billedAt(recs[last])-3<<30) < 1<<20 &&
			!recs[last].WindowEnd.Equal(recs[last].WindowStart.Truncate(2*time.Second).Add(2*time.Second)):
			// Closed at its removal: every window billed 1 GiB, then 3 GiB, never back.
			grown := false
			for i, rec := range recs {
				if i > 0 && !rec.WindowStart.Equal(recs[i-1].WindowEnd) {
					t.Fatalf("windows do not follow each other: %v then %v", recs[i-1].WindowEnd, rec.WindowStart)
				}
				// A quantity is rounded to the byte·second: a short window's size is approximate.
				tol := 1 / rec.WindowEnd.Sub(rec.WindowStart).Seconds()
				switch size := billedAt(rec); {
				case math.Abs(size-1<<30) <= tol && !grown:
				case math.Abs(size-3<<30) <= tol:
					grown = true
				default:
					t.Fatalf("window %d [%v, %v) billed %.0f B, want 1 GiB before the resize and 3 GiB after (records %+v)", i, rec.WindowStart, rec.WindowEnd, size, recs)
				}
			}
			if !grown {
				t.Fatalf("never billed the new size: %+v", recs)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("at step %d, volume records %+v", step, recs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestAFullSpoolStopsNothingAndDropsNothing(t *testing.T) {
	hold := make(chan struct{})
	r := newRigWith(t, nodetest.Options{Sample: time.Second, Window: 2 * time.Second, SpoolMax: 8 << 10, HoldShipping: hold}) // 8 KiB: full after a few windows
	ctx := context.Background()
	done := make(chan string, 1)
	go func() {
		id, _ := r.runJob(t, "full", []string{"sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 6"}, container.Resources{})
		done <- id
	}()
	deadline := time.Now().Add(30 * time.Second)
	for promtest.Value(t, r.reg, "paasmeter_agent_spool_write_errors_total", nil) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the spool never filled up")
		}
		time.Sleep(200 * time.Millisecond)
	}
	id := <-done
	// The container ran to its end although the agent could not spool.
	in, _ := r.cli.ContainerInspect(ctx, id)
	if in.State.ExitCode != 0 {
		t.Fatalf("the job exited %d", in.State.ExitCode)
	}
	close(hold) // the collector is reachable again: the spool drains, the outbox follows
	sum := r.usageOf(t, id, "full")
	started, _ := time.Parse(time.RFC3339Nano, in.State.StartedAt)
	finished, _ := time.Parse(time.RFC3339Nano, in.State.FinishedAt)
	if want := int64((finished.Sub(started) + time.Second/2) / time.Second); sum[usage.MeterContainerSeconds] != want {
		t.Errorf("billed %d container-seconds after the spool was full, want the run's %d", sum[usage.MeterContainerSeconds], want)
	}
}

// metricValue sums the series of name whose labels include labels.
func TestWithoutCgroupAccessTheStatsAPIStillMetersTheRun(t *testing.T) {
	r := newRigWith(t, nodetest.Options{Sample: time.Second, Window: 10 * time.Second, NoCgroups: true})
	id, _ := r.runJob(t, "nocg", []string{"sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 4"}, container.Resources{})
	sum := r.usageOf(t, id, "nocg")
	if sum[usage.MeterContainerSeconds] < 4 || sum[usage.MeterCPU] <= 0 || sum[usage.MeterMemory] <= 0 {
		t.Errorf("billed %v through the stats API, want the run's seconds, CPU and memory", sum)
	}
	if n := promtest.Value(t, r.reg, "paasmeter_agent_stats_api_fallbacks_total", nil); n == 0 {
		t.Error("no sample went through the stats API")
	}
}

// breakingEngine breaks the first event stream right after its first event of
// a container whose app is app, as a restarted engine or a proxy timeout would.
type breakingEngine struct {
	engine.Engine
	app    string
	broken atomic.Bool
}

func (b *breakingEngine) Events(ctx context.Context, since time.Time) (<-chan engine.Event, <-chan error) {
	evs, errs := b.Engine.Events(ctx, since)
	if b.broken.Load() {
		return evs, errs
	}
	out, outErr := make(chan engine.Event), make(chan error, 1)
	go func() {
		for {
			select {
			case ev := <-evs:
				out <- ev
				if ev.Labels[engine.LabelApp] == b.app && b.broken.CompareAndSwap(false, true) {
					outErr <- errors.New("event stream broken on purpose")
					return
				}
			case err := <-errs:
				outErr <- err
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, outErr
}

func TestEventsMissedWhileTheStreamWasBrokenAreReplayed(t *testing.T) {
	be := &breakingEngine{app: "resync"}
	r := newRigWith(t, nodetest.Options{Sample: time.Minute, Window: time.Minute, WrapEngine: func(e engine.Engine) engine.Engine {
		be.Engine = e
		return be
	}})
	// The stream breaks at the job's start event; its die event happens while
	// the agent is reconnecting and must come from the replay.
	id, _ := r.runJob(t, "resync", []string{"sleep", "1"}, container.Resources{})
	sum := r.usageOf(t, id, "resync")
	if !be.broken.Load() || sum[usage.MeterContainerSeconds] != 1 {
		t.Errorf("stream broken: %v; billed %v, want the 1-second run", be.broken.Load(), sum)
	}
}
