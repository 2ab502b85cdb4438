// Package supervise turns the platform spec into containers on the Docker
// Engine. This file builds one replica's container: labels the metering agent
// follows, the limits the spec sets, and the hardening every container gets
// whatever the spec says.
package supervise

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/go-connections/nat"

	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/spec"
)

// Replica is one container the spec asks for, in one run: a restart is a new
// run and a new container.
type Replica struct {
	Institution, Project string
	App                  spec.App
	Index                int
	// Run identifies this run; it names the container's cgroup parent, where
	// the metering agent finds the run's final counters after it exits.
	Run string
	// Node is the node whose supervisor owns the container.
	Node string
	// Attempt counts the restarts in a row that led to this run (0: a fresh start).
	Attempt int
}

// The labels the supervisor adds to those the metering agent follows.
const (
	// LabelNode marks a container as managed by the supervisor of that node:
	// it never touches a container without it.
	LabelNode = engine.LabelNode
	// LabelSpec is the hash of the app's spec the container was made from; a
	// different hash means the spec changed and the replica is rolled.
	LabelSpec = "paasmeter.spec"
	// LabelAttempt is Replica.Attempt, so a restarted agent continues the
	// backoff where it was.
	LabelAttempt = "paasmeter.attempt"
)

// AppHash identifies what an app's containers are made from: a change to it
// gives another hash, and the replicas are rolled. The replica count, the
// health check and the restart policy are the supervisor's business, not the
// container's: scaling or retuning a probe restarts nothing.
func AppHash(a spec.App) string {
	a.Replicas, a.Health, a.Restart = 0, nil, spec.Restart{}
	b, _ := json.Marshal(a) // plain data: cannot fail; maps are sorted
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:6])
}

// Name is the container name: unique per replica and run.
func (r *Replica) Name() string {
	return fmt.Sprintf("pm-%s-%s-%s-%s-%d-%s", r.Institution, r.Project, r.App.ID, r.App.Env, r.Index, r.Run)
}

// Network is the institution's own Docker network: containers of different
// institutions share none.
func Network(institution string) string { return "pm-net-" + institution }

// VolumeName is the Docker volume of an app's persistent volume, shared by its replicas.
func (r *Replica) VolumeName(v spec.Volume) string {
	return fmt.Sprintf("pm-%s-%s-%s-%s-%s", r.Institution, r.Project, r.App.ID, r.App.Env, v.Name)
}

// Labels are what the metering agent and the supervisor recognise the container by.
func (r *Replica) Labels() map[string]string {
	return map[string]string{
		engine.LabelTenant: r.Institution, engine.LabelProject: r.Project, engine.LabelApp: r.App.ID,
		engine.LabelEnv: string(r.App.Env), engine.LabelReplica: fmt.Sprintf("%s-%d", r.App.ID, r.Index), engine.LabelRun: r.Run,
		LabelNode: r.Node, LabelSpec: AppHash(r.App), LabelAttempt: strconv.Itoa(r.Attempt),
	}
}

// Config returns the container's configuration. Hardening is not optional:
// never privileged, every capability dropped but those the spec keeps,
// no-new-privileges, CPU, memory (without swap) and pids limits always set,
// restarts left to the supervisor so each run is a new container.
func (r *Replica) Config() (*container.Config, *container.HostConfig) {
	a := r.App
	env := make([]string, 0, len(a.EnvVars))
	for k, v := range a.EnvVars {
		env = append(env, k+"="+v)
	}
	sort.Strings(env) // a deterministic config, so a change is a real change
	cfg := &container.Config{Image: a.Image, Cmd: a.Command, Env: env, Labels: r.Labels()}
	// Ports are exposed on the institution's network only, never published
	// on the host: other institutions and the outside reach none of them.
	for _, p := range a.Ports {
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = nat.PortSet{}
		}
		cfg.ExposedPorts[nat.Port(fmt.Sprintf("%d/%s", p.Container, p.Protocol))] = struct{}{}
	}
	pids := a.Resources.Pids
	hc := &container.HostConfig{
		Privileged:     false,
		CapDrop:        []string{"ALL"},
		CapAdd:         a.Capabilities,
		SecurityOpt:    []string{"no-new-privileges:true"},
		ReadonlyRootfs: a.ReadOnlyRoot,
		NetworkMode:    container.NetworkMode(Network(r.Institution)),
		RestartPolicy:  container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Resources: container.Resources{
			NanoCPUs:     int64(a.Resources.CPU) * 1_000_000,
			Memory:       int64(a.Resources.Memory),
			MemorySwap:   int64(a.Resources.Memory),
			PidsLimit:    &pids,
			CgroupParent: "/paasmeter/" + r.Run,
		},
	}
	for _, v := range a.Volumes {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: r.VolumeName(v), Target: v.Path})
	}
	return cfg, hc
}

// VolumeLabels label an app's volume so the agent bills its provisioned size;
// the node label keeps the other agents of a shared engine from billing it too.
func (r *Replica) VolumeLabels(v spec.Volume) map[string]string {
	return map[string]string{
		engine.LabelTenant: r.Institution, engine.LabelProject: r.Project, engine.LabelApp: r.App.ID,
		engine.LabelEnv: string(r.App.Env), engine.LabelSize: fmt.Sprint(uint64(v.Size)), LabelNode: r.Node,
	}
}
