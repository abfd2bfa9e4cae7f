"""A base model is its weights: any folder holding them is the same base (#18)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.errors import IntegrityError, InvalidInput, NotFound
from registry.loader import load_entity
from registry.store import Registry
from registry.trainer import TrainConfig, plan_training, train
from tests._util import sentiment_data

FAST = TrainConfig(epochs=1, batch_size=16, lr=5e-3)


def test_a_copy_elsewhere_is_the_same_base_and_a_moved_one_is_relinked(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = sqlite_registry
    data = str(sentiment_data(tmp_path / "d"))
    # A relative --base is recorded as the absolute folder: predict works from anywhere.
    first = tmp_path / "models" / "tiny-bert"
    shutil.copytree(tiny_base_dir, first)
    monkeypatch.chdir(tmp_path / "models")
    v1 = train(reg, "sentiment", data, "./tiny-bert", config=FAST, progress=False).version
    base = reg.get_base_model(v1.base_model_id)
    assert base.name == str(first.resolve())
    assert base.weights_sha256 == base.revision and len(base.revision) == 64
    monkeypatch.chdir(tmp_path)
    load_entity(reg, v1)

    # The same weights under another path are the same base model, not a refusal.
    copy = tmp_path / "elsewhere" / "bert-copy"
    shutil.copytree(tiny_base_dir, copy)
    v2 = train(reg, "sentiment", data, str(copy), config=FAST, progress=False).version
    assert v2.base_model_id == v1.base_model_id
    assert len(reg.list_base_models()) == 1

    # Moved away: the error names the way back, and relink to a folder of other weights is refused.
    moved = tmp_path / "moved"
    first.rename(moved)
    with pytest.raises(NotFound, match="is gone") as err:
        load_entity(reg, v1)
    assert err.value.hint == (
        f"Point the registry at its new place: adapter-registry base relink {base.id} NEW_FOLDER"
    )
    from tests._tiny import build_tiny_bert

    other = build_tiny_bert(tmp_path / "other-bert", seed=1)
    runner = CliRunner()
    home = ["--home", str(reg.settings.home)]
    res = runner.invoke(cli, [*home, "base", "relink", str(base.id), str(other)])
    assert res.exit_code != 0 and "holds other weights" in res.output
    assert reg.get_base_model(base.id).name == str(first.resolve())
    res = runner.invoke(cli, [*home, "base", "relink", "sentiment@1", str(moved), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["name"] == str(moved.resolve())
    load_entity(reg, v1)
    res = runner.invoke(cli, [*home, "base", "list", "--json"])
    assert [r["weights_sha256"] for r in json.loads(res.output)] == [base.weights_sha256]

    # Training on the copy while the recorded folder is gone re-points the base to the copy.
    shutil.rmtree(moved)
    train(reg, "sentiment", data, str(copy), config=FAST, progress=False)
    assert reg.get_base_model(base.id).name == str(copy)
    load_entity(reg, v1)


def test_other_weights_are_refused_before_training(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    from tests._tiny import build_tiny_bert

    reg = sqlite_registry
    data = str(sentiment_data(tmp_path / "d"))
    train(reg, "sentiment", data, str(tiny_base_dir), config=FAST, progress=False)
    other = build_tiny_bert(tmp_path / "other-bert", seed=1)
    # plan_training is the check train runs before any model is loaded.
    with pytest.raises(InvalidInput, match="same weight files"):
        plan_training(reg, "sentiment", data, str(other), config=FAST)


def test_hub_id_of_a_local_copy_is_recorded_on_the_base(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    reg = sqlite_registry
    data = str(sentiment_data(tmp_path / "d"))
    commit = "c" * 40
    v = train(reg, "sentiment", data, str(tiny_base_dir), config=FAST, progress=False,
              base_hub_id=f"owner/tiny-bert@{commit}").version  # fmt: skip
    base = reg.get_base_model(v.base_model_id)
    assert (base.hub_id, base.hub_commit) == ("owner/tiny-bert", commit)


def test_relink_of_an_unknown_base_is_refused(sqlite_registry: Registry, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        sqlite_registry.relink_base_model(7, str(tmp_path), "a" * 64)
    _ = IntegrityError


def test_upgrade_records_the_weights_digest_and_hub_id_of_existing_bases(tmp_path: Path) -> None:
    from sqlalchemy import text

    from registry.db import Database
    from registry.settings import load_settings

    (tmp_path / "home").mkdir()
    database = Database(load_settings(tmp_path / "home"))
    database.upgrade("0003")
    with database.engine.begin() as conn:
        for name, rev in (("/models/tiny", "d" * 64), ("owner/bert", "e" * 40)):
            conn.execute(
                text(
                    "INSERT INTO base_models (name, revision, architecture, hidden_size, "
                    "num_layers, created_at) VALUES (:n, :r, 'bert', 32, 2, '2026-01-01')"
                ),
                {"n": name, "r": rev},
            )
    database.upgrade()
    reg = Registry(database.settings, database)
    local, hub = reg.list_base_models()
    assert (local.weights_sha256, local.hub_id) == ("d" * 64, None)
    assert (hub.weights_sha256, hub.hub_id, hub.hub_commit) == (None, "owner/bert", "e" * 40)
    database.downgrade("0003")
    database.dispose()


def test_a_hub_base_records_its_weights_digest_and_is_the_same_base_as_a_copy(
    sqlite_registry: Registry,
    tiny_base_dir: Path,
    tmp_path: Path,
    hub_server: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A base loaded by Hub id (from the test Hub on 127.0.0.1) records the sha256 of its
    weight files like a local folder does: a folder holding the same files is that base."""
    import transformers.utils.hub

    from registry.backbone_base import hub_weights_digest, weights_digest

    # transformers fixed its cache folder when imported: downloads go under tmp_path instead
    monkeypatch.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", str(tmp_path / "hf"))
    reg = sqlite_registry
    files = {p.name: p.read_bytes() for p in tiny_base_dir.iterdir() if p.is_file()}
    commit = hub_server.commit_files_direct("test-org/tiny-bert", files)
    assert hub_weights_digest("test-org/tiny-bert", commit) is None  # nothing downloaded yet
    data = str(sentiment_data(tmp_path / "d"))
    v1 = train(reg, "sentiment", data, "test-org/tiny-bert", config=FAST, progress=False).version
    base = reg.get_base_model(v1.base_model_id)
    assert (base.name, base.revision) == ("test-org/tiny-bert", commit)
    assert (base.hub_id, base.hub_commit) == ("test-org/tiny-bert", commit)
    assert base.weights_sha256 == weights_digest(tiny_base_dir)
    # The same weights in a folder: the same base model, so the same task accepts it.
    v2 = train(reg, "sentiment", data, str(tiny_base_dir), config=FAST, progress=False).version
    assert v2.base_model_id == base.id and len(reg.list_base_models()) == 1
    load_entity(reg, v1)  # still loads by Hub id at the commit
    # Pulled into another registry, the version's Hub base records the same digest.
    from registry import hub

    hub.push(reg, v1.ref, "test-user/books")
    other = Registry.init(tmp_path / "other-home")
    pulled = hub.pull(other, "test-user/books").entity
    there = other.get_base_model(pulled.base_model_id)
    assert (there.name, there.weights_sha256) == ("test-org/tiny-bert", base.weights_sha256)
    other.close()
