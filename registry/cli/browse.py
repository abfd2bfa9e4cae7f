"""Reading the registry: ``list``, ``show``, ``lineage`` (on the fast reader when it can)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from .options import output_options
from .output import echo_json, open_registry, read, table

if TYPE_CHECKING:
    from .. import entities as E
    from ..store import RegistryReader


# ---------------------------------------------------------------------- reading
@click.command("list")
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
@click.option("--tag", "tags", multiple=True, help="Only versions with this tag (repeatable).")
@click.option(
    "--where",
    multiple=True,
    help="Only versions whose metric satisfies KEY OP NUMBER, e.g. 'accuracy>0.8' (repeatable).",
)
@click.option("--sort", help="Order by a metric KEY, highest first (unmeasured last).")
@output_options()
@click.pass_context
def list_(
    ctx: click.Context,
    task: str | None,
    kind: str | None,
    active: bool,
    limit: int,
    tags: tuple[str, ...],
    where: tuple[str, ...],
    sort: str | None,
    as_json: bool,
) -> None:
    """List adapter versions and fusions.

    A metric KEY (--where, --sort) is METRIC (the latest evaluation on any split, e.g.
    accuracy, macro_f1), SPLIT:METRIC (test:accuracy), or DATA:SPLIT:METRIC where DATA is the
    data folder's or file's name, or dID (mds_books:validation:macro_f1). Per-epoch training
    curves do not count. OP is one of >, >=, <, <=, ==, !=.

    \b
    Example:
      adapter-registry list --task sentiment
      adapter-registry list --tag baseline --where 'accuracy>0.8' --sort macro_f1
      adapter-registry list --where 'mds_books:validation:accuracy>=0.75' --json
      adapter-registry list --limit 0 --json   # everything
      adapter-registry list --json | jq '.[].ref'
    """
    from .. import entities as E
    from ..views import entity_summary, human_count

    if tags or where or sort:
        items, all_aliases, tagged = _selected(ctx, task, kind, active, limit, tags, where, sort)
    else:
        tagged = None
        items, all_aliases = read(
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
            if tagged is not None:
                data["tags"] = tagged.get((e.kind, e.id), [])
            out.append(data)
        echo_json(out)
        return
    if not items and tagged is not None:
        click.echo("No version matches. Run: adapter-registry list (without filters)")
        return
    if not items:
        click.echo(
            "No adapters or fusions yet. "
            "Train one: adapter-registry train TASK --data SPEC --base MODEL"
        )
        return
    rows = []
    for e in items:
        what = e.method if e.kind == "adapter" else "fusion of " + ", ".join(e.members)
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
    table(["ID", "REF", "TASK", "WHAT", "STATUS", "PARAMS", "ALIASES", "CREATED"], rows)


def _selected(
    ctx: click.Context,
    task: str | None,
    kind: str | None,
    active: bool,
    limit: int,
    tags: tuple[str, ...],
    where: tuple[str, ...],
    sort: str | None,
) -> tuple[list[E.Entity], list[E.Alias], dict[tuple[str, int], list[str]]]:
    """Return the versions ``list --tag/--where/--sort`` keeps (on the full store)."""
    from ..selection import Condition, MetricKey, select_entities
    from ..store.metadata import check_tags

    if tags:
        check_tags(tags)  # refuse bad filters before reading anything
    for w in where:
        Condition.parse(w)
    if sort:
        MetricKey.parse(sort)
    registry = open_registry(ctx)
    every = registry.list_entities(task=task, kind=kind, include_deprecated=not active)
    tagged = registry.tags_of(every)
    metrics = registry.metrics_of(every) if where or sort else {}
    kept = select_entities(every, metrics, tagged, tag=tags, where=where, sort=sort)
    if limit:  # the best N by --sort, else the newest N
        kept = kept[:limit] if sort else kept[-limit:]
    return kept, registry.aliases(), tagged


def _show_data(registry: RegistryReader, ref: str) -> tuple[E.Entity, E.BaseModel, dict[str, Any]]:
    """Collect everything ``show`` prints about REF (store or fast reader)."""
    entity = registry.resolve(ref)
    data = entity.to_dict()
    data["id"] = entity.uid
    data["ref"] = entity.ref
    base = registry.get_base_model(entity.base_model_id)
    data["base_model"] = base.to_dict()
    if entity.training_run_id is not None:
        data["training_run"] = registry.training_run(entity.training_run_id).to_dict()
    metrics = registry.metrics(entity)
    sources = {
        i: registry.get_dataset(i).source
        for i in dict.fromkeys(m.dataset_id for m in metrics)
        if i is not None
    }
    data["metrics"] = [
        {
            **{k: m.to_dict()[k] for k in ("name", "value", "split", "dataset_id", "step")},
            "dataset": sources.get(m.dataset_id) if m.dataset_id is not None else None,
        }
        for m in metrics
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
    data["description"] = registry.description(entity)
    data["tags"] = registry.tags(entity)
    data["hub_links"] = [h.to_dict() for h in registry.hub_links(entity)]
    promotion = registry.promotion_of(entity)
    data["promotion"] = None if promotion is None else promotion.to_dict()
    data["artifact_path"] = registry.artifacts.location(entity.artifact_sha256)
    return entity, base, data


@click.command()
@click.argument("ref")
@output_options()
@click.pass_context
def show(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Show everything recorded about an adapter version or fusion.

    REF is name@version, name (latest active), TASK:ALIAS, or an id (a12, f3).

    \b
    Example:
      adapter-registry show sentiment-books@2
      adapter-registry show sentiment:production --json
    """
    from ..views import human_count

    entity, base, data = read(ctx, lambda registry: _show_data(registry, ref))
    if as_json:
        echo_json(data)
        return
    click.echo(f"{entity.ref}  ({entity.kind} {entity.uid}, task {entity.task}, {entity.status})")
    if data["description"]:
        click.echo("  description   " + data["description"].replace("\n", "\n" + " " * 16))
    if data["tags"]:
        click.echo(f"  tags          {', '.join(data['tags'])}")
    click.echo(
        f"  base model    {base.name} @ {base.revision[:12]} "
        f"({base.architecture}, {base.num_layers} layers)"
    )
    if entity.kind == "adapter":
        click.echo(f"  method        {entity.method}  config {entity.config_hash[:12]}")
    else:
        click.echo(f"  members       {', '.join(entity.members)}")
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
    if data["promotion"]:
        click.echo(f"  {_gate_line(data['promotion'])}")
    _show_metrics(data["metrics"])


