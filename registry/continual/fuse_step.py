"""Step 4: re-fuse the task's members with the new version in, on new (and replayed) data.

The replay mix (the new data's train split plus a sample of the task's earlier train rows) is
written as an artifact and recorded as a dataset that points at it, so ``verify`` checks it,
``gc`` keeps it, and its path (content-addressed) stays loadable as the fusion's data source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import entities as E
from ..composer import fuse
from ..configs import FuseConfig
from ..data import DataBundle, Example
from ..replay import mix_rows, mix_validation, record_mix, recorded_train_rows, write_mix
from ..store import Registry
from .common import domain_name
from .evaluate import task_columns


def fusion_over(registry: Registry, task: str, member_ids: list[int]) -> E.Fusion | None:
    """Return the task's active fusion over exactly ``member_ids`` (in order), if there is one."""
    for entity in reversed(registry.list_entities(task=task, kind="fusion")):
        if (
            isinstance(entity, E.Fusion)
            and entity.status == "active"
            and list(entity.member_ids) == member_ids
        ):
            return entity
    return None


def replay_mix(
    registry: Registry,
    task: E.Task,
    new: DataBundle,
    new_source: str,
    *,
    seed: int = 0,
    split: tuple[list[Example], list[Example]] | None = None,
    select_on: str = "new",
    ratio: float = 1.0,
) -> tuple[str, dict[str, int]] | None:
    """Store the new data's train split plus replayed earlier train rows; return (path, counts).

    Earlier data comes from the task's recorded ``train`` snapshots whose source can still be
    loaded and whose rows still match the recorded fingerprint (earlier replay mixes, recorded
    as fusions' train data, are not sources: that would replay one domain twice); in all, about
    ``ratio`` times as many replayed rows as new rows, split evenly over the earlier sources
    (a source with fewer rows gives all it has). The validation
    split (what the best epoch is chosen on) is the new data's (``select_on="new"``), or with
    ``select_on="task"`` the new data's plus as many rows of each earlier validation snapshot
    of the task (the splits the gate checks). The mix is an artifact (named by its content, so
    a re-run reuses it) recorded as the task's train snapshot. Returns None when there is
    nothing to replay.
    """
    new_train, val = (
        split if split is not None else (new.split("train"), new.splits.get("validation", []))
    )
    earlier = recorded_train_rows(registry, task.id, exclude=new_source)
    if not earlier:
        return None
    mixed, counts = mix_rows(new_train, earlier, seed, ratio)
    if select_on == "task" and val:
        val = mix_validation(val, earlier_validation(registry, task, new_source, seed), seed)
    with registry.artifacts.staging("replay") as tmp:
        folder = write_mix(Path(tmp), task.name, mixed, val)
        path = record_mix(registry, task.id, folder, mixed)
    return path, counts


def earlier_validation(
    registry: Registry, task: E.Task, new_source: str, seed: int
) -> dict[str, list[Example]]:
    """Return the rows of the task's validation snapshots (the gate's columns) other than the
    new data's, by source, where they can still be reloaded unchanged."""
    return {
        c.dataset.source: c.examples
        for c in task_columns(registry, task, [seed, 0])
        if c.examples and c.dataset.source != new_source
    }


def replay_step(
    registry: Registry,
    task: E.Task,
    bundle: DataBundle,
    source: str,
    *,
    seed: int,
    split: tuple[list[Example], list[Example]],
    select_on: str = "new",
    ratio: float = 1.0,
    say: Callable[[str], None],
) -> str | None:
    """Return the path of the replay mix the new adapter (and any fusion) trains on, or None
    when the task has no earlier data to replay."""
    mix = replay_mix(
        registry, task, bundle, source, seed=seed, split=split, select_on=select_on, ratio=ratio
    )
    if mix is None:
        say("replay: no earlier data of the task to replay; training on the new data only")
        return None
    path, counts = mix
    say(
        "replay: training data = new data + replayed rows of earlier data ("
        + ", ".join(f"{domain_name(k)} {v}" for k, v in counts.items())
        + ")"
    )
    return path


def fuse_step(
    registry: Registry,
    task: E.Task,
    spec: str,
    bundle: DataBundle,
    *,
    member_ids: list[int],
    name: str,
    config: FuseConfig,
    mix: str | None,
    progress: bool,
    reused: list[str],
    say: Callable[[str], None],
) -> E.Fusion:
    """Return the re-fused model: reused from an interrupted run, or trained now."""
    fusion = fusion_over(registry, task.name, member_ids)
    if fusion is not None:
        reused.append(f"fusion {fusion.ref}")
        say(f"fuse: reusing {fusion.ref}")
        return fusion
    refs = [registry.get_adapter_version(i).ref for i in member_ids]
    data: Any = spec if mix is None else mix
    given: DataBundle | None = bundle if mix is None else None  # a mix is other data: fuse loads it
    fusion = fuse(
        registry, task.name, refs, data, name=name, config=config, progress=progress, bundle=given
    ).fusion
    say(f"fuse: registered {fusion.ref} over {', '.join(fusion.members)}")
    return fusion
