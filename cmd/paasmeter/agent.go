package main

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/paasmeter/paasmeter/runtime/ship"
	"github.com/paasmeter/paasmeter/runtime/spool"
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
	ac := cfg.Agent
	if ac.Node == "" {
		if ac.Node, err = os.Hostname(); err != nil {
			return fmt.Errorf("agent: node name: %w", err)
		}
	}
	token, err := a.agentToken(ac.TokenFile)
	if err != nil {
		return err
	}
	sp, dead, err := openSpools(ac.SpoolDir, ac.SpoolMaxBytes)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, sp.Close(), dead.Close()) }()
	cg, err := cgroups.NewReader(ac.CgroupRoot)
	if err != nil {
		return err
	}
	eng, err := docker.New(ac.DockerHost)
	if err != nil {
		return err
	}
	defer eng.Close()

	reg := prometheus.NewRegistry()
	if err := collector.RegisterProcessMetrics(reg); err != nil {
		return err
	}
	wake := make(chan struct{}, 1)
	ag, err := agent.New(agent.Options{Config: ac, Engine: eng, Cgroups: cg, Spool: sp, Clock: clock.System{}, Logger: log,
		Registry: reg, Wake: wake, Failpoints: fps})
	if err != nil {
		return err
	}
	sh, err := ship.New(ship.Options{Spool: sp, Dead: dead, BaseURL: ac.CollectorURL, Token: token,
		Client: &http.Client{Timeout: time.Minute}, BatchSize: ac.BatchSize, Logger: log, Registry: reg, Failpoints: fps, Wake: wake})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ac.AdminListen)
	if err != nil {
		return fmt.Errorf("agent: admin listen %s: %w", ac.AdminListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	admin := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("agent started", "node", ac.Node, "collector", ac.CollectorURL, "spool", ac.SpoolDir, "admin", ln.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ag.Run(gctx) })
	g.Go(func() error { return sh.Run(gctx) })
	g.Go(func() error {
		if err := admin.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return admin.Shutdown(sctx)
	})
	err = g.Wait()
	log.Info("agent stopped")
	return err
}
