"""``drift``: check new data (``drift TASK --data SPEC``), and read saved reports back.

``drift list`` and ``drift show ID`` read the reports every check records. ``drift TASK …`` stays
the check itself: any first word that is not a subcommand is taken as the task (a task named
``list`` or ``show`` is checked with ``drift check list --data …``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .continual import _drift_rows
from .continual import drift as drift_check
from .options import output_options
from .output import echo_json, open_registry, table


class DriftGroup(click.Group):
    """A group whose unknown first word means ``check``: ``drift TASK --data SPEC`` still works."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["check", *args]
        return super().parse_args(ctx, args)


@click.group("drift", cls=DriftGroup)
def drift() -> None:
    """Check new data for drift, or list and show the saved drift reports.

    \b
    Example:
      adapter-registry drift sentiment --data data/mds_dvd     # the check (exit 0/3)
      adapter-registry drift list --task sentiment
      adapter-registry drift show 7 --out ./drift
    """


drift.add_command(drift_check, "check")


def _report_data(registry: Any, report: Any) -> dict[str, Any]:
    """Return a report as JSON-able data, with its reference, data and what it covers."""
    data: dict[str, Any] = report.to_dict()
    data["task"] = registry.get_task_by_id(report.task_id).name
    ref = report.reference_adapter_version_id
    data["reference"] = registry.get_adapter_version(ref).ref if ref is not None else None
    covers = next(
        (t.get("reference_covers") for t in report.tests if "reference_covers" in t), None
    )
    data["reference_covers"] = covers or ([data["reference"]] if data["reference"] else [])
    ds = registry.get_dataset(report.new_dataset_id) if report.new_dataset_id else None
    data["data"] = {"source": ds.source, "split": ds.split, "rows": ds.row_count} if ds else None
    data["per_test_alpha"] = next(
        (t.get("per_test_alpha") for t in report.tests if "per_test_alpha" in t), report.alpha
    )
    return data


@drift.command("list")
@click.option("--task", help="Only this task's reports.")
@output_options()
@click.pass_context
def drift_list(ctx: click.Context, task: str | None, as_json: bool) -> None:
    """List saved drift reports, oldest first.

    \b
    Example:
      adapter-registry drift list --task sentiment --json
    """
    from ..entities import jsonable

    registry = open_registry(ctx)
    reports = [_report_data(registry, r) for r in registry.drift_reports(task)]
    if as_json:
        echo_json(reports)
        return
    if not reports:
        click.echo("No drift reports yet. Check new data: adapter-registry drift TASK --data SPEC")
        return
    rows = []
    for r in reports:
        flagged = [t["name"] for t in r["tests"] if t["drift"] and t["decisive"]]
        data = r["data"] or {}
        rows.append(
            [
                str(r["id"]),
                r["task"],
                jsonable(r["created_at"]),
                ", ".join(r["reference_covers"]),
                f"{Path(data.get('source', '?')).name} ({data.get('rows', '?')} rows)",
                "DRIFT" if r["drift"] else "no",
                ", ".join(flagged),
            ]
        )
    table(["ID", "TASK", "WHEN", "REFERENCE", "DATA", "DRIFT", "FLAGGED BY"], rows)


@drift.command("show")
@click.argument("report_id", type=int)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("adapter-registry-report"),
    show_default=True,
    help="Folder for the PNG (each statistic against its null distribution).",
)
@output_options()
@click.pass_context
def drift_show(ctx: click.Context, report_id: int, out: Path, as_json: bool) -> None:
    """Show one drift report: tests, statistics, p-values, decision, and a PNG of each
    statistic against its distribution under no drift.

    \b
    Example:
      adapter-registry drift show 7
      adapter-registry drift show 7 --out ./drift --json
    """
    from ..drift_plot import plot_drift_png

    registry = open_registry(ctx)
    data = _report_data(registry, registry.get_drift_report(report_id))
    png = plot_drift_png(
        data["tests"], out / f"drift-{report_id}.png", f"drift report #{report_id} ({data['task']})"
    )
    data["png"] = str(png)
    if as_json:
        echo_json(data)
        return
    src = data["data"] or {}
    click.echo(
        f"Drift report #{report_id} of {data['task']}: {'DRIFT' if data['drift'] else 'no drift'} "
        f"(alpha {data['alpha']}, per test {data['per_test_alpha']:.4g}, Bonferroni)"
    )
    click.echo(f"  reference  {', '.join(data['reference_covers']) or '?'}")
    click.echo(f"  new data   {src.get('source', '?')} ({src.get('split', '?')}, "
               f"{src.get('rows', '?')} rows)")  # fmt: skip
    table(["TEST", "STATISTIC", "P-VALUE", "DRIFT", "DECISIVE"], _drift_rows(data["tests"]))
    click.echo(f"Wrote {png}")


COMMANDS: list[click.Command] = [drift]
