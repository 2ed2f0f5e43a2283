#!/usr/bin/env bash
# Make a real recording of the vmalloc, page and percpu tracepoints on this kernel while
# scripts/workload-alloc.py holds a known number of areas, pages and percpu chunks (recordings/README.md).
#
#   scripts/record-alloc.sh report|pipe OUT -- WORKLOAD-ARGS...
#
#   report: tracefs instance + `trace-cmd extract -B` + `trace-cmd report` → OUT.dat and OUT.report
#   pipe:   raw trace_pipe text of a tracefs instance → OUT.pipe
#
# The allocation events are filtered in the kernel to the workload's comm (python3) and carry a stacktrace trigger
# (vmalloc areas and pages are named by their stack); frees cannot be filtered by who allocated, so every free is
# recorded. The trace stops while the workload still holds its objects ("holding"). The instance is private and
# always removed; nothing at the top level is touched.
set -euo pipefail
mode=$1 out=$2; shift 2
[ "${1:-}" = -- ] && shift
here=$(cd "$(dirname "$0")" && pwd)
T=/sys/kernel/tracing
[ -d $T/instances ] || mount -t tracefs nodev $T
name=kleak-rec-$$
I=$T/instances/$name
filter='comm == "python3"'
allocs="vmalloc/alloc_vmap_area kmem/mm_page_alloc percpu/percpu_alloc_percpu"
frees="vmalloc/free_vmap_area_noflush kmem/mm_page_free kmem/mm_page_free_batched percpu/percpu_free_percpu"
reader=""
cleanup() {
  [ -n "$reader" ] && kill "$reader" 2>/dev/null || true
  if [ -d "$I" ]; then
    echo 0 > "$I/tracing_on" || true
    for e in $allocs $frees; do echo 0 > "$I/events/$e/enable" || true; done
    for e in vmalloc/alloc_vmap_area kmem/mm_page_alloc; do echo "!stacktrace if $filter" > "$I/events/$e/trigger" 2>/dev/null || true; done
    rmdir "$I" || true
  fi
}
trap cleanup EXIT INT TERM
mkdir "$I"
echo 8192 > "$I/buffer_size_kb"
echo 0 > "$I/options/hash-ptr"
for e in $allocs; do echo "$filter" > "$I/events/$e/filter"; done
for e in vmalloc/alloc_vmap_area kmem/mm_page_alloc; do echo "stacktrace if $filter" > "$I/events/$e/trigger"; done
for e in $allocs $frees; do echo 1 > "$I/events/$e/enable"; done
if [ "$mode" = pipe ]; then
  cat "$I/trace_pipe" > "$out.pipe" &
  reader=$!
fi
# The workload talks through a file and waits on a FIFO nobody writes to: a pipe that carried its output would keep
# a page (pipes keep their last page for reuse) and add one to the pages it holds.
work=$(mktemp -d)
mkfifo "$work/stdin"
python3 "$here/workload-alloc.py" --wait "$@" < "$work/stdin" > "$work/out" 2>&1 &
wl_pid=$!
exec {hold}> "$work/stdin"
until grep -q '^holding' "$work/out"; do
  kill -0 "$wl_pid" 2>/dev/null || { cat "$work/out" >&2; exit 1; }
  sleep 0.1
done
sleep 1.5   # closed maps are freed from a kworker
echo 0 > "$I/tracing_on"
if [ "$mode" = report ]; then
  trace-cmd extract -B "$name" -o "$out.dat" > /dev/null 2>&1
  trace-cmd report -i "$out.dat" > "$out.report"
else
  sleep 1; kill "$reader"; wait "$reader" 2>/dev/null || true; reader=""
fi
exec {hold}>&-   # EOF: the workload releases what it holds and exits
wait "$wl_pid" 2>/dev/null || true
sed 's/^/workload: /' "$work/out" >&2
rm -rf "$work"
echo "recorded $mode: $*" >&2
