// Package tail ships the output of the node's labelled containers: it reads
// stdout and stderr through the engine's logs API with their timestamps, from
// a checkpoint per container and stream, turns them into log lines (package
// logs) and puts them into the agent's durable spool, which runtime/ship
// drains to the collector's POST /api/v1/logs.
//
// # Nothing lost, nothing duplicated
//
// Docker's logs API has no offsets, only times: a checkpoint is a position
// (time, the number of the stream's lines taken at exactly that time), and a
// line's Seq is the number of earlier lines of its stream with the same time.
// Both are what anyone reading the engine's files from any earlier point
// counts, so a line read twice gets the same id (logs.DeriveID), and the
// collector keeps one.
//
// The saved checkpoint advances only once the collector acknowledged the lines
// (ship.Options.OnAck); after a crash the tailer reads again from it: lines
// that were spooled but not acknowledged are spooled again with their ids.
// The engine's log files are therefore the outbox of log lines: a line is in
// them before it is read and stays there until the checkpoint passes it, so
// lines go straight to the spool, not through a state file (which, rewritten
// at every write, would grow with every line of a backlog).
//
// While the process lives, reading goes on after the last line handed to the
// spool: a stream reopened after a container restart takes no line twice.
//
// # What the engine itself can lose
//
// Lines the engine deleted before they were read are gone: those of a
// container removed while the agent was down, or rotated out of its last
// json-file (max-file) while the agent was down or far behind (Docker 20.10
// also loses lines when a file rotates every few lines). A node clock stepped
// backwards makes the lines written until it caught up sort before the
// checkpoint, which skips them.
package tail

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/usage"
)

// StateFile is the name of the checkpoint file in the agent's spool directory.
const StateFile = "log-checkpoints.json"

// Engine is what the tailer needs of the container engine
// (runtime/engine/docker implements it).
type Engine interface {
	List(ctx context.Context) ([]engine.Container, error)
	Inspect(ctx context.Context, id string) (engine.Container, error)
	Events(ctx context.Context, since time.Time) (<-chan engine.Event, <-chan error)
	// Logs calls fn with each message of the container's stdout and stderr
	// with a time at or after since (zero: all), following while it runs if
	// follow is set, and returns at the end of the stream.
	Logs(ctx context.Context, id string, since time.Time, follow bool, fn func(engine.LogMessage) error) error
}

// Options are what a Tailer is built from.
type Options struct {
	Config Config
	// Node is this node's name: the lines' node label, and the containers
	// whose paasmeter.node label names another node are left to that node.
	Node   string
	Engine Engine
	Spool  *spool.Spool
	// StatePath is the checkpoint file (StateFile in the spool's directory).
	StatePath string
	// SpoolMaxBytes, when positive, is the spool's size limit: log lines fill
	// at most three quarters of it and then wait in the engine's files, so
	// usage records and events, which are money, keep the rest.
	SpoolMaxBytes int64
	Logger        *slog.Logger
	// Registry receives the delivery accounting.
	Registry prometheus.Registerer
	// Wake is signalled after lines are spooled, so the shipper need not wait.
	Wake chan<- struct{}
	// Failpoints kill the process at chosen moments (crash tests only).
	Failpoints *failpoint.Set
}

// Tailer follows the output of the node's labelled containers.
type Tailer struct {
	o   Options
	log *slog.Logger
	m   *metrics
	// lines carries encoded lines to the spool writer.
	lines chan []byte
	// followers are the goroutines reading one container each.
	followers sync.WaitGroup

	mu sync.Mutex
	// conts are the containers followed, or removed with lines not yet
	// acknowledged, by id; byName the same by name (the lines' label).
	conts, byName map[string]*container
	tenants       map[string]*rate.Limiter
	lastEvent     time.Time

	// saveMu keeps checkpoint files in the order of their contents.
	saveMu sync.Mutex
}

// container is one container followed.
type container struct {
	c engine.Container
	// labels are the lines' labels but the stream.
	labels  map[string]string
	limiter *rate.Limiter
	// counts are the container's delivery counters, by outcome.
	counts counters
	// wake tells the follower the container started again or is gone.
	wake chan struct{}
	// streams hold the positions of stdout and stderr (guarded by Tailer.mu).
	streams map[string]*stream
	// gone: the container is removed and every line read.
	gone bool
}

// New builds a Tailer.
func New(o Options) (*Tailer, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("tail: config: %w", err)
	}
	if o.Node == "" || o.Engine == nil || o.Spool == nil || o.StatePath == "" {
		return nil, errors.New("tail: a node name, an engine, a spool and a state path are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	t := &Tailer{o: o, log: o.Logger, lines: make(chan []byte, writeBatchLines),
		conts: map[string]*container{}, byName: map[string]*container{}, tenants: map[string]*rate.Limiter{}}
	var err error
	if t.m, err = newMetrics(o.Registry, t); err != nil {
		return nil, err
	}
	return t, nil
}

