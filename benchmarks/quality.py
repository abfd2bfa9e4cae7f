"""The learning-quality suite of issue 14 as one command: CB, both task orders, the domain streams.

Each part is a quality benchmark at the sizes its results file states (``benchmarks/PROTOCOL.md``,
"Budget"). Three ways to use it::

    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.quality --plan    # what would run, and the
                                                                      # time its results recorded
    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.quality           # run it all, in order
    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.quality --quick   # every part's smoke run

``--plan`` reads the per-run wall times each part's results file recorded (streams: every run
of a default method and seed that was trained for that file, not a variant and not borrowed
from another order; CB: the run's total) and adds them up against the issue's two-hour budget.
Those runs were made apart, often two or more at a time on the 2 cores, so their sum is the
suite's compute as it was spent, not a measurement of one run. A full run (no ``--plan``)
times each part and writes ``results/quality_suite.md`` (``--quick``: under ``results/quick/``),
with the machine, the commands and the wall time of each part and of the whole, against the
budget.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import RESULTS, machine_record

#: the issue's budget for the whole suite on the project's 2-core CPU machine
BUDGET_MIN = 120.0

_DOMAIN = ["--stream", "domain", "--epochs", "3", "--patience", "1", "--adapter-lr", "2e-3"]
_TASK = ["--stream", "task", "--train-rows", "300", "--dev-rows", "100", "--report-rows", "500",
         "--epochs", "4", "--patience", "1"]  # fmt: skip
_SIZES = ["--train-rows", "300", "--dev-rows", "100", "--report-rows", "500"]


@dataclass(frozen=True)
class Part:
    """One benchmark of the suite: its module, its arguments and its results file's stem."""

    name: str
    module: str
    argv: tuple[str, ...]
    stem: str


SUITE: tuple[Part, ...] = (
    Part("CB: fusion of sources + CB", "cb_quality", (), "cb_quality"),
    Part("task order 1", "streams", (*_TASK, "--order", "1"), "streams_task_order1"),
    Part(
        "task order 2",
        "streams",
        (*_TASK, "--order", "2", "--borrow-order", "1"),
        "streams_task_order2",
    ),
    Part(
        "domain: sst2 → kitchen → mr → electronics",
        "streams",
        (*_DOMAIN, *_SIZES, "--domains", "sst2,mds_kitchen,mr,mds_electronics"),
        "streams_domain_sst2-mds_kitchen-mr-mds_electronics",
    ),
    Part(
        "domain: imdb → books → sst2 → cr",
        "streams",
        (*_DOMAIN, *_SIZES, "--domains", "imdb,mds_books,sst2,cr"),
        "streams_domain_imdb-mds_books-sst2-cr",
    ),
    Part(
        "domain: qnli → rte",
        "streams",
        (
            *_DOMAIN,
            "--domains",
            "qnli,rte",
            "--train-rows",
            "2000",
            "--dev-rows",
            "200",
            "--report-rows",
            "500",
        ),
        "streams_domain_qnli-rte",
    ),  # fmt: skip
)


def recorded_minutes(part: Part, results: Path = RESULTS) -> tuple[float | None, str]:
    """Return the minutes ``part``'s results file recorded for its runs, and what they cover."""
    path = results / f"{part.stem}.json"
    if not path.exists():
        return None, f"no {path.name}"
    data = json.loads(path.read_text(encoding="utf-8"))
    if part.module == "cb_quality":
        return float(data["total_s"]) / 60, "the run's total (sources and every seed)"
    from benchmarks.streams import METHODS, ORDER_FREE

    borrowed: tuple[str, ...] = ()
    if str(data.get("args", {}).get("borrow_order", "None")) != "None":
        borrowed = ORDER_FREE
    # what the part runs: the default methods (and a task stream's single-task adapters), not
    # the variants a results file may also hold
    ran = (*METHODS, "registry-notransfer")
    runs = [r for r in data["runs"] if r["method"] in ran and r["method"] not in borrowed]
    methods = sorted({r["method"] for r in runs})
    note = f"{len(runs)} runs ({', '.join(methods)})"
    if borrowed:
        note += f"; {', '.join(borrowed)} borrowed from order 1, not counted again"
    return sum(float(r["wall_s"]) for r in runs) / 60, note


