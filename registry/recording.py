"""What the registry records about a training run, shared by adapter and fusion training.

Before training: :func:`check_task` (does the data fit the task as registered, on the same
base weights?). After it:
:func:`evaluation_metrics` (dataset snapshots and metric rows), :func:`training_run` (a typed
:class:`~registry.store.TrainingRunIn`), and :func:`verify_untouched` (the proof that no earlier
artifact changed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import entities as E
from .data import (
    VALIDATION_SPLIT,
    DataBundle,
    TrainingRows,
    fingerprint,
    infer_label_names,
    label_distribution,
)
from .errors import InvalidInput, NotFound
from .fitting import FitResult
from .runtime import library_versions
from .store import MetricIn, Registry, TrainingRunIn

if TYPE_CHECKING:
    from .backbone import BaseInfo


@dataclass(frozen=True)
class TaskSchema:
    """A task's label set, text kind and text fields (registered, or as the data says)."""

    label_names: list[str]
    kind: str
    fields: list[str]


def same_base(row: E.BaseModel, info: BaseInfo | E.BaseModel) -> bool:
    """True when a registered base model and a resolved (or registered) one are the same
    weights."""
    if isinstance(info, E.BaseModel) and info.id == row.id:
        return True
    if row.weights_sha256 is not None and info.weights_sha256 is not None:
        return row.weights_sha256 == info.weights_sha256
    return row.revision == info.revision


def ensure_base_row(
    registry: Registry, info: BaseInfo, base_hub_id: str | None = None
) -> E.BaseModel:
    """Return the base model row of ``info`` (found by its content), creating it if needed.

    ``base_hub_id`` (``OWNER/NAME[@COMMIT]``): the Hub model a local folder is a copy of.
    """
    hub_id, hub_commit = (info.name, info.revision) if info.local_path is None else (None, None)
    if base_hub_id is not None:
        from .hub.cards import parse_hub_id

        hub_id, hub_commit = parse_hub_id(base_hub_id)
    return registry.ensure_base_model(
        info.location,
        info.revision,
        info.architecture,
        info.hidden_size,
        info.num_layers,
        weights_sha256=info.weights_sha256,
        hub_id=hub_id,
        hub_commit=hub_commit,
    )


def check_task(
    registry: Registry, task: str, bundle: DataBundle, info: BaseInfo | E.BaseModel
) -> TaskSchema:
    """Check data against the task (if registered) without writing; return its schema.

    Raises:
        InvalidInput: a different kind or base model than the registered task.
    """
    kind = "pair" if bundle.pair else "single"
    fields = ["text_a", "text_b"] if bundle.pair else ["text"]
    try:
        existing = registry.get_task(task)
    except NotFound:
        return TaskSchema(infer_label_names(bundle), kind, fields)
    if existing.kind != kind:
        raise InvalidInput(
            f"Task {task!r} is a {existing.kind}-text task, but the data is {kind}-text.",
            hint="Check --text-fields, or use another task name.",
        )
    if existing.base_model_id is not None:
        base = registry.get_base_model(existing.base_model_id)
        if not same_base(base, info):
            raise InvalidInput(
                f"Task {task!r} is registered on base model {base.name} (revision "
                f"{base.revision[:12]}), not {info.name} (revision {info.revision[:12]}): "
                "adapters of one task must share a base model (the same weight files).",
                hint=f"Train with --base {base.name}, or use another task name.",
            )
    return TaskSchema(list(existing.label_names), kind, fields)


def evaluation_metrics(
    registry: Registry,
    task: E.Task,
    source: str,
    eval_sets: dict[str, list[Any]],
    metrics: dict[str, dict[str, float]],
    result: FitResult,
) -> list[MetricIn]:
    """Record a dataset snapshot per scored split; return the metric rows of the new version.

    The rows: every metric of every scored split (tied to its snapshot), then the training loss
    and validation accuracy of every epoch.
    """
    rows: list[MetricIn] = []
    for split, examples in eval_sets.items():
        ds = registry.record_dataset(
            task.id,
            source,
            split,
            len(examples),
            fingerprint(examples),
            label_distribution(examples),
        )
        rows.extend(
            MetricIn(metric, value, split, ds.id) for metric, value in metrics[split].items()
        )
    for log in result.history:
        rows.append(MetricIn("train_loss", log.train_loss, "train", None, log.epoch))
        if log.val_accuracy is not None:
            rows.append(MetricIn("accuracy", log.val_accuracy, VALIDATION_SPLIT, None, log.epoch))
    return rows


def training_run(
    settings: dict[str, Any],
    seed: int,
    rows: TrainingRows,
    label_names: Sequence[str],
    result: FitResult,
    device: str,
    **extra: Any,
) -> TrainingRunIn:
    """Return the training run to record: settings, what the fit did, libraries, speed."""
    return TrainingRunIn(
        hyperparams={
            **settings,
            "validation": rows.validation_how,
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "train_examples": len(rows.train),
            "steps": result.steps,
            "label_names": list(label_names),
            **extra,
        },
        seed=seed,
        library_versions=library_versions(),
        wall_time_s=result.wall_time_s,
        tokens_per_s=result.tokens_per_s,
        device=device,
    )


def verify_untouched(registry: Registry, earlier: dict[str, str]) -> int:
    """Re-hash every artifact that existed before training; raise if any byte changed.

    Raises:
        IntegrityError: an earlier artifact's bytes differ from its sha256.
    """
    for sha, what in earlier.items():
        try:
            registry.artifacts.verify(sha, what)
        except NotFound:
            continue  # removed by someone else meanwhile; verify reports it, not our doing
    return len(earlier)
