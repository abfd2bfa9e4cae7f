"""Frozen-prefix cache: epoch times with the lowest k of 6 layers frozen and cached (AdapterDrop).

For k = 0, 3, 5 (adapters left out of layers 0..k-1 of MiniLM-L6), trains a seq_bn adapter + head
on a real task through :func:`registry.trainer.fit` with :class:`registry.prefix_cache.PrefixCache`
(exactly what ``adapter-registry train --leave-out 0,..,k-1 --cache-prefix`` uses), and, as the
like-for-like reference, the same k without replay (``PrefixCache(replay=False)``: same eval-mode
prefix, full forward every step). That separates what caching saves from what AdapterDrop alone
saves (no backward below layer k). Each run is its own process; configurations are interleaved
over rounds; medians and ratios are reported. Also checks on the real encoder that the cached path
gives the full forward's logits. Usage::

    python -m benchmarks.prefix_cache [--rows 600] [--epochs 3] [--rounds 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA_ROOT, RESULTS, machine_record, median, minilm_path

LAYERS = 6
CONFIGS: dict[str, dict[str, Any]] = {
    "k=0": {"k": 0, "replay": False},
    "k=3 no cache": {"k": 3, "replay": False},
    "k=3 cache": {"k": 3, "replay": True},
    "k=5 no cache": {"k": 5, "replay": False},
    "k=5 cache": {"k": 5, "replay": True},
}


def _rows(args: argparse.Namespace) -> tuple[list[Any], list[Any], list[str]]:
    from registry.data import load_spec

    bundle = load_spec(str(Path(args.data_root) / args.dataset))
    train = list(bundle.split("train"))
    random.Random(0).shuffle(train)
    val = list(bundle.split("validation"))[: args.val_rows]
    labels = sorted({str(r.label) for r in train})
    return train[: args.rows], val, labels


def worker(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one configuration; return per-epoch times, accuracies and cache stats."""
    import torch

    from registry.backbone import Backbone
    from registry.data import fingerprint, make_batches
    from registry.prefix_cache import PrefixCache
    from registry.trainer import TrainConfig, fit, seed_everything

    torch.set_num_threads(args.threads)
    cfg = CONFIGS[name]
    k = int(cfg["k"])
    train_rows, val_rows, labels = _rows(args)
    seed_everything(0)
    bb = Backbone.load(str(minilm_path()))
    bb.add_adapter("a", "seq_bn", 16, list(range(k)))
    bb.add_head("a", labels)
    bb.train_adapter("a")
    seed_everything(0)
    kw = {"batch_size": args.batch_size, "max_length": args.max_length, "seed": 0}
    batches, stats = make_batches(bb.tokenizer, train_rows, labels, shuffle=True, **kw)
    val, _ = make_batches(bb.tokenizer, val_rows, labels, shuffle=False, **kw)
    cache = None
    if k > 0:
        cache = PrefixCache(
            bb,
            k,
            base_revision=bb.info.revision,
            data_fingerprint=fingerprint(train_rows),
            max_length=args.max_length,
            replay=bool(cfg["replay"]),
        )
    tc = TrainConfig(epochs=args.epochs, lr=1e-3, patience=args.epochs + 1, seed=0)
    result = fit(bb, batches, val, labels, tc, progress=False, prefix_cache=cache)
    return {
        "epoch_s": [h.train_time_s for h in result.history],
        "val_acc": [h.val_accuracy for h in result.history],
        "best_acc": max(h.val_accuracy or 0.0 for h in result.history),
        "replayed": cache.stats.replayed if cache else 0,
        "cache_mib": (cache.stats.bytes / 2**20) if cache else 0.0,
        "batches": len(batches),
        "real_fraction": stats.real_fraction,
    }


def exactness(args: argparse.Namespace) -> float:
    """Return max |cached - full| logits on the real encoder (k=3, eval, perturbed adapter)."""
    import torch

    from registry.backbone import Backbone
    from registry.data import make_batches
    from registry.prefix_cache import PrefixCache

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    train_rows, _, labels = _rows(args)
    bb = Backbone.load(str(minilm_path()))
    bb.add_adapter("a", "seq_bn", 16, [0, 1, 2])
    bb.add_head("a", labels)
    bb.train_adapter("a")
    with torch.no_grad():
        for _, p in bb.trainable_parameters():
            p.add_(torch.randn_like(p) * 0.05)
    batches, _ = make_batches(
        bb.tokenizer, train_rows[:64], labels, batch_size=16, max_length=128, shuffle=True, seed=1
    )
    cache = PrefixCache(bb, 3, base_revision="r", data_fingerprint="f", max_length=128)
    worst = 0.0
    bb.model.eval()
    with torch.no_grad():
        for batch in batches:
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            cache.logits(inputs)
            worst = max(worst, (cache.logits(inputs) - bb.logits(inputs)).abs().max().item())
    assert cache.stats.replayed == len(batches)
    return worst


