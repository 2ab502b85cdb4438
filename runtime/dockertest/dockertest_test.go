package dockertest_test

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/paasmeter/paasmeter/runtime/dockertest"
)

func TestBusyboxRunsOnTheTestEngine(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	ctx := context.Background()
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img, Cmd: []string{"sh", "-c", "exit 7"}}, nil, nil, nil, dockertest.Name(t, "exit7"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.StatusCode != 7 {
			t.Errorf("exit code %d, want 7", w.StatusCode)
		}
	case err := <-errC:
		t.Fatal(err)
	}
}
