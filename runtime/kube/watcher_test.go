package kube

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/paasmeter/paasmeter/internal/testenv"
	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
)

// clusterEnv names what the watcher's test needs of the test cluster: its
// admin kubeconfig (KUBECONFIG), and where the node's pod logs are seen from
// this host and which busybox image its kubelet has (defaults: the kubelet's
// own directory, the test cluster recipe's image).
func clusterEnv(t *testing.T) (kubernetes.Interface, string, string) {
	t.Helper()
	kc := os.Getenv("KUBECONFIG")
	if kc == "" {
		testenv.Missing(t, "run scripts/test-deps.sh, which brings up the test cluster")
	}
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	logs := os.Getenv("PAASMETER_K8S_POD_LOG_DIR")
	if logs == "" {
		logs = "/var/log/pods"
	}
	image := os.Getenv("PAASMETER_K8S_BUSYBOX_IMAGE")
	if image == "" {
		image = "localhost/testcluster/busybox:1.0"
	}
	return cs, logs, image
}

// TestTheWatcherFollowsARealPodFromStartToRemoval runs a short pod on the
// test cluster's node, in a metered namespace and in one that is not, and
// checks what the watcher makes of it: the run's start and death with its
// exit code, its container with its cgroups and reserved resources, its
// output from the kubelet's log file, its removal; nothing of the other pod
// but a count.
func TestTheWatcherFollowsARealPodFromStartToRemoval(t *testing.T) {
	cs, logDir, image := clusterEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(nodes.Items) == 0 {
		t.Fatalf("nodes: %v (%d)", err, len(nodes.Items))
	}
	node := nodes.Items[0].Name

	suffix := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	metered, unmetered := "kubetest-caami-"+suffix, "kubetest-other-"+suffix
	for name, labels := range map[string]map[string]string{
		metered:   {"paasmeter.io/institution": "caami", "paasmeter.io/project": "jobs", "paasmeter.io/environment": "test"},
		unmetered: nil,
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}

	cfg := DefaultConfig()
	cfg.PodLogDir = logDir
	reg := prometheus.NewRegistry()
	o := Options{Config: cfg, Node: node, Client: cs, Registry: reg}
	if r, err := cgroups.NewReader("/sys/fs/cgroup"); err == nil {
		o.Cgroups = r
	}
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		if err := w.Run(wctx); err != nil {
			t.Error(err)
		}
	}()
	evs, _ := w.Events(wctx, time.Now().Add(-time.Minute))

	job := func(ns string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "report"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: ptr(false), NodeName: node,
				Containers: []corev1.Container{{Name: "job", Image: image, ImagePullPolicy: corev1.PullNever,
					Command:   []string{"/bin/sh", "-c", "echo one; echo two >&2; sleep 1; exit 3"},
					Resources: resources(list("100m", "16Mi"), list("500m", "64Mi"))}}}}
	}
	for _, ns := range []string{metered, unmetered} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, job(ns), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Its start, then its death with its exit code.
	var id string
	for {
		ev := next(ctx, t, evs)
		if ev.Labels[engine.LabelTenant] != "caami" {
			t.Fatalf("an event of a pod not metered: %+v", ev)
		}
		if id == "" {
			if ev.Type != engine.EventStart {
				t.Fatalf("first event %+v, want the start", ev)
			}
			id = ev.ContainerID
			continue
		}
		if ev.ContainerID != id {
			t.Fatalf("event of another container: %+v", ev)
		}
		if ev.Type == engine.EventDie {
			if !ev.ExitKnown || ev.ExitCode != 3 {
				t.Fatalf("died: %+v", ev)
			}
			break
		}
	}
	c, err := w.Inspect(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if c.Tenant != "caami" || c.Project != "jobs" || c.App != "report" || c.Env != "test" || c.Running || c.ExitCode != 3 ||
		c.CPULimitMillicores != 100 || c.MemoryLimitBytes != 16<<20 || !strings.HasSuffix(c.RunLabel, ":job:0") || !c.FinishedAt.After(c.StartedAt) {
		t.Errorf("container %+v", c)
	}
	var lines []string
	if err := w.Logs(ctx, id, time.Time{}, true, func(m engine.LogMessage) error {
		lines = append(lines, m.Stream+" "+string(m.Text))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "|") != "stdout one|stderr two" {
		t.Errorf("logs %q", lines)
	}
	if v := testutil.ToFloat64(w.unmetered.WithLabelValues("no_institution")); v < 1 {
		t.Errorf("unmetered pods: %g", v)
	}

	// Removed with its pod.
	if err := cs.CoreV1().Pods(metered).Delete(ctx, "job", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next(ctx, t, evs)
		if ev.ContainerID == id && ev.Type == engine.EventDestroy {
			break
		}
	}
	if _, err := w.Inspect(ctx, id); err == nil {
		t.Error("a removed pod's container is still known")
	}
}

func next(ctx context.Context, t *testing.T, evs <-chan engine.Event) engine.Event {
	t.Helper()
	select {
	case ev, ok := <-evs:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return ev
	case <-ctx.Done():
		t.Fatal("no event in time")
	}
	return engine.Event{}
}
