package kube

import (
	"context"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
)

// TestTheWatcherFollowsARealPodFromStartToRemoval runs a short pod on the
// test cluster's node, in a metered namespace and in one that is not, and
// checks what the watcher makes of it: the run's start and death with its
// exit code, its container with its cgroups and reserved resources, its
// output from the kubelet's log file, its removal; nothing of the other pod
// but a count.
func TestTheWatcherFollowsARealPodFromStartToRemoval(t *testing.T) {
	cl := kubetest.New(t)
	cs, node, image := cl.Client, cl.Node, cl.Busybox
	metered := cl.Namespace(t, map[string]string{"paasmeter.io/institution": "caami", "paasmeter.io/project": "jobs", "paasmeter.io/environment": "test"})
	unmetered := cl.Namespace(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	cfg := DefaultConfig()
	cfg.PodLogDir = filepath.Join(cl.VarLog, "pods")
	reg := prometheus.NewRegistry()
	o := Options{Config: cfg, Node: node, Client: cs, Registry: reg}
	if r, err := cgroups.NewReader(cl.CgroupRoot); err == nil {
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
					Resources: kubetest.Resources("100m", "16Mi", "500m", "64Mi")}}}}
	}
	ours := map[string]bool{} // the pods' uids, as their runs' ids begin
	for _, ns := range []string{metered, unmetered} {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, job(ns), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ours[string(p.UID)] = true
	}
	// The cluster is shared with other tests: their pods' events are theirs.
	next := func() engine.Event {
		for {
			ev := next(ctx, t, evs)
			if uid, _, _ := strings.Cut(ev.Labels[engine.LabelRun], ":"); ours[uid] {
				return ev
			}
		}
	}

	// Its start, then its death with its exit code.
	var id string
	for {
		ev := next()
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
	// stdout and stderr reach the runtime through two pipes, so the file
	// orders lines within a stream only.
	lines := map[string][]string{}
	if err := w.Logs(ctx, id, time.Time{}, true, func(m engine.LogMessage) error {
		lines[m.Stream] = append(lines[m.Stream], string(m.Text))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := map[string][]string{"stdout": {"one"}, "stderr": {"two"}}; !reflect.DeepEqual(lines, want) {
		t.Errorf("logs %q, want %q", lines, want)
	}
	if v := testutil.ToFloat64(w.unmetered.WithLabelValues("no_institution")); v < 1 {
		t.Errorf("unmetered pods: %g", v)
	}

	// Removed with its pod.
	if err := cs.CoreV1().Pods(metered).Delete(ctx, "job", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		ev := next()
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
