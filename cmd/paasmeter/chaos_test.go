package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/runtime/cgroups/cgroupstest"

	"github.com/docker/docker/api/types/container"
	dockerevents "github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/metering/embedded"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/usage"
)

// The chaos test's knobs, set by `make chaos` for a longer schedule.
const (
	chaosSeedEnv = "PAASMETER_CHAOS_SEED" // replay one schedule
	chaosJobsEnv = "PAASMETER_CHAOS_JOBS" // how many jobs (default 12)
	chaosLongEnv = "PAASMETER_CHAOS_LONG" // how long the long jobs sleep (default 20s)
	// chaosPaceEnv stretches the schedule: the time between two jobs' starts
	// (0.7–1.4 s times the pace) and the agent's time up between two random
	// kills (0.5–3 s times the pace; default 2). A longer
	// run needs a slower pace: an agent killed every second or two for minutes
	// never gets through its start, and the engine's 256 events scroll past.
	chaosPaceEnv = "PAASMETER_CHAOS_PACE"
	// chaosCollectorEnv runs the collector as the real binary too, killed at
	// random like the agent.
	chaosCollectorEnv = "PAASMETER_CHAOS_KILL_COLLECTOR"
)

// jobKind is how long a chaos job runs.
type jobKind int

const (
	job50ms jobKind = iota
	job3s
	jobLong
)

// chaosJob is one labelled container, started the way the runtime starts
// them (a run label and a per-run cgroup parent /paasmeter/<run>), and what
// the agent's downtime does to it.
type chaosJob struct {
	i    int
	kind jobKind
	// rm makes it a `docker run --rm` job; removeDown removes it while the
	// agent is down.
	rm, removeDown bool
	// killAt is when the agent is killed on purpose: "start" (the job starts
	// while it is down), "end" (it ends while it is down), or "" (only the
	// random kills).
	killAt string
	// node is the agent's: the job carries it, so that the agents of other
	// tests on the engine leave it alone.
	node, run, app, id string
	// Ground truth: the kernel's CPU counter of the run's cgroup parent after
	// the exit, and the run's start and end as the engine reported them.
	cpuNs      uint64
	start, end []time.Time
}

// killable is a process of the real binary that the chaos test SIGKILLs,
// one downtime at a time, and starts again.
type killable struct {
	t     *testing.T
	start func() (*exec.Cmd, error)
	mu    sync.Mutex
	cmd   *exec.Cmd
	kills int
}

func newKillable(t *testing.T, start func() (*exec.Cmd, error)) *killable {
	t.Helper()
	k := &killable{t: t, start: start}
	var err error
	if k.cmd, err = start(); err != nil {
		t.Fatal(err)
	}
	return k
}

// whileDown SIGKILLs the process, runs fn while it is down, and starts it again.
func (k *killable) whileDown(fn func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd.Process.Kill()
	k.cmd.Wait()
	k.kills++
	fn()
	var err error
	if k.cmd, err = k.start(); err != nil {
		k.t.Error(err)
	}
}

func (k *killable) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cmd.Process.Kill()
	k.cmd.Wait()
}

// chaosCollector is the collector binary over an embedded store.
type chaosCollector struct {
	*killable
	dataDir string
}

