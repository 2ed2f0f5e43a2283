#!/usr/bin/env bash
# Record kleak's bpftrace output (the raw text kleak parses) while the key workload runs, for recordings/.
#   scripts/record-bpftrace.sh pairs|events OUT [--stacks] -- WORKLOAD-ARGS...
# Runs the same program `kleak live --bytes 4096` runs (printed by `kleak live --dry-run`), stops it with SIGINT
# while the workload still holds its keys, so the final snapshot lists them. Needs root and a built kleak.
set -euo pipefail
mode=$1 out=$2; shift 2
extra=()
[ "${1:-}" = --stacks ] && { extra+=(--stacks); shift; }
[ "${1:-}" = -- ] && shift
here=$(cd "$(dirname "$0")" && pwd)
[ "$mode" = events ] && extra+=(--events)
cmd=$(node "$here/../dist/src/cli.js" live --bytes 4096 --dry-run "${extra[@]}")
BPFTRACE_MAP_KEYS_MAX=262144 bash -c "$cmd" > "$out" 2>/dev/null &
bt=$!
sleep 3   # attach
coproc WL { python3 "$here/workload-keys.py" --wait "$@"; }
wl_pid=$WL_PID
while read -r line <&"${WL[0]}"; do
  echo "workload: $line" >&2
  case $line in holding*) break;; esac
done
sleep 1.5
pkill -INT -P "$bt" bpftrace 2>/dev/null || kill -INT "$bt"
wait "$bt" || true
exec {WL[1]}>&-
cat <&"${WL[0]}" >&2 2>/dev/null || true
wait "$wl_pid" 2>/dev/null || true
echo "recorded bpftrace $mode: $*" >&2
