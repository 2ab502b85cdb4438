package supervise_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"

	"github.com/paasmeter/paasmeter/runtime/dockertest"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/spec"
	"github.com/paasmeter/paasmeter/runtime/supervise"
	"github.com/paasmeter/paasmeter/usage"
)

// TestAReplicaRunsWithItsLimitsAndHardeningVisibleInInspect creates a replica's
// container on the test engine and reads back what the engine applied.
func TestAReplicaRunsWithItsLimitsAndHardeningVisibleInInspect(t *testing.T) {
	cli := dockertest.Client(t)
	img := dockertest.Busybox(t, cli)
	ctx := context.Background()
	r := supervise.Replica{Institution: "caami", Project: "claims", Index: 1, Run: dockertest.Name(t, "run"),
		App: spec.App{ID: "pricing", Env: usage.EnvProd, Image: img, Command: []string{"sleep", "30"},
			Resources:    spec.Resources{CPU: 500, Memory: 64 << 20, Pids: 32},
			EnvVars:      map[string]string{"B": "2", "A": "1"},
			Capabilities: []string{"NET_BIND_SERVICE"}, ReadOnlyRoot: true, Ports: []spec.Port{{Container: 8080, Protocol: "tcp"}},
			Volumes: []spec.Volume{{Name: "data", Size: 1 << 30, Path: "/data"}}}}
	if _, err := cli.NetworkCreate(ctx, supervise.Network("caami"), network.CreateOptions{Labels: map[string]string{engine.LabelTenant: "caami"}}); err != nil {
		if _, ierr := cli.NetworkInspect(ctx, supervise.Network("caami"), network.InspectOptions{}); ierr != nil {
			t.Fatal(err)
		}
	}
	vol := r.App.Volumes[0]
	if _, err := cli.VolumeCreate(ctx, volume.CreateOptions{Name: r.VolumeName(vol), Labels: r.VolumeLabels(vol)}); err != nil {
		t.Fatal(err)
	}
	defer cli.VolumeRemove(ctx, r.VolumeName(vol), true)
	cfg, hc := r.Config()
	c, err := cli.ContainerCreate(ctx, cfg, hc, nil, nil, r.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
		dockertest.RemoveCgroupParent("/paasmeter/" + r.Run)
	}()
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	in, err := cli.ContainerInspect(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	h := in.HostConfig
	checks := []struct {
		what string
		ok   bool
	}{
		{"CPU limit of 0.5 CPU", h.NanoCPUs == 500_000_000},
		{"memory limit of 64 MiB without swap", h.Memory == 64<<20 && h.MemorySwap == 64<<20},
		{"pids limit of 32", h.PidsLimit != nil && *h.PidsLimit == 32},
		{"not privileged", !h.Privileged},
		{"every capability dropped", slices.Equal(h.CapDrop, []string{"ALL"})},
		{"only NET_BIND_SERVICE kept", len(h.CapAdd) == 1 && strings.TrimPrefix(h.CapAdd[0], "CAP_") == "NET_BIND_SERVICE"},
		{"no-new-privileges", slices.Contains(h.SecurityOpt, "no-new-privileges:true")},
		{"read-only root", h.ReadonlyRootfs},
		{"the run's cgroup parent", h.CgroupParent == "/paasmeter/"+r.Run},
		{"the institution's network", string(h.NetworkMode) == supervise.Network("caami") && in.NetworkSettings.Networks[supervise.Network("caami")] != nil},
		{"no engine restarts", h.RestartPolicy.Name == container.RestartPolicyDisabled},
		{"the metering labels", in.Config.Labels[engine.LabelTenant] == "caami" && in.Config.Labels[engine.LabelRun] == r.Run},
		{"sorted env", slices.Contains(in.Config.Env, "A=1") && slices.Index(in.Config.Env, "A=1") < slices.Index(in.Config.Env, "B=2")},
		{"port 8080 exposed but published nowhere", len(in.Config.ExposedPorts) == 1 && len(h.PortBindings) == 0 && !h.PublishAllPorts},
		{"the volume at /data", len(in.Mounts) == 1 && in.Mounts[0].Name == r.VolumeName(vol) && in.Mounts[0].Destination == "/data"},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("inspect does not show %s", c.what)
		}
	}
}
