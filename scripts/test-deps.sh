#!/usr/bin/env bash
# Installs and starts what the test suite needs on a Debian machine.
# Idempotent, and quick when everything is already there: `make test` runs it
# every time. Each later service (Docker Engine, ClickHouse, PostgreSQL,
# Prometheus) gets its install-and-start step here.
set -euo pipefail

need_pkgs=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# The embedded store is SQLite through cgo: a C compiler and static libc.
for p in gcc libc6-dev; do
  have_pkg "$p" || need_pkgs+=("$p")
done

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test-deps: missing Debian packages: ${need_pkgs[*]} (run as root, or: sudo apt-get install -y ${need_pkgs[*]})" >&2
    exit 1
  fi
  echo "test-deps: installing ${need_pkgs[*]}"
  apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@"; }
  apt_get install --no-install-recommends "${need_pkgs[@]}" || { apt_get update && apt_get install --no-install-recommends "${need_pkgs[@]}"; }
fi

command -v go >/dev/null || { echo "test-deps: Go is not on PATH (expected at /usr/local/go/bin)" >&2; exit 1; }
echo "test-deps: ready ($(go version | cut -d' ' -f3), $(gcc --version | head -n1))"
