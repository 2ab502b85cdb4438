package kube

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/paasmeter/paasmeter/events"
	"github.com/paasmeter/paasmeter/runtime/engine"
	"github.com/paasmeter/paasmeter/runtime/kube/kubetest"
	"github.com/paasmeter/paasmeter/usage"
)

var t0 = time.Date(2026, 12, 7, 7, 0, 0, 0, time.UTC)

func at(s int) metav1.Time { return metav1.NewTime(t0.Add(time.Duration(s) * time.Second)) }

func namespace(labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "caami-web-prod", Labels: labels}}
}

var meteredNS = namespace(map[string]string{"paasmeter.io/institution": "caami", "paasmeter.io/project": "web", "paasmeter.io/environment": "prod"})

func pod(name string, restart corev1.RestartPolicy, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "caami-web-prod", UID: fixtureUID, Labels: map[string]string{"app.kubernetes.io/name": "shop"}},
		Spec:       corev1.PodSpec{RestartPolicy: restart, Containers: containers},
		Status:     corev1.PodStatus{QOSClass: corev1.PodQOSBurstable},
	}
}

func TestIdentityComesFromTheNamespaceAndTheAppFromThePod(t *testing.T) {
	cfg := DefaultConfig()
	p := pod("shop-1", corev1.RestartPolicyAlways, corev1.Container{Name: "web"})
	id, err := cfg.Identity(meteredNS, p, "web")
	if err != nil || id != (Identity{Tenant: "caami", Project: "web", App: "shop", Env: usage.Environment("prod")}) {
		t.Errorf("identity %+v, %v", id, err)
	}
	// Without the app label, the container's name.
	delete(p.Labels, "app.kubernetes.io/name")
	if id, err := cfg.Identity(meteredNS, p, "web"); err != nil || id.App != "web" {
		t.Errorf("no app label: %+v, %v", id, err)
	}
	// Configured keys.
	cfg.InstitutionLabel, cfg.AppLabel = "example.org/tenant", "app"
	p.Labels["app"] = "cart"
	ns := namespace(map[string]string{"example.org/tenant": "ona", "paasmeter.io/project": "web", "paasmeter.io/environment": "dev"})
	if id, err := cfg.Identity(ns, p, "web"); err != nil || id.Tenant != "ona" || id.App != "cart" || id.Env != "dev" {
		t.Errorf("configured labels: %+v, %v", id, err)
	}
	// A namespace without the institution label is not metered.
	if _, err := cfg.Identity(meteredNS, p, "web"); !errors.Is(err, ErrNotMetered) {
		t.Errorf("no institution label: %v", err)
	}
	// A bad label is named.
	ns.Labels["paasmeter.io/environment"] = "staging"
	if _, err := cfg.Identity(ns, p, "web"); err == nil || errors.Is(err, ErrNotMetered) || !strings.Contains(err.Error(), "environment") {
		t.Errorf("bad environment: %v", err)
	}
}

func TestReservedIsTheRequestsOrTheLimitsWhereNoRequest(t *testing.T) {
	for _, tc := range []struct {
		name     string
		res      corev1.ResourceRequirements
		cpu, mem uint64
	}{
		{"requests, not limits", kubetest.Resources("100m", "16Mi", "500m", "64Mi"), 100, 16 << 20},
		{"limits stand for missing requests", kubetest.Resources("", "", "2", "1Gi"), 2000, 1 << 30},
		{"mixed", kubetest.Resources("250m", "", "", "128Mi"), 250, 128 << 20},
		{"best effort", kubetest.Resources("", "", "", ""), 0, 0},
	} {
		cpu, mem := Reserved(&corev1.Container{Resources: tc.res})
		if cpu != tc.cpu || mem != tc.mem {
			t.Errorf("%s: %d millicores, %d bytes; want %d, %d", tc.name, cpu, mem, tc.cpu, tc.mem)
		}
	}
}

func running(name, id string, restarts int32, started int, ready bool) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: name, ContainerID: "containerd://" + id, RestartCount: restarts, Ready: ready,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at(started)}}}
}

func terminated(id string, started, finished int, code int32, reason string) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{ContainerID: "containerd://" + id, StartedAt: at(started), FinishedAt: at(finished), ExitCode: code, Reason: reason}
}

