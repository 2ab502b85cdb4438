package cgroups_test

import (
	"context"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/dockertest"
)

// TestARealContainerAndItsRunParent reads a live container on the test engine,
// then its dedicated cgroup parent after it exited: the parent keeps the run's
// final CPU time and memory peak, which is how the agent bills short jobs.
func TestARealContainerAndItsRunParent(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	ctx := context.Background()
	parent := "/paasmeter/" + dockertest.Name(t, "cg")
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: img,
		Cmd: []string{"sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; read x"}, OpenStdin: true},
		&container.HostConfig{Resources: container.Resources{Memory: 64 << 20, CgroupParent: parent}}, nil, nil, dockertest.Name(t, "cg"))
	if err != nil {
		t.Fatal(err)
	}
	defer cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	defer dockertest.RemoveCgroupParent(parent)
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := cgroups.NewReader("/sys/fs/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	in, err := cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	path, err := cgroups.PathFromProc("/proc", in.State.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if found, err := r.FindContainer(c.ID, parent); err != nil || found != path {
		t.Errorf("FindContainer = %q, %v; /proc says %q", found, err, path)
	}
	st, err := r.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsageNs == 0 || st.MemoryUsageBytes == 0 || st.MemoryLimitBytes != 64<<20 || st.Pids == 0 {
		t.Errorf("live container read as %+v", st)
	}

	if err := cli.ContainerKill(ctx, c.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	waitC, errC := cli.ContainerWait(ctx, c.ID, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-errC:
		t.Fatal(err)
	}
	if _, err := r.Read(path); err == nil {
		t.Error("the container's own cgroup is still readable after the exit")
	}
	final, err := r.Read(parent)
	if err != nil {
		t.Fatalf("run parent after the exit: %v", err)
	}
	if final.CPUUsageNs < st.CPUUsageNs || final.MemoryPeakBytes == 0 {
		t.Errorf("run parent after the exit: %+v; want CPU ≥ %d and a peak", final, st.CPUUsageNs)
	}
}
