#!/bin/sh
# What --stacks costs kleak's kernel backend, sampled (the default: each site's first 16 allocations, then one in
# 8) and every allocation's stack (--stack-every 1), against no stacks: run time per run of the kmalloc program as
# the kernel measures it (kernel.bpf_stats_enabled), alternated round by round under the pipe workload (every
# operation kmallocs 1 KiB), with the workload's own rate beside it.
#   sudo sh scripts/bench-stack-cost.sh [ROUNDS]     (after npm run build; needs bpftool and cc)
# The machine is noisy: read the medians and their ratios, not one run. The stats switch is put back as it was.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
command -v bpftool >/dev/null || { echo "bench-stack-cost: bpftool is not installed (apt-get install bpftool)" >&2; exit 2; }
dir=$(mktemp -d /tmp/kleak-bench-stacks-XXXXXX)
was=$(cat /proc/sys/kernel/bpf_stats_enabled)
trap 'echo "$was" > /proc/sys/kernel/bpf_stats_enabled; rm -rf "$dir"' EXIT
cc -O2 -o "$dir/workload-pipes" scripts/workload-pipes.c
echo 1 > /proc/sys/kernel/bpf_stats_enabled
for round in $(seq 1 "$rounds"); do
  for mode in none sampled every; do
    case $mode in
      none) set -- ;;
      sampled) set -- --stacks ;;
      every) set -- --stacks --stack-every 1 ;;
    esac
    node dist/src/cli.js live --backend kernel --bytes 1024 "$@" --duration 8 --json > /dev/null 2> "$dir/err" &
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
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" "));
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const of = (m, i) => rows.filter((r) => r[0] === m).map((r) => Number(r[i]));
  for (const m of ["none", "sampled", "every"]) console.log(`${m.padEnd(8)} kmalloc program ${med(of(m, 1)).toFixed(0)} ns a run (${of(m, 1).join(", ")}); workload ${med(of(m, 2))} ops/s`);
  console.log(`ratios to no stacks: program time sampled ${(med(of("sampled", 1)) / med(of("none", 1))).toFixed(2)}x, every ${(med(of("every", 1)) / med(of("none", 1))).toFixed(2)}x; workload slowdown sampled ${(med(of("none", 2)) / med(of("sampled", 2))).toFixed(2)}x, every ${(med(of("none", 2)) / med(of("every", 2))).toFixed(2)}x`);' "$dir/runs"
