package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/volume"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker is the part of the Docker Engine API the supervisor drives; the
// engine client (*client.Client) has it.
type Docker interface {
	ContainerCreate(ctx context.Context, config *container.Config, hostConfig *container.HostConfig, networkingConfig *network.NetworkingConfig, platform *ocispec.Platform, containerName string) (container.CreateResponse, error)
	ContainerStart(ctx context.Context, container string, options container.StartOptions) error
	ContainerStop(ctx context.Context, container string, options container.StopOptions) error
	ContainerRemove(ctx context.Context, container string, options container.RemoveOptions) error
	ContainerList(ctx context.Context, options container.ListOptions) ([]container.Summary, error)
	ContainerInspect(ctx context.Context, container string) (container.InspectResponse, error)
	ContainerExecCreate(ctx context.Context, container string, options container.ExecOptions) (container.ExecCreateResponse, error)
	ContainerExecAttach(ctx context.Context, execID string, options container.ExecAttachOptions) (types.HijackedResponse, error)
	ContainerExecInspect(ctx context.Context, execID string) (container.ExecInspect, error)
	NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error)
	NetworkInspect(ctx context.Context, network string, options network.InspectOptions) (network.Inspect, error)
	VolumeCreate(ctx context.Context, options volume.CreateOptions) (volume.Volume, error)
}

// execer runs probe commands through the engine (probe.Execer).
type execer struct{ d Docker }

// Exec runs cmd in the container without a terminal, waits for it to end
// (discarding its output) and returns its exit code.
func (e execer) Exec(ctx context.Context, id string, cmd []string) (int, error) {
	ex, err := e.d.ContainerExecCreate(ctx, id, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return 0, fmt.Errorf("exec in %.12s: %w", id, err)
	}
	att, err := e.d.ContainerExecAttach(ctx, ex.ID, container.ExecAttachOptions{})
	if err != nil {
		return 0, fmt.Errorf("exec in %.12s: attach: %w", id, err)
	}
	defer att.Close()
	// The stream ends when the command does; a timeout closes it early.
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, att.Reader)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	in, err := e.d.ContainerExecInspect(ctx, ex.ID)
	if err != nil {
		return 0, fmt.Errorf("exec in %.12s: inspect: %w", id, err)
	}
	if in.Running {
		return 0, errors.New("the command still runs after its output closed")
	}
	return in.ExitCode, nil
}

// ensureNetwork creates the institution's network unless it exists. Another
// supervisor may create it at the same moment: the loser finds it made.
func ensureNetwork(ctx context.Context, d Docker, institution string, labels map[string]string) error {
	name := Network(institution)
	if _, err := d.NetworkInspect(ctx, name, network.InspectOptions{}); err == nil {
		return nil
	}
	_, err := d.NetworkCreate(ctx, name, network.CreateOptions{Driver: "bridge", Labels: labels})
	if err == nil || cerrdefs.IsConflict(err) {
		return nil
	}
	if _, ierr := d.NetworkInspect(ctx, name, network.InspectOptions{}); ierr == nil {
		return nil
	}
	return fmt.Errorf("network %s for %s: %w", name, institution, err)
}