func labelsOf(r Run) map[string]string {
	return map[string]string{engine.LabelRun: RunID(fixtureUID, r.Container, r.N)}
}

// short renders events for comparison: type, container, seconds after t0,
// exit code and run.
func short(evs []engine.Event) []string {
	var out []string
	for _, e := range evs {
		s := string(e.Type) + " " + e.ContainerID + " " + e.Time.Sub(t0).String()
		if e.ExitKnown {
			s += " exit=" + strconv.Itoa(e.ExitCode)
		}
		out = append(out, s+" "+e.Labels[engine.LabelRun])
	}
	return out
}

func same(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

// TestAJobsRunIsStartedThenDiesWithItsExitCodeOnce follows a pod of one
// container that never restarts through its statuses.
func TestAJobsRunIsStartedThenDiesWithItsExitCodeOnce(t *testing.T) {
	pending := pod("job-1", corev1.RestartPolicyNever, corev1.Container{Name: "job"})
	pending.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "job", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	run := pending.DeepCopy()
	run.Status.ContainerStatuses = []corev1.ContainerStatus{running("job", "aaa", 0, 1, false)}
	done := pending.DeepCopy()
	done.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "job", ContainerID: "containerd://aaa",
		State: corev1.ContainerState{Terminated: terminated("aaa", 1, 4, 0, "Completed")}}}
	run0 := fixtureUID + ":job:0"

	same(t, "created", short(Changes(nil, pending, time.Time{}, labelsOf)), nil)
	same(t, "started", short(Changes(pending, run, time.Time{}, labelsOf)), []string{"start aaa 1s " + run0})
	same(t, "finished", short(Changes(run, done, time.Time{}, labelsOf)), []string{"die aaa 4s exit=0 " + run0})
	same(t, "no change", short(Changes(done, done, time.Time{}, labelsOf)), nil)
	// Seen first when over (a restarted agent): both, at the kubelet's times.
	same(t, "first seen over", short(Changes(nil, done, time.Time{}, labelsOf)), []string{"start aaa 1s " + run0, "die aaa 4s exit=0 " + run0})
	// A replay from a time on tells what happened from then.
	same(t, "since 2s", short(Changes(nil, done, t0.Add(2*time.Second), labelsOf)), []string{"die aaa 4s exit=0 " + run0})
	// The pod is deleted.
	done.DeletionTimestamp = ptr(at(9))
	same(t, "removed", short(Removed(done, labelsOf)), []string{"destroy aaa 9s " + run0})

	if !RunParentEligible(done) {
		t.Error("a one-container pod that never restarts: its pod cgroup counts its run alone")
	}
	c, err := Container(done, Runs(done)[0], Identity{Tenant: "caami", Project: "web", App: "shop", Env: "prod"},
		Paths{Pod: "kubepods/burstable/pod" + fixtureUID}, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "aaa" || c.RunID() != run0 || c.Running || !c.FinishedAt.Equal(t0.Add(4*time.Second)) || c.RunCgroup != "/kubepods/burstable/pod"+fixtureUID ||
		c.Cgroup != "" || c.Name != "job-1/job/0" || c.Replica != "job-1:job" {
		t.Errorf("container %+v", c)
	}
}

func ptr[T any](v T) *T { return &v }