def main() -> None:
    """Run every configuration in interleaved rounds and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--dataset", default="mds_books")
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--val-rows", type=int, default=196)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="128 rows, 2 epochs, 1 round")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.rows, args.val_rows, args.epochs, args.rounds = 128, 64, 2, 1
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    out = Path(args.out or RESULTS / ("quick" if args.quick else "") / "prefix_cache.md")
    forwarded = [
        "--data-root", args.data_root, "--dataset", args.dataset, "--rows", str(args.rows),
        "--val-rows", str(args.val_rows), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
        "--threads", str(args.threads),
    ]  # fmt: skip
    started = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    for r in range(args.rounds):
        order = list(CONFIGS) if r % 2 == 0 else list(reversed(CONFIGS))
        for name in order:
            proc = subprocess.run(
                [sys.executable, "-m", "benchmarks.prefix_cache", *forwarded, "--worker", name],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"worker {name} failed:\n{proc.stderr[-3000:]}")
            runs[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{args.rounds} {name}: {runs[name][-1]}", file=sys.stderr)
    worst = exactness(args)
    elapsed = time.perf_counter() - started

    def med(name: str, epoch: int) -> float:
        return median([x["epoch_s"][epoch] for x in runs[name] if len(x["epoch_s"]) > epoch])

    def later(name: str) -> float:  # median over runs of the mean time of epochs 2..E
        return median([sum(x["epoch_s"][1:]) / len(x["epoch_s"][1:]) for x in runs[name]])

    base1, base2 = med("k=0", 0), later("k=0")
    lines = [
        "# Frozen-prefix cache (AdapterDrop): epoch time with k frozen layers cached",
        "",
        f"MiniLM-L6 ({LAYERS} layers), seq_bn adapter (reduction 16) + 2-layer head, "
        f"{args.dataset}: {args.rows} train rows (seeded sample), {args.val_rows} validation "
        f"rows; batch {args.batch_size}, max length {args.max_length}, dynamic padding, "
        f"{args.epochs} epochs, lr 1e-3, {args.threads} threads. Training-loop time per epoch "
        f"(validation excluded); medians of {args.rounds} interleaved rounds, one process per run. "
        "`cache` = `PrefixCache` (what `train --cache-prefix` uses); `no cache` = the same k and "
        "the same eval-mode prefix, full forward every step (like-for-like reference).",
        "",
        "| config | epoch 1 s | epoch 2+ s (mean) | epoch 2+ vs k=0 | ideal (6-k)/6 "
        "| epoch 2+ vs same k no cache | best val acc | cache MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cfg in CONFIGS.items():
        k = int(cfg["k"])
        e1, e2 = med(name, 0), later(name)
        nocache = f"k={k} no cache"
        vs_same = f"{e2 / later(nocache):.2f}x" if cfg["replay"] else "—"
        acc = median([x["best_acc"] for x in runs[name]])
        mib = median([x["cache_mib"] for x in runs[name]])
        lines.append(
            f"| {name} | {e1:.1f} | {e2:.1f} | {e2 / base2:.2f}x | {(LAYERS - k) / LAYERS:.2f} "
            f"| {vs_same} | {acc:.3f} | {mib:.0f} |"
        )
    lines += [
        "",
        f"- epoch 2+ time, cached / k=0: k=3 **{later('k=3 cache') / base2:.2f}x** "
        f"(ideal 0.50), k=5 **{later('k=5 cache') / base2:.2f}x** (ideal 0.17). Target: falls at "
        "least in proportion to k (ratio ≤ (6-k)/6; the head, pooler and optimizer step are a "
        "constant cost no cache can remove).",
        f"- what caching alone saves (same k, epoch 2+): k=3 "
        f"**{later('k=3 cache') / later('k=3 no cache'):.2f}x**, k=5 "
        f"**{later('k=5 cache') / later('k=5 no cache'):.2f}x** of the uncached time. AdapterDrop "
        f"without a cache already skips the backward below layer k: epoch 1 k=3 "
        f"{med('k=3 no cache', 0) / base1:.2f}x, k=5 {med('k=5 no cache', 0) / base1:.2f}x of k=0.",
        f"- epoch 1 with recording vs without (same k): k=3 "
        f"{med('k=3 cache', 0) / med('k=3 no cache', 0):.2f}x, k=5 "
        f"{med('k=5 cache', 0) / med('k=5 no cache', 0):.2f}x (recording costs a hash of the "
        "batch's token ids and keeps a reference to a tensor the forward computes anyway).",
        f"- exactness on MiniLM (k=3, eval, perturbed adapter, 4 batches): max |cached - full| "
        f"logit = {worst:.2e}.",
        "- accuracy: fewer adapted layers (larger k) trade accuracy for speed; the cache itself "
        "does not change results (tests/test_prefix_cache.py: same weights ≤ 1e-5 after 2 epochs).",
        "- the frozen prefix runs in eval mode (no dropout) whenever a cache is used; see "
        "registry/prefix_cache.py.",
        f"- whole benchmark took {elapsed / 60:.1f} min.",
        "",
        "## Where and how",
        "",
        machine_record(args.threads),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
