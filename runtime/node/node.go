// Package node is one node of the platform as a process runs it: the metering
// agent, its log tailer, the shipper that empties their durable spool into the
// collector, the admin listener serving the node's /metrics and, given a
// platform spec, the supervisor that runs the institutions' containers and
// the wall that keeps their networks apart (runtime/netwall).
//
// `paasmeter agent`, `paasmeter up` and the runtime's tests (runtime/nodetest)
// all open their node here, so the node the tests run is the node that ships.
// What tests need beyond that is a handful of Options fields, each marked as
// a test hook, whose zero values are production's.
//
// A node is of one kind (Config.Kind), with the cgroup files under
// Config.CgroupRoot as the counters' source: a Docker node is built on the
// Docker Engine given as Options.Engine; a Kubernetes node, whose kubelet
// runs the containers, on a runtime/kube watcher of its pods, which the node
// makes from Config.Kubernetes and serves the agent and the tailer as their
// engine. The meter, spool, shipper, tailer and admin listener are the same.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"

	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/internal/tlsconf"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/kube"
	"github.com/paasmeter/paasmeter/runtime/netwall"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/supervise"
	"github.com/paasmeter/paasmeter/runtime/tail"
)

// Options are what a node is opened with.
type Options struct {
	// Config is the agent's configuration; Config.PlatformSpec is the file
	// Platform was read from, watched for changes.
	Config agent.Config
	// Token is the agent's bearer token at the collector.
	Token string
	// Platform, when set, is the platform spec (validated, quotas included)
	// whose containers the node runs; nil: the node only meters.
	Platform *spec.Spec
	// Engine is the container engine a Docker node meters and runs
	// containers on (nil for a Kubernetes node). The caller closes it after
	// the node.
	Engine *docker.Engine
	// Clock is the agent's and the supervisor's (default: the system clock).
	Clock clock.Clock
	// Logger is the node's parts' (default: slog.Default()).
	Logger *slog.Logger
	// Failpoints kill the process at chosen moments (crash tests only).
	Failpoints *failpoint.Set

	// Test hooks: the zero value of each is what production runs.

	// NoCgroups leaves the agent without cgroup access: it reads everything
	// from the engine's stats API.
	NoCgroups bool
	// WrapEngine, if set, stands between the agent and the engine.
	WrapEngine func(engine.Engine) engine.Engine
	// WrapDocker, if set, stands between the supervisor and the engine.
	WrapDocker func(supervise.Docker) supervise.Docker
	// HoldShipping, if set, starts the shipper only once it is closed.
	HoldShipping <-chan struct{}
	// ShipIdle is how long the shipper waits on an empty spool (0: the
	// shipper's default).
	ShipIdle time.Duration
	// RemoveGrace is how long the supervisor keeps an exited container (0:
	// the supervisor's default).
	RemoveGrace time.Duration
	// KubeClient, if set, is the Kubernetes node's API client, instead of
	// one made from Config.Kubernetes.
	KubeClient kubernetes.Interface
	// SpoolMaxBytes, when positive, bounds the spools instead of
	// Config.SpoolMaxBytes, which may not go below 1 MiB: a test fills the
	// spool with a few records.
	SpoolMaxBytes int64
}

// Node is an opened node: its parts are built and its admin listener bound;
// Run runs them, Close releases what Open took.
type Node struct {
	cfg      agent.Config
	log      *slog.Logger
	reg      *prometheus.Registry
	hold     <-chan struct{}
	spool    *spool.Spool
	dead     *spool.Spool
	agent    *agent.Agent
	tailer   *tail.Tailer // nil when Config.Logs.Enabled is off
	shipper  *ship.Shipper
	kube     *kube.Watcher         // nil but on a Kubernetes node
	platform *supervise.Supervisor // nil without a platform spec
	wall     *netwall.Wall         // nil without a platform spec
	admin    *http.Server
	adminLn  net.Listener
}

