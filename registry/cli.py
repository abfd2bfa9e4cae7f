"""The ``adapter-registry`` command line: thin click commands over :mod:`registry`.

One error boundary (:class:`RegistryGroup`) turns :class:`~registry.errors.RegistryError` into
``Error: …`` plus a hint and a non-zero exit; usage errors exit 2. Heavy libraries (torch,
transformers, adapters, huggingface_hub) are imported inside the commands that need them, so
``adapter-registry list`` answers fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from . import __version__
from .errors import RegistryError
from .settings import debug_enabled

T = TypeVar("T")


class CliError(click.ClickException):
    """A registry error shown as ``Error: message`` and ``Hint: next step``."""

    def __init__(self, err: RegistryError) -> None:
        super().__init__(err.message)
        self.hint = err.hint
        self.exit_code = err.exit_code  # type: ignore[misc]

    def format_message(self) -> str:
        return self.message + (f"\nHint: {self.hint}" if self.hint else "")


class RegistryGroup(click.Group):
    """A click group whose commands report RegistryErrors without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegistryError as err:
            if debug_enabled():
                traceback.print_exc()
            raise CliError(err) from err
        except KeyboardInterrupt as err:
            click.echo("Interrupted: nothing was registered.", err=True)
            raise click.exceptions.Exit(130) from err


def _registry(ctx: click.Context, create: bool = False) -> Any:
    from .store import Registry

    obj = ctx.find_root().obj or {}
    return Registry.open(
        obj.get("home"), obj.get("db"), create=create, artifacts=obj.get("artifacts")
    )


def _read(ctx: click.Context, body: Callable[[Any], T]) -> T:
    """Run a read-only ``body(registry)``: on the fast sqlite3 reader when it can answer.

    The body must not print; the fast reader raises Fallback for anything but plain answers,
    and the body then runs again on the full store (which owns every error message).
    """
    from .settings import load_settings
    from .store import fastread

    if fastread.enabled():
        obj = ctx.find_root().obj or {}
        try:
            with fastread.SqliteReader(
                load_settings(obj.get("home"), obj.get("db"), obj.get("artifacts"))
            ) as reader:
                return body(reader)
        except fastread.Fallback:
            pass
    return body(_registry(ctx))


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def _table(columns: list[str], rows: list[list[str]], title: str | None = None) -> None:
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


def _check_home(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    # An empty --home (or ADAPTER_REGISTRY_HOME="") would silently mean the current folder.
    if value is None:
        return None
    if not value.strip():
        raise click.BadParameter("the registry home must be a folder path, not empty")
    return Path(value)


@click.group(cls=RegistryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="ADAPTER_REGISTRY_HOME",
    callback=_check_home,
    help="Registry folder (default ~/.adapter-registry).",
)
@click.option(
    "--db", envvar="ADAPTER_REGISTRY_DB", help="SQLAlchemy database URL (default: SQLite in HOME)."
)
@click.option(
    "--artifacts",
    envvar="ADAPTER_REGISTRY_ARTIFACTS",
    help="Artifact store: a folder or an fsspec URL such as s3://bucket/prefix "
    "(default: HOME/artifacts). A team shares one, with one database.",
)
@click.version_option(__version__, prog_name="adapter-registry")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, db: str | None, artifacts: str | None) -> None:
    """Register, train, fuse and share task adapters on frozen encoders.

    \b
    Example:
      adapter-registry init
      adapter-registry train sentiment --data data/books --base ./minilm
      adapter-registry list
    """
    ctx.obj = {"home": home, "db": db, "artifacts": artifacts or None}


