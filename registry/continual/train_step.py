"""Step 3: a NEW adapter version on the new data (or the one an interrupted run made)."""

from __future__ import annotations

from collections.abc import Callable

from .. import entities as E
from ..configs import TrainConfig
from ..data import DataBundle
from ..store import Registry
from ..trainer import train


def adapter_after(registry: Registry, task: str, report: E.DriftReport) -> E.AdapterVersion | None:
    """Return the active adapter version trained after ``report``, if an earlier run made it."""
    for entity in reversed(registry.list_entities(task=task, kind="adapter")):
        if not isinstance(entity, E.AdapterVersion) or entity.status != "active":
            continue
        for edge in registry.edges_of("adapter", entity.id):
            if (edge.parent_kind, edge.parent_id, edge.relation) == (
                "drift",
                report.id,
                "trained_after_drift",
            ):
                return entity
    return None


def train_step(
    registry: Registry,
    task: str,
    spec: str,
    bundle: DataBundle | None,
    *,
    reference: E.AdapterVersion,
    report: E.DriftReport,
    config: TrainConfig,
    name: str | None,
    warm_start: bool,
    progress: bool,
    reused: list[str],
    say: Callable[[str], None],
) -> E.AdapterVersion:
    """Return the new adapter version: reused from an interrupted run, or trained now.

    ``spec``/``bundle``: what it trains on (a replay mix is a path, with ``bundle`` None).
    """
    adapter = adapter_after(registry, task, report)
    if adapter is not None:
        reused.append(f"adapter {adapter.ref}")
        say(f"train: reusing {adapter.ref}, trained after report #{report.id}")
        return adapter
    base = registry.get_base_model(reference.base_model_id)
    outcome = train(
        registry,
        task,
        spec,
        base.name,
        name=name or reference.name,
        config=config,
        init_from=reference.ref if warm_start else None,
        after_drift=report.id,
        progress=progress,
        bundle=bundle,
    )
    say(
        f"train: registered {outcome.version.ref} ({outcome.earlier_artifacts_verified} earlier "
        "artifacts verified unchanged)"
    )
    return outcome.version