// TestACrashLoopIsOneRunPerRestartAndTheOOMKillIsTold follows a container
// that is OOM-killed, waits in CrashLoopBackOff and runs again.
func TestACrashLoopIsOneRunPerRestartAndTheOOMKillIsTold(t *testing.T) {
	ctr := corev1.Container{Name: "web", Resources: kubetest.Resources("100m", "32Mi", "", "64Mi")}
	first := pod("shop-1", corev1.RestartPolicyAlways, ctr)
	first.Status.ContainerStatuses = []corev1.ContainerStatus{running("web", "r0", 0, 1, true)}
	// Killed: the kubelet shows the dead container in State until it waits to restart it.
	dead := first.DeepCopy()
	dead.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", ContainerID: "containerd://r0", RestartCount: 0,
		State: corev1.ContainerState{Terminated: terminated("r0", 1, 5, 137, "OOMKilled")}}}
	// Back-off: Waiting, the dead run in LastTerminationState, the same restart count.
	waiting := first.DeepCopy()
	waiting.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "web", ContainerID: "containerd://r0", RestartCount: 0,
		State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastTerminationState: corev1.ContainerState{Terminated: terminated("r0", 1, 5, 137, "OOMKilled")}}}
	// Restarted: run 1 runs, run 0 is the last termination.
	again := first.DeepCopy()
	again.Status.ContainerStatuses = []corev1.ContainerStatus{running("web", "r1", 1, 15, false)}
	again.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: terminated("r0", 1, 5, 137, "OOMKilled")}
	// Restarted once more: run 0 leaves the status (the kubelet removed it).
	third := first.DeepCopy()
	third.Status.ContainerStatuses = []corev1.ContainerStatus{running("web", "r2", 2, 30, true)}
	third.Status.ContainerStatuses[0].LastTerminationState = corev1.ContainerState{Terminated: terminated("r1", 15, 20, 1, "Error")}

	r0, r1, r2 := fixtureUID+":web:0", fixtureUID+":web:1", fixtureUID+":web:2"
	same(t, "killed", short(Changes(first, dead, time.Time{}, labelsOf)), []string{"oom r0 5s " + r0, "die r0 5s exit=137 " + r0})
	same(t, "waiting", short(Changes(dead, waiting, time.Time{}, labelsOf)), nil)
	same(t, "restarted", short(Changes(waiting, again, time.Time{}, labelsOf)), []string{"start r1 15s " + r1})
	same(t, "the old run leaves", short(Changes(again, third, time.Time{}, labelsOf)),
		[]string{"die r1 20s exit=1 " + r1, "start r2 30s " + r2, "destroy r0 30s " + r0})
	// Whatever status a run is first seen in, it has one run id.
	for _, p := range []*corev1.Pod{dead, waiting, again} {
		for _, r := range Runs(p) {
			if r.ContainerID == "containerd://r0" && (r.N != 0 || !r.OOMKilled || r.ExitCode != 137) {
				t.Errorf("run r0 seen as %+v", r)
			}
		}
	}
	if RunParentEligible(again) {
		t.Error("a restarting pod's cgroup mixes its runs")
	}
	c, err := Container(again, Runs(again)[0], Identity{Tenant: "caami", Project: "web", App: "shop", Env: "prod"},
		Paths{Pod: "p", Container: "p/r1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.RunID() != r1 || !c.Running || c.Cgroup != "/p/r1" || c.RunCgroup != "" || c.CPULimitMillicores != 100 || c.MemoryLimitBytes != 32<<20 {
		t.Errorf("container %+v", c)
	}
}

func TestReadinessIsAProbeResultOfRunningContainersWithAReadinessProbe(t *testing.T) {
	id := Identity{Tenant: "caami", Project: "web", App: "shop", Env: "prod"}
	ctr := corev1.Container{Name: "web", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{}}}}
	p := pod("shop-1", corev1.RestartPolicyAlways, ctr, corev1.Container{Name: "sidecar"})
	p.Status.ContainerStatuses = []corev1.ContainerStatus{running("web", "r0", 0, 1, false), running("sidecar", "s0", 0, 1, true)}
	runs := Runs(p)
	now := t0.Add(time.Minute)
	e, ok := ProbeEvent(p, runs[0], id, "vm", now)
	if !ok || e.Type != events.Probe || e.Probe.OK || e.Probe.Kind != "tcp" || e.Node != "vm" || e.RunID != fixtureUID+":web:0" || e.Replica != "shop-1:web" || !e.Time.Equal(now) {
		t.Fatalf("not ready: %+v %+v", e, e.Probe)
	}
	if ps := events.Validate(&e, 0, now, usage.DefaultLimits()); len(ps) > 0 {
		t.Errorf("the probe event is refused: %v", ps)
	}
	p.Status.ContainerStatuses[0].Ready = true
	if e, ok := ProbeEvent(p, Runs(p)[0], id, "vm", now); !ok || !e.Probe.OK {
		t.Errorf("ready: %+v", e.Probe)
	}
	if _, ok := ProbeEvent(p, runs[1], id, "vm", now); ok {
		t.Error("a container without a readiness probe has no probe result")
	}
}
