"""Continual-learning streams under the protocol: does the registry keep what it learned?

Two kinds of stream, from ``../shared/data`` (see ``benchmarks/PROTOCOL.md`` for the splits):

- ``task``: task-incremental, the five-dataset sequence of de Masson d'Autume et al. (2019),
  AG News, Yelp, Amazon, DBpedia, Yahoo; each dataset is its own task (own head, own registry
  task). Published orders 1-4 (``--order``).
- ``domain``: domain-incremental, one task whose data shifts (same labels at every step);
  ``--domains`` names the sequence.

Methods, on the same rows, one seed at a time:

- ``seq-ft``: sequential full fine-tuning of one encoder (per-task heads on ``task`` streams);
- ``seq-ft-replay``: the same, each step's train rows plus replayed earlier train rows at the
  registry's replay budget (as many replayed rows as new rows, split evenly over earlier steps);
- ``adapter``: one bottleneck adapter trained in place through the stream (per-task heads);
- ``joint``: one encoder fine-tuned on every step's data at once (the upper bound);
- ``registry``: the registry's own API with its defaults. ``task`` streams: ``train`` a new
  adapter per task (a new registry task each); a task whose labels equal an earlier task's
  (yelp5, amazon5) transfers from it (``train``'s default: start from its production adapter,
  replay as many of its train rows; ``registry.transfer``). ``registry-notransfer``: the same
  with ``train --no-transfer`` (a fresh adapter per task). ``domain`` streams: ``train`` on
  the first domain, then ``update`` (drift check, new adapter version, re-fusion with replay,
  gate on dev, promotion) for each later one; the production model is scored after every
  step, without being told the domain.

Each step selects its epoch on dev (early stopping, ``--patience``) within ``--epochs``; the
accuracy matrix is on the report split. Per method: average accuracy (last row over every
step's data), BWT, mean forgetting, forward transfer (the diagonal minus a single-task adapter
on the same rows: ``registry-notransfer``'s adapter on task streams, the registry's own on
domain streams), trainable parameters and storage
added per step, wall time; mean ± std over seeds; plots of the mean matrices. Results go to
``--out-dir`` as ``streams_<stream>.md``, ``.json`` and PNGs. Usage::

    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.streams --stream task --order 1
    PYTHONHASHSEED=0 .venv/bin/python -m benchmarks.streams --stream domain --quick
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_DATA_ROOT, RESULTS, machine_record, minilm_path
from benchmarks.protocol import Ledger, Row, Splits, make_splits, report_split_of

#: de Masson d'Autume et al. (2019), Table 5 (the orders every later paper reuses).
TASK_ORDERS = {
    1: ["yelp5", "agnews", "dbpedia", "amazon5", "yahoo"],
    2: ["dbpedia", "yahoo", "agnews", "amazon5", "yelp5"],
    3: ["yelp5", "yahoo", "amazon5", "dbpedia", "agnews"],
    4: ["agnews", "yelp5", "amazon5", "yahoo", "dbpedia"],
}
DEFAULT_DOMAINS = ["yelp5", "amazon5"]
METHODS = ("registry", "seq-ft", "seq-ft-replay", "adapter", "joint")
#: variants of the registry's ``train`` (every stream): its options per variant.
TRAIN_VARIANTS: dict[str, dict[str, Any]] = {
    # one fresh adapter per task (the default before related-task transfer)
    "registry-notransfer": {"transfer": False},
}
#: variants of the registry's ``update``, run on request (``--methods``); domain streams only.
#: Each is ``update`` with these options (the default, ``registry``, has none).
VARIANTS: dict[str, dict[str, Any]] = {
    # the default before issue 14: a fresh adapter on the new data only (no fusion: production
    # is one adapter and members=replace)
    "registry-fresh": {"warm_start": False, "replay": False},
    # warm start without replay
    "registry-noreplay": {"replay": False},
    # a fresh adapter per domain, re-fused with the earlier ones (AdapterFusion), with replay
    "registry-fuse": {"warm_start": False, "members": "append"},
    # the gate before issue 14's dev search on noise: --tolerance 0.01 alone, however few the
    # validation rows (the default also allows one standard error of each split's score)
    "registry-strictgate": {"gate_noise": 0.0},
    # each new adapter's best epoch chosen on every validation split of the task, not only the
    # new data's (the splits the gate checks)
    "registry-selecttask": {"select_on": "task"},
    # warm-started updates at half the first adapter's lr (UPDATE_LR_SHARE)
    "registry-updlr-half": {},
    # a wider adapter bottleneck (hidden size / 4: 96 on MiniLM) from the first step on
    "registry-rf4": {},
    # Houlsby adapters (after attention and after the feed-forward block; double_seq_bn) at the
    # default bottleneck, from the first step on
    "registry-houlsby": {},
}
#: a variant whose updates (every step after the first) train at this share of the adapter lr
UPDATE_LR_SHARE: dict[str, float] = {"registry-updlr-half": 0.5}
#: adapter settings of a variant (its every adapter, the first one included), where it has any.
VARIANT_ADAPTERS: dict[str, dict[str, Any]] = {
    "registry-rf4": {"reduction_factor": 4.0},
    "registry-houlsby": {"method": "double_seq_bn"},
}


@dataclass
class MethodRun:
    """One method on one seed: the accuracy matrix on the report split and its costs."""

    method: str
    seed: int
    matrix: list[list[float | None]]
    wall_s: float
    trainable_params: list[int]
    storage_bytes: list[int]
    epochs: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: when and where it ran: UTC time at its end, git revision, 1-minute load average
    record: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stream", choices=("task", "domain"), default="task")
    p.add_argument("--order", type=int, choices=sorted(TASK_ORDERS), default=1)
    p.add_argument("--domains", default=",".join(DEFAULT_DOMAINS), help="domain stream sequence")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--base", help="Base model folder (default: MiniLM-L6).")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--train-rows", type=int, default=500, help="train rows per step")
    p.add_argument("--dev-rows", type=int, default=100, help="dev rows per step (from train)")
    p.add_argument("--report-rows", type=int, default=500, help="report rows per step")
    p.add_argument("--epochs", type=int, default=4, help="epoch budget per step")
    p.add_argument("--patience", type=int, default=1)
    p.add_argument("--adapter-lr", type=float, default=1e-3)
    p.add_argument("--full-lr", type=float, default=5e-5)
    p.add_argument(
        "--replay-ratio",
        type=float,
        default=1.0,
        help="replayed earlier rows per new row, for seq-ft-replay and the registry's update "
        "(the same budget for both; update's default is 1)",
    )
    p.add_argument("--fusion-lr", type=float, default=5e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="A smoke run of a few minutes.")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--progress", action="store_true")
    p.add_argument(
        "--borrow-order",
        type=int,
        choices=sorted(TASK_ORDERS),
        help="Task streams: take the order-independent runs (joint, registry-notransfer) of "
        "these seeds "
        "from that order's results file, with columns reordered, instead of training them again.",
    )
    p.add_argument(
        "--matrix-on",
        choices=("report", "dev"),
        default="report",
        help="Score the accuracy matrix on dev instead (to choose a stream; never a result).",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="Rewrite the results file (tables, targets, plots) from its JSON; train nothing.",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = "0"
        args.train_rows, args.dev_rows, args.report_rows = 32, 16, 16
        args.epochs, args.max_length = 1, 32
        if args.out_dir == RESULTS:  # a smoke run never overwrites the real results
            args.out_dir = RESULTS / "quick"
    return args


def steps_of(args: argparse.Namespace) -> list[str]:
    """Return the stream's dataset sequence."""
    if args.stream == "task":
        return list(TASK_ORDERS[args.order])
    return [d for d in args.domains.split(",") if d]