// OpenSpools opens the spool and its dead-letter spool under dir, as a node
// keeps them.
func OpenSpools(dir string, maxBytes int64) (*spool.Spool, *spool.Spool, error) {
	sp, err := spool.Open(filepath.Join(dir, "outgoing"), spool.Options{MaxBytes: maxBytes})
	if err != nil {
		return nil, nil, err
	}
	dead, err := spool.Open(filepath.Join(dir, "dead"), spool.Options{MaxBytes: maxBytes})
	if err != nil {
		sp.Close()
		return nil, nil, err
	}
	return sp, dead, nil
}

// Open builds the node's parts over the spools in Config.SpoolDir and binds
// its admin listener on Config.AdminListen; nothing runs until Run.
func Open(o Options) (n *Node, err error) {
	ac := o.Config
	n = &Node{cfg: ac, log: o.Logger, reg: prometheus.NewRegistry(), hold: o.HoldShipping}
	if n.log == nil {
		n.log = slog.Default()
	}
	spoolMax := ac.SpoolMaxBytes
	if o.SpoolMaxBytes > 0 {
		spoolMax = o.SpoolMaxBytes
	}
	if n.spool, n.dead, err = OpenSpools(ac.SpoolDir, spoolMax); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
		}
	}()
	var cg *cgroups.Reader
	if !o.NoCgroups {
		if cg, err = cgroups.NewReader(ac.CgroupRoot); err != nil {
			return nil, err
		}
	}
	// The Go runtime's and the process's metrics, as the collector's
	// /metrics has them.
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := n.reg.Register(c); err != nil {
			return nil, err
		}
	}
	var src interface {
		engine.Engine
		tail.Engine
	}
	switch {
	case ac.Kind == agent.KindKubernetes && (o.Engine != nil || o.Platform != nil):
		return nil, errors.New("agent: a Kubernetes node has no Docker engine and no platform spec: the kubelet runs its containers")
	case ac.Kind == agent.KindKubernetes:
		n.kube, err = kube.New(kube.Options{Config: ac.Kubernetes, Node: ac.Node, Client: o.KubeClient, Cgroups: cg, ProcRoot: ac.ProcRoot, Clock: o.Clock,
			Logger: n.log, Registry: n.reg})
		if err != nil {
			return nil, err
		}
		src = n.kube
	case o.Engine == nil:
		return nil, errors.New("agent: a Docker node needs its engine")
	default:
		src = o.Engine
	}
	var agentEngine engine.Engine = src
	if o.WrapEngine != nil {
		agentEngine = o.WrapEngine(src)
	}
	// The collector holds usage to the node's capacity; unknown, to its configured bounds.
	capacity, capErr := agent.ReadNodeCapacity(agent.CPUOnlinePath, agent.MeminfoPath)
	if capErr != nil {
		n.log.Warn("node capacity unknown: the collector bounds usage by its configuration only", "err", capErr)
	}
	wake := make(chan struct{}, 1)
	n.agent, err = agent.New(agent.Options{Config: ac, Engine: agentEngine, Cgroups: cg, Spool: n.spool, Clock: o.Clock, Logger: n.log,
		Registry: n.reg, Wake: wake, Failpoints: o.Failpoints, NodeCPUs: capacity.CPUs})
	if err != nil {
		return nil, err
	}
	shipClient, adminTLS, err := n.openTLS()
	if err != nil {
		return nil, err
	}
	so := ship.Options{Spool: n.spool, Dead: n.dead, BaseURLs: ac.URLs(), Token: o.Token,
		Client: shipClient, BatchSize: ac.BatchSize, Logger: n.log, Registry: n.reg, Failpoints: o.Failpoints,
		Wake: wake, Idle: o.ShipIdle, Capacity: capacity}
	if ac.Logs.Enabled {
		n.tailer, err = tail.New(tail.Options{Config: ac.Logs, Node: ac.Node, Engine: src, Spool: n.spool,
			StatePath: filepath.Join(ac.SpoolDir, tail.StateFile), SpoolMaxBytes: spoolMax, Logger: n.log, Registry: n.reg, Wake: wake,
			Failpoints: o.Failpoints})
		if err != nil {
			return nil, err
		}
		so.OnAck = n.tailer.Acked
	}
	if n.shipper, err = ship.New(so); err != nil {
		return nil, err
	}
	if o.Platform != nil {
		var d supervise.Docker = o.Engine.Client()
		if o.WrapDocker != nil {
			d = o.WrapDocker(d)
		}
		n.platform, err = supervise.New(supervise.Options{Spec: o.Platform, SpecPath: ac.PlatformSpec, Node: ac.Node, Docker: d,
			Clock: o.Clock, Logger: n.log, Registry: n.reg, Interval: ac.SuperviseInterval, StopTimeout: ac.StopTimeout,
			RemoveGrace: o.RemoveGrace, Emit: n.agent.Emit, Stopping: n.agent.Stopping})
		if err != nil {
			return nil, err
		}
		if n.wall, err = netwall.New(netwall.Options{Logger: n.log, Registry: n.reg}); err != nil {
			return nil, err
		}
	}
	if n.adminLn, err = net.Listen("tcp", ac.AdminListen); err != nil {
		return nil, fmt.Errorf("agent: admin listen %s: %w", ac.AdminListen, err)
	}
	if adminTLS != nil {
		n.adminLn = adminTLS.Listener(n.adminLn)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	n.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return n, nil
}

