package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/paasmeter/paasmeter/collector"
	"github.com/paasmeter/paasmeter/internal/clock"
	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/reconcile"
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/spool"
	"github.com/paasmeter/paasmeter/runtime/tail"
)

func (a *app) agentCmd() *cobra.Command {
	var fp string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: meter labelled containers and ship usage and events",
		Long: `Run the node agent. It follows every container of the Docker Engine that carries the
label paasmeter.tenant (with paasmeter.project, paasmeter.app and paasmeter.env), samples
its cgroups every agent.sample_interval, closes usage windows of agent.window (aligned to
the clock, a final partial one at stop, die or OOM kill), and ships usage records and
lifecycle events to agent.collector_url through a durable spool in agent.spool_dir.

The agent token comes from PAASMETER_AGENT_TOKEN or agent.token_file. /metrics (container
metrics under cAdvisor's names, spool and shipping health) is served on agent.admin_listen.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fps, err := failpoint.Parse(fp)
			if err != nil {
				return err
			}
			return a.runAgent(cmd.Context(), fps)
		},
	}
	cmd.Flags().StringVar(&fp, "failpoint", "", "crash tests only: kill the agent at NAME[:N] ("+strings.Join(failpoint.Names, ", ")+")")
	cmd.Flags().MarkHidden("failpoint")
	return cmd
}

// agentToken reads the token from the environment or the configured file.
func (a *app) agentToken(file string) (string, error) {
	if t := strings.TrimSpace(a.getenv("PAASMETER_AGENT_TOKEN")); t != "" {
		return t, nil
	}
	if file == "" {
		return "", errors.New("agent: no token: set PAASMETER_AGENT_TOKEN or agent.token_file")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("agent: token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// openSpools opens the spool and its dead-letter spool under dir.
func openSpools(dir string, maxBytes int64) (*spool.Spool, *spool.Spool, error) {
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

func (a *app) runAgent(ctx context.Context, fps *failpoint.Set) (err error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	log := a.logger(cfg)
	token, plat, err := a.prepareAgent(&cfg.Agent)
	if err != nil {
		return err
	}
	eng, err := docker.New(cfg.Agent.DockerHost)
	if err != nil {
		return err
	}
	defer eng.Close()
	n, err := openNode(cfg.Agent, a.clock, log, token, plat, eng, fps)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, n.close()) }()
	// The platform's containers keep running after the agent stops: the next
	// agent adopts them.
	return n.run(ctx, false)
}

// prepareAgent completes the agent's configuration (the node name defaults to
// the host name) and reads what must be right before anything starts: the
// token, and the platform spec when there is one, quotas included.
func (a *app) prepareAgent(ac *agent.Config) (token string, plat *spec.Spec, err error) {
	if ac.Node == "" {
		if ac.Node, err = os.Hostname(); err != nil {
			return "", nil, fmt.Errorf("agent: node name: %w", err)
		}
	}
	if token, err = a.agentToken(ac.TokenFile); err != nil {
		return "", nil, err
	}
	if ac.PlatformSpec != "" {
		if plat, err = spec.Load(ac.PlatformSpec); err != nil {
			return "", nil, fmt.Errorf("agent: platform_spec: %w", err)
		}
	}
	return token, plat, nil
}

// node is everything an agent runs on its node: the agent, its log tailer,
// its shipper and admin listener and, given a platform spec, the reconciler.
type node struct {
	cfg      agent.Config
	log      *slog.Logger
	spool    *spool.Spool
	dead     *spool.Spool
	agent    *agent.Agent
	tailer   *tail.Tailer // nil when agent.logs.enabled is off
	shipper  *ship.Shipper
	platform *reconcile.Reconciler // nil without a platform spec
	admin    *http.Server
	adminLn  net.Listener
}

// openNode builds the node's parts and binds the admin listener; nothing runs
// until run. plat may be nil (the agent only meters).
func openNode(ac agent.Config, clk clock.Clock, log *slog.Logger, token string, plat *spec.Spec, eng *docker.Engine, fps *failpoint.Set) (n *node, err error) {
	n = &node{cfg: ac, log: log}
	if n.spool, n.dead, err = openSpools(ac.SpoolDir, ac.SpoolMaxBytes); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.close())
		}
	}()
	cg, err := cgroups.NewReader(ac.CgroupRoot)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := collector.RegisterProcessMetrics(reg); err != nil {
		return nil, err
	}
	wake := make(chan struct{}, 1)
	n.agent, err = agent.New(agent.Options{Config: ac, Engine: eng, Cgroups: cg, Spool: n.spool, Clock: clk, Logger: log,
		Registry: reg, Wake: wake, Failpoints: fps})
	if err != nil {
		return nil, err
	}
	so := ship.Options{Spool: n.spool, Dead: n.dead, BaseURL: ac.CollectorURL, Token: token,
		Client: &http.Client{Timeout: time.Minute}, BatchSize: ac.BatchSize, Logger: log, Registry: reg, Failpoints: fps, Wake: wake}
	if ac.Logs.Enabled {
		n.tailer, err = tail.New(tail.Options{Config: ac.Logs, Node: ac.Node, Engine: eng, Spool: n.spool,
			StatePath: filepath.Join(ac.SpoolDir, tail.StateFile), SpoolMaxBytes: ac.SpoolMaxBytes, Logger: log, Registry: reg, Wake: wake, Failpoints: fps})
		if err != nil {
			return nil, err
		}
		so.OnAck = n.tailer.Acked
	}
	n.shipper, err = ship.New(so)
	if err != nil {
		return nil, err
	}
	if plat != nil {
		n.platform, err = reconcile.New(reconcile.Options{Spec: plat, SpecPath: ac.PlatformSpec, Node: ac.Node, Docker: eng.Client(),
			Clock: clk, Logger: log, Registry: reg, Interval: ac.ReconcileInterval, StopTimeout: ac.StopTimeout,
			Emit: n.agent.Emit, Stopping: n.agent.Stopping})
		if err != nil {
			return nil, err
		}
	}
	if n.adminLn, err = net.Listen("tcp", ac.AdminListen); err != nil {
		return nil, fmt.Errorf("agent: admin listen %s: %w", ac.AdminListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	n.admin = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return n, nil
}

// adminAddr is where the node's /metrics is served.
func (n *node) adminAddr() string { return n.adminLn.Addr().String() }

// run runs the node until ctx ends or a part fails. With stopPlatform
// (paasmeter up, which owns its platform), the platform's containers are then
// stopped and their ends metered and shipped before the agent stops; without
// it (paasmeter agent), they keep running for the next agent to adopt.
func (n *node) run(ctx context.Context, stopPlatform bool) error {
	n.log.Info("agent started", "node", n.cfg.Node, "collector", n.cfg.CollectorURL, "spool", n.cfg.SpoolDir, "admin", n.adminAddr(),
		"platform_spec", n.cfg.PlatformSpec)
	// The agent, the shipper and the admin listener outlive ctx by as much
	// as stopping the platform takes: the containers' ends must still be
	// metered and shipped.
	life, end := context.WithCancel(context.WithoutCancel(ctx))
	defer end()
	g, gctx := errgroup.WithContext(life)
	g.Go(func() error { return n.agent.Run(gctx) })
	g.Go(func() error { return n.shipper.Run(gctx) })
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
	g.Go(func() error {
		defer end()
		// The platform is reconciled until ctx ends or another part failed.
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
func (n *node) stopPlatform(ctx, running context.Context) error {
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

// close releases the admin listener and the spools, once run returned or
// when it never ran.
func (n *node) close() error {
	var errs []error
	if n.adminLn != nil {
		// Serve closed it if run ran.
		if err := n.adminLn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, n.spool.Close(), n.dead.Close())...)
}
