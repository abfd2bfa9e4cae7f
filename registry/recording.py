"""What the registry records about a training run, shared by adapter and fusion training.

Before training: :func:`check_task` (does the data fit the task as registered, on the same
base weights?). After it:
:func:`evaluation_metrics` (dataset snapshots and metric rows), :func:`training_run` (a typed
:class:`~registry.store.TrainingRunIn`), and :func:`verify_untouched` (the proof that no earlier
artifact changed).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import entities as E
from .configs import FitConfig
from .data import (
    VALIDATION_SPLIT,
    DataBundle,
    TrainingRows,
    fingerprint,
    infer_label_names,
    label_distribution,
)
from .distributed import from_main, is_main
from .errors import Interrupted, InvalidInput, NotFound, RegistryError
from .fitting import FitResult
from .runtime import library_versions, pick_device, set_threads
from .store import MetricIn, Registry, TrainingRunIn
from .store.commits import committed_writes
from .store.inputs import check_task_kind

T = TypeVar("T")


if TYPE_CHECKING:
    from .backbone import BaseInfo


class MissingArtifactNote(UserWarning):
    """An artifact a row points at was gone when training re-checked the earlier ones."""


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
    info = info.with_hub_weights()  # a Hub model resolved before its download: digest it now
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
    check_task_kind(task, existing.kind, kind)
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
    """Re-hash every artifact that existed before training; return how many were re-verified.

    One that is gone is not counted: when a row still points at it, that is damage, said as a
    :class:`MissingArtifactNote` naming it (``verify`` reports it too); when no row does any
    more, it was deleted meanwhile, which is not ours to report.

    Raises:
        IntegrityError: an earlier artifact's bytes differ from its sha256.
    """
    verified = 0
    gone: list[str] = []
    for sha, what in earlier.items():
        try:
            registry.artifacts.verify(sha, what)
        except NotFound:
            gone.append(sha)
            continue
        verified += 1
    if gone:
        still = registry.referenced_artifacts()
        missing = [earlier[sha] for sha in gone if sha in still]
        if missing:
            warnings.warn(
                MissingArtifactNote(
                    f"{len(missing)} earlier artifact(s) are missing: {', '.join(missing[:5])}"
                    f"{' ...' if len(missing) > 5 else ''}. Run: adapter-registry verify"
                ),
                stacklevel=2,
            )
    return verified


def register_as_one(registry: Registry, write: Callable[[], T], folders: Sequence[Path]) -> T:
    """Record everything of one command (base model, task, snapshots, the version and its rows)
    in one transaction: all of it commits, or none of it (#16 finding 9).

    ``folders``: the artifacts ``write`` publishes. Those that were not in the store before and
    that no row points at after a failure are removed again, so a failed command leaves neither
    rows nor files behind.
    """
    from sqlalchemy import exc

    from .artifacts import file_listing_digest

    new = [
        digest
        for digest in dict.fromkeys(file_listing_digest(f) for f in folders)
        if not registry.artifacts.exists(digest)
    ]
    try:
        return registry.transaction(
            lambda _session: write(), is_conflict=lambda e: isinstance(e, exc.IntegrityError)
        )
    except BaseException:
        with contextlib.suppress(RegistryError, OSError):
            referenced = registry.referenced_artifacts()
            for digest in new:
                if digest not in referenced:
                    registry.artifacts.remove(digest)
        raise


def run_and_register(
    registry: Registry,
    config: FitConfig,
    what: str,
    name: str,
    work: Callable[[str, dict[str, str] | None], T | None],
) -> T:
    """Run one training command (``train`` or ``fuse``) around ``work`` and return rank 0's outcome.

    The envelope both share: threads and device from ``config``; on rank 0 the artifacts that
    existed before (``work`` gets them, to re-verify after registering; other ranks get None);
    Ctrl-C turned into :func:`interrupted`, which says whether ``name`` was registered (``what``
    names the command in it). ``work(device, earlier)`` trains and registers; under torchrun only
    rank 0 registers and returns the outcome, which every rank then receives.
    """
    earlier = registry.referenced_artifacts() if is_main() else None
    set_threads(config.threads)
    device = pick_device(config.device)
    before = committed_writes()
    try:
        mine = work(device, earlier)
    except KeyboardInterrupt as err:
        raise interrupted(what, name, before) from err
    outcome = from_main(mine)
    assert outcome is not None
    return outcome


def interrupted(what: str, name: str, before: int) -> Interrupted:
    """Return the error for a Ctrl-C during training: whether ``name`` was registered or not
    (a commit since ``before``, the figure of :func:`committed_writes` at the start)."""
    if committed_writes() == before:
        return Interrupted(
            f"{what} was interrupted: nothing was registered.",
            hint="Run the same command again to start over.",
        )
    return Interrupted(
        f"{what} was interrupted after {name} was registered: the new version is complete, "
        "but the re-check of the earlier artifacts did not finish.",
        hint=f"Check them: adapter-registry verify (and see it: adapter-registry show {name})",
    )
