package node_test

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/collector/collectortest"
	"github.com/paasmeter/paasmeter/runtime/agent"
	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
	"github.com/paasmeter/paasmeter/runtime/node"
)

// TestAKubernetesNodeServesCAdvisorMetricsWithPodLabels runs a Kubernetes
// node on the test cluster, shipping to a real collector, with a busybox pod
// in a metered namespace, and scrapes the node's admin /metrics: the pod's
// container under the kubelet's cAdvisor names, labelled with its namespace,
// its pod and its name in the pod's spec besides the institution's labels,
// with the pod's memory request as its limit and the kubelet's start time.
func TestAKubernetesNodeServesCAdvisorMetricsWithPodLabels(t *testing.T) {
	cl := kubetest.New(t)
	ns := cl.Namespace(t, map[string]string{"paasmeter.io/institution": "caami", "paasmeter.io/project": "shop", "paasmeter.io/environment": "prod"})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app.kubernetes.io/name": "web"}},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "server", Image: cl.Busybox, ImagePullPolicy: corev1.PullNever, Command: []string{"sleep", "3600"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
			}},
		},
	}
	if _, err := cl.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := cl.WaitPod(t, ns, pod.Name, 2*time.Minute, "running", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil
	})
	started := running.Status.ContainerStatuses[0].State.Running.StartedAt.Time

	col, err := collectortest.Start(t.TempDir(), cl.Node, "token", "caami")
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	cfg := agent.DefaultConfig()
	cfg.Kind, cfg.Node, cfg.CollectorURL, cfg.SpoolDir, cfg.AdminListen = agent.KindKubernetes, cl.Node, col.URL, t.TempDir(), "127.0.0.1:0"
	cfg.CgroupRoot, cfg.SampleInterval = cl.CgroupRoot, time.Second
	cfg.Kubernetes.PodLogDir = filepath.Join(cl.VarLog, "pods")
	n, err := node.Open(node.Options{Config: cfg, Token: "token", KubeClient: cl.Client,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx, false) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
		if err := n.Close(); err != nil {
			t.Error(err)
		}
	}()

	want := map[string]string{"tenant": "caami", "project": "shop", "app": "web", "env": "prod", "node": cl.Node,
		"namespace": ns, "pod": "web-0", "container": "server"}
	// The pod's series, by name, once the agent has sampled it.
	var series map[string]podSeries
	for {
		if series = scrapePod(ctx, t, "http://"+n.AdminAddr()+"/metrics", ns, pod.Name); series != nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the pod's container never showed in the node's /metrics")
		case <-time.After(200 * time.Millisecond):
		}
	}
	for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_usage_bytes",
		"container_spec_memory_limit_bytes", "container_start_time_seconds", "container_processes"} {
		s, ok := series[name]
		if !ok {
			t.Errorf("no %s for the pod's container", name)
		} else if !maps.Equal(s.labels, want) {
			t.Errorf("%s labels %v, want %v", name, s.labels, want)
		}
	}
	value := func(name string) float64 { return series[name].value }
	if v := value("container_spec_memory_limit_bytes"); v != 16<<20 {
		t.Errorf("container_spec_memory_limit_bytes = %g, want the memory request, 16 MiB", v)
	}
	if v := value("container_start_time_seconds"); v != float64(started.Unix()) {
		t.Errorf("container_start_time_seconds = %f, want the kubelet's start %d", v, started.Unix())
	}
	if v := value("container_processes"); v < 1 {
		t.Errorf("container_processes = %g, want the sleep", v)
	}
	if value("container_cpu_usage_seconds_total") <= 0 || value("container_memory_working_set_bytes") <= 0 {
		t.Errorf("no CPU or memory counted: cpu %g s, working set %g bytes", value("container_cpu_usage_seconds_total"),
			value("container_memory_working_set_bytes"))
	}
}

// podSeries is one series of a scrape: its labels and its value.
type podSeries struct {
	labels map[string]string
	value  float64
}

// scrapePod reads url's exposition and returns the container series of one
// pod by metric name (nil when it has none): one series each, or the test
// fails.
func scrapePod(ctx context.Context, t *testing.T, url, ns, pod string) map[string]podSeries {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]podSeries
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["namespace"] != ns || got["pod"] != pod {
				continue
			}
			if out == nil {
				out = map[string]podSeries{}
			}
			if _, dup := out[name]; dup {
				t.Fatalf("%s: two series of pod %s/%s", name, ns, pod)
			}
			out[name] = podSeries{labels: got, value: m.GetCounter().GetValue() + m.GetGauge().GetValue()}
		}
	}
	return out
}
