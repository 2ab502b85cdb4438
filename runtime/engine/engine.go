// Package engine is how the agent sees the container engine of its node: the
// labelled containers, their state, and the stream of what happens to them.
// The Docker adapter lives in engine/docker.
package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/paasmeter/paasmeter/usage"
)

// The labels that put a container under the platform's metering. A container
// without LabelTenant is not the platform's and is ignored.
const (
	LabelTenant  = "paasmeter.tenant"
	LabelProject = "paasmeter.project"
	LabelApp     = "paasmeter.app"
	LabelEnv     = "paasmeter.env"
	// LabelReplica and LabelRun are set by the paasmeter runtime; for other
	// containers the run id is derived from the container id and start time.
	LabelReplica = "paasmeter.replica"
	LabelRun     = "paasmeter.run"
	// LabelSize is a persistent volume's provisioned size in bytes: what it is
	// billed for, whatever it holds.
	LabelSize = "paasmeter.size_bytes"
	// LabelNode names the node whose runtime made the container or volume.
	// Its agent meters it; other agents sharing the engine leave it alone.
	// Containers and volumes others make carry none, and every agent of the
	// engine meters them.
	LabelNode = "paasmeter.node"
)

// Engine is a container engine.
type Engine interface {
	// List returns every container (running or not) that carries LabelTenant.
	List(ctx context.Context) ([]Container, error)
	// Inspect returns one container's current state.
	Inspect(ctx context.Context, id string) (Container, error)
	// Stats reads a running container's counters through the engine: slow
	// (about a second per call), the agent's fallback when cgroup files cannot
	// be read.
	Stats(ctx context.Context, id string) (Stats, error)
	// Volumes returns every volume that carries LabelTenant.
	Volumes(ctx context.Context) ([]Volume, error)
	// Events streams what happens to labelled containers from since on
	// (engines replay what they still remember), until ctx ends or the stream
	// breaks; the error channel then says why.
	Events(ctx context.Context, since time.Time) (<-chan Event, <-chan error)
}

// Container is a labelled container as the engine reports it.
type Container struct {
	ID      string
	Name    string
	Tenant  string
	Project string
	App     string
	Env     usage.Environment
	Replica string
	// RunLabel is LabelRun when set.
	RunLabel string
	// Node is LabelNode when set.
	Node    string
	Running bool
	// Pid is the container's init process while it runs.
	Pid        int
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int
	OOMKilled  bool
	// CgroupParent is the parent cgroup the container was started under ("" for the engine's default).
	CgroupParent string
	// Cgroup is the container's own cgroup, when the engine knows it ("":
	// the agent finds it from the process or the known layouts).
	Cgroup string
	// RunCgroup, when set, is a cgroup that counts this run alone and
	// outlives it, but belongs to someone else: the agent reads the run's
	// final counters there, as from its own per-run parent, and leaves it in
	// place (Kubernetes: the pod's cgroup of a one-container pod that is
	// never restarted, which the kubelet removes).
	RunCgroup string
	// NetShared says the network namespace of Pid began before this run
	// and outlives it (Kubernetes: the pod's, across its container's
	// restarts): the run is billed what its counters grow by from its first
	// sample on (meter.Run.NetShared).
	NetShared bool
	// Limits: 0 means unlimited.
	MemoryLimitBytes   uint64
	CPULimitMillicores uint64
}

// Stats are a container's counters as the engine reports them.
type Stats struct {
	CPUUsageNs            uint64
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64
	Pids                  uint64
	NetRxBytes            uint64
	NetTxBytes            uint64
}

// Volume is a labelled persistent volume.
type Volume struct {
	Name                 string
	Tenant, Project, App string
	Env                  usage.Environment
	// SizeBytes is LabelSize (0 when missing or not a number).
	SizeBytes uint64
	// Node is LabelNode: the node whose runtime made the volume ("" for
	// volumes others make, metered by every agent of the engine).
	Node      string
	CreatedAt time.Time
}

// RunID identifies the current (or last) run of c: a restart is a new run.
// It is the same whoever derives it, so a restarted agent names runs as before.
func (c *Container) RunID() string {
	if c.RunLabel != "" {
		return c.RunLabel
	}
	id := c.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("%s-%d", id, c.StartedAt.UnixNano())
}

// EventType is what happened to a container.
type EventType string

// The engine events the agent follows.
const (
	EventStart   EventType = "start"
	EventDie     EventType = "die"
	EventOOM     EventType = "oom"
	EventDestroy EventType = "destroy"
	EventStop    EventType = "stop"
	EventKill    EventType = "kill"
	EventHealth  EventType = "health_status"
)

// Event is one thing that happened to a labelled container.
type Event struct {
	Type        EventType
	ContainerID string
	Time        time.Time
	// Labels of the container when the event happened (it may be gone since).
	Labels map[string]string
	// ExitCode of a die event, when ExitKnown (the engine sends it as an
	// attribute of the event, so it is known even once the container is gone);
	// Health of a health_status event; Signal of a kill.
	ExitCode  int
	ExitKnown bool
	Health    string
	Signal    string
}
