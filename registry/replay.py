"""Replay mixes: new train rows plus a sample of train rows a task recorded earlier.

``update`` replays the task's own earlier data (:func:`registry.continual.replay_mix`) and a
new task's first adapter replays a related task's data (:mod:`registry.transfer`); both sample
the same way (:func:`mix_rows`) and store the mix the same way (:func:`write_mix`, then
:func:`record_mix`): an artifact of the registry, named by its content, recorded as a ``train``
snapshot that points at it, so ``verify`` checks it and ``gc`` keeps it.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from . import entities as E
from .data import Example, fingerprint, label_distribution, load_spec, write_jsonl
from .errors import RegistryError
from .store import Registry


def snapshot_rows(ds: E.Dataset, split: str) -> tuple[list[Example] | None, str]:
    """Reload a recorded snapshot from its source; None unless the fingerprint still matches."""
    try:
        rows = load_spec(ds.source).split(split)
    except RegistryError as err:
        return None, str(err)
    for candidate in (rows, rows[: ds.row_count]):
        if fingerprint(candidate) == ds.fingerprint:
            return candidate, ""
    return None, "fingerprint changed"


def is_mix(registry: Registry, source: str) -> bool:
    """Return True for a replay mix: an artifact of this registry, or an older ``home/replay``."""
    path = Path(source).resolve()
    roots = (registry.artifacts.root, registry.settings.home / "replay")
    return any(path.is_relative_to(root.resolve()) for root in roots)


def recorded_train_rows(
    registry: Registry, task_id: int, exclude: str | None = None
) -> dict[str, list[Example]]:
    """Return the train rows a task recorded, per source, that can still be loaded unchanged.

    Replay mixes are not sources (their rows are in the sources they were drawn from), nor is
    ``exclude`` (the new data). The newest snapshot per source wins.
    """
    sources: dict[str, E.Dataset] = {}
    for ds in registry.list_datasets(task_id):
        if ds.split != "train" or ds.source == exclude or not Path(ds.source).exists():
            continue
        if is_mix(registry, ds.source):
            continue
        sources[ds.source] = ds
    earlier: dict[str, list[Example]] = {}
    for source, ds in sources.items():
        rows, _ = snapshot_rows(ds, "train")
        if rows:
            earlier[source] = rows
    return earlier


def mix_rows(
    new_train: list[Example], earlier: dict[str, list[Example]], seed: int, ratio: float = 1.0
) -> tuple[list[Example], dict[str, int]]:
    """Return the new rows plus about ``ratio`` times as many earlier rows (split evenly over
    the sources, each giving at most all it has), shuffled, and how many rows each source gave."""
    per_source = max(1, int(len(new_train) * ratio) // max(1, len(earlier)))
    rng = random.Random(seed)
    mixed = list(new_train)
    counts: dict[str, int] = {}
    for source, rows in sorted(earlier.items()):
        take = rng.sample(rows, min(per_source, len(rows)))
        counts[source] = len(take)
        mixed.extend(take)
    rng.shuffle(mixed)
    return mixed, counts


def mix_validation(
    new_val: list[Example], earlier: dict[str, list[Example]], seed: int
) -> list[Example]:
    """Return the new validation rows plus, from each earlier source, as many of its validation
    rows (or all it has, if fewer), so each domain weighs about the same in the choice of epoch."""
    rng = random.Random(seed)
    out = list(new_val)
    for _, rows in sorted(earlier.items()):
        out.extend(rng.sample(rows, min(len(new_val), len(rows))))
    return out


def write_mix(folder: Path, name: str, mixed: list[Example], val: list[Example]) -> Path:
    """Write a mix (``train.jsonl``, and ``validation.jsonl`` when there are validation rows)
    into a folder under ``folder`` named by its content; return that folder."""
    key = hashlib.sha256(f"{fingerprint(mixed)}:{fingerprint(val)}".encode()).hexdigest()[:16]
    out = folder / f"{name}-{key}"
    if val:
        write_jsonl(val, out / "validation.jsonl")
    write_jsonl(mixed, out / "train.jsonl")
    return out


def record_mix(registry: Registry, task_id: int, folder: Path, mixed: list[Example]) -> str:
    """Store a written mix as an artifact, record it as the task's train snapshot; return its
    path (content-addressed, loadable as a data spec)."""
    stored = registry.artifacts.put(folder)
    registry.record_dataset(
        task_id,
        str(stored.path),
        "train",
        len(mixed),
        fingerprint(mixed),
        label_distribution(mixed),
        artifact_sha256=stored.sha256,
    )
    return str(stored.path)
