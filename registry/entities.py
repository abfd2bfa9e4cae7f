"""Plain, frozen records that the store returns. They never hold a database session."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, NoReturn


def jsonable(value: Any) -> Any:
    """Return ``value`` with datetimes as ISO 8601 UTC strings, containers copied."""
    return _jsonable(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds") + "Z"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class FrozenDict(dict[str, Any]):
    """A mapping that refuses changes: what entities hold instead of a dict.

    Still a ``dict`` to ``json``, SQLAlchemy's JSON columns and ``==``, so records serialise and
    compare as before; every change in place raises ``TypeError``. Copy it to edit:
    ``dict(version.config)``.
    """

    __slots__ = ()

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("An entity's mapping is read-only; copy it first: dict(value).")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> FrozenDict:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenDict:
        return FrozenDict(copy.deepcopy(dict(self), memo))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (dict(self),))


class FrozenList(list[Any]):
    """A sequence that refuses changes: the lists inside an entity's mappings.

    Still a ``list`` to ``json``, ``==`` and ``isinstance`` (a recorded ``[0, 1]`` still equals
    ``[0, 1]``); every change in place raises ``TypeError``. Copy it to edit: ``list(value)``.
    """

    __slots__ = ()

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise TypeError("An entity's list is read-only; copy it first: list(value).")

    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse

    def __copy__(self) -> FrozenList:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> FrozenList:
        return FrozenList(copy.deepcopy(list(self), memo))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenList, (list(self),))


def frozen(value: Any) -> Any:
    """Return ``value`` with every mapping a :class:`FrozenDict` and every list a
    :class:`FrozenList`, deeply (tuples stay tuples, their items frozen)."""
    if isinstance(value, FrozenDict | FrozenList):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(frozen(v) for v in value)
    if isinstance(value, tuple):
        return tuple(frozen(v) for v in value)
    return value


def _freeze(record: Any, *names: str) -> None:
    """Freeze the named fields of a frozen dataclass in place (from ``__post_init__``)."""
    for name in names:
        object.__setattr__(record, name, frozen(getattr(record, name)))


class _Record:
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (datetimes as ISO 8601 UTC)."""
        # Shallow on purpose: dataclasses.asdict deep-copies every value, which dominated
        # `list --json` on large registries; _jsonable copies the containers it meets.
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class BaseModel(_Record):
    """A frozen encoder at one revision."""

    id: int
    name: str
    revision: str
    architecture: str
    hidden_size: int
    num_layers: int
    created_at: datetime
    #: sha256 of the weight files: any folder holding them is this base model
    weights_sha256: str | None = None
    hub_id: str | None = None
    hub_commit: str | None = None


@dataclass(frozen=True)
class Task(_Record):
    """A classification task with a fixed, ordered label set."""

    id: int
    name: str
    kind: str
    label_names: tuple[str, ...]
    text_fields: tuple[str, ...]
    base_model_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class Dataset(_Record):
    """A fingerprinted snapshot of one data split."""

    id: int
    task_id: int
    source: str
    split: str
    row_count: int
    fingerprint: str
    label_distribution: Mapping[str, int]
    created_at: datetime

    def __post_init__(self) -> None:
        _freeze(self, "label_distribution")


@dataclass(frozen=True)
class TrainingRun(_Record):
    """How something was trained."""

    id: int
    kind: str
    hyperparams: Mapping[str, Any]
    seed: int | None
    library_versions: Mapping[str, str]
    wall_time_s: float | None
    tokens_per_s: float | None
    device: str | None
    created_at: datetime

    def __post_init__(self) -> None:
        _freeze(self, "hyperparams", "library_versions")


