"""GPU throughput: the registry against the raw ``adapters`` engine, at the same settings.

One script for one GPU, done in well under 10 minutes on an H200. It builds a BERT-base-shaped
encoder from a config with random weights (the weights do not change the speed, so nothing
needs to travel), writes synthetic sentence pairs with MNLI-like lengths (premise ~22 words,
hypothesis ~11; every word one token), and prints:

- adapter training, full fine-tuning and a fusion of 3, through the registry (``train`` /
  ``fuse``, whole call) and through a plain loop on ``adapters`` with the same batches,
  optimiser and schedule: at the old defaults (batch 32, fp32) and at the registry's GPU
  defaults (``--precision auto``: bf16 where supported; batch 256 capped at 32k tokens);
- registry ÷ raw at identical settings;
- inference (``predict_examples``, what ``eval``/``predict --data`` run) against raw no-grad
  forward passes;
- the fixed cost of a command outside its training loop (load, profile, scoring, saving);
- model-FLOPs utilisation against the chip's dense bf16 peak (6·N per real token for full
  fine-tuning, 4·N for adapter and fusion training, whose frozen weights need no weight
  gradients, 2·N for inference; N = encoder parameters without embeddings; attention scores
  are not counted, a few percent at these lengths).

Usage::

    python -m benchmarks.gpu                      # on a GPU machine
    python -m benchmarks.gpu --quick --device cpu # smoke run on a CPU (small encoder)

Full fine-tuning goes through the raw engine only (the registry trains adapters, not bases).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Dense bf16 peak (TFLOP/s, without sparsity) by a substring of the device name.
PEAK_BF16_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 NVL": 835.5,
    "H100 PCIe": 756.0,
    "H100": 989.4,
    "A100": 312.0,
    "L40S": 362.05,
    "L4": 121.0,
}

SHAPES = {
    "bert-base": {"hidden": 768, "layers": 12, "heads": 12, "intermediate": 3072},
    "quick": {"hidden": 64, "layers": 2, "heads": 2, "intermediate": 128},
}

#: The settings compared: the old CPU-era defaults, and the registry's GPU defaults
#: (None = resolved by ``FitConfig.resolved`` for the device).
SETTINGS = {
    "b32 fp32": {"batch_size": 32, "precision": "fp32"},
    "GPU defaults": {},
}

LABELS = ["contradiction", "entailment", "neutral"]


# ---------------------------------------------------------------------------- inputs
def build_encoder(folder: Path, shape: dict[str, int], seed: int = 0) -> Path:
    """Save a BERT encoder of ``shape`` with random weights and a 30,522-word vocabulary."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(30522 - len(special))]
    (folder / "vocab.txt").write_text("\n".join(special + words) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    config = BertConfig(
        vocab_size=30522,
        hidden_size=shape["hidden"],
        num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"],
        intermediate_size=shape["intermediate"],
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder


def write_pairs(folder: Path, rows: int, seed: int = 0) -> Path:
    """Write ``rows`` training pairs and ``rows // 8`` validation pairs as jsonl."""
    rng = random.Random(seed)

    def sentence(mean: float, sd: float, low: int, high: int) -> str:
        n = int(min(high, max(low, rng.gauss(mean, sd))))
        return " ".join(f"w{rng.randrange(30000)}" for _ in range(n))

    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", rows), ("validation", max(16, rows // 8))):
        lines = [
            json.dumps(
                {
                    "premise": sentence(22, 9, 4, 70),
                    "hypothesis": sentence(11, 4, 3, 30),
                    "label": rng.choice(LABELS),
                }
            )
            for _ in range(n)
        ]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


# ---------------------------------------------------------------------------- measurements
@dataclass
class Run:
    """One measured configuration."""

    path: str  # registry / raw
    mode: str  # adapter / full / fusion-3 / inference
    settings: str
    examples: int
    real_tokens: int
    loop_s: float
    wall_s: float | None = None
    precision: str = ""
    batch: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ex_per_s(self) -> float:
        return self.examples / self.loop_s if self.loop_s > 0 else 0.0

    @property
    def tok_per_s(self) -> float:
        return self.real_tokens / self.loop_s if self.loop_s > 0 else 0.0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _config(settings: dict[str, Any], args: argparse.Namespace, **extra: Any) -> Any:
    from registry.configs import TrainConfig
    from registry.runtime import resolve_config

    return resolve_config(
        TrainConfig(
            epochs=args.epochs,
            patience=args.epochs,
            max_length=args.max_length,
            device=args.device,
            seed=0,
            **{**settings, **extra},
        )
    )


def registry_train(
    args: argparse.Namespace, base: Path, data: Path, home: Path, name: str, label: str
) -> Run:
    """Time ``registry.trainer.train`` from data spec to registered version."""
    from registry.store import Registry
    from registry.trainer import train

    cfg = _config(SETTINGS[label], args, compile=args.compile)
    reg = Registry.open(home, create=True)
    _sync(args.device)
    t0 = time.perf_counter()
    out = train(reg, "nli", str(data), str(base), name=name, config=cfg, progress=False)
    _sync(args.device)
    wall = time.perf_counter() - t0
    reg.close()
    epochs = len(out.fit.history)
    return Run(
        "registry", "adapter", label, args.rows * epochs, out.fit.real_tokens,
        out.fit.train_time_s, wall, cfg.precision, _batch(cfg),
        {"fixed_s": wall - out.fit.train_time_s, "ref": out.version.ref},
    )  # fmt: skip


def registry_fuse(
    args: argparse.Namespace, data: Path, home: Path, members: list[str], label: str
) -> Run:
    """Time ``registry.composer.fuse`` over three registered adapters."""
    from registry.composer import fuse
    from registry.configs import FuseConfig
    from registry.store import Registry

    tcfg = _config(SETTINGS[label], args)
    cfg = FuseConfig(**tcfg.fit_settings())
    reg = Registry.open(home)
    _sync(args.device)
    t0 = time.perf_counter()
    slug = "old" if label.startswith("b32") else "gpu"
    out = fuse(reg, "nli", members, str(data), name=f"fusion-{slug}", config=cfg, progress=False)
    _sync(args.device)
    wall = time.perf_counter() - t0
    reg.close()
    epochs = len(out.fit.history)
    return Run(
        "registry", "fusion-3", label, args.rows * epochs, out.fit.real_tokens,
        out.fit.train_time_s, wall, cfg.precision, _batch(cfg),
        {"fixed_s": wall - out.fit.train_time_s},
    )  # fmt: skip


def registry_inference(args: argparse.Namespace, data: Path, home: Path, ref: str) -> list[Run]:
    """Time ``predict_examples`` (what ``eval``/``predict --data`` run) on the training rows."""
    from registry.data import load_spec
    from registry.inference import predict_examples
    from registry.loader import load_entity
    from registry.runtime import bf16_supported, pick_device
    from registry.store import Registry

    device = pick_device(args.device)
    reg = Registry.open(home)
    loaded = load_entity(reg, reg.resolve(ref), device)
    rows = load_spec(str(data)).split("train")
    runs = []
    precisions = ["fp32"] + (["bf16"] if bf16_supported(device) else [])
    for precision in precisions:
        predict_examples(loaded, rows[:256], max_length=args.max_length, precision=precision)
        _sync(device)
        t0 = time.perf_counter()
        predict_examples(loaded, rows, max_length=args.max_length, precision=precision)
        _sync(device)
        seconds = time.perf_counter() - t0
        tokens = _real_tokens(loaded.backbone.tokenizer, rows, args.max_length)
        runs.append(
            Run("registry", "inference", "eval batches", len(rows), tokens, seconds,
                precision=precision, batch="1024 rows / 131k tok" if device != "cpu" else "64")
        )  # fmt: skip
    reg.close()
    return runs


def _real_tokens(tokenizer: Any, rows: list[Any], max_length: int) -> int:
    enc = tokenizer(
        [r.text_a for r in rows], [r.text_b or "" for r in rows], truncation=True,
        max_length=max_length,
    )  # fmt: skip
    return sum(len(x) for x in enc["input_ids"])


def _batch(cfg: Any) -> str:
    return f"b{cfg.batch_size}" + (f" / {cfg.max_tokens} tok" if cfg.max_tokens else "")


def raw_train(args: argparse.Namespace, base: Path, data: Path, mode: str, label: str) -> Run:
    """Train with a plain loop on ``adapters``: the same batches, optimiser, schedule, seed."""
    import adapters
    import torch
    import torch.nn.functional as F
    from transformers import AutoTokenizer, get_linear_schedule_with_warmup

    from registry.data import load_spec, make_batches
    from registry.runtime import autocast

    cfg = _config(SETTINGS[label], args)
    device = cfg.device
    rows = load_spec(str(data)).split("train")
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = adapters.AutoAdapterModel.from_pretrained(str(base))
    if mode == "fusion-3":
        names = ["m0", "m1", "m2"]
        for n in names:
            model.add_adapter(n, config=adapters.SeqBnConfig(reduction_factor=16))
        model.add_adapter_fusion(adapters.Fuse(*names))
        model.add_classification_head("head", num_labels=3, layers=2)
        model.train_adapter_fusion(adapters.Fuse(*names), unfreeze_adapters=False)
        for p in model.heads.parameters():
            p.requires_grad = True
    else:
        model.add_adapter("a", config=adapters.SeqBnConfig(reduction_factor=16))
        model.add_classification_head("a", num_labels=3, layers=2)
        model.train_adapter("a")
        model.set_active_adapters("a")
        for p in model.heads.parameters():
            p.requires_grad = True
        if mode == "full":
            for p in model.parameters():
                p.requires_grad = True
    model.to(device)
    model.train()
    gpu = device.startswith("cuda")
    batches, stats = make_batches(
        tokenizer, rows, LABELS, batch_size=cfg.batch_size, max_length=cfg.max_length,
        shuffle=True, seed=0, max_tokens=cfg.max_tokens, pin_memory=gpu,
    )  # fmt: skip
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4 if mode == "full" else 1e-3, weight_decay=0.01)
    steps = args.epochs * len(batches)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps), steps)
    rng = random.Random(0)
    loop_s = 0.0
    for _ in range(args.epochs):
        order = list(range(len(batches)))
        rng.shuffle(order)
        _sync(device)
        t0 = time.perf_counter()
        for i in order:
            batch = {k: v.to(device, non_blocking=True) for k, v in batches[i].items()}
            labels = batch.pop("labels")
            with autocast(device, cfg.precision):
                logits = model(**batch).logits
                loss = F.cross_entropy(logits.float(), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        _sync(device)
        loop_s += time.perf_counter() - t0
    run = Run(
        "raw", mode, label, len(rows) * args.epochs, stats.real_tokens * args.epochs, loop_s,
        precision=cfg.precision, batch=_batch(cfg),
    )  # fmt: skip
    if mode == "adapter":
        run.extra["inference"] = raw_inference(model, tokenizer, rows, cfg, device)
    del model, opt
    if gpu:
        torch.cuda.empty_cache()
    return run


def raw_inference(model: Any, tokenizer: Any, rows: list[Any], cfg: Any, device: str) -> Run:
    """Time no-grad forward passes over ``rows`` in the registry's evaluation batches."""
    import torch

    from registry.data import make_batches
    from registry.fitting import eval_batching
    from registry.runtime import autocast

    size, tokens = eval_batching(device)
    batches, stats = make_batches(
        tokenizer, rows, LABELS, batch_size=size, max_length=cfg.max_length, shuffle=False,
        seed=0, max_tokens=tokens, pin_memory=device.startswith("cuda"),
    )  # fmt: skip
    model.eval()
    _sync(device)
    t0 = time.perf_counter()
    out = []
    with torch.inference_mode(), autocast(device, cfg.precision):
        for batch in batches:
            moved = {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "labels"}
            out.append(torch.softmax(model(**moved).logits.float(), dim=-1))
    torch.cat(out).tolist()
    _sync(device)
    return Run(
        "raw", "inference", "eval batches", len(rows), stats.real_tokens,
        time.perf_counter() - t0, precision=cfg.precision, batch=f"{size}",
    )  # fmt: skip


# ---------------------------------------------------------------------------- report
def encoder_params(shape: dict[str, int]) -> int:
    """Return the parameters of the encoder layers (embeddings excluded)."""
    h, i = shape["hidden"], shape["intermediate"]
    per_layer = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # attention, FFN, 2 LayerNorms
    return shape["layers"] * per_layer


def peak_tflops(args: argparse.Namespace) -> tuple[float | None, str]:
    """Return the chip's dense bf16 peak (TFLOP/s) and the chip's name."""
    if args.peak_tflops:
        return args.peak_tflops, "given"
    if not args.device.startswith("cuda"):
        return None, "cpu"
    import torch

    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, name
    return None, name


FLOPS_PER_TOKEN = {"full": 6, "adapter": 4, "fusion-3": 4, "inference": 2}


def report(runs: list[Run], args: argparse.Namespace, shape: dict[str, int]) -> str:
    """Return the results as markdown."""
    import torch

    peak, chip = peak_tflops(args)
    n = encoder_params(shape)
    lines = [
        f"# GPU benchmark ({chip}; torch {torch.__version__}; {args.rows} rows x "
        f"{args.epochs} epochs; encoder {shape}, {n / 1e6:.1f}M encoder parameters)",
        "",
        "| path | what | settings | precision | batch | ex/s | real tok/s | MFU | loop s | "
        "wall s | outside loop s |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        flops = FLOPS_PER_TOKEN[r.mode] * n * r.tok_per_s
        mfu = f"{100 * flops / (peak * 1e12):.1f}%" if peak else "n/a"
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else ""
        fixed = f"{r.extra['fixed_s']:.1f}" if "fixed_s" in r.extra else ""
        lines.append(
            f"| {r.path} | {r.mode} | {r.settings} | {r.precision} | {r.batch} | "
            f"{r.ex_per_s:,.0f} | {r.tok_per_s:,.0f} | {mfu} | {r.loop_s:.2f} | {wall} | {fixed} |"
        )
    lines += ["", "Registry ÷ raw at identical settings (training loop ex/s):", ""]
    for r in runs:
        if r.path != "registry":
            continue
        twin = next(
            (x for x in runs if x.path == "raw" and x.mode == r.mode and x.settings == r.settings
             and x.precision == r.precision),
            None,
        )  # fmt: skip
        if twin is not None and twin.ex_per_s:
            lines.append(
                f"- {r.mode}, {r.settings} ({r.precision}): {r.ex_per_s / twin.ex_per_s:.3f}"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run every configuration once and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--rows", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="bert-base")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (registry)")
    parser.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the chip")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="small encoder, 64 rows, 1 epoch")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.epochs, args.shape, args.max_length = 64, 1, "quick", 64
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    shape = SHAPES[args.shape]
    runs: list[Run] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        root = Path(tmp)
        base = build_encoder(root / "encoder", shape)
        data = write_pairs(root / "data", args.rows)
        home = root / "home"
        # Warm-up (untimed): the first run in a process pays for kernel selection and caches.
        warm = argparse.Namespace(**{**vars(args), "epochs": 1})
        for label in SETTINGS:
            raw_train(warm, base, data, "adapter", label)
        for label in SETTINGS:
            for mode in ("adapter", "full"):
                runs.append(raw_train(args, base, data, mode, label))
                if mode == "adapter":
                    runs.append(runs[-1].extra.pop("inference"))
                _log(runs[-1])
            slug = "old" if label.startswith("b32") else "gpu"
            runs.append(registry_train(args, base, data, home, f"adapter-{slug}", label))
            _log(runs[-1])
        members = []
        for i in range(3):
            small = argparse.Namespace(**{**vars(args), "epochs": 1})
            members.append(registry_train(small, base, data, home, f"m{i}", "GPU defaults"))
        refs = [m.extra["ref"] for m in members]
        for label in SETTINGS:
            runs.append(raw_train(args, base, data, "fusion-3", label))
            _log(runs[-1])
            runs.append(registry_fuse(args, data, home, refs, label))
            _log(runs[-1])
        runs += registry_inference(args, data, home, refs[0])
    text = report(runs, args, shape)
    text += f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s.\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


def _log(run: Run) -> None:
    print(
        f"{run.path:8s} {run.mode:9s} {run.settings:12s} {run.precision:4s} {run.batch:18s} "
        f"{run.ex_per_s:10,.0f} ex/s",
        flush=True,
    )


if __name__ == "__main__":
    main()
