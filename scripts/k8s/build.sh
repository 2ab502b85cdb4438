#!/usr/bin/env bash
# Builds the Kubernetes binaries the test cluster runs (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubelet, kubectl) from the Go
# module proxy into K8S_CACHE/bin, once: when every binary is there and the
# stamp says the build finished, it does nothing. About 9 minutes cold on 2
# cores (most of it kube-apiserver), a few seconds with a warm GOCACHE.
# Runs under nice: other work shares the machine's cores.
set -euo pipefail
. "$(dirname "$0")/env.sh"

complete() {
	[ "$(cat "$K8S_BIN/.complete" 2>/dev/null)" = "$K8S_VERSION" ] || return 1
	for b in "${K8S_BINARIES[@]}"; do [ -x "$K8S_BIN/$b" ] || return 1; done
}
complete && exit 0

mkdir -p "$K8S_CACHE"
# Two test runs (two work trees) may start at once: one builds, the other waits.
exec 9>"$K8S_CACHE/.build.lock"
flock 9
complete && exit 0

# k8s.io/kubernetes is not meant to be required as a module: its go.mod
# replaces each of its staging modules (k8s.io/api, k8s.io/client-go, …) with
# ./staging/src/k8s.io/X, which the module proxy does not serve. A wrapper
# module requires it and replaces each staging module with its published
# release (v0.37.2 for v1.37.2) instead.
W=$K8S_CACHE/build
mkdir -p "$W"
cd "$W"
export GOCACHE=$K8S_CACHE/gocache GOFLAGS=-buildvcs=false
if [ ! -f go.sum ] || ! grep -q "k8s.io/kubernetes $K8S_VERSION" go.mod 2>/dev/null; then
	k8s_log "preparing the wrapper module for k8s.io/kubernetes@$K8S_VERSION"
	K=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -f "$K/go.mod" ] || { k8s_log "k8s.io/kubernetes@$K8S_VERSION: no go.mod in the module cache"; exit 1; }
	staging_version=v0.${K8S_VERSION#v1.}
	{
		echo 'module paasmeter.test/k8sbuild'
		echo
		awk '/^go /{print; exit}' "$K/go.mod"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo 'replace ('
		sed -n '/^replace (/,/^)/p' "$K/go.mod" | awk -v v="$staging_version" '/=> \.\/staging/ {print "\t" $1 " => " $1 " " v}'
		echo ')'
	} >go.mod
	cat >tools.go <<'EOF'
//go:build tools

// Package tools makes go mod tidy keep the commands the test cluster builds.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
EOF
	rm -f go.sum
	nice go mod tidy
fi

# The -X flags make /version (and kubectl version) say v1.37.2 instead of v0.0.0.
LD="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	LD="$LD -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
done
LD="$LD -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z"

rm -f "$K8S_BIN/.complete"
mkdir -p "$K8S_BIN"
tmp=$(mktemp -d "$K8S_CACHE/bin.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
k8s_log "building ${K8S_BINARIES[*]} $K8S_VERSION into $K8S_BIN (about 9 minutes cold on 2 cores; load $(cut -d' ' -f1-3 /proc/loadavg))"
pkgs=()
for b in "${K8S_BINARIES[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
nice go build -trimpath -ldflags "$LD" -o "$tmp/" "${pkgs[@]}"
mv -f "$tmp"/* "$K8S_BIN/"
echo "$K8S_VERSION" >"$K8S_BIN/.complete"
k8s_log "built in $(($(date +%s) - start))s (load $(cut -d' ' -f1-3 /proc/loadavg))"
