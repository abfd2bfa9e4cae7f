"""Names and look-ups every continual step shares: which model is current, how data is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import entities as E
from ..data import EXTENSIONS, SPLIT_NAMES, spec_label
from ..errors import InvalidInput, NotFound
from ..replay import is_mix
from ..store import Registry

PRODUCTION = "production"
#: The metric and split of the accuracy matrix: validation accuracy per validation snapshot.
MATRIX_METRIC = "accuracy"
MATRIX_SPLIT = "validation"
MEMBER_POLICIES = ("replace", "append")
#: What a new adapter's best epoch is chosen on: the new data's validation rows, or those plus
#: rows of every earlier validation split of the task (see ``fuse_step.replay_mix``).
SELECT_ON = ("task", "new")


def matrix_datasets(registry: Registry, task_id: int) -> list[E.Dataset]:
    """Return the task's validation snapshots that are columns of its accuracy matrix, oldest
    first: every one but a replay mix's (its rows are a sample of the columns' rows)."""
    return [
        ds
        for ds in registry.list_datasets(task_id)
        if ds.split == MATRIX_SPLIT and not is_mix(registry, ds.source)
    ]


def production_entity(registry: Registry, task: str, alias: str = PRODUCTION) -> E.Entity | None:
    """Return what ``TASK:alias`` points at, or None when the alias is not set."""
    registry.get_task(task)
    try:
        return registry.resolve(f"{task}:{alias}")
    except NotFound:
        return None


def current_reference(
    registry: Registry, task: str, reference: str | None = None
) -> E.AdapterVersion:
    """Return the adapter version whose reference profile new data of ``task`` is compared with.

    ``TASK:production`` if it is an adapter; the task's own member if it is a fusion; else the
    latest active adapter version of the task. ``reference`` (a REF) overrides the choice.
    """
    task_row = registry.get_task(task)
    entity = registry.resolve(reference) if reference else production_entity(registry, task)
    if isinstance(entity, E.AdapterVersion):
        if entity.task_id != task_row.id:
            raise InvalidInput(
                f"{entity.ref} belongs to task {entity.task!r}, not {task!r}.",
                hint=f"Run: adapter-registry list --task {task}",
            )
        return entity
    if isinstance(entity, E.Fusion):
        own = [registry.get_adapter_version(i) for i in entity.member_ids]
        own = [v for v in own if v.task_id == task_row.id]
        if own:
            return max(own, key=lambda v: v.id)
        if reference:
            raise InvalidInput(
                f"{entity.ref} has no member adapter of task {task!r} to compare with.",
                hint="Name an adapter version of the task: --reference NAME@VERSION",
            )
    versions = [
        e
        for e in registry.list_entities(task=task, kind="adapter", include_deprecated=False)
        if isinstance(e, E.AdapterVersion)
    ]
    if not versions:
        raise NotFound(
            f"Task {task!r} has no active adapter to compare new data with.",
            hint=f"Train one first: adapter-registry train {task} --data SPEC --base MODEL",
        )
    return versions[-1]


def data_source(data: Any) -> str:
    """Return how a data spec is recorded: an absolute path for local files, else the spec."""
    return spec_label(data)


def absolute_spec(data: Any) -> Any:
    """Return local paths as absolute paths (so recorded sources reload from any folder)."""
    if isinstance(data, str | Path) and Path(data).expanduser().exists():
        return str(Path(data).expanduser().resolve())
    return data


def domain_name(source: str) -> str:
    """Return a short column name for a data source (``.../mds_books`` → ``mds_books``)."""
    path = Path(source)
    if path.suffix.lower() in EXTENSIONS:
        return path.parent.name if path.stem.lower() in SPLIT_NAMES else path.stem
    return path.name or source


def find_dataset(registry: Registry, task_id: int, split: str, fp: str) -> E.Dataset | None:
    """Return the task's recorded snapshot of ``split`` with fingerprint ``fp``, if any."""
    for ds in registry.list_datasets(task_id):
        if ds.split == split and ds.fingerprint == fp:
            return ds
    return None


def pct(v: float | None) -> str:
    """Return a share as ``81.2%`` (``n/a`` for None)."""
    return "n/a" if v is None else f"{100 * v:.1f}%"
