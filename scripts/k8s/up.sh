#!/usr/bin/env bash
# Brings the test cluster up: a real single-node Kubernetes (etcd, apiserver,
# controller-manager, scheduler, kubelet over a private containerd and the
# CNI bridge plugin), every listener on this machine only. Idempotent: a
# healthy cluster is left as it is (in about a second); anything less (half
# up, stopped, left from a session that ended) is torn down and started
# again from nothing, which takes about 15 s once the binaries are built
# (scripts/k8s/build.sh, run from here). Needs root, containerd, runc,
# busybox-static, iptables, iproute2, openssl and curl (test-deps.sh
# installs them); etcd and the CNI plugins come from their Debian packages,
# extracted into the cache rather than installed (etcd-server's would start
# a server of its own).
#
# Everything it writes is under K8S_STATE and K8S_CACHE, except the bridge,
# one firewall rule and the kubepods cgroups, which teardown.sh removes.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/env.sh"
REPO=$(cd "$HERE/../.." && pwd)
[ "$(id -u)" -eq 0 ] || { k8s_log "the test cluster needs root"; exit 1; }
# Two test runs (two work trees) may get here at once: one at a time, the
# second then finds the cluster healthy. The daemons must not inherit the lock.
mkdir -p "$K8S_CACHE"
exec 8>"$K8S_CACHE/.up.lock"
flock 8

kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$K8S_KUBECONFIG" "$@"; }

pidof_() { cat "$K8S_STATE/$1.pid" 2>/dev/null; }
DAEMONS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet)

healthy() {
	for d in "${DAEMONS[@]}"; do ours "$(pidof_ "$d")" || return 1; done
	[ "$(kubectl get --raw /readyz 2>/dev/null)" = ok ] || return 1
	[ "$(kubectl get node "$K8S_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ] || return 1
	kubectl -n default get serviceaccount default >/dev/null 2>&1
}

# Pod-to-pod traffic crosses the bridge, and the host has
# bridge-nf-call-iptables on while the Docker test engine sets FORWARD's
# policy to DROP: without this accept, in DOCKER-USER (the chain Docker
# leaves to the administrator; the network wall, runtime/netwall, reads only
# its own rules there), pods could not reach each other. It names only our
# bridge, so no Docker network is opened. Docker creates the chain; without
# Docker, FORWARD itself takes the rule. Checked on every run, so a firewall
# reload between runs is mended.
forward_rule() {
	local chain=DOCKER-USER
	iptables -S "$chain" >/dev/null 2>&1 || chain=FORWARD
	if ! iptables -C "$chain" -i "$K8S_BRIDGE" -o "$K8S_BRIDGE" -j ACCEPT 2>/dev/null; then
		iptables -I "$chain" -i "$K8S_BRIDGE" -o "$K8S_BRIDGE" -j ACCEPT
	fi
	echo "$chain" >"$K8S_STATE/forward-rule"
}

until_ok() { # what seconds command...: polls command until it succeeds
	local what=$1 secs=$2 end
	shift 2
	end=$(($(date +%s) + secs))
	until "$@" >/dev/null 2>&1; do
		if [ "$(date +%s)" -ge "$end" ]; then
			k8s_log "$what: not after ${secs}s (logs in $K8S_STATE/logs)"
			return 1
		fi
		sleep 0.2
	done
}

# What the tests need, for test-deps.sh to print: the cluster's kubeconfig
# (KUBECONFIG for kubectl in the shell that evals it; the tests read
# PAASMETER_TEST_KUBECONFIG only, so that a developer's own KUBECONFIG never
# gets their namespaces), the node's name, the host paths of the node's
# /var/log and of the cgroup root, the node containerd's socket (to import
# images) and the tests' busybox image.
print_env() {
	echo "export KUBECONFIG=$K8S_KUBECONFIG PAASMETER_TEST_KUBECONFIG=$K8S_KUBECONFIG PAASMETER_TEST_K8S_NODE=$K8S_NODE" \
		"PAASMETER_TEST_K8S_VAR_LOG=$K8S_NS_VARLOG PAASMETER_TEST_K8S_CGROUP_ROOT=/sys/fs/cgroup" \
		"PAASMETER_TEST_K8S_CONTAINERD=$K8S_CONTAINERD_SOCK PAASMETER_TEST_K8S_BUSYBOX_IMAGE=$K8S_BUSYBOX_IMAGE"
}

