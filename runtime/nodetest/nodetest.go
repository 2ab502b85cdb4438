// Package nodetest runs a whole node for the runtime's tests: a collector on
// an embedded store, and the node `paasmeter agent` runs (runtime/node: the
// agent, with its supervisor when given a platform spec) on the test Docker
// Engine, all in the test's process. A node can be restarted over the same
// spool and state, as an agent restart does.
package nodetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/node"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/supervise"
	"github.com/paasmeter/paasmeter/runtime/tail"
)

// AgentToken is the agent token the node's collector accepts.
const AgentToken = "test-agent-token"

// Options shape a test node.
type Options struct {
	Sample, Window time.Duration
	// Tenants the collector knows (default: caami).
	Tenants []string
	// SpoolMax bounds the spools, below what the configuration allows
	// (0: the configuration's default).
	SpoolMax int64
	// HoldShipping, when not nil, starts the shipper only once it is closed.
	HoldShipping <-chan struct{}
	// NoCgroups leaves the agent without cgroup access: the stats API only.
	NoCgroups bool
	// WrapEngine, if set, stands between the agent and the engine.
	WrapEngine func(engine.Engine) engine.Engine
	// WrapDocker, if set, stands between the supervisor and the engine.
	WrapDocker func(supervise.Docker) supervise.Docker
	// Platform, when set, is run by a supervisor beside the agent;
	// PlatformPath, when set, is the file it was read from, watched for changes.
	Platform     *spec.Spec
	PlatformPath string
	// SuperviseInterval and RemoveGrace tune the supervisor (defaults 200ms and 10s).
	SuperviseInterval, RemoveGrace time.Duration
	// Logs, when set, makes the node ship its containers' output too.
	Logs *tail.Config
}

// Node is a running test node.
type Node struct {
	Cli   *client.Client
	Store metering.Store
	Name  string
	// Reg holds the metrics of the current node (agent, shipper, tailer and supervisor).
	Reg       *prometheus.Registry
	Dead, Out *spool.Spool

	t      testing.TB
	o      Options
	dir    string
	apiURL string
	stop   func()
}

// Start starts a node; it stops at the end of the test.
func Start(t testing.TB, o Options) *Node {
	t.Helper()
	cli := dockertest.Client(t)
	dockertest.Busybox(t, cli)
	if len(o.Tenants) == 0 {
		o.Tenants = []string{"caami"}
	}
	if o.SuperviseInterval == 0 {
		o.SuperviseInterval = 200 * time.Millisecond
	}
	n := &Node{Cli: cli, t: t, o: o, Name: fmt.Sprintf("node-%d", time.Now().UnixNano()%1e9), dir: t.TempDir()}
	col, err := collectortest.Start(t.TempDir(), n.Name, AgentToken, o.Tenants...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)
	n.Store, n.apiURL = col.Store, col.URL
	t.Cleanup(n.removeManaged) // after the node stopped (cleanups run last first)
	n.start()
	t.Cleanup(n.Stop)
	return n
}

// removeManaged removes the supervisor's containers and their cgroup parents.
func (n *Node) removeManaged() {
	ctx := context.Background()
	list, err := n.Cli.ContainerList(ctx, listManaged(n.Name))
	if err != nil {
		n.t.Error(err)
		return
	}
	for _, c := range list {
		n.Cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		dockertest.RemoveCgroupParent("/paasmeter/" + c.Labels[engine.LabelRun])
	}
}

func listManaged(node string) container.ListOptions {
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", supervise.LabelNode+"="+node))}
}

// SpoolDir is the agent's spool directory, with its state files.
func (n *Node) SpoolDir() string { return n.dir }

// Stop stops the agent, its shipper and its supervisor (the containers keep running).
func (n *Node) Stop() {
	if n.stop != nil {
		n.stop()
		n.stop = nil
	}
}

// Restart stops the node's agent and starts a new one over the same spool
// and meter state, as a restarted agent process would.
func (n *Node) Restart() {
	n.Stop()
	n.start()
}

func (n *Node) start() {
	t, o := n.t, n.o
	eng, err := docker.New(n.Cli.DaemonHost())
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Node, cfg.SpoolDir, cfg.SampleInterval, cfg.Window, cfg.CollectorURL = n.Name, n.dir, o.Sample, o.Window, n.apiURL
	cfg.AdminListen, cfg.PlatformSpec, cfg.SuperviseInterval, cfg.StopTimeout = "127.0.0.1:0", o.PlatformPath, o.SuperviseInterval, time.Second
	cfg.Logs.Enabled = false // only the tests of the tailer ship logs
	if o.Logs != nil {
		cfg.Logs = *o.Logs
	}
	// The shipper looks at an idle spool every 100ms and containers get 1s
	// to stop, so tests wait for little.
	nd, err := node.Open(node.Options{Config: cfg, Token: AgentToken, Platform: o.Platform, Engine: eng,
		Logger:    slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		NoCgroups: o.NoCgroups, WrapEngine: o.WrapEngine, WrapDocker: o.WrapDocker, HoldShipping: o.HoldShipping,
		ShipIdle: 100 * time.Millisecond, RemoveGrace: o.RemoveGrace, SpoolMaxBytes: o.SpoolMax})
	if err != nil {
		eng.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// The platform's containers keep running when the node stops, as when
	// an agent process stops: the next one adopts them.
	go func() { done <- nd.Run(ctx, false) }()
	n.Reg, n.Out, n.Dead = nd.Registry(), nd.Spool(), nd.Dead()
	n.stop = func() {
		cancel()
		if err := errors.Join(<-done, nd.Close(), eng.Close()); err != nil {
			t.Error(err)
		}
	}
}

// Managed returns the containers the node's supervisor made, running or not.
func (n *Node) Managed(ctx context.Context) []container.Summary {
	n.t.Helper()
	list, err := n.Cli.ContainerList(ctx, listManaged(n.Name))
	if err != nil {
		n.t.Fatal(err)
	}
	return list
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
