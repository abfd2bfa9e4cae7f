"""The metadata workflow (#18): tags, descriptions, metric search, compare, alias history, delete.

Real registries on SQLite and PostgreSQL, real artifact files, the real command line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from registry.cli import cli
from registry.errors import InvalidInput, NotFound
from registry.store import EdgeIn, MetricIn, Registry
from tests._util import add_version, make_artifact, seed_task


def _cli(backend_url: str | None, *args: str) -> Result:
    root = ["--db", backend_url] if backend_url else []
    return CliRunner().invoke(cli, [*root, *args])


def _evals(reg: Registry, source: str, split: str, **values: float) -> list[MetricIn]:
    task = reg.get_task("sentiment")
    ds = reg.record_dataset(task.id, source, split, 10, f"fp-{source}-{split}", {"positive": 5})
    return [MetricIn(name, value, split, ds.id) for name, value in values.items()]


@pytest.fixture
def three(registry: Registry, tmp_path: Path) -> Registry:
    """books@1..3 with evaluations on books (validation, test) and dvd (validation)."""
    seed_task(registry)
    scores = [(0.70, 0.60, 0.90), (0.85, 0.80, 0.50), (0.80, 0.84, 0.70)]
    for i, (acc, f1, dvd) in enumerate(scores, start=1):
        metrics = _evals(registry, "/data/books", "validation", accuracy=acc, macro_f1=f1)
        metrics += _evals(registry, "/data/books/test.jsonl", "test", accuracy=acc - 0.1)
        metrics += _evals(registry, "/data/dvd", "validation", accuracy=dvd)
        # a per-epoch curve row: never a value of a metric key
        metrics.append(MetricIn("accuracy", 0.99, "validation", None, 1))
        add_version(registry, tmp_path, "books", f"w{i}".encode(), metrics=metrics)
    return registry


def _refs(result: Result) -> list[str]:
    assert result.exit_code == 0, result.output
    return [row["ref"] for row in json.loads(result.output)]


def test_tag_untag_and_list_by_tag(three: Registry, backend_url: str | None) -> None:
    assert three.tag("books@1", ["baseline", "reviewed", "baseline"]) == ["baseline", "reviewed"]
    assert three.tag("books@1", ["baseline"]) == ["baseline", "reviewed"]  # idempotent
    assert _cli(backend_url, "tag", "books@3", "reviewed").exit_code == 0
    assert _refs(_cli(backend_url, "list", "--tag", "reviewed", "--json")) == ["books@1", "books@3"]
    both = _cli(backend_url, "list", "--tag", "reviewed", "--tag", "baseline", "--json")
    assert _refs(both) == ["books@1"]
    assert json.loads(both.output)[0]["tags"] == ["baseline", "reviewed"]
    with pytest.raises(NotFound, match="has no tag nope"):
        three.untag("books@1", ["reviewed", "nope"])
    assert three.tags(three.resolve("books@1")) == ["baseline", "reviewed"]  # nothing removed
    out = _cli(backend_url, "untag", "books@1", "reviewed", "--json")
    assert out.exit_code == 0 and json.loads(out.output)["tags"] == ["baseline"]
    bad = _cli(backend_url, "tag", "books@1", "no spaces")
    assert bad.exit_code == 1 and "Invalid tag 'no spaces'" in bad.output


def test_list_where_and_sort_use_the_latest_evaluation(
    three: Registry, backend_url: str | None
) -> None:
    # accuracy: the latest evaluation on any split is dvd's (recorded last): 0.9, 0.5, 0.7
    assert _refs(_cli(backend_url, "list", "--where", "accuracy>0.6", "--json")) == [
        "books@1",
        "books@3",
    ]
    key = "books:validation:accuracy"
    assert _refs(_cli(backend_url, "list", "--where", f"{key}>=0.8", "--json")) == [
        "books@2",
        "books@3",
    ]
    assert _refs(_cli(backend_url, "list", "--sort", "validation:macro_f1", "--json")) == [
        "books@3",
        "books@2",
        "books@1",
    ]
    both = ["--where", "test:accuracy>0.65", "--sort", "macro_f1", "--json"]
    assert _refs(_cli(backend_url, "list", *both)) == ["books@3", "books@2"]
    assert _refs(_cli(backend_url, "list", "--where", "accuracy>0.95", "--json")) == []
    first = _cli(backend_url, "list", "--sort", f"{key}", "--limit", "1", "--json")
    assert _refs(first) == ["books@2"]
    bad = _cli(backend_url, "list", "--where", "accuracy>>0.8")
    assert bad.exit_code == 1 and "Invalid condition 'accuracy>>0.8'" in bad.output
    bad = _cli(backend_url, "list", "--sort", "a:b:c:d")
    assert bad.exit_code == 1 and "Invalid metric key" in bad.output


def test_describe_an_adapter_name_and_a_fusion_version(
    three: Registry, backend_url: str | None, tmp_path: Path
) -> None:
    fusion = three.register_fusion(
        name="mix", task="sentiment", base_model_id=three.resolve("books@1").base_model_id,
        member_ids=[three.resolve("books@1").id, three.resolve("books@2").id], config={},
        head={}, artifact_dir=make_artifact(tmp_path / "fz", b"fz"), trainable_params=1,
    )  # fmt: skip
    out = _cli(backend_url, "describe", "books@1", "Books reviews, 2019 crawl.")
    assert out.exit_code == 0, out.output
    assert three.description(three.resolve("books@3")) == "Books reviews, 2019 crawl."
    assert _cli(backend_url, "describe", "mix@1", "two domains").exit_code == 0
    shown = _cli(backend_url, "describe", "mix", "--json")
    assert json.loads(shown.output) == {
        "ref": "mix@1",
        "id": fusion.uid,
        "description": "two domains",
    }
    three.tag("books@3", ["reviewed", "baseline"])
    shown = _cli(backend_url, "show", "books@3")  # the adapter name's description, own tags
    assert shown.exit_code == 0, shown.output
    assert "  description   Books reviews, 2019 crawl.\n" in shown.output
    assert "  tags          baseline, reviewed\n" in shown.output
    data = json.loads(_cli(backend_url, "show", "mix@1", "--json").output)
    assert (data["description"], data["tags"]) == ("two domains", [])
    assert "tags " not in _cli(backend_url, "show", "mix@1").output
    assert _cli(backend_url, "describe", "books@2", "--clear").exit_code == 0
    assert "description" not in _cli(backend_url, "show", "books@3").output
    assert three.description(three.resolve("books@1")) is None
    with pytest.raises(InvalidInput, match="at most 10000"):
        three.describe("books@1", "x" * 10_001)


def test_alias_list_delete_and_history(
    three: Registry, backend_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADAPTER_REGISTRY_USER", "ana")
    assert _cli(backend_url, "alias", "sentiment", "production", "books@1").exit_code == 0
    assert _cli(backend_url, "alias", "sentiment", "staging", "books@2").exit_code == 0
    monkeypatch.setenv("ADAPTER_REGISTRY_USER", "ben")
    three.set_alias("sentiment", "production", "books@2")
    three.set_alias("sentiment", "production", "books@2")  # no change: no event
    listed = _cli(backend_url, "alias", "--list", "sentiment", "--json")
    assert [(a["alias"], a["target_ref"]) for a in json.loads(listed.output)] == [
        ("production", "books@2"),
        ("staging", "books@2"),
    ]
    out = _cli(backend_url, "alias", "--delete", "sentiment", "staging")
    assert out.exit_code == 0 and "Removed sentiment:staging (it pointed at books@2)" in out.output
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        three.resolve("sentiment:staging")
    again = _cli(backend_url, "alias", "--delete", "sentiment", "staging")
    assert again.exit_code == 1 and "nothing was removed" in again.output
    history = [(e.alias, e.old_ref, e.new_ref, e.actor) for e in three.alias_history("sentiment")]
    assert history == [
        ("production", None, "books@1", "ana"),
        ("staging", None, "books@2", "ana"),
        ("production", "books@1", "books@2", "ben"),
        ("staging", "books@2", None, "ben"),
    ]
    text = _cli(backend_url, "alias", "--history", "sentiment", "production")
    assert text.exit_code == 0 and "books@1  books@2  ben" in text.output, text.output
    assert "staging" not in text.output
    usage = _cli(backend_url, "alias", "sentiment", "production")
    assert usage.exit_code == 2


def test_delete_only_what_nothing_references(
    three: Registry, backend_url: str | None, tmp_path: Path
) -> None:
    reg = three
    v1, v2 = reg.resolve("books@1"), reg.resolve("books@2")
    child = add_version(
        reg, tmp_path, "books-warm", b"warm",
        lineage=[EdgeIn("adapter", v1.id, "warm_started_from")],
    )  # fmt: skip
    reg.register_fusion(
        name="mix", task="sentiment", base_model_id=v2.base_model_id, member_ids=[v2.id],
        config={}, head={}, artifact_dir=make_artifact(tmp_path / "fz", b"fz"),
        trainable_params=1,
    )  # fmt: skip
    reg.set_alias("sentiment", "production", "books@3")
    for ref, why in (
        ("books@1", "built from it: books-warm@1 (warm_started_from)"),
        ("books@2", "member of mix@1"),
        ("books@3", "alias sentiment:production points at it"),
    ):
        out = _cli(backend_url, "delete", ref)
        assert out.exit_code == 1 and why in out.output and "Nothing was deleted" in out.output
        assert reg.resolve(ref).status == "active"
    sha = child.artifact_sha256
    out = _cli(backend_url, "delete", "books-warm@1", "--json")
    assert out.exit_code == 0 and json.loads(out.output)["status"] == "deleted", out.output
    with pytest.raises(NotFound, match="was deleted"):
        reg.resolve("books-warm@1")
    assert "books-warm@1" not in _refs(_cli(backend_url, "list", "--json"))
    # the lineage row stays, marked; the parent may now go too
    labels = {n["label"] for n in reg.lineage(v1)["nodes"]}
    assert "books-warm@1 (deleted)" in labels
    assert _cli(backend_url, "delete", "books@1").exit_code == 0
    # files are gc's: still there until it runs, then gone; verify is clean
    assert reg.artifacts.exists(sha)
    assert reg.artifacts.location(sha) in reg.gc(grace_seconds=0)
    assert not reg.artifacts.exists(sha) and reg.verify().ok
    # the version number is not reused
    assert add_version(reg, tmp_path, "books-warm", b"warm2").ref == "books-warm@2"


def test_compare_two_versions(three: Registry, backend_url: str | None, tmp_path: Path) -> None:
    reg = three
    v1 = reg.resolve("books@1")
    folder = make_artifact(tmp_path / "other", b"other")
    reg.register_adapter_version(
        name="books", task="sentiment", base_model_id=v1.base_model_id, method="lora",
        config={"r": 8}, artifact_dir=folder, trainable_params=5,
        training_run={"seed": 3, "hyperparams": {"lr": 3e-3}},
        metrics=_evals(reg, "/data/books", "validation", accuracy=0.95),
        lineage=[EdgeIn("adapter", v1.id, "warm_started_from")],
    )  # fmt: skip
    reg.tag("books@4", ["candidate"])
    out = _cli(backend_url, "compare", "books@1", "books@4", "--json")
    assert out.exit_code == 0, out.output
    data: dict[str, Any] = json.loads(out.output)
    rows = {(m["data"], m["split"], m["metric"]): m for m in data["metrics"]}
    acc = rows[("books", "validation", "accuracy")]
    assert (acc["a"], acc["b"]) == (0.70, 0.95) and acc["diff"] == pytest.approx(0.25)
    assert rows[("dvd", "validation", "accuracy")]["b"] is None
    diff = {c["key"]: (c["a"], c["b"]) for c in data["config"]}
    assert diff["method"] == ("seq_bn", "lora")
    assert diff["training.lr"] == (1e-3, 3e-3) and diff["training.seed"] == (0, 3)
    assert diff["config.r"] == (None, 8) and diff["config.reduction_factor"] == (16, None)
    assert "base_model" not in diff
    assert data["lineage"] == {"shared": [], "only_a": [], "only_b": ["books@1"]}
    assert data["b"]["tags"] == ["candidate"]
    text = _cli(backend_url, "compare", "books@1", "books@4")
    assert text.exit_code == 0 and "only B            books@1" in text.output
    assert "books  validation  accuracy  0.7000  0.9500  0.2500" in text.output, text.output


def test_deprecating_a_production_target_warns(sqlite_registry: Registry, tmp_path: Path) -> None:
    reg = sqlite_registry
    seed_task(reg)
    add_version(reg, tmp_path, "books", b"one")
    reg.set_alias("sentiment", "production", "books@1")
    out = CliRunner().invoke(cli, ["deprecate", "books@1", "--force"])
    assert out.exit_code == 0
    assert "Warning: books@1 is the target of sentiment:production" in out.output
    add_version(reg, tmp_path, "books", b"two")
    quiet = CliRunner().invoke(cli, ["deprecate", "books@2"])
    assert quiet.exit_code == 0 and "Warning" not in quiet.output
