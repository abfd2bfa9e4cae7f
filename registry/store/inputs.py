"""What callers hand the store: names, metric rows, lineage edges, training runs. Pure."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInput

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
ENTITY_KINDS = ("adapter", "fusion")
NODE_KINDS = ("adapter", "fusion", "drift", "hub", "dataset")
RELATIONS = ("trained_after_drift", "warm_started_from", "fused_from", "pulled_from_hub")
STATUSES = ("active", "deprecated")
#: The status of a deleted version: its row stays as a tombstone (lineage keeps its edges and
#: label), nothing resolves to it, and its files are left to ``gc``.
DELETED = "deleted"
#: Orphaned artifacts younger than this are left alone by ``gc``: a concurrent writer may have
#: published the files and not yet committed the row that points at them.
GC_GRACE_SECONDS = 3600.0


def validate_name(name: str, what: str = "name") -> str:
    """Return ``name`` if it is a safe registry name, else raise InvalidInput."""
    if not name or not name.strip():
        raise InvalidInput(f"The {what} is empty.", hint="Use letters, digits, '.', '_' or '-'.")
    if "/" in name or "\\" in name or ".." in name or not NAME_RE.match(name):
        raise InvalidInput(
            f"Invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit (no path separators, no '..', no '@' or ':').",
            hint="Pick another name, e.g. sentiment-books",
        )
    return name


def check_task_kind(task: str, registered: str, kind: str) -> None:
    """Refuse data of another kind (single- or pair-text) than ``task`` is registered as."""
    if registered != kind:
        raise InvalidInput(
            f"Task {task!r} is a {registered}-text task, but the data is {kind}-text.",
            hint="Check --text-fields, or use another task name.",
        )


def config_hash(config: dict[str, Any]) -> str:
    """Return the sha256 of a config's canonical JSON."""
    return hashlib.sha256(
        json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


@dataclass(frozen=True)
class MetricIn:
    """A metric to record with a new version."""

    name: str
    value: float
    split: str | None = None
    dataset_id: int | None = None
    step: int | None = None


@dataclass(frozen=True)
class EdgeIn:
    """A lineage edge to a new version from an existing parent."""

    parent_kind: str
    parent_id: int
    relation: str


@dataclass(frozen=True)
class TrainingRunIn:
    """How a new version was trained: recorded with it as its training run."""

    hyperparams: dict[str, Any]
    seed: int | None
    library_versions: dict[str, str]
    wall_time_s: float | None
    tokens_per_s: float | None
    device: str | None

    @classmethod
    def coerce(cls, run: TrainingRunIn | dict[str, Any]) -> TrainingRunIn:
        """Return ``run`` as a :class:`TrainingRunIn` (dicts come from staged Hub downloads)."""
        if isinstance(run, TrainingRunIn):
            return run
        return cls(
            hyperparams=dict(run.get("hyperparams", {})),
            seed=run.get("seed"),
            library_versions=dict(run.get("library_versions", {})),
            wall_time_s=run.get("wall_time_s"),
            tokens_per_s=run.get("tokens_per_s"),
            device=run.get("device"),
        )
