#!/usr/bin/env bash
# Installs and starts what the test suite needs on a Debian machine.
# Idempotent, and quick when everything is already there: `make test` runs it
# every time. Prints the environment the tests need (eval it, as the Makefile does).
set -euo pipefail

log() { echo "test-deps: $*" >&2; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" >&2; }

need_pkgs=()
# gcc, libc6-dev: the embedded store is SQLite through cgo.
# docker.io, busybox-static: the agent is tested against a real Docker Engine,
# with images built FROM scratch around a static busybox (no registry here).
# iptables: dockerd's rules are what keep one institution's network from another's.
# prometheus: promtool checks the exposed metrics (the package starts nothing here).
# prometheus-alertmanager: amtool checks the Alertmanager configuration (deploy/alertmanager).
# clickhouse-server, clickhouse-client: the ClickHouse metering store is tested
# against Debian's 18.16; each test binary starts its own servers on free
# loopback ports (metering/clickhouse/chtest), so none is started here.
# zookeeper: the replicated ClickHouse tests run Debian's 3.8 standalone on a
# free loopback port (metering/clickhouse/zkserver, on default-jre-headless);
# the package starts nothing here.
# postgresql: the PostgreSQL state store is tested against Debian's 15; each
# test binary creates a private cluster (initdb) on a free loopback port
# (state/postgres/pgtest), so Debian's own cluster is not started here.
# poppler-utils: invoice PDFs are checked with pdftotext and rendered to PNG (pdftoppm).
# libxml2-utils: UBL e-invoices are validated with xmllint against the UBL 2.1 schemas.
# libsaxonhe-java, default-jre-headless: the official Peppol BIS Billing 3.0 rules
# (XSLT 2.0, in billing/ubl/testdata/peppol-bis-3) run on Saxon-HE over every
# e-invoice the tests render; the jar does not pull in a JRE by itself.
# systemd: systemd-analyze verifies the collector's and the agent's units (deploy/systemd).
# haproxy: several collectors behind Debian's HAProxy (internal/haproxytest, deploy/ha);
# each test starts its own on a free loopback port, so the package's is not started here.
# chromium, fonts-dejavu-core: the portal's browser tests (portal/browser_test.go)
# drive Debian's headless Chromium through chromedp and run axe-core in it.
# containerd, runc, iproute2, openssl, curl: the test Kubernetes cluster
# (scripts/k8s: its node's container runtime, its bridge, its PKI, its health
# checks; its etcd and CNI plugins are extracted from their packages there).
for p in gcc libc6-dev docker.io iptables busybox-static containerd runc iproute2 openssl curl prometheus prometheus-alertmanager clickhouse-server clickhouse-client zookeeper postgresql poppler-utils libxml2-utils libsaxonhe-java default-jre-headless systemd haproxy chromium fonts-dejavu-core; do
  have_pkg "$p" || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages: ${need_pkgs[*]} (run as root, or: sudo apt-get install -y ${need_pkgs[*]})"
    exit 1
  fi
  log "installing ${need_pkgs[*]}"
  # clickhouse-server's postinst runs `invoke-rc.d clickhouse-server start`
  # and fails the install when that fails (port 9000 taken, no init system).
  # Without a policy-rc.d (Docker images have one), one that forbids starting
  # services keeps the install from starting a server nobody wants.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_get install --no-install-recommends "${need_pkgs[@]}" || { apt_get update && apt_get install --no-install-recommends "${need_pkgs[@]}"; }
fi
command -v go >/dev/null || { log "Go is not on PATH (expected at /usr/local/go/bin)"; exit 1; }

# A private Docker Engine for the tests: its own socket, data and exec roots,
# so it never touches a Docker the machine may run for other purposes.
# Its iptables rules stay on, as in production: they isolate the institutions'
# networks from each other (the runtime tests check that they do).
DOCKER_DIR=/run/paasmeter-test-docker
DOCKER_SOCK=unix://$DOCKER_DIR/docker.sock
if [ "$(id -u)" -eq 0 ]; then
  if ! DOCKER_HOST=$DOCKER_SOCK docker version >/dev/null 2>&1; then
    mkdir -p "$DOCKER_DIR"
    log "starting dockerd on $DOCKER_SOCK"
    setsid nohup dockerd --host "$DOCKER_SOCK" --data-root /var/lib/paasmeter-test-docker \
      --exec-root "$DOCKER_DIR/exec" --pidfile "$DOCKER_DIR/docker.pid" \
      >"$DOCKER_DIR/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 1 100); do
      DOCKER_HOST=$DOCKER_SOCK docker version >/dev/null 2>&1 && break
      sleep 0.2
    done
    DOCKER_HOST=$DOCKER_SOCK docker version >/dev/null 2>&1 || { log "dockerd did not start:"; tail -n 20 "$DOCKER_DIR/dockerd.log" >&2; exit 1; }
  fi
  echo "export PAASMETER_TEST_DOCKER_HOST=$DOCKER_SOCK"
else
  log "not root: no Docker Engine for the tests (agent tests skip outside CI, fail under CI=true)"
fi

# A real single-node Kubernetes cluster (docs/kubernetes.md): its binaries
# are built once into a cache outside the work tree (about 9 minutes cold),
# and a healthy cluster is reused as it is. It comes after dockerd, whose
# DOCKER-USER chain takes the cluster's one firewall rule.
if [ "$(id -u)" -eq 0 ]; then
  "$(dirname "$0")/k8s/up.sh" || { log "the test Kubernetes cluster did not come up (scripts/k8s/up.sh; logs in /var/tmp/paasmeter-test-k8s/logs)"; exit 1; }
else
  log "not root: no Kubernetes cluster for the tests (its tests skip outside CI, fail under CI=true)"
fi
log "ready ($(go version | cut -d' ' -f3), $(gcc --version | head -n1), $(dockerd --version 2>/dev/null || echo 'no dockerd'), containerd $(dpkg-query -W -f='${Version}' containerd 2>/dev/null || echo 'missing'), clickhouse-server $(dpkg-query -W -f='${Version}' clickhouse-server 2>/dev/null || echo 'missing'), postgresql $(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || echo 'missing'))"
