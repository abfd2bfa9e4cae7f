"""Command-line commands for the compose capability (registered on the group in registry.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..configs import FuseConfig
from ..progress import enabled as progress_enabled
from .options import (
    config_from,
    config_options,
    label_field_option,
    machine_options,
    output_options,
    text_fields_option,
    use_machine,
)
from .output import echo_json, open_registry, table

if TYPE_CHECKING:
    from ..composer import FuseOutcome

COMMANDS: list[click.Command] = []


def _split_list(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@click.command()
@click.argument("task")
@click.option("--adapters", "adapter_refs", required=True, help="Member REFs, comma-separated.")
@click.option("--data", "data", required=True, help="Data SPEC: file, folder or Hub dataset.")
@click.option("--name", help="Fusion name (default: TASK-fusion).")
@click.option("--static", is_flag=True, help="Static fusion (no value matrix) instead of dynamic.")
@config_options(FuseConfig, exclude=("dynamic",))
@click.option("--allow-deprecated", is_flag=True, help="Accept deprecated member versions.")
@text_fields_option()
@label_field_option()
@output_options(progress=True)
@click.pass_context
def fuse(
    ctx: click.Context,
    /,
    task: str,
    adapter_refs: str,
    data: str,
    name: str | None,
    static: bool,
    allow_deprecated: bool,
    text_fields: str | None,
    label_field: str,
    as_json: bool,
    **settings: Any,
) -> None:
    """Train only a new fusion layer (+ head) over frozen adapter versions and register it.

    Members stay untouched: their artifacts are re-hashed after training. Under torchrun it
    trains data-parallel on every rank and rank 0 alone registers.

    \b
    Example:
      adapter-registry fuse cb --adapters mnli@1,qqp@1,qnli@1,cb@1 --data data/cb
      adapter-registry fuse cb --adapters mnli,qqp --data data/cb --static --json
    """
    from ..composer import fuse as run_fuse
    from ..distributed import is_main
    from ..distributed import open_registry as open_for_rank

    config = config_from(FuseConfig, settings, dynamic=not static)
    registry = open_for_rank(lambda _create: open_registry(ctx), config.device)
    fields = tuple(_split_list(text_fields)) or None
    outcome = run_fuse(
        registry,
        task,
        _split_list(adapter_refs),
        data,
        name=name,
        config=config,
        allow_deprecated=allow_deprecated,
        text_fields=fields,
        label_field=label_field,
        progress=progress_enabled(),
    )
    if not is_main():
        return  # under torchrun rank 0 reports
    fusion = outcome.fusion
    if as_json:
        echo_json(
            {
                "id": fusion.uid,
                "ref": fusion.ref,
                "task": fusion.task,
                "members": fusion.members,
                "metrics": outcome.metrics,
                "best_epoch": outcome.fit.best_epoch,
                "wall_time_s": outcome.fit.wall_time_s,
                "trainable_params": fusion.trainable_params,
                "members_verified": outcome.members_verified,
                "earlier_artifacts_verified": outcome.earlier_artifacts_verified,
            }
        )
        return
    _print_outcome(outcome)


def _print_outcome(outcome: FuseOutcome) -> None:
    from ..views import human_count

    fusion = outcome.fusion
    click.echo(
        f"Registered fusion {fusion.ref} ({fusion.uid}) for task {fusion.task} over "
        f"{', '.join(fusion.members)}: {human_count(fusion.trainable_params)} trainable "
        f"parameters, best epoch {outcome.fit.best_epoch}, {outcome.fit.wall_time_s:.1f}s."
    )
    rows = [
        [split, f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}"]
        for split, m in outcome.metrics.items()
    ]
    table(["SPLIT", "ACCURACY", "MACRO-F1"], rows)
    click.echo(
        f"Verified unchanged: {outcome.members_verified} member artifact(s), "
        f"{outcome.earlier_artifacts_verified} earlier artifact(s) in all (sha256)."
    )


@click.command()
@click.argument("ref")
@click.option("--data", "data", required=True, help="Data SPEC to run the fusion on.")
@click.option("--split", default="validation", show_default=True, help="Which split to use.")
@click.option("--max-examples", type=int, default=256, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the PNG heatmap.",
)
@machine_options()
@output_options(progress=True)
@click.pass_context
def attention(
    ctx: click.Context,
    ref: str,
    data: str,
    split: str,
    max_examples: int,
    out: Path,
    device: str,
    threads: int | None,
    as_json: bool,
) -> None:
    """Show how much a fusion attends to each member adapter, per layer, and plot it.

    Prints the mean attention per layer × member over real tokens and writes a PNG heatmap.

    \b
    Example:
      adapter-registry attention cb-fusion@1 --data data/cb --out reports/
    """
    from ..composer import fusion_attention
    from ..plots import plot_attention_png

    device = use_machine(device, threads)
    registry = open_registry(ctx)
    fusion = registry.resolve(ref)
    weights, members = fusion_attention(
        registry, ref, data, split=split, max_examples=max_examples, device=device
    )
    png = out / f"attention-{fusion.name}-v{fusion.version}.png"
    plot_attention_png(weights, members, png, f"{fusion.ref}: fusion attention ({split})")
    if as_json:
        echo_json(
            {
                "ref": fusion.ref,
                "members": members,
                "split": split,
                "attention": [[float(v) for v in row] for row in weights],
                "png": str(png),
            }
        )
        return
    rows = [[str(i)] + [f"{float(v):.3f}" for v in row] for i, row in enumerate(weights)]
    table(["LAYER", *members], rows, title=f"{fusion.ref}: mean attention per member")
    click.echo(f"Wrote heatmap to {png}")


COMMANDS.extend([fuse, attention])
