package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/usage"
)

// listEngine is an engine that lists a fixed set of containers and has no
// events, stats or volumes: the agent's loop is driven by the test.
type listEngine struct{ containers []engine.Container }

func (e *listEngine) List(context.Context) ([]engine.Container, error) { return e.containers, nil }
func (e *listEngine) Inspect(_ context.Context, id string) (engine.Container, error) {
	for _, c := range e.containers {
		if c.ID == id {
			return c, nil
		}
	}
	return engine.Container{}, fmt.Errorf("no such container %s", id)
}
func (e *listEngine) Stats(context.Context, string) (engine.Stats, error) {
	return engine.Stats{}, errors.New("no stats API in this test")
}
func (e *listEngine) Volumes(context.Context) ([]engine.Volume, error) { return nil, nil }
func (e *listEngine) Events(ctx context.Context, _ time.Time) (<-chan engine.Event, <-chan error) {
	return make(chan engine.Event), make(chan error)
}

// writeCgroup writes the cgroup v2 files the agent reads, with cpuNs of CPU
// and 64 MiB of memory in use.
func writeCgroup(t *testing.T, dir string, cpuNs uint64) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"cpu.stat": fmt.Sprintf("usage_usec %d\n", cpuNs/1000), "memory.current": "67108864\n",
		"memory.stat": "inactive_file 0\n", "memory.max": "max\n", "memory.events": "oom_kill 0\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// drain takes every usage record out of sp.
