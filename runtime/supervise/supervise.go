package supervise

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/probe"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/usage"
)

// Options are what a Supervisor is built from.
type Options struct {
	// Spec is the desired state, parsed and validated (quotas included).
	Spec *spec.Spec
	// SpecPath, when set, is the file Spec came from: it is re-read when it
	// changes, and a new version that does not validate is refused (logged,
	// counted) while the current one stays in force.
	SpecPath string
	// Node names this node; the supervisor manages only containers labelled
	// with it, so supervisors of several nodes (or tests) share an engine.
	Node   string
	Docker Docker
	Clock  clock.Clock
	Logger *slog.Logger
	// Registry receives the runtime metrics (nil: not exported).
	Registry prometheus.Registerer
	// Interval is the time between two passes (default 2s).
	Interval time.Duration
	// StopTimeout is how long a replica has between SIGTERM and SIGKILL (default 10s).
	StopTimeout time.Duration
	// RemoveGrace is how long an exited container is kept before it is
	// removed, so the metering agent reads its end first (default 10s).
	RemoveGrace time.Duration
	// Emit receives the probe events (nil: dropped).
	Emit func([]events.Event)
	// Stopping is told who wants a container stopped, just before the
	// supervisor stops it, so its lifecycle events carry the initiator.
	Stopping func(containerID string, by events.Initiator)
}

// Validate names what is missing or wrong in o.
func (o *Options) Validate() error {
	var errs []error
	if o.Spec == nil {
		errs = append(errs, errors.New("supervise: a spec is required"))
	}
	if o.Docker == nil {
		errs = append(errs, errors.New("supervise: a Docker Engine client is required"))
	}
	if len(usage.ValidateLabels(0, "t", "p", "a", usage.EnvDev, o.Node)) > 0 {
		errs = append(errs, fmt.Errorf("supervise: node %q is not a valid node name", o.Node))
	}
	if o.Interval < 0 || o.StopTimeout < 0 || o.RemoveGrace < 0 {
		errs = append(errs, errors.New("supervise: interval, stop timeout and remove grace must not be negative"))
	}
	return errors.Join(errs...)
}

// Supervisor drives the containers of one node towards the spec: one pass
// every Interval creates what is missing, restarts what crashed (with
// backoff, until it gives up), rolls what changed one replica at a time,
// and stops and removes what the spec no longer lists. It keeps no state
// that the engine does not also hold in the containers' labels, so a
// restarted agent adopts the running containers as they are.
type Supervisor struct {
	o       Options
	log     *slog.Logger
	prober  *probe.Prober
	metrics *metrics

	mu   sync.Mutex
	spec *spec.Spec
	// stamp is the spec file's size and time when last read.
	stamp string
	// networks and volumes already known to exist.
	networks, volumes map[string]bool
	// finished caches what the engine says of exited containers, which no longer changes.
	finished map[string]ended
	// health is the probe state of each probed container.
	health map[string]*health
	// unhealthyKilled holds containers stopped for failing their probes: their
	// exit is a failure whatever its code.
	unhealthyKilled map[string]bool
	// startFailures delay the next try at a replica the engine refused to start.
	startFailures map[slotKey]startFailure
	// gaveUp are the containers whose giving-up was already logged.
	gaveUp map[string]bool

	probeWG sync.WaitGroup
	probers map[string]context.CancelFunc
}

type ended struct {
	started, finished time.Time
	exitCode          int
	oom               bool
}

type health struct {
	fails  int
	everOK bool
}

type startFailure struct {
	n    int
	next time.Time
}

// slotKey names one replica of one app: the place containers succeed each other in.
type slotKey struct {
	tenant, project, app string
	env                  usage.Environment
	index                int
}

// observed is one managed container as the engine shows it.
type observed struct {
	id      string
	key     slotKey
	labels  map[string]string
	run     string
	hash    string
	attempt int
	running bool
	// created: made but never started (a start that failed, or a crash between the two).
	created bool
	ended
}