def plan(results: Path = RESULTS) -> str:
    """Return the suite's commands and the minutes their results files recorded, in markdown."""
    lines = [
        "| part | command | recorded minutes | what they cover |",
        "|---|---|---:|---|",
    ]
    total = 0.0
    for part in SUITE:
        minutes, note = recorded_minutes(part, results)
        total += minutes or 0.0
        shown = "n/a" if minutes is None else f"{minutes:.1f}"
        cmd = " ".join(["python -m", f"benchmarks.{part.module}", *part.argv])
        lines.append(f"| {part.name} | `{cmd}` | {shown} | {note} |")
    lines += [
        "",
        f"Recorded in all: {total:.0f} minutes ({total / 60:.1f} h) against the budget of "
        f"{BUDGET_MIN:.0f}: {'within' if total <= BUDGET_MIN else 'over'} it. The runs were "
        "made apart, most of them two or more at a time on 2 cores, so this is the compute the "
        "suite took as it was spent, not one timed run.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--plan", action="store_true", help="print the parts and recorded times")
    p.add_argument("--quick", action="store_true", help="every part's smoke run")
    p.add_argument("--only", default="", help="comma-separated part numbers (1-based)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", type=Path, default=None)
    p.add_argument("--base", default=None, help="a local model folder (default: MiniLM-L6)")
    p.add_argument("--out-dir", type=Path, default=None)
    return p.parse_args(argv)


def part_argv(part: Part, args: argparse.Namespace, out_dir: Path) -> list[str]:
    """The arguments ``part`` runs with here."""
    argv = [*part.argv, "--threads", str(args.threads)]
    if args.quick:
        argv.append("--quick")
    if args.data_root is not None:
        argv += ["--data-root", str(args.data_root)]
    if args.base is not None:
        argv += ["--base", args.base]
    if part.module == "cb_quality":
        argv += ["--out", str(out_dir / "cb_quality.md")]
    else:
        argv += ["--out-dir", str(out_dir)]
    return argv


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    """Print the plan, or run the suite and write its timing report; return (part, minutes)."""
    args = parse_args(argv)
    if args.plan:
        print(plan())
        return []
    import importlib

    out_dir = args.out_dir or (RESULTS / "quick" if args.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    chosen = {int(i) for i in args.only.split(",") if i.strip()}
    parts = [p for i, p in enumerate(SUITE, 1) if not chosen or i in chosen]
    timed: list[tuple[str, float]] = []
    lines: list[str] = []
    started = time.perf_counter()
    for part in parts:
        pargv = part_argv(part, args, out_dir)
        t0 = time.perf_counter()
        importlib.import_module(f"benchmarks.{part.module}").main(pargv)
        timed.append((part.name, (time.perf_counter() - t0) / 60))
        lines.append(
            f"| {part.name} | `python -m benchmarks.{part.module} {' '.join(pargv)}` | "
            f"{timed[-1][1]:.1f} |"
        )
    total = (time.perf_counter() - started) / 60
    what = "smoke run (--quick)" if args.quick else "full run at the stated sizes"
    verdict = "within" if total <= BUDGET_MIN else "over"
    report = "\n".join(
        [
            f"# Quality suite: {what}",
            "",
            machine_record(args.threads),
            "",
            "| part | command | wall minutes |",
            "|---|---|---:|",
            *lines,
            "",
            f"Whole suite: {total:.1f} minutes, {verdict} the budget of {BUDGET_MIN:.0f} "
            f"({len(parts)} of {len(SUITE)} parts). Nothing else should run beside it.",
            "",
        ]
    )
    (out_dir / "quality_suite.md").write_text(report, encoding="utf-8")
    print(report)
    return timed


if __name__ == "__main__":
    main()
