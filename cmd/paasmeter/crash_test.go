package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/internal/failpoint"
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
	bin := filepath.Join(t.TempDir(), "paasmeter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build the agent: %v\n%s", err, out)
	}
	for _, fp := range failpoint.Names {
		t.Run(fp, func(t *testing.T) {
			node := fmt.Sprintf("crash-%d", time.Now().UnixNano()%1e9)
			col, err := collectortest.Start(t.TempDir(), node, "crash-token", "caami")
			if err != nil {
				t.Fatal(err)
			}
			defer col.Close()
			st := col.Store

			dir := t.TempDir()
			cfg := fmt.Sprintf("log:\n  level: warn\nagent:\n  node: %s\n  collector_url: %s\n  docker_host: %s\n  spool_dir: %s\n"+
				"  sample_interval: 1s\n  window: 2s\n  admin_listen: 127.0.0.1:0\n",
				node, col.URL, os.Getenv(dockertest.HostEnv), filepath.Join(dir, "spool"))
			cfgPath := filepath.Join(dir, "paasmeter.yaml")
			os.WriteFile(cfgPath, []byte(cfg), 0o600)
			agentProc := func(args ...string) *exec.Cmd {
				cmd := exec.Command(bin, append([]string{"agent", "--config", cfgPath}, args...)...)
				cmd.Env = append(os.Environ(), "PAASMETER_AGENT_TOKEN=crash-token")
				cmd.Stderr = &testLog{t: t, prefix: "agent: "}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				return cmd
			}

			// The first agent runs until the failpoint kills it, mid-job and long
			// enough after the start that the second agent must resume the run
			// from the saved meter state (a fresh start would leave a gap).
			first := agentProc("--failpoint", fp+":5")
			time.Sleep(500 * time.Millisecond) // let it subscribe to events
			app := "job-" + strings.ReplaceAll(fp, "-", "")
			ctx := context.Background()
			c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sh", "-c", "i=0; while [ $i -lt 1400000 ]; do i=$((i+1)); done; sleep 16"},
				Labels: map[string]string{engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: app, engine.LabelEnv: "prod"}},
				&container.HostConfig{Resources: container.Resources{CgroupParent: "/paasmeter/" + dockertest.Name(t, "crash")}}, nil, nil, dockertest.Name(t, app))
			if err != nil {
				t.Fatal(err)
			}
			defer cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
			if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			waitErr := make(chan error, 1)
			go func() { waitErr <- first.Wait() }()
			select {
			case err := <-waitErr:
				if err == nil || !strings.Contains(err.Error(), "killed") {
					t.Fatalf("the agent did not die at %s: %v", fp, err)
				}
			case <-time.After(60 * time.Second):
				first.Process.Kill()
				t.Fatalf("failpoint %s never fired", fp)
			}

			// The second agent picks up where the first died.
			second := agentProc()
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
			var secs, cpu int64
			for _, r := range recs {
				switch r.Meter {
				case usage.MeterContainerSeconds:
					secs += r.Quantity
				case usage.MeterCPU:
					cpu += r.Quantity
				}
			}
			want := int64((finished.Sub(started) + time.Second/2) / time.Second)
			if secs != want || cpu <= 0 {
				t.Errorf("billed %d container-seconds and %d ns CPU; want %d s and some CPU", secs, cpu, want)
			}
		})
	}
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
