// Package kube is the agent's Kubernetes node kind: the kubelet runs the
// containers, and the agent learns its node's pods from the API server
// (client-go informers of the pods bound to its node, and of the cluster's
// namespaces, claims, volumes and nodes) and meters them with the same meter,
// spool, shipper and tailer as on Docker (runtime/node).
//
// The pieces, each testable on its own:
//
//   - cgroup.go: where the kubelet and the container runtimes (containerd,
//     CRI-O, cri-dockerd) put a pod's and a container's cgroup, under the
//     cgroupfs and systemd drivers, on cgroup v1 and v2;
//   - identity.go: a pod's institution, project, environment and app, from
//     its namespace's labels and its own; its reserved meters, from its
//     containers' requests;
//   - lifecycle.go: the container statuses of a pod as engine containers,
//     and the changes between two statuses as engine events (start, die with
//     exit code and OOM kill, removal) and SLA probe results (readiness);
//   - crilog.go: the CRI log files under /var/log/pods, rotation included,
//     as engine log messages for runtime/tail;
//   - volumes.go: the bound persistent volume claims as volumes, each
//     billed by one node of the cluster;
//   - network.go: which run of a pod its network bytes are read for, and
//     from which process;
//   - watcher.go: the informers, serving all of the above as an
//     engine.Engine.
package kube
