package kube

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/runtime/engine"
)

// Run is one run of one container of a pod: one start of the container to
// its exit, as the pod's status tells it. The kubelet starts every restart in
// a new runtime container, with a new id, a new cgroup and a new log file.
type Run struct {
	// Container is the container's name in the pod's spec; Init says it is
	// an init container.
	Container string
	Init      bool
	// N is the run's restart count: 0 for the first run, n for the n-th
	// restart. The kubelet names its log file N.log.
	N int32
	// ContainerID is the runtime's id ("containerd://<hex>").
	ContainerID string
	Running     bool
	StartedAt   time.Time
	// Exited says the run ended: FinishedAt, ExitCode and OOMKilled say how.
	Exited     bool
	FinishedAt time.Time
	ExitCode   int
	OOMKilled  bool
	// Ready is the kubelet's readiness of a running container.
	Ready bool
}

// RunID is the run's id, the same whoever derives it: the pod, the
// container and its restart count ("<pod uid>:<container>:<n>", at most 111
// characters: a uid is 36, a container name at most 63).
func RunID(podUID, container string, n int32) string {
	return podUID + ":" + container + ":" + strconv.Itoa(int(n))
}

// Runs returns the runs a pod's container statuses tell of: each
// container's current run (running, or exited and not restarted yet) and its
// previous one (LastTerminationState), when the runtime gave them an id. A
// container waiting for its first start has none.
//
// The status carries the restart count of the container's newest runtime
// container: the running or exited one in State, or, while the kubelet
// waits to restart it (CrashLoopBackOff), the exited one it moved to
// LastTerminationState. The previous run is therefore restart count − 1
// beside a running or exited State, and restart count itself beside a
// waiting one.
func Runs(pod *corev1.Pod) []Run {
	var runs []Run
	add := func(statuses []corev1.ContainerStatus, init bool) {
		for _, cs := range statuses {
			prev := cs.RestartCount
			if cur, ok := current(cs, init); ok {
				runs = append(runs, cur)
				prev--
			}
			if t := cs.LastTerminationState.Terminated; t != nil && t.ContainerID != "" && prev >= 0 {
				runs = append(runs, exited(Run{Container: cs.Name, Init: init, N: prev, ContainerID: t.ContainerID}, t))
			}
		}
	}
	add(pod.Status.InitContainerStatuses, true)
	add(pod.Status.ContainerStatuses, false)
	return runs
}

// current is a container's run in its State, if it has one.
func current(cs corev1.ContainerStatus, init bool) (Run, bool) {
	r := Run{Container: cs.Name, Init: init, N: cs.RestartCount}
	switch s := cs.State; {
	case s.Running != nil && cs.ContainerID != "":
		r.ContainerID, r.Running, r.StartedAt, r.Ready = cs.ContainerID, true, s.Running.StartedAt.Time, cs.Ready
		return r, true
	case s.Terminated != nil && (s.Terminated.ContainerID != "" || cs.ContainerID != ""):
		r.ContainerID = s.Terminated.ContainerID
		if r.ContainerID == "" {
			r.ContainerID = cs.ContainerID
		}
		return exited(r, s.Terminated), true
	}
	return Run{}, false
}

func exited(r Run, t *corev1.ContainerStateTerminated) Run {
	r.StartedAt, r.Exited, r.FinishedAt, r.ExitCode = t.StartedAt.Time, true, t.FinishedAt.Time, int(t.ExitCode)
	r.OOMKilled = t.Reason == "OOMKilled"
	return r
}

// Changes returns the engine events that turn the pod's status old into cur
// (old nil: everything cur tells, as for a pod first seen), at or after
// since: a run's start, its OOM kill and its death (with exit code), each at
// the kubelet's recorded times, so that the same change seen twice (a
// replay, a resync) is the same event; and a destroy for every run that left
// the status (the kubelet removed its container: a newer restart pushed it
// out, or the pod is gone), at the newest time the pod's status tells, or its
// deletion. labels gives an event's container labels (engine.LabelTenant and
// the others). Events come in time order.
func Changes(old, cur *corev1.Pod, since time.Time, labels func(Run) map[string]string) []engine.Event {
	var was []Run
	if old != nil {
		was = Runs(old)
	}
	before := map[string]Run{}
	for _, r := range was {
		before[r.ContainerID] = r
	}
	var evs []engine.Event
	emit := func(r Run, typ engine.EventType, at time.Time) *engine.Event {
		if at.IsZero() || at.Before(since) {
			return nil
		}
		_, id, err := SplitContainerID(r.ContainerID)
		if err != nil {
			return nil
		}
		evs = append(evs, engine.Event{Type: typ, ContainerID: id, Time: at, Labels: labels(r)})
		return &evs[len(evs)-1]
	}
	var now []Run
	if cur != nil {
		now = Runs(cur)
	}
	seen := map[string]bool{}
	for _, r := range now {
		seen[r.ContainerID] = true
		o, had := before[r.ContainerID]
		if !had || o.StartedAt.IsZero() {
			emit(r, engine.EventStart, r.StartedAt)
		}
		if r.Exited && (!had || !o.Exited) {
			if r.OOMKilled {
				emit(r, engine.EventOOM, r.FinishedAt)
			}
			if ev := emit(r, engine.EventDie, r.FinishedAt); ev != nil {
				ev.ExitCode, ev.ExitKnown = r.ExitCode, true
			}
		}
	}
	gone := latest(cur, now)
	for _, r := range was {
		if !seen[r.ContainerID] {
			emit(r, engine.EventDestroy, gone)
		}
	}
	slices.SortStableFunc(evs, func(a, b engine.Event) int { return a.Time.Compare(b.Time) })
	return evs
}

