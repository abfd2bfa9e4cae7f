"""Step 4: re-fuse the task's members with the new version in, on new (and replayed) data.

The replay mix (the new data's train split plus a sample of the task's earlier train rows) is
written as an artifact and recorded as a dataset that points at it, so ``verify`` checks it,
``gc`` keeps it, and its path (content-addressed) stays loadable as the fusion's data source.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import entities as E
from ..composer import fuse
from ..configs import FuseConfig
from ..data import (
    DataBundle,
    Example,
    fingerprint,
    label_distribution,
    load_spec,
    write_jsonl,
)
from ..errors import RegistryError
from ..store import Registry
from .common import domain_name


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


def _snapshot_rows(ds: E.Dataset, split: str) -> tuple[list[Example] | None, str]:
    """Reload a recorded snapshot from its source; None unless the fingerprint still matches."""
    try:
        rows = load_spec(ds.source).split(split)
    except RegistryError as err:
        return None, str(err)
    for candidate in (rows, rows[: ds.row_count]):
        if fingerprint(candidate) == ds.fingerprint:
            return candidate, ""
    return None, "fingerprint changed"


def _is_mix(registry: Registry, source: str) -> bool:
    """Return True for a replay mix: an artifact of this registry, or an older ``home/replay``."""
    path = Path(source).resolve()
    roots = (registry.artifacts.root, registry.settings.home / "replay")
    return any(path.is_relative_to(root.resolve()) for root in roots)


def replay_mix(
    registry: Registry,
    task: E.Task,
    new: DataBundle,
    new_source: str,
    *,
    seed: int = 0,
    split: tuple[list[Example], list[Example]] | None = None,
) -> tuple[str, dict[str, int]] | None:
    """Store the new data's train split plus replayed earlier train rows; return (path, counts).

    Earlier data comes from the task's recorded ``train`` snapshots whose source can still be
    loaded and whose rows still match the recorded fingerprint (earlier replay mixes, recorded
    as fusions' train data, are not sources: that would replay one domain twice); in all, about
    as many replayed rows as new rows, split evenly over the earlier sources. The validation
    split is the new data's. The mix is an artifact (named by its content, so a re-run reuses
    it) recorded as the task's train snapshot. Returns None when there is nothing to replay.
    """
    new_train, val = (
        split if split is not None else (new.split("train"), new.splits.get("validation", []))
    )
    sources: dict[str, E.Dataset] = {}
    for ds in registry.list_datasets(task.id):
        if ds.split != "train" or ds.source == new_source or not Path(ds.source).exists():
            continue
        if _is_mix(registry, ds.source):
            continue  # an earlier mix (recorded as a fusion's train data): its rows are above
        sources[ds.source] = ds  # the newest snapshot per source wins
    earlier: dict[str, list[Example]] = {}
    for source, ds in sources.items():
        rows, _ = _snapshot_rows(ds, "train")
        if rows:
            earlier[source] = rows
    if not earlier:
        return None
    per_source = max(1, len(new_train) // len(earlier))
    rng = random.Random(seed)
    mixed = list(new_train)
    counts: dict[str, int] = {}
    for source, rows in sorted(earlier.items()):
        take = rng.sample(rows, min(per_source, len(rows)))
        counts[source] = len(take)
        mixed.extend(take)
    rng.shuffle(mixed)
    key = hashlib.sha256(f"{fingerprint(mixed)}:{fingerprint(val)}".encode()).hexdigest()[:16]
    with registry.artifacts.staging("replay") as tmp:
        folder = Path(tmp) / f"{task.name}-{key}"
        if val:
            write_jsonl(val, folder / "validation.jsonl")
        write_jsonl(mixed, folder / "train.jsonl")
        stored = registry.artifacts.put(folder)
    registry.record_dataset(
        task.id,
        str(stored.path),
        "train",
        len(mixed),
        fingerprint(mixed),
        label_distribution(mixed),
        artifact_sha256=stored.sha256,
    )
    return str(stored.path), counts


def replay_step(
    registry: Registry,
    task: E.Task,
    bundle: DataBundle,
    source: str,
    *,
    seed: int,
    split: tuple[list[Example], list[Example]],
    say: Callable[[str], None],
) -> str | None:
    """Return the path of the replay mix the new adapter (and any fusion) trains on, or None
    when the task has no earlier data to replay."""
    mix = replay_mix(registry, task, bundle, source, seed=seed, split=split)
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
