package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/failpoint"
	"github.com/paasmeter/paasmeter/logs"
	"github.com/paasmeter/paasmeter/metering"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/usage"
)

// TestAgentKilledAtEachFailpointLosesAndDuplicatesNothing runs the real agent
// binary against a real engine and collector, SIGKILLs it at each failpoint of
// the delivery pipeline, restarts it, and checks the stored usage of a job
// record for record: every meter's windows tile the run with no gap and no
// overlap, and the container-seconds add up to the run's duration.
func TestAgentKilledAtEachFailpointLosesAndDuplicatesNothing(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	bin := buildAgent(t)
	for _, fp := range failpoint.Names {
		t.Run(fp, func(t *testing.T) {
			// Log lines would reach the failpoints too, at times of their own.
			r := newAgentRig(t, bin, "  logs:\n    enabled: false\n")
			st := r.col.Store

			// The first agent runs until the failpoint kills it, mid-job and long
			// enough after the start that the second agent must resume the run
			// from the saved meter state (a fresh start would leave a gap).
			first := r.start("--failpoint", fp+":5")
			time.Sleep(500 * time.Millisecond) // let it subscribe to events
			app := "job-" + strings.ReplaceAll(fp, "-", "")
			ctx := context.Background()
			c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sh", "-c", "i=0; while [ $i -lt 1400000 ]; do i=$((i+1)); done; sleep 16"},
				Labels: map[string]string{engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: app, engine.LabelEnv: "prod",
					engine.LabelNode: r.node}}, // other tests' agents on the engine leave it alone
				&container.HostConfig{Resources: container.Resources{CgroupParent: "/paasmeter/" + dockertest.Name(t, "crash")}}, nil, nil, dockertest.Name(t, app))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			waitKilled(t, first, fp)

			// The second agent picks up where the first died.
			second := r.start()
			defer func() { second.Process.Kill(); second.Wait() }()
			waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
			select {
			case <-waitC:
			case err := <-errC:
				t.Fatal(err)
			}
			in, _ := cli.ContainerInspect(ctx, c.ID)
			started, _ := time.Parse(time.RFC3339Nano, in.State.StartedAt)
			finished, _ := time.Parse(time.RFC3339Nano, in.State.FinishedAt)

			deadline := time.Now().Add(60 * time.Second)
			var recs []usage.Record
			for {
				recs = recs[:0]
				st.ScanUsage(ctx, metering.UsageFilter{Tenant: "caami", From: started.Add(-time.Minute), To: finished.Add(time.Minute), Apps: []string{app}},
					func(r usage.Record) error { recs = append(recs, r); return nil })
				var died int
				st.ScanEvents(ctx, metering.EventFilter{Tenant: "caami", From: started.Add(-time.Minute), To: finished.Add(time.Minute), Apps: []string{app},
					Types: []events.Type{events.Died}}, func(events.Event) error { died++; return nil })
				if tiles(recs, started.UTC(), finished.UTC()) == "" && died == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after the restart the stored usage does not cover the run exactly: %s (died events: %d)", tiles(recs, started.UTC(), finished.UTC()), died)
				}
				time.Sleep(300 * time.Millisecond)
			}
			cpu, secs, _, _ := billed(recs)
			want := int64((finished.Sub(started) + time.Second/2) / time.Second)
			if secs != want || cpu <= 0 {
				t.Errorf("billed %d container-seconds and %d ns CPU; want %d s and some CPU", secs, cpu, want)
			}
		})
	}
}

