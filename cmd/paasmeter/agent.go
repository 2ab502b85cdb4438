package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/node"
	"github.com/paasmeter/paasmeter/runtime/spec"
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

// agentToken reads the token from the environment or the configured file;
// with a client certificate (agent.tls.cert_file), which names the node to
// the collector, there may be none.
func (a *app) agentToken(ac *agent.Config) (string, error) {
	if t := strings.TrimSpace(a.getenv("PAASMETER_AGENT_TOKEN")); t != "" {
		return t, nil
	}
	file := ac.TokenFile
	if file == "" && ac.TLS.CertFile != "" {
		return "", nil
	}
	if file == "" {
		return "", errors.New("agent: no token: set PAASMETER_AGENT_TOKEN or agent.token_file, or agent.tls.cert_file")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("agent: token file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
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
	var eng *docker.Engine // none on a Kubernetes node: the node watches its pods
	if cfg.Agent.Kind == agent.KindDocker {
		if eng, err = docker.New(cfg.Agent.DockerHost); err != nil {
			return err
		}
		defer eng.Close()
	}
	n, err := node.Open(node.Options{Config: cfg.Agent, Token: token, Platform: plat, Engine: eng, Clock: a.clock, Logger: log, Failpoints: fps})
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	// The platform's containers keep running after the agent stops: the next
	// agent adopts them.
	return n.Run(ctx, false)
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
	if token, err = a.agentToken(ac); err != nil {
		return "", nil, err
	}
	if ac.PlatformSpec != "" {
		if plat, err = spec.Load(ac.PlatformSpec); err != nil {
			return "", nil, fmt.Errorf("agent: platform_spec: %w", err)
		}
	}
	return token, plat, nil
}
