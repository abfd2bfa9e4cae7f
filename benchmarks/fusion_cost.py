"""Fusion cost: training step time and inference throughput of AdapterFusion over N adapters.

On MiniLM-L6, N = 2, 3, 5, 8 random-initialised seq_bn adapters (timing does not depend on what
they learned) under a dynamic AdapterFusion layer + head, trained as ``registry.composer`` trains
it (only fusion + head trainable, members frozen, value regulariser added), against one adapter
trained alone; inference (eval, no grad) of the base alone, one adapter, and each fusion. One
process, every configuration runs the same batches, configurations interleaved (order reversed
every other round); medians and ratios. Usage::

    python -m benchmarks.fusion_cost [--rounds 3] [--steps 4] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA_ROOT, RESULTS, machine_record, median, minilm_path

SIZES = (2, 3, 5, 8)


def _fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Return (slope, intercept) of the least-squares line through the points."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return slope, my - slope * mx


def main() -> None:
    """Time every configuration in interleaved rounds and write the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--dataset", default="mds_books")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="timed batches per config per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 batches")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 1, 2
    out = Path(args.out or RESULTS / ("quick" if args.quick else "") / "fusion_cost.md")

    import torch
    import torch.nn.functional as F

    from registry.backbone import Backbone
    from registry.data import load_spec, make_batches

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = list(load_spec(str(Path(args.data_root) / args.dataset)).split("train"))
    random.Random(0).shuffle(rows)
    labels = sorted({str(r.label) for r in rows})
    bb = Backbone.load(str(minilm_path()))
    names = [f"a{i}" for i in range(max(SIZES))]
    for name in names:
        bb.add_adapter(name, "seq_bn", 16)
    bb.add_head("a0", labels)
    bb.add_head("fh", labels)
    for n in SIZES:
        bb.add_fusion(names[:n], dynamic=True)
    batches, stats = make_batches(
        bb.tokenizer,
        rows[: args.steps * args.batch_size],
        labels,
        batch_size=args.batch_size,
        max_length=args.max_length,
        shuffle=False,
        seed=0,
    )
    batches = batches[: args.steps]
    n_examples = sum(int(b["input_ids"].shape[0]) for b in batches)

    optimizers: dict[str, Any] = {}

    def setup_train(config: str) -> None:
        if config == "adapter":
            bb.train_adapter("a0")
        else:
            bb.train_fusion(names[: int(config.split()[1])], "fh")

    def train_pass(config: str, steps: list[dict[str, Any]]) -> float:
        setup_train(config)
        if config not in optimizers:
            params = [p for _, p in bb.trainable_parameters()]
            optimizers[config] = (torch.optim.AdamW(params, lr=1e-4), params)
        opt, params = optimizers[config]
        elapsed = 0.0
        for batch in steps:
            t0 = time.perf_counter()
            _, logits = bb.forward({k: v for k, v in batch.items() if k != "labels"})
            loss = F.cross_entropy(logits, batch["labels"])
            if config != "adapter":
                reg = bb.fusion_regularization_loss()
                if reg is not None:
                    loss = loss + reg
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            elapsed += time.perf_counter() - t0
        return elapsed

    @contextlib.contextmanager
    def setup_infer(config: str) -> Iterator[None]:
        if config == "base":
            bb.activate("a0", "a0")
            with bb.base_only():
                yield
        elif config == "adapter":
            bb.activate("a0", "a0")
            yield
        else:
            bb.activate(names[: int(config.split()[1])], "fh")
            yield

    def infer_pass(config: str) -> float:
        elapsed = 0.0
        with setup_infer(config):
            for batch in batches:
                t0 = time.perf_counter()
                bb.logits(batch)
                elapsed += time.perf_counter() - t0
        return elapsed

    train_configs = ["adapter", *[f"fusion {n}" for n in SIZES]]
    infer_configs = ["base", "adapter", *[f"fusion {n}" for n in SIZES]]
    for config in train_configs:  # warm-up: one step each, not timed
        train_pass(config, batches[:1])
    for config in infer_configs:
        with setup_infer(config):
            bb.logits(batches[0])
    train_s: dict[str, list[float]] = {c: [] for c in train_configs}
    infer_s: dict[str, list[float]] = {c: [] for c in infer_configs}
    for r in range(args.rounds):
        flip = r % 2 == 1
        for config in reversed(train_configs) if flip else train_configs:
            train_s[config].append(train_pass(config, batches) / len(batches))
        for config in reversed(infer_configs) if flip else infer_configs:
            infer_s[config].append(n_examples / infer_pass(config))
        print(
            f"round {r + 1}/{args.rounds}: train s/step "
            f"{ {c: round(v[-1], 3) for c, v in train_s.items()} } inference ex/s "
            f"{ {c: round(v[-1], 1) for c, v in infer_s.items()} }",
            file=sys.stderr,
        )
    step = {c: median(v) for c, v in train_s.items()}
    thru = {c: median(v) for c, v in infer_s.items()}
    trainable: dict[str, int] = {}
    for config in train_configs:
        setup_train(config)
        trainable[config] = bb.count_parameters()
    elapsed = time.perf_counter() - started

    one = step["adapter"]
    lines = [
        "# Fusion cost: training step and inference vs number of fused adapters",
        "",
        f"MiniLM-L6, {args.dataset} ({len(batches)} batches of {args.batch_size}, max length "
        f"{args.max_length}, dynamic padding, real-token fraction {stats.real_fraction:.2f}), "
        f"{args.threads} threads; random-initialised seq_bn adapters (reduction 16), dynamic "
        f"AdapterFusion. Medians of {args.rounds} interleaved rounds of {args.steps} batches each "
        "(after one untimed warm-up batch per configuration), one process.",
        "",
        "## Training (fusion layer + head trainable, members frozen; single = adapter + head)",
        "",
        "| config | s / step | examples/s | step time vs one adapter | trainable params |",
        "|---|---|---|---|---|",
    ]
    for config in train_configs:
        lines.append(
            f"| {config} | {step[config]:.3f} | {args.batch_size / step[config]:.1f} | "
            f"{step[config] / one:.2f}x | {trainable[config]:,} |"
        )
    slope, icpt = _fit_line([float(n) for n in SIZES], [step[f"fusion {n}"] for n in SIZES])
    lines += [
        "",
        "## Inference (eval, no grad)",
        "",
        "| config | examples/s | vs base | vs one adapter |",
        "|---|---|---|---|",
    ]
    for config in infer_configs:
        lines.append(
            f"| {config} | {thru[config]:.1f} | {thru[config] / thru['base']:.2f}x | "
            f"{thru[config] / thru['adapter']:.2f}x |"
        )
    islope, _ = _fit_line([float(n) for n in SIZES], [1.0 / thru[f"fusion {n}"] for n in SIZES])
    lines += [
        "",
        "## Growth with N",
        "",
        f"- training step: about **{slope:.3f} s per extra member** "
        f"({slope / one:.2f}x of a single-adapter step) on top of {icpt:.3f} s "
        f"(least squares over N = {', '.join(map(str, SIZES))}); fusion of 2 costs "
        f"{step['fusion 2'] / one:.2f}x and fusion of 8 {step['fusion 8'] / one:.2f}x a "
        "single-adapter step. Every member adapter runs in every layer (forward, and backward "
        "for activation gradients), and the fusion attention grows with N.",
        f"- inference: each extra member adds about {islope * 1000:.2f} ms per example "
        f"({islope * thru['base']:.2f}x of a base-only example); fusion of 8 runs at "
        f"{thru['fusion 8'] / thru['base']:.2f}x base throughput.",
        "- not measured here: the extra memory of N member adapters, and fusion accuracy "
        "(see cb_fusion / domain_stream results).",
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