// newChaosCollector writes one configuration for the collector binary and
// the agents that ship to it, starts the collector, and returns the agents'
// rig.
func newChaosCollector(t *testing.T, bin string) (*agentRig, *chaosCollector) {
	t.Helper()
	dir := t.TempDir()
	node := fmt.Sprintf("chaos-%d", time.Now().UnixNano()%1e9)
	cfgPath, dataDir, listen := filepath.Join(dir, "paasmeter.yaml"), filepath.Join(dir, "data"), testenv.FreeAddr(t)
	cfg := fmt.Sprintf("log:\n  level: warn\nstore:\n  data_dir: %s\ncollector:\n  listen: %s\n  admin_listen: %s\n"+
		"tenants:\n  - id: caami\ntokens:\n  - {name: agent, role: agent, node: %s, tenants: [caami], sha256: %s}\n"+
		"agent:\n  node: %s\n  collector_url: http://%s\n  docker_host: %s\n  spool_dir: %s\n"+
		"  sample_interval: 1s\n  window: 2s\n  admin_listen: 127.0.0.1:0\n  logs:\n    enabled: false\n",
		dataDir, listen, testenv.FreeAddr(t), node, auth.Hash("crash-token"), node, listen, os.Getenv(dockertest.HostEnv), filepath.Join(dir, "spool"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func() (*exec.Cmd, error) {
		cmd := exec.Command(bin, "collector", "--config", cfgPath)
		cmd.Stderr = &testLog{t: t, prefix: "collector: "}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := http.Get("http://" + listen + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return cmd, nil
				}
			}
			if time.Now().After(deadline) {
				return cmd, fmt.Errorf("the collector is not ready: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return &agentRig{t: t, bin: bin, cfgPath: cfgPath, node: node}, &chaosCollector{killable: newKillable(t, start), dataDir: dataDir}
}

// TestChaosAgentKilledAcrossJobsStartsEndsAndRemovalsBillsEveryRunExactly runs
// jobs of 50 ms, 3 s and longer, some with --rm and some removed while the
// agent is down, and SIGKILLs the agent binary at random and on purpose so
// that jobs start, end and are removed while it is down. Ground truth comes
// from the kernel: each run's per-run cgroup parent is kept alive (a child
// cgroup the test holds) until its CPU counter was read after the exit. Every
// run must be billed its CPU to the nanosecond and its container_seconds to
// the second, in windows without gap or overlap, with exactly one started and
// one died event, and no /paasmeter/<run> parent may be left once shipped.
// PAASMETER_CHAOS_SEED replays a schedule; `make chaos` runs a longer one.
func TestChaosAgentKilledAcrossJobsStartsEndsAndRemovalsBillsEveryRunExactly(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(chaosSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", chaosSeedEnv, s, err)
		}
		seed = v
	}
	n := 12
	if s := os.Getenv(chaosJobsEnv); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			t.Fatalf("%s=%q: want a positive count", chaosJobsEnv, s)
		}
		n = v
	}
	long := 20 * time.Second
	if s := os.Getenv(chaosLongEnv); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", chaosLongEnv, s, err)
		}
		long = v
	}
	// Twice the bare minimum: the whole suite loads the machine, and an
	// agent needs a moment to get through its start.
	pace := 2.0
	if s := os.Getenv(chaosPaceEnv); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 1 {
			t.Fatalf("%s=%q: want a number of at least 1", chaosPaceEnv, s)
		}
		pace = v
	}
	t.Logf("chaos seed %d (replay: make chaos SEED=%d)", seed, seed)
	fmt.Fprintf(os.Stderr, "chaos seed %d (replay: make chaos SEED=%d)\n", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	bin := buildAgent(t)
	var r *agentRig
	var coll *chaosCollector
	if os.Getenv(chaosCollectorEnv) != "" {
		r, coll = newChaosCollector(t, bin)
	} else {
		r = newAgentRig(t, bin, "  logs:\n    enabled: false\n")
	}
	root := cgroupstest.CPURoot(t, "/sys/fs/cgroup")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// The engine's own start and die times of every job, from its events.
	var truthMu sync.Mutex
	starts, dies := map[string][]time.Time{}, map[string][]time.Time{}
	evs, errs := cli.Events(ctx, dockerevents.ListOptions{Filters: filters.NewArgs(filters.Arg("label", engine.LabelNode+"="+r.node),
		filters.Arg("type", string(dockerevents.ContainerEventType)))})
	go func() {
		for {
			select {
			case m := <-evs:
				truthMu.Lock()
				switch m.Action {
				case dockerevents.ActionStart:
					starts[m.Actor.ID] = append(starts[m.Actor.ID], time.Unix(0, m.TimeNano).UTC())
				case dockerevents.ActionDie:
					dies[m.Actor.ID] = append(dies[m.Actor.ID], time.Unix(0, m.TimeNano).UTC())
				}
				truthMu.Unlock()
			case <-errs:
				return
			}
		}
	}()
	time.Sleep(200 * time.Millisecond) // the subscription is in place

	ag := newKillable(t, func() (*exec.Cmd, error) { return r.start(), nil })
	defer ag.stop()
	// The first jobs put every case of the agent's downtime on purpose (a
	// run that starts and ends in it, with --rm or removed in it; one that
	// ends in it; one that starts in it and still runs); the rest are drawn.
	fixed := []chaosJob{
		{kind: job50ms, killAt: "start", rm: true},
		{kind: job50ms, killAt: "start", removeDown: true},
		{kind: job3s, killAt: "end", rm: true},
		{kind: job3s, killAt: "start"},
		{kind: jobLong, killAt: "start"},
		{kind: jobLong, killAt: "end", removeDown: true},
	}
	jobs := make([]*chaosJob, n)
	for i := range jobs {
		j := &chaosJob{i: i, kind: jobKind(rng.IntN(3)), rm: rng.IntN(3) == 0}
		j.removeDown = !j.rm && rng.IntN(2) == 0
		j.killAt = []string{"", "start", "end"}[rng.IntN(3)]
		if i < len(fixed) {
			j.kind, j.killAt, j.rm, j.removeDown = fixed[i].kind, fixed[i].killAt, fixed[i].rm, fixed[i].removeDown
		}
		j.node, j.run = r.node, fmt.Sprintf("%s-%04d", r.node, i)
		j.app = fmt.Sprintf("chaos%d", i)
		jobs[i] = j
	}
	// Whatever a failed run leaves: the test's child cgroups and the parents.
	t.Cleanup(func() {
		for _, j := range jobs {
			os.Remove(filepath.Join(root, "paasmeter", j.run, "keep"))
			dockertest.RemoveCgroupParent("/paasmeter/" + j.run)
		}
	})
	delays := make([]time.Duration, n)
	for i := range delays {
		delays[i] = time.Duration(pace * float64(time.Duration(i)*700*time.Millisecond+time.Duration(rng.IntN(700))*time.Millisecond))
	}
	// Random kills, with downtimes of 0.2–2 s, until every job is done: the
	// agent every 0.5–3 s, the collector (when it is the binary) every 1–3.5 s.
	var killers sync.WaitGroup
	done := make(chan struct{})
	killAtRandom(&killers, done, rand.New(rand.NewPCG(seed+1, seed)), 500, pace, ag.whileDown)
	if coll != nil {
		killAtRandom(&killers, done, rand.New(rand.NewPCG(seed+2, seed)), 1000, 1, coll.whileDown)
		defer coll.stop()
	}
	var wg sync.WaitGroup
	failures := make(chan string, n)
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(delays[i])
			if msg := runChaosJob(ctx, cli, img, root, ag, j, long); msg != "" {
				failures <- msg
			}
		}()
	}
	wg.Wait()
	close(done)
	killers.Wait()
	close(failures)
	for msg := range failures {
		t.Fatal(msg)
	}
	truthMu.Lock()
	for _, j := range jobs {
		j.start, j.end = append(j.start, starts[j.id]...), append(j.end, dies[j.id]...)
	}
	truthMu.Unlock()
	for _, j := range jobs {
		if len(j.start) == 0 || len(j.end) == 0 {
			t.Fatalf("job %d: the engine's start and die times are not known (%v, %v)", j.i, j.start, j.end)
		}
	}

	// The last agent ships everything: check every run against the truth.
	collKills := 0
	if coll != nil {
		collKills = coll.kills // the checks below stop it too, to read its store
	}
	var problems []string
	// With the collector binary, each check stops it to read its store: it
	// stays up for 10 s between two checks, for the agent to ship.
	settle, deadline := 2*time.Second, time.Now().Add(90*time.Second)
	if coll != nil {
		settle, deadline = 10*time.Second, time.Now().Add(5*time.Minute)
	}
	// Totals over every run: billed, and the kernel's and engine's truth.
	var billedCPU, billedSecs, truthCPU int64
	check := func(st metering.Store) {
		problems = problems[:0]
		billedCPU, billedSecs, truthCPU = 0, 0, 0
		for _, j := range jobs {
			p, cpu, secs := checkChaosJob(ctx, st, root, j)
			if p != "" {
				problems = append(problems, p)
			}
			billedCPU, billedSecs, truthCPU = billedCPU+cpu, billedSecs+secs, truthCPU+int64(j.cpuNs)
		}
	}
	for {
		if coll == nil {
			check(r.col.Store)
		} else {
			// The collector's embedded store is read while it is down.
			coll.whileDown(func() {
				st, err := embedded.Open(ctx, coll.dataDir)
				if err != nil {
					problems = append(problems[:0], err.Error())
					return
				}
				check(st)
				st.Close()
			})
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(settle)
	}
	kinds := map[jobKind]int{}
	for _, j := range jobs {
		kinds[j.kind]++
	}
	t.Logf("chaos seed %d: %d jobs (50ms %d, 3s %d, long %d), %d agent kills, %d collector kills", seed, n, kinds[job50ms], kinds[job3s], kinds[jobLong],
		ag.kills, collKills)
	t.Logf("totals: CPU billed %d ns, counted by the kernel %d ns; container_seconds billed %d", billedCPU, truthCPU, billedSecs)
	if len(problems) > 0 {
		t.Fatalf("chaos seed %d (replay: make chaos SEED=%d):\n%s", seed, seed, strings.Join(problems, "\n"))
	}
}

