"""Command-line commands for the continual capability (registered on the group in registry.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..configs import FitConfig, FuseConfig, TrainConfig
from ..progress import enabled as progress_enabled
from .options import (
    alpha_option,
    config_from,
    config_options,
    config_values,
    given_fields,
    label_field_option,
    output_options,
    split_fields,
    text_fields_option,
)
from .output import echo_json, open_registry, table

DRIFT_EXIT = 3
#: ``update``'s exit status when the gate kept the current model (the candidate stays registered).
GATE_REFUSED_EXIT = 4
#: The fusion settings ``update`` takes apart from the adapter's (``--fuse-epochs`` ...).
FUSE_OWN = ("epochs", "lr", "init_head")


def _fmt(v: Any, digits: int = 4) -> str:
    return "" if v is None else f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _drift_rows(tests: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for t in tests:
        rows.append(
            [
                t["name"],
                _fmt(t["statistic"]),
                _fmt(t["p_value"]) if t["p_value"] is not None else "—",
                "yes" if t["drift"] else "no",
                "yes" if t["decisive"] else "no",
            ]
        )
    return rows


@click.command("drift")
@click.argument("task")
@click.option("--data", "data", required=True, help="New data: a file, a folder or a Hub name.")
@alpha_option()
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds sampling and tests.")
@click.option("--permutations", type=int, default=500, show_default=True, help="MMD permutations.")
@click.option("--reference", help="Compare with this adapter REF (default: TASK:production).")
@config_options(FitConfig, only=("device",), help_prefix="Embed the new data on: ")
@text_fields_option()
@label_field_option()
@output_options(progress=True)
@click.pass_context
def drift(
    ctx: click.Context,
    task: str,
    data: str,
    alpha: float,
    seed: int,
    permutations: int,
    reference: str | None,
    device: str,
    text_fields: str | None,
    label_field: str,
    as_json: bool,
) -> None:
    """Check new data of TASK for drift against its current adapter's reference profile.

    Records the data snapshot and the report. Exit status: 0 no drift, 3 drift, 1 error.

    \b
    Example:
      adapter-registry drift sentiment --data data/mds_dvd
      adapter-registry drift sentiment --data new.jsonl --alpha 0.01 --json
    """
    from ..continual import check_drift

    registry = open_registry(ctx)
    check = check_drift(
        registry,
        task,
        data,
        alpha=alpha,
        seed=seed,
        n_permutations=permutations,
        reference=reference,
        device=device,
        text_fields=split_fields(text_fields),
        label_field=label_field,
    )
    info = check.to_dict()
    if as_json:
        echo_json(info)
    else:
        click.echo(
            f"Drift check of {task}: {check.rows} {check.split} rows against {check.reference.ref} "
            f"(alpha {alpha}, per test {check.result.per_test_alpha:.4g}, report "
            f"#{info['report_id']})"
        )
        table(["TEST", "STATISTIC", "P-VALUE", "DRIFT", "DECISIVE"], _drift_rows(info["tests"]))
        if check.drift:
            click.echo(f"DRIFT. Next: adapter-registry update {task} --data {data}")
        else:
            click.echo("No drift: the current adapter still fits this data.")
    if check.drift:
        ctx.exit(DRIFT_EXIT)


# long: a click command whose lines are mostly its --help text and the options handed on
@click.command("update")
@click.argument("task")
@click.option("--data", "data", required=True, help="New data: a file, a folder or a Hub name.")
@click.option("--dry-run", is_flag=True, help="Check drift and print the plan; write nothing.")
@alpha_option()
@click.option(
    "--tolerance",
    type=float,
    default=0.01,
    show_default=True,
    help="Largest drop of the gate metric allowed on an earlier validation split.",
)
@click.option(
    "--gate-noise",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Also allow an earlier split to drop by this many standard errors of the current "
    "model's score on its validation rows (sqrt(p(1-p)/n)), when more than --tolerance: "
    "a 100-row split is noisy. 0: --tolerance alone.",
)
@click.option(
    "--gate-metric",
    type=click.Choice(["auto", "accuracy", "macro_f1"]),
    default="auto",
    show_default=True,
    help="What the gate compares; auto: macro_f1 when the new validation classes are "
    "imbalanced (largest/smallest class above 1.5, or a class missing), else accuracy.",
)
@click.option(
    "--members",
    type=click.Choice(["replace", "append"]),
    default="replace",
    show_default=True,
    help="Swap the task's old version out of the fusion, or keep it and add the new one.",
)
@click.option("--name", help="Name of the new adapter (default: a new version of the current one).")
@click.option(
    "--no-replay",
    is_flag=True,
    help="Train the new adapter (and fusion) on the new data only (default: plus about as many "
    "replayed rows of the task's earlier data).",
)
@click.option(
    "--replay-ratio",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="With replay, replayed earlier rows per new row, in all (split evenly over the "
    "task's earlier data; each source gives at most all it has).",
)
@click.option(
    "--select-on",
    type=click.Choice(["task", "new"]),
    default="new",
    show_default=True,
    help="With replay, choose the new adapter's best epoch on the new data's validation rows "
    "(new) or on those plus as many rows of every earlier validation split (task).",
)
@click.option(
    "--warm-start/--no-warm-start",
    default=True,
    show_default=True,
    help="Start the new adapter version from the current version's weights (a new version; "
    "the current one is not changed), or from scratch.",
)
@click.option("--force", is_flag=True, help="Promote even if the gate refuses (reported).")
@config_options(TrainConfig, help_prefix="New adapter: ")
@config_options(FuseConfig, only=FUSE_OWN, prefix="fuse-", help_prefix="Fusion: ")
@text_fields_option()
@label_field_option()
@output_options(progress=True)
@click.pass_context
def update(
    ctx: click.Context,
    /,
    task: str,
    data: str,
    dry_run: bool,
    alpha: float,
    tolerance: float,
    gate_noise: float,
    gate_metric: str,
    members: str,
    name: str | None,
    no_replay: bool,
    replay_ratio: float,
    select_on: str,
    warm_start: bool,
    force: bool,
    text_fields: str | None,
    label_field: str,
    as_json: bool,
    **settings: Any,
) -> None:
    """Run one continual step: drift → new adapter → re-fuse → evaluate → gate → promote.

    By default the new adapter version starts from the current one's weights and trains on
    the new data plus replayed rows of the task's earlier data (on the measured domain stream
    0.823 average accuracy against 0.628 for a fresh adapter: benchmarks/RESULTS.md). Nothing
    registered is changed. Each step commits its own complete record (drift report, adapter
    version, fusion, scores); the promotion (its rows and the alias move) commits at the end,
    all or nothing. So an update that failed or was interrupted leaves no half-promotion, and
    re-running it with the same data reuses the finished steps instead of training again.
    The new adapter starts from the current adapter's recorded recipe (epochs, lr, method,
    ...); options given here override it, and machine settings (--device, --precision,
    --batch-size, --max-tokens) are this machine's. The fusion shares the adapter's settings
    except its own --fuse-* ones; --seed also seeds the drift tests and the replay sample.

    The gate promotes a candidate that beats the current model on the new data's validation
    split and loses at most --tolerance (or --gate-noise standard errors of that split's
    score, if more) on every earlier one, in --gate-metric (reported with the reason it was
    chosen).

    \b
    Exit status:
      0  promoted, or no drift (nothing to do), or --dry-run
      4  the gate refused: the current model stays (the candidate is registered)
      1  error; 2 usage error

    \b
    Example:
      adapter-registry update sentiment --data data/mds_dvd --dry-run
      adapter-registry update sentiment --data data/mds_dvd --members append --fuse-epochs 2
      adapter-registry update sentiment --data data/mds_kitchen --no-warm-start --no-replay
    """
    from ..continual import UpdateOptions, inherited_train_config
    from ..continual import update as run_update

    given = given_fields(ctx, TrainConfig)
    fuse_own = config_values(FuseConfig, settings, only=FUSE_OWN, prefix="fuse_")
    train_config = config_from(TrainConfig, settings)
    registry = open_registry(ctx)
    train_config = inherited_train_config(registry, task, train_config, given)
    options = UpdateOptions(
        dry_run=dry_run,
        alpha=alpha,
        seed=train_config.seed,
        tolerance=tolerance,
        gate_noise=gate_noise,
        gate_metric=gate_metric,
        members=members,
        adapter_name=name,
        replay=not no_replay,
        replay_ratio=replay_ratio,
        select_on=select_on,
        warm_start=warm_start,
        force=force,
        train_config=train_config,
        fuse_config=FuseConfig(**{**train_config.fit_settings(), **fuse_own}),
        progress=progress_enabled(),
        text_fields=split_fields(text_fields),
        label_field=label_field,
    )
    result = run_update(registry, task, data, options, log=None if as_json else click.echo)
    refused = result.candidate is not None and not result.promoted
    if as_json:
        echo_json(result.to_dict())
        if refused:
            ctx.exit(GATE_REFUSED_EXIT)
        return
    if dry_run or not result.drift.drift:
        click.echo("Plan:" if dry_run else "Result:")
        for line in result.plan:
            click.echo(f"  - {line}")
    if result.scores:
        table(
            ["SPLIT", "CANDIDATE", "CURRENT", "NEW DATA"],
            [
                [
                    s.column,
                    _fmt(s.candidate, 3),
                    _fmt(s.incumbent, 3),
                    "yes" if s.new else "",
                ]
                for s in result.scores
            ],
        )
    for note in result.skipped_columns:
        click.echo(f"  not evaluated: {note}")
    if result.reused:
        click.echo(f"Reused from an earlier run: {', '.join(result.reused)}")
    if result.gate_metric:
        click.echo(f"Gate metric: {result.gate_metric} ({result.gate_metric_reason}).")
    if result.promoted and result.candidate is not None:
        click.echo(f"Promoted {result.candidate.ref} to {task}:production ({result.gate}).")
    elif result.candidate is not None:
        click.echo(f"Not promoted: {result.gate}.")
        ctx.exit(GATE_REFUSED_EXIT)
    else:
        click.echo(result.gate[:1].upper() + result.gate[1:] + ".")


@click.command("report")
@click.option("--task", help="Only this task.")
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("adapter-registry-report"),
    show_default=True,
    help="Folder for the PNG heatmaps.",
)
@output_options()
@click.pass_context
def report(ctx: click.Context, task: str | None, out: Path, as_json: bool) -> None:
    """Show each task's accuracy matrix, forgetting, BWT and lineage; write PNG heatmaps.

    Rows are the task's production models in promotion order, columns its validation splits;
    each step says the metric its gate compared. Candidates the gate refused since the last
    promotion are drawn under the matrix (a red line in the PNG) and not counted in its averages.

    \b
    Example:
      adapter-registry report --task sentiment --out ./report
    """
    from ..continual import build_report
    from ..plots import plot_matrix_png

    registry = open_registry(ctx)
    reports = build_report(registry, task)
    pngs: dict[str, str] = {}
    for name, rep in reports.items():
        if rep.matrix is not None:
            refused = [(f"{r['step']}: {r['ref']}", r["values"]) for r in rep.refused]
            path = plot_matrix_png(
                rep.matrix, out / f"{name}-accuracy.png", f"{name}: accuracy", refused
            )
            pngs[name] = str(path)
    if as_json:
        echo_json([{**r.to_dict(), "png": pngs.get(n)} for n, r in reports.items()])
        return
    if not reports:
        click.echo("No tasks yet. Train one: adapter-registry train TASK --data SPEC --base MODEL")
    for name, rep in reports.items():
        click.echo(f"## {name} (production: {rep.production or 'none'})\n")
        if rep.matrix is not None:
            click.echo(rep.matrix.to_markdown())
        for g in rep.gates:
            how = f"gate on {g['gate_metric']}: {g['gate']}" if g["gate_metric"] else "not gated"
            click.echo(f"- step {g['step']}: {g['ref']} ({how})")
        if rep.refused:
            click.echo("\n" + rep.refused_markdown())
        for note in rep.notes:
            click.echo(f"Note: {note}")
        if rep.mermaid:
            click.echo("\n```mermaid\n" + rep.mermaid + "\n```\n")
    if pngs:
        click.echo(f"Wrote {len(pngs)} heatmap(s) to {out}: " + ", ".join(pngs.values()))


#: ``drift`` is registered through :mod:`.drift_reports`, the group that also lists reports.
COMMANDS: list[click.Command] = [update, report]
