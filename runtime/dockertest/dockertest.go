// Package dockertest gives tests a real Docker Engine: the private daemon that
// `make test` starts (scripts/test-deps.sh), and a busybox image built locally
// FROM scratch, since there is no registry to pull from.
package dockertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/client"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/runtime/image"
)

// HostEnv names the variable that points the tests at the Docker Engine.
const HostEnv = "PAASMETER_TEST_DOCKER_HOST"

// BusyboxImage is the tag of the test image: a static busybox with its applets
// installed, FROM scratch.
const BusyboxImage = "paasmeter-test/busybox:1"

// Client connects to the test engine. Without one it fails the test under
// CI=true and skips it elsewhere, saying how to get one.
func Client(t testing.TB) *client.Client {
	t.Helper()
	host := os.Getenv(HostEnv)
	if host == "" {
		msg := "no Docker Engine for this test: run `make test` as root (it installs docker.io and starts a private dockerd), or set " + HostEnv
		testenv.Missing(t, msg)
	}
	cli, err := client.NewClientWithOpts(client.WithHost(host), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatalf("docker client for %s: %v", host, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Ping(ctx); err != nil {
		t.Fatalf("Docker Engine at %s does not answer (%s=%s): %v", host, HostEnv, host, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// Busybox builds BusyboxImage once per engine and returns its tag.
func Busybox(t testing.TB, cli *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := image.EnsureBusybox(ctx, cli, BusyboxImage); err != nil {
		t.Fatal(err)
	}
	return BusyboxImage
}

// Name returns a container name unique to this test, so parallel and repeated
// runs do not collide.
func Name(t testing.TB, suffix string) string {
	return fmt.Sprintf("pmtest-%d-%s", time.Now().UnixNano(), suffix)
}

// RemoveCgroupParent removes a container's cgroup parent (e.g. /paasmeter/x)
// from every hierarchy: it outlives the container, and tests leave none behind.
func RemoveCgroupParent(parent string) {
	os.Remove(filepath.Join("/sys/fs/cgroup", parent))
	entries, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range entries {
		os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), parent))
	}
}

// Exec runs cmd in container id and returns its exit code.
func Exec(t testing.TB, cli *client.Client, id string, cmd ...string) int {
	t.Helper()
	ctx := context.Background()
	ex, err := cli.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd})
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.ContainerExecStart(ctx, ex.ID, container.ExecStartOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		in, err := cli.ContainerExecInspect(ctx, ex.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !in.Running {
			return in.ExitCode
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Eventually polls cond until it holds, failing the test with what once
// within has passed: containers and their networks settle in their own time.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, within, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}
