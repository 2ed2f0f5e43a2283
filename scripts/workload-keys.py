#!/usr/bin/env python3
"""Make real, known kernel allocations: "user" keys whose payload is kmalloc'ed in user_preparse.

Each key's payload is one kmalloc of 24 + SIZE bytes at user_preparse (SIZE 4000 -> bytes_req=4024,
bytes_alloc=4096, cache kmalloc-4096). Held keys stay allocated until this process releases them; churned keys
are added and invalidated at once (the kernel's key GC frees them a moment later, from a kworker).

  workload-keys.py --hold 97 --churn 500 --size 4000            hold 97, churn 500, wait for stdin EOF/SIGTERM
  workload-keys.py --hold 23 --churn-rate 200 --seconds 5        churn 200/s for 5 s while holding 23
  workload-keys.py --leak-rate 2 --seconds 30                    add (and hold) 2 keys a second: a slow leak
  workload-keys.py --pipe-burst 100 --burst-every 3 --seconds 30  every 3 s close the last 100 pipes, open 100 more
  workload-keys.py --hold-proc 7 --seconds 10                     hold /proc/version open 7 times (single_open)

--pipe-burst uses another call site in the same size class: a pipe resized to 64 slots (F_SETPIPE_SZ 256 KiB)
kcallocs its 64 x 40-byte pipe_buffer ring at pipe_resize_ring (bytes_req=2560, bytes_alloc=4096).

Prints "ready pid=P held=N" once the held keys exist, "holding held=N churned=C" when the run is over (with
--wait it then holds until stdin EOF), and "done held=N released=R churned=C" at the end.
With --release (default) the held keys are invalidated before exit; --keep leaves them to the process keyring,
which the kernel also frees at exit.
"""
import argparse, ctypes, fcntl, os, platform, shutil, sys, tempfile, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload_common import Stop  # noqa: E402

SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219)}
KEY_SPEC_PROCESS_KEYRING = -2
KEYCTL_INVALIDATE = 21
KEYCTL_UPDATE = 2
F_SETPIPE_SZ = 1031

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
try:
    NR_ADD_KEY, NR_KEYCTL = SYSCALLS[platform.machine()]
except KeyError:
    sys.exit(f"workload-keys: unsupported architecture {platform.machine()}")

def add_key(desc: str, payload: bytes) -> int:
    r = libc.syscall(NR_ADD_KEY, b"user", desc.encode(), payload, ctypes.c_size_t(len(payload)),
                     ctypes.c_int(KEY_SPEC_PROCESS_KEYRING))
    if r < 0:
        e = ctypes.get_errno()
        sys.exit(f"workload-keys: add_key failed: {os.strerror(e)} (root key quota: /proc/sys/kernel/keys/root_maxbytes)")
    return r

def update(key: int, data: bytes) -> None:
    # key_update → user_preparse allocates the new payload (a second path to the same call site); the old one is
    # freed after an RCU grace period.
    if libc.syscall(NR_KEYCTL, ctypes.c_int(KEYCTL_UPDATE), ctypes.c_long(key), data, ctypes.c_size_t(len(data))) < 0:
        sys.exit(f"workload-keys: keyctl update failed: {os.strerror(ctypes.get_errno())}")

def invalidate(key: int) -> None:
    libc.syscall(NR_KEYCTL, ctypes.c_int(KEYCTL_INVALIDATE), ctypes.c_long(key))

def resized_pipe() -> tuple[int, int]:
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 64 * 4096)
    return r, w