// killAtRandom kills a process with whileDown, after it was up for minMs to
// minMs+2.5 s times pace (if not done by then), for a downtime of 0.2–2 s,
// until done.
func killAtRandom(wg *sync.WaitGroup, done <-chan struct{}, rng *rand.Rand, minMs int, pace float64, whileDown func(func())) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Duration(pace * float64(time.Duration(minMs+rng.IntN(2500))*time.Millisecond))):
			}
			whileDown(func() { time.Sleep(time.Duration(200+rng.IntN(1800)) * time.Millisecond) })
		}
	}()
}

// runChaosJob runs one job through its schedule and reads its ground truth;
// it returns what went wrong, if anything.
func runChaosJob(ctx context.Context, cli *client.Client, img, root string, ag *killable, j *chaosJob, long time.Duration) string {
	var cmd string
	var runs time.Duration
	switch j.kind {
	case job50ms:
		cmd, runs = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done", 50*time.Millisecond
	case job3s:
		cmd, runs = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 3", 3*time.Second
	default:
		cmd, runs = fmt.Sprintf("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep %d", int(long.Seconds())), long
	}
	parent := "/paasmeter/" + j.run
	// The test's own child cgroup keeps the parent, and its counters, after
	// the agent has closed the run and tried to remove it.
	keep := filepath.Join(root, parent, "keep")
	if err := os.MkdirAll(keep, 0o755); err != nil {
		return fmt.Sprintf("job %d: %v", j.i, err)
	}
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sh", "-c", cmd}, Labels: map[string]string{
		engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: j.app, engine.LabelEnv: "prod",
		engine.LabelRun: j.run, engine.LabelNode: j.node}},
		&container.HostConfig{AutoRemove: j.rm, Resources: container.Resources{CgroupParent: parent}}, nil, nil, j.run)
	if err != nil {
		return fmt.Sprintf("job %d: create: %v", j.i, err)
	}
	j.id = c.ID
	start := func() {
		if err = cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			err = fmt.Errorf("job %d: start: %w", j.i, err)
		}
	}
	wait := func() {
		// The wait ends when the job exits (or, with --rm, is removed).
		cond := container.WaitConditionNotRunning
		if j.rm {
			cond = container.WaitConditionRemoved
		}
		waitC, errC := cli.ContainerWait(ctx, c.ID, cond)
		select {
		case <-waitC:
		case werr := <-errC:
			if !strings.Contains(werr.Error(), "No such container") {
				err = fmt.Errorf("job %d: wait: %w", j.i, werr)
			}
		}
	}
	if j.killAt == "start" {
		ag.whileDown(func() { start(); time.Sleep(100 * time.Millisecond) })
	} else {
		start()
	}
	if err != nil {
		return err.Error()
	}
	// The engine's recorded start, while it can still be read (a --rm job
	// is gone after its exit): the agent takes it when it inspects the run.
	if in, ierr := cli.ContainerInspect(ctx, c.ID); ierr == nil {
		if s, perr := time.Parse(time.RFC3339Nano, in.State.StartedAt); perr == nil && s.Year() > 1 {
			j.start = append(j.start, s.UTC())
		}
	}
	if j.killAt == "end" {
		if runs > time.Second {
			time.Sleep(runs - time.Second)
		}
		ag.whileDown(wait)
	} else {
		wait()
	}
	if err != nil {
		return err.Error()
	}
	if j.cpuNs, err = cgroupstest.CPUNanos(filepath.Join(root, parent)); err != nil {
		return fmt.Sprintf("job %d: the ground truth of %s: %v", j.i, parent, err)
	}
	if j.removeDown {
		ag.whileDown(func() {
			if rerr := cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true}); rerr != nil {
				err = fmt.Errorf("job %d: remove: %w", j.i, rerr)
			}
		})
	} else if !j.rm {
		in, ierr := cli.ContainerInspect(ctx, c.ID)
		if ierr != nil {
			return fmt.Sprintf("job %d: inspect: %v", j.i, ierr)
		}
		s, _ := time.Parse(time.RFC3339Nano, in.State.StartedAt)
		e, _ := time.Parse(time.RFC3339Nano, in.State.FinishedAt)
		j.start, j.end = append(j.start, s.UTC()), append(j.end, e.UTC())
		defer cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
	}
	if err != nil {
		return err.Error()
	}
	// The truth is read: the agent may now remove the parent.
	if rerr := os.Remove(keep); rerr != nil {
		return fmt.Sprintf("job %d: %v", j.i, rerr)
	}
	return ""
}

