// Package docker is the engine.Engine of the Docker Engine API, through
// github.com/docker/docker with API version negotiation (Debian's engine 20.10
// speaks 1.41).
package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"

	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/usage"
)

// Engine talks to one Docker Engine.
type Engine struct {
	cli       *client.Client
	negotiate sync.Once
}

var _ engine.Engine = (*Engine)(nil)

// New connects to the engine at host (e.g. unix:///var/run/docker.sock; empty
// means the client's environment defaults).
func New(host string) (*Engine, error) {
	opts := []client.Opt{client.WithAPIVersionNegotiation()}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	} else {
		opts = append(opts, client.FromEnv)
	}
	cli, err := client.NewClientWithOpts(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker: client for %q: %w", host, err)
	}
	return &Engine{cli: cli}, nil
}

// Client returns the underlying API client, for other parts of the node (the
// runtime's supervisor) to share; the Engine's own calls go through it too.
// It settles the API version first: the client otherwise negotiates it lazily
// on first use, which races when several goroutines (the agent's and the log
// tailer's) make that first use together.
func (e *Engine) Client() *client.Client {
	e.negotiate.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		e.cli.NegotiateAPIVersion(ctx)
	})
	return e.cli
}

// Close releases the client.
func (e *Engine) Close() error { return e.cli.Close() }

func labelled() filters.Args { return filters.NewArgs(filters.Arg("label", engine.LabelTenant)) }

// List implements engine.Engine.
func (e *Engine) List(ctx context.Context) ([]engine.Container, error) {
	list, err := e.Client().ContainerList(ctx, container.ListOptions{All: true, Filters: labelled()})
	if err != nil {
		return nil, fmt.Errorf("docker: list containers: %w", err)
	}
	out := make([]engine.Container, 0, len(list))
	for _, s := range list {
		c, err := e.Inspect(ctx, s.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed between list and inspect
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Inspect implements engine.Engine.
func (e *Engine) Inspect(ctx context.Context, id string) (engine.Container, error) {
	in, err := e.Client().ContainerInspect(ctx, id)
	if err != nil {
		return engine.Container{}, fmt.Errorf("docker: inspect %s: %w", id, err)
	}
	labels := map[string]string{}
	if in.Config != nil {
		labels = in.Config.Labels
	}
	c := engine.Container{
		ID: in.ID, Name: strings.TrimPrefix(in.Name, "/"),
		Tenant: labels[engine.LabelTenant], Project: labels[engine.LabelProject], App: labels[engine.LabelApp],
		Env: usage.Environment(labels[engine.LabelEnv]), Replica: labels[engine.LabelReplica], RunLabel: labels[engine.LabelRun],
		Node: labels[engine.LabelNode],
	}
	if st := in.State; st != nil {
		c.Running, c.Pid, c.ExitCode, c.OOMKilled = st.Running, st.Pid, st.ExitCode, st.OOMKilled
		c.StartedAt = parseTime(st.StartedAt)
		c.FinishedAt = parseTime(st.FinishedAt)
	}
	if hc := in.HostConfig; hc != nil {
		c.CgroupParent = hc.CgroupParent
		if hc.Memory > 0 {
			c.MemoryLimitBytes = uint64(hc.Memory)
		}
		switch {
		case hc.NanoCPUs > 0:
			c.CPULimitMillicores = uint64(hc.NanoCPUs / 1_000_000)
		case hc.CPUQuota > 0 && hc.CPUPeriod > 0:
			c.CPULimitMillicores = uint64(hc.CPUQuota * 1000 / hc.CPUPeriod)
		}
	}
	return c, nil
}

// Stats implements engine.Engine.
func (e *Engine) Stats(ctx context.Context, id string) (engine.Stats, error) {
	resp, err := e.Client().ContainerStatsOneShot(ctx, id)
	if err != nil {
		return engine.Stats{}, fmt.Errorf("docker: stats of %s: %w", id, err)
	}
	defer resp.Body.Close()
	var s container.StatsResponse
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return engine.Stats{}, fmt.Errorf("docker: stats of %s: %w", id, err)
	}
	out := engine.Stats{CPUUsageNs: s.CPUStats.CPUUsage.TotalUsage, MemoryUsageBytes: s.MemoryStats.Usage, Pids: s.PidsStats.Current}
	// The working set as the docker CLI and kubelet compute it: usage less
	// inactive file cache (v1 and v2 name it differently).
	inactive := s.MemoryStats.Stats["total_inactive_file"]
	if inactive == 0 {
		inactive = s.MemoryStats.Stats["inactive_file"]
	}
	if inactive < out.MemoryUsageBytes {
		out.MemoryWorkingSetBytes = out.MemoryUsageBytes - inactive
	}
	for _, n := range s.Networks {
		out.NetRxBytes += n.RxBytes
		out.NetTxBytes += n.TxBytes
	}
	return out, nil
}

// Volumes implements engine.Engine.
func (e *Engine) Volumes(ctx context.Context) ([]engine.Volume, error) {
	list, err := e.Client().VolumeList(ctx, volume.ListOptions{Filters: labelled()})
	if err != nil {
		return nil, fmt.Errorf("docker: list volumes: %w", err)
	}
	out := make([]engine.Volume, 0, len(list.Volumes))
	for _, v := range list.Volumes {
		l := v.Labels
		size, _ := strconv.ParseUint(l[engine.LabelSize], 10, 64)
		out = append(out, engine.Volume{Name: v.Name, Tenant: l[engine.LabelTenant], Project: l[engine.LabelProject], App: l[engine.LabelApp],
			Env: usage.Environment(l[engine.LabelEnv]), SizeBytes: size, Node: l[engine.LabelNode], CreatedAt: parseTime(v.CreatedAt)})
	}
	return out, nil
}

// parseTime reads the engine's RFC 3339 times; "0001-01-01T00:00:00Z" (never) is zero.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t.UTC()
}

// Events implements engine.Engine.
func (e *Engine) Events(ctx context.Context, since time.Time) (<-chan engine.Event, <-chan error) {
	f := labelled()
	f.Add("type", string(events.ContainerEventType))
	opts := events.ListOptions{Filters: f}
	if !since.IsZero() {
		opts.Since = fmt.Sprintf("%d.%09d", since.Unix(), since.Nanosecond())
	}
	msgs, errs := e.Client().Events(ctx, opts)
	out := make(chan engine.Event)
	outErr := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m := <-msgs:
				ev, ok := convert(m)
				if !ok {
					continue
				}
				select {
				case out <- ev:
				case <-ctx.Done():
					outErr <- ctx.Err()
					return
				}
			case err := <-errs:
				outErr <- fmt.Errorf("docker: event stream: %w", err)
				return
			}
		}
	}()
	return out, outErr
}

func convert(m events.Message) (engine.Event, bool) {
	action := string(m.Action)
	ev := engine.Event{ContainerID: m.Actor.ID, Time: time.Unix(0, m.TimeNano).UTC(), Labels: m.Actor.Attributes}
	switch {
	case action == "start", action == "die", action == "oom", action == "destroy", action == "stop", action == "kill":
		ev.Type = engine.EventType(action)
	case strings.HasPrefix(action, "health_status"):
		// "health_status: healthy" on engines before API 1.44.
		ev.Type = engine.EventHealth
		ev.Health = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(action, "health_status"), ":"))
	default:
		return engine.Event{}, false
	}
	if code, err := strconv.Atoi(m.Actor.Attributes["exitCode"]); err == nil {
		ev.ExitCode, ev.ExitKnown = code, true
	}
	ev.Signal = m.Actor.Attributes["signal"]
	return ev, true
}