def stream_name(args: argparse.Namespace) -> str:
    """Return the name used in file names and titles."""
    name = (
        f"task_order{args.order}" if args.stream == "task" else "domain_" + "-".join(steps_of(args))
    )
    if getattr(args, "matrix_on", "report") == "dev":
        name += "_devsearch"
    return name + (f"_{args.tag}" if args.tag else "")


# ------------------------------------------------------------------------------ helpers
def examples(rows: Sequence[Row]) -> list[Any]:
    """Turn protocol rows into the registry's ``Example`` objects."""
    from registry.data import Example

    out = []
    for r in rows:
        if "text" in r:
            out.append(Example(str(r["text"]), None, str(r["label"])))
        else:
            out.append(Example(str(r["text_a"]), str(r["text_b"]), str(r["label"])))
    return out


def batches(
    backbone: Any, rows: Sequence[Row], labels: list[str], args: Any, train: bool, seed: int
) -> list[Any]:
    """Tokenize rows into batches (shuffled for training)."""
    from registry.data import make_batches

    return make_batches(
        backbone.tokenizer,
        examples(rows),
        labels,
        batch_size=args.batch_size if train else 64,
        max_length=args.max_length,
        shuffle=train,
        seed=seed,
    )[0]


def report_splits_text(args: argparse.Namespace, names: Sequence[str]) -> str:
    """Say which split each step reports on: its test file, or its validation file where the
    test labels are hidden (RTE's, say), which has fewer rows than asked for."""
    if args.data_root is None or not Path(args.data_root).is_dir():
        return "test split where labelled, else validation"
    root = Path(args.data_root)
    other = [n for n in names if (root / n).is_dir() and report_split_of(root, n) != "test"]
    if not other:
        return "test split"
    return "test split; " + ", ".join(other) + ": validation split, its test labels being hidden"


