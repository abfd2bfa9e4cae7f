"""Step 7: promotion, and the production history it leaves (the ``promotions`` table).

Each promoted model is one row: its step (the update number), the validation snapshot of the
data learned at that step, and the alias it was promoted to. Step 0 is the production model
before the first update.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import entities as E
from ..store import Registry
from .common import MATRIX_SPLIT


@dataclass(frozen=True)
class Step:
    """One production model of a task, in order: step 0 is the one before the first update."""

    step: int
    entity: E.Entity
    dataset_id: int | None


def production_history(registry: Registry, task: str) -> list[Step]:
    """Return the task's production models in promotion order."""
    task_row = registry.get_task(task)
    steps: list[Step] = []
    for p in registry.promotions(task_row.id):
        entity = (
            registry.get_adapter_version(p.entity_id)
            if p.entity_kind == "adapter"
            else registry.get_fusion(p.entity_id)
        )
        steps.append(Step(p.step, entity, p.dataset_id))
    return sorted(steps, key=lambda s: (s.step, s.entity.created_at))


def learned_dataset(registry: Registry, entity: E.Entity) -> int | None:
    """Return the validation snapshot an entity was trained against (its first recorded one)."""
    for m in registry.metrics(entity):
        if m.split == MATRIX_SPLIT and m.dataset_id is not None:
            return m.dataset_id
    return None


def promote(
    registry: Registry,
    task: str,
    alias: str,
    candidate: E.Entity,
    incumbent: E.Entity,
    step: int,
    new_dataset_id: int | None,
    *,
    first: bool,
) -> None:
    """Record the promotion of ``candidate`` (and, on the first update, of ``incumbent`` as step
    0), then move ``TASK:alias`` to it."""
    if first:
        registry.record_promotion(incumbent, 0, learned_dataset(registry, incumbent), alias)
    registry.record_promotion(candidate, step, new_dataset_id, alias)
    registry.set_alias(task, alias, candidate.uid)
