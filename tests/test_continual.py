"""The continual loop: drift checks, update (train → fuse → evaluate → gate → promote), report."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from registry import continual
from registry import entities as E
from registry.cli import cli
from registry.composer import FuseConfig
from registry.continual import evaluate as continual_evaluate
from registry.data import fingerprint
from registry.errors import InvalidInput
from registry.store import Registry
from registry.trainer import TrainConfig, train

TCFG = TrainConfig(epochs=2, batch_size=16, max_length=32, device="cpu", seed=0)
FCFG = FuseConfig(epochs=1, batch_size=16, max_length=32, device="cpu", seed=0)

BOOKS = {
    "nouns": ["book", "story", "plot", "movie", "film"],
    "pos": ["good", "great", "fun", "happy"],
    "neg": ["bad", "awful", "boring", "sad"],
}
PETS = {
    "nouns": ["dog", "cat", "man", "woman"],
    "pos": ["fast", "yes", "true", "runs"],
    "neg": ["slow", "no", "false", "sat"],
}


def _rows(
    domain: dict[str, list[str]], n: int, seed: int, pos_share: float
) -> list[dict[str, str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        positive = rng.random() < pos_share
        word = rng.choice(domain["pos" if positive else "neg"])
        det = rng.choice(["the", "this", "that"])
        text = f"{det} {rng.choice(domain['nouns'])} {rng.choice(['is', 'was'])} very {word}"
        out.append({"text": text, "label": "positive" if positive else "negative"})
    return out


def _write(folder: Path, domain: dict[str, list[str]], seed: int, pos_share: float = 0.5) -> Path:
    folder.mkdir(parents=True)
    for split, n, offset in (("train", 48, 0), ("validation", 16, 1000)):
        lines = [json.dumps(r) for r in _rows(domain, n, seed + offset, pos_share)]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def seeded(tmp_path: Path, tiny_base_dir: Path) -> Iterator[tuple[Registry, dict[str, Path]]]:
    """Yield a registry whose task ``sentiment`` has one adapter (books) in production."""
    reg = Registry.init(tmp_path / "home")
    data = {
        "books": _write(tmp_path / "books", BOOKS, seed=1),
        "books2": _write(tmp_path / "books2", BOOKS, seed=2),
        "pets": _write(tmp_path / "pets", PETS, seed=3, pos_share=0.85),
    }
    out = train(reg, "sentiment", data["books"], str(tiny_base_dir), config=TCFG, progress=False)
    reg.set_alias("sentiment", "production", out.version.uid)
    yield reg, data
    reg.close()


def _counts(reg: Registry) -> tuple[int, int, int]:
    adapters = len(reg.list_entities(task="sentiment", kind="adapter"))
    fusions = len(reg.list_entities(task="sentiment", kind="fusion"))
    return adapters, fusions, len(reg.drift_reports("sentiment"))


def _update(reg: Registry, data: Path, **kw: Any) -> continual.UpdateResult:
    kw.setdefault("train_config", TCFG)
    kw.setdefault("fuse_config", FCFG)
    return continual.update(reg, "sentiment", data, n_permutations=200, progress=False, **kw)


# ---------------------------------------------------------------------- drift
def test_same_distribution_is_not_drift_and_p_values_repeat(seeded: Any) -> None:
    reg, data = seeded
    first = continual.check_drift(reg, "sentiment", data["books2"], n_permutations=200)
    again = continual.check_drift(
        reg, "sentiment", data["books2"], n_permutations=200, record=False
    )
    assert not first.drift
    assert first.reference.ref == "sentiment@1"
    assert [t.p_value for t in first.result.tests] == [t.p_value for t in again.result.tests]
    assert first.report is not None and first.report.drift is False
    assert first.dataset is not None and first.report.new_dataset_id == first.dataset.id
    assert again.report is None
    assert len(reg.drift_reports("sentiment")) == 1
    names = {t["name"] for t in first.report.tests}
    assert {"embedding_mmd", "label_shift", "vocabulary_coverage", "length"} <= names


def test_other_vocabulary_and_label_mix_is_drift(seeded: Any) -> None:
    reg, data = seeded
    check = continual.check_drift(reg, "sentiment", data["pets"], n_permutations=200, seed=7)
    assert check.drift
    assert check.result.test("embedding_mmd").drift  # type: ignore[union-attr]
    assert check.result.test("vocabulary_coverage").drift  # type: ignore[union-attr]
    other = continual.check_drift(
        reg, "sentiment", data["pets"], n_permutations=200, seed=8, record=False
    )
    mmd = [c.result.test("embedding_mmd") for c in (check, other)]
    assert mmd[0] is not None and mmd[1] is not None
    assert mmd[0].details["seed"] == 7 and mmd[1].details["seed"] == 8


def test_drift_reference_follows_production_fusion(seeded: Any, tiny_base_dir: Path) -> None:
    reg, data = seeded
    result = _update(reg, data["pets"], members="append", tolerance=1.0)
    assert isinstance(result.fusion, E.Fusion)
    reg.set_alias("sentiment", "production", result.fusion.uid)
    # The task's own newest member of the production fusion is the reference now.
    assert continual.current_reference(reg, "sentiment").ref == "sentiment@2"


def test_drift_cli_exit_codes_and_json(seeded: Any) -> None:
    _, data = seeded
    runner = CliRunner()
    same = runner.invoke(
        cli, ["drift", "sentiment", "--data", str(data["books2"]), "--permutations", "200"]
    )
    assert same.exit_code == 0, same.output
    assert "embedding_mmd" in same.output and "No drift" in same.output
    drifted = runner.invoke(
        cli,
        ["drift", "sentiment", "--data", str(data["pets"]), "--permutations", "200", "--json"],
    )
    assert drifted.exit_code == 3, drifted.output
    info = json.loads(drifted.output)
    assert info["drift"] is True and info["reference"] == "sentiment@1"
    assert {t["name"] for t in info["tests"]} >= {"embedding_mmd", "label_shift"}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no GPU")
def test_drift_on_a_missing_gpu_is_refused_and_records_nothing(seeded: Any) -> None:
    reg, data = seeded
    before = (_counts(reg), len(reg.list_datasets()))
    result = CliRunner().invoke(
        cli, ["drift", "sentiment", "--data", str(data["pets"]), "--device", "cuda"]
    )
    assert result.exit_code == 1, result.output
    assert "no GPU is available" in result.output and "--device cpu" in result.output
    assert (_counts(reg), len(reg.list_datasets())) == before


def test_drift_without_adapter_says_what_to_do(tmp_path: Path) -> None:
    Registry.init(tmp_path / "home").close()
    result = CliRunner().invoke(cli, ["drift", "nope", "--data", str(tmp_path)])
    assert result.exit_code == 1
    assert "No task named 'nope'" in result.output


# ---------------------------------------------------------------------- update
def test_update_without_drift_records_only_the_report(seeded: Any) -> None:
    reg, data = seeded
    before = _counts(reg)
    result = _update(reg, data["books2"])
    assert not result.drift.drift and result.candidate is None and not result.promoted
    assert _counts(reg) == (before[0], before[1], before[2] + 1)
    assert reg.resolve("sentiment:production").ref == "sentiment@1"


def test_dry_run_writes_nothing(seeded: Any) -> None:
    reg, data = seeded
    before = _counts(reg)
    datasets = len(reg.list_datasets())
    result = _update(reg, data["pets"], dry_run=True, members="append")
    assert result.drift.drift and result.dry_run
    assert any(line.startswith("fuse 'sentiment-fusion'") for line in result.plan)
    assert _counts(reg) == before and len(reg.list_datasets()) == datasets


def test_update_after_drift_interrupted_then_resumed(
    seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, data = seeded
    from registry.continual import fuse_step

    real_fuse = fuse_step.fuse

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("power cut during fusion")

    monkeypatch.setattr(fuse_step, "fuse", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        _update(reg, data["pets"], members="append", tolerance=1.0)
    assert _counts(reg) == (2, 0, 1)
    monkeypatch.setattr(fuse_step, "fuse", real_fuse)

    result = _update(reg, data["pets"], members="append", tolerance=1.0)
    assert _counts(reg) == (2, 1, 1)  # no second adapter version, no second report
    assert "adapter sentiment@2" in result.reused and "drift report #1" in result.reused[0]
    adapter, fusion = result.adapter, result.fusion
    assert adapter is not None and fusion is not None
    assert fusion.members == ("sentiment@1", "sentiment@2")
    report = result.drift.report
    assert report is not None and report.drift
    edges = {(e.parent_kind, e.parent_id, e.relation) for e in reg.edges_of("adapter", adapter.id)}
    assert ("drift", report.id, "trained_after_drift") in edges
    fused = {(e.parent_kind, e.parent_id, e.relation) for e in reg.edges_of("fusion", fusion.id)}
    assert {("adapter", m, "fused_from") for m in fusion.member_ids} <= fused
    # Every validation split was scored for both models, and the rows are stored.
    assert {s.column for s in result.scores} == {"books", "pets"}
    assert all(s.candidate is not None and s.incumbent is not None for s in result.scores)
    # ... with each split's row count, which sizes the gate's noise allowance (16 rows each)
    assert [s.rows for s in result.scores] == [16, 16]
    # pets is 85% positive: the gate compared (and recorded) macro-F1
    assert result.gate_metric == "macro_f1"
    scored = continual.recorded_scores(reg, fusion, "macro_f1")
    assert set(scored) == {s.dataset_id for s in result.scores}

    # A third run on the same data (after any outcome) adds no adapter or fusion.
    again = _update(reg, data["pets"], members="append", tolerance=1.0)
    assert _counts(reg)[:2] == (2, 1)
    assert again.fusion is None or again.fusion.id == fusion.id


def _fake_scores(
    scores: dict[tuple[str, str], float],
) -> Any:
    def evaluate(
        registry: Registry, entity: E.Entity, columns: list[continual.Column], **kw: Any
    ) -> dict[int, float]:
        return {c.dataset.id: scores[(entity.ref, c.name)] for c in columns if c.examples}

    return evaluate


def test_gate_refuses_a_regression_on_an_earlier_split(
    seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg, data = seeded
    # Only cells the trainer did not record are evaluated: the new adapter on books, the old on
    # pets. The new adapter loses 30 points on books.
    incumbent_books = continual.recorded_scores(reg, reg.resolve("sentiment@1"))
    books = next(iter(incumbent_books.values()))
    fake = {("sentiment@2", "books"): max(0.0, books - 0.3), ("sentiment@1", "pets"): 0.0}
    monkeypatch.setattr(continual_evaluate, "evaluate_entity", _fake_scores(fake))
    result = _update(reg, data["pets"], tolerance=0.05)
    assert result.adapter is not None and result.fusion is None
    assert not result.promoted
    assert "books would regress" in result.gate
    assert reg.resolve("sentiment:production").ref == "sentiment@1"
    assert continual.production_history(reg, "sentiment") == []


def test_gate_promotes_and_report_builds_the_matrix(
    seeded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reg, data = seeded
    books = next(iter(continual.recorded_scores(reg, reg.resolve("sentiment@1")).values()))
    fake = {("sentiment@2", "books"): books, ("sentiment@1", "pets"): 0.0}
    monkeypatch.setattr(continual_evaluate, "evaluate_entity", _fake_scores(fake))
    result = _update(reg, data["pets"], tolerance=0.05, gate_metric="accuracy")
    assert result.promoted, result.gate
    # the default noise allowance reached the gate (its verdict names it)
    assert result.gate.endswith("beyond 0.050 or 1 standard error of its validation rows")
    assert result.step == 1
    assert reg.resolve("sentiment:production").ref == "sentiment@2"
    steps = continual.production_history(reg, "sentiment")
    assert [(s.step, s.entity.ref) for s in steps] == [(0, "sentiment@1"), (1, "sentiment@2")]
    # The history lives in the promotions table, not in metric rows.
    promotions = reg.promotions(reg.get_task("sentiment").id)
    assert [(p.step, p.alias) for p in promotions] == [(0, "production"), (1, "production")]
    assert promotions[1].dataset_id == next(s.dataset_id for s in result.scores if s.new)
    for ref in ("sentiment@1", "sentiment@2"):
        assert not [m for m in reg.metrics(reg.resolve(ref)) if m.name == "promoted_step"]

    rep = continual.build_report(reg, "sentiment")["sentiment"]
    assert rep.matrix is not None
    assert rep.matrix.task_names == ["books", "pets"]
    assert rep.matrix.values[1, 0] == pytest.approx(books)
    assert rep.matrix.values[0, 1] == 0.0
    assert rep.matrix.bwt() == pytest.approx(0.0)

    out = tmp_path / "rep"
    cli_result = CliRunner().invoke(cli, ["report", "--task", "sentiment", "--out", str(out)])
    assert cli_result.exit_code == 0, cli_result.output
    assert "| after step | books | pets |" in cli_result.output
    assert "BWT: +0.000" in cli_result.output
    assert "graph TD" in cli_result.output and "trained_after_drift" in cli_result.output
    png = out / "sentiment-accuracy.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in cli_result.output
    as_json = CliRunner().invoke(cli, ["report", "--json", "--out", str(out)])
    assert json.loads(as_json.output)[0]["matrix"]["tasks"] == ["books", "pets"]


def test_update_cli_dry_run_and_no_drift(seeded: Any) -> None:
    _, data = seeded
    runner = CliRunner()
    plan = runner.invoke(
        cli, ["update", "sentiment", "--data", str(data["pets"]), "--dry-run", "--epochs", "1"]
    )
    assert plan.exit_code == 0, plan.output
    assert "Plan:" in plan.output and "no fusion" in plan.output
    assert "or 1 standard error of its validation rows" in plan.output  # --gate-noise default
    assert "(1 per new row)" in plan.output  # --replay-ratio default
    more = runner.invoke(
        cli,
        ["update", "sentiment", "--data", str(data["pets"]), "--dry-run", "--replay-ratio", "2"],
    )
    assert more.exit_code == 0 and "(2 per new row)" in more.output, more.output
    zero = runner.invoke(
        cli, ["update", "sentiment", "--data", str(data["pets"]), "--replay-ratio", "0"]
    )
    assert zero.exit_code == 2 and "--replay-ratio" in zero.output, zero.output
    with pytest.raises(InvalidInput, match="replay ratio"):
        continual.UpdateOptions(replay_ratio=-1)
    strict = runner.invoke(
        cli, ["update", "sentiment", "--data", str(data["pets"]), "--dry-run", "--gate-noise", "0"]
    )
    assert strict.exit_code == 0 and "standard error" not in strict.output, strict.output
    bad = runner.invoke(
        cli, ["update", "sentiment", "--data", str(data["pets"]), "--gate-noise", "-1"]
    )
    assert bad.exit_code == 2 and "--gate-noise" in bad.output
    quiet = runner.invoke(cli, ["update", "sentiment", "--data", str(data["books2"]), "--json"])
    assert quiet.exit_code == 0, quiet.output
    info = json.loads(quiet.output)
    assert info["drift"]["drift"] is False and info["candidate"] is None


def test_report_without_updates(seeded: Any, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "no update has promoted a model yet: one row, the current production" in result.output
    assert "| 0: " in result.output  # the single row of the current production model
    assert "BWT: n/a" in result.output


def test_replay_mix_adds_earlier_train_rows(seeded: Any) -> None:
    from registry.data import load_spec

    reg, data = seeded
    task = reg.get_task("sentiment")
    new = load_spec(str(data["pets"]))
    mix = continual.replay_mix(reg, task, new, continual.data_source(data["pets"]))
    assert mix is not None
    folder, counts = mix
    books_src = continual.data_source(data["books"])
    n_new = len(new.split("train"))
    n_books = len(load_spec(str(data["books"])).split("train"))
    assert counts == {books_src: min(n_new, n_books)}
    mixed = load_spec(folder)
    assert len(mixed.split("train")) == n_new + counts[books_src]
    assert mixed.split("validation") == new.split("validation")
    books_texts = {e.text_a for e in load_spec(str(data["books"])).split("train")}
    assert sum(e.text_a in books_texts for e in mixed.split("train")) >= counts[books_src]
    # the folder is named by content: asking again reuses it
    assert continual.replay_mix(reg, task, new, continual.data_source(data["pets"]))[0] == folder
    # a mix recorded as a fusion's train data is never itself replayed later
    reg.record_dataset(
        task.id, folder, "train", len(mixed.split("train")), fingerprint(mixed.split("train")), {}
    )
    later = continual.replay_mix(
        reg, task, load_spec(str(data["books2"])), continual.data_source(data["books2"])
    )
    assert later is not None and set(later[1]) == {books_src}
    # --replay-ratio: half as many replayed rows, or all the earlier source has
    half = continual.replay_mix(reg, task, new, continual.data_source(data["pets"]), ratio=0.5)
    assert half is not None and half[1] == {books_src: min(n_new // 2, n_books)}
    assert len(load_spec(half[0]).split("train")) == n_new + half[1][books_src]
    lots = continual.replay_mix(reg, task, new, continual.data_source(data["pets"]), ratio=50)
    assert lots is not None and lots[1] == {books_src: n_books}
    # nothing earlier to replay for the data the task was trained on
    books = load_spec(str(data["books"]))
    assert continual.replay_mix(reg, task, books, books_src) is None

    # The mix is an artifact of the registry, recorded as the task's train snapshot: verify
    # checks it, gc keeps it.
    assert Path(folder).parent.parent == reg.artifacts.root
    sha = Path(folder).name
    assert reg.referenced_artifacts()[sha].startswith("rows of dataset ")
    assert not reg.verify().problems
    reg.gc(grace_seconds=0)
    assert (Path(folder) / "train.jsonl").is_file()


def test_update_reads_the_new_data_once(seeded: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from registry import data as rdata

    reg, data = seeded
    reads: list[Path] = []
    real = rdata._read_file

    def counting(path: Path) -> Any:
        if Path(path).is_relative_to(data["pets"]):
            reads.append(Path(path))
        return real(path)

    monkeypatch.setattr(rdata, "_read_file", counting)
    books = next(iter(continual.recorded_scores(reg, reg.resolve("sentiment@1")).values()))
    fake = {("sentiment@2", "books"): books, ("sentiment@1", "pets"): 0.0}
    monkeypatch.setattr(continual_evaluate, "evaluate_entity", _fake_scores(fake))
    result = _update(reg, data["pets"], tolerance=0.05)
    assert result.adapter is not None and result.promoted
    # drift, training and evaluation share one load: each file of the new data is read once
    assert sorted(p.name for p in reads) == ["train.jsonl", "validation.jsonl"]


def test_update_warm_start_is_a_new_version_from_the_current_weights(seeded: Any) -> None:
    reg, data = seeded
    first = reg.resolve("sentiment@1")
    before = {p.name: p.read_bytes() for p in reg.artifact_path(first).iterdir()}
    plan = _update(reg, data["pets"], dry_run=True, warm_start=True)
    assert any("starting from sentiment@1's weights" in line for line in plan.plan)
    result = _update(reg, data["pets"], warm_start=True, tolerance=1.0)
    assert _counts(reg) == (2, 0, 1)  # production was one adapter: the candidate is the new one
    adapter = result.adapter
    assert adapter is not None and adapter.ref == "sentiment@2"
    report = result.drift.report
    assert report is not None
    edges = {(e.parent_kind, e.parent_id, e.relation) for e in reg.edges_of("adapter", adapter.id)}
    assert edges == {
        ("adapter", first.id, "warm_started_from"),
        ("drift", report.id, "trained_after_drift"),
    }
    after = {p.name: p.read_bytes() for p in reg.artifact_path(first).iterdir()}
    assert after == before and reg.resolve("sentiment@1").artifact_sha256 == first.artifact_sha256


def _train_snapshot(reg: Registry, entity: E.Entity) -> E.Dataset:
    ids = {m.dataset_id for m in reg.metrics(entity) if m.split == "train" and m.dataset_id}
    assert len(ids) == 1
    return reg.get_dataset(ids.pop())


def test_update_default_warm_starts_on_new_data_plus_replayed_rows(
    seeded: Any, tmp_path: Path
) -> None:
    """The default step (the measured winner): warm start + replay, no validation row trained."""
    from registry.data import load_spec, split_validation

    reg, data = seeded
    first = reg.resolve("sentiment@1")
    pets = tmp_path / "pets_train_only"
    pets.mkdir()
    rows = [dict(r, text=f"{r['text']} #{i}") for i, r in enumerate(_rows(PETS, 60, 7, 0.85))]
    (pets / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = _update(reg, pets, dry_run=True)
    assert any("plus replayed rows" in ln and "sentiment@1's weights" in ln for ln in plan.plan)
    result = _update(reg, pets, tolerance=1.0)
    adapter = result.adapter
    assert adapter is not None
    edges = {(e.parent_kind, e.parent_id, e.relation) for e in reg.edges_of("adapter", adapter.id)}
    assert ("adapter", first.id, "warm_started_from") in edges
    snap = _train_snapshot(reg, adapter)
    assert Path(snap.source).is_relative_to(reg.artifacts.root)  # the stored replay mix
    trained = [e.text_a for e in load_spec(snap.source).split("train")]
    train_rows, val_rows, _ = split_validation(load_spec(str(pets)), TCFG.seed)
    assert val_rows and not {e.text_a for e in val_rows} & set(trained)  # held out, not trained
    assert {e.text_a for e in train_rows} <= set(trained)
    books = {e.text_a for e in load_spec(str(data["books"])).split("train")}
    replayed = [t for t in trained if "#" not in t]
    assert replayed and set(replayed) <= books
    assert len(replayed) == min(len(train_rows), 48)
    # the gate's new-data column is the new data's validation rows, under its own name
    assert [s.column for s in result.scores if s.new] == ["pets_train_only"]


def test_update_no_replay_no_warm_start_trains_fresh_on_the_new_data(seeded: Any) -> None:
    reg, data = seeded
    result = _update(reg, data["pets"], tolerance=1.0, replay=False, warm_start=False)
    adapter = result.adapter
    assert adapter is not None
    edges = {e.relation for e in reg.edges_of("adapter", adapter.id)}
    assert edges == {"trained_after_drift"}
    assert _train_snapshot(reg, adapter).source == continual.data_source(data["pets"])


@pytest.mark.parametrize("select_on", ["task", "new"])
def test_update_select_on_chooses_the_epoch_on_every_split_the_gate_checks(
    seeded: Any, select_on: str
) -> None:
    """``select_on="task"``: the new adapter's validation rows (its best epoch) are the new
    data's plus as many of each earlier split's; the mix's validation is not a matrix column."""
    from registry.data import load_spec

    reg, data = seeded
    result = _update(reg, data["pets"], tolerance=1.0, select_on=select_on)
    assert result.adapter is not None
    mix = load_spec(_train_snapshot(reg, result.adapter).source)
    pets_val = load_spec(str(data["pets"])).split("validation")
    books_val = load_spec(str(data["books"])).split("validation")
    chosen_on = [e.text_a for e in mix.split("validation")]
    assert chosen_on[: len(pets_val)] == [e.text_a for e in pets_val]
    if select_on == "task":
        assert sorted(chosen_on[len(pets_val) :]) == sorted(e.text_a for e in books_val)
    else:
        assert len(chosen_on) == len(pets_val)
    # the gate and the report see the task's two splits, never the mix's validation
    assert sorted(s.column for s in result.scores) == ["books", "pets"]
    matrix = continual.build_report(reg, "sentiment")["sentiment"].matrix
    assert matrix is not None and sorted(matrix.task_names) == ["books", "pets"]


