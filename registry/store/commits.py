"""A count of the write transactions this process committed (no imports: the CLI reads it)."""

from __future__ import annotations

import threading

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
