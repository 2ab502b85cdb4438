package kube

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/usage"
)

// Config is the agent's kubernetes section (agent.kubernetes), read when
// agent.kind is kubernetes. The node's name (agent.node) must be the
// Kubernetes node's: the agent watches the pods bound to it.
type Config struct {
	// Kubeconfig is the file the agent reaches the API server with; empty:
	// the pod's service account (in-cluster), as a DaemonSet runs it.
	Kubeconfig string `yaml:"kubeconfig"`
	// InstitutionLabel, ProjectLabel and EnvironmentLabel are the namespace
	// labels a pod's institution, project and environment are read from: one
	// namespace per institution project and environment, as OpenShift
	// projects are used. A namespace without InstitutionLabel is not metered.
	InstitutionLabel string `yaml:"institution_label"`
	ProjectLabel     string `yaml:"project_label"`
	EnvironmentLabel string `yaml:"environment_label"`
	// AppLabel is the pod label its app is read from (the container's name
	// when the pod has none), and a persistent volume claim's (the claim's
	// name when it has none).
	AppLabel string `yaml:"app_label"`
	// CgroupDriver is the kubelet's (cgroupfs or systemd); empty: found from
	// the first pod's cgroup.
	CgroupDriver Driver `yaml:"cgroup_driver"`
	// PodLogDir is where the kubelet writes the containers' CRI log files.
	PodLogDir string `yaml:"pod_log_dir"`
	// ResyncPeriod is how often the informers hand every cached object to the
	// watcher again, in case an update was missed.
	ResyncPeriod time.Duration `yaml:"resync_period"`
}

// DefaultConfig returns the defaults: the paasmeter.io/ namespace labels,
// the recommended app label, the kubelet's log directory, a 10 min resync.
func DefaultConfig() Config {
	return Config{
		InstitutionLabel: "paasmeter.io/institution",
		ProjectLabel:     "paasmeter.io/project",
		EnvironmentLabel: "paasmeter.io/environment",
		AppLabel:         "app.kubernetes.io/name",
		PodLogDir:        "/var/log/pods",
		ResyncPeriod:     10 * time.Minute,
	}
}

// Validate reports what is wrong with c, naming each field.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"institution_label", c.InstitutionLabel}, {"project_label", c.ProjectLabel},
		{"environment_label", c.EnvironmentLabel}, {"app_label", c.AppLabel}, {"pod_log_dir", c.PodLogDir}} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("%s: is required", f.name))
		}
	}
	if c.CgroupDriver != "" && c.CgroupDriver != Cgroupfs && c.CgroupDriver != Systemd {
		errs = append(errs, fmt.Errorf("cgroup_driver: %q must be cgroupfs, systemd or empty (found from the first pod)", c.CgroupDriver))
	}
	if c.ResyncPeriod < time.Minute {
		errs = append(errs, fmt.Errorf("resync_period: %s is below 1m", c.ResyncPeriod))
	}
	return errors.Join(errs...)
}

// Identity is who a container's usage is billed to.
type Identity struct {
	Tenant, Project, App string
	Env                  usage.Environment
}

// ErrNotMetered means a pod's namespace carries no institution label: the
// pod is none of the platform's institutions' (the cluster's own, an
// operator's), and is left alone.
var ErrNotMetered = errors.New("the namespace has no institution label")

// Identity reads who container of pod (in namespace ns) is billed to: the
// institution, project and environment from the namespace's labels, the app
// from the pod's (or the container's name). It wraps ErrNotMetered for a
// namespace without the institution label, and names the first bad label
// otherwise.
func (c *Config) Identity(ns *corev1.Namespace, pod *corev1.Pod, container string) (Identity, error) {
	return c.identity(ns, "pod", &pod.ObjectMeta, container)
}

// ClaimIdentity reads who a persistent volume claim is billed to, as
// Identity does for a pod: the app from the claim's app label, or its name.
func (c *Config) ClaimIdentity(ns *corev1.Namespace, pvc *corev1.PersistentVolumeClaim) (Identity, error) {
	return c.identity(ns, "claim", &pvc.ObjectMeta, pvc.Name)
}

// identity reads the identity of an object of kind in namespace ns; app is
// its app without the app label.
func (c *Config) identity(ns *corev1.Namespace, kind string, obj *metav1.ObjectMeta, app string) (Identity, error) {
	tenant := ns.Labels[c.InstitutionLabel]
	if tenant == "" {
		return Identity{}, fmt.Errorf("namespace %s: %w %s", ns.Name, ErrNotMetered, c.InstitutionLabel)
	}
	id := Identity{Tenant: tenant, Project: ns.Labels[c.ProjectLabel], App: obj.Labels[c.AppLabel],
		Env: usage.Environment(ns.Labels[c.EnvironmentLabel])}
	if id.App == "" {
		id.App = app
	}
	if ps := usage.ValidateLabels(0, id.Tenant, id.Project, id.App, id.Env, "node"); len(ps) > 0 {
		return Identity{}, fmt.Errorf("namespace %s, %s %s: %s (labels %s, %s, %s; %s)", ns.Name, kind, obj.Name, ps[0].String(),
			c.InstitutionLabel, c.ProjectLabel, c.EnvironmentLabel, c.AppLabel)
	}
	return id, nil
}

// Reserved returns what a container reserves on its node, for the reserved
// meters (cpu_limit_millicore_seconds, memory_limit_byte_seconds): its CPU
// and memory requests, both.
//
// Reserved is capacity withheld from everyone else. On Docker that is the
// limit: the runtime places containers by their limits. On Kubernetes the
// scheduler places pods by their requests and never overcommits them: a
// request is the share of the node no other pod can be given. Limits are a
// ceiling that the scheduler does not account and nodes routinely overcommit
// (the sum of the limits may exceed the node), so billing limits would bill
// capacity twice that exists once, and nothing for a pod that sets none.
// Memory goes the same way as CPU, although memory is not compressible: the
// part of a burstable pod's memory beyond its request is the first evicted
// under pressure, so it is not held for the pod; what it does use is billed by
// memory_byte_seconds. A container with a limit and no request has the limit
// as its request (the API server defaults it so; done here too for objects
// that were not defaulted); one with neither reserves nothing (BestEffort).
func Reserved(c *corev1.Container) (cpuMillicores, memoryBytes uint64) {
	get := func(name corev1.ResourceName) (int64, bool) {
		if q, ok := c.Resources.Requests[name]; ok {
			return quantity(name, q.MilliValue(), q.Value())
		}
		if q, ok := c.Resources.Limits[name]; ok {
			return quantity(name, q.MilliValue(), q.Value())
		}
		return 0, false
	}
	if v, ok := get(corev1.ResourceCPU); ok {
		cpuMillicores = uint64(v)
	}
	if v, ok := get(corev1.ResourceMemory); ok {
		memoryBytes = uint64(v)
	}
	return cpuMillicores, memoryBytes
}

// quantity picks the unit the meter counts in: millicores for CPU, bytes for
// memory. A negative quantity (which the API server refuses) reserves nothing.
func quantity(name corev1.ResourceName, milli, whole int64) (int64, bool) {
	v := whole
	if name == corev1.ResourceCPU {
		v = milli
	}
	return v, v > 0
}
