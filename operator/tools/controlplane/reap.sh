#!/usr/bin/env bash
# Kills, by PID, control-plane processes that outlived their tests.
#
# envtest stops etcd and kube-apiserver when a test binary exits cleanly,
# but a binary that dies first (a panic, a -timeout) leaves them running,
# and kube-apiserver then ignores SIGTERM. `make test` gives go test its
# own TMPDIR, where envtest keeps their data and certificates; afterwards
# this kills every process whose executable lies in the assets directory
# and whose arguments point into that TMPDIR, so another run's control
# plane on the same machine is left alone.
#
# Usage: reap.sh ASSETS_DIR SCRATCH_DIR
set -euo pipefail

assets="$(readlink -f "$1")"
scratch="$(readlink -f "$2")"
killed=0
for proc in /proc/[0-9]*; do
  exe="$(readlink -f "$proc/exe" 2>/dev/null)" || continue
  [[ "$exe" == "$assets"/* ]] || continue
  tr '\0' ' ' < "$proc/cmdline" 2>/dev/null | grep -qF -- "$scratch" || continue
  pid="${proc#/proc/}"
  echo "reap: killing leftover $(basename "$exe") (pid $pid)" >&2
  kill -KILL "$pid" 2>/dev/null && killed=$((killed + 1)) || true
done
if ((killed)); then
  echo "reap: killed $killed leftover control-plane process(es): a test binary did not stop its envtest" >&2
fi
