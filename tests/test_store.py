"""The store API on SQLite and (when ADAPTER_REGISTRY_TEST_PG is set) PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.data import DataBundle
from registry.errors import AlreadyExists, InvalidInput, NotFound
from registry.recording import check_task
from registry.store import EdgeIn, MetricIn, Registry
from tests._util import add_version, make_artifact, seed_task


def test_versions_increment_per_name(registry: Registry, tmp_path: Path) -> None:
    seed_task(registry)
    v1 = add_version(registry, tmp_path, "books", b"one")
    v2 = add_version(registry, tmp_path, "books", b"two")
    other = add_version(registry, tmp_path, "dvd", b"three")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.ref == "books@1" and v2.ref == "books@2"
    assert v1.artifact_sha256 != v2.artifact_sha256
    assert registry.resolve("books").id == v2.id
    assert registry.resolve("books@1").id == v1.id
    assert registry.resolve(f"a{other.id}").ref == "dvd@1"
    run = registry.training_run(v1.training_run_id)
    assert run.seed == 0 and run.hyperparams == {"lr": 1e-3}


def test_resolve_errors(registry: Registry, tmp_path: Path) -> None:
    seed_task(registry)
    add_version(registry, tmp_path, "books", b"one")
    with pytest.raises(NotFound, match="No adapter or fusion matches 'nope'") as info:
        registry.resolve("nope")
    assert info.value.hint == "Run: adapter-registry list"
    with pytest.raises(NotFound, match="no version matching"):
        registry.resolve("books@7")
    with pytest.raises(InvalidInput, match="must be a number"):
        registry.resolve("books@latest")
    with pytest.raises(NotFound, match="has no alias"):
        registry.resolve("sentiment:production")
    with pytest.raises(NotFound, match="No task named 'ghost'"):
        registry.resolve("ghost:production")
    with pytest.raises(InvalidInput, match="empty"):
        registry.resolve("  ")


def test_bare_id_ambiguous_between_adapter_and_fusion(registry: Registry, tmp_path: Path) -> None:
    base_id, _ = seed_task(registry)
    a = add_version(registry, tmp_path, "books", b"one")
    b = add_version(registry, tmp_path, "dvd", b"two")
    fusion = registry.register_fusion(
        name="mix",
        task="sentiment",
        base_model_id=base_id,
        member_ids=[a.id, b.id],
        config={"kind": "dynamic"},
        head={"labels": ["negative", "positive"]},
        artifact_dir=make_artifact(tmp_path / "fz", b"fusion"),
        trainable_params=10,
    )
    assert fusion.id == a.id == 1
    with pytest.raises(InvalidInput, match="ambiguous") as info:
        registry.resolve("1")
    assert info.value.hint == "Use a1 or f1."
    assert registry.resolve("2").ref == "dvd@1"
    assert registry.resolve("f1").ref == "mix@1"
    assert fusion.members == ("books@1", "dvd@1")


def test_deprecated_latest_is_skipped(registry: Registry, tmp_path: Path) -> None:
    seed_task(registry)
    add_version(registry, tmp_path, "books", b"one")
    add_version(registry, tmp_path, "books", b"two")
    registry.set_status("books@2", "deprecated")
    assert registry.resolve("books").ref == "books@1"
    registry.set_status("books@1", "deprecated")
    with pytest.raises(NotFound, match="no active version"):
        registry.resolve("books")
    assert registry.resolve("books@2").status == "deprecated"


@pytest.mark.parametrize(
    "bad", ["", "   ", "a/b", "..", "x..y", "../etc", "with space", "a@1", "t:x", "a\\b"]
)
def test_bad_names_are_refused_and_nothing_is_written(
    registry: Registry, tmp_path: Path, bad: str
) -> None:
    seed_task(registry)
    with pytest.raises(InvalidInput):
        add_version(registry, tmp_path, bad, b"payload")
    assert registry.list_entities() == []
    assert registry.artifacts.all_ids() == []


def test_task_label_set_and_base_are_fixed(registry: Registry) -> None:
    base_id, _ = seed_task(registry)
    with pytest.raises(InvalidInput, match="registered with labels"):
        registry.ensure_task("sentiment", "single", ["neg", "pos"], ["text"], base_id)
    other = registry.ensure_base_model("other-bert", "b" * 40, "bert", 32, 2)
    with pytest.raises(InvalidInput, match="registered on base model tiny-bert") as info:
        registry.ensure_task("sentiment", "single", ["negative", "positive"], ["text"], other.id)
    assert info.value.hint and "--base tiny-bert" in info.value.hint
    with pytest.raises(InvalidInput, match="at least two distinct labels"):
        registry.ensure_task("solo", "single", ["only"], ["text"], base_id)
    # Pair-text data for a single-text task: refused by the store, and (the same check, before
    # any training) by the pre-flight check of train and fuse.
    pair = ["negative", "positive"], ["text_a", "text_b"]
    with pytest.raises(InvalidInput, match="is a single-text task, but the data is pair") as info:
        registry.ensure_task("sentiment", "pair", *pair, base_id)
    assert info.value.hint and "--text-fields" in info.value.hint
    bundle = DataBundle(splits={}, source="pairs.jsonl", pair=True)
    with pytest.raises(InvalidInput, match="is a single-text task, but the data is pair"):
        check_task(registry, "sentiment", bundle, registry.get_base_model(base_id))


def test_adapter_name_belongs_to_one_task(registry: Registry, tmp_path: Path) -> None:
    seed_task(registry)
    registry.ensure_task(
        "topic", "single", ["a", "b"], ["text"], registry.get_task("sentiment").base_model_id
    )
    add_version(registry, tmp_path, "books", b"one")
    with pytest.raises(InvalidInput, match="belongs to task 'sentiment'"):
        add_version(registry, tmp_path, "books", b"two", task="topic")
    assert [e.ref for e in registry.list_entities()] == ["books@1"]


def test_alias_rules(registry: Registry, tmp_path: Path) -> None:
    base_id, _ = seed_task(registry)
    registry.ensure_task("topic", "single", ["a", "b"], ["text"], base_id)
    add_version(registry, tmp_path, "books", b"one")
    add_version(registry, tmp_path, "books", b"two")
    news = add_version(registry, tmp_path, "news", b"three", task="topic")
    alias = registry.set_alias("sentiment", "production", "books@1")
    assert alias.target_ref == "books@1"
    assert registry.resolve("sentiment:production").ref == "books@1"
    registry.set_alias("sentiment", "production", "books@2")
    assert registry.resolve("sentiment:production").ref == "books@2"
    with pytest.raises(InvalidInput, match="belongs to task 'topic'"):
        registry.set_alias("sentiment", "production", news.ref)
    registry.set_status("books@1", "deprecated")
    with pytest.raises(InvalidInput, match="deprecated"):
        registry.set_alias("sentiment", "staging", "books@1")
    with pytest.raises(InvalidInput, match="Invalid alias"):
        registry.set_alias("sentiment", "bad alias", "books@2")
    assert [(a.alias, a.target_ref) for a in registry.aliases("sentiment")] == [
        ("production", "books@2")
    ]


def test_lineage_walks_both_ways(registry: Registry, tmp_path: Path) -> None:
    base_id, _ = seed_task(registry)
    v1 = add_version(registry, tmp_path, "books", b"one")
    v2 = add_version(
        registry, tmp_path, "books", b"two", lineage=[EdgeIn("adapter", v1.id, "warm_started_from")]
    )
    dvd = add_version(registry, tmp_path, "dvd", b"three")
    fusion = registry.register_fusion(
        name="mix",
        task="sentiment",
        base_model_id=base_id,
        member_ids=[v2.id, dvd.id],
        config={},
        head={},
        artifact_dir=make_artifact(tmp_path / "fz", b"fz"),
        trainable_params=1,
    )
    down = registry.lineage(v1)
    assert down["root"] == f"adapter:{v1.id}"
    assert {(e["parent"], e["child"], e["relation"]) for e in down["edges"]} == {
        (f"adapter:{v1.id}", f"adapter:{v2.id}", "warm_started_from"),
        (f"adapter:{v2.id}", f"fusion:{fusion.id}", "fused_from"),
    }
    up = registry.lineage(fusion)
    labels = {n["label"] for n in up["nodes"]}
    assert labels == {"books@1", "books@2", "dvd@1", "mix@1"}
    shallow = registry.lineage(fusion, max_depth=1)
    assert {n["label"] for n in shallow["nodes"]} == {"books@2", "dvd@1", "mix@1"}
    with pytest.raises(NotFound):
        add_version(
            registry,
            tmp_path,
            "books",
            b"four",
            lineage=[EdgeIn("adapter", 999, "warm_started_from")],
        )


def test_metrics_and_datasets(registry: Registry, tmp_path: Path) -> None:
    _, task_id = seed_task(registry)
    ds = registry.record_dataset(
        task_id, "data/books", "validation", 10, "f" * 64, {"positive": 6, "negative": 4}
    )
    again = registry.record_dataset(
        task_id, "elsewhere", "validation", 10, "f" * 64, {"positive": 6, "negative": 4}
    )
    assert again.id == ds.id
    v = add_version(
        registry,
        tmp_path,
        "books",
        b"one",
        metrics=[MetricIn("accuracy", 0.75, "validation", ds.id)],
    )
    registry.log_metrics(v, [MetricIn("macro_f1", 0.7, "validation", ds.id, step=3)])
    got = [(m.name, m.value, m.split, m.dataset_id, m.step) for m in registry.metrics(v)]
    assert got == [
        ("accuracy", 0.75, "validation", ds.id, None),
        ("macro_f1", 0.7, "validation", ds.id, 3),
    ]


def test_fusion_name_cannot_shadow_adapter(registry: Registry, tmp_path: Path) -> None:
    base_id, _ = seed_task(registry)
    a = add_version(registry, tmp_path, "books", b"one")
    b = add_version(registry, tmp_path, "dvd", b"two")
    with pytest.raises(AlreadyExists, match="already the name of an adapter"):
        registry.register_fusion(
            name="books",
            task="sentiment",
            base_model_id=base_id,
            member_ids=[a.id, b.id],
            config={},
            head={},
            artifact_dir=make_artifact(tmp_path / "fz", b"fz"),
            trainable_params=1,
        )
    assert registry.list_entities(kind="fusion") == []


def test_verify_and_gc(registry: Registry, tmp_path: Path) -> None:
    seed_task(registry)
    keep = add_version(registry, tmp_path, "books", b"keep")
    damaged = add_version(registry, tmp_path, "dvd", b"damage-me")
    gone = add_version(registry, tmp_path, "kitchen", b"delete-me")
    orphan = registry.artifacts.put(make_artifact(tmp_path / "orphan", b"nobody"))
    assert registry.verify().ok
    target = registry.artifacts.path_for(damaged.artifact_sha256) / "weights.bin"
    target.chmod(0o644)
    target.write_bytes(b"damage-mf")
    registry.artifacts.remove(gone.artifact_sha256)
    report = registry.verify()
    kinds = sorted((p["kind"], p["what"]) for p in report.problems)
    assert kinds == [("damaged", "adapter dvd@1"), ("missing", "adapter kitchen@1")]
    assert report.orphans == [orphan.sha256]
    assert registry.gc(grace_seconds=3600) == []  # too young: a writer may still need it
    removed = registry.gc(grace_seconds=0)
    assert removed == [str(orphan.path)]
    assert not orphan.path.exists()
    assert registry.artifact_path(keep).is_dir()
