"""Step 7: promotion, and the production history it leaves (the ``promotions`` table).

Each promoted model is one row: its step (the update number), the validation snapshot of the
data learned at that step, the alias it was promoted to and the gate's metric and reason. Step 0
is the production model before the first update (never gated). A candidate the gate refused is
a row too (``outcome="refused"``, at the step it would have taken): ``report`` draws it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import entities as E
from ..store import Registry
from ..store.inputs import DELETED
from .common import MATRIX_SPLIT


@dataclass(frozen=True)
class Step:
    """One production model of a task, in order: step 0 is the one before the first update."""

    step: int
    entity: E.Entity
    dataset_id: int | None
    #: The metric the gate compared and what it said (None: not gated, e.g. step 0).
    gate_metric: str | None = None
    gate_reason: str | None = None


def _steps(registry: Registry, task: str, outcome: str) -> list[Step]:
    task_row = registry.get_task(task)
    steps: list[Step] = []
    for p in registry.promotions(task_row.id):
        if p.outcome != outcome:
            continue
        entity = (
            registry.get_adapter_version(p.entity_id)
            if p.entity_kind == "adapter"
            else registry.get_fusion(p.entity_id)
        )
        steps.append(Step(p.step, entity, p.dataset_id, p.gate_metric, p.gate_reason))
    return sorted(steps, key=lambda s: (s.step, s.entity.created_at))


def production_history(registry: Registry, task: str) -> list[Step]:
    """Return the task's production models in promotion order."""
    return _steps(registry, task, "promoted")


def refused_candidates(registry: Registry, task: str) -> list[Step]:
    """Return the candidates the gate refused since the task's last promotion, oldest first
    (a deleted one is left out)."""
    last = max((s.step for s in production_history(registry, task)), default=0)
    return [
        s for s in _steps(registry, task, "refused") if s.step > last and s.entity.status != DELETED
    ]


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
    gate_metric: str | None = None,
    gate_reason: str | None = None,
) -> None:
    """Record the promotion of ``candidate`` (and, on the first update, of ``incumbent`` as step
    0), with the gate's metric and reason, then move ``TASK:alias`` to it: one transaction, so
    a failure leaves neither a promotion row nor a moved alias (no half-promotion; #16 finding
    9), and a rerun promotes afresh."""
    from sqlalchemy import exc

    def write(_session: object) -> None:
        if first:
            registry.record_promotion(incumbent, 0, learned_dataset(registry, incumbent), alias)
        registry.record_promotion(
            candidate, step, new_dataset_id, alias, gate_metric=gate_metric, gate_reason=gate_reason
        )
        registry.set_alias(task, alias, candidate.uid)

    registry.transaction(write, is_conflict=lambda e: isinstance(e, exc.IntegrityError))


def record_refusal(
    registry: Registry,
    alias: str,
    candidate: E.Entity,
    step: int,
    new_dataset_id: int | None,
    *,
    gate_metric: str,
    gate_reason: str,
) -> None:
    """Record that the gate kept ``candidate`` out of ``alias`` at ``step`` (``report`` draws
    it as a candidate row; the production history is unchanged)."""
    registry.record_promotion(
        candidate, step, new_dataset_id, alias,
        gate_metric=gate_metric, gate_reason=gate_reason, outcome="refused",
    )  # fmt: skip
