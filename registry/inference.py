"""Evaluate and predict with any registered adapter version or fusion."""

from __future__ import annotations

import dataclasses
from typing import Any

from . import entities as E
from .data import Example, fingerprint, label_distribution, load_spec, spec_label
from .errors import InvalidInput
from .loader import Loaded, load_entity
from .store import MetricIn, Registry


def _check_pairing(entity: E.Entity, task: E.Task, pair: bool) -> None:
    if (task.kind == "pair") != pair:
        want = "text pairs (text_a/text_b)" if task.kind == "pair" else "single texts"
        raise InvalidInput(
            f"{entity.ref} is for task {task.name!r}, which takes {want}.",
            hint="Give --text-b for pair tasks, or use --text-fields to pick the columns.",
        )


def predict_examples(
    loaded: Loaded, examples: list[Example], *, batch_size: int = 64, max_length: int = 256
) -> list[dict[str, Any]]:
    """Return one prediction per example (label, probabilities), in input order."""
    import torch

    from .data import make_batches

    rows = [dataclasses.replace(e, label=None) for e in examples]
    batches, stats = make_batches(
        loaded.backbone.tokenizer,
        rows,
        None,
        batch_size=batch_size,
        max_length=loaded.backbone.length_for(max_length),
        shuffle=False,
        seed=0,
    )
    out: list[dict[str, Any] | None] = [None] * len(rows)
    for batch, indices in zip(batches, stats.batch_indices, strict=True):
        probs = torch.softmax(loaded.backbone.logits(batch).float(), dim=-1)
        for row_probs, idx in zip(probs.tolist(), indices, strict=True):
            best = max(range(len(row_probs)), key=row_probs.__getitem__)
            out[idx] = {
                "label": loaded.label_names[best],
                "scores": dict(zip(loaded.label_names, row_probs, strict=True)),
            }
    return [o for o in out if o is not None]


def evaluate_entity(
    registry: Registry,
    ref: str,
    data: Any,
    *,
    split: str = "validation",
    record: bool = True,
    text_fields: tuple[str, ...] | None = None,
    loaded: Loaded | None = None,
    step: int | None = None,
) -> dict[str, float]:
    """Evaluate an adapter version or fusion on a labelled split; record the metrics.

    Returns accuracy, macro-F1 and per-class F1. With ``record`` the split is stored as a
    dataset snapshot and the metrics as rows of the entity.
    """
    from .evaluate import classification_metrics

    entity = registry.resolve(ref)
    task = registry.get_task_by_id(entity.task_id)
    bundle = load_spec(data, text_fields=text_fields, label_names=list(task.label_names))
    _check_pairing(entity, task, bundle.pair)
    rows = bundle.split(split)
    if any(e.label is None for e in rows):
        raise InvalidInput(
            f"Split {split!r} has unlabelled rows: nothing to score against.",
            hint="Evaluate on a labelled split (--split).",
        )
    loaded = loaded or load_entity(registry, entity)
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
) -> list[dict[str, Any]]:
    """Predict labels for given texts (``(text_a, text_b or None)``) or a data spec's split."""
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
        chosen = split or next(iter(bundle.splits))
        examples = bundle.split(chosen)
        pair = bundle.pair
    else:
        raise InvalidInput("Nothing to predict.", hint="Give --text TEXT or --data SPEC.")
    _check_pairing(entity, task, pair)
    loaded = load_entity(registry, entity)
    return predict_examples(loaded, examples)
