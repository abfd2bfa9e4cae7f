"""Step 5: score the candidate and the current model on every validation snapshot of the task.

``accuracy`` metric rows with ``split="validation"`` and a ``dataset_id`` are the score of an
entity on that snapshot (``macro_f1`` rows likewise, when the gate compares macro-F1).
Entities are immutable, so one row per (entity, dataset) is the value for ever (``step`` is the
update that measured it); only missing cells are evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import entities as E
from ..data import DataBundle, Example, fingerprint, load_spec, make_batches, split_validation
from ..errors import RegistryError
from ..fitting import evaluate_batches
from ..store import MetricIn, Registry
from .common import MATRIX_METRIC, MATRIX_SPLIT, domain_name, matrix_datasets

#: Batch size when scoring a model on a validation snapshot.
EVAL_BATCH_SIZE = 64


@dataclass
class Column:
    """One validation snapshot of the task: a column of the accuracy matrix."""

    dataset: E.Dataset
    name: str
    examples: list[Example] | None
    note: str = ""


@dataclass
class Score:
    """Candidate vs. incumbent accuracy on one validation snapshot."""

    column: str
    dataset_id: int
    candidate: float | None
    incumbent: float | None
    new: bool
    #: the snapshot's validation rows (the gate's noise allowance); None when not known
    rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "column": self.column,
            "dataset_id": self.dataset_id,
            "candidate": self.candidate,
            "incumbent": self.incumbent,
            "new_data": self.new,
            "rows": self.rows,
        }


def _validation_rows(
    ds: E.Dataset, seeds: list[int], loaded: Mapping[str, DataBundle]
) -> tuple[list[Example] | None, str]:
    """Reload a validation snapshot from its source; None (with why) if it cannot be matched."""
    bundle = loaded.get(ds.source)
    if bundle is None:
        try:
            bundle = load_spec(ds.source)
        except RegistryError as err:
            return None, f"cannot reload {ds.source}: {err}"
    candidates = []
    if "validation" in bundle.splits:
        candidates.append(bundle.splits["validation"])
    if "train" in bundle.splits:
        candidates.extend(split_validation(bundle, s)[1] for s in dict.fromkeys(seeds))
    for rows in candidates:
        if rows and fingerprint(rows) == ds.fingerprint:
            return rows, ""
    return None, f"{ds.source} changed since it was recorded (fingerprint differs)"


def recorded_seeds(registry: Registry, task: E.Task) -> list[int]:
    """Return the seeds of the task's recorded training runs (adapters and fusions), oldest
    first, each once."""
    seeds: list[int] = []
    for entity in registry.list_entities(task=task.name):
        run_id = getattr(entity, "training_run_id", None)
        if run_id is None:
            continue
        seed = registry.training_run(run_id).seed
        if seed is not None and seed not in seeds:
            seeds.append(seed)
    return seeds


def task_columns(
    registry: Registry,
    task: E.Task,
    seeds: list[int],
    loaded: Mapping[str, DataBundle] | None = None,
) -> list[Column]:
    """Return every validation snapshot of ``task`` that can be reloaded, oldest first.

    ``seeds``: the seeds that may have carved a validation split out of train; the seeds
    recorded with the task's training runs are tried after them (a snapshot carved by a run
    with another seed is found too).
    ``loaded``: data already in memory, by recorded source (not read again).
    """
    out: list[Column] = []
    names: set[str] = set()
    seeds = list(dict.fromkeys([*seeds, *recorded_seeds(registry, task)]))
    for ds in matrix_datasets(registry, task.id):
        rows, note = _validation_rows(ds, seeds, loaded or {})
        name = domain_name(ds.source)
        if name in names:
            name = f"{name}#{ds.id}"
        names.add(name)
        out.append(Column(ds, name, rows, note))
    return out


def evaluate_entity(
    registry: Registry,
    entity: E.Entity,
    columns: list[Column],
    *,
    max_length: int = 256,
    device: str = "cpu",
    metric: str = MATRIX_METRIC,
) -> dict[int, float]:
    """Return ``metric`` (accuracy) of ``entity`` on each column (dataset id → value)."""
    every = evaluate_metrics(registry, entity, columns, max_length=max_length, device=device)
    return {ds_id: scores[metric] for ds_id, scores in every.items()}


def evaluate_metrics(
    registry: Registry,
    entity: E.Entity,
    columns: list[Column],
    *,
    max_length: int = 256,
    device: str = "cpu",
) -> dict[int, dict[str, float]]:
    """Return every metric of ``entity`` on each column (dataset id → metric → value)."""
    from ..loader import load_entity

    usable = [c for c in columns if c.examples]
    if not usable:
        return {}
    loaded = load_entity(registry, entity, device)
    out: dict[int, dict[str, float]] = {}
    for col in usable:
        assert col.examples is not None
        batches, _ = make_batches(
            loaded.backbone.tokenizer,
            col.examples,
            loaded.label_names,
            batch_size=EVAL_BATCH_SIZE,
            max_length=max_length,
            shuffle=False,
            seed=0,
        )
        out[col.dataset.id] = dict(evaluate_batches(loaded.backbone, batches, loaded.label_names))
    return out


def recorded_scores(
    registry: Registry, entity: E.Entity, metric: str = MATRIX_METRIC
) -> dict[int, float]:
    """Return the recorded validation ``metric`` of an entity per dataset id (latest row wins)."""
    return {
        m.dataset_id: m.value
        for m in registry.metrics(entity)
        if m.name == metric and m.split == MATRIX_SPLIT and m.dataset_id is not None
    }


def score(
    registry: Registry,
    entity: E.Entity,
    columns: list[Column],
    step: int,
    max_length: int,
    device: str,
    metric: str = MATRIX_METRIC,
) -> dict[int, float]:
    """Return the entity's ``metric`` on every column, evaluating (recording) what is missing.

    Accuracy rows are recorded too whatever the gate's metric: they are the accuracy matrix
    that ``report`` and the UI draw.
    """
    wanted = tuple(dict.fromkeys((metric, MATRIX_METRIC)))
    known = {m: recorded_scores(registry, entity, m) for m in wanted}
    for m in wanted:  # the gate's metric first; accuracy after, only where it is missing
        todo = [c for c in columns if c.examples and c.dataset.id not in known[m]]
        if not todo:
            continue
        fresh = evaluate_entity(
            registry, entity, todo, max_length=max_length, device=device, metric=m
        )
        registry.log_metrics(
            entity, [MetricIn(m, v, MATRIX_SPLIT, ds_id, step) for ds_id, v in fresh.items()]
        )
        known[m].update(fresh)
    return {
        c.dataset.id: known[metric][c.dataset.id] for c in columns if c.dataset.id in known[metric]
    }


def compare(
    registry: Registry,
    candidate: E.Entity,
    incumbent: E.Entity,
    columns: list[Column],
    new_val: E.Dataset | None,
    *,
    step: int,
    max_length: int,
    device: str,
    metric: str = MATRIX_METRIC,
) -> list[Score]:
    """Score both models on every reloadable column; return one :class:`Score` per column."""
    cand = score(registry, candidate, columns, step, max_length, device, metric)
    inc = score(registry, incumbent, columns, step, max_length, device, metric)
    return [
        Score(
            c.name,
            c.dataset.id,
            cand.get(c.dataset.id),
            inc.get(c.dataset.id),
            new_val is not None and c.dataset.id == new_val.id,
            len(c.examples or ()) or c.dataset.row_count,
        )
        for c in columns
        if c.examples
    ]