def test_update_cli_select_on(seeded: Any) -> None:
    _, data = seeded
    runner = CliRunner()
    args = ["update", "sentiment", "--data", str(data["pets"]), "--dry-run"]
    task = runner.invoke(cli, [*args, "--select-on", "task"])
    assert task.exit_code == 0, task.output
    assert "best epoch chosen on the new and every earlier validation split" in task.output
    new = runner.invoke(cli, [*args, "--select-on", "new"])
    assert new.exit_code == 0 and "every earlier validation split" not in new.output
    bad = runner.invoke(cli, [*args, "--select-on", "all"])
    assert bad.exit_code == 2 and "--select-on" in bad.output
    with pytest.raises(InvalidInput, match="select_on"):
        continual.UpdateOptions(select_on="all")


def test_task_columns_find_a_split_carved_by_a_run_with_another_seed(
    tmp_path: Path, tiny_base_dir: Path
) -> None:
    """A validation split carved out of train by a run with seed 5 is still a column of the
    accuracy matrix when the caller only knows seed 0: the recorded runs' seeds are tried."""
    reg = Registry.init(tmp_path / "home")
    folder = tmp_path / "carved"
    folder.mkdir()
    rows = [dict(r, text=f"{r['text']} #{i}") for i, r in enumerate(_rows(BOOKS, 60, 11, 0.5))]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TrainConfig(epochs=1, batch_size=16, max_length=32, device="cpu", seed=5)
    train(reg, "carved", folder, str(tiny_base_dir), config=cfg, progress=False)
    task = reg.get_task("carved")
    assert continual_evaluate.recorded_seeds(reg, task) == [5]
    (column,) = continual_evaluate.task_columns(reg, task, [0])
    assert column.examples is not None and len(column.examples) == 6, column.note
    reg.close()