// checkChaosJob compares what the store holds of a job's run with the truth:
// "" when it is billed exactly, has one started and one died event, and its
// cgroup parent is gone.
func checkChaosJob(ctx context.Context, st metering.Store, root string, j *chaosJob) (problem string, cpu, secs int64) {
	from, to := j.start[0].Add(-time.Minute), j.end[0].Add(time.Minute)
	var recs []usage.Record
	st.ScanUsage(ctx, metering.UsageFilter{Tenant: "caami", From: from, To: to, Apps: []string{j.app}},
		func(rec usage.Record) error { recs = append(recs, rec); return nil })
	count := map[events.Type]int{}
	st.ScanEvents(ctx, metering.EventFilter{Tenant: "caami", From: from, To: to, Apps: []string{j.app}},
		func(e events.Event) error { count[e.Type]++; return nil })
	cpu, secs, first, last := billed(recs)
	desc := fmt.Sprintf("job %d (%v, rm %v, removed while down %v, kill at %q, run %s)", j.i, j.kind, j.rm, j.removeDown, j.killAt, j.run)
	if len(recs) == 0 {
		return desc + ": nothing billed", cpu, secs
	}
	if p := tiles(recs, first, last); p != "" {
		return desc + ": " + p, cpu, secs
	}
	if cpu != int64(j.cpuNs) {
		return fmt.Sprintf("%s: billed %d ns of CPU, the kernel counted %d", desc, cpu, j.cpuNs), cpu, secs
	}
	// The run's duration by the engine's clock: its recorded start and end,
	// or its start and die events (the agent takes either, whichever it
	// could read); the billed seconds must be one of those, rounded.
	ok := false
	var want []int64
	for _, s := range j.start {
		for _, e := range j.end {
			if !e.After(s) {
				e = s.Add(time.Millisecond)
			}
			w := int64((e.Sub(s) + time.Second/2) / time.Second)
			want = append(want, w)
			ok = ok || w == secs
			// A --rm job is gone before the test can read the finish time the
			// engine recorded, which the agent reads when it inspects the run at
			// its die event: it precedes the event by the engine's own latency,
			// so a duration by the event a little past the half second may be
			// one by the recorded finish a little short of it.
			if over := e.Sub(s) - time.Duration(w-1)*time.Second - time.Second/2; j.rm && secs == w-1 && over >= 0 && over < 250*time.Millisecond {
				ok = true
			}
		}
	}
	if !ok {
		return fmt.Sprintf("%s: billed %d container-seconds, the engine's times give %v", desc, secs, want), cpu, secs
	}
	if count[events.Started] != 1 || count[events.Died] != 1 {
		return fmt.Sprintf("%s: %d started and %d died events, want one each", desc, count[events.Started], count[events.Died]), cpu, secs
	}
	if _, err := os.Stat(filepath.Join(root, "paasmeter", j.run)); err == nil {
		return desc + ": its cgroup parent is still there", cpu, secs
	}
	return "", cpu, secs
}

func (k jobKind) String() string { return [...]string{"50ms", "3s", "long"}[k] }
