#!/usr/bin/env bash
# Runs a command while one busy loop per core keeps the machine loaded, as
# CI machines shared with other work are: races and deadlines too tight for
# a slow machine show up here rather than on a bad day in CI.
# Usage: scripts/stress.sh COMMAND [ARG...]   (the loops end with the command)
set -euo pipefail
loads=()
stop() { [ ${#loads[@]} -eq 0 ] || kill "${loads[@]}" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq "$(nproc)"); do
  sh -c 'while :; do :; done' &
  loads+=($!)
done
echo "stress: ${#loads[@]} busy loops (pids ${loads[*]}) while: $*" >&2
"$@"
