#!/usr/bin/env bash
# Make a real recording of the key workload on this kernel, the way kleak's recordings/ were made.
#
#   scripts/record-keys.sh report|pipe OUT [--stacks] [--hashed] [--buffer-kb N] [--reader-delay SEC] -- WORKLOAD-ARGS...
#
#   report: tracefs instance + `trace-cmd extract -B` + `trace-cmd report` → OUT.dat and OUT.report
#   pipe:   raw trace_pipe text of a tracefs instance → OUT.pipe
#
# kmalloc is filtered in the kernel to bytes_alloc==4096 (the workload's payload size class); kfree cannot be
# filtered by size, so every kfree is recorded. --stacks adds a stacktrace trigger to the filtered kmalloc event;
# --hashed leaves options/hash-ptr at its default (1) in the instance. WORKLOAD-ARGS go to workload-keys.py; the
# trace stops while the workload still holds its keys ("holding"), so held keys are outstanding in the recording.
# The instance is private and always removed; nothing at the top level is touched.
# trace-cmd record/start cannot be used on the project's VM (the sandbox denies set_ftrace_filter), hence extract.
set -euo pipefail
mode=$1 out=$2; shift 2
stacks=0 hashed=0 bufkb=8192 delay=0
while [ $# -gt 0 ]; do
  case $1 in
    --stacks) stacks=1;; --hashed) hashed=1;; --buffer-kb) bufkb=$2; shift;; --reader-delay) delay=$2; shift;;
    --) shift; break;; *) echo "unknown option $1" >&2; exit 1;;
  esac; shift
done
here=$(cd "$(dirname "$0")" && pwd)
T=/sys/kernel/tracing
[ -d $T/instances ] || mount -t tracefs nodev $T
name=kleak-rec-$$
I=$T/instances/$name
reader=""
cleanup() {
  [ -n "$reader" ] && kill "$reader" 2>/dev/null || true
  if [ -d "$I" ]; then
    echo 0 > "$I/tracing_on" || true
    echo 0 > "$I/events/kmem/kmalloc/enable" || true
    echo 0 > "$I/events/kmem/kfree/enable" || true
    echo '!stacktrace if bytes_alloc == 4096' > "$I/events/kmem/kmalloc/trigger" 2>/dev/null || true
    rmdir "$I" || true
  fi
}
trap cleanup EXIT INT TERM
mkdir "$I"
echo "$bufkb" > "$I/buffer_size_kb"
[ $hashed = 1 ] || echo 0 > "$I/options/hash-ptr"
echo 'bytes_alloc == 4096' > "$I/events/kmem/kmalloc/filter"
[ $stacks = 1 ] && echo 'stacktrace if bytes_alloc == 4096' > "$I/events/kmem/kmalloc/trigger"
echo 1 > "$I/events/kmem/kmalloc/enable"
echo 1 > "$I/events/kmem/kfree/enable"
if [ "$mode" = pipe ]; then
  # --reader-delay: a reader that starts late lets the ring buffer overrun (a recording with lost events)
  { sleep "$delay"; exec cat "$I/trace_pipe"; } > "$out.pipe" &
  reader=$!
fi
coproc WL { python3 "$here/workload-keys.py" --wait "$@"; }
wl_pid=$WL_PID
while read -r line <&"${WL[0]}"; do
  echo "workload: $line" >&2
  case $line in holding*) break;; esac
done
sleep 1   # let the key GC free the churned keys
echo 0 > "$I/tracing_on"
if [ "$mode" = report ]; then
  trace-cmd extract -B "$name" -o "$out.dat" > /dev/null 2>&1
  trace-cmd report -i "$out.dat" > "$out.report"
else
  sleep "$delay"; sleep 1; kill "$reader"; wait "$reader" 2>/dev/null || true; reader=""
fi
exec {WL[1]}>&-   # EOF: the workload releases its keys and exits
cat <&"${WL[0]}" >&2 2>/dev/null || true
wait "$wl_pid" 2>/dev/null || true
echo "recorded $mode: $*" >&2
