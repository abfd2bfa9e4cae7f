"""Progress bars for every phase that can run longer than a second, on stderr.

One switch for all of them: :func:`showing` (the CLI's ``--no-progress`` and ``--quiet`` turn it
off for a command). When on, a bar still shows only where stderr is a terminal, so piped or
logged output stays clean.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_ENABLED: ContextVar[bool] = ContextVar("adapter_registry_progress", default=True)


@contextlib.contextmanager
def showing(enabled: bool) -> Iterator[None]:
    """Show (or hide) every progress bar started inside the block."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def enabled() -> bool:
    """Return whether progress bars are on here (before the terminal check)."""
    return _ENABLED.get()


def bar(
    items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "batch"
) -> Iterable[T]:
    """Wrap ``items`` in a progress bar on stderr (off when hidden or stderr is no terminal)."""
    shown: Iterable[T] = tqdm_for(items, desc=desc, total=total, unit=unit)
    return shown


def tqdm_for(items: Iterable[T] | None = None, *, shown: bool = True, **kwargs: Any) -> Any:
    """Return a tqdm bar on stderr, shown when ``shown``, switched on, and on a terminal."""
    from tqdm.auto import tqdm

    on = shown and _ENABLED.get()
    return tqdm(
        items,
        file=sys.stderr,
        disable=None if on else True,  # None: tqdm hides it when stderr is no terminal
        leave=False,
        dynamic_ncols=True,
        **kwargs,
    )
