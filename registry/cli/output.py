"""Output and registry access for every command: JSON, aligned tables, opening the registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from ..store import Registry, RegistryReader

T = TypeVar("T")


def open_registry(ctx: click.Context, create: bool = False) -> Registry:
    """Open the registry the root options (``--home``, ``--db``) name."""
    from ..store import Registry

    obj = ctx.find_root().obj or {}
    return Registry.open(
        obj.get("home"), obj.get("db"), create=create, artifacts=obj.get("artifacts")
    )


def read(ctx: click.Context, body: Callable[[RegistryReader], T]) -> T:
    """Run a read-only ``body(registry)``: on the fast sqlite3 reader when it can answer.

    The body must not print; the fast reader raises Fallback for anything but plain answers,
    and the body then runs again on the full store (which owns every error message).
    """
    from ..settings import load_settings
    from ..store import fastread

    if fastread.enabled():
        obj = ctx.find_root().obj or {}
        try:
            with fastread.SqliteReader(
                load_settings(obj.get("home"), obj.get("db"), obj.get("artifacts"))
            ) as reader:
                return body(reader)
        except fastread.Fallback:
            pass
    return body(open_registry(ctx))


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (dates and paths as strings)."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def table(columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
    """Print an aligned plain-text table (header, dashes, rows), cheap even for large lists."""
    widths = [len(c) for c in columns]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [title] if title else []
    out += [line(columns), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    click.echo("\n".join(out))
