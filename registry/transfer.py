"""Related-task transfer: a new task's first adapter starts from a task with the same labels.

When the first adapter of a task is trained (no ``init_from``), and another task on the same
base model has exactly the same label names and a ``production`` alias, the new adapter (and
its head: the labels are equal) starts from that task's production adapter (a fusion in
production: its newest member adapter of that task), recorded as a ``warm_started_from``
edge, and trains on its own train rows plus about as many of the related task's recorded train
rows (a replay mix, :mod:`registry.replay`). The validation split, which picks the epoch, is
the new data's only. Nothing registered changes: the related adapter is only read.

With several such tasks the most recently promoted one (its alias moved last) is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import entities as E
from .data import Example
from .errors import NotFound
from .recording import same_base
from .replay import mix_rows, recorded_train_rows
from .store import Registry

if TYPE_CHECKING:
    from .backbone import BaseInfo

PRODUCTION = "production"


@dataclass(frozen=True)
class Transfer:
    """Where a new task's first adapter starts from, and what it replays."""

    adapter: E.AdapterVersion
    task: str
    #: the new train rows plus the replayed ones, shuffled: what the fit trains on
    rows: list[Example]
    #: replayed rows per source of the related task
    counts: dict[str, int]
    #: the other tasks that qualified (not chosen: promoted earlier)
    passed_over: list[str] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        """Return how many of the related task's rows are in the mix."""
        return sum(self.counts.values())

    def line(self) -> str:
        """Return the line ``train`` prints about it."""
        text = (
            f"transfer: starting from {self.adapter.ref} (same labels) and replaying "
            f"{self.replayed} of its train rows"
        )
        if not self.counts:
            text += " (none of its recorded train data can be loaded unchanged)"
        if self.passed_over:
            text += (
                f"; chosen over {', '.join(self.passed_over)} as the most recently promoted "
                "task with these labels"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {
            "from": self.adapter.ref,
            "task": self.task,
            "replayed_rows": self.replayed,
            "replayed_per_source": dict(self.counts),
            "train_rows": len(self.rows),
            "passed_over": list(self.passed_over),
            "line": self.line(),
        }


def _production_adapter(registry: Registry, alias: E.Alias) -> E.AdapterVersion | None:
    """Return the adapter version ``alias`` stands for (a fusion: its newest own member)."""
    try:
        entity = registry.resolve(f"{alias.task}:{alias.alias}")
    except NotFound:
        return None
    if isinstance(entity, E.AdapterVersion):
        return entity
    if isinstance(entity, E.Fusion):
        own = [registry.get_adapter_version(i) for i in entity.member_ids]
        own = [v for v in own if v.task == alias.task]
        return max(own, key=lambda v: v.id) if own else None
    return None


def related_adapters(
    registry: Registry, task: str, labels: list[str], kind: str, info: BaseInfo
) -> list[tuple[E.Alias, E.AdapterVersion]]:
    """Return (production alias, adapter) of every other task with exactly ``labels``, of the
    same kind, on the same base model; most recently promoted first."""
    found = []
    for alias in registry.aliases():
        if alias.alias != PRODUCTION or alias.task == task:
            continue
        other = registry.get_task(alias.task)
        if list(other.label_names) != labels or other.kind != kind:
            continue
        if other.base_model_id is None:
            continue
        if not same_base(registry.get_base_model(other.base_model_id), info):
            continue
        adapter = _production_adapter(registry, alias)
        if adapter is not None and adapter.status != "deleted":
            found.append((alias, adapter))
    return sorted(found, key=lambda p: (p[0].updated_at, p[0].id), reverse=True)


def is_first_adapter(registry: Registry, task: str) -> bool:
    """Return True when ``task`` has no adapter version yet (or does not exist yet)."""
    try:
        registry.get_task(task)
    except NotFound:
        return True
    return not registry.list_entities(task=task, kind="adapter")


def plan_transfer(
    registry: Registry,
    task: str,
    labels: list[str],
    kind: str,
    info: BaseInfo,
    new_train: list[Example],
    seed: int,
) -> Transfer | None:
    """Return the transfer for the first adapter of ``task``, or None (no related task, or the
    task already has adapters). Reads only."""
    if not is_first_adapter(registry, task):
        return None
    related = related_adapters(registry, task, labels, kind, info)
    if not related:
        return None
    (alias, adapter), others = related[0], related[1:]
    earlier = recorded_train_rows(registry, adapter.task_id)
    if earlier:
        rows, counts = mix_rows(new_train, earlier, seed)
    else:
        rows, counts = list(new_train), {}
    return Transfer(adapter, alias.task, rows, counts, [a.task for a, _ in others])
