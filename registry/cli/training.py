"""Commands that train, evaluate and predict with task adapters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ..configs import TrainConfig
from ..progress import enabled as progress_enabled
from .options import (
    config_from,
    config_options,
    label_field_option,
    machine_options,
    output_options,
    split_fields,
    text_fields_option,
    use_machine,
)
from .output import echo_json, open_registry, table


def _metrics_rows(metrics: dict[str, dict[str, float]]) -> list[list[str]]:
    rows = []
    for split, values in metrics.items():
        rows.append([split, f"{values['accuracy']:.4f}", f"{values['macro_f1']:.4f}"])
    return rows


@click.command()
@click.argument("task")
@click.option(
    "--data",
    "data",
    required=True,
    help="Data SPEC: a jsonl/csv/parquet file, a folder "
    "with train/validation/test files, or a Hub dataset name (super_glue/cb).",
)
@click.option("--base", required=True, help="Base model: a local folder or a Hub model name.")
@click.option(
    "--base-hub-id",
    help="Hub id (OWNER/NAME[@COMMIT]) of which a local --base folder is a copy; named as "
    "base_model in pushed model cards.",
)
@click.option("--name", help="Adapter name (default: the task name).")
@config_options(TrainConfig)
@click.option("--init-from", help="REF of an adapter whose weights start this training.")
@click.option(
    "--after-drift", type=int, help="Id of the drift report that triggered this training."
)
@click.option(
    "--transfer/--no-transfer",
    default=True,
    show_default=True,
    help="For a task's first adapter (no --init-from): start from the production adapter of "
    "the most recently promoted task with exactly the same labels on this base, and train on "
    "the new rows plus about as many of that task's recorded train rows (validation: the new "
    "data's only).",
)
@text_fields_option()
@label_field_option()
@output_options(progress=True)
@click.pass_context
def train(
    ctx: click.Context,
    /,
    task: str,
    data: str,
    base: str,
    base_hub_id: str | None,
    name: str | None,
    init_from: str | None,
    after_drift: int | None,
    transfer: bool,
    text_fields: str | None,
    label_field: str,
    as_json: bool,
    **settings: Any,
) -> None:
    """Train a NEW adapter version for TASK on a frozen base model and register it.

    Earlier adapters are never changed: their sha256 is re-checked after training. Under
    torchrun it trains data-parallel on every rank and rank 0 alone registers. A task's first
    adapter transfers from a related task with the same labels unless --no-transfer (it says
    so: "transfer: starting from ...").

    \b
    Example:
      adapter-registry train sentiment --data ../shared/data/mds_books \\
          --base ./minilm --name books --epochs 3
      adapter-registry train sentiment --data ../shared/data/mds_books \\
          --base ./minilm --base-hub-id sentence-transformers/all-MiniLM-L6-v2
      adapter-registry train amazon5 --data ../shared/data/amazon5 --base ./minilm --no-transfer
      torchrun --nproc-per-node 4 -m registry train sentiment --data ../shared/data/mds_books \\
          --base ./minilm --device cuda
    """
    from ..distributed import is_main
    from ..distributed import open_registry as open_for_rank
    from ..trainer import train as run_train

    config = config_from(TrainConfig, settings)
    registry = open_for_rank(lambda create: open_registry(ctx, create=create), config.device)
    outcome = run_train(
        registry,
        task,
        data,
        base,
        name=name,
        config=config,
        init_from=init_from,
        after_drift=after_drift,
        text_fields=split_fields(text_fields),
        label_field=label_field,
        progress=progress_enabled(),
        base_hub_id=base_hub_id,
        transfer=transfer,
        log=None if as_json else click.echo,
    )
    if not is_main():
        return  # under torchrun rank 0 reports
    v = outcome.version
    if as_json:
        echo_json(
            {
                "ref": v.ref,
                "id": v.uid,
                "task": v.task,
                "metrics": outcome.metrics,
                "best_epoch": outcome.fit.best_epoch,
                "tokens_per_s": outcome.fit.tokens_per_s,
                "wall_time_s": outcome.fit.wall_time_s,
                "earlier_artifacts_verified": outcome.earlier_artifacts_verified,
                "transfer": outcome.transfer.to_dict() if outcome.transfer else None,
            }
        )
        return
    click.echo(
        f"Registered {v.ref} ({v.uid}) for task {v.task}: best epoch {outcome.fit.best_epoch}, "
        f"{outcome.fit.tokens_per_s:.0f} tokens/s, {outcome.fit.wall_time_s:.1f}s."
    )
    click.echo(f"Earlier artifacts re-verified unchanged: {outcome.earlier_artifacts_verified}.")
    table(["SPLIT", "ACCURACY", "MACRO-F1"], _metrics_rows(outcome.metrics))


@click.command("eval")
@click.argument("ref")
@click.option("--data", "data", required=True, help="Data SPEC with a labelled split.")
@click.option("--split", default="validation", show_default=True, help="Which split to score.")
@text_fields_option()
@label_field_option()
@click.option("--no-record", is_flag=True, help="Do not store the metrics in the registry.")
@machine_options()
@output_options(progress=True)
@click.pass_context
def eval_(
    ctx: click.Context,
    ref: str,
    data: str,
    split: str,
    text_fields: str | None,
    label_field: str,
    no_record: bool,
    device: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Evaluate an adapter version or fusion on a labelled split and record the metrics.

    \b
    Example:
      adapter-registry eval sentiment:production --data ../shared/data/mds_dvd --split test
    """
    from ..inference import evaluate_entity

    device = use_machine(device, threads)
    registry = open_registry(ctx)
    entity = registry.resolve(ref)
    metrics = evaluate_entity(
        registry,
        ref,
        data,
        split=split,
        record=not no_record,
        text_fields=split_fields(text_fields),
        label_field=label_field,
        device=device,
    )
    if as_json:
        echo_json({"ref": entity.ref, "split": split, "metrics": metrics})
        return
    click.echo(f"{entity.ref} on {data} [{split}]")
    table(["METRIC", "VALUE"], [[k, f"{v:.4f}"] for k, v in metrics.items()])