@dataclass(frozen=True)
class AdapterVersion(_Record):
    """One immutable adapter (+ head) version."""

    id: int
    name: str
    version: int
    task: str
    task_id: int
    base_model_id: int
    method: str
    config: Mapping[str, Any]
    config_hash: str
    artifact_sha256: str
    artifact_size: int
    trainable_params: int
    training_run_id: int | None
    profile_sha256: str | None
    status: str
    created_at: datetime
    kind: Literal["adapter"] = "adapter"

    def __post_init__(self) -> None:
        _freeze(self, "config")

    @property
    def ref(self) -> str:
        """Return the canonical reference ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def uid(self) -> str:
        """Return the unambiguous id form (``a12``)."""
        return f"a{self.id}"


@dataclass(frozen=True)
class Fusion(_Record):
    """One immutable AdapterFusion (+ head) over ordered adapter versions."""

    id: int
    name: str
    version: int
    task: str
    task_id: int
    base_model_id: int
    config: Mapping[str, Any]
    head: Mapping[str, Any]
    members: tuple[str, ...]
    member_ids: tuple[int, ...]
    artifact_sha256: str
    artifact_size: int
    trainable_params: int
    training_run_id: int | None
    status: str
    created_at: datetime
    kind: Literal["fusion"] = "fusion"

    def __post_init__(self) -> None:
        _freeze(self, "config", "head")

    @property
    def ref(self) -> str:
        """Return the canonical reference ``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def uid(self) -> str:
        """Return the unambiguous id form (``f3``)."""
        return f"f{self.id}"


Entity = AdapterVersion | Fusion


@dataclass(frozen=True)
class Metric(_Record):
    """One measured value."""

    id: int
    entity_kind: str
    entity_id: int
    dataset_id: int | None
    split: str | None
    name: str
    value: float
    step: int | None
    created_at: datetime


@dataclass(frozen=True)
class LineageEdge(_Record):
    """A parent → child edge."""

    id: int
    parent_kind: str
    parent_id: int
    child_kind: str
    child_id: int
    relation: str
    created_at: datetime


@dataclass(frozen=True)
class DriftReport(_Record):
    """The outcome of one drift check."""

    id: int
    task_id: int
    reference_adapter_version_id: int | None
    new_dataset_id: int | None
    alpha: float
    tests: tuple[Mapping[str, Any], ...]
    drift: bool
    created_at: datetime

    def __post_init__(self) -> None:
        _freeze(self, "tests")


@dataclass(frozen=True)
class Promotion(_Record):
    """One step of a task's production history (``update`` promoted this model), or a candidate
    the gate refused (``outcome == "refused"``, at the step it would have taken)."""

    id: int
    task_id: int
    entity_kind: str
    entity_id: int
    step: int
    dataset_id: int | None
    alias: str
    created_at: datetime
    #: The metric the gate compared (None: not gated, e.g. the step-0 model).
    gate_metric: str | None = None
    gate_reason: str | None = None
    outcome: str = "promoted"

    @property
    def promoted(self) -> bool:
        """Return True for a production step, False for a refused candidate."""
        return self.outcome == "promoted"


@dataclass(frozen=True)
class Alias(_Record):
    """``task:alias`` → target."""

    id: int
    task: str
    alias: str
    target_kind: str
    target_id: int
    target_ref: str
    updated_at: datetime


@dataclass(frozen=True)
class AliasEvent(_Record):
    """One change of ``task:alias``: who, when, the old target and the new (None: deleted)."""

    id: int
    task: str
    alias: str
    old_ref: str | None
    new_ref: str | None
    actor: str
    created_at: datetime


@dataclass(frozen=True)
class HubLink(_Record):
    """A push or pull, pinned by commit."""

    id: int
    entity_kind: str
    entity_id: int
    repo_id: str
    commit_sha: str
    revision: str | None
    direction: str
    artifact_sha256: str | None
    created_at: datetime


@dataclass
class VerifyReport(_Record):
    """What ``verify`` checked and what it found wrong."""

    artifacts_checked: int = 0
    rows_checked: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return True when nothing is wrong (orphans are reported but are not damage)."""
        return not self.problems
