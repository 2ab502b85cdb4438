package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/spf13/cobra"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/internal/loopback"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/usage"
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
	program, err := agentProgram(program)
	if err != nil {
		return fmt.Errorf("bench agent: %w", err)
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	idle := newIdleContainers(cli, image)
	defer idle.remove()
	if err := idle.grow(ctx, n); err != nil {
		return err
	}
	ids := idle.ids

	dir, err := os.MkdirTemp("", "paasmeter-bench-agent-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cost, err := measureAgent(ctx, agentRun{program: program, dir: dir, node: "bench-node", interval: interval, dur: dur, want: n,
		config: fmt.Sprintf("  docker_host: %s\n", host)}, a.stderr)
	if err != nil {
		return err
	}
	pct := 100 * cost.cpu.Seconds() / cost.elapsed.Seconds()

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

	fmt.Fprintf(a.stdout, "agent with %d idle containers, sampling every %s, measured for %s:\n", n, interval, cost.elapsed.Round(time.Second))
	fmt.Fprintf(a.stdout, "  CPU %.2f %% of one core, RSS %.1f MiB (peak %.1f MiB, anonymous %.1f MiB), %.0f records a minute\n", pct,
		float64(cost.rss)/(1<<20), float64(cost.peakRSS)/(1<<20), float64(cost.anonRSS)/(1<<20), cost.recordsPerMinute())
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

// idleContainers are the labelled idle containers (busybox sleep, no
// network) a bench starts on a Docker Engine for an agent to meter.
type idleContainers struct {
	cli      *client.Client
	image    string
	key, val string // the label that marks them this bench's
	ids      []string
}

func newIdleContainers(cli *client.Client, image string) *idleContainers {
	return &idleContainers{cli: cli, image: image, key: "paasmeter.bench", val: strconv.FormatInt(time.Now().UnixNano(), 10)}
}

// grow starts containers until n run.
func (d *idleContainers) grow(ctx context.Context, n int) error {
	for i := len(d.ids); i < n; i++ {
		c, err := d.cli.ContainerCreate(ctx, &container.Config{Image: d.image, Cmd: []string{"sleep", "3600"}, Labels: map[string]string{
			engine.LabelTenant: agentBenchTenant, engine.LabelProject: "bench", engine.LabelApp: fmt.Sprintf("idle-%03d", i), engine.LabelEnv: "test", d.key: d.val}},
			&container.HostConfig{NetworkMode: "none"}, nil, nil, "")
		if err != nil {
			return fmt.Errorf("bench agent: create container %d: %w", i, err)
		}
		d.ids = append(d.ids, c.ID)
		if err := d.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
			return fmt.Errorf("bench agent: start container %d: %w", i, err)
		}
	}
	return nil
}

