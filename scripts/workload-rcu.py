#!/usr/bin/env python3
"""Make real kernel objects that the kernel frees through RCU batches, hold a known number, churn the rest.

  workload-rcu.py --hold-timerfd 23 --churn-timerfd 200           hold 23 timerfds; create and close 200 more
  workload-rcu.py --hold-epoll 57 --bind-churn-rate 200 --seconds 5   hold 57 epoll watches; bind+close TCP
                                                                     sockets 200 a second for 5 s
  workload-rcu.py --hold-epoll 57 --epoll-churn-rate 200 --seconds 5  the same, with epoll ADD/DEL churn
  workload-rcu.py --timewait-rate 20 --seconds 100                   20 TCP connections a second, each leaving a
                                                                     TIME_WAIT socket that lives 60 s

What each holds, on Linux 6.18 (found with one-off probes, docs/formats.md "Frees the kmem tracepoints do not show"):
- a timerfd is a kzalloc'ed timerfd_ctx at __do_sys_timerfd_create (kmalloc-256); close() frees it with
  kfree_rcu(), so its free reaches kvfree_call_rcu() and, a grace period later, kfree_bulk(): no kmem:kfree.
- an epoll watch is an epitem from the eventpoll_epi cache at do_epoll_ctl (ep_insert inlined); EPOLL_CTL_DEL
  and close free it with kfree_rcu() too. A bound TCP socket allocates an inet_bind_bucket
  (inet_bind_bucket_create), freed with kfree_rcu() at close; without slab_nomerge it shares epi's cache.

Prints "ready pid=P held=N" once the held objects exist, "holding ..." when the run is over (with --wait it then
holds until stdin EOF or SIGTERM), and "done ..." at the end.
"""
import argparse, ctypes, os, select, socket, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from workload_common import Stop  # noqa: E402

CLOCK_MONOTONIC = 1
libc = ctypes.CDLL(None, use_errno=True)

def timerfd() -> int:
    fd = libc.timerfd_create(CLOCK_MONOTONIC, 0)
    if fd < 0:
        sys.exit(f"workload-rcu: timerfd_create failed: {os.strerror(ctypes.get_errno())}")
    return fd

def bind_and_close() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))  # port 0: the kernel picks one and creates its bind bucket
    s.close()

def timewait(server: socket.socket) -> None:
    # The side that closes first keeps the connection in TIME_WAIT for 60 s (TCP_TIMEWAIT_LEN): an inet_timewait_sock
    # from the tw_sock_TCP cache (inet_twsk_alloc), and its port's bind buckets stay as long.
    c = socket.create_connection(server.getsockname())
    s, _ = server.accept()
    c.close()
    s.recv(1)
    s.close()

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hold-timerfd", type=int, default=0, help="timerfds to hold until the end")
    ap.add_argument("--churn-timerfd", type=int, default=0, help="timerfds to create and close at once, after holding")
    ap.add_argument("--timerfd-churn-rate", type=float, default=0, help="timerfds a second to create and close while running")
    ap.add_argument("--hold-epoll", type=int, default=0, help="epoll watches (epitems) to hold until the end")
    ap.add_argument("--epoll-churn-rate", type=float, default=0, help="epoll watches a second to add and delete while running")
    ap.add_argument("--bind-churn-rate", type=float, default=0, help="TCP sockets a second to bind to 127.0.0.1:0 and close")
    ap.add_argument("--timewait-rate", type=float, default=0, help="TCP connections a second over loopback, closed by the client first: each leaves a TIME_WAIT socket that the kernel frees 60 s later")
    ap.add_argument("--seconds", type=float, default=0, help="run this long (0: only the one-off steps)")
    ap.add_argument("--wait", action="store_true", help="after the run, print 'holding' and wait for stdin EOF")
    a = ap.parse_args()

    stop = Stop()

    timers = [timerfd() for _ in range(a.hold_timerfd)]
    ep = select.epoll()
    watched = [os.eventfd(0) for _ in range(a.hold_epoll)]
    for fd in watched:
        ep.register(fd, select.EPOLLIN)
    churn_fd = os.eventfd(0)
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    print(f"ready pid={os.getpid()} held={len(timers) + len(watched)}", flush=True)

    churned = 0
    for _ in range(a.churn_timerfd):
        os.close(timerfd())
        churned += 1
    start = time.monotonic()
    rates = {"timerfd": a.timerfd_churn_rate, "epoll": a.epoll_churn_rate, "bind": a.bind_churn_rate, "timewait": a.timewait_rate}
    due = {k: start for k in rates}
    while a.seconds > 0 and not stop.requested:
        now = time.monotonic()
        if now - start >= a.seconds:
            break
        for kind, rate in rates.items():
            while rate > 0 and now >= due[kind]:
                if kind == "timerfd":
                    os.close(timerfd())
                elif kind == "epoll":
                    ep.register(churn_fd, select.EPOLLIN)
                    ep.unregister(churn_fd)
                elif kind == "timewait":
                    timewait(server)
                else:
                    bind_and_close()
                churned += 1
                due[kind] += 1 / rate
        time.sleep(0.002)
    print(f"holding held={len(timers) + len(watched)} timerfds={len(timers)} epoll={len(watched)} churned={churned}", flush=True)
    if a.wait:
        stop.hold_until_stdin_ends()
    for fd in timers:
        os.close(fd)
    ep.close()
    for fd in watched:
        os.close(fd)
    print(f"done released={len(timers) + len(watched)} churned={churned}", flush=True)

if __name__ == "__main__":
    main()
