// Package nodetest runs a whole node for the runtime's tests: a collector on
// an embedded store, and the agent (with its reconciler when given a platform
// spec) on the test Docker Engine, all in the test's process. A node can be
// restarted over the same spool and state, as an agent restart does.
package nodetest

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
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
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/reconcile"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/tail"
)

// AgentToken is the agent token the node's collector accepts.
const AgentToken = "test-agent-token"

// Options shape a test node.
type Options struct {
	Sample, Window time.Duration
	// Tenants the collector knows (default: caami).
	Tenants []string
	// SpoolMax bounds the spool (0: default).
	SpoolMax int64
	// HoldShipping, when not nil, starts the shipper only once it is closed.
	HoldShipping <-chan struct{}
	// NoCgroups leaves the agent without cgroup access: the stats API only.
	NoCgroups bool
	// WrapEngine, if set, stands between the agent and the engine.
	WrapEngine func(engine.Engine) engine.Engine
	// WrapDocker, if set, stands between the reconciler and the engine.
	WrapDocker func(reconcile.Docker) reconcile.Docker
	// Platform, when set, is run by a reconciler beside the agent;
	// PlatformPath, when set, is the file it was read from, watched for changes.
	Platform     *spec.Spec
	PlatformPath string
	// ReconcileInterval and RemoveGrace tune the reconciler (defaults 200ms and 10s).
	ReconcileInterval, RemoveGrace time.Duration
	// Logs, when set, makes the node ship its containers' output too.
	Logs *tail.Config
}

// Node is a running test node.
type Node struct {
	Cli   *client.Client
	Store metering.Store
	Name  string
	// Reg holds the metrics of the current agent (and reconciler).
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
	if o.ReconcileInterval == 0 {
		o.ReconcileInterval = 200 * time.Millisecond
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

// removeManaged removes the reconciler's containers and their cgroup parents.
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
	return container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", reconcile.LabelNode+"="+node))}
}

// SpoolDir is the agent's spool directory, with its state files.
func (n *Node) SpoolDir() string { return n.dir }

// Stop stops the agent, its shipper and its reconciler (the containers keep running).
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
	out, err := spool.Open(filepath.Join(n.dir, "outgoing"), spool.Options{MaxBytes: o.SpoolMax})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := spool.Open(filepath.Join(n.dir, "dead"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var cg *cgroups.Reader
	if !o.NoCgroups {
		if cg, err = cgroups.NewReader("/sys/fs/cgroup"); err != nil {
			t.Fatal(err)
		}
	}
	eng, err := docker.New(n.Cli.DaemonHost())
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.Node, cfg.SpoolDir, cfg.SampleInterval, cfg.Window, cfg.CollectorURL = n.Name, n.dir, o.Sample, o.Window, n.apiURL
	reg := prometheus.NewRegistry()
	wake := make(chan struct{}, 1)
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var agentEngine engine.Engine = eng
	if o.WrapEngine != nil {
		agentEngine = o.WrapEngine(eng)
	}
	ag, err := agent.New(agent.Options{Config: cfg, Engine: agentEngine, Cgroups: cg, Spool: out, Logger: logger, Registry: reg, Wake: wake})
	if err != nil {
		t.Fatal(err)
	}
	var tl *tail.Tailer
	if o.Logs != nil {
		tl, err = tail.New(tail.Options{Config: *o.Logs, Node: n.Name, Engine: eng, Spool: out, StatePath: filepath.Join(n.dir, tail.StateFile),
			SpoolMaxBytes: o.SpoolMax, Logger: logger, Registry: reg, Wake: wake})
		if err != nil {
			t.Fatal(err)
		}
	}
	so := ship.Options{Spool: out, Dead: dead, BaseURL: n.apiURL, Token: AgentToken, Client: http.DefaultClient,
		Logger: logger, Registry: reg, Wake: wake, Idle: 100 * time.Millisecond}
	if tl != nil {
		so.OnAck = tl.Acked
	}
	sh, err := ship.New(so)
	if err != nil {
		t.Fatal(err)
	}
	var rec *reconcile.Reconciler
	if o.Platform != nil {
		var d reconcile.Docker = eng.Client()
		if o.WrapDocker != nil {
			d = o.WrapDocker(d)
		}
		rec, err = reconcile.New(reconcile.Options{Spec: o.Platform, SpecPath: o.PlatformPath, Node: n.Name, Docker: d, Logger: logger, Registry: reg,
			Interval: o.ReconcileInterval, StopTimeout: time.Second, RemoveGrace: o.RemoveGrace, Emit: ag.Emit, Stopping: ag.Stopping})
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 4)
	running := 2
	go func() { ag.Run(ctx); done <- struct{}{} }()
	go func() {
		if o.HoldShipping != nil {
			select {
			case <-o.HoldShipping:
			case <-ctx.Done():
			}
		}
		sh.Run(ctx)
		done <- struct{}{}
	}()
	if rec != nil {
		running++
		go func() { rec.Run(ctx); done <- struct{}{} }()
	}
	if tl != nil {
		running++
		go func() { tl.Run(ctx); done <- struct{}{} }()
	}
	n.Reg, n.Out, n.Dead = reg, out, dead
	n.stop = func() {
		cancel()
		for range running {
			<-done
		}
		out.Close()
		dead.Close()
		eng.Close()
	}
}

// Managed returns the containers the node's reconciler made, running or not.
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