# ---------------------------------------------------------------------- set-up
@cli.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the registry (folder, database, schema), or upgrade an existing one.

    \b
    Example:
      ADAPTER_REGISTRY_HOME=./reg adapter-registry init
    """
    from .store import Registry

    registry = Registry.init(ctx.obj["home"], ctx.obj["db"], artifacts=ctx.obj["artifacts"])
    click.echo(
        f"Registry ready at {registry.settings.home} "
        f"(database {registry.settings.redacted_url()}, "
        f"artifacts {registry.settings.artifacts_location}, "
        f"schema {registry.db.current_revision()})."
    )


@cli.group()
def db() -> None:
    """Manage the database schema.

    \b
    Example:
      adapter-registry db current
      adapter-registry db upgrade
    """


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Migrate the schema to the newest revision (take a backup first).

    \b
    Example:
      adapter-registry db upgrade
    """
    from .db import SCHEMA_HEAD, Database
    from .settings import load_settings

    obj = ctx.find_root().obj
    settings = load_settings(obj["home"], obj["db"])
    if settings.sqlite_path is not None and not settings.sqlite_path.exists():
        raise RegistryError(
            f"No registry database at {settings.sqlite_path}.", hint="Run: adapter-registry init"
        )
    database = Database(settings)
    before = database.current_revision()
    database.upgrade()
    click.echo(f"Schema upgraded from {before or 'empty'} to {SCHEMA_HEAD}.")


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def db_current(ctx: click.Context, as_json: bool) -> None:
    """Show the schema revision of the database and the one this code expects.

    \b
    Example:
      adapter-registry db current --json
    """
    from .db import SCHEMA_HEAD, Database
    from .settings import load_settings

    obj = ctx.find_root().obj
    settings = load_settings(obj["home"], obj["db"])
    if settings.sqlite_path is not None and not settings.sqlite_path.exists():
        raise RegistryError(
            f"No registry database at {settings.sqlite_path}.", hint="Run: adapter-registry init"
        )
    current = Database(settings).current_revision()
    state = "up to date" if current == SCHEMA_HEAD else "needs: adapter-registry db upgrade"
    if as_json:
        _echo_json({"current": current, "head": SCHEMA_HEAD, "up_to_date": current == SCHEMA_HEAD})
    else:
        click.echo(f"current {current or 'none'}, head {SCHEMA_HEAD} ({state})")


# ---------------------------------------------------------------------- reading
@cli.command("list")
@click.option("--task", help="Only this task's adapters and fusions.")
@click.option("--kind", type=click.Choice(["adapter", "fusion"]), help="Only adapters or fusions.")
@click.option("--active", is_flag=True, help="Hide deprecated versions.")
@click.option(
    "--limit",
    type=int,
    default=100,
    show_default=True,
    help="Show the newest N adapter versions and N fusions (0 = all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def list_(
    ctx: click.Context, task: str | None, kind: str | None, active: bool, limit: int, as_json: bool
) -> None:
    """List adapter versions and fusions.

    \b
    Example:
      adapter-registry list --task sentiment
      adapter-registry list --limit 0 --json   # everything
      adapter-registry list --json | jq '.[].ref'
    """
    from . import entities as E
    from .views import entity_summary, human_count

    items, all_aliases = _read(
        ctx,
        lambda registry: (
            registry.list_entities(
                task=task, kind=kind, include_deprecated=not active, limit=limit or None
            ),
            registry.aliases(),
        ),
    )
    aliases: dict[tuple[str, int], list[str]] = {}
    for a in all_aliases:
        aliases.setdefault((a.target_kind, a.target_id), []).append(f"{a.task}:{a.alias}")
    if as_json:
        out = []
        for e in items:
            data = entity_summary(e)
            data["aliases"] = aliases.get((e.kind, e.id), [])
            out.append(data)
        _echo_json(out)
        return
    if not items:
        click.echo(
            "No adapters or fusions yet. "
            "Train one: adapter-registry train TASK --data SPEC --base MODEL"
        )
        return
    rows = []
    for e in items:
        what = e.method if e.kind == "adapter" else "fusion of " + ", ".join(e.members)  # type: ignore[union-attr]
        rows.append(
            [
                e.uid,
                e.ref,
                e.task,
                what,
                e.status,
                human_count(e.trainable_params),
                ", ".join(aliases.get((e.kind, e.id), [])),
                E.jsonable(e.created_at),
            ]
        )
    _table(["ID", "REF", "TASK", "WHAT", "STATUS", "PARAMS", "ALIASES", "CREATED"], rows)


