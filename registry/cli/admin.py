"""Set-up and upkeep: ``init``, ``db``, ``alias``, ``deprecate``, ``verify``, ``gc``."""

from __future__ import annotations

import sys

import click

from ..errors import RegistryError
from .options import output_options
from .output import echo_json, open_registry, table


# ---------------------------------------------------------------------- set-up
@click.command()
@click.option(
    "--force",
    is_flag=True,
    help="Create a new database even beside artifacts already in the store.",
)
@click.option(
    "--store-moved",
    is_flag=True,
    help="Record this artifact store (--artifacts / ADAPTER_REGISTRY_ARTIFACTS) as the "
    "registry's, replacing the one its database records (after copying the store there).",
)
@output_options()
@click.pass_context
def init(ctx: click.Context, force: bool, store_moved: bool, as_json: bool) -> None:
    """Create the registry (folder, database, schema), or upgrade an existing one.

    A new database beside existing artifacts is refused (the old database was lost?) unless
    --force. A remote artifact store (an fsspec URL) is recorded in the database: every
    command that names another store is refused, with the recorded one in the hint.

    \b
    Example:
      ADAPTER_REGISTRY_HOME=./reg adapter-registry init
    """
    from ..store import Registry

    registry = Registry.init(
        ctx.obj["home"],
        ctx.obj["db"],
        artifacts=ctx.obj["artifacts"],
        force=force,
        store_moved=store_moved,
    )
    if as_json:
        echo_json(
            {
                "home": str(registry.settings.home),
                "database": registry.settings.redacted_url(),
                "artifacts": str(registry.settings.artifacts_location),
                "schema": registry.db.current_revision(),
            }
        )
        return
    click.echo(
        f"Registry ready at {registry.settings.home} "
        f"(database {registry.settings.redacted_url()}, "
        f"artifacts {registry.settings.artifacts_location}, "
        f"schema {registry.db.current_revision()})."
    )


@click.group()
def db() -> None:
    """Manage the database schema.

    \b
    Example:
      adapter-registry db current
      adapter-registry db upgrade
    """


@db.command("upgrade")
@output_options()
@click.pass_context
def db_upgrade(ctx: click.Context, as_json: bool) -> None:
    """Migrate the schema to the newest revision (take a backup first).

    \b
    Example:
      adapter-registry db upgrade
    """
    from ..db import SCHEMA_HEAD, Database
    from ..settings import load_settings

    obj = ctx.find_root().obj
    settings = load_settings(obj["home"], obj["db"])
    if settings.sqlite_path is not None and not settings.sqlite_path.exists():
        raise RegistryError(
            f"No registry database at {settings.sqlite_path}.", hint="Run: adapter-registry init"
        )
    database = Database(settings)
    before = database.current_revision()
    database.upgrade()
    if as_json:
        echo_json({"from": before, "to": SCHEMA_HEAD})
        return
    click.echo(f"Schema upgraded from {before or 'empty'} to {SCHEMA_HEAD}.")


@db.command("current")
@output_options()
@click.pass_context
def db_current(ctx: click.Context, as_json: bool) -> None:
    """Show the schema revision of the database and the one this code expects.

    \b
    Example:
      adapter-registry db current --json
    """
    from ..db import SCHEMA_HEAD, Database
    from ..settings import load_settings

    obj = ctx.find_root().obj
    settings = load_settings(obj["home"], obj["db"])
    if settings.sqlite_path is not None and not settings.sqlite_path.exists():
        raise RegistryError(
            f"No registry database at {settings.sqlite_path}.", hint="Run: adapter-registry init"
        )
    current = Database(settings).current_revision()
    state = "up to date" if current == SCHEMA_HEAD else "needs: adapter-registry db upgrade"
    if as_json:
        echo_json({"current": current, "head": SCHEMA_HEAD, "up_to_date": current == SCHEMA_HEAD})
    else:
        click.echo(f"current {current or 'none'}, head {SCHEMA_HEAD} ({state})")


# ---------------------------------------------------------------------- changing
@click.command()
@click.argument("task", required=False)
@click.argument("alias", required=False)
@click.argument("ref", required=False)
@click.option("--list", "list_", is_flag=True, help="List aliases (of TASK, if given).")
@click.option("--history", is_flag=True, help="List every change (who, when, old → new).")
@click.option("--delete", is_flag=True, help="Remove TASK:ALIAS (recorded in its history).")
@output_options()
@click.pass_context
def alias(
    ctx: click.Context,
    task: str | None,
    alias: str | None,
    ref: str | None,
    list_: bool,
    history: bool,
    delete: bool,
    as_json: bool,
) -> None:
    """Point TASK:ALIAS (e.g. sentiment:production) at an adapter version or fusion.

    Every change is recorded with who made it (ADAPTER_REGISTRY_USER, else the login name).

    \b
    Example:
      adapter-registry alias sentiment production sentiment-fusion@3
      adapter-registry alias --list sentiment
      adapter-registry alias --history sentiment production
      adapter-registry alias --delete sentiment staging
    """
    modes = [m for m, on in (("--list", list_), ("--history", history), ("--delete", delete)) if on]
    if len(modes) > 1:
        raise click.UsageError(f"{' and '.join(modes)} cannot be combined")
    if list_ or history:
        if ref is not None or (list_ and alias is not None):
            raise click.UsageError(
                "alias --list takes at most TASK; alias --history at most TASK ALIAS"
            )
        _alias_listing(ctx, task, alias, history, as_json)
        return
    if task is None or alias is None or (ref is None) != delete:
        raise click.UsageError(
            "give TASK ALIAS REF to set an alias, --delete TASK ALIAS to remove one, or --list"
        )
    registry = open_registry(ctx)
    if delete:
        gone = registry.delete_alias(task, alias)
        if as_json:
            echo_json({**gone.to_dict(), "deleted": True})
        else:
            click.echo(f"Removed {gone.task}:{gone.alias} (it pointed at {gone.target_ref}).")
        return
    assert ref is not None
    result = registry.set_alias(task, alias, ref)
    if as_json:
        echo_json(result.to_dict())
    else:
        click.echo(f"{result.task}:{result.alias} → {result.target_ref}")


