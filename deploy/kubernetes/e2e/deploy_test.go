// Package e2e_test is the proof on the real cluster (issue 20 §3): paasmeter
// deployed with deploy/kubernetes on the test cluster `make test` brings up,
// an example platform run there as Kubernetes objects, and what the
// collector tells of it checked against the kernel's counters and the API
// server's times, across a SIGKILL of the agent and the loss of its pod.
package e2e_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
)

const (
	// overlayDir patches the base for the test cluster (its kustomization says how).
	overlayDir = "testdata/overlay"
	// namespace and the suffix are the overlay's.
	namespace     = "paasmeter-e2e"
	collectorName = "paasmeter-collector-e2e"
	agentName     = "paasmeter-agent-e2e"
	// stateDir holds the host paths the overlay gives the agent's state and
	// the collector's store: the same path on the host and in the node's
	// mount namespace, which rebinds only /run, /var/lib and /var/log.
	stateDir = "/var/tmp/paasmeter-e2e"
	// collectorUID is the image's user, which must own the store's directory.
	collectorUID = 65532
	// The overlay's test tokens (collector-config.yaml holds their sha256).
	caamiToken = "pm_e2e_caami"
	onaToken   = "pm_e2e_ona"
)

// deployment is paasmeter as the overlay runs it on the test cluster.
type deployment struct {
	// url is the collector's, on the node's address.
	url string
	// storeDir is the host path of the collector's embedded store.
	storeDir string
	// sampleInterval is the agent's.
	sampleInterval time.Duration
}

// deploy applies the overlay, with img as the paasmeter image, after taking
// away what an earlier run left (its namespace, its host paths), and returns
// once the collector is Ready and the agent's pod runs. Everything goes
// again when the test ends; the host paths stay after a failure, to be read.
func deploy(t *testing.T, cl *kubetest.Cluster, img kubetest.Image) deployment {
	t.Helper()
	kc := kubetest.Kubectl(t)
	var cfg struct {
		Collector struct {
			Listen string `json:"listen"`
		} `json:"collector"`
	}
	readYAML(t, filepath.Join(overlayDir, "collector-config.yaml"), &cfg)
	var acfg struct {
		Agent struct {
			SampleInterval string `json:"sample_interval"`
		} `json:"agent"`
	}
	readYAML(t, filepath.Join(overlayDir, "agent-config.yaml"), &acfg)
	every, err := time.ParseDuration(acfg.Agent.SampleInterval)
	if err != nil {
		t.Fatalf("the overlay's agent.sample_interval: %v", err)
	}
	d := deployment{url: "http://" + cfg.Collector.Listen, storeDir: filepath.Join(stateDir, "collector"), sampleInterval: every}

	// A kustomization over the overlay names this build's image: kustomize
	// takes its resources by relative path only.
	top := t.TempDir()
	abs, err := filepath.Abs(overlayDir)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(top, abs)
	if err != nil {
		t.Fatal(err)
	}
	name, tag, _ := strings.Cut(img.Ref, ":")
	k := fmt.Sprintf("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [%s]\nimages:\n  - name: %s\n    newTag: %s\n", rel, name, tag)
	if err := os.WriteFile(filepath.Join(top, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}

	// What an earlier run left: its objects, then its host paths.
	runKubectl(t, 3*time.Minute, kc, "delete", "-k", top, "--ignore-not-found", "--wait")
	if err := os.RemoveAll(stateDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(d.storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(d.storeDir, collectorUID, collectorUID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		runKubectl(t, 3*time.Minute, kc, "delete", "-k", top, "--ignore-not-found", "--wait")
		if !t.Failed() {
			if err := os.RemoveAll(stateDir); err != nil {
				t.Error(err)
			}
		}
	})
	runKubectl(t, 2*time.Minute, kc, "apply", "-k", top)

	// The first start of the collector and the agent loads their image.
	waitPods(t, cl, namespace, "app.kubernetes.io/name=paasmeter-collector", 3*time.Minute, "the collector Ready", func(pods []*corev1.Pod) bool {
		return len(pods) == 1 && podReady(pods[0])
	})
	agentPod(t, cl, "")
	return d
}

// agentPod waits for the agent's pod, other than the one of uid not (""
// for any), to run, and returns it.
func agentPod(t *testing.T, cl *kubetest.Cluster, not string) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	waitPods(t, cl, namespace, "app.kubernetes.io/name=paasmeter-agent", 2*time.Minute, "the agent running", func(pods []*corev1.Pod) bool {
		for _, p := range pods {
			if string(p.UID) != not && p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podReady(p) {
				found = p
				return true
			}
		}
		return false
	})
	return found
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitPods watches the pods of ns that selector selects until cond holds for
// them (what says what for the failure), within a deadline.
func waitPods(t *testing.T, cl *kubetest.Cluster, ns, selector string, within time.Duration, what string, cond func([]*corev1.Pod) bool) []*corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	pods := cl.Client.CoreV1().Pods(ns)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return pods.Watch(ctx, o)
		},
	}
	seen := map[string]*corev1.Pod{}
	list := func() []*corev1.Pod {
		out := make([]*corev1.Pod, 0, len(seen))
		for _, p := range seen {
			out = append(out, p)
		}
		return out
	}
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			delete(seen, p.Name)
		} else {
			seen[p.Name] = p
		}
		return cond(list()), nil
	})
	if err != nil {
		var states []string
		for _, p := range seen {
			states = append(states, fmt.Sprintf("%s: phase %s, conditions %v, containers %v", p.Name, p.Status.Phase, p.Status.Conditions, p.Status.ContainerStatuses))
		}
		t.Fatalf("pods %s in %s: not %s within %v (%s): %v", selector, ns, what, within, strings.Join(states, "; "), err)
	}
	return list()
}

// podsOf returns the pods of ns that selector selects, as they are now.
func podsOf(t *testing.T, cl *kubetest.Cluster, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := cl.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// deletePod deletes a pod at once (kubectl delete --grace-period=0 --force).
func deletePod(t *testing.T, cl *kubetest.Cluster, p *corev1.Pod) {
	t.Helper()
	zero := int64(0)
	err := cl.Client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("delete pod %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// runKubectl runs kubectl against the test cluster.
func runKubectl(t *testing.T, within time.Duration, kc string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	args = append([]string{"--kubeconfig", os.Getenv(kubetest.KubeconfigEnv)}, args...)
	if out, err := exec.CommandContext(ctx, kc, args...).CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args[2:], " "), err, out)
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sigsyaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// selector is a label selector of one label.
func selector(k, v string) string { return labels.SelectorFromSet(labels.Set{k: v}).String() }