def replay_sample(
    earlier: list[list[Row]], n_new: int, rng: random.Random, ratio: float = 1.0
) -> list[list[Row]]:
    """The registry's replay budget: about ``ratio * n_new`` earlier rows, split evenly over
    sources (each gives at most all it has)."""
    if not earlier:
        return []
    per = max(1, int(n_new * ratio) // len(earlier))
    return [rng.sample(rows, min(per, len(rows))) for rows in earlier]


def fit_heads(
    backbone: Any,
    items: list[tuple[str, Any]],
    dev: list[tuple[str, list[Any], list[str]]],
    *,
    lr: float,
    args: argparse.Namespace,
    seed: int,
    setup: Any,
) -> int:
    """Train on (head, batch) items; keep the epoch with the best mean dev accuracy.

    ``setup(head)`` makes ``head`` active and the right parameters trainable. Returns the
    selected epoch.
    """
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    from registry.fitting import evaluate_batches

    setup(items[0][0])
    params = [p for p in backbone.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = max(1, args.epochs * len(items))
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * total), total)
    rng = random.Random(seed)
    best, best_epoch, stale, state = -math.inf, 0, 0, None
    for epoch in range(1, args.epochs + 1):
        order = list(range(len(items)))
        rng.shuffle(order)
        for i in order:
            head, batch = items[i]
            setup(head)
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            _, logits = backbone.forward(inputs)
            loss = F.cross_entropy(logits, batch["labels"])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        scores = []
        for head, dev_batches, labels in dev:
            setup(head)
            scores.append(evaluate_batches(backbone, dev_batches, labels)["accuracy"])
        score = statistics.fmean(scores)
        if score > best:
            best, best_epoch, stale = score, epoch, 0
            state = {
                n: p.detach().clone()
                for n, p in backbone.model.named_parameters()
                if p.requires_grad
            }
        else:
            stale += 1
            if stale >= args.patience:
                break
    if state is not None:
        with torch.no_grad():
            for n, p in backbone.model.named_parameters():
                if n in state:
                    p.copy_(state[n])
    backbone.model.eval()
    return best_epoch


class Stream:
    """One seed of one stream: its splits, its ledger and the report folders."""

    def __init__(self, args: argparse.Namespace, seed: int, scratch: Path, ledger: Ledger) -> None:
        self.args, self.seed, self.scratch, self.ledger = args, seed, scratch, ledger
        self.names = steps_of(args)
        self.splits: list[Splits] = [
            make_splits(
                args.data_root,
                name,
                seed,
                dev_rows=args.dev_rows,
                train_rows=args.train_rows,
                report_rows=args.report_rows,
            )
            for name in self.names
        ]
        if args.stream == "domain":
            labels = sorted({lab for s in self.splits for lab in s.labels()})
            self.labels = [labels] * len(self.splits)
        else:
            self.labels = [s.labels() for s in self.splits]

    def heads(self) -> list[str]:
        """Head name per step: one per task on task streams, one shared on domain streams."""
        if self.args.stream == "domain":
            return ["h"] * len(self.names)
        return [f"h_{n}" for n in self.names]

    def train_rows(self, i: int, who: str) -> list[Row]:
        return self.ledger.use(self.splits[i], "train", "train", who)

    def dev_rows(self, i: int, who: str) -> list[Row]:
        return self.ledger.use(self.splits[i], "dev", "select", who)

    def report_rows(self, i: int, who: str) -> list[Row]:
        return self.ledger.report(self.splits[i], who)

    def matrix_rows(self, i: int, who: str) -> list[Row]:
        """The rows the accuracy matrix is scored on: report rows, or dev rows with
        ``--matrix-on dev`` (a stream search, whose numbers are choices, not results)."""
        if self.args.matrix_on == "dev":
            return self.dev_rows(i, who)
        return self.report_rows(i, who)