def _alias_listing(
    ctx: click.Context, task: str | None, alias: str | None, history: bool, as_json: bool
) -> None:
    """Print the aliases, or their history (``alias --list`` / ``--history``)."""
    from ..entities import jsonable

    registry = open_registry(ctx)
    if history:
        events = registry.alias_history(task, alias)
        if as_json:
            echo_json([e.to_dict() for e in events])
            return
        rows = [
            [
                jsonable(e.created_at),
                f"{e.task}:{e.alias}",
                e.old_ref or "(new)",
                e.new_ref or "(deleted)",
                e.actor,
            ]
            for e in events
        ]
        table(["WHEN", "ALIAS", "OLD", "NEW", "WHO"], rows)
        return
    if task is not None:
        registry.get_task(task)  # an unknown task is an error, not an empty list
    found = registry.aliases(task)
    if as_json:
        echo_json([a.to_dict() for a in found])
        return
    if not found:
        click.echo("No aliases. Set one: adapter-registry alias TASK ALIAS REF")
        return
    table(
        ["ALIAS", "TARGET", "SINCE"],
        [[f"{a.task}:{a.alias}", a.target_ref, jsonable(a.updated_at)] for a in found],
    )


@click.command()
@click.argument("ref")
@click.option("--undo", is_flag=True, help="Mark it active again.")
@click.option("--force", is_flag=True, help="Deprecate it even while an alias points at it.")
@output_options()
@click.pass_context
def deprecate(ctx: click.Context, ref: str, undo: bool, force: bool, as_json: bool) -> None:
    """Mark an adapter version or fusion deprecated (its files and rows stay).

    Refused while an alias (such as TASK:production) points at it, unless --force.

    \b
    Example:
      adapter-registry deprecate sentiment-books@1
    """
    registry = open_registry(ctx)
    if not undo:
        target = registry.resolve(ref)
        held = [
            f"{a.task}:{a.alias}"
            for a in registry.aliases(target.task)
            if (a.target_kind, a.target_id) == (target.kind, target.id)
        ]
        if held and force:
            click.echo(
                f"Warning: {target.ref} is the target of {', '.join(held)}; it keeps serving "
                "there while deprecated. Point the alias elsewhere: adapter-registry alias "
                f"{target.task} {held[0].split(':', 1)[1]} REF",
                err=True,
            )
    entity = registry.set_status(ref, "active" if undo else "deprecated", force=force)
    if as_json:
        echo_json({"ref": entity.ref, "id": entity.uid, "status": entity.status})
        return
    click.echo(f"{entity.ref} is now {entity.status}.")


@click.command()
@output_options()
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check every artifact against its sha256 and every row against its files.

    Exits 1 when anything is damaged or missing.

    \b
    Example:
      adapter-registry verify --json
    """
    registry = open_registry(ctx)
    report = registry.verify()
    if as_json:
        data = report.to_dict()
        data["ok"] = report.ok
        echo_json(data)
    else:
        click.echo(
            f"Checked {report.artifacts_checked + len(report.problems)} artifacts and "
            f"{report.rows_checked} rows: {len(report.problems)} problem(s), "
            f"{len(report.orphans)} unreferenced file(s)."
        )
        for p in report.problems:
            click.echo(f"  {p['kind'].upper()}: {p['what']}: {p['error']}")
        for o in report.orphans:
            click.echo(f"  ORPHAN: {o}")
        if report.orphans:
            click.echo("Remove unreferenced files with: adapter-registry gc")
    if not report.ok:
        sys.exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--grace",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep files younger than this many seconds (a writer may still be registering them).",
)
@output_options()
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: float, as_json: bool) -> None:
    """Remove artifact files that no row points at.

    \b
    Example:
      adapter-registry gc --dry-run
      adapter-registry gc --grace 0
    """
    registry = open_registry(ctx)
    removed = registry.gc(dry_run=dry_run, grace_seconds=grace)
    if as_json:
        echo_json({"dry_run": dry_run, "removed": removed})
        return
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} {len(removed)} unreferenced item(s).")
    for path in removed:
        click.echo(f"  {path}")


COMMANDS: list[click.Command] = [init, db, alias, deprecate, verify, gc]
