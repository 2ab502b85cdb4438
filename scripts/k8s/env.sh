# Sourced by the scripts beside it: where the test cluster's pieces live.
#
# K8S_CACHE survives fresh clones of the work tree (CI runs in one): the
# Kubernetes binaries take about 9 minutes to build cold on 2 cores, so they
# are built once per version and reused. Its GOCACHE is kept beside them, so
# the build cache (about 4.4 GB) goes away with the binaries it produced.
# K8S_STATE is the running cluster's state: PKI, configuration, etcd,
# containerd, the node's /run, /var/lib and /var/log; `up` wipes it when it
# starts a cluster from nothing.
# The Debian packages the cluster needs but that must not be installed (etcd
# would start a server; the CNI plugins are only needed here) are extracted
# under K8S_CACHE/root, keyed by version with the binaries.

K8S_VERSION=v1.37.2
K8S_CACHE=${PAASMETER_K8S_CACHE:-/var/cache/paasmeter/k8s-$K8S_VERSION}
# Not under /run, /var/lib or /var/log: the node's mount namespace puts its
# own directories there (up.sh), and its processes must still reach K8S_STATE.
K8S_STATE=${PAASMETER_K8S_STATE:-/var/tmp/paasmeter-test-k8s}
K8S_BIN=$K8S_CACHE/bin
K8S_ROOT=$K8S_CACHE/root
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)

# The node's name, its IP (the CNI bridge's own address: the apiserver's node
# proxy refuses a loopback kubelet address, and "vm" resolves to 127.0.0.1
# here) and the apiserver's loopback port.
K8S_NODE=paasmeter-test-node
K8S_BRIDGE=cni-pm0
K8S_NODE_IP=10.244.77.1
K8S_POD_SUBNET=10.244.77.0/24
K8S_API_PORT=16443
K8S_ETCD_PORT=23790

# The node side runs in a private mount namespace (see up.sh); these are the
# host paths of what it calls /run, /var/lib and /var/log.
K8S_NS_RUN=$K8S_STATE/ns-run
K8S_NS_VARLIB=$K8S_STATE/ns-varlib
K8S_NS_VARLOG=$K8S_STATE/ns-varlog
K8S_CONTAINERD_SOCK=$K8S_NS_RUN/containerd/containerd.sock
K8S_KUBECONFIG=$K8S_STATE/conf/admin.kubeconfig
# The tests' workload image, imported into the node by up.sh.
K8S_BUSYBOX_IMAGE=localhost/paasmeter-test/busybox:1

export PATH=/usr/local/go/bin:$PATH
# kubectl's discovery cache would otherwise land in ~/.kube/cache.
export KUBECACHEDIR=$K8S_STATE/kube-cache

k8s_log() { echo "k8s: $*" >&2; }

# ours PID: PID is alive and one of this cluster's processes (every one names
# K8S_STATE on its command line). A recorded PID may have been reused since,
# after a reboot or an ended session.
ours() { [ -n "$1" ] && tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline" | grep -qF -- "$K8S_STATE"; }