def _show_data(registry: Any, ref: str) -> tuple[Any, Any, dict[str, Any]]:
    """Collect everything ``show`` prints about REF (store or fast reader)."""
    entity = registry.resolve(ref)
    data = entity.to_dict()
    data["id"] = entity.uid
    data["ref"] = entity.ref
    base = registry.get_base_model(entity.base_model_id)
    data["base_model"] = base.to_dict()
    if entity.training_run_id is not None:
        data["training_run"] = registry.training_run(entity.training_run_id).to_dict()
    data["metrics"] = [
        {k: m.to_dict()[k] for k in ("name", "value", "split", "dataset_id", "step")}
        for m in registry.metrics(entity)
    ]
    graph = registry.lineage(entity, max_depth=1)
    labels = {n["key"]: n["label"] for n in graph["nodes"]}
    me = f"{entity.kind}:{entity.id}"
    data["parents"] = [
        {"relation": e["relation"], "ref": labels[e["parent"]]}
        for e in graph["edges"]
        if e["child"] == me
    ]
    data["children"] = [
        {"relation": e["relation"], "ref": labels[e["child"]]}
        for e in graph["edges"]
        if e["parent"] == me
    ]
    data["aliases"] = [
        f"{a.task}:{a.alias}"
        for a in registry.aliases()
        if (a.target_kind, a.target_id) == (entity.kind, entity.id)
    ]
    data["hub_links"] = [h.to_dict() for h in registry.hub_links(entity)]
    data["artifact_path"] = registry.artifacts.location(entity.artifact_sha256)
    return entity, base, data


