"""The metadata workflow: ``tag``, ``untag``, ``describe``, ``compare``, ``delete``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .options import output_options
from .output import echo_json, open_registry, table

if TYPE_CHECKING:
    from .. import entities as E


@click.command()
@click.argument("ref")
@click.argument("tags", nargs=-1)
@output_options()
@click.pass_context
def tag(ctx: click.Context, ref: str, tags: tuple[str, ...], as_json: bool) -> None:
    """Add TAGS to an adapter version or fusion (without TAGS: show its tags).

    Find tagged versions with: adapter-registry list --tag TAG

    \b
    Example:
      adapter-registry tag sentiment-books@2 baseline reviewed
      adapter-registry tag sentiment:production --json
    """
    registry = open_registry(ctx)
    entity = registry.resolve(ref)
    now = registry.tag(ref, tags) if tags else registry.tags(entity)
    _echo_tags(entity, now, as_json)


@click.command()
@click.argument("ref")
@click.argument("tags", nargs=-1, required=True)
@output_options()
@click.pass_context
def untag(ctx: click.Context, ref: str, tags: tuple[str, ...], as_json: bool) -> None:
    """Remove TAGS from an adapter version or fusion (a tag it lacks is refused).

    \b
    Example:
      adapter-registry untag sentiment-books@2 reviewed
    """
    registry = open_registry(ctx)
    entity = registry.resolve(ref)
    now = registry.untag(ref, tags)
    _echo_tags(entity, now, as_json)


@click.command()
@click.argument("ref")
@click.argument("text", required=False)
@click.option("--clear", is_flag=True, help="Remove the description.")
@output_options()
@click.pass_context
def describe(ctx: click.Context, ref: str, text: str | None, clear: bool, as_json: bool) -> None:
    """Set the description of REF (without TEXT: show it).

    An adapter's description belongs to its name (every version shares it); a fusion's to
    that fusion version.

    \b
    Example:
      adapter-registry describe sentiment-books "Books reviews, 2019 crawl; baseline."
      adapter-registry describe sentiment:production --json
    """
    registry = open_registry(ctx)
    entity = registry.resolve(ref)
    if clear and text:
        raise click.UsageError("give TEXT or --clear, not both")
    if clear or text is not None:
        registry.describe(ref, "" if clear else text or "")
    now = registry.description(entity)
    if as_json:
        echo_json({"ref": entity.ref, "id": entity.uid, "description": now})
    elif now:
        click.echo(f"{entity.ref}: {now}")
    else:
        click.echo(f"{entity.ref} has no description. Set one: adapter-registry describe REF TEXT")


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


def _val(v: Any) -> str:
    text = "—" if v is None else str(v)
    return text if len(text) <= 40 else text[:39] + "…"


@click.command()
@click.argument("ref_a")
@click.argument("ref_b")
@output_options()
@click.pass_context
def compare(ctx: click.Context, ref_a: str, ref_b: str, as_json: bool) -> None:
    """Compare two versions: metrics per data set and split, recipe diff, lineage diff.

    Metrics are each version's latest evaluation on every recorded data split (DIFF = B - A);
    the recipe diff covers the base model, method, adapter config and training settings;
    the lineage diff lists the ancestors only one of them has.

    \b
    Example:
      adapter-registry compare sentiment-books@1 sentiment-books@2
      adapter-registry compare sentiment:production sentiment-fusion@4 --json
    """
    from ..selection import compare as run_compare

    data = run_compare(open_registry(ctx), ref_a, ref_b)
    if as_json:
        echo_json(data)
        return
    a, b = data["a"]["ref"], data["b"]["ref"]
    click.echo(f"A = {a} ({data['a']['id']}), B = {b} ({data['b']['id']})")
    if data["metrics"]:
        rows = [
            [m["data"], m["split"], m["metric"], _num(m["a"]), _num(m["b"]), _num(m["diff"])]
            for m in data["metrics"]
        ]
        table(["DATA", "SPLIT", "METRIC", "A", "B", "DIFF"], rows, title="\nMetrics")
    else:
        click.echo("\nNo evaluations recorded for either.")
    if data["config"]:
        rows = [[c["key"], _val(c["a"]), _val(c["b"])] for c in data["config"]]
        table(["SETTING", "A", "B"], rows, title="\nRecipe (differences only)")
    else:
        click.echo("\nSame recipe.")
    lin = data["lineage"]
    click.echo("\nLineage")
    click.echo(f"  shared ancestors  {', '.join(lin['shared']) or 'none'}")
    click.echo(f"  only A            {', '.join(lin['only_a']) or 'none'}")
    click.echo(f"  only B            {', '.join(lin['only_b']) or 'none'}")


@click.command()
@click.argument("ref")
@output_options()
@click.pass_context
def delete(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Delete an adapter version or fusion that nothing references.

    Refused while an alias points at it, a fusion uses it, or something was built from it.
    Its row stays (status deleted) so lineage still shows it; nothing resolves to it any
    more, and its files are removed by the next gc.

    \b
    Example:
      adapter-registry delete sentiment-books@1
      adapter-registry gc --grace 0
    """
    registry = open_registry(ctx)
    entity = registry.delete(ref)
    if as_json:
        echo_json({"ref": entity.ref, "id": entity.uid, "status": entity.status})
    else:
        click.echo(
            f"Deleted {entity.ref} ({entity.uid}); its files go with the next: adapter-registry gc"
        )


COMMANDS: list[click.Command] = [tag, untag, describe, compare, delete]


def _echo_tags(entity: E.Entity, tags: list[str], as_json: bool) -> None:
    """Print the tags ``tag`` and ``untag`` leave on ``entity``."""
    if as_json:
        echo_json({"ref": entity.ref, "id": entity.uid, "tags": tags})
    else:
        click.echo(f"{entity.ref}: {', '.join(tags) if tags else 'no tags'}")
