// Package kubetest gives tests a real Kubernetes cluster: the single-node
// cluster that `make test` brings up (scripts/k8s, docs/kubernetes.md), a
// client for it, namespaces that go away with the test, images imported into
// its node, and waits on pods that watch for a condition until a deadline.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/paasmeter/paasmeter/internal/testenv"
)

// The variables scripts/test-deps.sh prints for the test cluster.
const (
	// KubeconfigEnv points at the cluster's admin kubeconfig. The tests read
	// it rather than KUBECONFIG, so that a developer's own cluster never
	// gets a test's namespaces.
	KubeconfigEnv = "PAASMETER_TEST_KUBECONFIG"
	// NodeEnv is the node's name.
	NodeEnv = "PAASMETER_TEST_K8S_NODE"
	// VarLogEnv is the host path of the node's /var/log (pods/<ns>_<pod>_<uid>/…).
	VarLogEnv = "PAASMETER_TEST_K8S_VAR_LOG"
	// CgroupRootEnv is the host path of the cgroup root the node's pods are under.
	CgroupRootEnv = "PAASMETER_TEST_K8S_CGROUP_ROOT"
	// ContainerdEnv is the socket of the node's containerd, which images are imported into.
	ContainerdEnv = "PAASMETER_TEST_K8S_CONTAINERD"
	// BusyboxEnv names the busybox image every node has (its applets in /bin).
	BusyboxEnv = "PAASMETER_TEST_K8S_BUSYBOX_IMAGE"
)

// Cluster is the test cluster as a test sees it.
type Cluster struct {
	// Config is the admin's client configuration.
	Config *rest.Config
	Client kubernetes.Interface
	// Node is the one node's name.
	Node string
	// VarLog is the host path of the node's /var/log.
	VarLog string
	// CgroupRoot is the host path of the cgroup root.
	CgroupRoot string
	// Containerd is the node's containerd socket.
	Containerd string
	// Busybox is an image the node has: busybox, its applets in /bin.
	Busybox string
}

// New connects to the test cluster. Without one it fails the test under
// CI=true and skips it elsewhere, saying how to get one.
func New(t testing.TB) *Cluster {
	t.Helper()
	path := os.Getenv(KubeconfigEnv)
	if path == "" {
		testenv.Missing(t, "no Kubernetes cluster for this test: run `make test` as root (scripts/test-deps.sh brings one up, docs/kubernetes.md), or eval \"$(./scripts/test-deps.sh)\" to set "+KubeconfigEnv)
	}
	c := &Cluster{Node: os.Getenv(NodeEnv), VarLog: os.Getenv(VarLogEnv), CgroupRoot: os.Getenv(CgroupRootEnv),
		Containerd: os.Getenv(ContainerdEnv), Busybox: os.Getenv(BusyboxEnv)}
	for env, v := range map[string]string{NodeEnv: c.Node, VarLogEnv: c.VarLog, CgroupRootEnv: c.CgroupRoot, ContainerdEnv: c.Containerd, BusyboxEnv: c.Busybox} {
		if v == "" {
			t.Fatalf("%s is set but %s is not: eval the whole output of scripts/test-deps.sh", KubeconfigEnv, env)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig %s (%s): %v", path, KubeconfigEnv, err)
	}
	c.Config = cfg
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client for %s: %v", cfg.Host, err)
	}
	c.Client = cs
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cs.CoreV1().Nodes().Get(ctx, c.Node, metav1.GetOptions{}); err != nil {
		t.Fatalf("the test cluster at %s (%s=%s) does not answer for node %s: %v", cfg.Host, KubeconfigEnv, path, c.Node, err)
	}
	return c
}

// Namespace creates a namespace with labels (an institution's project, say)
// and a name of its own, deleted when the test ends, and returns its name
// once pods may be created in it (its default ServiceAccount exists).
func (c *Cluster) Namespace(t testing.TB, labels map[string]string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	all := map[string]string{"paasmeter.io/test": "kubetest"}
	for k, v := range labels {
		all[k] = v
	}
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubetest-", Labels: all},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		// Its pods end in the background, within their grace periods.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	sas := c.Client.CoreV1().ServiceAccounts(ns.Name)
	if _, err := until(ctx, listWatch(sas.List, sas.Watch, "default"), &corev1.ServiceAccount{}, func(runtime.Object) bool { return true }); err != nil {
		t.Fatalf("namespace %s: its default ServiceAccount never came: %v", ns.Name, err)
	}
	return ns.Name
}

// LoadImage imports the image archive at path (an OCI layout or docker save
// tar, such as internal/ociimage writes) into the node's containerd, where
// pods with imagePullPolicy Never find it under the name it carries.
func (c *Cluster) LoadImage(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ctr", "--address", c.Containerd, "--namespace", "k8s.io", "images", "import", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images import %s: %v\n%s", path, err, out)
	}
}

// WaitPod waits, until within has passed, for pod ns/name to exist and meet
// cond (what says what cond waits for, for the failure), and returns the pod
// as it met it. It watches the pod: no poll interval to tune.
func (c *Cluster) WaitPod(t testing.TB, ns, name string, within time.Duration, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	pods := c.Client.CoreV1().Pods(ns)
	return waitFor(t, listWatch(pods.List, pods.Watch, name), &corev1.Pod{}, within, fmt.Sprintf("pod %s/%s: not %s", ns, name, what), cond,
		func(p *corev1.Pod) string {
			return fmt.Sprintf("phase %s, conditions %v, containers %v", p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses)
		})
}