// latest is when runs left a pod's status: its deletion, or the newest start
// or end of its runs (the kubelet removes an old container when it starts
// the run that pushes it out).
func latest(cur *corev1.Pod, runs []Run) time.Time {
	if cur == nil {
		return time.Time{}
	}
	if d := cur.DeletionTimestamp; d != nil {
		return d.Time
	}
	var t time.Time
	for _, r := range runs {
		t = maxTime(t, maxTime(r.StartedAt, r.FinishedAt))
	}
	return t
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Removed returns the destroy events of every run of a pod that is gone
// from the API server, at its deletion (or the newest time its status tells).
func Removed(pod *corev1.Pod, labels func(Run) map[string]string) []engine.Event {
	runs := Runs(pod)
	at := latest(pod, runs)
	var evs []engine.Event
	for _, r := range runs {
		if _, id, err := SplitContainerID(r.ContainerID); err == nil && !at.IsZero() {
			evs = append(evs, engine.Event{Type: engine.EventDestroy, ContainerID: id, Time: at, Labels: labels(r)})
		}
	}
	return evs
}

// spec returns the pod spec's container a run is of.
func spec(pod *corev1.Pod, r Run) *corev1.Container {
	list := pod.Spec.Containers
	if r.Init {
		list = pod.Spec.InitContainers
	}
	for i := range list {
		if list[i].Name == r.Container {
			return &list[i]
		}
	}
	return nil
}

// Container is a run as the agent meters it: its identity, its run id and
// replica, its times and exit, its reserved resources, and its cgroups.
// paths are the run's cgroups (zero when not found); runParent says the pod's
// cgroup counts this run alone (RunParentEligible).
func Container(pod *corev1.Pod, r Run, id Identity, paths Paths, runParent bool) (engine.Container, error) {
	_, cid, err := SplitContainerID(r.ContainerID)
	if err != nil {
		return engine.Container{}, err
	}
	c := engine.Container{ID: cid, Name: pod.Name + "/" + r.Container + "/" + strconv.Itoa(int(r.N)),
		Tenant: id.Tenant, Project: id.Project, App: id.App, Env: id.Env, Replica: Replica(pod, r),
		RunLabel: RunID(string(pod.UID), r.Container, r.N), Running: r.Running, StartedAt: r.StartedAt,
		FinishedAt: r.FinishedAt, ExitCode: r.ExitCode, OOMKilled: r.OOMKilled,
		Pod: &engine.PodRef{Namespace: pod.Namespace, Pod: pod.Name, Container: r.Container}}
	if s := spec(pod, r); s != nil {
		c.CPULimitMillicores, c.MemoryLimitBytes = Reserved(s)
	}
	if paths.Container != "" {
		c.Cgroup = "/" + paths.Container
	}
	if runParent && paths.Pod != "" {
		c.RunCgroup = "/" + paths.Pod
	}
	return c, nil
}

// Replica names the SLA's replica slot of a run: the pod and the container,
// so a restart continues the replica. A name longer than an identifier may be
// gives none: the SLA then counts the run's container alone.
func Replica(pod *corev1.Pod, r Run) string {
	s := pod.Name + ":" + r.Container
	if len(s) > 128 {
		return ""
	}
	return s
}

// RunParentEligible reports whether a pod's cgroup counts one run alone, so
// that it can stand in for the per-run cgroup parent the paasmeter runtime
// gives its containers: it outlives the container (until the kubelet removes
// it once the pod is over), so a run's counters after its last sample are
// still there at its death, and a 3 s Job is billed all of its CPU.
//
// That holds for a pod of one container, no init containers, that is never
// restarted in place (restartPolicy Never: Jobs' pods, one-off pods); the
// pod's sandbox (pause) process is counted with it, a few milliseconds of
// CPU, its pod's own overhead. Any other pod's cgroup mixes runs, and its
// runs end at their last sample.
func RunParentEligible(pod *corev1.Pod) bool {
	return len(pod.Spec.Containers) == 1 && len(pod.Spec.InitContainers) == 0 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever
}

// errUnknownContainer is the error for a container id the watcher does not
// know (engine.Inspect's not found).
func errUnknownContainer(id string) error {
	return fmt.Errorf("kube: container %s: %w", id, errNotFound)
}