@click.command()
@click.argument("ref")
@click.option("--text", help="The text to classify.")
@click.option("--text-b", help="The second text of a pair task.")
@click.option("--data", "data", help="Data SPEC: predict every row of a split.")
@click.option(
    "--split",
    help="Which split of --data (default: test, else validation, else the data's only split).",
)
@text_fields_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write predictions as jsonl here (default: stdout).",
)
@machine_options()
@output_options(progress=True)
@click.pass_context
def predict(
    ctx: click.Context,
    ref: str,
    text: str | None,
    text_b: str | None,
    data: str | None,
    split: str | None,
    text_fields: str | None,
    out: Path | None,
    device: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Predict labels with an adapter version or fusion (one text, a pair, or a file).

    \b
    Example:
      adapter-registry predict sentiment:production --text "Great blender, works well"
      adapter-registry predict nli@2 --text "A man sleeps." --text-b "Nobody sleeps."
      adapter-registry predict sentiment@3 --data reviews.jsonl --out preds.jsonl
    """
    from ..errors import InvalidInput
    from ..inference import predict as run_predict

    if (text is None) == (data is None):
        raise click.UsageError("Give exactly one of --text or --data.")
    if text_b is not None and text is None:
        raise click.UsageError("--text-b goes with --text.")
    device = use_machine(device, threads)
    registry = open_registry(ctx)
    if text is not None:
        preds = run_predict(registry, ref, texts=[(text, text_b)], device=device)
        if as_json:
            echo_json(preds[0])
        else:
            best = preds[0]
            click.echo(f"{best['label']}\t{best['scores'][best['label']]:.4f}")
        return
    preds = run_predict(
        registry, ref, data=data, split=split, text_fields=split_fields(text_fields), device=device
    )
    lines = "".join(json.dumps(p) + "\n" for p in preds)
    if out is None:
        click.echo(lines, nl=False)
        return
    if out.exists():
        raise InvalidInput(f"{out} already exists; not overwriting it.", hint="Pick another --out.")
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(lines, encoding="utf-8")
    tmp.replace(out)
    click.echo(f"Wrote {len(preds)} predictions to {out}.", err=True)


COMMANDS: list[click.Command] = [train, eval_, predict]
