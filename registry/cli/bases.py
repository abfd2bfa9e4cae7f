"""Base models: ``base list`` and ``base relink`` (a base is its weights, wherever they lie)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import InvalidInput
from .options import output_options
from .output import echo_json, open_registry, table

if TYPE_CHECKING:
    from .. import entities as E


@click.group()
def base() -> None:
    """List the base models, or point one at the folder its weights moved to.

    A base model is identified by its content (the sha256 of its weight files): any folder
    with the same weights is the same base, so training with a copy elsewhere reuses it.

    \b
    Example:
      adapter-registry base list
      adapter-registry base relink 1 /models/minilm
    """


def _row(b: E.BaseModel) -> dict[str, object]:
    return {
        "id": b.id,
        "name": b.name,
        "revision": b.revision,
        "weights_sha256": b.weights_sha256,
        "hub_id": b.hub_id,
        "hub_commit": b.hub_commit,
        "architecture": b.architecture,
    }


@base.command("list")
@output_options()
@click.pass_context
def base_list(ctx: click.Context, as_json: bool) -> None:
    """List the base models: where each loads from, its weights' sha256 and Hub id.

    \b
    Example:
      adapter-registry base list --json
    """
    rows = [_row(b) for b in open_registry(ctx).list_base_models()]
    if as_json:
        echo_json(rows)
        return
    table(
        ["ID", "NAME", "SHA256", "HUB"],
        [
            [
                str(r["id"]),
                str(r["name"]),
                str(r["weights_sha256"] or "")[:12],
                f"{r['hub_id']}@{str(r['hub_commit'] or '')[:12]}" if r["hub_id"] else "",
            ]
            for r in rows
        ],
    )


@base.command("relink")
@click.argument("base_id", metavar="ID_OR_REF")
@click.argument("folder", type=click.Path(file_okay=False))
@output_options()
@click.pass_context
def base_relink(ctx: click.Context, base_id: str, folder: str, as_json: bool) -> None:
    """Point a base model at the folder its weights were moved to.

    ID_OR_REF is a base model id (see `base list`) or the REF of an adapter or fusion on it.
    The folder's weight files must hash to the recorded sha256; nothing changes otherwise.

    \b
    Example:
      adapter-registry base relink 1 /models/minilm
      adapter-registry base relink sentiment@1 ./minilm
    """
    from ..backbone import weights_digest

    registry = open_registry(ctx)
    row_id = int(base_id) if base_id.isdigit() else registry.resolve(base_id).base_model_id
    path = Path(folder).expanduser().resolve()
    if not path.is_dir():
        raise InvalidInput(
            f"Base model folder {folder} does not exist.",
            hint="Give the folder the base model's weights now lie in.",
        )
    row = registry.relink_base_model(row_id, str(path), weights_digest(path))
    if as_json:
        echo_json(_row(row))
    else:
        click.echo(f"Base model {row.id} now loads from {row.name}.")


COMMANDS: list[click.Command] = [base]
