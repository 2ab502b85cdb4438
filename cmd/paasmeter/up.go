package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector/auth"
	"github.com/paasmeter/paasmeter/config"
	"github.com/paasmeter/paasmeter/hub"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/runtime/image"
	"github.com/paasmeter/paasmeter/runtime/node"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/supervise"
)

func (a *app) upCmd() *cobra.Command {
	var platform string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a whole platform in one process: collector, agent and the containers of a platform spec",
		Long: `Run the collector (on the embedded store) and the agent with its supervisor in one
process: the containers of the platform spec (--platform, which overrides
agent.platform_spec) are created on the Docker Engine (agent.docker_host, or
PAASMETER_DOCKER_HOST), restarted, probed and metered, and their usage and events
are stored by this process's collector (the agent ships to it whatever
agent.collector_url says). The spec is checked, quotas included, before anything
starts. The image paasmeter-demo:1, which the example platform uses, is built
when the spec needs it and the engine lacks it.

The agent token comes from PAASMETER_AGENT_TOKEN or agent.token_file, as for
paasmeter agent. SIGINT or SIGTERM stops the platform's containers, waits a few
seconds for their last usage to be metered and shipped, then stops the agent
and the collector.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.runUp(cmd.Context(), platform)
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "examples/platform.yaml", "platform spec file (overrides agent.platform_spec)")
	return cmd
}

func (a *app) runUp(ctx context.Context, platform string) (err error) {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	if platform == "" {
		return errors.New("up: --platform is required: up runs a platform")
	}
	log := a.logger(cfg)
	cfg.Agent.PlatformSpec = platform
	token, plat, err := a.prepareAgent(&cfg.Agent)
	if err != nil {
		return err
	}

	eng, err := docker.New(cfg.Agent.DockerHost)
	if err != nil {
		return err
	}
	defer eng.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = eng.Client().Ping(pctx)
	cancel()
	if err != nil {
		return fmt.Errorf("up: no Docker Engine at %s (agent.docker_host, PAASMETER_DOCKER_HOST): %w", eng.Client().DaemonHost(), err)
	}
	if usesImage(plat, image.DemoTag) {
		start := time.Now()
		if _, err := image.Demo(ctx, eng.Client()); err != nil {
			return fmt.Errorf("up: %w", err)
		}
		log.Info("demo image ready", "image", image.DemoTag, "took", time.Since(start).Round(time.Millisecond))
	}

	h, err := hub.Open(ctx, cfg, a.hubOptions(log), hub.Collector)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, h.Close()) }()
	srv := h.CollectorServer()
	// The collector outlives ctx: it stores what the agent ships while the
	// platform stops, and stops last.
	colCtx, stopCollector := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCollector()
	type addrs struct{ api, admin net.Addr }
	ready := make(chan addrs, 1)
	colDone := make(chan error, 1)
	go func() { colDone <- srv.Run(colCtx, func(api, admin net.Addr) { ready <- addrs{api, admin} }) }()
	var col addrs
	select {
	case col = <-ready:
	case err := <-colDone:
		return err
	}
	stopCollectorAndWait := func() error {
		stopCollector()
		return <-colDone
	}

	scheme := "http://"
	if cfg.Collector.TLS.Enabled() {
		scheme = "https://" // agent.tls must then trust the collector's certificate
	}
	// The local agent ships to this collector alone, whatever collector_urls says.
	cfg.Agent.CollectorURL, cfg.Agent.CollectorURLs = scheme+col.api.String(), nil
	n, err := node.Open(node.Options{Config: cfg.Agent, Token: token, Platform: plat, Engine: eng, Clock: a.clock, Logger: log})
	if err != nil {
		return errors.Join(err, stopCollectorAndWait())
	}
	defer func() { err = errors.Join(err, n.Close()) }()
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- n.Run(nodeCtx, true) }()
	a.printWhereToLook(cfg, plat, col.api.String(), col.admin.String(), n.AdminAddr(), eng.Client().DaemonHost())

	select {
	case err = <-nodeDone:
		return errors.Join(err, stopCollectorAndWait())
	case cerr := <-colDone:
		// Without its collector the agent cannot ship: stop the platform too.
		if cerr == nil {
			cerr = errors.New("up: the collector stopped")
		}
		log.Error("the collector stopped; stopping the platform", "err", cerr)
		stopNode()
		return errors.Join(cerr, <-nodeDone)
	}
}

// usesImage reports whether an app of s runs the image tag.
func usesImage(s *spec.Spec, tag string) bool {
	for _, inst := range s.Institutions {
		for _, p := range inst.Projects {
			for _, a := range p.Apps {
				if a.Image == tag {
					return true
				}
			}
		}
	}
	return false
}

// printWhereToLook tells the person who ran `up` what runs and how to see it.
func (a *app) printWhereToLook(cfg *config.Config, plat *spec.Spec, api, colAdmin, agentAdmin, dockerHost string) {
	apps, replicas := 0, 0
	var tenants []string
	for _, inst := range plat.Institutions {
		tenants = append(tenants, inst.ID)
		for _, p := range inst.Projects {
			for _, app := range p.Apps {
				apps++
				replicas += app.Replicas
			}
		}
	}
	tenant := tenants[0]
	w := a.stdout
	fmt.Fprintf(w, "\npaasmeter is up: the collector, and the agent of node %s running %s (%d institutions, %d apps, %d containers)\n",
		cfg.Agent.Node, cfg.Agent.PlatformSpec, len(tenants), apps, replicas)
	fmt.Fprintf(w, "  collector API      http://%s\n", api)
	fmt.Fprintf(w, "  usage of %-9s curl -sS -H 'Authorization: Bearer %s' 'http://%s/api/v1/tenants/%s/usage?group_by=project,app,environment'\n",
		tenant, institutionToken(cfg, tenant), api, tenant)
	fmt.Fprintf(w, "  portal             http://%s/portal/  (sign in with %s's token %s)\n", api, tenant, institutionToken(cfg, tenant))
	fmt.Fprintf(w, "  collector metrics  http://%s/metrics\n", colAdmin)
	fmt.Fprintf(w, "  agent metrics      http://%s/metrics  (paasmeter_runtime_*: replicas, restarts, probes, quotas)\n", agentAdmin)
	fmt.Fprintf(w, "  containers         DOCKER_HOST=%s docker ps --filter label=%s=%s\n", dockerHost, supervise.LabelNode, cfg.Agent.Node)
	fmt.Fprintf(w, "Usage windows are %s long: the first records arrive when one closes (crashed and killed runs sooner).\n", cfg.Agent.Window)
	fmt.Fprintf(w, "Ctrl-C stops the containers, ships their last usage, then stops.\n\n")
}

// institutionToken is the example token of tenant when the configuration
// accepts it (deploy/examples/paasmeter.yaml does: its plain values are
// public), or a placeholder: only hashes are configured.
func institutionToken(cfg *config.Config, tenant string) string {
	example := "pm_example_" + tenant
	if slices.ContainsFunc(cfg.Tokens, func(t auth.TokenConfig) bool {
		return t.Role == auth.RoleInstitution && t.Tenant == tenant && strings.EqualFold(t.SHA256, auth.Hash(example))
	}) {
		return example
	}
	return "$" + strings.ToUpper(tenant) + "_TOKEN"
}
