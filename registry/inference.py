"""Evaluate and predict with any registered adapter version or fusion."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from . import entities as E
from .data import (
    VALIDATION_SPLIT,
    Example,
    fingerprint,
    label_distribution,
    load_spec,
    spec_label,
)
from .errors import InvalidInput
from .loader import Loaded, load_entity
from .progress import bar
from .store import MetricIn, Registry


def _check_pairing(entity: E.Entity, task: E.Task, pair: bool) -> None:
    if (task.kind == "pair") != pair:
        want = "text pairs (text_a/text_b)" if task.kind == "pair" else "single texts"
        raise InvalidInput(
            f"{entity.ref} is for task {task.name!r}, which takes {want}.",
            hint="Give --text-b for pair tasks, or use --text-fields to pick the columns.",
        )


def predict_examples(
    loaded: Loaded,
    examples: list[Example],
    *,
    batch_size: int | None = None,
    max_length: int = 256,
    precision: str = "fp32",
) -> list[dict[str, Any]]:
    """Return one prediction per example (label, probabilities), in input order.

    Without ``batch_size``, batches are sized for the model's device (64 rows on a CPU; large
    token-capped ones on a GPU, see :func:`registry.fitting.eval_batching`). Probabilities stay
    on the device until the last batch.
    """
    import torch

    from .data import make_batches
    from .fitting import eval_batching
    from .runtime import autocast

    device = loaded.backbone.device
    rows_per_batch, max_tokens = eval_batching(device)
    rows = [dataclasses.replace(e, label=None) for e in examples]
    batches, stats = make_batches(
        loaded.backbone.tokenizer,
        rows,
        None,
        batch_size=batch_size or rows_per_batch,
        max_length=loaded.backbone.length_for(max_length),
        shuffle=False,
        seed=0,
        max_tokens=None if batch_size else max_tokens,
        pin_memory=device.startswith("cuda"),
    )
    on_device = []
    with autocast(device, precision):
        for batch in bar(batches, "predict"):
            on_device.append(torch.softmax(loaded.backbone.logits(batch).float(), dim=-1))
    all_probs = torch.cat(on_device).tolist() if on_device else []
    out: list[dict[str, Any] | None] = [None] * len(rows)
    offsets = 0
    for indices in stats.batch_indices:
        chunk = all_probs[offsets : offsets + len(indices)]
        offsets += len(indices)
        for row_probs, idx in zip(chunk, indices, strict=True):
            best = max(range(len(row_probs)), key=row_probs.__getitem__)
            out[idx] = {
                "label": loaded.label_names[best],
                "scores": dict(zip(loaded.label_names, row_probs, strict=True)),
            }
    return [o for o in out if o is not None]


def held_out_split(splits: Iterable[str]) -> str:
    """Return the split ``predict --data`` reads by default: test, else validation, else the
    first (a single file's only split)."""
    names = list(splits)
    for name in ("test", VALIDATION_SPLIT):
        if name in names:
            return name
    return names[0]


def evaluate_entity(
    registry: Registry,
    ref: str,
    data: Any,
    *,
    split: str = "validation",
    record: bool = True,
    text_fields: tuple[str, ...] | None = None,
    label_field: str = "label",
    loaded: Loaded | None = None,
    step: int | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """Evaluate an adapter version or fusion on a labelled split; record the metrics.

    Returns accuracy, macro-F1 and per-class F1. With ``record`` the split is stored as a
    dataset snapshot and the metrics as rows of the entity. ``device``: where the model runs
    when ``loaded`` is not given (``cpu``, ``cuda``, ``cuda:N``).
    """
    from .evaluate import classification_metrics

    entity = registry.resolve(ref)
    task = registry.get_task_by_id(entity.task_id)
    bundle = load_spec(
        data, text_fields=text_fields, label_field=label_field, label_names=list(task.label_names)
    )
    _check_pairing(entity, task, bundle.pair)
    rows = bundle.split(split)
    if any(e.label is None for e in rows):
        raise InvalidInput(
            f"Split {split!r} has unlabelled rows: nothing to score against.",
            hint="Evaluate on a labelled split (--split).",
        )
    loaded = loaded or load_entity(registry, entity, device)
    preds = predict_examples(loaded, rows)
    label_ids = {name: i for i, name in enumerate(task.label_names)}
    metrics = classification_metrics(
        [label_ids[str(e.label)] for e in rows],
        [label_ids[p["label"]] for p in preds],
        task.label_names,
    )
    if record:
        source = spec_label(data)
        ds = registry.record_dataset(
            task.id, source, split, len(rows), fingerprint(rows), label_distribution(rows)
        )
        registry.log_metrics(
            entity, [MetricIn(k, v, split, ds.id, step) for k, v in metrics.items()]
        )
    return metrics


def predict(
    registry: Registry,
    ref: str,
    *,
    texts: list[tuple[str, str | None]] | None = None,
    data: Any = None,
    split: str | None = None,
    text_fields: tuple[str, ...] | None = None,
    device: str = "cpu",
) -> list[dict[str, Any]]:
    """Predict labels for given texts (``(text_a, text_b or None)``) or a data spec's split,
    with the model on ``device`` (``cpu``, ``cuda``, ``cuda:N``)."""
    entity = registry.resolve(ref)
    task = registry.get_task_by_id(entity.task_id)
    if texts is not None:
        for a, b in texts:
            if not a.strip() or (b is not None and not b.strip()):
                raise InvalidInput(
                    "Empty text: give some text to classify.",
                    hint='e.g. --text "Great blender, works well"',
                )
        examples = [Example(a, b, None) for a, b in texts]
        pair = any(b is not None for _, b in texts)
    elif data is not None:
        bundle = load_spec(data, text_fields=text_fields, require_labels=False)
        chosen = split or held_out_split(bundle.splits)
        examples = bundle.split(chosen)
        pair = bundle.pair
    else:
        raise InvalidInput("Nothing to predict.", hint="Give --text TEXT or --data SPEC.")
    _check_pairing(entity, task, pair)
    loaded = load_entity(registry, entity, device)
    return predict_examples(loaded, examples)
