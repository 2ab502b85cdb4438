package docker_test

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/engine/docker"
	"github.com/paasmeter/paasmeter/usage"
)

func labels(app string) map[string]string {
	return map[string]string{engine.LabelTenant: "caami", engine.LabelProject: "claims", engine.LabelApp: app, engine.LabelEnv: "prod"}
}

func start(t *testing.T, cli *client.Client, name string, cfg *container.Config, hc *container.HostConfig) string {
	t.Helper()
	ctx := context.Background()
	cfg.Image = dockertest.Busybox(t, cli)
	c, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, dockertest.Name(t, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.ContainerRemove(context.Background(), c.ID, container.RemoveOptions{Force: true}) })
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	return c.ID
}

func TestListInspectAndEventsOfLabelledContainers(t *testing.T) {
	cli := dockertest.Client(t)
	eng, err := docker.New(cli.DaemonHost())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	since := time.Now().Add(-time.Second)

	mem := int64(64 << 20)
	running := start(t, cli, "running", &container.Config{Cmd: []string{"sleep", "60"}, Labels: labels("pricing")},
		&container.HostConfig{Resources: container.Resources{Memory: mem, NanoCPUs: 500_000_000}})
	exits := start(t, cli, "exits", &container.Config{Cmd: []string{"sh", "-c", "exit 3"}, Labels: labels("batch")}, nil)
	other := start(t, cli, "unlabelled", &container.Config{Cmd: []string{"sleep", "60"}}, nil)

	// The event stream sees the labelled container start and die with its code.
	evs, errs := eng.Events(ctx, since)
	var sawStart, sawDie bool
	for !(sawStart && sawDie) {
		select {
		case ev := <-evs:
			if ev.ContainerID == other {
				t.Fatal("an unlabelled container's event came through")
			}
			if ev.ContainerID == exits && ev.Type == engine.EventStart {
				sawStart = true
			}
			if ev.ContainerID == exits && ev.Type == engine.EventDie {
				sawDie = true
				if ev.ExitCode != 3 || !ev.ExitKnown || ev.Labels[engine.LabelApp] != "batch" {
					t.Errorf("die event %+v, want exit code 3 and the container's labels", ev)
				}
			}
		case err := <-errs:
			t.Fatalf("event stream broke: %v", err)
		case <-ctx.Done():
			t.Fatalf("no start and die events (start %v, die %v)", sawStart, sawDie)
		}
	}

	list, err := eng.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]engine.Container{}
	for _, c := range list {
		byID[c.ID] = c
	}
	if _, ok := byID[other]; ok {
		t.Error("List returned an unlabelled container")
	}
	r, ok := byID[running]
	if !ok || !r.Running || r.Pid == 0 || r.Tenant != "caami" || r.Env != usage.EnvProd || r.MemoryLimitBytes != uint64(mem) ||
		r.CPULimitMillicores != 500 || r.StartedAt.IsZero() {
		t.Errorf("running container listed as %+v", r)
	}
	e, ok := byID[exits]
	// (FinishedAt may precede StartedAt for a process that exits at once: the
	// engine stamps the start after starting it.)
	if !ok || e.Running || e.ExitCode != 3 || e.FinishedAt.IsZero() || e.StartedAt.IsZero() {
		t.Errorf("exited container listed as %+v", e)
	}
	again, err := eng.Inspect(ctx, exits)
	if err != nil {
		t.Fatal(err)
	}
	if e.RunID() == r.RunID() || again.RunID() != e.RunID() {
		t.Error("run ids are not distinct per run and stable across inspections")
	}
}
