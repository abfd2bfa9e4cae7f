"""A count of the write transactions this process committed (no heavy imports: the CLI reads
it), and the Ctrl-C deferral that keeps the count true."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_COMMITS = [0]
_COMMITS_LOCK = threading.Lock()


def committed_writes() -> int:
    """Return how many write transactions this process has committed (any registry).

    An interrupt handler compares it with the figure from before a command started, so it can
    say whether something was registered before the interrupt (#16 finding 10).
    """
    return _COMMITS[0]


def _committed() -> None:
    with _COMMITS_LOCK:
        _COMMITS[0] += 1


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C back until the block is over, then raise it (#16 finding 10).

    Around a commit and :func:`_committed`: a SIGINT between the database's commit and the
    count would otherwise report "nothing was registered" for a version that exists. Python
    runs signal handlers in the main thread only, so elsewhere (and when SIGINT is not
    Python's default KeyboardInterrupt, e.g. ignored or handled by the caller) this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield
        return
    pending: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        pending.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:  # raised after an error in the block too: a Ctrl-C is never lost
            raise KeyboardInterrupt
