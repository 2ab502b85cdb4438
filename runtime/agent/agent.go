// Package agent is `paasmeter agent`: it follows the labelled containers of
// its node, samples their cgroups, turns the samples into usage records and
// lifecycle events, and puts them in a durable spool that runtime/ship drains.
//
// A record counts as produced once it is fsynced: first in the state file's
// outbox together with the meter state that produced it, then in the spool. A
// crash at any moment therefore neither loses a record nor changes one: at
// worst the same record (same id, same content) is spooled twice, and the
// collector keeps one.
package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/atomicfile"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/meter"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/usage"
)

// Options are what an Agent is built from.
type Options struct {
	Config Config
	Engine engine.Engine
	// Cgroups reads counters; nil means the engine's stats API for everything.
	Cgroups *cgroups.Reader
	Spool   *spool.Spool
	Clock   clock.Clock
	Logger  *slog.Logger
	// Registry receives the container and agent metrics.
	Registry *prometheus.Registry
	// Wake is signalled after records are spooled, so the shipper need not wait.
	Wake chan<- struct{}
	// Failpoints kill the process at chosen moments (crash tests only).
	Failpoints *failpoint.Set
	// NodeCPUs is how many CPUs the node has (ReadNodeCapacity); 0 means
	// runtime.NumCPU(). No cgroup's CPU counter grows faster, which dates the
	// end of a run that ended while no agent looked (finish).
	NodeCPUs int64
}

// Agent meters the containers of one node.
type Agent struct {
	o       Options
	log     *slog.Logger
	metrics *containerMetrics

	mu sync.Mutex
	// runs are the runs being measured, by container id.
	runs map[string]*tracked
	// lastEvent is the time of the newest engine event handled, to resume the
	// stream after it breaks.
	lastEvent time.Time
	// outbox holds what was produced but is not yet known to be spooled.
	outbox outbox
	// volumes are the persistent volumes being metered, by name.
	volumes map[string]*meter.VolumeAccumulator
	// savedVolumes are the volume states loaded at start, used once.
	savedVolumes map[string]meter.VolumeState
	// lastOOM is when the engine last reported an OOM kill, by run.
	lastOOM map[string]time.Time
	// initiators say who is stopping a container, by container id (see Stopping).
	initiators map[string]events.Initiator
	// closed holds the runs already closed, by run id, with their end: a
	// replayed event or a parent left behind must not bill one twice. Saved,
	// and forgotten past the state horizon.
	closed map[string]time.Time
	// orphans counts, by per-run cgroup parent, the walks that found no run,
	// container or event for it.
	orphans map[string]int
	// flushMu serialises produce and flushOutbox: the agent's loop and the
	// runtime's probes produce concurrently, and each outbox entry must be
	// spooled once.
	flushMu sync.Mutex
}

// tracked is one run being measured.
type tracked struct {
	c   engine.Container
	acc *meter.Accumulator
	// cgroup is the container's cgroup path; parent its dedicated per-run
	// parent ("" if none), which keeps the final counters after the exit.
	cgroup, parent string
	// missing counts the sample periods since a re-list no longer showed the
	// container (0: it was there).
	missing int
}

// New builds an Agent.
func New(o Options) (*Agent, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	if o.Config.Node == "" {
		return nil, errors.New("agent config: node: is required (this node's name, as its agent token is bound to it)")
	}
	if o.Engine == nil || o.Spool == nil {
		return nil, errors.New("agent: an engine and a spool are required")
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.NodeCPUs <= 0 {
		o.NodeCPUs = int64(runtime.NumCPU())
	}
	a := &Agent{o: o, log: o.Logger, runs: map[string]*tracked{}, volumes: map[string]*meter.VolumeAccumulator{}, lastOOM: map[string]time.Time{}, initiators: map[string]events.Initiator{},
		closed: map[string]time.Time{}, orphans: map[string]int{}}
	var err error
	if a.metrics, err = newContainerMetrics(o.Registry, o.Config.Node, a); err != nil {
		return nil, err
	}
	return a, nil
}

// statePath is where the meter states of the open runs are saved.
func (a *Agent) statePath() string { return filepath.Join(a.o.Config.SpoolDir, "meter-state.json") }

// Run meters until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.loadState(); err != nil {
		return err
	}
	a.flushMu.Lock()
	err := a.flushOutbox()
	a.flushMu.Unlock()
	if err != nil {
		a.log.Error("cannot spool the outbox left by the previous run; retrying later", "err", err)
	}
	// Events are replayed from the last one the previous agent processed
	// (saved with the outbox), so what happened while no agent ran is handled
	// as if it had been seen. Without a saved one, or one beyond the state
	// horizon, replay starts just before the first listing, so a container
	// that starts between the listing and the subscription is not missed.
	now := a.o.Clock.Now()
	a.mu.Lock()
	fresh := a.lastEvent.IsZero() || now.Sub(a.lastEvent) > a.o.Config.StateHorizon
	if fresh {
		a.lastEvent = now.Add(-time.Second)
	}
	a.mu.Unlock()
	if fresh {
		// Saved at once: an agent killed before it wrote anything else must
		// not leave its successor to replay from the successor's own start.
		a.flushMu.Lock()
		err := a.saveState()
		a.flushMu.Unlock()
		if err != nil {
			return err
		}
	}
	if err := a.resync(ctx); err != nil {
		return err
	}
	tick := time.NewTicker(a.o.Config.SampleInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		evs, errs := a.o.Engine.Events(ctx, a.lastEventTime())
	stream:
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				a.sampleAll(ctx)
				a.settle()
			case ev, ok := <-evs:
				if !ok {
					break stream
				}
				a.handle(ctx, ev)
				a.processed(ev.Time)
			case err := <-errs:
				if ctx.Err() != nil {
					return nil
				}
				a.log.Warn("engine event stream broke; resyncing", "err", err)
				break stream
			}
		}
		// Events missed while the stream was down are replayed from lastEvent;
		// a re-list catches anything the engine no longer remembers.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if err := a.resync(ctx); err != nil {
			a.log.Warn("resync failed", "err", err)
		}
	}
	return nil
}