def payload(tag: str, size: int) -> bytes:
    unit = f"kleak-{tag}-payload|".encode()
    return (unit * (size // len(unit) + 1))[:size]

def msg_queues_holding(n: int) -> list[int]:
    """Private SysV queues with n unread 900-byte messages in all: each is one kmalloc of 48 + 900 bytes (msg_msg-1k).
    A queue takes 16 (the default kernel.msgmnb is 16384 bytes), IPC_NOWAIT so a full one fails instead of blocking."""
    queues: list[int] = []
    buf = ctypes.create_string_buffer(8 + 900)
    ctypes.c_long.from_buffer(buf).value = 1  # mtype
    buf[8:8 + 900] = payload("msg", 900)  # a marker that must never appear in what kleak prints or stores
    for i in range(n):
        if i % 16 == 0:
            q = libc.msgget(0, 0o600 | 0o1000)  # IPC_PRIVATE, IPC_CREAT
            if q < 0:
                sys.exit(f"workload-keys: msgget failed: {os.strerror(ctypes.get_errno())}")
            queues.append(q)
        if libc.msgsnd(queues[-1], buf, 900, 0o4000) != 0:  # IPC_NOWAIT
            sys.exit(f"workload-keys: msgsnd failed: {os.strerror(ctypes.get_errno())}")
    return queues

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hold", type=int, default=0, help="keys to hold until the end")
    ap.add_argument("--churn", type=int, default=0, help="keys to add and invalidate at once, before holding")
    ap.add_argument("--churn-rate", type=float, default=0, help="keys a second to add and invalidate while holding")
    ap.add_argument("--leak-rate", type=float, default=0, help="keys a second to add and hold while running")
    ap.add_argument("--burst", type=int, default=0, help="with --burst-every: hold this many keys, then free them all")
    ap.add_argument("--pipe-burst", type=int, default=0, help="with --burst-every: hold this many resized pipes, then close them")
    ap.add_argument("--pipe-churn-rate", type=float, default=0, help="resized pipes a second to open and close at once (pipe_resize_ring churn)")
    ap.add_argument("--hold-proc", type=int, default=0, help="hold this many open /proc/version files (single_open: a 32-byte seq_operations of function pointers each)")
    ap.add_argument("--leak-proc-rate", type=float, default=0, help="open (and hold) /proc/version this many times a second while running: a slow leak of seq_operations")
    ap.add_argument("--churn-proc", type=int, default=0, help="keep this many /proc/loadavg files open, replacing the oldest at --churn-proc-rate a second: a steady population that churns")
    ap.add_argument("--churn-proc-rate", type=float, default=0, help="with --churn-proc: files a second closed and opened again")
    ap.add_argument("--hold-msg", type=int, default=0, help="hold this many 900-byte SysV messages in a private queue (kmem_buckets msg_msg-1k: 48 + 900 bytes each, through kmalloc)")
    ap.add_argument("--hold-eventfd", type=int, default=0, help="hold this many eventfds (one struct file each, in filp, whose f_op is eventfd_fops; and an eventfd_ctx in kmalloc-cg-64)")
    ap.add_argument("--hold-inotify", type=int, default=0, help="hold this many inotify watches (one inotify_inode_mark each, a cache SLUB merges with others)")
    ap.add_argument("--burst-every", type=float, default=0, help="seconds between bursts")
    ap.add_argument("--size", type=int, default=4000, help="payload bytes (kmalloc of 24 + SIZE)")
    ap.add_argument("--seconds", type=float, default=0, help="run this long, then end (0: until stdin EOF or SIGTERM)")
    ap.add_argument("--keep", action="store_true", help="do not invalidate the held keys at the end")
    ap.add_argument("--wait", action="store_true", help="after the run, print 'holding' and wait for stdin EOF")
    ap.add_argument("--update", type=int, default=0, help="then update this many of the held keys: their payloads come from a second path (key_update)")
    ap.add_argument("--task-name", default=None, help="set this task's name (comm) first, any bytes (a hostile name: tabs, CR, newline)")
    a = ap.parse_args()
    if a.task_name is not None:
        import ctypes
        PR_SET_NAME = 15
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(a.task_name.encode("utf-8", "surrogateescape")), 0, 0, 0)

    stop = Stop()

    held, churned, seq = [], 0, 0
    for i in range(a.churn):
        invalidate(add_key(f"kleak-churn-{os.getpid()}-{i}", payload("churn", a.size)))
        churned += 1
    for i in range(a.hold):
        held.append(add_key(f"kleak-hold-{os.getpid()}-{i}", payload("hold", a.size)))
    for key in held[:a.update]:
        update(key, payload("upd", a.size))
    proc_files = [open("/proc/version") for _ in range(a.hold_proc)]
    churn_files = [open("/proc/loadavg") for _ in range(a.churn_proc)]
    queues = msg_queues_holding(a.hold_msg)
    eventfds = [os.eventfd(0) for _ in range(a.hold_eventfd)]
    watch_dir = tempfile.mkdtemp(prefix="kleak-inotify-") if a.hold_inotify > 0 else ""
    inotify_fd = libc.inotify_init1(0o2000000) if a.hold_inotify > 0 else -1  # IN_CLOEXEC
    for i in range(a.hold_inotify):
        path = os.path.join(watch_dir, str(i)).encode()
        open(path, "w").close()
        if libc.inotify_add_watch(inotify_fd, path, 0x2) < 0:  # IN_MODIFY
            sys.exit(f"workload-keys: inotify_add_watch failed: {os.strerror(ctypes.get_errno())}")
    print(f"ready pid={os.getpid()} held={len(held)}", flush=True)

    start = time.monotonic()
    next_churn = next_leak = next_burst = start
    burst: list[int] = []
    pipes: list[tuple[int, int]] = []
    next_pipe = start
    pipe_churned = 0
    next_proc_leak = next_proc_churn = start
    proc_churned = 0
    busy = a.churn_rate > 0 or a.leak_rate > 0 or a.burst_every > 0 or a.pipe_churn_rate > 0 or a.leak_proc_rate > 0 or a.churn_proc_rate > 0
    while busy or a.seconds > 0:
        now = time.monotonic()
        if stop.requested or (a.seconds > 0 and now - start >= a.seconds):
            break
        if a.churn_rate > 0 and now >= next_churn:
            invalidate(add_key(f"kleak-churn-{os.getpid()}-{seq}", payload("churn", a.size)))
            seq += 1; churned += 1; next_churn += 1 / a.churn_rate
        if a.pipe_churn_rate > 0 and now >= next_pipe:
            r, w = resized_pipe()
            os.close(r); os.close(w)
            pipe_churned += 1; next_pipe += 1 / a.pipe_churn_rate
        if a.leak_rate > 0 and now >= next_leak:
            held.append(add_key(f"kleak-leak-{os.getpid()}-{seq}", payload("leak", a.size)))
            seq += 1; next_leak += 1 / a.leak_rate
        if a.leak_proc_rate > 0 and now >= next_proc_leak:
            proc_files.append(open("/proc/version"))
            next_proc_leak += 1 / a.leak_proc_rate
        if a.churn_proc_rate > 0 and churn_files and now >= next_proc_churn:
            churn_files.pop(0).close()
            churn_files.append(open("/proc/loadavg"))
            proc_churned += 1; next_proc_churn += 1 / a.churn_proc_rate
        if a.burst_every > 0 and now >= next_burst:
            for k in burst:
                invalidate(k)
            churned += len(burst)
            burst = [add_key(f"kleak-burst-{os.getpid()}-{seq + j}", payload("burst", a.size)) for j in range(a.burst)]
            for r, w in pipes:
                os.close(r); os.close(w)
            pipes = [resized_pipe() for _ in range(a.pipe_burst)]
            seq += a.burst; next_burst += a.burst_every
        time.sleep(0.001)
    for k in burst:
        invalidate(k)
    churned += len(burst)
    print(f"holding held={len(held)} churned={churned} pipes_churned={pipe_churned} proc_files={len(proc_files)} proc_churned={proc_churned}", flush=True)
    if a.wait or (not busy and a.seconds == 0):
        stop.hold_until_stdin_ends()
    for f in proc_files + churn_files:
        f.close()
    for fd in eventfds:
        os.close(fd)
    for q in queues:
        libc.msgctl(q, 0, None)  # IPC_RMID frees the queued messages
    if inotify_fd >= 0:
        os.close(inotify_fd)  # the marks go with the instance
        shutil.rmtree(watch_dir)
    for r, w in pipes:  # the last burst is held until the end, like the keys
        os.close(r); os.close(w)
    released = 0
    if not a.keep:
        for k in held:
            invalidate(k)
        released = len(held)
    print(f"done held={len(held)} released={released} churned={churned}", flush=True)

if __name__ == "__main__":
    main()
