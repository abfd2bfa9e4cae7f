"""Small helpers shared by tests (not fixtures)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from registry.store import EdgeIn, MetricIn, Registry


def make_artifact(folder: Path, payload: bytes, name: str = "weights.bin") -> Path:
    """Write a small artifact folder (one payload file + a config) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(payload)
    (folder / "config.json").write_text('{"kind": "test"}')
    return folder


def seed_task(reg: Registry, task: str = "sentiment", base: str = "tiny-bert") -> tuple[int, int]:
    """Register a base model and a task; return (base_model_id, task_id)."""
    b = reg.ensure_base_model(base, "r" * 40, "bert", 32, 2)
    t = reg.ensure_task(task, "single", ["negative", "positive"], ["text"], b.id)
    return b.id, t.id


def add_version(
    reg: Registry,
    tmp: Path,
    name: str,
    payload: bytes,
    *,
    task: str = "sentiment",
    base_model_id: int | None = None,
    lineage: list[EdgeIn] | None = None,
    metrics: list[MetricIn] | None = None,
) -> Any:
    """Register a version of ``name`` whose weights are ``payload``."""
    if base_model_id is None:
        base_model_id = reg.get_task(task).base_model_id
    assert base_model_id is not None
    folder = make_artifact(tmp / f"src-{name}-{payload.hex()[:16]}", payload)
    return reg.register_adapter_version(
        name=name,
        task=task,
        base_model_id=base_model_id,
        method="seq_bn",
        config={"reduction_factor": 16},
        artifact_dir=folder,
        trainable_params=123,
        training_run={"seed": 0, "hyperparams": {"lr": 1e-3}},
        metrics=metrics or [],
        lineage=lineage or [],
    )


POSITIVE = ["good", "great", "love", "fun", "happy", "like"]
NEGATIVE = ["bad", "awful", "hate", "boring", "sad", "slow"]
NEUTRAL = ["the", "movie", "film", "book", "story", "plot", "acting", "it", "this", "was", "is"]


def sentiment_rows(n: int, seed: int, *, positive_share: float = 0.5) -> list[dict[str, str]]:
    """Return ``n`` learnable single-text rows with labels negative/positive."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = "positive" if rng.random() < positive_share else "negative"
        cue = POSITIVE if label == "positive" else NEGATIVE
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 8))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_splits(folder: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    """Write ``{split: rows}`` as jsonl files into ``folder`` and return it."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (folder / f"{split}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
        )
    return folder


def sentiment_data(folder: Path, seed: int = 0, n_train: int = 48, n_val: int = 24) -> Path:
    """Write a small learnable sentiment dataset (train + validation) and return its folder."""
    return write_splits(
        folder,
        {"train": sentiment_rows(n_train, seed), "validation": sentiment_rows(n_val, seed + 1)},
    )
