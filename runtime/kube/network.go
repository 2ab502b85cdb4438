package kube

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/paasmeter/paasmeter/runtime/cgroups"
)

// A pod's containers share one network namespace, the pod's: its sandbox's,
// made before its first container starts and kept across their restarts. The
// agent reads a run's network bytes from /proc/<pid>/net/dev of its process
// (engine.Container.Pid; the loopback left out), so the pod's bytes are
// billed once by giving one run of the pod a process: the run of its first
// app container (NetworkRun). Every restart of that container is a run that
// continues counting the same namespace (engine.Container.NetShared). The
// other containers' runs have no process, and no network bytes.

// NetworkRun reports whether r is the run a pod's network bytes are billed
// to: a run of its first app container (spec.containers[0]; init containers'
// bytes, counted by the namespace before it starts, come with its first run),
// unless the pod is on the host's network, whose interfaces count the whole
// node's traffic, not the pod's.
func NetworkRun(pod *corev1.Pod, r Run) bool {
	return !pod.Spec.HostNetwork && !r.Init && len(pod.Spec.Containers) > 0 && r.Container == pod.Spec.Containers[0].Name
}

// initPid returns the init process of a running container, from its cgroup
// at path: of the cgroup's processes whose parent (the runtime's shim) is not
// in it, the first started (a process `kubectl exec` adds has the shim for
// parent too, and ends sooner). The agent checks that process is alive before
// it trusts a sample, so it must last as long as the container. 0 when none
// is found: the run then has no network bytes.
func (w *Watcher) initPid(m metered, path string) int {
	pids, err := w.o.Cgroups.Procs("/" + path)
	if err != nil || len(pids) == 0 {
		w.log.Debug("a pod's container processes not found: its network bytes are not read", "pod", m.pod.Namespace+"/"+m.pod.Name, "err", err)
		return 0
	}
	found, first := 0, uint64(0)
	for _, pid := range pids {
		st, err := cgroups.ReadProcStat(w.o.ProcRoot, pid)
		if err == nil && !slices.Contains(pids, st.PPid) && (found == 0 || st.Start < first) {
			found, first = pid, st.Start
		}
	}
	return found
}
