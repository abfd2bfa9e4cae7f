"""Entities are frozen all the way down: their mappings and the lists in them refuse changes.

Read back from a real SQLite registry, the way every command gets them; the fast reader too.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest

from registry import entities as E
from registry.store import Registry
from registry.store.fastread import SqliteReader

from ._util import add_version, seed_task


def _registered(tmp_path: Path) -> tuple[Registry, Any]:
    reg = Registry.init(tmp_path / "home")
    seed_task(reg)
    version = add_version(reg, tmp_path, "books", b"weights")
    return reg, version


def _mappings(reg: Registry, version: E.AdapterVersion) -> dict[str, Any]:
    assert version.training_run_id is not None
    run = reg.training_run(version.training_run_id)
    task = reg.get_task("sentiment")
    dataset = reg.record_dataset(task.id, "data.jsonl", "train", 3, "f" * 64, {"negative": 1})
    return {
        "config": version.config,
        "hyperparams": run.hyperparams,
        "library_versions": run.library_versions,
        "label_distribution": dataset.label_distribution,
    }


def test_entity_mappings_refuse_changes(tmp_path: Path) -> None:
    reg, version = _registered(tmp_path)
    for name, value in _mappings(reg, version).items():
        assert isinstance(value, E.FrozenDict), name
        with pytest.raises(TypeError):
            value["x"] = 1
        for change in ("clear", "popitem"):
            with pytest.raises(TypeError):
                getattr(value, change)()
        with pytest.raises(TypeError):
            value.update(x=1)
        with pytest.raises(TypeError):
            value.setdefault("x", 1)
        with pytest.raises(TypeError):
            del value["any"]
    # The store's own answer is unchanged by any attempt.
    assert reg.resolve("books@1").config == {"reduction_factor": 16}


def test_nested_values_are_frozen_and_still_serialise() -> None:
    version_config = {"leave_out": [0, 1], "nested": {"a": [{"b": 1}]}}
    frozen = E.frozen(version_config)
    assert frozen == version_config  # equal to what was recorded, lists and all
    assert isinstance(frozen["nested"], E.FrozenDict)
    assert isinstance(frozen["leave_out"], E.FrozenList)
    assert isinstance(frozen["nested"]["a"][0], E.FrozenDict)
    with pytest.raises(TypeError):
        frozen["nested"]["a"][0]["b"] = 2
    for change in (
        lambda: frozen["leave_out"].append(2),
        lambda: frozen["nested"]["a"].pop(),
        lambda: frozen["leave_out"].__setitem__(0, 5),
        lambda: frozen["leave_out"].sort(),
    ):
        with pytest.raises(TypeError):
            change()
    assert frozen["leave_out"] == [0, 1]
    assert json.loads(json.dumps(frozen)) == version_config
    assert E.jsonable(frozen) == version_config and type(E.jsonable(frozen)) is dict
    copied = dict(frozen)
    copied["x"] = 1  # a copy is an ordinary dict
    assert copy.deepcopy(frozen) == frozen and copy.copy(frozen) is frozen
    assert pickle.loads(pickle.dumps(frozen)) == frozen


def test_the_fast_reader_returns_frozen_entities_too(tmp_path: Path) -> None:
    reg, _ = _registered(tmp_path)
    with SqliteReader(reg.settings) as fast:
        version = fast.resolve("books@1")
    assert isinstance(version.config, E.FrozenDict)
    assert version.to_dict()["config"] == {"reduction_factor": 16}