// WaitDeployment waits, until within has passed, for Deployment ns/name to
// exist and meet cond (what says what cond waits for), and returns it as it
// met it.
func (c *Cluster) WaitDeployment(t testing.TB, ns, name string, within time.Duration, what string, cond func(*appsv1.Deployment) bool) *appsv1.Deployment {
	t.Helper()
	deps := c.Client.AppsV1().Deployments(ns)
	return waitFor(t, listWatch(deps.List, deps.Watch, name), &appsv1.Deployment{}, within, fmt.Sprintf("deployment %s/%s: not %s", ns, name, what), cond,
		func(d *appsv1.Deployment) string { return fmt.Sprintf("status %+v", d.Status) })
}

// waitFor watches the one object lw lists (of objType's type) until it meets
// cond, within; else it fails the test with failure, the object's last state
// and the error.
func waitFor[T runtime.Object](t testing.TB, lw *cache.ListWatch, objType T, within time.Duration, failure string, cond func(T) bool, state func(T) string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var last T
	seen := false
	obj, err := until(ctx, lw, objType, func(o runtime.Object) bool {
		last, seen = o.(T), true
		return cond(last)
	})
	if err != nil {
		st := "it never existed"
		if seen {
			st = state(last)
		}
		t.Fatalf("%s within %v (%s): %v", failure, within, st, err)
	}
	return obj.(T)
}

// WaitPodPhase waits for pod ns/name to reach one of phases (Succeeded or
// Failed, say, for a pod that runs to its end).
func (c *Cluster) WaitPodPhase(t testing.TB, ns, name string, within time.Duration, phases ...corev1.PodPhase) *corev1.Pod {
	t.Helper()
	what := fmt.Sprintf("in phase %v", phases)
	return c.WaitPod(t, ns, name, within, what, func(p *corev1.Pod) bool {
		for _, ph := range phases {
			if p.Status.Phase == ph {
				return true
			}
		}
		return false
	})
}

// Logs returns what the container of pod ns/name wrote, as the kubelet
// serves it (kubectl logs).
func (c *Cluster) Logs(t testing.TB, ns, name, container string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := c.Client.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: container}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s/%s %s: %v", ns, name, container, err)
	}
	return string(b)
}

// listWatch lists and watches the one object called name of a namespaced
// resource, through its typed client's List and Watch.
func listWatch[L runtime.Object](list func(context.Context, metav1.ListOptions) (L, error), watchf func(context.Context, metav1.ListOptions) (watch.Interface, error), name string) *cache.ListWatch {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = sel
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = sel
			return watchf(ctx, o)
		},
	}
}

// until watches what lw lists until an object of it meets cond, or ctx ends.
func until(ctx context.Context, lw *cache.ListWatch, objType runtime.Object, cond func(runtime.Object) bool) (runtime.Object, error) {
	ev, err := watchtools.UntilWithSync(ctx, lw, objType, nil, func(ev watch.Event) (bool, error) {
		switch ev.Type {
		case watch.Added, watch.Modified:
			return cond(ev.Object), nil
		case watch.Deleted:
			return false, errors.New("deleted")
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return ev.Object, nil
}

// Kubectl returns the test cluster's kubectl (scripts/k8s/env.sh says where
// the binaries are), whose kustomize is the version the cluster's is.
func Kubectl(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "-c", `. "$1"/scripts/k8s/env.sh && printf %s "$K8S_BIN/kubectl"`, "bash", root).Output()
	if err != nil {
		t.Fatalf("scripts/k8s/env.sh: %v", err)
	}
	path := string(out)
	if _, err := os.Stat(path); err != nil {
		testenv.Missing(t, "no kubectl at "+path+": run `make test` as root (scripts/k8s/build.sh builds it, docs/kubernetes.md)")
	}
	return path
}

// Resources are a container's requests and limits, as quantities ("" for
// none).
func Resources(cpuReq, memReq, cpuLim, memLim string) corev1.ResourceRequirements {
	list := func(cpu, mem string) corev1.ResourceList {
		l := corev1.ResourceList{}
		if cpu != "" {
			l[corev1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			l[corev1.ResourceMemory] = resource.MustParse(mem)
		}
		return l
	}
	return corev1.ResourceRequirements{Requests: list(cpuReq, memReq), Limits: list(cpuLim, memLim)}
}

// Image is an image archive and the name the node knows it by once loaded.
type Image struct {
	// Path is the archive.
	Path string
	// Ref is the image's name (localhost/paasmeter:<Version>).
	Ref string
	// Version is what `paasmeter --version` in it prints.
	Version string
}

// PaasmeterImage builds the paasmeter image as `make image` does (the static
// binary, then the image FROM scratch around it) into the test's temporary
// directory, with a version of its own, so that a pod's output proves which
// build it runs. Each call builds anew.
func PaasmeterImage(t testing.TB) Image {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	version := fmt.Sprintf("kubetest-%d", time.Now().UnixNano())
	img := Image{Path: filepath.Join(dir, "paasmeter-image.tar"), Ref: "localhost/paasmeter:" + version, Version: version}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "image",
		"BIN="+filepath.Join(dir, "paasmeter"), "IMAGE="+img.Path, "VERSION="+version)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	return img
}

// repoRoot is the directory of the module's go.mod, above the test's own.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module github.com/paasmeter/paasmeter\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("kubetest: no go.mod of github.com/paasmeter/paasmeter above the working directory")
		}
		dir = parent
	}
}