// remove removes every container of the bench, whatever its context.
func (d *idleContainers) remove() {
	ctx := context.Background()
	list, _ := d.cli.ContainerList(ctx, container.ListOptions{All: true, Filters: filters.NewArgs(filters.Arg("label", d.key+"="+d.val))})
	for _, c := range list {
		d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
}

// agentBenchTenant is the institution the benches' containers and pods are
// billed to.
const agentBenchTenant = "caami"

// agentRun is one measured run of `paasmeter agent` as a process of its own,
// shipping to a collector of its own over loopback.
type agentRun struct {
	program string
	// dir holds the run's configuration, spool and collector store.
	dir  string
	node string
	// config is the agent section's lines for the node's kind, indented by
	// two spaces (docker_host, or kind and kubernetes).
	config        string
	interval, dur time.Duration
	// want is how many containers the agent must track before the measure
	// starts: its start-up (adopting them) is not measured.
	want int
}

// agentCost is what an agent cost over one measure.
type agentCost struct {
	elapsed time.Duration
	// cpu is its user and system time in the measure.
	cpu time.Duration
	// rss is its resident memory at the end, peakRSS its high-water mark
	// (VmHWM, start-up included), anonRSS the part of rss that is its own
	// (RssAnon): the rest is the binary's pages in the page cache, shared
	// and reclaimable.
	rss, peakRSS, anonRSS int64
	// records are those of the usage windows that ended in the measure, as
	// the collector stored them.
	records int
}

// recordsPerMinute is the records it shipped a minute of the measure.
func (c agentCost) recordsPerMinute() float64 { return float64(c.records) / c.elapsed.Minutes() }

// measureAgent starts the agent r describes, waits until it tracks r.want
// containers, and measures it for r.dur.
func measureAgent(ctx context.Context, r agentRun, stderr io.Writer) (agentCost, error) {
	col, err := collectortest.Start(filepath.Join(r.dir, "data"), r.node, "bench-token", agentBenchTenant)
	if err != nil {
		return agentCost{}, err
	}
	defer col.Close()
	ports, err := loopback.FreePorts(1)
	if err != nil {
		return agentCost{}, err
	}
	admin := fmt.Sprintf("127.0.0.1:%d", ports[0])
	cfg := fmt.Sprintf("log:\n  level: warn\nagent:\n  node: %s\n  collector_url: %s\n  spool_dir: %s\n  sample_interval: %s\n  admin_listen: %s\n%s",
		r.node, col.URL, filepath.Join(r.dir, "spool"), r.interval, admin, r.config)
	cfgPath := filepath.Join(r.dir, "paasmeter.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return agentCost{}, err
	}
	proc := exec.CommandContext(ctx, r.program, "agent", "--config", cfgPath)
	proc.Env = append(os.Environ(), "PAASMETER_AGENT_TOKEN=bench-token")
	proc.Stderr = stderr
	if err := proc.Start(); err != nil {
		return agentCost{}, err
	}
	defer func() { proc.Process.Kill(); proc.Wait() }()
	pid := proc.Process.Pid
	if err := waitTracked(ctx, "http://"+admin+"/metrics", r.want, 3*time.Minute); err != nil {
		return agentCost{}, err
	}
	cpu0, _, err := procStats(pid)
	if err != nil {
		return agentCost{}, err
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, r.dur); err != nil {
		return agentCost{}, err
	}
	cpu1, rss, err := procStats(pid)
	if err != nil {
		return agentCost{}, err
	}
	t1 := time.Now()
	peak, err := peakRSS(pid)
	if err != nil {
		return agentCost{}, err
	}
	anon, err := statusBytes(pid, "RssAnon")
	if err != nil {
		return agentCost{}, err
	}
	cost := agentCost{elapsed: t1.Sub(t0), cpu: cpu1 - cpu0, rss: rss, peakRSS: peak, anonRSS: anon}
	// A window is closed, and shipped at once, by the first sample after its
	// end: the last one that ended in the measure is in the collector a
	// sampling interval after that end, give or take a request.
	window := agent.DefaultConfig().Window
	if err := sleepCtx(ctx, time.Until(t1.Truncate(window).Add(r.interval+5*time.Second))); err != nil {
		return agentCost{}, err
	}
	err = col.Store.ScanUsage(ctx, metering.UsageFilter{Tenant: agentBenchTenant, From: t0.Add(-window), To: t1}, func(rec usage.Record) error {
		if rec.WindowEnd.After(t0) && !rec.WindowEnd.After(t1) {
			cost.records++
		}
		return nil
	})
	return cost, err
}

// waitTracked waits until the agent whose /metrics is at url tracks want
// containers (or more: a shared engine may hold others' too).
func waitTracked(ctx context.Context, url string, want int, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	for {
		n, err := trackedContainers(ctx, url)
		if err == nil && n >= want {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("it tracks %d", n)
		}
		last = err
		if sleepCtx(ctx, 500*time.Millisecond) != nil {
			return fmt.Errorf("bench: the agent did not track %d containers within %s: %w", want, within, last)
		}
	}
}

// trackedContainers reads paasmeter_agent_tracked_containers from an agent's
// /metrics.
func trackedContainers(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, m := range mfs["paasmeter_agent_tracked_containers"].GetMetric() {
		n += int(m.GetGauge().GetValue())
	}
	return n, nil
}

// sleepCtx waits d, or returns ctx's error when it ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