// TestAContainerPrinting10000LinesWhileTheAgentIsKilledTwiceLosesAndDuplicatesNoLine
// runs the real agent binary while a container prints the numbers 0 to 9,999
// on stdout and on stderr, SIGKILLs it once just after a spool write and once
// just after the collector acknowledged a batch the spool still holds,
// restarts it each time, and reads the lines back from the collector's store:
// every number once, in order, on each stream.
func TestAContainerPrinting10000LinesWhileTheAgentIsKilledTwiceLosesAndDuplicatesNoLine(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	r := newAgentRig(t, buildAgent(t), "  logs:\n    container_rate: {lines_per_second: 100000, burst: 100000}\n"+
		"    tenant_rate: {lines_per_second: 100000, burst: 100000}\n")
	first := r.start("--failpoint", failpoint.AfterSpoolWrite+":5")
	time.Sleep(500 * time.Millisecond) // let it subscribe to events
	ctx := context.Background()
	const lines = 10000
	// About four seconds of printing, so that both kills fall within it.
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo $i; echo $i >&2; i=$((i+1)); [ $((i %% 50)) -eq 0 ] && sleep 0.02; done; true", lines)
	name := dockertest.Name(t, "printer")
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sh", "-c", script},
		Labels: map[string]string{engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: "printer", engine.LabelEnv: "prod",
			engine.LabelNode: r.node}}, nil, nil, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitKilled(t, first, failpoint.AfterSpoolWrite)
	second := r.start("--failpoint", failpoint.AfterAck+":5")
	waitKilled(t, second, failpoint.AfterAck)
	if in, err := cli.ContainerInspect(ctx, c.ID); err != nil || !in.State.Running {
		t.Fatalf("the container finished printing before the second kill (%v): print longer", err)
	}
	third := r.start()
	defer func() { third.Process.Kill(); third.Wait() }()

	m, _ := logs.NewMatcher(logs.LabelContainer, logs.MatchEqual, name)
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := map[string][]string{}
		q := metering.LogQuery{Tenant: "caami", From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour),
			Selector: logs.Selector{Matchers: []*logs.Matcher{m}}, Limit: metering.MaxLogLimit, Forward: true}
		for {
			page, err := metering.QueryLogs(ctx, r.col.Store, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range page.Lines {
				got[l.Labels[logs.LabelStream]] = append(got[l.Labels[logs.LabelStream]], l.Line)
			}
			if q.Cursor = page.Next; q.Cursor == "" {
				break
			}
		}
		if len(got["stdout"])+len(got["stderr"]) >= 2*lines || time.Now().After(deadline) {
			for _, stream := range []string{"stdout", "stderr"} {
				for i, s := range got[stream] {
					if s != strconv.Itoa(i) {
						t.Fatalf("%s: line %d is %q, want %d (lost, duplicated or out of order)", stream, i, s, i)
					}
				}
				if len(got[stream]) != lines {
					t.Errorf("%s: %d lines stored, want %d", stream, len(got[stream]), lines)
				}
			}
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildAgent builds the paasmeter binary for the crash tests.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "paasmeter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	return bin
}

// agentRig runs agent processes of the real binary, one after the other over
// the same spool, against a collector of their own.
type agentRig struct {
	t            *testing.T
	bin, cfgPath string
	node         string
	col          *collectortest.Collector
}

// newAgentRig writes the agents' configuration; extra is added to its agent
// section.
func newAgentRig(t *testing.T, bin, extra string) *agentRig {
	t.Helper()
	node := fmt.Sprintf("crash-%d", time.Now().UnixNano()%1e9)
	col, err := collectortest.Start(t.TempDir(), node, "crash-token", "caami")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(col.Close)
	dir := t.TempDir()
	cfg := fmt.Sprintf("log:\n  level: warn\nagent:\n  node: %s\n  collector_url: %s\n  docker_host: %s\n  spool_dir: %s\n"+
		"  sample_interval: 1s\n  window: 2s\n  admin_listen: 127.0.0.1:0\n",
		node, col.URL, os.Getenv(dockertest.HostEnv), filepath.Join(dir, "spool"))
	r := &agentRig{t: t, bin: bin, cfgPath: filepath.Join(dir, "paasmeter.yaml"), node: node, col: col}
	if err := os.WriteFile(r.cfgPath, []byte(cfg+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return r
}

// start starts an agent process with args.
func (r *agentRig) start(args ...string) *exec.Cmd {
	cmd := exec.Command(r.bin, append([]string{"agent", "--config", r.cfgPath}, args...)...)
	cmd.Env = append(os.Environ(), "PAASMETER_AGENT_TOKEN=crash-token")
	cmd.Stderr = &testLog{t: r.t, prefix: "agent: "}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	return cmd
}

// waitKilled waits for an agent to die at its failpoint fp.
func waitKilled(t *testing.T, agent *exec.Cmd, fp string) {
	t.Helper()
	waitErr := make(chan error, 1)
	go func() { waitErr <- agent.Wait() }()
	select {
	case err := <-waitErr:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("the agent did not die at %s: %v", fp, err)
		}
	case <-time.After(60 * time.Second):
		agent.Process.Kill()
		t.Fatalf("failpoint %s never fired", fp)
	}
}

// billed sums the CPU (ns) and the container-seconds of a run's records, and
// spans its container-seconds windows: the first one's start, the last one's end.
func billed(recs []usage.Record) (cpu, secs int64, first, last time.Time) {
	for _, r := range recs {
		switch r.Meter {
		case usage.MeterCPU:
			cpu += r.Quantity
		case usage.MeterContainerSeconds:
			secs += r.Quantity
			if first.IsZero() || r.WindowStart.Before(first) {
				first = r.WindowStart
			}
			if r.WindowEnd.After(last) {
				last = r.WindowEnd
			}
		}
	}
	return cpu, secs, first, last
}

// tiles says what is wrong with recs as the usage of one run over
// [start, end): "" when every meter's windows cover it exactly once.
func tiles(recs []usage.Record, start, end time.Time) string {
	byMeter := map[usage.Meter][]usage.Record{}
	for _, r := range recs {
		byMeter[r.Meter] = append(byMeter[r.Meter], r)
	}
	for _, mi := range usage.Meters {
		if mi.SourceKind != usage.SourceContainer {
			continue
		}
		rs := byMeter[mi.Meter] // ScanUsage orders by window start
		at := start
		for _, r := range rs {
			if !r.WindowStart.Equal(at) {
				return fmt.Sprintf("%s: window at %s, expected one at %s (gap or overlap)", mi.Meter, r.WindowStart.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
			}
			at = r.WindowEnd
		}
		if !at.Equal(end) {
			return fmt.Sprintf("%s: windows end at %s, the run at %s", mi.Meter, at.Format(time.RFC3339Nano), end.Format(time.RFC3339Nano))
		}
	}
	return ""
}

type testLog struct {
	t      *testing.T
	prefix string
}

func (l *testLog) Write(p []byte) (int, error) {
	l.t.Log(l.prefix + strings.TrimSpace(string(p)))
	return len(p), nil
}
