"""Related-task transfer: a new task's first adapter starts from a task with the same labels."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from registry import continual
from registry.cli import cli
from registry.data import fingerprint, load_spec
from registry.store import Registry
from registry.trainer import train
from tests.test_continual import BOOKS, PETS, TCFG, _write

YESNO = {"nouns": ["sky", "sea"], "pos": ["blue", "calm"], "neg": ["grey", "rough"]}


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def related(tmp_path: Path, tiny_base_dir: Path) -> Iterator[tuple[Registry, dict[str, Path]]]:
    """Yield a registry whose task ``books`` (positive/negative) has an adapter in production."""
    reg = Registry.init(tmp_path / "home")
    data = {
        "books": _write(tmp_path / "books", BOOKS, seed=1),
        "books2": _write(tmp_path / "books2", BOOKS, seed=2),
        "pets": _write(tmp_path / "pets", PETS, seed=3),
    }
    out = train(reg, "books", data["books"], str(tiny_base_dir), config=TCFG, progress=False)
    reg.set_alias("books", "production", out.version.uid)
    yield reg, data
    reg.close()


def _train(reg: Registry, task: str, data: Path, base: Path, **kw: Any) -> Any:
    return train(reg, task, data, str(base), config=TCFG, progress=False, **kw)


def test_first_adapter_transfers_by_default(related: Any, tiny_base_dir: Path) -> None:
    reg, data = related
    source = reg.resolve("books:production")
    before = _digest(reg.artifact_path(source))
    lines: list[str] = []
    out = _train(reg, "pets", data["pets"], tiny_base_dir, log=lines.append)
    tr = out.transfer
    assert tr is not None and tr.adapter.id == source.id
    books_train = load_spec(str(data["books"])).split("train")
    pets = load_spec(str(data["pets"]))
    n_new = len(pets.split("train"))
    assert tr.replayed == min(n_new, len(books_train))
    assert lines == [
        f"transfer: starting from {source.ref} (same labels) and replaying {tr.replayed} "
        "of its train rows"
    ]
    edges = reg.edges_of("adapter", out.version.id)
    assert [(e.parent_kind, e.parent_id, e.relation) for e in edges] == [
        ("adapter", source.id, "warm_started_from")
    ]
    # the mix: an artifact recorded as the new task's train snapshot, with the related rows in
    # it; its validation rows (the epoch's choice) are the new data's only
    run = reg.training_run(out.version.training_run_id)
    mix = run.hyperparams["transfer"]["mix"]
    assert Path(mix).parent.parent == reg.artifacts.root
    mixed = load_spec(mix)
    books_texts = {e.text_a for e in books_train}
    assert sum(e.text_a in books_texts for e in mixed.split("train")) == tr.replayed
    assert len(mixed.split("train")) == n_new + tr.replayed
    assert mixed.split("validation") == pets.split("validation")
    task = reg.get_task("pets")
    snaps = {(d.split, d.source): d for d in reg.list_datasets(task.id)}
    assert snaps[("train", mix)].fingerprint == fingerprint(mixed.split("train"))
    own = snaps[("validation", str(data["pets"].resolve()))]
    assert own.fingerprint == fingerprint(pets.split("validation"))
    assert not [d for d in reg.list_datasets(task.id) if d.split == "validation" and d != own]
    # nothing registered changed
    assert _digest(reg.artifact_path(source)) == before
    assert out.earlier_artifacts_verified >= 1
    assert not reg.verify().problems


def test_no_transfer_trains_fresh(related: Any, tiny_base_dir: Path) -> None:
    reg, data = related
    out = _train(reg, "pets", data["pets"], tiny_base_dir, transfer=False)
    assert out.transfer is None
    assert reg.edges_of("adapter", out.version.id) == []
    assert "transfer" not in reg.training_run(out.version.training_run_id).hyperparams


def test_no_transfer_without_equal_labels_or_production(
    related: Any, tiny_base_dir: Path, tmp_path: Path
) -> None:
    reg, data = related
    yesno = tmp_path / "yesno"
    _write(yesno, YESNO, seed=5)
    for f in yesno.glob("*.jsonl"):  # other label names: yes/no
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        for r in rows:
            r["label"] = "yes" if r["label"] == "positive" else "no"
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _train(reg, "sky", yesno, tiny_base_dir).transfer is None
    # same labels, but no production alias anywhere: nothing to transfer from
    reg.delete_alias("books", "production")
    assert _train(reg, "pets", data["pets"], tiny_base_dir).transfer is None


def test_only_the_first_adapter_transfers_and_updates_replay_own_rows(
    related: Any, tiny_base_dir: Path
) -> None:
    reg, data = related
    first = _train(reg, "pets", data["pets"], tiny_base_dir)
    assert first.transfer is not None
    reg.set_alias("pets", "production", first.version.uid)
    # a later update of the new task replays ITS OWN original train rows (not the mix, not
    # the related task's rows)
    lines: list[str] = []
    res = continual.update(
        reg, "pets", data["books2"], train_config=TCFG, progress=False, log=lines.append
    )
    assert res.drift.drift and res.adapter is not None
    replay = [line for line in lines if line.startswith("replay:")]
    assert replay == ["replay: training data = new data + replayed rows of earlier data (pets 48)"]
    # and a later adapter of the task (not its first) never transfers
    assert _train(reg, "pets", data["pets"], tiny_base_dir, name="again").transfer is None


def test_most_recently_promoted_related_task_wins(related: Any, tiny_base_dir: Path) -> None:
    reg, data = related
    pets = _train(reg, "pets", data["pets"], tiny_base_dir)
    reg.set_alias("pets", "production", pets.version.uid)
    out = _train(reg, "books_b", data["books2"], tiny_base_dir)
    assert out.transfer is not None and out.transfer.adapter.id == pets.version.id
    assert out.transfer.passed_over == ["books"]
    assert out.transfer.line().endswith(
        "; chosen over books as the most recently promoted task with these labels"
    )
    # moving the older task's alias makes it the most recent
    reg.set_alias("books", "production", reg.resolve("books:production").uid)
    again = _train(reg, "books_c", data["books2"], tiny_base_dir)
    assert again.transfer is not None and again.transfer.task == "books"


def test_cli_transfer_flag_and_json(related: Any, tiny_base_dir: Path) -> None:
    reg, data = related
    home = str(reg.settings.home)
    common = ["--base", str(tiny_base_dir), "--epochs", "1", "--max-length", "32"]
    runner = CliRunner(env={"ADAPTER_REGISTRY_HOME": home})
    plain = runner.invoke(cli, ["train", "pets", "--data", str(data["pets"]), *common])
    assert plain.exit_code == 0, plain.output
    assert "transfer: starting from books@1 (same labels) and replaying 48 of its train rows" in (
        plain.output
    )
    js = runner.invoke(cli, ["train", "cats", "--data", str(data["pets"]), *common, "--json"])
    assert js.exit_code == 0, js.output
    info = json.loads(js.output)
    assert info["transfer"]["from"] == "books@1"
    assert info["transfer"]["replayed_rows"] == 48
    fresh = runner.invoke(
        cli, ["train", "dogs", "--data", str(data["pets"]), *common, "--no-transfer", "--json"]
    )
    assert fresh.exit_code == 0, fresh.output
    assert json.loads(fresh.output)["transfer"] is None


def test_fusion_in_production_transfers_from_its_newest_own_member(
    related: Any, tiny_base_dir: Path
) -> None:
    from registry.composer import fuse
    from tests.test_continual import FCFG

    reg, data = related
    second = _train(reg, "books", data["books2"], tiny_base_dir, name="books_two")
    assert second.transfer is None  # not the task's first adapter
    fusion = fuse(
        reg, "books", ["books@1", "books_two@1"], data["books2"], config=FCFG, progress=False
    ).fusion
    reg.set_alias("books", "production", fusion.uid)
    out = _train(reg, "pets", data["pets"], tiny_base_dir)
    assert out.transfer is not None and out.transfer.adapter.id == second.version.id