func (a *Agent) lastEventTime() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastEvent
}

// processed records that every event up to at was handled: a restarted agent
// replays from there. It is saved with the next state write, after the
// event's own records, so a crash in between replays the event (its records
// have deterministic ids) rather than skip it.
func (a *Agent) processed(at time.Time) {
	a.mu.Lock()
	if at.After(a.lastEvent) {
		a.lastEvent = at
	}
	a.mu.Unlock()
}

// resync lists the labelled containers: running ones not yet tracked are
// adopted; tracked ones that are no longer running are closed; exited ones
// never tracked whose per-run cgroup parent is still there started and ended
// while no agent looked, and are billed from that parent. Tracked runs whose
// container is gone wait for their replayed die event (settle).
func (a *Agent) resync(ctx context.Context) error {
	list, err := a.o.Engine.List(ctx)
	if err != nil {
		return fmt.Errorf("agent: list containers: %w", err)
	}
	seen := map[string]bool{}
	for _, c := range list {
		seen[c.ID] = true
		a.mu.Lock()
		t, ok := a.runs[c.ID]
		a.mu.Unlock()
		switch {
		case ok && c.Running && c.RunID() == t.acc.Run().RunID:
			a.refresh(t, c)
		case c.Running && !ok:
			// Started while no agent looked: its start event may be past the
			// engine's history, so it is told here (a replay gives the same id).
			a.track(c)
		case ok:
			a.finish(t, endOf(c, t))
			if c.Running {
				a.track(c)
			}
		default:
			a.closeUnseen(c)
		}
	}
	a.mu.Lock()
	for id, t := range a.runs {
		if !seen[id] && t.missing == 0 {
			t.missing = 1
		}
	}
	a.mu.Unlock()
	return nil
}

// refresh updates a run restored from the saved state with what the engine
// says of its container now (its process, hence its cgroup).
func (a *Agent) refresh(t *tracked, c engine.Container) {
	cg := t.cgroup
	if cg == "" || t.c.Pid != c.Pid {
		cg = a.cgroupPath(c)
	}
	a.mu.Lock()
	t.c, t.cgroup, t.missing = c, cg, 0
	a.mu.Unlock()
}

// closeUnseen bills an exited container no agent saw run: its counters are
// in its per-run cgroup parent, which the agent removes only once it closed
// the run, so a parent still there is a run not yet billed. The run gets its
// started and died events with the engine's times, and is billed from zero at
// its start to its end.
func (a *Agent) closeUnseen(c engine.Container) {
	p := a.parentOf(c)
	if p == "" || !a.valid(c) || c.FinishedAt.IsZero() {
		return
	}
	if a.isClosed(c.RunID()) {
		if p != c.RunCgroup {
			removeCgroup(a.o.Config.CgroupRoot, p) // billed; its removal failed last time
		}
		return
	}
	t := &tracked{c: c, acc: meter.New(a.run(c), a.o.Config.Window), parent: p}
	a.metrics.closedFromParent.Inc()
	a.log.Info("run started and ended while no agent looked: billed from its cgroup parent", "container", c.Name, "run", c.RunID())
	// Its start is told in the write that closes it: an agent killed between
	// the two would leave a start told and a run not closed, which a next agent
	// that finds the container gone tells again from the start event's time.
	a.finish(t, endOf(c, t), a.event(c, events.Started, c.StartedAt)...)
}

// settle closes the tracked runs whose container is gone and whose die event
// did not come: three sample periods on, the replay is long over, so the event
// is past the engine's bounded history. Such a run is closed at its last
// sample, the latest moment the agent can prove it ran, with the final
// counters of its cgroup parent, and counted as an unknown end.
func (a *Agent) settle() {
	a.mu.Lock()
	var gone []*tracked
	for _, t := range a.runs {
		if t.missing > 0 {
			if t.missing++; t.missing > 3 {
				gone = append(gone, t)
			}
		}
	}
	a.mu.Unlock()
	for _, t := range gone {
		a.finish(t, runEnd{})
	}
	a.walkParents()
}

