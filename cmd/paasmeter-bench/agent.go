package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
)

// benchAgentCmd measures the agent's own cost on a node of idle containers,
// and one sampling round through cgroup files against the Docker stats API.
func (a *app) benchAgentCmd() *cobra.Command {
	var n int
	var dur, interval time.Duration
	var host, image, program string
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Agent CPU and memory with N idle containers; cgroup sampling vs the Docker stats API",
		Long: `Start N labelled idle containers (busybox sleep) on the Docker Engine at --docker-host,
run 'paasmeter agent' on them as a separate process (the binary at --paasmeter,
by default the paasmeter beside this program: bin/paasmeter) for --duration
with the default 10 s sampling, and report its CPU (% of one core) and resident
memory. Then time one sampling round of the N containers through cgroup files
(what the agent does) and through the Docker stats API (what cAdvisor-style
tools fall back to). The image must exist (the tests build
paasmeter-test/busybox:1).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.benchAgent(cmd.Context(), program, host, image, n, dur, interval)
		},
	}
	cmd.Flags().IntVar(&n, "containers", 50, "idle containers")
	cmd.Flags().DurationVar(&dur, "duration", 60*time.Second, "how long to measure the agent")
	cmd.Flags().DurationVar(&interval, "sample-interval", 10*time.Second, "the agent's sampling interval")
	cmd.Flags().StringVar(&host, "docker-host", os.Getenv("PAASMETER_TEST_DOCKER_HOST"), "Docker Engine API address")
	cmd.Flags().StringVar(&image, "image", "paasmeter-test/busybox:1", "image with a sleep command")
	cmd.Flags().StringVar(&program, "paasmeter", "", "the paasmeter binary whose agent is measured (default: paasmeter in this program's directory)")
	return cmd
}

func (a *app) benchAgent(ctx context.Context, program, host, image string, n int, dur, interval time.Duration) error {
	if host == "" {
		return errors.New("bench agent: --docker-host (or PAASMETER_TEST_DOCKER_HOST) is required")
	}
	if program == "" {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		program = filepath.Join(filepath.Dir(self), "paasmeter")
	}
	// Before any container starts: a missing binary is a usage error, not a
	// failure after a minute of setup.
	if _, err := os.Stat(program); err != nil {
		return fmt.Errorf("bench agent: the paasmeter binary (--paasmeter): %w", err)
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	label := fmt.Sprintf("paasmeter.bench=%d", time.Now().UnixNano())
	key, val, _ := strings.Cut(label, "=")
	defer func() {
		list, _ := cli.ContainerList(context.Background(), container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", label))})
		for _, c := range list {
			cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true})
		}
	}()
	ids := make([]string, n)
	for i := range n {
		c, err := cli.ContainerCreate(ctx, &container.Config{Image: image, Cmd: []string{"sleep", "3600"}, Labels: map[string]string{
			engine.LabelTenant: "caami", engine.LabelProject: "bench", engine.LabelApp: fmt.Sprintf("idle-%02d", i), engine.LabelEnv: "test", key: val}},
			&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
		if err != nil {
			return fmt.Errorf("bench agent: create container %d: %w", i, err)
		}
		if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return err
		}
		ids[i] = c.ID
	}

	// A collector for the agent to ship to.
	dir, err := os.MkdirTemp("", "paasmeter-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	col, err := collectortest.Start(filepath.Join(dir, "data"), "bench-node", "bench-token", "caami")
	if err != nil {
		return err
	}
	defer col.Close()
	cfg := fmt.Sprintf("log:\n  level: warn\nagent:\n  node: bench-node\n  collector_url: %s\n  docker_host: %s\n  spool_dir: %s\n  sample_interval: %s\n  admin_listen: 127.0.0.1:0\n",
		col.URL, host, filepath.Join(dir, "spool"), interval)
	cfgPath := filepath.Join(dir, "paasmeter.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	agentProc := exec.CommandContext(ctx, program, "agent", "--config", cfgPath)
	agentProc.Env = append(os.Environ(), "PAASMETER_AGENT_TOKEN=bench-token")
	agentProc.Stderr = os.Stderr
	if err := agentProc.Start(); err != nil {
		return err
	}
	defer func() { agentProc.Process.Kill(); agentProc.Wait() }()
	pid := agentProc.Process.Pid
	time.Sleep(5 * time.Second) // start-up: adoption of the running containers
	cpu0, _, err := procStats(pid)
	if err != nil {
		return err
	}
	t0 := time.Now()
	var maxRSS int64
	for time.Since(t0) < dur {
		time.Sleep(time.Second)
		_, rss, err := procStats(pid)
		if err != nil {
			return err
		}
		maxRSS = max(maxRSS, rss)
	}
	cpu1, rss, err := procStats(pid)
	if err != nil {
		return err
	}
	elapsed := time.Since(t0)
	pct := 100 * float64(cpu1-cpu0) / float64(elapsed)

	// One sampling round, both ways.
	r, err := cgroups.NewReader("/sys/fs/cgroup")
	if err != nil {
		return err
	}
	start := time.Now()
	for _, id := range ids {
		in, err := cli.ContainerInspect(ctx, id)
		if err != nil {
			return err
		}
		p, err := cgroups.PathFromProc("/proc", in.State.Pid)
		if err != nil {
			return err
		}
		if _, err := r.Read(p); err != nil {
			return err
		}
		cgroups.ReadNetDev("/proc", in.State.Pid)
	}
	cgroupRound := time.Since(start)
	// The stats API takes about a second per container: time a few.
	statsIDs := ids[:min(len(ids), 5)]
	start = time.Now()
	for _, id := range statsIDs {
		s, err := cli.ContainerStatsOneShot(ctx, id)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, s.Body)
		s.Body.Close()
	}
	statsRound := time.Since(start)

	fmt.Fprintf(a.stdout, "agent with %d idle containers, sampling every %s, measured for %s:\n", n, interval, elapsed.Round(time.Second))
	fmt.Fprintf(a.stdout, "  CPU %.2f %% of one core, RSS %.1f MiB (peak %.1f MiB)\n", pct, float64(rss)/(1<<20), float64(maxRSS)/(1<<20))
	perCgroup := cgroupRound / time.Duration(len(ids))
	perStats := statsRound / time.Duration(len(statsIDs))
	fmt.Fprintf(a.stdout, "sampling one container (average):\n")
	fmt.Fprintf(a.stdout, "  cgroup files (inspect + read, the agent's way, %d containers)  %10s\n", len(ids), perCgroup.Round(time.Microsecond))
	fmt.Fprintf(a.stdout, "  Docker stats API (one-shot, %d containers)                     %10s  (%.0fx slower)\n", len(statsIDs),
		perStats.Round(time.Microsecond), float64(perStats)/float64(perCgroup))
	return nil
}

// procStats returns a process's CPU time (user+system) and resident memory.
func procStats(pid int) (time.Duration, int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which ends at the last ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	rssPages, _ := strconv.ParseInt(fields[21], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, rssPages * int64(os.Getpagesize()), nil
}
