package kube

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
)

// Driver is the kubelet's cgroup driver, which decides how its cgroups are
// named: cgroupfs (plain directories) or systemd (slices and scopes).
type Driver string

// The two cgroup drivers.
const (
	Cgroupfs Driver = "cgroupfs"
	Systemd  Driver = "systemd"
)

// drivers is the order Cgroups tries them in when the layout is not known
// yet: systemd is the default of kubeadm, OpenShift and every cgroup v2
// distribution.
var drivers = []Driver{Systemd, Cgroupfs}

// PodCgroup is the path, relative to the cgroup hierarchy roots, of a pod's
// cgroup as the kubelet names it:
//
//	cgroupfs: kubepods/<qos>/pod<uid>      (Guaranteed: kubepods/pod<uid>)
//	systemd:  kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice
//	          (Guaranteed: kubepods.slice/kubepods-pod<uid_>.slice)
//
// where the systemd driver writes the uid's dashes as underscores (a dash
// opens a level of slices).
func PodCgroup(d Driver, qos corev1.PodQOSClass, uid string) string {
	class := strings.ToLower(string(qos))
	if qos == corev1.PodQOSGuaranteed || qos == "" {
		class = ""
	}
	if d == Systemd {
		prefix := "kubepods"
		dir := "kubepods.slice"
		if class != "" {
			prefix += "-" + class
			dir = path.Join(dir, prefix+".slice")
		}
		return path.Join(dir, prefix+"-pod"+strings.ReplaceAll(uid, "-", "_")+".slice")
	}
	return path.Join("kubepods", class, "pod"+uid)
}

// The container runtimes, as the scheme of a container status's containerID
// names them.
const (
	Containerd = "containerd"
	CRIO       = "cri-o"
	Docker     = "docker" // cri-dockerd
)

// ContainerCgroup is the path of a container's cgroup below its pod's: each
// runtime names it its own way. Under the systemd driver it is a scope
// (cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope); under
// cgroupfs containerd and cri-dockerd use the bare id and CRI-O crio-<id>.
// CRI-O's conmon sits beside the container in crio-conmon-<id>(.scope),
// which is not the container.
func ContainerCgroup(d Driver, runtime, pod, id string) string {
	prefix := map[string]string{Containerd: "cri-containerd-", CRIO: "crio-", Docker: "docker-"}[runtime]
	if d == Systemd {
		return path.Join(pod, prefix+id+".scope")
	}
	if runtime == CRIO {
		return path.Join(pod, prefix+id)
	}
	return path.Join(pod, id)
}

// SplitContainerID splits a container status's containerID
// ("containerd://<id>") into its runtime and the id the runtime and the
// cgroups know it by.
func SplitContainerID(s string) (runtime, id string, err error) {
	runtime, id, ok := strings.Cut(s, "://")
	if !ok || runtime == "" || id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return "", "", fmt.Errorf("container id %q is not <runtime>://<id>", s)
	}
	return runtime, id, nil
}

// Cgroups finds the pods' and containers' cgroups on this node through
// runtime/cgroups' Reader, which reads v1 and v2 alike: the kubelet uses the
// same relative path in every v1 hierarchy and in the v2 tree.
type Cgroups struct {
	r  *cgroups.Reader
	mu sync.Mutex
	// driver is the node's, once a pod's cgroup was found under it ("":
	// not yet known). The kubelet uses one driver for its whole life.
	driver Driver
}

// NewCgroups finds cgroups through r; driver is the kubelet's when
// configured ("": found from the first pod).
func NewCgroups(r *cgroups.Reader, driver Driver) *Cgroups {
	return &Cgroups{r: r, driver: driver}
}

// Paths are where one container run of a pod is counted.
type Paths struct {
	// Pod is the pod's cgroup: it holds the counters of every container of
	// the pod, including those that exited, until the kubelet removes it once
	// the pod is over.
	Pod string
	// Container is the container's own cgroup; "" once it exited (its
	// runtime removes it at the exit).
	Container string
}

// Find returns the cgroups of a container of a pod, trying the known driver
// (or both, learning which the node uses). A pod whose cgroup is not there
// (not created yet, or removed since the pod ended) gives an error wrapping
// cgroups.ErrNotFound; so does a container whose pod is there but whose own
// cgroup is not, with Paths.Pod set: the container exited, and its pod
// cgroup still holds its counters.
func (c *Cgroups) Find(qos corev1.PodQOSClass, uid, containerID string) (Paths, error) {
	runtime, id, err := SplitContainerID(containerID)
	if err != nil {
		return Paths{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	try := drivers
	if c.driver != "" {
		try = []Driver{c.driver}
	}
	var tried []string
	for _, d := range try {
		pod := PodCgroup(d, qos, uid)
		if !c.exists(pod) {
			tried = append(tried, pod)
			continue
		}
		c.driver = d
		p := Paths{Pod: pod, Container: ContainerCgroup(d, runtime, pod, id)}
		if !c.exists(p.Container) {
			missing := p.Container
			p.Container = ""
			return p, fmt.Errorf("container %s: no cgroup at %s: %w", id, missing, cgroups.ErrNotFound)
		}
		return p, nil
	}
	return Paths{}, fmt.Errorf("pod %s: no cgroup at %s: %w", uid, strings.Join(tried, ", "), cgroups.ErrNotFound)
}

// exists reports whether a cgroup is there and readable as a container's.
func (c *Cgroups) exists(p string) bool {
	_, err := c.r.Read(p)
	return err == nil || !errors.Is(err, cgroups.ErrNotFound)
}