// walkParents looks at every per-run cgroup parent: one of a run already
// closed (its removal failed: a process was still in it) is removed again;
// an empty one that no run, container or event accounts for is counted once
// and logged, and kept: nothing tells whose it is.
func (a *Agent) walkParents() {
	if a.o.Cgroups == nil {
		return
	}
	parents, err := a.o.Cgroups.RunParents()
	if err != nil {
		a.log.Warn("cannot list the per-run cgroup parents", "err", err)
		return
	}
	a.mu.Lock()
	inUse := map[string]bool{}
	for _, t := range a.runs {
		inUse[t.parent] = true
	}
	var retry []string
	for _, p := range parents {
		run := path.Base(p)
		switch {
		case inUse[p]:
		case a.hasClosed(run):
			retry = append(retry, p)
		case a.o.Cgroups.Busy(p):
			// A container (of this node, about to be seen, or of another
			// node's runtime on the same host) is in it.
			delete(a.orphans, p)
		default:
			a.orphans[p]++
			if a.orphans[p] == 3 {
				a.metrics.orphanParents.Inc()
				a.log.Warn("per-run cgroup parent with no container, run or event: left for an operator", "parent", p)
			}
		}
	}
	for p := range a.orphans {
		if !slices.Contains(parents, p) || inUse[p] {
			delete(a.orphans, p)
		}
	}
	a.mu.Unlock()
	for _, p := range retry {
		removeCgroup(a.o.Config.CgroupRoot, p)
	}
}

// parentOf returns the per-run cgroup parent of c: the cgroup the engine
// says counts the run alone, or its own per-run parent when the engine
// reports it, else, for a container known only from its labels, the
// runtime's /paasmeter/<run> when it exists.
func (a *Agent) parentOf(c engine.Container) string {
	if c.RunCgroup != "" {
		return c.RunCgroup
	}
	if p := dedicatedParent(c); p != "" {
		return p
	}
	if c.RunLabel == "" || a.o.Cgroups == nil || strings.ContainsAny(c.RunLabel, "/.") {
		return ""
	}
	p := "/" + cgroups.RunParentsDir + "/" + c.RunLabel
	if _, err := a.o.Cgroups.Read(p); err != nil {
		return ""
	}
	return p
}

// isClosed reports whether run was already closed (and billed).
func (a *Agent) isClosed(run string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hasClosed(run)
}

// hasClosed is isClosed with a.mu held.
func (a *Agent) hasClosed(run string) bool {
	_, ok := a.closed[run]
	return ok
}

// dedicatedParent returns c's cgroup parent when it is a per-run parent the
// agent may read after the exit and then remove (the paasmeter runtime starts
// containers under /paasmeter/<run>).
func dedicatedParent(c engine.Container) string {
	if strings.HasPrefix(c.CgroupParent, "/paasmeter/") {
		return c.CgroupParent
	}
	return ""
}

func (a *Agent) run(c engine.Container) meter.Run {
	return meter.Run{Tenant: c.Tenant, Project: c.Project, App: c.App, Environment: c.Env, Node: a.o.Config.Node,
		ContainerID: c.ID, RunID: c.RunID(), Start: c.StartedAt, NetShared: c.NetShared}
}

// track starts measuring a running container, sampling it at once. Its
// counters started at zero with its cgroup, so a run first seen late is
// billed from its start; only one that started before the state horizon is
// billed from now (counted and logged): its early usage may be in months
// already invoiced, and the agent would have known it had it run then.
func (a *Agent) track(c engine.Container) {
	if !a.valid(c) || a.isClosed(c.RunID()) {
		return
	}
	t := &tracked{c: c, parent: a.parentOf(c)}
	t.cgroup = a.cgroupPath(c)
	s, err := a.sample(t)
	if a.o.Clock.Now().Sub(c.StartedAt) <= a.o.Config.StateHorizon {
		t.acc = meter.New(a.run(c), a.o.Config.Window)
	} else {
		a.metrics.adoptedLate.Inc()
		a.log.Warn("adopting a container older than the state horizon: billed from now", "container", c.Name, "run", c.RunID(),
			"started", c.StartedAt, "state_horizon", a.o.Config.StateHorizon)
		t.acc = meter.Adopt(a.run(c), a.o.Config.Window, s)
	}
	a.begin(t, s, err == nil)
}

// begin starts tracking t and produces its started event (and, when sampled,
// its first sample's records) in the same state write: an agent killed at any
// moment leaves either neither or both, and a run it closes later always has
// its start told. The event's id is the same whoever tells it again.
func (a *Agent) begin(t *tracked, s meter.Sample, sampled bool) {
	started := a.event(t.c, events.Started, t.c.StartedAt)
	a.produceWith(func() ([]usage.Record, []events.Event) {
		a.runs[t.c.ID] = t
		if !sampled {
			return nil, started
		}
		return t.acc.Observe(s), started
	})
}

func (a *Agent) valid(c engine.Container) bool {
	if !a.mine(c.Node) {
		return false
	}
	if ps := usage.ValidateLabels(0, c.Tenant, c.Project, c.App, c.Env, a.o.Config.Node); len(ps) > 0 {
		a.log.Warn("container has invalid platform labels; not metered", "container", c.Name, "problem", ps[0].String())
		return false
	}
	return true
}