# ------------------------------------------------------------------------------ baselines
def run_baseline(stream: Stream, method: str, base: str) -> MethodRun:
    """Sequential full fine-tuning (with or without replay), one adapter in place, or joint."""
    from registry.backbone import Backbone
    from registry.fitting import evaluate_batches
    from registry.runtime import seed_everything

    args, seed = stream.args, stream.seed
    seed_everything(seed)
    t0 = time.perf_counter()
    backbone = Backbone.load(base)
    backbone.add_adapter("m", "seq_bn")
    heads = stream.heads()
    for head, labels in zip(heads, stream.labels, strict=True):
        if head not in backbone.head_names:
            backbone.add_head(head, labels)
    full = method != "adapter"

    def setup(head: str) -> None:
        backbone.activate("m", head)
        if full:
            backbone.unfreeze_all()
        else:
            backbone.model.train_adapter("m")
            backbone.model.train()
            for name, p in backbone.model.named_parameters():
                if name.startswith("heads."):
                    p.requires_grad = name.startswith(f"heads.{head}.")
        backbone.model.active_head = head

    lr = args.full_lr if full else args.adapter_lr
    n = len(stream.names)
    matrix: list[list[float | None]] = []
    params: list[int] = []
    epochs: list[int] = []
    reports = [
        (
            heads[j],
            batches(backbone, stream.matrix_rows(j, method), stream.labels[j], args, False, 0),
            stream.labels[j],
        )
        for j in range(n)
    ]

    def score_row(upto: int) -> list[float | None]:
        row: list[float | None] = []
        for j in range(n):
            if j > upto:
                row.append(None)
                continue
            head, b, labels = reports[j]
            backbone.activate("m", head)
            row.append(evaluate_batches(backbone, b, labels)["accuracy"])
        return row

    def trainable() -> int:
        return sum(p.numel() for p in backbone.model.parameters() if p.requires_grad)

    if method == "joint":
        items = []
        for i in range(n):
            for b in batches(
                backbone, stream.train_rows(i, method), stream.labels[i], args, True, seed + i
            ):
                items.append((heads[i], b))
        dev = [
            (
                heads[i],
                batches(backbone, stream.dev_rows(i, method), stream.labels[i], args, False, 0),
                stream.labels[i],
            )
            for i in range(n)
        ]
        epochs.append(fit_heads(backbone, items, dev, lr=lr, args=args, seed=seed, setup=setup))
        params.append(trainable())
        matrix.append(score_row(n - 1))
    else:
        rng = random.Random(f"replay:{seed}")
        seen: list[list[Row]] = []
        for i in range(n):
            new = stream.train_rows(i, method)
            items = [
                (heads[i], b)
                for b in batches(backbone, new, stream.labels[i], args, True, seed + i)
            ]
            if method == "seq-ft-replay":
                for j, rows in enumerate(replay_sample(seen, len(new), rng, args.replay_ratio)):
                    items += [
                        (heads[j], b)
                        for b in batches(backbone, rows, stream.labels[j], args, True, seed + j)
                    ]
            seen.append(new)
            dev = [
                (
                    heads[i],
                    batches(backbone, stream.dev_rows(i, method), stream.labels[i], args, False, 0),
                    stream.labels[i],
                )
            ]
            epochs.append(
                fit_heads(backbone, items, dev, lr=lr, args=args, seed=seed + i, setup=setup)
            )
            setup(heads[i])
            params.append(trainable())
            matrix.append(score_row(i))
            print(
                f"[{method} seed {seed}] after {stream.names[i]}: {_fmt_row(matrix[-1])}",
                flush=True,
            )
    return MethodRun(
        method, seed, matrix, time.perf_counter() - t0, params, [4 * p for p in params], epochs
    )


def _fmt_row(row: Sequence[float | None]) -> str:
    return " ".join("  -  " if v is None else f"{v:.3f}" for v in row)


# ------------------------------------------------------------------------------ registry
def _tensor_count(folder: Path) -> tuple[int, int]:
    """Return (parameters, bytes) of the safetensors files under an artifact folder."""
    from safetensors import safe_open

    count, size = 0, 0
    for f in sorted(folder.rglob("*.safetensors")):
        size += f.stat().st_size
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                count += math.prod(fh.get_slice(k).get_shape())
    return count, size


