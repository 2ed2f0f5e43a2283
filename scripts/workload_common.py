"""What the workload scripts share: stop on SIGTERM/SIGINT, and holding until stdin's end (--wait).

The tests and record scripts drive every workload the same way: it prints "ready ...", does its work, prints
"holding ...", holds what it made until its stdin ends (or a stop signal), releases it and prints "done ...".
"""
import signal, sys

class _StopHold(Exception):
    pass

class Stop:
    """Set by SIGTERM or SIGINT: a workload's loops end at the next check, and a hold ends at once (Python retries
    an interrupted read after a handler that returns, so the handler raises while holding)."""
    def __init__(self) -> None:
        self.requested = False
        self.holding = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, _sig, _frame) -> None:
        self.requested = True
        if self.holding:
            raise _StopHold()

    def hold_until_stdin_ends(self) -> None:
        """Hold: until stdin's EOF (the caller closed it) or a stop signal."""
        if self.requested:
            return
        self.holding = True
        try:
            sys.stdin.read()
        except _StopHold:
            pass
        finally:
            self.holding = False