// Run follows the containers until ctx ends.
func (t *Tailer) Run(ctx context.Context) error {
	saved, err := t.load()
	if err != nil {
		return err
	}
	defer t.followers.Wait()
	writerDone := make(chan struct{})
	go func() { t.writeLoop(ctx); close(writerDone) }()
	defer func() { <-writerDone }()

	// Events from just before the first listing on are replayed, so a
	// container that starts between the listing and the subscription is not
	// missed.
	t.mu.Lock()
	t.lastEvent = time.Now().Add(-time.Second)
	t.mu.Unlock()
	if err := t.resync(ctx, saved); err != nil {
		return err
	}
	for ctx.Err() == nil {
		evs, errs := t.o.Engine.Events(ctx, t.lastEventTime())
	stream:
		for {
			select {
			case <-ctx.Done():
				return nil
			case ev, ok := <-evs:
				if !ok {
					break stream
				}
				t.handle(ctx, ev)
			case err := <-errs:
				if ctx.Err() != nil {
					return nil
				}
				t.log.Warn("engine event stream broke; listing the containers again", "err", err)
				break stream
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		if err := t.resync(ctx, nil); err != nil {
			t.log.Warn("listing the containers failed", "err", err)
		}
	}
	return nil
}

func (t *Tailer) lastEventTime() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastEvent
}

// resync follows every labelled container not followed yet, running or not
// (a stopped one may hold lines not read yet), and wakes the followers of the
// others. At the start, checkpoints of containers that are gone are
// forgotten: their lines went with them.
func (t *Tailer) resync(ctx context.Context, saved map[string]savedContainer) error {
	list, err := t.o.Engine.List(ctx)
	if err != nil {
		return fmt.Errorf("tail: list containers: %w", err)
	}
	for _, c := range list {
		t.follow(ctx, c, saved[c.ID])
	}
	if saved != nil {
		t.save()
	}
	return nil
}

// handle reacts to one engine event.
func (t *Tailer) handle(ctx context.Context, ev engine.Event) {
	t.mu.Lock()
	if ev.Time.After(t.lastEvent) {
		t.lastEvent = ev.Time
	}
	t.mu.Unlock()
	switch ev.Type {
	case engine.EventStart:
		c, err := t.o.Engine.Inspect(ctx, ev.ContainerID)
		if err != nil {
			if !cerrdefs.IsNotFound(err) {
				t.log.Warn("inspect after start failed", "container", ev.ContainerID, "err", err)
			}
			return
		}
		t.follow(ctx, c, savedContainer{})
	case engine.EventDestroy:
		t.mu.Lock()
		tc := t.conts[ev.ContainerID]
		t.mu.Unlock()
		if tc != nil {
			tc.poke()
		}
	}
}

// follow starts following c, from its saved checkpoint if it has one, unless
// it is followed already: its follower is then told to look again.
func (t *Tailer) follow(ctx context.Context, c engine.Container, saved savedContainer) {
	if c.Node != "" && c.Node != t.o.Node {
		return // another node's runtime made it: that node's agent reads it
	}
	t.mu.Lock()
	tc := t.conts[c.ID]
	t.mu.Unlock()
	if tc != nil {
		tc.poke()
		return
	}
	if ps := usage.ValidateLabels(0, c.Tenant, c.Project, c.App, c.Env, t.o.Node); len(ps) > 0 {
		t.log.Warn("container has invalid platform labels; its logs are not shipped", "container", c.Name, "problem", ps[0].String())
		return
	}
	tc = t.add(c, saved)
	t.followers.Go(func() { t.followLoop(ctx, tc) })
}

// add registers a container to follow, from its saved checkpoints.
func (t *Tailer) add(c engine.Container, saved savedContainer) *container {
	tc := &container{c: c, wake: make(chan struct{}, 1),
		labels: map[string]string{logs.LabelProject: c.Project, logs.LabelApp: c.App, logs.LabelEnv: string(c.Env),
			logs.LabelNode: t.o.Node, logs.LabelContainer: c.Name},
		limiter: rate.NewLimiter(rate.Limit(t.o.Config.ContainerRate.LinesPerSecond), t.o.Config.ContainerRate.Burst),
		counts:  t.m.counters(c, t.o.Node),
		streams: map[string]*stream{}}
	for _, name := range []string{engine.Stdout, engine.Stderr} {
		p := saved.Streams[name]
		tc.streams[name] = &stream{read: p, handed: p, acked: p}
	}
	t.mu.Lock()
	t.conts[c.ID], t.byName[c.Name] = tc, tc
	t.mu.Unlock()
	return tc
}

// poke wakes the container's follower if it waits.
func (tc *container) poke() {
	select {
	case tc.wake <- struct{}{}:
	default:
	}
}

// tenantLimiter returns the rate limit of an institution's lines on this node.
func (t *Tailer) tenantLimiter(tenant string) *rate.Limiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.tenants[tenant]
	if !ok {
		l = rate.NewLimiter(rate.Limit(t.o.Config.TenantRate.LinesPerSecond), t.o.Config.TenantRate.Burst)
		t.tenants[tenant] = l
	}
	return l
}