// cgroupPath finds a running container's cgroup: as the engine reports it,
// else from its init process, else from the known layouts.
func (a *Agent) cgroupPath(c engine.Container) string {
	if c.Cgroup != "" {
		return c.Cgroup
	}
	if c.Pid > 0 {
		if p, err := cgroups.PathFromProc(a.o.Config.ProcRoot, c.Pid); err == nil {
			return p
		}
	}
	if a.o.Cgroups == nil {
		return ""
	}
	p, err := a.o.Cgroups.FindContainer(c.ID, c.CgroupParent)
	if err != nil {
		a.log.Warn("cgroup of container not found", "container", c.Name, "err", err)
	}
	return p
}

// sample reads a run's counters now: from its cgroup files, or through the
// engine's stats API when those cannot be read (no cgroup access, an unknown
// layout).
func (a *Agent) sample(t *tracked) (meter.Sample, error) {
	now := a.o.Clock.Now()
	s := meter.Sample{Time: now, MemoryLimitBytes: t.c.MemoryLimitBytes, CPULimitMillicores: t.c.CPULimitMillicores}
	st, err := cgroups.Stats{}, errNoCgroups
	if a.o.Cgroups != nil && t.cgroup != "" {
		st, err = a.o.Cgroups.Read(t.cgroup)
	}
	if err == nil && t.c.Pid > 0 && !a.alive(t.c.Pid) {
		// The cgroup outlives the process by a moment: a sample read after the
		// exit would stretch the run past its end. The die event closes it.
		return meter.Sample{}, errGone
	}
	if err == nil {
		s.CPUNs, s.MemoryWorkingSetBytes = st.CPUUsageNs, st.MemoryWorkingSetBytes
		if t.c.Pid > 0 {
			if rx, tx, err := cgroups.ReadNetDev(a.o.Config.ProcRoot, t.c.Pid); err == nil {
				s.NetRxBytes, s.NetTxBytes = rx, tx
			}
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		es, serr := a.o.Engine.Stats(ctx, t.c.ID)
		cancel()
		if serr != nil || es.CPUUsageNs == 0 {
			return meter.Sample{}, errors.Join(err, serr)
		}
		a.metrics.statsFallbacks.Inc()
		s.CPUNs, s.MemoryWorkingSetBytes, s.NetRxBytes, s.NetTxBytes = es.CPUUsageNs, es.MemoryWorkingSetBytes, es.NetRxBytes, es.NetTxBytes
		st = cgroups.Stats{CPUUsageNs: es.CPUUsageNs, MemoryUsageBytes: es.MemoryUsageBytes, MemoryWorkingSetBytes: es.MemoryWorkingSetBytes, Pids: es.Pids}
	}
	a.metrics.observe(t, st, s)
	return s, nil
}

// observe adds a sample to a tracked run. The lock keeps saveState, which
// other goroutines' produce calls run, from reading the meter mid-update.
func (a *Agent) observe(t *tracked, s meter.Sample) []usage.Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return t.acc.Observe(s)
}

var (
	errNoCgroups = errors.New("no cgroup to read")
	errGone      = errors.New("the container's process is gone")
)