def run_registry(
    stream: Stream, base: str, method: str = "registry"
) -> tuple[MethodRun, list[float]]:
    """The registry's API with its defaults; returns the run and the single-task accuracies.

    A variant runs ``update`` (``VARIANTS``) or ``train`` (``TRAIN_VARIANTS``) with its
    options; everything else at its default.
    """
    from registry.configs import FuseConfig, TrainConfig
    from registry.continual import production_entity, update
    from registry.inference import evaluate_entity
    from registry.store import Registry
    from registry.trainer import train

    args, seed = stream.args, stream.seed
    t0 = time.perf_counter()
    home = stream.scratch / f"{method}-{seed}"
    reg = Registry.init(home)
    tcfg = TrainConfig(
        epochs=args.epochs, lr=args.adapter_lr, batch_size=args.batch_size,
        max_length=args.max_length, seed=seed, patience=args.patience,
        **VARIANT_ADAPTERS.get(method, {}),
    )  # fmt: skip
    fcfg = FuseConfig(
        epochs=args.epochs, lr=args.fusion_lr, batch_size=args.batch_size,
        max_length=args.max_length, seed=seed, patience=args.patience,
    )  # fmt: skip
    n = len(stream.names)
    report_dirs = []
    for j in range(n):
        d = stream.scratch / f"report-{seed}" / stream.names[j]
        d.mkdir(parents=True, exist_ok=True)
        rows = stream.matrix_rows(j, method)
        (d / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        report_dirs.append(d)

    def acc(ref: str, j: int) -> float:
        return evaluate_entity(reg, ref, str(report_dirs[j]), split="test", record=False)[
            "accuracy"
        ]

    matrix: list[list[float | None]] = []
    params: list[int] = []
    storage: list[int] = []
    notes: list[str] = []
    single: list[float] = []
    refs: list[str] = []  # the model that answers step j's data (task streams: its own task)
    for i, name in enumerate(stream.names):
        folder = stream.ledger.train_folder(
            stream.splits[i], stream.scratch / f"data-{seed}" / name, method
        )
        task = name if args.stream == "task" else "stream"
        made = []
        if args.stream == "task" or i == 0:
            out = train(
                reg, task, str(folder), base, config=tcfg, progress=args.progress,
                **TRAIN_VARIANTS.get(method, {}),
            )  # fmt: skip
            reg.set_alias(task, "production", out.version.uid)
            made.append(out.version)
            single.append(acc(out.version.ref, i))
            how = f" ({out.transfer.line()})" if out.transfer else ""
            notes.append(f"{name}: trained {out.version.ref}{how}")
        else:
            res = update(
                reg,
                task,
                str(folder),
                train_config=dataclasses.replace(
                    tcfg, lr=tcfg.lr * UPDATE_LR_SHARE.get(method, 1.0)
                ),
                fuse_config=fcfg,
                seed=seed,
                progress=args.progress,
                **{"replay_ratio": args.replay_ratio, **VARIANTS.get(method, {})},
            )
            made += [e for e in (res.adapter, res.fusion) if e is not None]
            single.append(acc(res.adapter.ref, i) if res.adapter is not None else math.nan)
            notes.append(f"{name}: {res.gate}" + (" (promoted)" if res.promoted else " (kept)"))
        cnt = [_tensor_count(reg.artifact_path(e)) for e in made]
        params.append(sum(c for c, _ in cnt))
        storage.append(sum(s for _, s in cnt))
        if args.stream == "task":
            refs.append(made[0].ref)
            row = [acc(refs[j], j) if j <= i else None for j in range(n)]
        else:
            prod = production_entity(reg, task)
            assert prod is not None
            row = [acc(prod.ref, j) if j <= i else None for j in range(n)]
        matrix.append(row)
        print(f"[registry seed {seed}] after {name}: {_fmt_row(row)}", flush=True)
    reg.close()
    return MethodRun(
        method, seed, matrix, time.perf_counter() - t0, params, storage, [], notes
    ), single


# ------------------------------------------------------------------------------ metrics
def metrics(run: MethodRun, single: list[float] | None) -> dict[str, float]:
    """Average accuracy, BWT, mean forgetting and forward transfer of one run."""
    from registry.evaluate import AccuracyMatrix

    vals = [[math.nan if v is None else v for v in row] for row in run.matrix]
    last = [v for v in vals[-1] if math.isfinite(v)]
    out = {"avg": statistics.fmean(last) if last else math.nan}
    if len(vals) > 1:
        m = AccuracyMatrix(vals)
        out["bwt"], out["forgetting"] = m.bwt(), m.mean_forgetting()
        if single:
            diffs = [
                vals[j][j] - single[j] for j in range(1, len(vals)) if math.isfinite(single[j])
            ]
            out["fwt"] = statistics.fmean(diffs) if diffs else math.nan
        else:
            out["fwt"] = math.nan
    else:
        out["bwt"] = out["forgetting"] = out["fwt"] = math.nan
    out["wall_min"] = run.wall_s / 60
    out["params"] = statistics.fmean(run.trainable_params) if run.trainable_params else 0
    out["storage_mb"] = (statistics.fmean(run.storage_bytes) if run.storage_bytes else 0) / 2**20
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return math.nan, math.nan
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def _pm(values: list[float], signed: bool = False) -> str:
    m, s = mean_std(values)
    if not math.isfinite(m):
        return "n/a"
    return (f"{m:+.3f}" if signed else f"{m:.3f}") + f" ± {s:.3f}"


def targets(args: argparse.Namespace, table: dict[str, list[dict[str, float]]]) -> list[str]:
    """Return the issue's targets as bold verdict lines (met / NOT met), for what has run."""

    def avg(method: str, key: str) -> float:
        return mean_std([x[key] for x in table[method]])[0]

    def line(ok: bool, text: str) -> str:
        return f"- **{'met' if ok else 'NOT met'}**: {text}"

    out: list[str] = []
    seqs = [m for m in ("seq-ft", "seq-ft-replay", "adapter") if m in table]
    if "seq-ft" in table and args.stream == "domain":
        b = avg("seq-ft", "bwt")
        out.append(line(b <= -0.03, f"sequential full fine-tuning forgets, BWT ≤ −0.03 ({b:+.3f})"))
    for reg in [m for m in ("registry", *TRAIN_VARIANTS, *VARIANTS) if m in table]:
        b, a = avg(reg, "bwt"), avg(reg, "avg")
        out.append(line(b >= -0.005, f"{reg}: BWT ≥ −0.005 ({b:+.3f})"))
        if seqs:
            best = max(seqs, key=lambda m: avg(m, "avg"))
            v = avg(best, "avg")
            out.append(
                line(
                    a >= v,
                    f"{reg}: average accuracy ≥ the best sequential baseline "
                    f"({a:.3f} vs {best} {v:.3f})",
                )  # fmt: skip
            )
        if "joint" in table and args.stream == "task":
            j = avg("joint", "avg")
            out.append(line(a >= j - 0.02, f"{reg}: within 0.02 of joint ({a:.3f} vs {j:.3f})"))
    return out


def run_record() -> str:
    """Return when a method run ended, the git revision and the machine's load right then."""
    import datetime as dt

    from benchmarks.common import _git_rev

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"ended {now}, git {_git_rev()}, load average {os.getloadavg()[0]:.1f}"


def status_text(args: argparse.Namespace, done: bool) -> str:
    """Say whether the file is from a finished run, a running one, or rewritten from JSON."""
    if args.report_only:
        return "rewritten from the JSON of the runs below (each run finished)"
    return "complete" if done else "PARTIAL (run still going or cut off)"


def write_report(
    args: argparse.Namespace,
    runs: list[MethodRun],
    singles: dict[int, list[float]],
    started: float,
    done: bool,
) -> Path:
    """Write ``streams_<name>.md`` / ``.json`` / PNGs (again after every run)."""
    import numpy as np

    from registry.evaluate import AccuracyMatrix, plot_matrix_png

    name = stream_name(args)
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    names = steps_of(args)
    by_method: dict[str, list[MethodRun]] = {}
    for r in runs:
        by_method.setdefault(r.method, []).append(r)
    table = {m: [metrics(r, singles.get(r.seed)) for r in rs] for m, rs in by_method.items()}
    kind = (
        f"task-incremental, order {args.order}" if args.stream == "task" else "domain-incremental"
    )
    lines = [
        f"# Stream: {' → '.join(names)} ({kind})",
        "",
        machine_record(args.threads),
        f"- status: {status_text(args, done)}; "
        f"seeds done per method: " + ", ".join(f"{m} {len(rs)}" for m, rs in by_method.items()),
        f"- protocol: benchmarks/PROTOCOL.md; per step {args.train_rows} train rows, "
        f"{args.dev_rows} dev rows (stratified, carved out of train, seed-dependent), "
        f"{args.report_rows} report rows ({report_splits_text(args, names)}, the same for every "
        "seed); every choice on dev",
        f"- model: MiniLM-L6, max length {args.max_length}, batch {args.batch_size}, at most "
        f"{args.epochs} epochs per step with early stopping on dev (patience {args.patience}); "
        "lr: adapter "
        f"{args.adapter_lr}, full fine-tuning {args.full_lr}, fusion {args.fusion_lr}",
        f"- wall time so far: {(time.perf_counter() - started) / 60:.1f} min; load average when "
        f"written {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (above the core count, "
        "processes waited for a core: read accuracies, not minutes)",
        "",
        "## Summary ("
        + (
            "report split"
            if getattr(args, "matrix_on", "report") == "report"
            else "DEV split: a search's choices, never quoted as results"
        )
        + ", mean ± std over seeds)",
        "",
        "| method | avg accuracy | BWT | mean forgetting | FWT | trainable params / step "
        "| storage / step | wall min / seed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, ms in table.items():
        lines.append(
            f"| {m} | {_pm([x['avg'] for x in ms])} | {_pm([x['bwt'] for x in ms], True)} | "
            f"{_pm([x['forgetting'] for x in ms], True)} | {_pm([x['fwt'] for x in ms], True)} | "
            f"{statistics.fmean(x['params'] for x in ms):,.0f} | "
            f"{statistics.fmean(x['storage_mb'] for x in ms):.2f} MiB | "
            f"{statistics.fmean(x['wall_min'] for x in ms):.1f} |"
        )
    verdicts = targets(args, table)
    if verdicts:
        lines += ["", "## Targets (from issue 14; mean over the seeds run)", "", *verdicts]
    lines += [
        "",
        "Average accuracy: the last row's mean over every step's report split. BWT: mean of "
        "R[T-1][j] − R[j][j]; mean forgetting: mean of max_l R[l][j] − R[T-1][j] (Chaudhry et "
        "al.). FWT: mean over steps j ≥ 1 of R[j][j] minus the accuracy of an adapter trained on "
        "step j's rows alone (task streams: `registry-notransfer`'s adapter for that step; domain "
        "streams: the registry's own). `joint` trains once on "
        "everything: its one row is scored on every step. Trainable parameters and storage: what "
        "one step trains and adds (baselines: the weights that change, at 4 bytes each, since "
        "they are overwritten in place; registry: the safetensors files it registered at that "
        "step).",
        "",
    ]
    for m, rs in by_method.items():
        if m == "joint":
            continue
        vals = np.array(
            [[[math.nan if v is None else v for v in row] for row in r.matrix] for r in rs]
        )
        mean = np.nanmean(vals, axis=0) if len(rs) > 1 else vals[0]
        mat = AccuracyMatrix(mean, names)
        png = out_dir / f"streams_{name}_{m}.png"
        plot_matrix_png(mat, png, f"{m}: {' → '.join(names)} (mean of {len(rs)} seeds)")
        lines += [
            f"### {m} (mean over {len(rs)} seeds)",
            "",
            f"![{m}]({png.name})",
            "",
            mat.to_markdown(),
            "",
        ]
    lines += ["### runs", ""]
    lines += [
        f"- {r.method}, seed {r.seed}: {r.wall_s / 60:.1f} min, epochs chosen on dev "
        f"{r.epochs or 'by the registry'}; {r.record or 'ended before run records were kept'}"
        for r in runs
    ]
    lines.append("")
    notes = [
        f"- {m}, seed {r.seed}: {n}"
        for m, rs in by_method.items()
        if m.startswith("registry")
        for r in rs
        for n in r.notes
    ]
    if notes:
        lines += ["### registry log", "", *notes, ""]
    md = out_dir / f"streams_{name}.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / f"streams_{name}.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "runs": [asdict(r) for r in runs],
                "single": singles,
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    return md


SIZE_KEYS = ("train_rows", "dev_rows", "report_rows", "epochs", "patience", "max_length",
             "batch_size", "adapter_lr", "full_lr", "fusion_lr", "base", "data_root")  # fmt: skip
LR_KEYS = ("adapter_lr", "full_lr", "fusion_lr")
#: the learning rates each method trains with (the registry and its variants: all but full_lr)
METHOD_LRS = {"seq-ft": ("full_lr",), "seq-ft-replay": ("full_lr",), "joint": ("full_lr",),
              "adapter": ("adapter_lr",)}  # fmt: skip


#: the methods that replay (the registry's update and its variants too): their replay budget
NO_REPLAY = ("seq-ft", "joint", "adapter", *TRAIN_VARIANTS)


def _same_lrs(old_args: dict[str, str], args: argparse.Namespace, method: str) -> bool:
    """Whether ``method`` ran (per the old file's args) at the learning rates asked for now,
    and, if it replays, at the replay ratio asked for now (files from before the option: 1)."""
    keys = METHOD_LRS.get(method, ("adapter_lr", "fusion_lr"))
    if any(old_args.get(k) != str(getattr(args, k)) for k in keys):
        return False
    if method in NO_REPLAY or (args.stream == "task" and method != "seq-ft-replay"):
        return True  # a task stream's registry trains each task once: no update replays
    return float(old_args.get("replay_ratio", 1.0)) == float(args.replay_ratio)


def earlier_runs(args: argparse.Namespace) -> tuple[list[MethodRun], dict[int, list[float]]]:
    """Runs already in this stream's JSON at the same sizes that this invocation does not redo.

    So a stream can be run seed by seed, or a method added later, into one results file.
    """
    path = args.out_dir / f"streams_{stream_name(args)}.json"
    if not path.exists():
        return [], {}
    old = json.loads(path.read_text(encoding="utf-8"))
    if any(old["args"].get(k) != str(getattr(args, k)) for k in SIZE_KEYS if k not in LR_KEYS):
        return [], {}
    # a run at other learning rates than its method is asked for now is dropped (the others
    # stay: e.g. a new adapter lr keeps the full fine-tuning runs)
    seeds = {int(s) for s in args.seeds.split(",")}
    methods = set(args.methods.split(","))
    runs = [
        MethodRun(**r)
        for r in old["runs"]
        if not (r["seed"] in seeds and r["method"] in methods)
        and _same_lrs(old["args"], args, r["method"])
    ]
    singles = {
        int(k): v
        for k, v in old["single"].items()
        if not (int(k) in seeds and single_source(args) in methods)
        and _same_lrs(old["args"], args, single_source(args))
    }
    return runs, singles


def single_source(args: argparse.Namespace) -> str:
    """Return the method whose own adapters are the single-task baseline of forward transfer.

    Task streams: ``registry-notransfer`` (one fresh adapter per task, on its rows alone; the
    registry's default transfers between tasks with equal labels, so its adapters are not
    single-task). Domain streams: ``registry``.
    """
    return "registry-notransfer" if args.stream == "task" else "registry"


#: Runs that do not depend on the order of a task stream (see ``borrowed_runs``). The registry's
#: default is not one of them: a task transfers from an earlier task with the same labels.
ORDER_FREE = ("joint", "registry-notransfer")


def borrowed_runs(
    args: argparse.Namespace, seeds: list[int]
) -> tuple[list[MethodRun], dict[int, list[float]]]:
    """Order-independent runs of another task order, their columns put in this order.

    ``joint`` trains once on every task's rows and ``registry-notransfer`` trains each task's
    own adapter on its own rows: neither depends on the order of the tasks, so their per-task
    accuracies carry over (same seeds, same sizes, same rows); only the matrix layout changes.
    """
    src = argparse.Namespace(**{**vars(args), "order": args.borrow_order, "borrow_order": None})
    path = args.out_dir / f"streams_{stream_name(src)}.json"
    if not path.exists():
        raise SystemExit(f"--borrow-order {args.borrow_order}: {path} does not exist")
    old = json.loads(path.read_text(encoding="utf-8"))
    if any(old["args"].get(k) != str(getattr(args, k)) for k in SIZE_KEYS):
        raise SystemExit(f"--borrow-order: {path} was run at other sizes")
    before, after = TASK_ORDERS[args.borrow_order], TASK_ORDERS[args.order]
    perm = [before.index(name) for name in after]
    n = len(after)
    runs: list[MethodRun] = []
    for r in old["runs"]:
        if r["method"] not in ORDER_FREE or r["seed"] not in seeds:
            continue
        last = r["matrix"][-1]
        acc = [last[k] for k in perm]
        if r["method"] == "joint":
            matrix = [acc]
        else:
            matrix = [[acc[j] if j <= i else None for j in range(n)] for i in range(n)]
        runs.append(
            MethodRun(
                r["method"], r["seed"], matrix, r["wall_s"],
                [r["trainable_params"][k] for k in perm] if len(r["trainable_params"]) == n
                else r["trainable_params"],
                [r["storage_bytes"][k] for k in perm] if len(r["storage_bytes"]) == n
                else r["storage_bytes"],
                r["epochs"], [*r["notes"], f"borrowed from order {args.borrow_order}"],
                r["record"],
            )
        )  # fmt: skip
    singles = {int(k): [v[i] for i in perm] for k, v in old["single"].items() if int(k) in seeds}
    return runs, singles


def main(argv: list[str] | None = None) -> list[MethodRun]:
    """Run the stream for every seed and method; write the results after each run."""
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = args.base or str(minilm_path())
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        valid = (*METHODS, *TRAIN_VARIANTS, *VARIANTS)
        if m not in valid:
            raise SystemExit(f"unknown method {m!r}; valid: {', '.join(valid)}")
        if m in VARIANTS and args.stream == "task":  # update's variants
            raise SystemExit(f"{m} is for domain streams (one task, several update steps)")
    started = time.perf_counter()
    ledger = Ledger()
    if args.report_only:
        args.methods = ""
        runs, singles = earlier_runs(args)
        if args.borrow_order is not None:
            seeds = sorted({r.seed for r in runs})
            got, got_single = borrowed_runs(args, seeds)
            have = {(r.method, r.seed) for r in got}
            runs = [r for r in runs if (r.method, r.seed) not in have] + got
            singles.update(got_single)
        if not runs:
            raise SystemExit(f"no results at these sizes in {args.out_dir}")
        md = write_report(args, runs, singles, started, done=True)
        print(md.read_text(encoding="utf-8"))
        return runs
    runs, singles = earlier_runs(args)
    if args.borrow_order is not None:
        if args.stream != "task":
            raise SystemExit("--borrow-order is for task streams")
        seeds = [int(s) for s in args.seeds.split(",")]
        got, got_single = borrowed_runs(args, seeds)
        have = {(r.method, r.seed) for r in got}
        runs = [r for r in runs if (r.method, r.seed) not in have] + got
        singles.update(got_single)
        methods = [m for m in methods if m not in ORDER_FREE]
    with tempfile.TemporaryDirectory(prefix="streams-") as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            stream = Stream(args, seed, Path(tmp), ledger)
            for m in methods:
                if m in ("registry", *TRAIN_VARIANTS, *VARIANTS):
                    run, single = run_registry(stream, base, m)
                    if m == single_source(args):
                        singles[seed] = single
                else:
                    run = run_baseline(stream, m, base)
                run.record = run_record()
                runs.append(run)
                md = write_report(args, runs, singles, started, done=False)
    md = write_report(args, runs, singles, started, done=True)
    print(md.read_text(encoding="utf-8"))
    return runs


if __name__ == "__main__":
    main()
