#!/usr/bin/env bash
# Tears the test cluster down, whatever state it is in (up, half up, or
# left over from a session whose processes were ended): its containers, the
# kubelet, containerd and its shims, the control plane, etcd, the bridge, the
# firewall rule and the kubepods cgroups. The host is then as before `up`
# (iptables -S identical, no mount, no process). K8S_STATE stays, with its
# logs, until the next `up` wipes it. About 10 s.
#
# Only this cluster's processes are signalled: the PIDs it recorded, checked
# to still be its own, the shims in its mount namespace, and the processes in
# the kubepods cgroups while no other kubelet runs on the machine.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
[ "$(id -u)" -eq 0 ] || { k8s_log "the test cluster needs root"; exit 1; }

stop() { # name
	local p
	p=$(cat "$K8S_STATE/$1.pid" 2>/dev/null) || return 0
	if ours "$p"; then
		# Ours now, so the PID is its until it is gone (an exiting process
		# has no command line left to check).
		kill -TERM "$p"
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$p" 2>/dev/null
		while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
	fi
	rm -f "$K8S_STATE/$1.pid"
}

# 1. The kubelet first, so that it restarts nothing; then every container
# through containerd, while it still runs.
stop kubelet
cpid=$(cat "$K8S_STATE/containerd.pid" 2>/dev/null)
ns=
ours "$cpid" && ns=$(readlink "/proc/$cpid/ns/mnt")
if [ -n "$ns" ] && [ -S "$K8S_CONTAINERD_SOCK" ]; then
	c=(ctr --address "$K8S_CONTAINERD_SOCK" -n k8s.io)
	for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1; done
	for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks delete -f "$t" >/dev/null 2>&1; done
fi
stop containerd
# Shims outlive containerd; only those in this cluster's namespace are ours.
if [ -n "$ns" ]; then
	for p in $(pgrep -f containerd-shim); do
		[ "$(readlink "/proc/$p/ns/mnt" 2>/dev/null)" = "$ns" ] && kill -KILL "$p"
	done
fi
# Containers left running by a containerd that was killed before it could
# stop them (a session's end). The kubepods cgroups are any kubelet's: with
# another kubelet running on this machine, they are left to it.
others=$(pgrep -x kubelet)
[ -n "$others" ] && k8s_log "another kubelet runs here (PID $others): its kubepods cgroups are left alone"
[ -z "$others" ] && for f in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
	[ -d "$f" ] && find "$f" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null
done

# 2. The control plane, then etcd.
stop kube-scheduler
stop kube-controller-manager
stop kube-apiserver
stop etcd

# 3. The bridge (the pods' veths went with their network namespaces) and the
# firewall rule.
ip link show "$K8S_BRIDGE" >/dev/null 2>&1 && ip link del "$K8S_BRIDGE"
if [ -e "$K8S_STATE/forward-rule" ]; then
	chain=$(cat "$K8S_STATE/forward-rule")
	while iptables -D "$chain" -i "$K8S_BRIDGE" -o "$K8S_BRIDGE" -j ACCEPT 2>/dev/null; do :; done
	rm -f "$K8S_STATE/forward-rule"
fi

# 4. The kubepods cgroups (one tree per v1 controller; one tree on v2), which
# the kubelet leaves behind; deepest first. A cgroup empties a moment after
# its last process is killed: poll until each tree is gone.
for f in /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods; do
	[ -d "$f" ] && [ -z "$others" ] || continue
	for _ in $(seq 50); do
		find "$f" -depth -type d -exec rmdir {} \; 2>/dev/null
		[ -d "$f" ] || break
		sleep 0.2
	done
	[ -d "$f" ] && k8s_log "$f is still there (a process in it?)"
done

left=$(grep -cF "$K8S_STATE" /proc/self/mountinfo)
[ "$left" -eq 0 ] || k8s_log "$left mounts under $K8S_STATE are left on the host"
true