// New builds a Supervisor.
func New(o Options) (*Supervisor, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = clock.System{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Interval == 0 {
		o.Interval = 2 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.RemoveGrace == 0 {
		o.RemoveGrace = 10 * time.Second
	}
	r := &Supervisor{o: o, log: o.Logger.With("component", "supervise"), prober: probe.New(execer{o.Docker}), spec: o.Spec,
		networks: map[string]bool{}, volumes: map[string]bool{}, finished: map[string]ended{}, health: map[string]*health{},
		unhealthyKilled: map[string]bool{}, startFailures: map[slotKey]startFailure{}, gaveUp: map[string]bool{},
		probers: map[string]context.CancelFunc{}}
	var err error
	if r.metrics, err = newMetrics(o.Registry); err != nil {
		return nil, err
	}
	if o.SpecPath != "" {
		r.stamp = stampOf(o.SpecPath)
	}
	return r, nil
}

// Run supervises until ctx ends. The containers keep running after it
// returns: the next agent adopts them.
func (r *Supervisor) Run(ctx context.Context) error {
	defer r.stopProbes()
	tick := time.NewTicker(r.o.Interval)
	defer tick.Stop()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("supervision pass failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Pass makes one supervision pass.
func (r *Supervisor) Pass(ctx context.Context) error {
	r.reload()
	r.mu.Lock()
	s := r.spec
	r.mu.Unlock()
	now := r.o.Clock.Now()
	obs, err := r.observe(ctx)
	if err != nil {
		return err
	}
	r.metrics.quotas(s)
	r.metrics.replicas.Reset()
	desired := map[slotKey]bool{}
	probed := map[string]probeTarget{}
	var errs []error
	for _, inst := range s.Institutions {
		netErr := r.ensureNetwork(ctx, inst.ID)
		if netErr != nil {
			errs = append(errs, netErr)
		}
		for _, p := range inst.Projects {
			for _, a := range p.Apps {
				tmpl := Replica{Institution: inst.ID, Project: p.ID, App: a, Node: r.o.Node}
				// Without its network or volumes an app is left as it is — neither
				// started nor, above all, taken for an app the spec dropped.
				ready := netErr == nil
				if ready {
					if err := r.ensureVolumes(ctx, &tmpl); err != nil {
						errs = append(errs, err)
						ready = false
					}
				}
				hash := AppHash(a)
				rolling := r.rolling(&tmpl, obs, hash)
				for i := range a.Replicas {
					rep := tmpl
					rep.Index = i
					key := rep.key()
					desired[key] = true
					state := "failing"
					if ready {
						state = r.slot(ctx, rep, obs[key], hash, &rolling, now)
					}
					r.metrics.replicas.WithLabelValues(inst.ID, p.ID, a.ID, string(a.Env), state).Inc()
					if cs := obs[key]; len(cs) > 0 && a.Health != nil {
						if c := cs[len(cs)-1]; c.running {
							probed[c.id] = probeTarget{c: c, health: *a.Health}
						}
					}
				}
			}
		}
	}
	for key, cs := range obs {
		if !desired[key] {
			for _, c := range cs {
				r.retire(ctx, c, events.ByOwner, now)
			}
		}
	}
	r.syncProbes(ctx, probed)
	return errors.Join(errs...)
}

func (rep *Replica) key() slotKey {
	return slotKey{rep.Institution, rep.Project, rep.App.ID, rep.App.Env, rep.Index}
}

// observe lists the managed containers, grouped by slot, oldest run first.
func (r *Supervisor) observe(ctx context.Context) (map[slotKey][]observed, error) {
	list, err := r.o.Docker.ContainerList(ctx, container.ListOptions{All: true,
		Filters: filters.NewArgs(filters.Arg("label", LabelNode+"="+r.o.Node))})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := map[slotKey][]observed{}
	seen := map[string]bool{}
	for _, s := range list {
		l := s.Labels
		replica := l[engine.LabelReplica]
		idx, err := strconv.Atoi(replica[strings.LastIndexByte(replica, '-')+1:])
		if err != nil {
			continue // not made by a supervisor: leave it alone
		}
		c := observed{id: s.ID, labels: l, run: l[engine.LabelRun], hash: l[LabelSpec], running: s.State == container.StateRunning,
			created: s.State == container.StateCreated,
			key:     slotKey{l[engine.LabelTenant], l[engine.LabelProject], l[engine.LabelApp], usage.Environment(l[engine.LabelEnv]), idx}}
		c.attempt, _ = strconv.Atoi(l[LabelAttempt])
		seen[c.id] = true
		if !c.running && !c.created {
			r.mu.Lock()
			e, ok := r.finished[c.id]
			r.mu.Unlock()
			if !ok {
				if e, ok, err = r.ended(ctx, c.id); err != nil {
					return nil, err
				}
				if !ok {
					continue // removed, or started again, meanwhile: the next pass sees it as it is
				}
				r.mu.Lock()
				r.finished[c.id] = e
				r.mu.Unlock()
			}
			c.ended = e
		}
		out[c.key] = append(out[c.key], c)
	}
	for _, cs := range out {
		sort.Slice(cs, func(i, j int) bool { return cs[i].run < cs[j].run })
	}
	r.mu.Lock()
	for id := range r.finished {
		if !seen[id] {
			delete(r.finished, id)
			delete(r.unhealthyKilled, id)
			delete(r.gaveUp, id)
		}
	}
	r.mu.Unlock()
	return out, nil
}

// ended reads how an exited container's run ended; ok is false when it is
// gone or runs again. An end the engine did not record (a zero FinishedAt) is
// never taken as year 1, which would end every backoff at once: the run is
// taken to have ended now, when the supervisor first saw it exited, and that
// is counted. Any other failure to inspect fails the pass rather than let the
// slot look empty and start a second run beside the first.
func (r *Supervisor) ended(ctx context.Context, id string) (ended, bool, error) {
	in, err := r.o.Docker.ContainerInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return ended{}, false, nil
	}
	if err != nil {
		return ended{}, false, fmt.Errorf("inspect exited container %.12s: %w", id, err)
	}
	if in.State == nil || in.State.Running || in.State.Restarting {
		return ended{}, false, nil
	}
	e := ended{started: parseTime(in.State.StartedAt), finished: parseTime(in.State.FinishedAt),
		exitCode: in.State.ExitCode, oom: in.State.OOMKilled}
	if e.finished.IsZero() {
		e.finished = r.o.Clock.Now()
		r.metrics.unknownEnds.Inc()
		r.log.Warn("exited container has no recorded end: its backoff runs from now", "container", id[:min(12, len(id))])
	}
	return e, true, nil
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() < 2000 {
		return time.Time{}
	}
	return t
}

// rolling reports whether one of the app's replicas is already on the new
// spec but not yet ready (running, and passing its probe when it has one):
// until it is, no other replica is replaced.
func (r *Supervisor) rolling(tmpl *Replica, obs map[slotKey][]observed, hash string) bool {
	for i := range tmpl.App.Replicas {
		rep := *tmpl
		rep.Index = i
		cs := obs[rep.key()]
		if len(cs) == 0 {
			continue
		}
		c := cs[len(cs)-1]
		if c.hash == hash && (!c.running || (tmpl.App.Health != nil && !r.passed(c.id))) {
			return true
		}
	}
	return false
}

// slot supervises one replica and returns its state for the metrics.
func (r *Supervisor) slot(ctx context.Context, rep Replica, cs []observed, hash string, rolling *bool, now time.Time) string {
	if len(cs) == 0 {
		return r.start(ctx, rep, 0, "", now)
	}
	c := &cs[len(cs)-1]
	for _, old := range cs[:len(cs)-1] {
		r.retire(ctx, old, events.ByOwner, now)
	}
	switch {
	case c.created:
		r.remove(ctx, c.id, true)
		return r.start(ctx, rep, c.attempt, c.run, now)
	case c.running && c.hash != hash:
		if *rolling {
			return "rolling"
		}
		*rolling = true
		r.log.Info("spec changed: replacing replica", "container", c.id[:12], "replica", c.labels[engine.LabelReplica], "tenant", rep.Institution)
		r.stop(ctx, c, events.ByOwner)
		return r.start(ctx, rep, 0, c.run, now)
	case c.running:
		if r.unhealthy(c.id, rep.App.Health) {
			r.log.Warn("replica failed its health check: restarting it", "container", c.id[:12], "replica", c.labels[engine.LabelReplica], "tenant", rep.Institution)
			r.mu.Lock()
			r.unhealthyKilled[c.id] = true
			r.mu.Unlock()
			r.stop(ctx, c, "")
			return "unhealthy"
		}
		return "running"
	case c.hash != hash:
		return r.start(ctx, rep, 0, c.run, now)
	default:
		return r.afterExit(ctx, rep, c, now)
	}
}

// afterExit applies the restart policy to a replica whose run ended.
func (r *Supervisor) afterExit(ctx context.Context, rep Replica, c *observed, now time.Time) string {
	r.mu.Lock()
	failed := c.exitCode != 0 || c.oom || r.unhealthyKilled[c.id]
	r.mu.Unlock()
	pol := rep.App.Restart
	if pol.Policy == "never" || (pol.Policy == "on-failure" && !failed) {
		return "completed"
	}
	attempt := c.attempt
	if c.finished.Sub(c.started) >= pol.MaxBackoff {
		attempt = 0 // a run that held up as long as the longest backoff starts the count afresh
	}
	if pol.MaxAttempts > 0 && attempt >= pol.MaxAttempts {
		r.mu.Lock()
		logged := r.gaveUp[c.id]
		r.gaveUp[c.id] = true
		r.mu.Unlock()
		if !logged {
			r.log.Error("replica keeps failing: gave up restarting it", "container", c.id[:12], "replica", c.labels[engine.LabelReplica],
				"tenant", rep.Institution, "restarts", attempt, "exit_code", c.exitCode, "oom_killed", c.oom)
		}
		return "given_up"
	}
	if now.Before(c.finished.Add(Backoff(pol, attempt))) {
		return "backoff"
	}
	r.metrics.restarts.WithLabelValues(rep.Institution, rep.Project, rep.App.ID, string(rep.App.Env)).Inc()
	return r.start(ctx, rep, attempt+1, c.run, now)
}

// Backoff is the wait before restart number attempt+1: Backoff doubled at
// each restart in a row, at most MaxBackoff.
func Backoff(pol spec.Restart, attempt int) time.Duration {
	d := pol.Backoff
	for range attempt {
		if d >= pol.MaxBackoff/2 {
			return pol.MaxBackoff
		}
		d *= 2
	}
	return min(d, pol.MaxBackoff)
}

// start creates and starts a new run of a replica. prev is the slot's
// previous run, which the new one must sort after.
func (r *Supervisor) start(ctx context.Context, rep Replica, attempt int, prev string, now time.Time) string {
	key := rep.key()
	r.mu.Lock()
	f, failing := r.startFailures[key]
	r.mu.Unlock()
	if failing && now.Before(f.next) {
		return "failing"
	}
	rep.Attempt, rep.Run = attempt, runID(key, now, prev)
	cfg, hc := rep.Config()
	resp, err := r.o.Docker.ContainerCreate(ctx, cfg, hc, nil, nil, rep.Name())
	if err == nil {
		if err = r.o.Docker.ContainerStart(ctx, resp.ID, container.StartOptions{}); err != nil {
			r.remove(ctx, resp.ID, true)
		}
	}
	if err != nil {
		f.n++
		f.next = now.Add(Backoff(rep.App.Restart, f.n-1))
		r.mu.Lock()
		r.startFailures[key] = f
		r.mu.Unlock()
		r.log.Error("cannot start replica", "tenant", rep.Institution, "project", rep.Project, "app", rep.App.ID, "env", rep.App.Env,
			"replica", rep.Index, "image", rep.App.Image, "err", err, "retry_at", f.next.Format(time.RFC3339))
		return "failing"
	}
	r.mu.Lock()
	delete(r.startFailures, key)
	r.mu.Unlock()
	r.log.Info("replica started", "tenant", rep.Institution, "project", rep.Project, "app", rep.App.ID, "env", rep.App.Env,
		"replica", rep.Index, "run", rep.Run, "attempt", attempt, "container", resp.ID[:12])
	return "starting"
}

// runID names a new run: the slot, then the time, so a slot's runs sort in
// the order they were made (and the cgroup parent of each is its own).
func runID(k slotKey, now time.Time, prev string) string {
	h := AppHash(spec.App{ID: fmt.Sprintf("%s/%s/%s/%s/%d", k.tenant, k.project, k.app, k.env, k.index)})[:8]
	n := now.UnixNano()
	if i := strings.LastIndexByte(prev, '-'); i >= 0 {
		if p, err := strconv.ParseUint(prev[i+1:], 16, 64); err == nil && int64(p) >= n {
			n = int64(p) + 1
		}
	}
	return fmt.Sprintf("%s-%016x", h, n)
}

// retire takes away a container the spec no longer wants: stopped if it
// runs, removed once it has been gone long enough for the agent to read it.
func (r *Supervisor) retire(ctx context.Context, c observed, by events.Initiator, now time.Time) {
	switch {
	case c.running:
		r.stop(ctx, &c, by)
	case c.created:
		r.remove(ctx, c.id, true)
	case now.Sub(c.finished) >= r.o.RemoveGrace:
		r.remove(ctx, c.id, false)
	}
}

func (r *Supervisor) stop(ctx context.Context, c *observed, by events.Initiator) {
	if r.o.Stopping != nil {
		r.o.Stopping(c.id, by)
	}
	secs := int(r.o.StopTimeout.Round(time.Second).Seconds())
	if err := r.o.Docker.ContainerStop(ctx, c.id, container.StopOptions{Timeout: &secs}); err != nil {
		r.log.Warn("cannot stop container", "container", c.id[:12], "err", err)
	}
}

func (r *Supervisor) remove(ctx context.Context, id string, force bool) {
	if err := r.o.Docker.ContainerRemove(ctx, id, container.RemoveOptions{Force: force}); err != nil {
		r.log.Warn("cannot remove container", "container", id[:12], "err", err)
	}
}

func (r *Supervisor) ensureNetwork(ctx context.Context, institution string) error {
	r.mu.Lock()
	ok := r.networks[institution]
	r.mu.Unlock()
	if ok {
		return nil
	}
	if err := ensureNetwork(ctx, r.o.Docker, institution, map[string]string{engine.LabelTenant: institution}); err != nil {
		return err
	}
	r.mu.Lock()
	r.networks[institution] = true
	r.mu.Unlock()
	return nil
}

// ensureVolumes creates the app's volumes, labelled with their provisioned
// size for the agent to bill. The supervisor never deletes a volume: data
// outlives a spec change, and stays billed until an operator removes it.
func (r *Supervisor) ensureVolumes(ctx context.Context, rep *Replica) error {
	for _, v := range rep.App.Volumes {
		name := rep.VolumeName(v)
		r.mu.Lock()
		ok := r.volumes[name]
		r.mu.Unlock()
		if ok {
			continue
		}
		if _, err := r.o.Docker.VolumeCreate(ctx, volume.CreateOptions{Name: name, Labels: rep.VolumeLabels(v)}); err != nil {
			return fmt.Errorf("volume %s: %w", name, err)
		}
		r.mu.Lock()
		r.volumes[name] = true
		r.mu.Unlock()
	}
	return nil
}

// reload re-reads the spec file when it changed.
func (r *Supervisor) reload() {
	if r.o.SpecPath == "" {
		return
	}
	st := stampOf(r.o.SpecPath)
	r.mu.Lock()
	same := st == r.stamp
	r.stamp = st
	r.mu.Unlock()
	if same {
		return
	}
	s, err := spec.Load(r.o.SpecPath)
	if err != nil {
		r.metrics.reloads.WithLabelValues("refused").Inc()
		r.log.Error("the changed spec is refused; the running one stays in force", "err", err)
		return
	}
	r.mu.Lock()
	r.spec = s
	r.mu.Unlock()
	r.metrics.reloads.WithLabelValues("applied").Inc()
	r.log.Info("spec changed: converging on it", "file", r.o.SpecPath)
}

func stampOf(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())
}

// Shutdown stops every container this node manages, as the platform's
// doing, in parallel; their exits are metered like any other.
func (r *Supervisor) Shutdown(ctx context.Context) error {
	r.stopProbes()
	obs, err := r.observe(ctx)
	if err != nil {
		return err
	}
	var g errgroup.Group
	for _, cs := range obs {
		for _, c := range cs {
			if c.running {
				g.Go(func() error {
					r.stop(ctx, &c, events.ByPlatform)
					return nil
				})
			}
		}
	}
	return g.Wait()
}

// RemoveExited removes every container of this node that no longer runs. Run
// after Shutdown, once the agent metered their ends, it makes the next start
// begin afresh rather than take the shutdown for a crash to back off from.
func (r *Supervisor) RemoveExited(ctx context.Context) error {
	obs, err := r.observe(ctx)
	if err != nil {
		return err
	}
	for _, cs := range obs {
		for _, c := range cs {
			if !c.running {
				r.remove(ctx, c.id, true)
			}
		}
	}
	return nil
}
