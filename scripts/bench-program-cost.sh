#!/bin/sh
# What an option costs kleak's kernel backend, measured as the kernel measures BPF programs: run time per run of
# the kmalloc program (kernel.bpf_stats_enabled), configurations alternated round by round under the pipe workload
# (every operation kmallocs 1 KiB), with the workload's own rate beside it.
#   sudo sh scripts/bench-program-cost.sh cgroups [ROUNDS]   each allocation's memory cgroup, or not (KLEAK_CGROUPS=0)
#   sudo sh scripts/bench-program-cost.sh stacks [ROUNDS]    no stacks, sampled stacks (the default), every stack
# After npm run build; needs bpftool and cc. The machine is noisy: read the medians and their ratios, not one run.
# The stats switch is put back as it was.
set -eu
cd "$(dirname "$0")/.."
what=${1:-}
rounds=${2:-5}
case $what in
  cgroups) modes="cgroup nocgroup" ;;
  stacks) modes="none sampled every" ;;
  *) echo "bench-program-cost: say what to measure: cgroups or stacks" >&2; exit 2 ;;
esac
command -v bpftool >/dev/null || { echo "bench-program-cost: bpftool is not installed (apt-get install bpftool)" >&2; exit 2; }
dir=$(mktemp -d /tmp/kleak-bench-program-XXXXXX)
was=$(cat /proc/sys/kernel/bpf_stats_enabled)
trap 'echo "$was" > /proc/sys/kernel/bpf_stats_enabled; rm -rf "$dir"' EXIT
cc -O2 -o "$dir/workload-pipes" scripts/workload-pipes.c
echo 1 > /proc/sys/kernel/bpf_stats_enabled
for round in $(seq 1 "$rounds"); do
  for mode in $modes; do
    cgroups=1
    case $mode in
      nocgroup) cgroups=0; set -- ;;
      sampled) set -- --stacks ;;
      every) set -- --stacks --stack-every 1 ;;
      *) set -- ;;
    esac
    KLEAK_CGROUPS=$cgroups node dist/src/cli.js live --backend kernel --bytes 1024 "$@" --duration 8 --json > /dev/null 2> "$dir/err" &
    k=$!
    for i in $(seq 1 100); do grep -q "tracing with" "$dir/err" && break; sleep 0.1; done
    ops=$("$dir/workload-pipes" 3 2>/dev/null | sed -n 's/.*ops_per_sec=\([0-9]*\).*/\1/p')
    # kleak's program is named kmalloc (bpftool 7.1 does not say which process holds it: run nothing else of kleak).
    bpftool prog show -j | node -e '
      const [mode, ops] = process.argv.slice(1);
      const p = JSON.parse(require("fs").readFileSync(0)).filter((x) => x.name === "kmalloc" && x.run_cnt > 0);
      for (const x of p) console.log(`${mode} ${(x.run_time_ns / x.run_cnt).toFixed(1)} ${ops}`);' "$mode" "$ops" >> "$dir/runs"
    wait "$k" || true
  done
done
node -e '
  const modes = process.argv[2].split(" ");
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const of = (m, i) => rows.filter((r) => r[0] === m).map((r) => Number(r[i]));
  for (const m of modes) console.log(`${m.padEnd(9)} kmalloc program ${med(of(m, 1)).toFixed(0)} ns a run (${of(m, 1).join(", ")}); workload ${med(of(m, 2))} ops/s`);
  const base = modes[modes.length === 2 ? 1 : 0];
  for (const m of modes.filter((x) => x !== base)) {
    console.log(`${m} against ${base}: program time ${(med(of(m, 1)) / med(of(base, 1))).toFixed(2)}x, workload slowdown ${(med(of(base, 2)) / med(of(m, 2))).toFixed(2)}x`);
  }' "$dir/runs" "$modes"