func drain(t *testing.T, sp *spool.Spool) []usage.Record {
	t.Helper()
	entries, err := sp.Peek(1<<20, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var out []usage.Record
	for _, e := range entries {
		if e.Kind != ship.KindUsage {
			continue
		}
		var r usage.Record
		if err := json.Unmarshal(e.Data, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if len(entries) > 0 {
		if err := sp.AckThrough(entries[len(entries)-1].Seq); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// catchUpRig is a node whose cgroup and proc trees are files of the test,
// with a manual clock: agents on it are started and driven by the test.
type catchUpRig struct {
	t          *testing.T
	root, proc string
	clk        *clock.Manual
	cg         *cgroups.Reader
	sp         *spool.Spool
	eng        *listEngine
	cfg        Config
}

// node has 2 CPUs.
const catchUpCPUs = 2

var catchUpT0 = time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)

func newCatchUpRig(t *testing.T) *catchUpRig {
	dir := t.TempDir()
	r := &catchUpRig{t: t, root: filepath.Join(dir, "cgroup"), proc: filepath.Join(dir, "proc"), clk: clock.NewManual(catchUpT0), eng: &listEngine{}}
	if err := os.MkdirAll(r.root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.root, "cgroup.controllers"), []byte("cpu memory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	if r.cg, err = cgroups.NewReader(r.root); err != nil {
		t.Fatal(err)
	}
	if r.sp, err = spool.Open(filepath.Join(dir, "spool", "outgoing"), spool.Options{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.sp.Close() })
	r.cfg = DefaultConfig()
	r.cfg.Node, r.cfg.SpoolDir, r.cfg.CgroupRoot, r.cfg.ProcRoot = "node-1", filepath.Join(dir, "spool"), r.root, r.proc
	return r
}

// start starts a new agent process: it loads what the last one saved and
// lists the engine's containers, as Run does first.
func (r *catchUpRig) start() *Agent {
	r.t.Helper()
	a, err := New(Options{Config: r.cfg, Engine: r.eng, Cgroups: r.cg, Spool: r.sp, Clock: r.clk, NodeCPUs: catchUpCPUs,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := a.loadState(); err != nil {
		r.t.Fatal(err)
	}
	if err := a.resync(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	return a
}

// close has agent a close the runs whose containers are gone and whose die
// events never come: a re-list, then three sample periods.
func (r *catchUpRig) close(a *Agent) {
	r.t.Helper()
	if err := a.resync(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	for range 3 {
		a.settle()
	}
	if len(a.runs) != 0 {
		r.t.Fatalf("runs still open: %v", a.runs)
	}
}

// check asserts what every run's records must be: valid, within the physical
// bound of the node's CPUs, windows from start to end without gap or overlap,
// and CPU adding up to cpuNs to the nanosecond.
func (r *catchUpRig) check(recs []usage.Record, start, end time.Time, cpuNs uint64) {
	t := r.t
	t.Helper()
	sum := map[usage.Meter]int64{}
	next := map[usage.Meter]time.Time{}
	for i := range recs {
		rec := &recs[i]
		if ps := usage.Validate(rec, i, r.clk.Now(), usage.DefaultLimits()); len(ps) > 0 {
			t.Fatalf("record %d invalid: %v", i, ps)
		}
		if ps := usage.CheckBounds(rec, i, usage.DefaultBounds(), usage.NodeCapacity{CPUs: catchUpCPUs}); len(ps) > 0 {
			t.Errorf("record %d [%s, %s) refused by the physical bound: %v", i, rec.WindowStart.Format("15:04:05.000"), rec.WindowEnd.Format("15:04:05.000"), ps)
		}
		if n, ok := next[rec.Meter]; ok && !n.Equal(rec.WindowStart) || !ok && !rec.WindowStart.Equal(start) {
			t.Fatalf("%s: window [%s, %s) does not follow the previous one (ending %s)", rec.Meter, rec.WindowStart, rec.WindowEnd, n)
		}
		next[rec.Meter] = rec.WindowEnd
		sum[rec.Meter] += rec.Quantity
	}
	if got := next[usage.MeterCPU]; !got.Equal(end) {
		t.Errorf("the run was closed at %s, want %s: its last sample and what its CPU counter proves", got, end)
	}
	if sum[usage.MeterCPU] != int64(cpuNs) {
		t.Errorf("billed %d ns of CPU, want the parent's %d to the nanosecond", sum[usage.MeterCPU], cpuNs)
	}
	if want := int64((end.Sub(start) + time.Second/2) / time.Second); sum[usage.MeterContainerSeconds] != want {
		t.Errorf("billed %d container-seconds, want %d", sum[usage.MeterContainerSeconds], want)
	}
}

// TestUsageAccruedWhileTheAgentWasDownFitsTheNodeWindowByWindow runs a
// container through two long downtimes of the agent, each agent resuming
// from the meter state its predecessor saved: 40 minutes during which the
// run used both of the node's CPUs, then 40 more during which it ended and
// its container was removed, with no event left to tell when. Every record
// must pass the collector's physical bound (usage.CheckBounds) on the node's
// 2 CPUs, the windows must follow each other without gap or overlap, the CPU
// must add up to the run's cgroup parent to the nanosecond, and an agent
// that crashes mid-catch-up and starts again must produce the same records
// (same ids, same content), which the collector stores once.
func TestUsageAccruedWhileTheAgentWasDownFitsTheNodeWindowByWindow(t *testing.T) {
	r := newCatchUpRig(t)
	t0 := catchUpT0
	parent := filepath.Join(r.root, "paasmeter", "run-1")
	ctr := filepath.Join(parent, "ctr")
	for name, text := range map[string]string{filepath.Join(r.proc, "4242", "cgroup"): "0::/paasmeter/run-1/ctr\n",
		filepath.Join(r.proc, "4242", "stat"): "4242 (sleep) S 1 1 1 0\n"} {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The counters of the run: its container's and its per-run parent's.
	setCPU := func(ns uint64) {
		writeCgroup(t, parent, ns)
		if _, err := os.Stat(ctr); err == nil {
			writeCgroup(t, ctr, ns)
		}
	}
	if err := os.MkdirAll(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	r.eng.containers = []engine.Container{{ID: "c0ffee", Name: "batch-1", Tenant: "caami", Project: "claims", App: "batch",
		Env: usage.EnvProd, RunLabel: "run-1", Node: "node-1", Running: true, Pid: 4242, StartedAt: t0, CgroupParent: "/paasmeter/run-1"}}
	ctx := context.Background()

	// Ten minutes at one CPU, sampled.
	r.clk.Set(t0.Add(50 * time.Second))
	setCPU(uint64(50 * time.Second))
	a := r.start()
	r.clk.Set(t0.Add(10 * time.Minute))
	setCPU(uint64(10 * time.Minute))
	a.sampleAll(ctx)
	recs := drain(t, r.sp)

	// The agent is down for 40 minutes and 20 seconds while the run keeps both CPUs busy.
	r.clk.Set(t0.Add(50*time.Minute + 20*time.Second))
	cpuAfterFirst := uint64(10*time.Minute) + catchUpCPUs*uint64(40*time.Minute+20*time.Second)
	setCPU(cpuAfterFirst)
	saved, err := os.ReadFile(a.statePath())
	if err != nil {
		t.Fatal(err)
	}
	r.start().sampleAll(ctx)
	catchUp := drain(t, r.sp)
	// Killed before it saved that: the next agent catches up again from the same state.
	if err := os.WriteFile(a.statePath(), saved, 0o600); err != nil {
		t.Fatal(err)
	}
	r.start().sampleAll(ctx)
	if again := drain(t, r.sp); fmt.Sprint(again) != fmt.Sprint(catchUp) || len(catchUp) == 0 {
		t.Fatalf("a catch-up replayed after a crash produced %d records unlike the first %d", len(again), len(catchUp))
	}
	recs = append(recs, catchUp...)

	// Down again: the run goes on at 1.5 CPUs for 25 minutes, ends, and its
	// container is removed; its die event is past the engine's history. Only
	// the per-run parent still has its counter.
	r.clk.Set(t0.Add(90 * time.Minute))
	final := cpuAfterFirst + uint64(25*time.Minute)*3/2
	if err := os.RemoveAll(ctr); err != nil {
		t.Fatal(err)
	}
	setCPU(final)
	r.eng.containers = nil
	r.close(r.start())
	recs = append(recs, drain(t, r.sp)...)
	// It provably ran until its last sample plus 37.5 CPU-minutes over 2 CPUs.
	r.check(recs, t0, t0.Add(50*time.Minute+20*time.Second+18*time.Minute+45*time.Second), final)
}

// TestARunKnownOnlyFromItsStartEventIsBilledOverTheTimeItsCPUProves: a run
// that started and was removed while no agent ran, whose start event the
// engine still replays but whose die event it lost, was never sampled: all
// its CPU comes from its cgroup parent at once. Closed a millisecond after its
// start, 20 CPU-minutes in one window would be refused as more than the node
// can do; closed when its CPU proves it ran until, every window fits.
func TestARunKnownOnlyFromItsStartEventIsBilledOverTheTimeItsCPUProves(t *testing.T) {
	r := newCatchUpRig(t)
	t0 := catchUpT0.Add(7 * time.Second)
	cpu := uint64(20*time.Minute + time.Microsecond) // cpu.stat counts microseconds
	writeCgroup(t, filepath.Join(r.root, "paasmeter", "run-2"), cpu)
	r.clk.Set(t0.Add(time.Hour))
	a := r.start()
	a.handle(context.Background(), engine.Event{Type: engine.EventStart, ContainerID: "gone", Time: t0, Labels: map[string]string{
		engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: "job", engine.LabelEnv: "prod",
		engine.LabelRun: "run-2", engine.LabelNode: "node-1"}})
	r.close(a)
	// 20 CPU-minutes and a microsecond over 2 CPUs.
	r.check(drain(t, r.sp), t0, t0.Add(10*time.Minute+500), cpu)
}
