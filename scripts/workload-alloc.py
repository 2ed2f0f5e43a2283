#!/usr/bin/env python3
"""Hold a known number of vmalloc areas, pages and percpu allocations, and churn others (needs root).

  workload-alloc.py --hold-vmalloc 7 --churn-vmalloc 40        hold 7 BPF array maps of 1 MiB (vmalloc'ed), make
                                                               and close 40 more
  workload-alloc.py --hold-pages 29 --churn-pages 500          hold 29 pipes with one unread page each, fill and
                                                               drain 500 more
  workload-alloc.py --hold-percpu 11 --churn-percpu 60         hold 11 per-CPU BPF array maps, make and close 60
  workload-alloc.py --leak-vmalloc-rate 2 --seconds 30         a slow vmalloc leak: 2 more 1 MiB areas a second

What each holds, on Linux 6.18 (found with one-off probes):
- a BPF_MAP_TYPE_ARRAY of 256 x 4 KiB values: its 1 MiB of values is one vmalloc area (vmalloc:alloc_vmap_area,
  1 MiB + a guard page) at __bpf_map_area_alloc; closing the map's last fd frees it from a kworker.
- a pipe with one unread byte: one page (kmem:mm_page_alloc, order 0) from anon_pipe_write, freed when the pipe's
  last end closes or the byte is read.
- a BPF_MAP_TYPE_PERCPU_ARRAY of one 8-byte value: one percpu allocation (percpu:percpu_alloc_percpu) at
  bpf_map_alloc_percpu.

Prints "ready pid=P" once the held objects exist, "holding ..." after the churn (with --wait it then holds until
stdin EOF or SIGTERM), and "done ..." at the end.
"""
import argparse, ctypes, os, platform, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload_common import Stop  # noqa: E402

NR_BPF = {"x86_64": 321, "aarch64": 280}
BPF_MAP_CREATE = 0
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PERCPU_ARRAY = 6
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

def bpf_map(map_type: int, value_size: int, entries: int) -> int:
    attr = (ctypes.c_uint32 * 32)()  # union bpf_attr, zero-padded
    attr[0], attr[1], attr[2], attr[3] = map_type, 4, value_size, entries
    fd = libc.syscall(NR_BPF[platform.machine()], BPF_MAP_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        sys.exit(f"workload-alloc: creating a BPF map failed: {os.strerror(ctypes.get_errno())} (needs root)")
    return fd

def vmalloc_area() -> int:
    return bpf_map(BPF_MAP_TYPE_ARRAY, 4096, 256)

PERCPU_SHAPE = [8, 1]  # value bytes, entries: one percpu allocation of that size per entry

def percpu() -> int:
    return bpf_map(BPF_MAP_TYPE_PERCPU_ARRAY, PERCPU_SHAPE[0], PERCPU_SHAPE[1])

def page() -> tuple[int, int]:
    r, w = os.pipe()
    os.write(w, b"x")
    return r, w

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for kind in ("vmalloc", "pages", "percpu"):
        ap.add_argument(f"--hold-{kind}", type=int, default=0)
        ap.add_argument(f"--churn-{kind}", type=int, default=0)
    ap.add_argument("--leak-vmalloc-rate", type=float, default=0, help="with --seconds: make and hold this many 1 MiB areas a second (a slow leak)")
    ap.add_argument("--leak-pages-rate", type=float, default=0, help="with --seconds: make and hold this many pipes with an unread page a second (a slow leak of accounted kernel memory: the page, the pipe, its files and inode)")
    ap.add_argument("--churn-pages-rate", type=float, default=0, help="with --seconds: fill and drain this many pipes a second (the same memory, freed at once)")
    ap.add_argument("--percpu-size", type=int, default=8, help="value bytes of each per-CPU map (each entry is one percpu allocation of this size)")
    ap.add_argument("--percpu-entries", type=int, default=1, help="entries of each per-CPU map")
    ap.add_argument("--seconds", type=float, default=0, help="how long the leak runs")
    ap.add_argument("--wait", action="store_true", help="after the churn, print 'holding' and wait for stdin EOF")
    a = ap.parse_args()
    if platform.machine() not in NR_BPF:
        sys.exit(f"workload-alloc: unsupported architecture {platform.machine()}")
    PERCPU_SHAPE[:] = [a.percpu_size, a.percpu_entries]
    stop = Stop()  # a stop signal ends the hold; what is held is released as at stdin's end

    maps = [vmalloc_area() for _ in range(a.hold_vmalloc)] + [percpu() for _ in range(a.hold_percpu)]
    pipes = [page() for _ in range(a.hold_pages)]
    print(f"ready pid={os.getpid()}", flush=True)
    for _ in range(a.churn_vmalloc):
        os.close(vmalloc_area())
    for _ in range(a.churn_percpu):
        os.close(percpu())
    for _ in range(a.churn_pages):
        r, w = page()
        os.read(r, 1)
        os.close(r); os.close(w)
    if a.leak_vmalloc_rate > 0 and a.seconds > 0:
        import time
        start = time.monotonic()
        while time.monotonic() - start < a.seconds:
            maps.append(vmalloc_area())
            time.sleep(1 / a.leak_vmalloc_rate)
    if (a.leak_pages_rate > 0 or a.churn_pages_rate > 0) and a.seconds > 0:
        import time
        start = time.monotonic()
        next_leak = next_churn = start
        while not stop.requested and time.monotonic() - start < a.seconds:
            now = time.monotonic()
            if a.leak_pages_rate > 0 and now >= next_leak:
                pipes.append(page())
                next_leak += 1 / a.leak_pages_rate
            if a.churn_pages_rate > 0 and now >= next_churn:
                r, w = page()
                os.read(r, 1)
                os.close(r); os.close(w)
                next_churn += 1 / a.churn_pages_rate
            time.sleep(0.001)
    print(f"holding vmalloc={a.hold_vmalloc} pages={len(pipes)} percpu={a.hold_percpu}", flush=True)
    if a.wait:
        stop.hold_until_stdin_ends()
    for fd in maps:
        os.close(fd)
    for r, w in pipes:
        os.close(r); os.close(w)
    print(f"done released={len(maps) + len(pipes)}", flush=True)

if __name__ == "__main__":
    main()