if healthy; then
	forward_rule
	print_env
	exit 0
fi
if [ -d "$K8S_STATE" ] || ip link show "$K8S_BRIDGE" >/dev/null 2>&1; then
	k8s_log "a test cluster is half up, stopped or left over: tearing it down first"
	"$HERE/teardown.sh"
fi

"$HERE/build.sh"

# etcd 3.4 and the CNI plugins (bridge, host-local, loopback), extracted from
# Debian's packages into K8S_ROOT once per version.
debs=(etcd-server containernetworking-plugins)
if ! [ -x "$K8S_ROOT/usr/bin/etcd" ] || ! [ -x "$K8S_ROOT/usr/lib/cni/bridge" ] || ! [ -s "$K8S_ROOT/.debs" ]; then
	k8s_log "extracting ${debs[*]} into $K8S_ROOT"
	d=$(mktemp -d)
	# (into a directory of root's: no need for apt's _apt sandbox user)
	dl() { (cd "$d" && apt-get -q -o APT::Sandbox::User=root download "${debs[@]}" >&2); }
	dl || { apt-get update >&2 && dl; }
	rm -rf "$K8S_ROOT" && mkdir -p "$K8S_ROOT"
	for f in "$d"/*.deb; do
		dpkg-deb -x "$f" "$K8S_ROOT"
		dpkg-deb -f "$f" Package Version | paste -sd' ' >>"$K8S_ROOT/.debs"
	done
	rm -rf "$d"
fi

# A fresh state: new PKI, etcd, containerd and kubelet state. Nothing of a
# cluster is mounted on the host (see the mount namespace below), so nothing
# under K8S_STATE can lead rm out of it; refuse if that ever changes.
if grep -qF " $K8S_STATE" /proc/self/mountinfo; then
	k8s_log "something is mounted under $K8S_STATE on the host: not removing it"
	exit 1
fi
rm -rf "$K8S_STATE"
mkdir -p "$K8S_STATE"/{logs,conf/cni,images,pki,kube-cache,flexvolume} "$K8S_NS_RUN/containerd" "$K8S_NS_VARLIB" "$K8S_NS_VARLOG"
L=$K8S_STATE/logs
T0=$(date +%s%N)
took() { local ds=$((($(date +%s%N) - T0) / 100000000)); echo "$((ds / 10)).$((ds % 10))s"; }

"$HERE/pki.sh" "$K8S_STATE/pki" "$K8S_NODE" "$K8S_NODE_IP" >"$L/pki.log" 2>&1
P=$K8S_STATE/pki
for u in admin controller-manager scheduler kubelet; do
	cat >"$K8S_STATE/conf/$u.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: paasmeter-test
  cluster: {certificate-authority: $P/ca.crt, server: "https://127.0.0.1:$K8S_API_PORT"}
users:
- name: $u
  user: {client-certificate: $P/$u.crt, client-key: $P/$u.key}
contexts:
- name: paasmeter-test
  context: {cluster: paasmeter-test, user: $u}
current-context: paasmeter-test
EOF
done
PAUSE_IMAGE=localhost/paasmeter-test/pause:1
subst() {
	sed -e "s|@STATE@|$K8S_STATE|g; s|@ROOT@|$K8S_ROOT|g; s|@NODE_IP@|$K8S_NODE_IP|g; s|@BRIDGE@|$K8S_BRIDGE|g" \
		-e "s|@POD_SUBNET@|$K8S_POD_SUBNET|g; s|@PAUSE_IMAGE@|$PAUSE_IMAGE|g" "$HERE/conf/$1" >"$2"
}
subst containerd.toml "$K8S_STATE/conf/containerd.toml"
subst kubelet-config.yaml "$K8S_STATE/conf/kubelet-config.yaml"
subst 10-paasmeter-test.conflist "$K8S_STATE/conf/cni/10-paasmeter-test.conflist"
# No cluster DNS: pods get the node's resolv.conf, which must not name the
# host's resolvers (pods have no route out anyway).
echo "nameserver 127.0.0.1" >"$K8S_STATE/conf/resolv.conf"

# The node has no registry to pull from: its images are imported. The
# sandbox (pause) image is a busybox that sleeps; the busybox image is the
# tests' workload image (PAASMETER_TEST_K8S_BUSYBOX_IMAGE).
(cd "$REPO" && go build -o "$K8S_STATE/paasmeter-image" ./cmd/paasmeter-image)
"$K8S_STATE/paasmeter-image" -o "$K8S_STATE/images/pause.tar" -ref "$PAUSE_IMAGE" -busybox /bin/busybox -- /bin/sleep 2147483647
"$K8S_STATE/paasmeter-image" -o "$K8S_STATE/images/busybox.tar" -ref "$K8S_BUSYBOX_IMAGE" -busybox /bin/busybox -- /bin/sh

# Every daemon runs in its own session with its output in a log, so that
# neither the shell that started it nor $(test-deps.sh) waits for it, and
# records its PID. Not under nice: like the Docker test engine, the cluster is
# part of what the tests exercise, and an apiserver starved by the suite
# around it would turn into timeouts (idle, the cluster takes 0.05 core).
start() { # name command...
	local name=$1
	shift
	setsid nohup "$@" >"$L/$name.log" 2>&1 </dev/null 8>&- &
	echo $! >"$K8S_STATE/$name.pid"
}

# etcd: Debian's 3.4.23; the apiserver only notes that it lacks
# RequestWatchProgress and reads etcd instead.
start etcd "$K8S_ROOT/usr/bin/etcd" --name paasmeter-test --data-dir "$K8S_STATE/etcd" \
	--listen-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$K8S_ETCD_PORT" \
	--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
	--initial-cluster paasmeter-test=http://127.0.0.1:23800 --listen-metrics-urls '' \
	--quota-backend-bytes 1073741824 --logger zap --log-outputs stderr
until_ok "etcd healthy" 30 curl -sf "http://127.0.0.1:$K8S_ETCD_PORT/health"
k8s_log "etcd healthy: $(took)"

# --kubelet-preferred-address-types=InternalIP: the node's address is the
# bridge's (see env.sh). --endpoint-reconciler-type=none: there is no
# kube-proxy, so the kubernetes Service's endpoint would route nowhere; pods
# that talk to the apiserver run with hostNetwork and
# KUBERNETES_SERVICE_HOST=127.0.0.1 (docs/kubernetes.md).
start kube-apiserver "$K8S_BIN/kube-apiserver" \
	--etcd-servers="http://127.0.0.1:$K8S_ETCD_PORT" \
	--bind-address=127.0.0.1 --secure-port="$K8S_API_PORT" --advertise-address=127.0.0.1 \
	--endpoint-reconciler-type=none \
	--cert-dir="$K8S_STATE/apiserver-certs" \
	--tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
	--client-ca-file="$P/ca.crt" \
	--kubelet-client-certificate="$P/apiserver-kubelet-client.crt" --kubelet-client-key="$P/apiserver-kubelet-client.key" \
	--kubelet-preferred-address-types=InternalIP \
	--service-account-issuer=https://kubernetes.default.svc.cluster.local \
	--service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
	--service-cluster-ip-range=10.96.0.0/16 \
	--authorization-mode=Node,RBAC --allow-privileged=true --profiling=false
until_ok "apiserver ready" 120 curl -sf --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" "https://127.0.0.1:$K8S_API_PORT/readyz"
k8s_log "apiserver ready: $(took)"

# --flex-volume-plugin-dir: its default is on the host (/usr/libexec/…).
start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
	--kubeconfig="$K8S_STATE/conf/controller-manager.kubeconfig" \
	--authentication-kubeconfig="$K8S_STATE/conf/controller-manager.kubeconfig" \
	--authorization-kubeconfig="$K8S_STATE/conf/controller-manager.kubeconfig" \
	--bind-address=127.0.0.1 --secure-port=10257 \
	--root-ca-file="$P/ca.crt" --service-account-private-key-file="$P/sa.key" \
	--cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
	--use-service-account-credentials=true --leader-elect=false \
	--allocate-node-cidrs=false --service-cluster-ip-range=10.96.0.0/16 \
	--flex-volume-plugin-dir="$K8S_STATE/flexvolume" --profiling=false
start kube-scheduler "$K8S_BIN/kube-scheduler" \
	--kubeconfig="$K8S_STATE/conf/scheduler.kubeconfig" \
	--authentication-kubeconfig="$K8S_STATE/conf/scheduler.kubeconfig" \
	--authorization-kubeconfig="$K8S_STATE/conf/scheduler.kubeconfig" \
	--bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false

# The node side (containerd, its shims, the kubelet, the pods' mounts) runs in
# a private mount namespace, so that what they mount and write stays out of
# the host's:
#  - /run     -> ns-run: containerd's socket at the path the kubelet's cAdvisor
#                hard-codes, shim sockets, fifos, libmount's utab;
#  - /var/lib -> ns-varlib: the kubelet's device-plugins and cert dirs, libcni's cache;
#  - /var/log -> ns-varlog: /var/log/pods and /var/log/containers (the tests read
#                pod logs there: PAASMETER_TEST_K8S_VAR_LOG);
#  - four sysctls the kubelet would otherwise set host-wide (overcommit, panic on
#    oops…) read back, from bind-mounted files, the values it wants.
# Every mount in it goes when its last process ends. mount -n: no utab entry.
mkdir -p "$K8S_STATE/fake-sysctl"
# shellcheck disable=SC2016 # expanded by the inner shell
start containerd unshare --mount --propagation private -- bash -c '
	set -e
	S=$1
	mount -n --bind "$S/ns-run" /run
	mount -n --bind "$S/ns-varlib" /var/lib
	mount -n --bind "$S/ns-varlog" /var/log
	for kv in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1; do
		k=${kv%=*}
		f=$S/fake-sysctl/${k//\//.}
		echo "${kv#*=}" >"$f"
		mount -n --bind "$f" "/proc/sys/$k"
	done
	exec containerd --config "$S/conf/containerd.toml"' containerd "$K8S_STATE"
until_ok "containerd socket" 30 test -S "$K8S_CONTAINERD_SOCK"
for t in pause busybox; do
	ctr --address "$K8S_CONTAINERD_SOCK" -n k8s.io images import "$K8S_STATE/images/$t.tar" >>"$L/images.log"
done
k8s_log "containerd up, images imported: $(took)"

# The bridge exists before the kubelet so that its address can be the node's.
# The CNI bridge plugin adds no NAT (ipMasq false) and its IPAM no routes:
# pods have no way off this machine.
if ! ip link show "$K8S_BRIDGE" >/dev/null 2>&1; then
	ip link add "$K8S_BRIDGE" type bridge
	ip addr add "$K8S_NODE_IP/24" dev "$K8S_BRIDGE"
	ip link set "$K8S_BRIDGE" up
fi
forward_rule
# nsenter -m joins containerd's mount namespace (unshare exec'd bash, which
# exec'd containerd: the recorded PID is containerd's).
start kubelet nsenter -t "$(pidof_ containerd)" -m -- "$K8S_BIN/kubelet" \
	--config="$K8S_STATE/conf/kubelet-config.yaml" \
	--kubeconfig="$K8S_STATE/conf/kubelet.kubeconfig" \
	--root-dir="$K8S_STATE/kubelet" \
	--hostname-override="$K8S_NODE" --node-ip="$K8S_NODE_IP" --v=1
node_ready() { [ "$(kubectl get node "$K8S_NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
until_ok "node Ready" 120 node_ready
k8s_log "node Ready: $(took)"
# Pods are admitted in a namespace only once its default ServiceAccount is
# there (the controller-manager makes it).
until_ok "default ServiceAccount" 120 kubectl -n default get serviceaccount default
healthy || { k8s_log "the cluster came up but is not healthy"; exit 1; }
k8s_log "cluster up: $(took)"
print_env