def _gate_line(p: dict[str, Any]) -> str:
    """Return what ``update`` decided about this model: promoted (on which gate metric) or
    refused by the gate."""
    gate = f"gate on {p['gate_metric']}: {p['gate_reason']}" if p["gate_metric"] else "not gated"
    if p["outcome"] == "promoted":
        return f"promoted      step {p['step']} to {p['alias']} ({gate})"
    return f"refused       at step {p['step']} for {p['alias']} ({gate})"


def _show_metrics(metrics: list[dict[str, Any]]) -> None:
    """One table per dataset and split (its latest value of each metric), then the training
    curve in one line per metric (first → best → last epoch), never a per-epoch dump."""
    groups: dict[tuple[str, str], dict[str, float]] = {}
    curves: dict[str, list[tuple[int, float]]] = {}
    for m in metrics:
        if m["step"] is not None:
            curves.setdefault(m["name"], []).append((int(m["step"]), float(m["value"])))
            continue
        key = (m["dataset"] or "(no dataset)", m["split"] or "")
        groups.setdefault(key, {})[m["name"]] = float(m["value"])  # later rows win
    for (source, split), values in groups.items():
        click.echo(f"\n  metrics on {source} [{split}]")
        table(["METRIC", "VALUE"], [[k, f"{v:.4f}"] for k, v in values.items()])
    if curves:
        click.echo("\n  training curve (per epoch)")
        table(
            ["METRIC", "EPOCHS", "FIRST", "LAST", "MIN", "MAX"],
            [
                [name, str(len(points)), f"{points[0][1]:.4f}", f"{points[-1][1]:.4f}",
                 f"{min(v for _, v in points):.4f}", f"{max(v for _, v in points):.4f}"]
                for name, points in ((n, sorted(p)) for n, p in curves.items())
            ],
        )  # fmt: skip


@click.command()
@click.argument("ref")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tree", "mermaid", "json"]),
    default="tree",
    show_default=True,
    help="tree or mermaid (json: the same as --json).",
)
@output_options()
@click.pass_context
def lineage(ctx: click.Context, ref: str, fmt: str, as_json: bool) -> None:
    """Show where an adapter or fusion came from and what was built from it.

    \b
    Example:
      adapter-registry lineage sentiment:production --format mermaid
      adapter-registry lineage sentiment:production --json
    """
    from ..views import lineage_mermaid, lineage_tree

    graph = read(ctx, lambda registry: registry.lineage(registry.resolve(ref)))
    if as_json or fmt == "json":
        echo_json(graph)
    elif fmt == "mermaid":
        click.echo(lineage_mermaid(graph))
    else:
        click.echo(lineage_tree(graph))


COMMANDS: list[click.Command] = [list_, show, lineage]