@cli.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show everything recorded about an adapter version or fusion.

    REF is name@version, name (latest active), TASK:ALIAS, or an id (a12, f3).

    \b
    Example:
      adapter-registry show sentiment-books@2
      adapter-registry show sentiment:production --json
    """
    from .views import human_count

    entity, base, data = _read(ctx, lambda registry: _show_data(registry, ref))
    if as_json:
        _echo_json(data)
        return
    click.echo(f"{entity.ref}  ({entity.kind} {entity.uid}, task {entity.task}, {entity.status})")
    click.echo(
        f"  base model    {base.name} @ {base.revision[:12]} "
        f"({base.architecture}, {base.num_layers} layers)"
    )
    if entity.kind == "adapter":
        click.echo(f"  method        {entity.method}  config {entity.config_hash[:12]}")  # type: ignore[union-attr]
    else:
        click.echo(f"  members       {', '.join(entity.members)}")  # type: ignore[union-attr]
    click.echo(f"  parameters    {human_count(entity.trainable_params)} trainable")
    click.echo(f"  artifact      {entity.artifact_sha256[:16]}… ({entity.artifact_size} bytes)")
    click.echo(f"  created       {data['created_at']}")
    if data["aliases"]:
        click.echo(f"  aliases       {', '.join(data['aliases'])}")
    for p in data["parents"]:
        click.echo(f"  parent        {p['relation']}: {p['ref']}")
    for c in data["children"]:
        click.echo(f"  child         {c['relation']}: {c['ref']}")
    run = data.get("training_run")
    if run:
        speed = f", {run['tokens_per_s']:.0f} tokens/s" if run.get("tokens_per_s") else ""
        wall = f"{run['wall_time_s']:.1f}s" if run.get("wall_time_s") is not None else "?"
        click.echo(f"  training      seed {run['seed']}, {wall}{speed}, device {run['device']}")
    for h in data["hub_links"]:
        click.echo(f"  hub           {h['direction']} {h['repo_id']} @ {h['commit_sha'][:12]}")
    if data["metrics"]:
        rows = [
            [
                m["name"],
                m["split"] or "",
                f"{m['value']:.4f}",
                "" if m["step"] is None else str(m["step"]),
            ]
            for m in data["metrics"]
        ]
        _table(["METRIC", "SPLIT", "VALUE", "STEP"], rows)


@cli.command()
@click.argument("ref")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "mermaid", "json"]),
    default="tree",
    show_default=True,
)
@click.pass_context
def lineage(ctx: click.Context, ref: str, fmt: str) -> None:
    """Show where an adapter or fusion came from and what was built from it.

    \b
    Example:
      adapter-registry lineage sentiment:production --format mermaid
    """
    from .views import lineage_mermaid, lineage_tree

    graph = _read(ctx, lambda registry: registry.lineage(registry.resolve(ref)))
    if fmt == "json":
        _echo_json(graph)
    elif fmt == "mermaid":
        click.echo(lineage_mermaid(graph))
    else:
        click.echo(lineage_tree(graph))


# ---------------------------------------------------------------------- changing
@cli.command()
@click.argument("task")
@click.argument("alias")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def alias(ctx: click.Context, task: str, alias: str, ref: str, as_json: bool) -> None:
    """Point TASK:ALIAS (e.g. sentiment:production) at an adapter version or fusion.

    \b
    Example:
      adapter-registry alias sentiment production sentiment-fusion@3
    """
    registry = _registry(ctx)
    result = registry.set_alias(task, alias, ref)
    if as_json:
        _echo_json(result.to_dict())
    else:
        click.echo(f"{result.task}:{result.alias} → {result.target_ref}")


@cli.command()
@click.argument("ref")
@click.option("--undo", is_flag=True, help="Mark it active again.")
@click.pass_context
def deprecate(ctx: click.Context, ref: str, undo: bool) -> None:
    """Mark an adapter version or fusion deprecated (its files and rows stay).

    \b
    Example:
      adapter-registry deprecate sentiment-books@1
    """
    registry = _registry(ctx)
    entity = registry.set_status(ref, "active" if undo else "deprecated")
    click.echo(f"{entity.ref} is now {entity.status}.")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary for monitoring.")
@click.pass_context
def verify(ctx: click.Context, as_json: bool) -> None:
    """Check every artifact against its sha256 and every row against its files.

    Exits 1 when anything is damaged or missing.

    \b
    Example:
      adapter-registry verify --json
    """
    registry = _registry(ctx)
    report = registry.verify()
    if as_json:
        data = report.to_dict()
        data["ok"] = report.ok
        _echo_json(data)
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


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--grace",
    type=float,
    default=3600.0,
    show_default=True,
    help="Keep files younger than this many seconds (a writer may still be registering them).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: float, as_json: bool) -> None:
    """Remove artifact files that no row points at.

    \b
    Example:
      adapter-registry gc --dry-run
      adapter-registry gc --grace 0
    """
    registry = _registry(ctx)
    removed = registry.gc(dry_run=dry_run, grace_seconds=grace)
    if as_json:
        _echo_json({"dry_run": dry_run, "removed": removed})
        return
    verb = "Would remove" if dry_run else "Removed"
    click.echo(f"{verb} {len(removed)} unreferenced item(s).")
    for path in removed:
        click.echo(f"  {path}")


def _register_capabilities() -> None:
    # Each capability keeps its commands in its own module; all stay light to import.
    from . import cli_compose, cli_continual, cli_hub, cli_serve, cli_train

    for module in (cli_train, cli_compose, cli_continual, cli_hub, cli_serve):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_capabilities()


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line (console-script entry point)."""
    cli.main(args=argv, prog_name="adapter-registry")
    raise SystemExit(0)  # pragma: no cover - click exits itself


if __name__ == "__main__":  # pragma: no cover
    main()