// alive reports whether pid still runs (and is not a zombie waiting to be
// reaped). It is checked after the counters are read, so a sample it lets
// through was taken while the container lived.
func (a *Agent) alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join(a.o.Config.ProcRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// sampleAll samples every tracked run.
func (a *Agent) sampleAll(ctx context.Context) {
	a.mu.Lock()
	list := make([]*tracked, 0, len(a.runs))
	for _, t := range a.runs {
		list = append(list, t)
	}
	a.mu.Unlock()
	var recs []usage.Record
	for _, t := range list {
		s, err := a.sample(t)
		if err != nil {
			continue // gone: its die event closes it
		}
		recs = append(recs, a.observe(t, s)...)
	}
	recs = append(recs, a.meterVolumes(ctx)...)
	a.produce(recs, nil)
}

// meterVolumes lists the labelled volumes: new ones start being metered (from
// their creation if the agent saw it happen, else from now), gone ones get
// their final window, and every one its windows closed up to now.
func (a *Agent) meterVolumes(ctx context.Context) []usage.Record {
	list, err := a.o.Engine.Volumes(ctx)
	if err != nil {
		a.log.Warn("listing volumes failed", "err", err)
		return nil
	}
	now := a.o.Clock.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var recs []usage.Record
	seen := map[string]bool{}
	for _, v := range list {
		if v.SizeBytes == 0 || !a.mine(v.Node) || len(usage.ValidateLabels(0, v.Tenant, v.Project, v.App, v.Env, a.o.Config.Node)) > 0 ||
			len(usage.ValidateIdent(0, "volume", v.Name)) > 0 {
			continue
		}
		seen[v.Name] = true
		acc, ok := a.volumes[v.Name]
		if !ok {
			if st, has := a.savedVolumes[v.Name]; has {
				acc = meter.RestoreVolume(st)
			} else {
				from := now
				if !v.CreatedAt.IsZero() && now.Sub(v.CreatedAt) < a.o.Config.SampleInterval+5*time.Second {
					from = v.CreatedAt
				}
				acc = meter.NewVolume(meter.Volume{Tenant: v.Tenant, Project: v.Project, App: v.App, Environment: v.Env,
					Node: a.o.Config.Node, Name: v.Name, SizeBytes: v.SizeBytes}, a.o.Config.Window, from)
			}
			a.volumes[v.Name] = acc
		}
		if st := acc.State(); st.Volume.SizeBytes != v.SizeBytes {
			// Resized (a Kubernetes claim grown): the old size up to now,
			// the new one from now.
			recs = append(recs, acc.Close(now)...)
			st.Volume.SizeBytes = v.SizeBytes
			acc = meter.NewVolume(st.Volume, a.o.Config.Window, now)
			a.volumes[v.Name] = acc
		}
		recs = append(recs, acc.Advance(now)...)
	}
	for name, acc := range a.volumes {
		if !seen[name] {
			recs = append(recs, acc.Close(now)...)
			delete(a.volumes, name)
		}
	}
	for name, st := range a.savedVolumes {
		if !seen[name] {
			a.log.Warn("volume removed while the agent was down: its usage after its last closed window is not known",
				"volume", name, "since", st.From)
		}
	}
	a.savedVolumes = nil
	return recs
}

// handle reacts to one engine event.
func (a *Agent) handle(ctx context.Context, ev engine.Event) {
	if !a.mine(ev.Labels[engine.LabelNode]) {
		return // another node's runtime made it; its agent follows it
	}
	a.mu.Lock()
	t := a.runs[ev.ContainerID]
	a.mu.Unlock()
	switch ev.Type {
	case engine.EventStart:
		c, err := a.o.Engine.Inspect(ctx, ev.ContainerID)
		if err != nil {
			// Gone already (a replayed start of a container removed while no
			// agent ran, or a --rm job shorter than the inspection): its labels
			// and the event's time tell the run, its cgroup parent the usage.
			// A run already tracked keeps the start the engine reported then,
			// so a replay gives its started event the same time and id.
			lc, ok := containerFromLabels(ev)
			switch {
			case t != nil && ok && lc.RunLabel == t.c.RunLabel:
				c = t.c
			case t == nil && ok && lc.RunLabel != "":
				// The parent goes into the container's record, which the saved
				// state keeps: a restarted agent closes the run from it too.
				lc.StartedAt = ev.Time
				lc.CgroupParent = a.parentOf(lc)
				c = lc
			default:
				a.log.Warn("inspect after start failed", "container", ev.ContainerID, "err", err)
				return
			}
		}
		if a.isClosed(c.RunID()) || !a.valid(c) {
			return // a replayed start of a run already billed
		}
		if t != nil && t.acc.Run().RunID == c.RunID() {
			// A replayed start of the run already being measured.
			a.produce(nil, a.event(c, events.Started, c.StartedAt))
			return
		}
		restarted := t != nil
		if t != nil {
			a.finish(t, endOf(c, t)) // a restart we did not see die
		}
		if c.Running {
			a.track(c)
		} else {
			// Started and already gone: measure the whole run at its die event.
			a.begin(&tracked{c: c, acc: meter.New(a.run(c), a.o.Config.Window), parent: a.parentOf(c)}, meter.Sample{}, false)
		}
		if restarted {
			a.produce(nil, a.event(c, events.Restarted, c.StartedAt))
		}
	case engine.EventStop:
		if c, ok := containerFromLabels(ev); ok && t != nil {
			c.StartedAt = t.c.StartedAt // the run it stopped
			a.produce(nil, a.event(c, events.Stopped, ev.Time))
		}
	case engine.EventDie:
		if t == nil {
			c, err := a.o.Engine.Inspect(ctx, ev.ContainerID)
			if err != nil || !valid(c) || !a.mine(c.Node) || a.o.Clock.Now().Sub(c.StartedAt) > a.o.Config.StateHorizon || a.isClosed(c.RunID()) {
				// Not a run this agent measures, or one already billed.
				return
			}
			t = &tracked{c: c, acc: meter.New(a.run(c), a.o.Config.Window), parent: a.parentOf(c)}
		}
		a.finish(t, a.dieEnd(ctx, ev, t))
	case engine.EventOOM:
		// The engine may report the OOM kill after the container's die event;
		// the run is then found by inspecting the container.
		c, ok := engine.Container{}, false
		if t != nil {
			c, ok = t.c, true
		} else if ic, err := a.o.Engine.Inspect(ctx, ev.ContainerID); err == nil && a.valid(ic) {
			c, ok = ic, true
		}
		if !ok {
			return
		}
		// One OOM kill often reaches the engine as several notifications, one
		// per process the kernel killed: those within a second of the run's
		// previous one are the same kill.
		a.mu.Lock()
		last, seen := a.lastOOM[c.RunID()]
		fresh := !seen || ev.Time.Sub(last) > time.Second
		a.lastOOM[c.RunID()] = ev.Time
		for run, at := range a.lastOOM {
			if ev.Time.Sub(at) > time.Hour {
				delete(a.lastOOM, run)
			}
		}
		a.mu.Unlock()
		if fresh {
			a.metrics.oom.WithLabelValues(c.Tenant, c.Project, c.App, string(c.Env), c.Name, a.o.Config.Node).Inc()
			a.produce(nil, a.event(c, events.OOM, ev.Time))
		}
	case engine.EventDestroy:
		a.mu.Lock()
		delete(a.initiators, ev.ContainerID)
		a.mu.Unlock()
		if c, ok := containerFromLabels(ev); ok && a.mine(c.Node) {
			a.produce(nil, a.event(c, events.Removed, ev.Time))
		}
	case engine.EventHealth:
		if t != nil && ev.Health != "" {
			e := a.event(t.c, events.Health, ev.Time)
			e[0].Health = ev.Health
			e[0].SetID()
			a.produce(nil, e)
		}
	}
}

func valid(c engine.Container) bool { return c.Tenant != "" && !c.StartedAt.IsZero() }

// mine reports whether this agent meters a container the runtime of node
// made ("" for containers others start: every agent meters those).
func (a *Agent) mine(node string) bool { return node == "" || node == a.o.Config.Node }

// containerFromLabels rebuilds what an event of a removed container tells.
func containerFromLabels(ev engine.Event) (engine.Container, bool) {
	l := ev.Labels
	if l[engine.LabelTenant] == "" {
		return engine.Container{}, false
	}
	return engine.Container{ID: ev.ContainerID, Tenant: l[engine.LabelTenant], Project: l[engine.LabelProject], App: l[engine.LabelApp],
		Env: usage.Environment(l[engine.LabelEnv]), Replica: l[engine.LabelReplica], RunLabel: l[engine.LabelRun], Node: l[engine.LabelNode]}, true
}

// runEnd is how a run ended, as far as the agent can prove it: at is zero
// when the end is not known, code nil when the exit code is not.
type runEnd struct {
	at   time.Time
	code *int
	oom  bool
}

// endOf reads t's end from c, the engine's view of its container: known only
// if c shows that same run exited.
func endOf(c engine.Container, t *tracked) runEnd {
	if c.Running || c.FinishedAt.IsZero() || c.RunID() != t.acc.Run().RunID {
		return runEnd{}
	}
	code := c.ExitCode
	return runEnd{at: c.FinishedAt, code: &code, oom: c.OOMKilled}
}

// dieEnd reads the end of t's run from its die event: the event's time and
// its exitCode attribute hold even when the container is already gone
// (removed with --rm, or by the runtime). Inspecting adds detail when it can:
// the OOM flag, and the engine's recorded finish time, the one a resync of
// the same run would read, so both paths bill the same end.
func (a *Agent) dieEnd(ctx context.Context, ev engine.Event, t *tracked) runEnd {
	if c, err := a.o.Engine.Inspect(ctx, ev.ContainerID); err == nil {
		if e := endOf(c, t); !e.at.IsZero() {
			return e
		}
	} else {
		a.log.Info("container gone before its end could be inspected; its die event tells the end", "container", ev.ContainerID, "err", err)
	}
	e := runEnd{at: ev.Time}
	if ev.ExitKnown {
		code := ev.ExitCode
		e.code = &code
	}
	a.mu.Lock()
	at, ok := a.lastOOM[t.acc.Run().RunID]
	a.mu.Unlock()
	// The engine's oom event comes before the die it causes.
	e.oom = ok && !at.Before(t.c.StartedAt) && !at.After(ev.Time)
	return e
}

// finish closes a run that ended (or vanished): its final counters come from
// the dedicated cgroup parent when there is one, which outlives the container.
// also are events produced in the same state write as the run's last records.
// A run whose end is not known is closed at the latest moment the agent can
// prove it ran (provenEnd) and counted, never given an invented end event.
func (a *Agent) finish(t *tracked, e runEnd, also ...events.Event) {
	c := t.c
	st := t.acc.State()
	final := st.Last // nothing newer known: counters stop at the last sample
	if t.parent != "" && a.o.Cgroups != nil {
		if cs, err := a.o.Cgroups.Read(t.parent); err == nil {
			final.CPUNs = cs.CPUUsageNs
			// A run never sampled while alive gets its peak as its memory.
			final.MemoryWorkingSetBytes = max(cs.MemoryPeakBytes, final.MemoryWorkingSetBytes)
			final.MemoryLimitBytes, final.CPULimitMillicores = c.MemoryLimitBytes, c.CPULimitMillicores
		}
	}
	end := e.at
	if end.IsZero() {
		end = a.provenEnd(st.Last, final.CPUNs)
		a.metrics.unknownEnds.Inc()
		a.log.Warn("run ended without a known end: closed at the latest moment its samples and CPU counter prove it ran",
			"container", c.ID, "run", c.RunID(), "last_sample", st.Last.Time, "at", end)
	}
	if !end.After(c.StartedAt) {
		// Docker records StartedAt after starting the process; one that exits
		// at once can end "before" it started. Keep its counters in a window
		// of a millisecond rather than drop them.
		end = c.StartedAt.Add(time.Millisecond)
	}
	final.Time = end
	var died []events.Event
	if !e.at.IsZero() && e.code != nil {
		died = a.event(c, events.Died, e.at)
		died[0].ExitCode, died[0].OOMKilled = e.code, e.oom
		died[0].SetID()
	} else if !e.at.IsZero() {
		a.metrics.unknownEnds.Inc()
		a.log.Warn("run ended with no exit code known: no died event", "container", c.ID, "run", c.RunID())
	}
	// The run leaves the saved state in the same write that puts its last
	// records in the outbox: a crash in between neither loses nor repeats them.
	a.produceWith(func() ([]usage.Record, []events.Event) {
		if a.runs[t.c.ID] == t {
			delete(a.runs, t.c.ID)
		}
		a.closed[c.RunID()] = end
		return t.acc.Close(final), append(also, died...)
	})
	a.metrics.forget(t.c.ID)
	if t.parent != "" && t.parent != c.RunCgroup {
		removeCgroup(a.o.Config.CgroupRoot, t.parent)
	}
}

// provenEnd is the latest moment a run that ended unseen can be proven to
// have run: its last sample, plus the time its CPU counter needed to gain what
// it gained since (cpuNs, the parent's final reading), at the node's every CPU
// at once; never later than now, when it is known gone. Closed at the last
// sample alone, the CPU it used since (a whole downtime's, when no agent
// looked) had no time to go in: the meter dropped it, and a run never sampled
// got all of it in a window of a millisecond, which the collector refuses as
// more than the node can do (usage.CheckBounds). Over the time it proves,
// every window it reaches holds at most window × CPUs.
func (a *Agent) provenEnd(last meter.Sample, cpuNs uint64) time.Time {
	gained := cpuNs
	if cpuNs >= last.CPUNs {
		gained = cpuNs - last.CPUNs
	} // else the counter was reset, as the meter counts it: all it shows is new
	cpus := uint64(a.o.NodeCPUs)
	need := gained/cpus + min(gained%cpus, 1) // rounded up: never faster than the node
	now := a.o.Clock.Now().Round(0)
	switch {
	case !now.After(last.Time):
		return last.Time
	case need >= uint64(now.Sub(last.Time)):
		return now // more than the node could do: the collector says so
	}
	return last.Time.Add(time.Duration(need))
}

// event builds a lifecycle event of c's current run. Stopped and died events
// carry who stopped the container, when the runtime said so beforehand.
func (a *Agent) event(c engine.Container, typ events.Type, at time.Time) []events.Event {
	e := events.Event{SchemaVersion: events.SchemaVersion, Tenant: c.Tenant, Project: c.Project, App: c.App, Environment: c.Env,
		Node: a.o.Config.Node, ContainerID: c.ID, RunID: c.RunID(), Replica: c.Replica, Type: typ, Time: at.UTC()}
	if typ == events.Stopped || typ == events.Died {
		a.mu.Lock()
		e.Initiator = a.initiators[c.ID]
		a.mu.Unlock()
	}
	e.SetID()
	return []events.Event{e}
}

// Stopping tells the agent who is about to stop a container (the runtime's
// supervisor calls it), so the run's stopped and died events name the
// initiator: the SLA tells an owner's stop from a platform kill by it.
func (a *Agent) Stopping(containerID string, by events.Initiator) {
	a.mu.Lock()
	a.initiators[containerID] = by
	a.mu.Unlock()
}

// Emit makes events from the node's other parts (the runtime's probes)
// durable and ships them with the agent's own.
func (a *Agent) Emit(evs []events.Event) { a.produce(nil, evs) }

// produce makes records and events durable. They first go, with the meter
// states that produced them, into the state file's outbox; then into the spool;
// then the outbox is cleared. A crash between the two leaves them in the outbox,
// spooled again at the next start: the same ids with the same content, which
// the collector's dedup absorbs. A spool that refuses them (full disk) leaves
// them in the outbox too, retried at every produce and reported loudly.
func (a *Agent) produce(recs []usage.Record, evs []events.Event) {
	a.produceWith(func() ([]usage.Record, []events.Event) { return recs, evs })
}

// produceWith is produce of what build returns; build runs under the agent's
// lock, so the state change that yields the records and the records
// themselves are saved together.
func (a *Agent) produceWith(build func() ([]usage.Record, []events.Event)) {
	a.flushMu.Lock()
	defer a.flushMu.Unlock()
	a.mu.Lock()
	recs, evs := build()
	a.outbox.Usage = append(a.outbox.Usage, recs...)
	a.outbox.Events = append(a.outbox.Events, evs...)
	empty := len(a.outbox.Usage) == 0 && len(a.outbox.Events) == 0
	a.mu.Unlock()
	if empty {
		if err := a.saveState(); err != nil {
			a.log.Error("cannot save the meter state", "err", err)
		}
		return
	}
	if err := a.saveState(); err != nil {
		a.log.Error("cannot save the meter state and outbox; records stay in memory", "err", err)
		a.metrics.spoolErrors.Inc()
		return
	}
	if err := a.flushOutbox(); err != nil {
		a.metrics.spoolErrors.Inc()
		a.log.Error("cannot write the spool: records wait in the outbox and are retried", "err", err)
		return
	}
	if a.o.Wake != nil {
		select {
		case a.o.Wake <- struct{}{}:
		default:
		}
	}
}

// flushOutbox moves the outbox to the spool, as much of it as fits, in order.
// The caller holds flushMu.
func (a *Agent) flushOutbox() error {
	a.mu.Lock()
	box := a.outbox
	a.mu.Unlock()
	nu, err := appendJSON(a.o.Spool, ship.KindUsage, box.Usage)
	if nu > 0 {
		a.o.Failpoints.Hit(failpoint.AfterSpoolWrite)
	}
	ne := 0
	if err == nil {
		ne, err = appendJSON(a.o.Spool, ship.KindEvent, box.Events)
	}
	a.mu.Lock()
	a.outbox.Usage = a.outbox.Usage[nu:]
	a.outbox.Events = a.outbox.Events[ne:]
	a.mu.Unlock()
	if serr := a.saveState(); err == nil {
		err = serr
	}
	return err
}

// appendJSON spools items in order and returns how many are in. A spool too
// full for all of them takes smaller chunks, so the outbox drains as space
// comes back even when it grew larger than the whole spool.
func appendJSON[T any](sp *spool.Spool, kind string, items []T) (int, error) {
	data := make([][]byte, len(items))
	for i := range items {
		b, err := json.Marshal(items[i])
		if err != nil {
			return 0, fmt.Errorf("agent: encode %s: %w", kind, err)
		}
		data[i] = b
	}
	done, chunk := 0, len(data)
	for done < len(data) {
		n := min(chunk, len(data)-done)
		if _, err := sp.Append(kind, data[done:done+n]...); err != nil {
			if errors.Is(err, spool.ErrFull) && n > 1 {
				chunk = n / 2
				continue
			}
			return done, fmt.Errorf("agent: spool %d %s record(s): %w", len(items)-done, kind, err)
		}
		done += n
	}
	return done, nil
}

// savedState is the state file: the meter states of the open runs and the
// records produced but not yet known to be in the spool.
type savedState struct {
	Runs map[string]meter.State `json:"runs"`
	// Containers are the engine's view of the open runs' containers, so a
	// run whose container was removed while no agent ran can still be closed
	// with its labels, parent and limits.
	Containers map[string]engine.Container  `json:"containers"`
	Volumes    map[string]meter.VolumeState `json:"volumes"`
	Outbox     outbox                       `json:"outbox"`
	// LastEvent is the time of the newest engine event handled: the next
	// agent replays from it.
	LastEvent time.Time `json:"last_event"`
	// Closed are the runs already closed, with their ends (Agent.closed).
	Closed map[string]time.Time `json:"closed"`
}

type outbox struct {
	Usage  []usage.Record `json:"usage"`
	Events []events.Event `json:"events"`
}

// saveState writes the state file atomically.
func (a *Agent) saveState() error {
	a.mu.Lock()
	st := savedState{Runs: make(map[string]meter.State, len(a.runs)), Containers: make(map[string]engine.Container, len(a.runs)),
		Volumes: make(map[string]meter.VolumeState, len(a.volumes)), Outbox: a.outbox, LastEvent: a.lastEvent, Closed: a.closed}
	for id, t := range a.runs {
		st.Runs[id] = t.acc.State()
		st.Containers[id] = t.c
	}
	horizon := a.o.Clock.Now().Add(-a.o.Config.StateHorizon)
	for run, end := range a.closed {
		if end.Before(horizon) {
			delete(a.closed, run)
		}
	}
	for name, v := range a.volumes {
		st.Volumes[name] = v.State()
	}
	for name, v := range a.savedVolumes { // not yet listed again since the start
		if _, ok := st.Volumes[name]; !ok {
			st.Volumes[name] = v
		}
	}
	b, err := json.Marshal(st)
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("agent: encode state: %w", err)
	}
	if err := atomicfile.Write(a.statePath(), b); err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	return nil
}

// loadState reads the state file: its outbox becomes the agent's, to be
// spooled first, and its runs are tracked again, to be matched with the
// engine's containers by the first re-list and the replayed events.
func (a *Agent) loadState() error {
	b, err := os.ReadFile(a.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agent: read state: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("agent: state file %s is corrupt: %w", a.statePath(), err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.outbox = st.Outbox
	a.savedVolumes = st.Volumes
	a.lastEvent = st.LastEvent
	if st.Closed != nil {
		a.closed = st.Closed
	}
	for id, ms := range st.Runs {
		acc, err := meter.Restore(ms)
		if err != nil {
			a.log.Error("saved meter state unusable; the run is adopted again when listed", "container", id, "err", err)
			continue
		}
		c, ok := st.Containers[id]
		if !ok { // a state file of an older agent: the meter's run says enough
			r := ms.Run
			c = engine.Container{ID: id, Tenant: r.Tenant, Project: r.Project, App: r.App, Env: r.Environment, StartedAt: r.Start, RunLabel: r.RunID}
		}
		a.runs[id] = &tracked{c: c, acc: acc, parent: a.parentOf(c)}
	}
	return nil
}
