"""The trainer: new adapter versions on a frozen base, never touching earlier ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from registry.cli import cli
from registry.errors import InvalidInput
from registry.loader import load_entity
from registry.store import Registry
from registry.trainer import TrainConfig, train
from tests._util import sentiment_data, sentiment_rows, write_splits

FAST = TrainConfig(epochs=1, batch_size=16, lr=5e-3)


def _files_sha(reg: Registry) -> dict[str, str]:
    from registry.artifacts import file_sha256

    out = {}
    for sha in reg.artifacts.all_ids():
        folder = reg.artifacts.path_for(sha)
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                out[str(f)] = file_sha256(f)
    return out


def test_versions_lineage_metrics_and_untouched_artifacts(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    reg = sqlite_registry
    data = sentiment_data(tmp_path / "books")
    first = train(
        reg, "sentiment", str(data), str(tiny_base_dir), name="books", config=FAST, progress=False
    )
    before = _files_sha(reg)
    report = reg.record_drift_report(
        task="sentiment",
        reference_adapter_version_id=first.version.id,
        new_dataset_id=None,
        alpha=0.05,
        tests=[],
        drift=True,
    )
    second = train(
        reg,
        "sentiment",
        str(sentiment_data(tmp_path / "dvd", seed=5)),
        str(tiny_base_dir),
        name="books",
        config=FAST,
        init_from="books@1",
        after_drift=report.id,
        progress=False,
    )
    topic = write_splits(
        tmp_path / "topic",
        {
            "train": [
                {"text": r["text"], "label": "a" if r["label"] == "positive" else "b"}
                for r in sentiment_rows(32, 9)
            ],
        },
    )
    other = train(reg, "topic", str(topic), str(tiny_base_dir), config=FAST, progress=False)
    assert (first.version.version, second.version.version, other.version.ref) == (1, 2, "topic@1")
    after = _files_sha(reg)
    assert {k: after[k] for k in before} == before, "an earlier artifact changed"
    assert second.earlier_artifacts_verified >= 2
    assert other.earlier_artifacts_verified >= 4  # two adapters + their profiles
    edges = {
        (e.parent_kind, e.parent_id, e.relation) for e in reg.edges_of("adapter", second.version.id)
    }
    assert edges == {
        ("adapter", first.version.id, "warm_started_from"),
        ("drift", report.id, "trained_after_drift"),
    }
    names = {(m.name, m.split) for m in reg.metrics(second.version)}
    assert {("accuracy", "validation"), ("macro_f1", "validation"), ("accuracy", "train")} <= names
    run = reg.training_run(second.version.training_run_id)
    assert run.hyperparams["epochs"] == 1 and run.seed == 0 and "torch" in run.library_versions
    assert run.tokens_per_s and run.tokens_per_s > 0
    assert second.version.profile_sha256 is not None
    assert reg.verify().ok
    assert reg.get_task("topic").label_names == ("a", "b")


def test_reload_in_fresh_process_gives_same_logits(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    reg = sqlite_registry
    outcome = train(
        reg,
        "sentiment",
        str(sentiment_data(tmp_path / "d")),
        str(tiny_base_dir),
        config=FAST,
        progress=False,
    )
    loaded = load_entity(reg, outcome.version)
    batch = dict(
        loaded.backbone.tokenizer(
            ["good movie", "the plot was awful"], padding=True, return_tensors="pt"
        )
    )
    expected = loaded.backbone.logits(batch)
    script = (
        "import json, sys, torch\n"
        "from registry.store import Registry\nfrom registry.loader import load_entity\n"
        "reg = Registry.open(sys.argv[1])\n"
        "L = load_entity(reg, reg.resolve('sentiment@1'))\n"
        "texts = ['good movie', 'the plot was awful']\n"
        "b = dict(L.backbone.tokenizer(texts, padding=True, return_tensors='pt'))\n"
        "print(json.dumps(L.backbone.logits(b).tolist()))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(reg.settings.home)],
        capture_output=True,
        text=True,
        check=True,
    )
    got = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert (got - expected).abs().max().item() <= 1e-5
    assert (expected[0] - expected[1]).abs().max().item() > 0  # the inputs give different logits


def test_refusals_happen_before_training(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = sqlite_registry
    train(
        reg,
        "sentiment",
        str(sentiment_data(tmp_path / "ok")),
        str(tiny_base_dir),
        config=FAST,
        progress=False,
    )
    snapshot = (
        [e.ref for e in reg.list_entities()],
        reg.artifacts.all_ids(),
        len(reg.list_datasets()),
    )

    from registry import backbone

    def no_loading(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded before the data was validated")

    monkeypatch.setattr(backbone.Backbone, "load", classmethod(lambda cls, *a, **k: no_loading()))
    bad_label = write_splits(tmp_path / "bad", {"train": [{"text": "good movie", "label": "meh"}]})
    with pytest.raises(InvalidInput, match=r"label 'meh'.*not one of the task's labels"):
        train(reg, "sentiment", str(bad_label), str(tiny_base_dir), config=FAST, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.jsonl").write_text("")
    with pytest.raises(InvalidInput, match="empty"):
        train(reg, "sentiment", str(empty), str(tiny_base_dir), config=FAST, progress=False)
    no_text = write_splits(tmp_path / "notext", {"train": [{"body": "good", "label": "positive"}]})
    with pytest.raises(InvalidInput, match="text"):
        train(reg, "sentiment", str(no_text), str(tiny_base_dir), config=FAST, progress=False)
    assert (
        [e.ref for e in reg.list_entities()],
        reg.artifacts.all_ids(),
        len(reg.list_datasets()),
    ) == snapshot


def test_other_base_model_is_refused(
    sqlite_registry: Registry, tiny_base_dir: Path, tmp_path: Path
) -> None:
    from tests._tiny import build_tiny_bert

    reg = sqlite_registry
    data = str(sentiment_data(tmp_path / "d"))
    train(reg, "sentiment", data, str(tiny_base_dir), config=FAST, progress=False)
    other = build_tiny_bert(tmp_path / "other-bert", seed=1)
    with pytest.raises(InvalidInput, match="must share a base model") as info:
        train(reg, "sentiment", data, str(other), config=FAST, progress=False)
    assert "--base" in (info.value.hint or "")
    assert [e.ref for e in reg.list_entities()] == ["sentiment@1"]


def test_cli_train_eval_predict(
    tiny_base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = str(sentiment_data(tmp_path / "d"))
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "train",
            "sentiment",
            "--data",
            data,
            "--base",
            str(tiny_base_dir),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--no-progress",
            "--json",
        ],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["ref"] == "sentiment@1" and set(out["metrics"]) == {"train", "validation"}
    res = runner.invoke(
        cli, ["eval", "sentiment@1", "--data", data, "--json"], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)["metrics"]
    assert metrics["accuracy"] == pytest.approx(out["metrics"]["validation"]["accuracy"])
    # Evaluated data given as a relative path is recorded as an absolute one (reloadable from
    # any working directory), as training records it.
    sentiment_data(tmp_path / "other", seed=5)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli, ["eval", "sentiment@1", "--data", "other", "--json"])
    assert res.exit_code == 0, res.output
    with Registry.open() as reg:
        sources = {d.source for d in reg.list_datasets()}
    assert str((tmp_path / "other").resolve()) in sources and "other" not in sources
    res = runner.invoke(cli, ["predict", "sentiment", "--text", "good movie", "--json"])
    assert res.exit_code == 0, res.output
    pred = json.loads(res.output)
    assert pred["label"] in ("negative", "positive") and sum(
        pred["scores"].values()
    ) == pytest.approx(1.0)
    target = tmp_path / "preds.jsonl"
    res = runner.invoke(
        cli, ["predict", "sentiment", "--data", data, "--split", "validation", "--out", str(target)]
    )
    assert res.exit_code == 0, res.output
    assert len(target.read_text().splitlines()) == 24
    res = runner.invoke(cli, ["predict", "sentiment", "--text", "a", "--text-b", "b"])
    assert res.exit_code == 1 and "takes single texts" in res.output
    res = runner.invoke(cli, ["predict", "sentiment"])
    assert res.exit_code == 2
    res = runner.invoke(
        cli,
        ["train", "sentiment", "--data", str(tmp_path / "missing"), "--base", str(tiny_base_dir)],
    )
    assert res.exit_code == 1 and res.output.startswith("Error: ")