// openTLS builds the shipper's HTTP client (over agent.tls when
// the collectors' URLs are https) and the admin listener's TLS (nil without
// agent.admin_tls), and exports their certificates' expiry.
func (n *Node) openTLS() (*http.Client, *tlsconf.Server, error) {
	client := &http.Client{Timeout: time.Minute}
	var sources []*tlsconf.Source
	if strings.HasPrefix(n.cfg.URLs()[0], "https:") {
		c, err := tlsconf.NewClient("collector", n.cfg.TLS, n.log)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: tls: %w", err)
		}
		client.Transport = c.Transport()
		sources = append(sources, c.Source())
	}
	var admin *tlsconf.Server
	if n.cfg.AdminTLS.Enabled() {
		var err error
		if admin, err = tlsconf.NewServer("admin", n.cfg.AdminTLS, n.log); err != nil {
			return nil, nil, fmt.Errorf("agent: admin_tls: %w", err)
		}
		sources = append(sources, admin.Source())
	}
	if len(sources) > 0 {
		if err := n.reg.Register(tlsconf.ExpiryCollector(sources...)); err != nil {
			return nil, nil, err
		}
	}
	return client, admin, nil
}

// AdminAddr is where the node's /metrics is served.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// Registry holds the node's metrics: the agent's, the shipper's, the
// tailer's and the supervisor's.
func (n *Node) Registry() *prometheus.Registry { return n.reg }

// Spool is the outgoing spool, where records wait for the collector.
func (n *Node) Spool() *spool.Spool { return n.spool }

// Dead is the dead-letter spool, where records the collector refused wait.
func (n *Node) Dead() *spool.Spool { return n.dead }

