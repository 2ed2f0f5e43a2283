#!/bin/sh
# What recording each allocation's memory cgroup costs kleak's kernel backend (docs/cgroups.md), measured as the
# kernel measures BPF programs: run time per run of the kmalloc program (kernel.bpf_stats_enabled), with and without
# the cgroup (KLEAK_CGROUPS=0), alternated round by round under the pipe workload (every operation kmallocs 1 KiB).
#   sudo sh scripts/bench-cgroup-cost.sh [ROUNDS]     (after npm run build; needs bpftool and cc)
# The machine is noisy: read the medians and their ratio, not one run. The stats switch is put back as it was.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
command -v bpftool >/dev/null || { echo "bench-cgroup-cost: bpftool is not installed (apt-get install bpftool)" >&2; exit 2; }
dir=$(mktemp -d /tmp/kleak-bench-cgroups-XXXXXX)
was=$(cat /proc/sys/kernel/bpf_stats_enabled)
trap 'echo "$was" > /proc/sys/kernel/bpf_stats_enabled; rm -rf "$dir"' EXIT
cc -O2 -o "$dir/workload-pipes" scripts/workload-pipes.c
echo 1 > /proc/sys/kernel/bpf_stats_enabled
for round in $(seq 1 "$rounds"); do
  for cg in 1 0; do
    KLEAK_CGROUPS=$cg node dist/src/cli.js live --backend kernel --bytes 1024 --duration 8 --json > /dev/null 2> "$dir/err" &
    k=$!
    for i in $(seq 1 100); do grep -q "tracing with" "$dir/err" && break; sleep 0.1; done
    "$dir/workload-pipes" 3 > /dev/null 2>&1
    # kleak's program is named kmalloc (bpftool 7.1 does not say which process holds it: run nothing else of kleak).
    bpftool prog show -j | node -e '
      const cg = process.argv[1];
      const p = JSON.parse(require("fs").readFileSync(0)).filter((x) => x.name === "kmalloc" && x.run_cnt > 0);
      for (const x of p) console.log(`${cg} ${(x.run_time_ns / x.run_cnt).toFixed(1)} ${x.run_cnt}`);' "$cg" >> "$dir/runs"
    wait "$k" || true
  done
done
node -e '
  const rows = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map((l) => l.split(" ").map(Number));
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const on = rows.filter((r) => r[0] === 1).map((r) => r[1]), off = rows.filter((r) => r[0] === 0).map((r) => r[1]);
  console.log(`kmalloc program, ns per run (rounds alternated): with the cgroup ${on.join(", ")}; without ${off.join(", ")}`);
  console.log(`medians: with ${med(on).toFixed(1)} ns, without ${med(off).toFixed(1)} ns; ratio ${(med(on) / med(off)).toFixed(2)}`);' "$dir/runs"