// Run runs the node until ctx ends or a part fails. With stopPlatform
// (paasmeter up, which owns its platform), the platform's containers are then
// stopped and their ends metered and shipped before the agent stops; without
// it (paasmeter agent), they keep running for the next agent to adopt.
func (n *Node) Run(ctx context.Context, stopPlatform bool) error {
	n.log.Info("agent started", "node", n.cfg.Node, "collectors", n.cfg.URLs(), "spool", n.cfg.SpoolDir, "admin", n.AdminAddr(),
		"platform_spec", n.cfg.PlatformSpec)
	// The agent, the shipper and the admin listener outlive ctx by as much
	// as stopping the platform takes: the containers' ends must still be
	// metered and shipped.
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	g, gctx := errgroup.WithContext(life)
	if n.kube != nil {
		// The agent's and the tailer's engine calls wait for the watcher's
		// caches; the kubelet's probes' results go to the SLA beside the
		// agent's records.
		g.Go(func() error { return n.kube.Run(gctx) })
		g.Go(func() error {
			n.kube.Probe(gctx, n.cfg.SampleInterval, n.agent.Emit)
			return nil
		})
	}
	g.Go(func() error { return n.agent.Run(gctx) })
	g.Go(func() error {
		if n.hold != nil {
			select {
			case <-n.hold:
			case <-gctx.Done():
			}
		}
		return n.shipper.Run(gctx)
	})
	if n.tailer != nil {
		g.Go(func() error { return n.tailer.Run(gctx) })
	}
	g.Go(func() error {
		if err := n.admin.Serve(n.adminLn); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return n.admin.Shutdown(sctx)
	})
	if n.wall != nil {
		g.Go(func() error {
			n.watchWall(gctx)
			return nil
		})
	}
	g.Go(func() error {
		defer end()
		// The platform is supervised until ctx ends or another part failed.
		pctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(gctx, cancel)()
		if n.platform == nil {
			<-pctx.Done()
			return nil
		}
		err := n.platform.Run(pctx)
		if stopPlatform {
			err = errors.Join(err, n.stopPlatform(ctx, gctx))
		}
		return err
	})
	err := g.Wait()
	n.log.Info("agent stopped")
	return err
}

// watchWall checks, every sampling period until ctx ends, that the
// institutions' networks are walled off from each other, and restores the
// wall where a firewall reload or another dockerd took it down. A failed
// check is logged and shows in the wall's metrics; the next one tries again.
func (n *Node) watchWall(ctx context.Context) {
	tick := time.NewTicker(n.cfg.SampleInterval)
	defer tick.Stop()
	for {
		nets, err := n.platform.Networks(ctx)
		if err = errors.Join(err, n.wall.Check(ctx, nets)); err != nil && ctx.Err() == nil {
			n.log.Error("the network wall check failed; retrying next period", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

const (
	// drainTimeout bounds the wait, once the platform's containers are
	// stopped, for the agent to meter their ends and the shipper to empty the
	// spool; what is left stays in the spool for the next agent to ship.
	drainTimeout = 10 * time.Second
	// exitSettle: the engine reports a container's exit within milliseconds;
	// this is ample for the agent to close the run's last windows and spool
	// them before the spool is watched.
	exitSettle = time.Second
)

// stopPlatform stops the platform's containers (as the platform's doing),
// then waits, while running lasts, for the agent to meter their ends and the
// shipper to send them.
func (n *Node) stopPlatform(ctx, running context.Context) error {
	n.log.Info("stopping the platform's containers", "node", n.cfg.Node, "stop_timeout", n.cfg.StopTimeout)
	// The stop is bounded, but not by ctx: ctx ending is why we stop.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.cfg.StopTimeout+30*time.Second)
	defer cancel()
	if err := n.platform.Shutdown(sctx); err != nil {
		return fmt.Errorf("agent: stop the platform's containers: %w", err)
	}
	deadline := time.Now().Add(drainTimeout)
	wait := func(d time.Duration) bool {
		select {
		case <-running.Done():
			return false
		case <-time.After(d):
			return true
		}
	}
	if !wait(exitSettle) {
		return nil
	}
	for n.spool.Stats().Entries > 0 {
		if time.Now().After(deadline) {
			n.log.Warn("the spool is not empty yet; the next agent ships the rest", "entries", n.spool.Stats().Entries)
			return nil
		}
		if !wait(100 * time.Millisecond) {
			return nil
		}
	}
	n.log.Info("the platform's containers are stopped and their usage shipped")
	if err := n.platform.RemoveExited(sctx); err != nil {
		return fmt.Errorf("agent: remove the platform's stopped containers: %w", err)
	}
	return nil
}

// Close releases the admin listener and the spools, once Run returned or
// when it never ran.
func (n *Node) Close() error {
	var errs []error
	if n.adminLn != nil {
		// Serve closed it if Run ran.
		if err := n.adminLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, n.spool.Close(), n.dead.Close())...)
}
